//! The durable store on one DynamoDB table: the serverless implementation
//! of the [`Store`] port, with the same semantics and error codes as the
//! SQLite store (both pass `tests/store_contract`).
//!
//! Entities (carts, checkout sessions, orders, order events, ledger
//! entries) are kept as the JSON records of `adapters::records` in a `body`
//! attribute, beside the attributes that keys, indexes and conditions need.
//! The item kinds and their keys are in `super::item`, the table and its
//! indexes in `super::table`.
//!
//! The atomic operations of the port map onto DynamoDB like this:
//! - put-if-absent: `attribute_not_exists(pk)`; for idempotency keys and
//!   mandate ids `… OR <expiry> <= :now`, so an expired item is taken over;
//! - compare-and-set: a put conditioned on `version = :expected`, and on a
//!   failed condition a second, consistent read to tell `version_conflict`
//!   from `not_found`;
//! - conditional decrement: `SET quantity = quantity - :q` on the condition
//!   `quantity >= :q` (a SKU without an item fails the condition, so it has
//!   no units, as in SQLite);
//! - the checkout commit and an order update with events: one
//!   `TransactWriteItems`, whose cancellation reasons say which condition
//!   failed.
//!
//! Reads of single items are strongly consistent. Reads through an index
//! (`list_orders`, `ledger_entries`) are eventually consistent, as every
//! DynamoDB index is: an order committed a moment ago can be missing from
//! them for a short while. Both are operator views, and `get_order` is
//! exact.
//!
//! Expiry: idempotency records and mandate ids carry their expiry as Unix
//! nanoseconds, which every read and condition compares against the
//! store's clock, and a `ttl` that lets DynamoDB delete them some time
//! later. TTL deletion is lazy (often hours), so it only tidies up.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValue, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use super::item::{
    get_b, get_n, get_s, n, nanos, nanos_clamped, owner_partition, s, time_key, time_sort_key,
    ttl_seconds, Item, Key, AUDIT_BY_TIME, CHECKOUTS_NEEDING_ATTENTION, EVENT_PREFIX,
    LEDGER_BY_TIME, MANDATE_PREFIX, ORDERS_BY_TIME, OUTBOX_BY_TIME, OUTBOX_DUE,
};
use super::retry::{cancellation_is_transient, classify, describe, Backoff, Failure};
use super::table::{Index, BY_OWNER, BY_TIME, OUTBOX_DUE as DUE_INDEX, PK, SK, TTL};
use crate::adapters::records::{
    check_commit, check_events, check_outbox, from_json, to_json, CartRecord, CheckoutRecord,
    LedgerRecord, OrderEventRecord, OrderRecord,
};
use crate::domain::{
    Cart, CartId, CheckoutId, CheckoutSession, CheckoutStatus, Currency, Error, ErrorCode,
    LedgerEntry, Order, OrderEvent, OrderId, Result, Sku,
};
use crate::ports::{
    AuditFilter, AuditRecord, AuditedStock, CheckoutCommit, Clock, IdempotencyBegin,
    IdempotencyRecord, IdempotencyState, OrderFilter, OutboxEntry, OutboxFilter, OutboxKind,
    OutboxLease, OutboxMessage, OutboxResult, OutboxStatus, Store, StoredResponse, SystemClock,
    Versioned,
};

/// A list limit as asked, with 0 meaning [`DEFAULT_LIST_LIMIT`] and nothing
/// above [`MAX_LIST_LIMIT`].
fn list_limit(asked: u32) -> usize {
    let limit = match asked {
        0 => DEFAULT_LIST_LIMIT,
        n => n.min(MAX_LIST_LIMIT),
    };
    limit as usize
}

/// DynamoDB's limit on the items of one `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// `list_orders` answers at most this many orders, whatever is asked (the
/// same bounds as the SQLite store).
pub const MAX_LIST_LIMIT: u32 = 500;
/// What `list_orders` answers when the filter names no limit (0).
pub const DEFAULT_LIST_LIMIT: u32 = 50;

/// Items a checkout commit writes besides one per distinct SKU, event,
/// mandate, discount code and outbox message: the session, the order, the checkout's order
/// guard, the ledger entry and the idempotency record. A cart holds at most
/// `domain::cart::MAX_LINES` (50) lines, so a full cart leaves 45 items for
/// events, mandates, codes and outbox messages; the pipeline writes two
/// events, two or three mandates, rarely more than one code, and at most two
/// outbox messages (the order webhook and the confirmation).
pub const COMMIT_FIXED_ITEMS: usize = 5;

// Attribute names beside the keys.
const VERSION: &str = "version";
const BODY: &str = "body";
const STATUS: &str = "status";
const OWNER: &str = "owner";
const EXPIRES_AT: &str = "expires_at";
const CHECKOUT_ID: &str = "checkout_id";
const ORDER_ID: &str = "order_id";
const CREATED_AT: &str = "created_at";
const QUANTITY: &str = "quantity";
const TOKEN: &str = "token";
const CURRENCY: &str = "currency";
const FINGERPRINT: &str = "fingerprint";
const STATE: &str = "state";
const KEEP_UNTIL: &str = "keep_until";
const SEEN_AT: &str = "seen_at";
const USES: &str = "uses";
const ID: &str = "id";
const KIND: &str = "kind";
const DESTINATION: &str = "destination";
const PAYLOAD: &str = "payload";
const ATTEMPTS: &str = "attempts";
const NEXT_ATTEMPT_AT: &str = "next_attempt_at";
const LEASE_TOKEN: &str = "lease_token";
const LEASE_UNTIL: &str = "lease_until";
const LAST_ERROR: &str = "last_error";
const DELIVERED_AT: &str = "delivered_at";
const ACTION: &str = "action";
const TARGET: &str = "target";
const ACTOR: &str = "actor";
const REASON: &str = "reason";
const TRACE_ID: &str = "trace_id";
const DELTA: &str = "delta";
const STOCK_AFTER: &str = "stock_after";
const AT: &str = "at";

/// How many times an audited stock adjustment re-reads and retries when a
/// concurrent writer (a checkout) moved the stock between its read and its
/// conditional write.
const STOCK_CAS_ROUNDS: usize = 8;

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";

/// Stock puts in flight at once while seeding.
const SEED_CONCURRENCY: usize = 16;

/// How often `idempotency_begin` re-tries when the record it lost to
/// disappears (released or expired) before it can be read.
const BEGIN_ATTEMPTS: usize = 4;

/// Whether a call may be sent again after an ambiguous failure (see
/// `super::retry`). Throttling is always retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Reads, unconditional puts, and transactions with a request token.
    Always,
    /// Conditional writes: a resend of one that landed would fail its
    /// condition and misreport the outcome.
    OnlyIfThrottled,
}

/// The durable store on DynamoDB. Cheap to clone; clones share the client.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    clock: Arc<dyn Clock>,
    backoff: Backoff,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore").field("table", &self.table).finish_non_exhaustive()
    }
}

/// What a transaction that did not commit reports.
enum TxFailure {
    /// A condition failed; the reasons are in item order.
    Canceled(Vec<CancellationReason>),
    Failed(Error),
}

/// The part each item of a checkout commit plays, to turn the failed
/// condition of a cancelled transaction into the error SQLite would give.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Session,
    Stock(String),
    Order,
    CheckoutOrder,
    Event,
    Ledger(String),
    Mandate,
    DiscountUse,
    Outbox(String),
    Idempotency,
}

impl DynamoStore {
    /// A store on `table`, which must exist with the shape of
    /// `super::table` (see `create_table`).
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: Arc::from(table.into()),
            clock: Arc::new(SystemClock),
            backoff: Backoff::default(),
        }
    }

    /// Uses `clock` to decide what has expired, so tests that move time
    /// see the store agree with the rest of the gateway.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> DynamoStore {
        self.clock = clock;
        self
    }

    /// Replaces the retry schedule for throttling and contention.
    pub fn with_backoff(mut self, backoff: Backoff) -> DynamoStore {
        self.backoff = backoff;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn now(&self) -> i64 {
        nanos_clamped(self.clock.now())
    }

    /// Seeds stock counts for a catalog: each SKU without a stock item gets
    /// its quantity, and SKUs that have one (stock already sold or
    /// corrected) are left alone. `marker` names the catalog (a digest of
    /// its bytes) and is written last, so [`DynamoStore::stock_seeded`]
    /// answers true only after a seed has finished. Lambda instances may do
    /// this concurrently at cold start; put-if-absent makes that harmless.
    pub async fn seed_stock(&self, marker: &str, stock: &[(Sku, u32)]) -> Result<()> {
        let marker_key = Key::stock_seed(marker)?;
        // A few puts in flight at a time: the demo catalog has 150-odd SKUs,
        // and one after another they would add a second to the first cold
        // start of a new table.
        for chunk in stock.chunks(SEED_CONCURRENCY) {
            let mut puts = tokio::task::JoinSet::new();
            for (sku, quantity) in chunk {
                let mut item = Key::stock(sku.as_str())?.item();
                item.insert(QUANTITY.into(), n(quantity));
                let store = self.clone();
                puts.spawn(async move { store.put_if_absent(item).await });
            }
            while let Some(done) = puts.join_next().await {
                match done.map_err(|e| Error::internal(format!("stock seed task failed: {e}")))? {
                    Ok(()) => {}
                    Err(e) if e.code() == ErrorCode::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut done = marker_key.item();
        done.insert(SEEN_AT.into(), n(self.now()));
        let req = self.client.put_item().table_name(&*self.table).set_item(Some(done));
        self.send(Resend::Always, || req.clone().send())
            .await
            .map_err(|e| failed("PutItem", &e))?;
        Ok(())
    }

    /// Whether [`DynamoStore::seed_stock`] has finished for `marker`.
    pub async fn stock_seeded(&self, marker: &str) -> Result<bool> {
        Ok(self.get(&Key::stock_seed(marker)?).await?.is_some())
    }

    // ------------------------------------------------------------ calls

    /// Sends a request built by `call`, retrying on the failures `resend`
    /// allows, with the store's backoff in between.
    async fn send<T, E, R, F, Fut>(
        &self,
        resend: Resend,
        mut call: F,
    ) -> std::result::Result<T, SdkError<E, R>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata,
    {
        let mut retry = 0;
        loop {
            let err = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let again = match classify(&err) {
                Failure::Throttled => true,
                Failure::Ambiguous => resend == Resend::Always,
                Failure::Final => false,
            };
            if !again || retry + 1 >= self.backoff.attempts {
                return Err(err);
            }
            tokio::time::sleep(self.backoff.delay(retry)).await;
            retry += 1;
        }
    }

    /// A strongly consistent read of one item.
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        let req = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key.item()))
            .consistent_read(true);
        let out = self.send(Resend::Always, || req.clone().send()).await;
        Ok(out.map_err(|e| failed("GetItem", &e))?.item)
    }

    /// Whether an item exists, by a strongly consistent read of its key
    /// alone.
    async fn exists(&self, key: &Key) -> Result<bool> {
        let req = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key.item()))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", PK)
            .consistent_read(true);
        let out = self.send(Resend::Always, || req.clone().send()).await;
        Ok(out.map_err(|e| failed("GetItem", &e))?.item.is_some())
    }

    /// Put-if-absent; a present item is `already_exists` (with a generic
    /// message the caller replaces).
    async fn put_if_absent(&self, item: Item) -> Result<()> {
        let req = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK);
        match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => {
                Err(Error::new(ErrorCode::AlreadyExists, "the item already exists"))
            }
            Err(e) => Err(failed("PutItem", &e)),
        }
    }

    /// Compare-and-set: writes `item` (which carries the new version) if
    /// the stored version is `expected`.
    async fn put_if_version(
        &self,
        key: &Key,
        item: Item,
        expected: u64,
        what: &str,
        id: &str,
    ) -> Result<()> {
        let req = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":expected", n(expected));
        match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(self.cas_miss(key, what, id).await),
            Err(e) => Err(failed("PutItem", &e)),
        }
    }

    /// Why a compare-and-set wrote nothing: the item is there with another
    /// version (`version_conflict`), or not there at all.
    async fn cas_miss(&self, key: &Key, what: &str, id: &str) -> Error {
        match self.exists(key).await {
            Ok(true) => Error::new(
                ErrorCode::VersionConflict,
                format!("{what} {id} was changed by another request; reload and retry"),
            ),
            Ok(false) => Error::not_found(format!("{what} {id} not found")),
            Err(e) => e,
        }
    }

    /// Runs one transaction. A cancellation caused only by contention or
    /// throttling is retried as a new attempt; one with a failed condition
    /// is returned with its reasons. Each attempt carries a fresh client
    /// request token, which makes resending the same attempt after a
    /// timeout idempotent.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> std::result::Result<(), TxFailure> {
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(TxFailure::Failed(too_many_items(items.len())));
        }
        let mut round = 0;
        loop {
            let token = uuid::Uuid::new_v4().to_string();
            let req = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(token);
            let err = match self.send(Resend::Always, || req.clone().send()).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    c.cancellation_reasons().to_vec()
                }
                _ => return Err(TxFailure::Failed(failed("TransactWriteItems", &err))),
            };
            if !cancellation_is_transient(&reasons) {
                return Err(TxFailure::Canceled(reasons));
            }
            if round + 1 >= self.backoff.attempts {
                return Err(TxFailure::Failed(Error::store(format!(
                    "transaction still contended after {} attempts: {}",
                    self.backoff.attempts,
                    codes(&reasons)
                ))));
            }
            tokio::time::sleep(self.backoff.delay(round)).await;
            round += 1;
        }
    }

    /// A query of one partition of the `by_time` index, in its time order;
    /// the caller adds direction, range and filters.
    fn by_time_partition(
        &self,
        partition: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&*self.table)
            .index_name(BY_TIME.name)
            .key_condition_expression("#tpk = :pk")
            .expression_attribute_names("#tpk", BY_TIME.pk)
            .expression_attribute_values(":pk", s(partition))
    }

    /// Every item of one query, page by page, in index order.
    async fn query_all(
        &self,
        request: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        want: Option<usize>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let req = request.clone().set_exclusive_start_key(start.take());
            let page = self
                .send(Resend::Always, || req.clone().send())
                .await
                .map_err(|e| failed("Query", &e))?;
            items.extend(page.items.unwrap_or_default());
            if want.is_some_and(|w| items.len() >= w) {
                break;
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(items)
    }

    /// The items of one order's collection whose sort key starts with
    /// `prefix`, in sort key order.
    async fn order_collection(&self, id: &OrderId, prefix: &str) -> Result<Vec<Item>> {
        let pk = Key::order(id.as_str())?.pk;
        let req = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true);
        self.query_all(req, None).await
    }

    /// Leases one outbox message if it is still pending, due and unleased
    /// at `now` (a conditional update on the item); `None` when another
    /// worker took it first or it was settled meanwhile.
    async fn lease_outbox(
        &self,
        id: &str,
        now: i64,
        until: OffsetDateTime,
        until_n: i64,
    ) -> Result<Option<OutboxLease>> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::outbox(id)?.item()))
            .update_expression("SET #tok = :tok, #lu = :until")
            .condition_expression(
                "#status = :pending AND #next <= :now AND (attribute_not_exists(#lu) OR #lu <= :now)",
            )
            .expression_attribute_names("#tok", LEASE_TOKEN)
            .expression_attribute_names("#lu", LEASE_UNTIL)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#next", NEXT_ATTEMPT_AT)
            .expression_attribute_values(":tok", s(&token))
            .expression_attribute_values(":until", n(until_n))
            .expression_attribute_values(":pending", s(OutboxStatus::Pending.as_str()))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew);
        match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
            Ok(out) => {
                let (entry, _) = outbox_entry(&out.attributes.unwrap_or_default())?;
                Ok(Some(OutboxLease {
                    message: entry.message,
                    attempts: entry.attempts,
                    token,
                    until,
                }))
            }
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(failed("UpdateItem", &e)),
        }
    }

    // ------------------------------------------------------------ items

    fn put(&self, item: Item, condition: Condition) -> Result<TransactWriteItem> {
        let mut put = Put::builder().table_name(&*self.table).set_item(Some(item));
        put = match condition {
            Condition::Absent => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
            Condition::Version(expected) => put
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":expected", n(expected)),
        };
        let put = put.build().map_err(build_failed)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn decrement(&self, sku: &str, quantity: u64) -> Result<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(Key::stock(sku)?.item()))
            .update_expression("SET #q = #q - :q")
            .condition_expression("#q >= :q")
            .expression_attribute_names("#q", QUANTITY)
            .expression_attribute_values(":q", n(quantity))
            .build()
            .map_err(build_failed)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn complete_idempotency_item(
        &self,
        key: &str,
        response: &StoredResponse,
        now: i64,
    ) -> Result<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(Key::idempotency(key)?.item()))
            .update_expression("SET #state = :completed, #status = :status, #body = :body")
            .condition_expression("#state = :in_progress AND #exp > :now")
            .set_expression_attribute_names(Some(complete_names()))
            .set_expression_attribute_values(Some(complete_values(response, now)))
            .build()
            .map_err(build_failed)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Whether `key` is held (in progress and unexpired), so a commit can
    /// store its response in the same transaction.
    async fn idempotency_held(&self, key: &str, now: i64) -> Result<bool> {
        let Some(item) = self.get(&Key::idempotency(key)?).await? else {
            return Ok(false);
        };
        let record = idempotency_record(key, &item, now)?;
        Ok(record.is_some_and(|r| r.state == IdempotencyState::InProgress))
    }

    /// The items of a checkout commit, with the role of each.
    fn commit_items(
        &self,
        commit: &CheckoutCommit,
        idempotency: Option<(&str, &StoredResponse)>,
        now: i64,
    ) -> Result<(Vec<TransactWriteItem>, Vec<Role>)> {
        let mut items = Vec::new();
        let mut roles = Vec::new();
        let session = commit.session.id.as_str();
        let new_version = commit.expected_version.checked_add(1).ok_or_else(|| {
            Error::new(
                ErrorCode::VersionConflict,
                format!("checkout session {session} was changed by another request"),
            )
        })?;
        items.push(self.put(
            checkout_item(&commit.session, new_version)?,
            Condition::Version(commit.expected_version),
        )?);
        roles.push(Role::Session);
        // One transaction cannot touch an item twice, so repeated SKUs are
        // taken as one decrement of their sum (as u64: a sum beyond any
        // stock simply fails its condition).
        let mut stock: BTreeMap<&str, u64> = BTreeMap::new();
        let mut order_of_skus = Vec::new();
        for (sku, quantity) in &commit.stock {
            let entry = stock.entry(sku.as_str()).or_insert_with(|| {
                order_of_skus.push(sku.as_str());
                0
            });
            *entry += u64::from(*quantity);
        }
        for sku in order_of_skus {
            items.push(self.decrement(sku, stock[sku])?);
            roles.push(Role::Stock(sku.to_owned()));
        }
        let order = &commit.order;
        items.push(self.put(order_item(order, 1)?, Condition::Absent)?);
        roles.push(Role::Order);
        let mut guard = Key::checkout_order(session)?.item();
        guard.insert(ORDER_ID.into(), s(order.id.as_str()));
        items.push(self.put(guard, Condition::Absent)?);
        roles.push(Role::CheckoutOrder);
        for (index, event) in commit.events.iter().enumerate() {
            items.push(self.put(event_item(event, 1, index)?, Condition::Absent)?);
            roles.push(Role::Event);
        }
        let ledger = ledger_item(&commit.ledger)?;
        items.push(self.put(ledger, Condition::Absent)?);
        roles.push(Role::Ledger(commit.ledger.id.clone()));
        for (seq, token) in commit.mandates.iter().enumerate() {
            let mut item = Key::order_mandate(order.id.as_str(), seq)?.item();
            item.insert(TOKEN.into(), s(token));
            items.push(self.put(item, Condition::Absent)?);
            roles.push(Role::Mandate);
        }
        // Discount uses are counted as the commit completes the session,
        // which is the only way a session becomes completed, so the count is
        // exact without scanning sessions.
        let mut uses: BTreeMap<&str, u64> = BTreeMap::new();
        for discount in &commit.session.applied_discounts {
            *uses.entry(discount.code.as_str()).or_default() += 1;
        }
        for (code, count) in uses {
            let update = Update::builder()
                .table_name(&*self.table)
                .set_key(Some(Key::discount_uses(code)?.item()))
                .update_expression("ADD #uses :n")
                .expression_attribute_names("#uses", USES)
                .expression_attribute_values(":n", n(count))
                .build()
                .map_err(build_failed)?;
            items.push(TransactWriteItem::builder().update(update).build());
            roles.push(Role::DiscountUse);
        }
        for message in &commit.outbox {
            items.push(self.put(outbox_item(message)?, Condition::Absent)?);
            roles.push(Role::Outbox(message.id.clone()));
        }
        if let Some((key, response)) = idempotency {
            items.push(self.complete_idempotency_item(key, response, now)?);
            roles.push(Role::Idempotency);
        }
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(too_many_items(items.len()));
        }
        Ok((items, roles))
    }
}

/// The condition of a put inside a transaction.
#[derive(Debug, Clone, Copy)]
enum Condition {
    Absent,
    Version(u64),
}

fn build_failed(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("cannot build a DynamoDB request: {e}"))
}

fn too_many_items(count: usize) -> Error {
    Error::invalid(format!(
        "this write needs {count} items, more than the {MAX_TRANSACTION_ITEMS} one DynamoDB \
         transaction can hold; split the cart or write fewer events"
    ))
}

/// A failed call as a domain error. A request DynamoDB found invalid (an
/// item over 400 KB, say) is our bug, so `internal`; anything else is the
/// store being unavailable, which a caller may retry.
fn failed<E, R>(op: &str, err: &SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = format!("DynamoDB {op} failed: {}", describe(err));
    match err.as_service_error().and_then(|e| e.code()) {
        Some("ValidationException") => Error::internal(detail),
        _ => Error::store(detail),
    }
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// The codes of a cancellation, for the log.
fn codes(reasons: &[CancellationReason]) -> String {
    reasons.iter().map(|r| r.code().unwrap_or("?")).collect::<Vec<_>>().join(",")
}

/// The first item whose condition failed, in item order (the order SQLite
/// checks them in).
fn first_failed_condition(reasons: &[CancellationReason]) -> Option<usize> {
    reasons.iter().position(|r| r.code() == Some("ConditionalCheckFailed"))
}

fn insufficient(sku: &str) -> Error {
    Error::new(ErrorCode::InsufficientStock, format!("not enough stock for SKU {sku}"))
}

fn already_exists(what: &str, id: &str) -> Error {
    Error::new(ErrorCode::AlreadyExists, format!("{what} {id} already exists"))
}

fn parse_version(item: &Item, what: &str) -> Result<u64> {
    get_n::<u64>(item, VERSION, what)
}

fn versioned<R, T>(item: &Item, what: &'static str) -> Result<Versioned<T>>
where
    R: for<'de> serde::Deserialize<'de>,
    T: TryFrom<R, Error = Error>,
{
    let value = T::try_from(from_json::<R>(what, get_s(item, BODY, what)?)?)?;
    Ok(Versioned { value, version: parse_version(item, what)? })
}

fn cart_item(cart: &Cart, version: u64) -> Result<Item> {
    let mut item = Key::cart(cart.id.as_str())?.item();
    item.insert(VERSION.into(), n(version));
    item.insert(STATUS.into(), s(cart.status().as_str()));
    item.insert(EXPIRES_AT.into(), n(nanos(cart.expires_at)?));
    if let Some(owner) = &cart.owner {
        item.insert(OWNER.into(), s(owner));
    }
    item.insert(BODY.into(), s(to_json("cart", &CartRecord::from(cart))?));
    Ok(item)
}

fn checkout_item(session: &CheckoutSession, version: u64) -> Result<Item> {
    let mut item = Key::checkout(session.id.as_str())?.item();
    item.insert(VERSION.into(), n(version));
    item.insert(STATUS.into(), s(session.status().as_str()));
    item.insert(EXPIRES_AT.into(), n(nanos(session.expires_at)?));
    if let Some(owner) = &session.owner {
        item.insert(OWNER.into(), s(owner));
    }
    if matches!(
        session.status(),
        CheckoutStatus::RequiresEscalation | CheckoutStatus::CompleteInProgress
    ) {
        let id = session.id.as_str();
        item.insert(BY_TIME.pk.into(), s(CHECKOUTS_NEEDING_ATTENTION));
        item.insert(BY_TIME.sk.into(), s(time_sort_key(nanos(session.updated_at)?, id)));
    }
    item.insert(BODY.into(), s(to_json("checkout session", &CheckoutRecord::from(session))?));
    Ok(item)
}

/// An order with its index keys: `by_time` always, `by_owner` when it has
/// an owner.
fn order_item(order: &Order, version: u64) -> Result<Item> {
    let id = order.id.as_str();
    let created = nanos(order.created_at)?;
    let mut item = Key::order(id)?.item();
    item.insert(VERSION.into(), n(version));
    item.insert(CHECKOUT_ID.into(), s(order.checkout_id.as_str()));
    item.insert(STATUS.into(), s(order.status().as_str()));
    item.insert(CREATED_AT.into(), n(created));
    item.insert(BY_TIME.pk.into(), s(ORDERS_BY_TIME));
    item.insert(BY_TIME.sk.into(), s(time_sort_key(created, id)));
    if let Some(owner) = &order.owner {
        let partition = owner_partition(owner);
        if partition.len() > 2048 {
            return Err(Error::invalid("an order owner is too long to index"));
        }
        item.insert(OWNER.into(), s(owner));
        item.insert(BY_OWNER.pk.into(), s(partition));
        item.insert(BY_OWNER.sk.into(), s(time_sort_key(created, id)));
    }
    item.insert(BODY.into(), s(to_json("order", &OrderRecord::from(order))?));
    Ok(item)
}

fn event_item(event: &OrderEvent, version: u64, index: usize) -> Result<Item> {
    let mut item = Key::order_event(event.order_id.as_str(), version, index)?.item();
    item.insert("at".into(), n(nanos(event.at)?));
    item.insert(BODY.into(), s(to_json("order event", &OrderEventRecord::from(event))?));
    Ok(item)
}

fn ledger_item(entry: &LedgerEntry) -> Result<Item> {
    let record = LedgerRecord::try_from(entry)?;
    let at = nanos(record.at)?;
    let mut item = Key::ledger(&record.id)?.item();
    item.insert(BY_TIME.pk.into(), s(LEDGER_BY_TIME));
    item.insert(BY_TIME.sk.into(), s(time_sort_key(at, &record.id)));
    item.insert(ORDER_ID.into(), s(&record.order_id));
    item.insert(CURRENCY.into(), s(&record.currency));
    item.insert(BODY.into(), s(to_json("ledger entry", &record)?));
    Ok(item)
}

/// An audit record with its place in the `by_time` index.
fn audit_item(record: &AuditRecord) -> Result<Item> {
    let at = nanos(record.at)?;
    let mut item = Key::audit(&record.id)?.item();
    item.insert(ID.into(), s(&record.id));
    item.insert(AT.into(), n(at));
    item.insert(ACTION.into(), s(&record.action));
    item.insert(TARGET.into(), s(&record.target));
    item.insert(ACTOR.into(), s(&record.actor));
    item.insert(REASON.into(), s(&record.reason));
    item.insert(TRACE_ID.into(), s(&record.trace_id));
    item.insert(FINGERPRINT.into(), s(&record.fingerprint));
    item.insert(DELTA.into(), n(record.delta));
    if let Some(q) = record.stock_after {
        item.insert(STOCK_AFTER.into(), n(q));
    }
    item.insert(BY_TIME.pk.into(), s(AUDIT_BY_TIME));
    item.insert(BY_TIME.sk.into(), s(time_sort_key(at, &record.id)));
    Ok(item)
}

fn audit_record(item: &Item) -> Result<AuditRecord> {
    const W: &str = "audit record";
    let at = get_n::<i64>(item, AT, W)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at))
        .map_err(|e| Error::internal(format!("stored time {at} is out of range: {e}")))?;
    let stock_after = match item.contains_key(STOCK_AFTER) {
        true => Some(get_n::<u32>(item, STOCK_AFTER, W)?),
        false => None,
    };
    Ok(AuditRecord {
        id: get_s(item, ID, W)?.to_owned(),
        action: get_s(item, ACTION, W)?.to_owned(),
        target: get_s(item, TARGET, W)?.to_owned(),
        actor: get_s(item, ACTOR, W)?.to_owned(),
        reason: get_s(item, REASON, W)?.to_owned(),
        trace_id: get_s(item, TRACE_ID, W)?.to_owned(),
        fingerprint: get_s(item, FINGERPRINT, W)?.to_owned(),
        delta: get_n::<i64>(item, DELTA, W)?,
        stock_after,
        at,
    })
}

/// A new outbox message: pending, due at its creation, listed in `by_time`
/// and claimable through `outbox_due`.
fn outbox_item(message: &OutboxMessage) -> Result<Item> {
    let id = message.id.as_str();
    let created = nanos(message.created_at)?;
    let mut item = Key::outbox(id)?.item();
    item.insert(ID.into(), s(id));
    item.insert(KIND.into(), s(message.kind.as_str()));
    item.insert(DESTINATION.into(), s(&message.destination));
    item.insert(PAYLOAD.into(), s(&message.payload));
    if let Some(order) = &message.order_id {
        item.insert(ORDER_ID.into(), s(order.as_str()));
    }
    item.insert(CREATED_AT.into(), n(created));
    item.insert(STATUS.into(), s(OutboxStatus::Pending.as_str()));
    item.insert(ATTEMPTS.into(), n(0));
    item.insert(NEXT_ATTEMPT_AT.into(), n(created));
    item.insert(BY_TIME.pk.into(), s(OUTBOX_BY_TIME));
    item.insert(BY_TIME.sk.into(), s(time_sort_key(created, id)));
    item.insert(DUE_INDEX.pk.into(), s(OUTBOX_DUE));
    item.insert(DUE_INDEX.sk.into(), s(time_sort_key(created, id)));
    Ok(item)
}

/// An outbox item read back, with its lease token when it has one.
fn outbox_entry(item: &Item) -> Result<(OutboxEntry, Option<String>)> {
    const W: &str = "outbox message";
    let optional_s = |name: &str| -> Result<Option<String>> {
        match item.get(name) {
            None => Ok(None),
            Some(_) => get_s(item, name, W).map(|v| Some(v.to_owned())),
        }
    };
    let time = |name: &str| -> Result<OffsetDateTime> {
        let nanos: i64 = get_n(item, name, W)?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .map_err(|e| Error::internal(format!("corrupt stored {W}: attribute {name}: {e}")))
    };
    let message = OutboxMessage {
        id: get_s(item, ID, W)?.to_owned(),
        kind: OutboxKind::parse(get_s(item, KIND, W)?).map_err(corrupt_outbox)?,
        destination: get_s(item, DESTINATION, W)?.to_owned(),
        payload: get_s(item, PAYLOAD, W)?.to_owned(),
        order_id: optional_s(ORDER_ID)?
            .map(|o| OrderId::parse(&o))
            .transpose()
            .map_err(corrupt_outbox)?,
        created_at: time(CREATED_AT)?,
    };
    let entry = OutboxEntry {
        message,
        status: OutboxStatus::parse(get_s(item, STATUS, W)?).map_err(corrupt_outbox)?,
        attempts: get_n(item, ATTEMPTS, W)?,
        next_attempt_at: time(NEXT_ATTEMPT_AT)?,
        last_error: optional_s(LAST_ERROR)?,
        delivered_at: match item.get(DELIVERED_AT) {
            None => None,
            Some(_) => Some(time(DELIVERED_AT)?),
        },
    };
    Ok((entry, optional_s(LEASE_TOKEN)?))
}

/// A stored outbox value this build cannot read is damage, not bad input.
fn corrupt_outbox(e: Error) -> Error {
    Error::internal(format!("corrupt stored outbox message: {e}"))
}

fn complete_names() -> std::collections::HashMap<String, String> {
    [("#state", STATE), ("#status", STATUS), ("#body", BODY), ("#exp", EXPIRES_AT)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn complete_values(response: &StoredResponse, now: i64) -> Item {
    Item::from([
        (":completed".to_owned(), s(COMPLETED)),
        (":in_progress".to_owned(), s(IN_PROGRESS)),
        (":status".to_owned(), n(response.status)),
        (":body".to_owned(), AttributeValue::B(Blob::new(response.body.clone()))),
        (":now".to_owned(), n(now)),
    ])
}

/// Reads an idempotency item, or `None` when it has expired by `now`.
fn idempotency_record(key: &str, item: &Item, now: i64) -> Result<Option<IdempotencyRecord>> {
    const W: &str = "idempotency record";
    let expires_at: i64 = get_n(item, EXPIRES_AT, W)?;
    if expires_at <= now {
        return Ok(None);
    }
    let state = match get_s(item, STATE, W)? {
        IN_PROGRESS => IdempotencyState::InProgress,
        COMPLETED => IdempotencyState::Completed(StoredResponse {
            status: get_n(item, STATUS, W)?,
            body: get_b(item, BODY, W)?.to_vec(),
        }),
        other => {
            return Err(Error::internal(format!("stored idempotency state {other:?} is unknown")))
        }
    };
    Ok(Some(IdempotencyRecord {
        key: key.to_owned(),
        fingerprint: get_s(item, FINGERPRINT, W)?.to_owned(),
        state,
        expires_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires_at))
            .map_err(|e| Error::internal(format!("stored expiry {expires_at}: {e}")))?,
    }))
}

#[async_trait]
impl Store for DynamoStore {
    /// Reads an item that never exists: proves the table is reachable and
    /// the credentials may read it, for the price of one read unit.
    async fn health(&self) -> Result<()> {
        self.get(&Key::health()).await.map(|_| ())
    }

    async fn insert_cart(&self, cart: &Cart) -> Result<()> {
        self.put_if_absent(cart_item(cart, 1)?)
            .await
            .map_err(|e| rename_exists(e, "cart", cart.id.as_str()))
    }

    async fn get_cart(&self, id: &CartId) -> Result<Option<Versioned<Cart>>> {
        let item = self.get(&Key::cart(id.as_str())?).await?;
        item.map(|i| versioned::<CartRecord, Cart>(&i, "cart")).transpose()
    }

    async fn update_cart(&self, cart: &Cart, expected: u64) -> Result<u64> {
        let id = cart.id.as_str();
        let key = Key::cart(id)?;
        // A version past u64::MAX was never handed out, so nothing matches.
        let Some(next) = expected.checked_add(1) else {
            return Err(self.cas_miss(&key, "cart", id).await);
        };
        self.put_if_version(&key, cart_item(cart, next)?, expected, "cart", id).await?;
        Ok(next)
    }

    async fn insert_checkout(&self, session: &CheckoutSession) -> Result<()> {
        self.put_if_absent(checkout_item(session, 1)?)
            .await
            .map_err(|e| rename_exists(e, "checkout session", session.id.as_str()))
    }

    async fn get_checkout(&self, id: &CheckoutId) -> Result<Option<Versioned<CheckoutSession>>> {
        let item = self.get(&Key::checkout(id.as_str())?).await?;
        item.map(|i| versioned::<CheckoutRecord, CheckoutSession>(&i, "checkout session"))
            .transpose()
    }

    async fn update_checkout(&self, session: &CheckoutSession, expected: u64) -> Result<u64> {
        let id = session.id.as_str();
        let key = Key::checkout(id)?;
        let Some(next) = expected.checked_add(1) else {
            return Err(self.cas_miss(&key, "checkout session", id).await);
        };
        let item = checkout_item(session, next)?;
        self.put_if_version(&key, item, expected, "checkout session", id).await?;
        Ok(next)
    }

    async fn get_order(&self, id: &OrderId) -> Result<Option<Versioned<Order>>> {
        let item = self.get(&Key::order(id.as_str())?).await?;
        item.map(|i| versioned::<OrderRecord, Order>(&i, "order")).transpose()
    }

    /// Newest first, through `by_owner` when an owner is given and
    /// `by_time` otherwise; a status filter is applied to each page, so
    /// pages are read until the limit is filled or the index ends.
    async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<Order>> {
        let limit = list_limit(filter.limit);
        let (index, partition): (Index, String) = match &filter.owner {
            Some(owner) => (BY_OWNER, owner_partition(owner)),
            None => (BY_TIME, ORDERS_BY_TIME.to_owned()),
        };
        // Both indexes sort by `time_sort_key`, so the time window and the
        // page position are one inclusive range on the sort key: a bare
        // time key sorts before every key of that time, and the cursor's
        // own order is dropped below.
        let low = time_key(filter.created_from.map_or(i64::MIN, nanos_clamped));
        let to = filter.created_to.map(|t| time_key(nanos_clamped(t)));
        let cursor =
            filter.before.as_ref().map(|(at, id)| time_sort_key(nanos_clamped(*at), id.as_str()));
        let high = match (to, cursor.clone()) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => time_key(i64::MAX),
        };
        if low > high {
            return Ok(Vec::new());
        }
        let skip = filter.before.as_ref().map(|(_, id)| id.as_str().to_owned());
        let mut req = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(index.name)
            .key_condition_expression("#ipk = :pk AND #isk BETWEEN :low AND :high")
            .expression_attribute_names("#ipk", index.pk)
            .expression_attribute_names("#isk", index.sk)
            .expression_attribute_values(":pk", s(partition))
            .expression_attribute_values(":low", s(low))
            .expression_attribute_values(":high", s(high))
            .scan_index_forward(false);
        // The cursor's own order is read (the range is inclusive) and
        // dropped, so one more is read.
        let want = limit + usize::from(skip.is_some());
        req = match filter.status {
            Some(status) => req
                .filter_expression("#status = :status")
                .expression_attribute_names("#status", STATUS)
                .expression_attribute_values(":status", s(status.as_str())),
            // Without a filter every item read is kept, so a page of exactly
            // the limit is all that is needed.
            None => req.limit(i32::try_from(want).unwrap_or(i32::MAX)),
        };
        let items = self.query_all(req, Some(want)).await?;
        let mut orders = Vec::with_capacity(limit);
        for item in items.iter().take(want) {
            let order =
                Order::try_from(from_json::<OrderRecord>("order", get_s(item, BODY, "order")?)?)?;
            if skip.as_deref() != Some(order.id.as_str()) && orders.len() < limit {
                orders.push(order);
            }
        }
        Ok(orders)
    }

    async fn order_events(&self, id: &OrderId) -> Result<Vec<OrderEvent>> {
        let items = self.order_collection(id, EVENT_PREFIX).await?;
        items
            .iter()
            .map(|item| {
                let body = get_s(item, BODY, "order event")?;
                OrderEvent::try_from(from_json::<OrderEventRecord>("order event", body)?)
            })
            .collect()
    }

    async fn order_mandates(&self, id: &OrderId) -> Result<Vec<String>> {
        let items = self.order_collection(id, MANDATE_PREFIX).await?;
        items.iter().map(|item| get_s(item, TOKEN, "order mandate").map(str::to_owned)).collect()
    }

    /// Without events or messages, a conditional put; with them, one
    /// transaction of the order's compare-and-set, a put-if-absent per event
    /// and a put-if-absent per outbox message.
    async fn update_order(
        &self,
        order: &Order,
        expected: u64,
        events: &[OrderEvent],
        outbox: &[OutboxMessage],
    ) -> Result<u64> {
        check_events(&order.id, events)?;
        check_outbox(Some(&order.id), outbox)?;
        let id = order.id.as_str();
        let key = Key::order(id)?;
        let Some(next) = expected.checked_add(1) else {
            return Err(self.cas_miss(&key, "order", id).await);
        };
        let item = order_item(order, next)?;
        if events.is_empty() && outbox.is_empty() {
            self.put_if_version(&key, item, expected, "order", id).await?;
            return Ok(next);
        }
        // Counted before anything is built or sent, so an oversized update
        // is refused whole with the limit in its message.
        let count = 1 + events.len() + outbox.len();
        if count > MAX_TRANSACTION_ITEMS {
            return Err(too_many_items(count));
        }
        let mut items = vec![self.put(item, Condition::Version(expected))?];
        for (index, event) in events.iter().enumerate() {
            items.push(self.put(event_item(event, next, index)?, Condition::Absent)?);
        }
        for message in outbox {
            items.push(self.put(outbox_item(message)?, Condition::Absent)?);
        }
        match self.transact(items).await {
            Ok(()) => Ok(next),
            Err(TxFailure::Failed(e)) => Err(e),
            Err(TxFailure::Canceled(reasons)) => match first_failed_condition(&reasons) {
                Some(0) => Err(self.cas_miss(&key, "order", id).await),
                Some(i) if i > events.len() => {
                    let message = outbox.get(i - 1 - events.len()).map_or("?", |m| m.id.as_str());
                    Err(already_exists("outbox message", message))
                }
                Some(_) => Err(already_exists("an event of order", id)),
                None => Err(Error::store(format!("order update cancelled: {}", codes(&reasons)))),
            },
        }
    }

    async fn idempotency_begin(
        &self,
        key: &str,
        fingerprint: &str,
        expires_at: OffsetDateTime,
    ) -> Result<IdempotencyBegin> {
        let ikey = Key::idempotency(key)?;
        let expires = nanos(expires_at)?;
        let mut item = ikey.item();
        item.insert(FINGERPRINT.into(), s(fingerprint));
        item.insert(STATE.into(), s(IN_PROGRESS));
        item.insert(EXPIRES_AT.into(), n(expires));
        item.insert(TTL.into(), n(ttl_seconds(expires)));
        // Losing the put to a record that is then released or expires
        // before it can be read is possible here (SQLite does both in one
        // transaction), so the put is tried again a few times.
        for _ in 0..BEGIN_ATTEMPTS {
            let now = self.now();
            // Put-if-absent, where an expired record counts as absent and is
            // replaced whole.
            let req = self
                .client
                .put_item()
                .table_name(&*self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(#pk) OR #exp <= :now")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":now", n(now));
            match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
                Ok(_) => return Ok(IdempotencyBegin::Started),
                Err(e) if is_condition_failure(&e) => {}
                Err(e) => return Err(failed("PutItem", &e)),
            }
            let Some(existing) = self.get(&ikey).await? else { continue };
            if let Some(record) = idempotency_record(key, &existing, self.now())? {
                return Ok(IdempotencyBegin::Existing(record));
            }
        }
        Err(Error::store("the idempotency record kept changing while it was being taken"))
    }

    async fn idempotency_complete(&self, key: &str, response: &StoredResponse) -> Result<()> {
        let ikey = Key::idempotency(key)?;
        let now = self.now();
        let req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(ikey.item()))
            .update_expression("SET #state = :completed, #status = :status, #body = :body")
            .condition_expression("#state = :in_progress AND #exp > :now")
            .set_expression_attribute_names(Some(complete_names()))
            .set_expression_attribute_values(Some(complete_values(response, now)));
        match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => {
                // Nothing was in progress under the key: say why.
                let record = match self.get(&ikey).await? {
                    Some(item) => idempotency_record(key, &item, now)?,
                    None => None,
                };
                match record {
                    Some(_) => Err(Error::new(
                        ErrorCode::AlreadyExists,
                        "a response is already stored under this idempotency key",
                    )),
                    None => Err(Error::not_found("the idempotency key is not held")),
                }
            }
            Err(e) => Err(failed("UpdateItem", &e)),
        }
    }

    async fn idempotency_release(&self, key: &str) -> Result<()> {
        // Only an in-progress record is released: a completed one is the
        // answer retries must replay.
        let req = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(Key::idempotency(key)?.item()))
            .condition_expression("#state = :in_progress")
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":in_progress", s(IN_PROGRESS));
        match self.send(Resend::Always, || req.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(failed("DeleteItem", &e)),
        }
    }

    async fn idempotency_get(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        let now = self.now();
        match self.get(&Key::idempotency(key)?).await? {
            Some(item) => idempotency_record(key, &item, now),
            None => Ok(None),
        }
    }

    /// The counter the checkout commit keeps per code (see
    /// `commit_items`); a code never used has no item and counts zero.
    async fn discount_uses(&self, code: &str) -> Result<u64> {
        match self.get(&Key::discount_uses(code)?).await? {
            Some(item) => get_n(&item, USES, "discount use count"),
            None => Ok(0),
        }
    }

    async fn reserve_mandate_id(&self, id: &str, keep_until: OffsetDateTime) -> Result<bool> {
        let keep = nanos(keep_until)?;
        let mut item = Key::mandate_id(id)?.item();
        item.insert(KEEP_UNTIL.into(), n(keep));
        item.insert(TTL.into(), n(ttl_seconds(keep)));
        let req = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #keep <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#keep", KEEP_UNTIL)
            .expression_attribute_values(":now", n(self.now()));
        match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(failed("PutItem", &e)),
        }
    }

    async fn mark_webhook_seen(&self, source: &str, event_id: &str) -> Result<bool> {
        let mut item = Key::webhook(source, event_id)?.item();
        item.insert(SEEN_AT.into(), n(self.now()));
        match self.put_if_absent(item).await {
            Ok(()) => Ok(true),
            Err(e) if e.code() == ErrorCode::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn forget_webhook(&self, source: &str, event_id: &str) -> Result<()> {
        // Unconditional, so resending after an ambiguous failure is safe,
        // and forgetting an id never seen is no error (as in SQLite).
        let req = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(Key::webhook(source, event_id)?.item()));
        self.send(Resend::Always, || req.clone().send())
            .await
            .map_err(|e| failed("DeleteItem", &e))?;
        Ok(())
    }

    async fn set_stock(&self, sku: &Sku, quantity: u32) -> Result<()> {
        let mut item = Key::stock(sku.as_str())?.item();
        item.insert(QUANTITY.into(), n(quantity));
        let req = self.client.put_item().table_name(&*self.table).set_item(Some(item));
        self.send(Resend::Always, || req.clone().send())
            .await
            .map_err(|e| failed("PutItem", &e))?;
        Ok(())
    }

    async fn get_stock(&self, sku: &Sku) -> Result<Option<u32>> {
        let item = self.get(&Key::stock(sku.as_str())?).await?;
        item.map(|i| get_n::<u32>(&i, QUANTITY, "stock")).transpose()
    }

    async fn decrement_stock(&self, sku: &Sku, quantity: u32) -> Result<u32> {
        let req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::stock(sku.as_str())?.item()))
            .update_expression("SET #q = #q - :q")
            .condition_expression("#q >= :q")
            .expression_attribute_names("#q", QUANTITY)
            .expression_attribute_values(":q", n(quantity))
            .return_values(ReturnValue::AllNew);
        match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
            Ok(out) => get_n::<u32>(&out.attributes.unwrap_or_default(), QUANTITY, "stock"),
            Err(e) if is_condition_failure(&e) => Err(insufficient(sku.as_str())),
            Err(e) => Err(failed("UpdateItem", &e)),
        }
    }

    /// One conditional update either way, as in SQLite: a removal larger
    /// than what is left is `insufficient_stock` and changes nothing, an
    /// addition past `u32::MAX` is `invalid_input`, and a SKU without an
    /// item starts from zero.
    async fn adjust_stock(&self, sku: &Sku, delta: i64) -> Result<u32> {
        let key = Key::stock(sku.as_str())?;
        let sku = sku.as_str();
        let req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key.item()))
            .expression_attribute_names("#q", QUANTITY)
            .return_values(ReturnValue::AllNew);
        let req = if delta >= 0 {
            let too_many =
                || Error::invalid(format!("stock of SKU {sku} cannot exceed {}", u32::MAX));
            let add = u32::try_from(delta).map_err(|_| too_many())?;
            req.update_expression("SET #q = if_not_exists(#q, :zero) + :d")
                .condition_expression("attribute_not_exists(#q) OR #q <= :room")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":d", n(add))
                .expression_attribute_values(":room", n(u32::MAX - add))
        } else {
            req.update_expression("SET #q = #q - :d")
                .condition_expression("#q >= :d")
                .expression_attribute_values(":d", n(delta.unsigned_abs()))
        };
        match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
            Ok(out) => get_n::<u32>(&out.attributes.unwrap_or_default(), QUANTITY, "stock"),
            Err(e) if is_condition_failure(&e) && delta >= 0 => {
                Err(Error::invalid(format!("stock of SKU {sku} cannot exceed {}", u32::MAX)))
            }
            Err(e) if is_condition_failure(&e) => Err(Error::new(
                ErrorCode::InsufficientStock,
                format!("removing {} units would take SKU {sku} below zero", delta.unsigned_abs()),
            )),
            Err(e) => Err(failed("UpdateItem", &e)),
        }
    }

    /// A compare-and-set on the stock item and a put-if-absent of the
    /// record in one transaction. The stock is read first so the record
    /// can carry what is left; if a checkout took units in between, the
    /// transaction's stock condition fails and the adjustment re-reads
    /// and tries again, so no decrement is lost and the stock never goes
    /// below zero.
    async fn adjust_stock_audited(&self, sku: &Sku, record: &AuditRecord) -> Result<AuditedStock> {
        let audit_key = Key::audit(&record.id)?;
        let stock_key = Key::stock(sku.as_str())?;
        let name = sku.as_str();
        for _ in 0..STOCK_CAS_ROUNDS {
            if let Some(item) = self.get(&audit_key).await? {
                return Ok(AuditedStock::Existing(audit_record(&item)?));
            }
            let current = self
                .get(&stock_key)
                .await?
                .map(|i| get_n::<u32>(&i, QUANTITY, "stock"))
                .transpose()?;
            let base = current.unwrap_or(0);
            let next = i128::from(base) + i128::from(record.delta);
            if next < 0 {
                return Err(Error::new(
                    ErrorCode::InsufficientStock,
                    format!(
                        "removing {} units would take SKU {name} below zero ({base} left)",
                        record.delta.unsigned_abs()
                    ),
                ));
            }
            let next = u32::try_from(next).map_err(|_| {
                Error::invalid(format!("stock of SKU {name} cannot exceed {}", u32::MAX))
            })?;
            let update = Update::builder()
                .table_name(&*self.table)
                .set_key(Some(stock_key.item()))
                .update_expression("SET #q = :next")
                .expression_attribute_names("#q", QUANTITY)
                .expression_attribute_values(":next", n(next));
            let update = match current {
                Some(q) => update
                    .condition_expression("#q = :current")
                    .expression_attribute_values(":current", n(q)),
                None => update.condition_expression("attribute_not_exists(#q)"),
            };
            let update = update.build().map_err(build_failed)?;
            let mut applied = record.clone();
            applied.stock_after = Some(next);
            let items = vec![
                TransactWriteItem::builder().update(update).build(),
                self.put(audit_item(&applied)?, Condition::Absent)?,
            ];
            match self.transact(items).await {
                Ok(()) => return Ok(AuditedStock::Applied(applied)),
                Err(TxFailure::Failed(e)) => return Err(e),
                // The stock moved, or the same key landed concurrently:
                // the next round re-reads both.
                Err(TxFailure::Canceled(reasons)) if first_failed_condition(&reasons).is_some() => {
                    continue
                }
                Err(TxFailure::Canceled(reasons)) => {
                    return Err(Error::store(format!(
                        "stock adjustment cancelled: {}",
                        codes(&reasons)
                    )))
                }
            }
        }
        Err(Error::new(
            ErrorCode::VersionConflict,
            format!("the stock of SKU {name} is changing too fast to adjust; retry"),
        ))
    }

    /// Newest first through the `by_time` index; a target filter is applied
    /// to each page until the limit is filled.
    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let limit = list_limit(filter.limit);
        let mut req = self.by_time_partition(AUDIT_BY_TIME).scan_index_forward(false);
        req = match &filter.target {
            Some(t) => req
                .filter_expression("#target = :target")
                .expression_attribute_names("#target", TARGET)
                .expression_attribute_values(":target", s(t)),
            None => req.limit(i32::try_from(limit).unwrap_or(i32::MAX)),
        };
        let items = self.query_all(req, Some(limit)).await?;
        items.iter().take(limit).map(audit_record).collect()
    }

    /// Through the sparse `CHECKOUT_ATTENTION` partition of `by_time`,
    /// oldest change first.
    async fn checkouts_needing_attention(&self, limit: u32) -> Result<Vec<CheckoutSession>> {
        let limit = list_limit(limit);
        let req = self
            .by_time_partition(CHECKOUTS_NEEDING_ATTENTION)
            .scan_index_forward(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        let items = self.query_all(req, Some(limit)).await?;
        items
            .iter()
            .take(limit)
            .map(|item| {
                let body = get_s(item, BODY, "checkout session")?;
                CheckoutSession::try_from(from_json::<CheckoutRecord>("checkout session", body)?)
            })
            .collect()
    }

    async fn append_ledger(&self, entry: &LedgerEntry) -> Result<()> {
        self.put_if_absent(ledger_item(entry)?)
            .await
            .map_err(|e| rename_exists(e, "ledger entry", &entry.id))
    }

    /// `[from, to)` through the `by_time` index: the sort keys of the range
    /// lie between the bare time keys of its bounds.
    async fn ledger_entries(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        currency: Option<Currency>,
    ) -> Result<Vec<LedgerEntry>> {
        let (from, to) = (nanos_clamped(from), nanos_clamped(to));
        if from >= to {
            return Ok(Vec::new());
        }
        let mut req = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(BY_TIME.name)
            .key_condition_expression("#tpk = :pk AND #tsk BETWEEN :from AND :to")
            .expression_attribute_names("#tpk", BY_TIME.pk)
            .expression_attribute_names("#tsk", BY_TIME.sk)
            .expression_attribute_values(":pk", s(LEDGER_BY_TIME))
            .expression_attribute_values(":from", s(time_key(from)))
            .expression_attribute_values(":to", s(time_key(to)));
        if let Some(c) = currency {
            req = req
                .filter_expression("#cur = :cur")
                .expression_attribute_names("#cur", CURRENCY)
                .expression_attribute_values(":cur", s(c.code()));
        }
        let items = self.query_all(req, None).await?;
        items
            .iter()
            .map(|item| {
                let body = get_s(item, BODY, "ledger entry")?;
                LedgerEntry::try_from(from_json::<LedgerRecord>("ledger entry", body)?)
            })
            .collect()
    }

    /// One `TransactWriteItems` of, in this order: the session's
    /// compare-and-set, a conditional decrement per distinct SKU, the order
    /// and its checkout guard (put-if-absent), the events, the ledger entry,
    /// the mandates, a use count per discount code, the outbox messages
    /// (put-if-absent), and the idempotency response. That is
    /// [`COMMIT_FIXED_ITEMS`] + SKUs + events + mandates + codes + messages
    /// items, at most
    /// [`MAX_TRANSACTION_ITEMS`]; a larger commit is refused before anything
    /// is written.
    ///
    /// The idempotency record is included only when it is held. If it is
    /// released or expires between that read and the commit, its condition
    /// cancels the transaction and the commit runs again without it: as in
    /// SQLite, a charged order is not thrown away for its replay record.
    async fn commit_checkout(&self, commit: &CheckoutCommit) -> Result<()> {
        check_commit(commit)?;
        let mut idempotency = match &commit.idempotency {
            Some((key, response)) if self.idempotency_held(key, self.now()).await? => {
                Some((key.as_str(), response))
            }
            Some(_) => {
                tracing::warn!(
                    order = %commit.order.id,
                    "idempotency key not in progress at commit; response not stored"
                );
                None
            }
            None => None,
        };
        loop {
            let (items, roles) = self.commit_items(commit, idempotency, self.now())?;
            let reasons = match self.transact(items).await {
                Ok(()) => return Ok(()),
                Err(TxFailure::Failed(e)) => return Err(e),
                Err(TxFailure::Canceled(reasons)) => reasons,
            };
            let order = commit.order.id.as_str();
            let session = commit.session.id.as_str();
            let error = match first_failed_condition(&reasons).and_then(|i| roles.get(i)) {
                Some(Role::Idempotency) => {
                    tracing::warn!(
                        order,
                        "idempotency key released or expired during commit; response not stored"
                    );
                    idempotency = None;
                    continue;
                }
                Some(Role::Session) => {
                    self.cas_miss(&Key::checkout(session)?, "checkout session", session).await
                }
                Some(Role::Stock(sku)) => insufficient(sku),
                Some(Role::Order | Role::CheckoutOrder) => Error::new(
                    ErrorCode::AlreadyExists,
                    format!("order {order} or an order for checkout {session} already exists"),
                ),
                Some(Role::Ledger(id)) => already_exists("ledger entry", id),
                Some(Role::Outbox(id)) => already_exists("outbox message", id),
                Some(Role::Event | Role::Mandate | Role::DiscountUse) => {
                    already_exists("an event or mandate of order", order)
                }
                None => Error::store(format!("checkout commit cancelled: {}", codes(&reasons))),
            };
            return Err(error);
        }
    }
    /// Reads candidates from the sparse `outbox_due` index (pending, due by
    /// `now`, no live lease), then takes each with a conditional update
    /// that re-checks all three on the item itself. The index is eventually
    /// consistent and other workers read it too, so the conditional update,
    /// not the query, is what makes a lease exclusive: of two workers
    /// racing for one message, one update fails its condition and that
    /// worker moves on to the next candidate.
    async fn claim_outbox(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxLease>> {
        let now_n = nanos_clamped(now);
        let until = now + lease;
        let until_n = nanos(until)?;
        let limit = limit.max(1) as usize;
        // Sort keys of messages due at `now` or before sort below the bare
        // time key of the next nanosecond.
        let bound = time_key(now_n.saturating_add(1));
        let request = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(DUE_INDEX.name)
            .key_condition_expression("#dpk = :due AND #dsk < :bound")
            .filter_expression("attribute_not_exists(#lu) OR #lu <= :now")
            .expression_attribute_names("#dpk", DUE_INDEX.pk)
            .expression_attribute_names("#dsk", DUE_INDEX.sk)
            .expression_attribute_names("#lu", LEASE_UNTIL)
            .expression_attribute_values(":due", s(OUTBOX_DUE))
            .expression_attribute_values(":bound", s(bound))
            .expression_attribute_values(":now", n(now_n));
        let mut leases = Vec::new();
        let mut start: Option<Item> = None;
        'pages: loop {
            let req = request.clone().set_exclusive_start_key(start.take());
            let page = self
                .send(Resend::Always, || req.clone().send())
                .await
                .map_err(|e| failed("Query", &e))?;
            for candidate in page.items.unwrap_or_default() {
                let id = get_s(&candidate, ID, "outbox message")?.to_owned();
                if let Some(lease) = self.lease_outbox(&id, now_n, until, until_n).await? {
                    leases.push(lease);
                    if leases.len() >= limit {
                        break 'pages;
                    }
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        leases.sort_by(|a, b| {
            (a.message.created_at, &a.message.id).cmp(&(b.message.created_at, &b.message.id))
        });
        Ok(leases)
    }

    /// Only under the lease's token while pending, as in SQLite; a message
    /// that leaves the pending state also leaves the `outbox_due` index.
    async fn finish_outbox(&self, lease: &OutboxLease, result: &OutboxResult) -> Result<()> {
        let id = lease.message.id.as_str();
        let mut names: Vec<(&str, &str)> = vec![
            ("#status", STATUS),
            ("#tok", LEASE_TOKEN),
            ("#lu", LEASE_UNTIL),
            ("#att", ATTEMPTS),
            ("#dsk", DUE_INDEX.sk),
        ];
        let mut values = Item::from([
            (":pending".to_owned(), s(OutboxStatus::Pending.as_str())),
            (":tok".to_owned(), s(&lease.token)),
            (":one".to_owned(), n(1)),
        ]);
        let update = match result {
            // DynamoDB refuses a name the expressions do not use, so
            // `#dpk` is named only by the results that take the message out
            // of the due index.
            OutboxResult::Delivered => {
                names.push(("#dat", DELIVERED_AT));
                names.push(("#dpk", DUE_INDEX.pk));
                values.insert(":status".into(), s(OutboxStatus::Delivered.as_str()));
                values.insert(":dat".into(), n(self.now()));
                "SET #status = :status, #att = #att + :one, #dat = :dat \
                 REMOVE #tok, #lu, #dpk, #dsk"
            }
            OutboxResult::Retry { at, error } => {
                let at = nanos(*at)?;
                names.push(("#next", NEXT_ATTEMPT_AT));
                names.push(("#err", LAST_ERROR));
                values.insert(":next".into(), n(at));
                values.insert(":err".into(), s(error));
                values.insert(":dsk".into(), s(time_sort_key(at, id)));
                "SET #att = #att + :one, #next = :next, #err = :err, #dsk = :dsk \
                 REMOVE #tok, #lu"
            }
            OutboxResult::Dead { error } => {
                names.push(("#err", LAST_ERROR));
                names.push(("#dpk", DUE_INDEX.pk));
                values.insert(":status".into(), s(OutboxStatus::Dead.as_str()));
                values.insert(":err".into(), s(error));
                "SET #status = :status, #att = #att + :one, #err = :err \
                 REMOVE #tok, #lu, #dpk, #dsk"
            }
        };
        let names = names
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<BTreeMap<_, _>>();
        let req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(Key::outbox(id)?.item()))
            .update_expression(update)
            .condition_expression("#status = :pending AND #tok = :tok")
            .set_expression_attribute_names(Some(names.into_iter().collect()))
            .set_expression_attribute_values(Some(values));
        match self.send(Resend::OnlyIfThrottled, || req.clone().send()).await {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(Error::new(
                ErrorCode::VersionConflict,
                format!("outbox message {id} is no longer leased under this token"),
            )),
            Err(e) => Err(failed("UpdateItem", &e)),
        }
    }

    /// Oldest first through `by_time` (partition `OUTBOX`), filtered per
    /// page. Eventually consistent, like every index read: an operator
    /// view.
    async fn outbox_entries(&self, filter: &OutboxFilter) -> Result<Vec<OutboxEntry>> {
        let limit = list_limit(filter.limit);
        let mut req = self.by_time_partition(OUTBOX_BY_TIME);
        let mut conditions = Vec::new();
        if let Some(order) = &filter.order_id {
            conditions.push("#oid = :oid");
            req = req
                .expression_attribute_names("#oid", ORDER_ID)
                .expression_attribute_values(":oid", s(order.as_str()));
        }
        if let Some(status) = filter.status {
            conditions.push("#status = :status");
            req = req
                .expression_attribute_names("#status", STATUS)
                .expression_attribute_values(":status", s(status.as_str()));
        }
        if !conditions.is_empty() {
            req = req.filter_expression(conditions.join(" AND "));
        }
        let items = self.query_all(req, Some(limit)).await?;
        items.iter().take(limit).map(|item| outbox_entry(item).map(|(e, _)| e)).collect()
    }
}

/// Gives a put-if-absent's generic `already_exists` the name of what
/// exists.
fn rename_exists(e: Error, what: &str, id: &str) -> Error {
    if e.code() == ErrorCode::AlreadyExists {
        already_exists(what, id)
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};

    use crate::domain::order::PaymentRecord;
    use crate::domain::{Money, OrderEventKind, OrderStatus, Totals};
    use crate::settings::DynamoSettings;

    /// A fake DynamoDB endpoint that answers each request with the next
    /// scripted answer (then `{}`), and records what it was asked.
    #[derive(Default)]
    struct Script {
        answers: Mutex<VecDeque<(u16, String)>>,
        /// (operation, request body) in arrival order.
        seen: Mutex<Vec<(String, serde_json::Value)>>,
    }

    impl Script {
        fn operations(&self) -> Vec<String> {
            self.seen.lock().unwrap().iter().map(|(op, _)| op.clone()).collect()
        }

        fn tokens(&self) -> Vec<String> {
            let seen = self.seen.lock().unwrap();
            seen.iter()
                .filter_map(|(_, b)| b["ClientRequestToken"].as_str().map(str::to_owned))
                .collect()
        }
    }

    fn service_error(status: u16, code: &str, extra: serde_json::Value) -> (u16, String) {
        let mut body = serde_json::json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
            "message": "scripted",
        });
        if let (Some(b), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        (status, body.to_string())
    }

    fn throttled() -> (u16, String) {
        service_error(400, "ThrottlingException", serde_json::json!({}))
    }

    fn server_fault() -> (u16, String) {
        service_error(500, "InternalServerError", serde_json::json!({}))
    }

    async fn answer(
        State(script): State<Arc<Script>>,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, [(&'static str, &'static str); 1], String) {
        let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
        let op = target.rsplit('.').next().unwrap_or("").to_owned();
        let json = serde_json::from_str(&body).unwrap_or_default();
        script.seen.lock().unwrap().push((op, json));
        let (status, body) =
            script.answers.lock().unwrap().pop_front().unwrap_or((200, "{}".to_owned()));
        let status = StatusCode::from_u16(status).unwrap();
        (status, [("content-type", "application/x-amz-json-1.0")], body)
    }

    /// A store on the scripted endpoint, with waits short enough for a test.
    async fn scripted(answers: Vec<(u16, String)>) -> (DynamoStore, Arc<Script>) {
        let script = Arc::new(Script { answers: Mutex::new(answers.into()), ..Script::default() });
        let app = axum::Router::new().fallback(answer).with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let settings = DynamoSettings {
            table: "scripted".into(),
            endpoint_url: Some(url),
            region: Some("us-east-1".into()),
        };
        let client = super::super::client(&settings).await.unwrap();
        let backoff =
            Backoff { attempts: 4, base: Duration::from_millis(1), cap: Duration::from_millis(4) };
        (DynamoStore::new(client, "scripted").with_backoff(backoff), script)
    }

    #[tokio::test]
    async fn throttling_is_retried_a_bounded_number_of_times() {
        let (store, script) = scripted(vec![throttled(), throttled()]).await;
        store.health().await.unwrap();
        assert_eq!(script.operations(), ["GetItem"; 3]);

        let (store, script) = scripted(vec![throttled(); 4]).await;
        let err = store.health().await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::StoreUnavailable);
        assert_eq!(script.operations().len(), 4, "the attempts are bounded");

        // A conditional write that was throttled was not applied: resent.
        let quantity = serde_json::json!({"Attributes": {"quantity": {"N": "4"}}}).to_string();
        let (store, script) = scripted(vec![throttled(), (200, quantity)]).await;
        let left = store.decrement_stock(&Sku::parse("S").unwrap(), 1).await.unwrap();
        assert_eq!((left, script.operations().len()), (4, 2));
    }

    /// After a server fault a read is resent, but a conditional write is
    /// not: it may have landed, and its resend would fail its condition.
    #[tokio::test]
    async fn ambiguous_failures_resend_only_what_is_safe() {
        let item = serde_json::json!({"Item": {"quantity": {"N": "5"}}}).to_string();
        let (store, script) = scripted(vec![server_fault(), (200, item)]).await;
        let got = store.get_stock(&Sku::parse("S").unwrap()).await.unwrap();
        assert_eq!((got, script.operations().len()), (Some(5), 2));

        let (store, script) = scripted(vec![server_fault()]).await;
        let err = store.decrement_stock(&Sku::parse("S").unwrap(), 1).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::StoreUnavailable);
        let err = store.mark_webhook_seen("stripe", "evt_1").await;
        assert!(err.is_ok(), "the next call is answered normally");
        assert_eq!(script.operations(), ["UpdateItem", "PutItem"], "nothing was resent");
    }

    fn order() -> (Order, Vec<OrderEvent>) {
        let usd = |m| Money::new(m, Currency::usd());
        let totals = Totals::compute(Currency::usd(), &[], usd(0), usd(0), usd(0)).unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let order = Order::new(
            OrderId::parse("ord_1").unwrap(),
            CheckoutId::parse("chk_1").unwrap(),
            OrderStatus::Paid,
            None,
            None,
            vec![],
            totals,
            usd(0),
            PaymentRecord { processor: "sandbox".into(), reference: "ch".into(), amount: usd(0) },
            at,
        );
        let event = OrderEvent {
            order_id: order.id.clone(),
            at,
            kind: OrderEventKind::Note { text: "n".into() },
            actor: "ops".into(),
            reason: "r".into(),
            trace_id: "t".into(),
        };
        (order, vec![event])
    }

    /// A transaction cancelled by contention alone is tried again as a new
    /// attempt (a new token); one resent after a server fault keeps its
    /// token, so DynamoDB applies it at most once.
    #[tokio::test]
    async fn transactions_retry_contention_with_new_tokens_and_faults_with_the_same() {
        let (order, events) = order();
        let conflict = service_error(
            400,
            "TransactionCanceledException",
            serde_json::json!({"CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]}),
        );
        let (store, script) = scripted(vec![conflict.clone()]).await;
        assert_eq!(store.update_order(&order, 1, &events, &[]).await.unwrap(), 2);
        let tokens = script.tokens();
        assert_eq!(tokens.len(), 2);
        assert_ne!(tokens[0], tokens[1]);

        let (store, script) = scripted(vec![server_fault()]).await;
        assert_eq!(store.update_order(&order, 1, &events, &[]).await.unwrap(), 2);
        let tokens = script.tokens();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0], tokens[1]);

        // Contention that outlasts the attempts is a retryable error.
        let (store, script) = scripted(vec![conflict; 4]).await;
        let err = store.update_order(&order, 1, &events, &[]).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::StoreUnavailable);
        assert_eq!(script.operations().len(), 4);

        // A failed condition is an answer: not retried, and mapped.
        let stale = service_error(
            400,
            "TransactionCanceledException",
            serde_json::json!({"CancellationReasons": [{"Code": "ConditionalCheckFailed"}, {"Code": "None"}]}),
        );
        let exists = serde_json::json!({"Item": {"pk": {"S": "ORDER#ord_1"}}}).to_string();
        let (store, script) = scripted(vec![stale, (200, exists)]).await;
        let err = store.update_order(&order, 1, &events, &[]).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::VersionConflict);
        assert_eq!(script.operations(), ["TransactWriteItems", "GetItem"]);
    }

    #[test]
    fn the_first_failed_condition_decides() {
        let reasons = |codes: &[&str]| -> Vec<CancellationReason> {
            codes.iter().map(|c| CancellationReason::builder().code(*c).build()).collect()
        };
        let cases: [(&[&str], Option<usize>); 4] = [
            (&["None", "None"], None),
            (&["ConditionalCheckFailed", "ConditionalCheckFailed"], Some(0)),
            (&["None", "TransactionConflict", "ConditionalCheckFailed"], Some(2)),
            (&[], None),
        ];
        for (codes, want) in cases {
            assert_eq!(first_failed_condition(&reasons(codes)), want, "{codes:?}");
        }
    }
}
