//! The durable store on the embedded SQLite database: the default
//! implementation of the [`Store`] port.
//!
//! Entities (carts, checkout sessions, orders, order events) are kept as
//! JSON records from `adapters::records` in a `body` column, next to the few
//! columns that queries and constraints need (version, status, owner,
//! times). Everything else (idempotency records, mandate ids, webhook ids,
//! ledger, stock) is plain columns.
//!
//! The atomic operations of the port map onto SQLite like this:
//! - put-if-absent: `INSERT … ON CONFLICT DO NOTHING`, then the row count;
//! - compare-and-set: `UPDATE … SET version = version + 1 WHERE id = ? AND
//!   version = ?`, with a second look to tell `version_conflict` from
//!   `not_found`;
//! - conditional decrement: `UPDATE stock … WHERE quantity >= ?`;
//! - the checkout commit: one savepoint that rolls back on the first failed
//!   condition.
//!
//! Every write goes through the single writer thread of [`Db`], so writes
//! are serialised in this process. Each write runs in its own savepoint
//! inside a `BEGIN IMMEDIATE` transaction the writer shares among the
//! writes queued together; `BEGIN IMMEDIATE` also keeps a second process
//! (a CLI import) from interleaving.
//!
//! Times that are compared in SQL (expiry, ledger ranges, order listing) are
//! stored as INTEGER Unix nanoseconds, which sort and compare exactly; the
//! JSON bodies keep RFC 3339 with the original offset.
//!
//! Expiry: idempotency records and mandate ids past their expiry read as
//! absent and can be taken over, whether or not a purge has deleted them.
//! Carts and checkout sessions are returned even when expired: the domain's
//! `is_expired` decides, so the gateway can answer `session_expired` instead
//! of `not_found`, and completed sessions never expire.
//!
//! This module must not know the catalog's tables; the only table the two
//! share is `stock`, created by [`super::db::STOCK_MIGRATION`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;

use super::db::{CachedExt, Db, Migration};
use crate::adapters::records::{
    check_commit, check_events, check_outbox, from_json, to_json, CartRecord, CheckoutRecord,
    LedgerRecord, OrderEventRecord, OrderRecord, SCHEMA_VERSION,
};
use crate::domain::{
    Cart, CartId, CheckoutId, CheckoutSession, Currency, Error, ErrorCode, LedgerEntry, Order,
    OrderEvent, OrderId, Result, Sku,
};
use crate::ports::{
    AuditFilter, AuditRecord, AuditedStock, CheckoutCommit, Clock, IdempotencyBegin,
    IdempotencyRecord, IdempotencyState, OrderFilter, OutboxEntry, OutboxFilter, OutboxKind,
    OutboxLease, OutboxMessage, OutboxResult, OutboxStatus, Store, StoredResponse, SystemClock,
    Versioned,
};

/// The file name of the database inside the data dir.
pub const DB_FILE: &str = "agentgate.db";

/// `list_orders` answers at most this many orders, whatever is asked.
pub const MAX_LIST_LIMIT: u32 = 500;
/// What `list_orders` answers when the filter names no limit (0).
pub const DEFAULT_LIST_LIMIT: u32 = 50;

/// Expired rows are purged on every this many writes of expiring records,
/// so the tables stay small without a background task.
const PURGE_EVERY: u64 = 256;
/// Rows deleted per table per purge, so one purge never holds the writer
/// for long.
const PURGE_BATCH: i64 = 1000;

/// The store's schema. Applied after [`super::db::STOCK_MIGRATION`]; new
/// steps go at the end.
pub const MIGRATIONS: &[Migration] = &[STORE_001_TABLES, STORE_002_OUTBOX, STORE_003_AUDIT];

/// The operator audit log: one row per side-effecting operator action,
/// written in the transaction of its effect. Append-only like
/// `order_events`.
const STORE_003_AUDIT: Migration = (
    "store_003_audit",
    "
    CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        action TEXT NOT NULL CHECK (length(action) > 0),
        target TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        trace_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        delta INTEGER NOT NULL,
        stock_after INTEGER CHECK (stock_after >= 0)
    ) STRICT;
    CREATE INDEX audit_log_by_time ON audit_log (at);
    CREATE INDEX audit_log_by_target ON audit_log (target, at);
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only');
    END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only');
    END;
    -- Operators list the sessions that wait for someone.
    CREATE INDEX checkouts_by_status ON checkouts (status);
    ",
);

/// The outbox: deliveries written in the transaction of the change that
/// causes them. A message is `pending` until delivered or dead; a pending
/// one with a live lease (`lease_until` in the future) belongs to the
/// worker holding `lease_token`.
const STORE_002_OUTBOX: Migration = (
    "store_002_outbox",
    "
    CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('order_webhook', 'notification')),
        destination TEXT NOT NULL CHECK (length(destination) > 0),
        payload TEXT NOT NULL CHECK (json_valid(payload)),
        order_id TEXT,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL CHECK (attempts >= 0),
        next_attempt_at INTEGER NOT NULL,
        lease_token TEXT,
        lease_until INTEGER,
        last_error TEXT,
        delivered_at INTEGER,
        CHECK ((lease_token IS NULL) = (lease_until IS NULL)),
        CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
    ) STRICT;
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    CREATE INDEX outbox_by_order ON outbox (order_id, created_at);
    ",
);

const STORE_001_TABLES: Migration = (
    "store_001_tables",
    "
    CREATE TABLE carts (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL CHECK (version >= 1),
        status TEXT NOT NULL CHECK (status IN ('active', 'canceled')),
        owner TEXT,
        expires_at INTEGER NOT NULL,
        body TEXT NOT NULL CHECK (json_valid(body))
    ) STRICT;

    CREATE TABLE checkouts (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL CHECK (version >= 1),
        status TEXT NOT NULL CHECK (status IN ('incomplete', 'requires_escalation',
            'ready_for_complete', 'complete_in_progress', 'completed', 'canceled')),
        owner TEXT,
        expires_at INTEGER NOT NULL,
        body TEXT NOT NULL CHECK (json_valid(body))
    ) STRICT;

    CREATE TABLE orders (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL CHECK (version >= 1),
        checkout_id TEXT NOT NULL UNIQUE,
        owner TEXT,
        status TEXT NOT NULL CHECK (status IN ('created', 'paid', 'partially_fulfilled',
            'fulfilled', 'delivered', 'canceled', 'refunded')),
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL CHECK (json_valid(body))
    ) STRICT;
    CREATE INDEX orders_by_owner ON orders (owner, created_at);
    CREATE INDEX orders_by_status ON orders (status, created_at);
    CREATE INDEX orders_by_time ON orders (created_at);

    -- The audit trail. Append-only: the code has no UPDATE or DELETE for it,
    -- and the triggers below refuse them from anywhere else too.
    CREATE TABLE order_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id TEXT NOT NULL REFERENCES orders (id),
        at INTEGER NOT NULL,
        body TEXT NOT NULL CHECK (json_valid(body))
    ) STRICT;
    CREATE INDEX order_events_by_order ON order_events (order_id, seq);
    CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
    BEGIN
        SELECT RAISE(ABORT, 'order_events is append-only');
    END;
    CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
    BEGIN
        SELECT RAISE(ABORT, 'order_events is append-only');
    END;

    -- An in-progress record has no response; a completed one has both parts.
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
        status INTEGER,
        body BLOB,
        expires_at INTEGER NOT NULL,
        CHECK ((state = 'in_progress' AND status IS NULL AND body IS NULL)
            OR (state = 'completed' AND status BETWEEN 0 AND 65535 AND body IS NOT NULL))
    ) STRICT;
    CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);

    CREATE TABLE mandate_ids (
        id TEXT PRIMARY KEY,
        keep_until INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX mandate_ids_by_expiry ON mandate_ids (keep_until);

    CREATE TABLE webhook_events (
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (source, event_id)
    ) STRICT;

    -- Ledger rows are plain columns so reports can sum them in SQL. No
    -- foreign key to orders: a reversal may be booked by an operator tool,
    -- and the DynamoDB store cannot enforce one either.
    CREATE TABLE ledger (
        id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('fee', 'reversal')),
        currency TEXT NOT NULL CHECK (length(currency) = 3),
        gross INTEGER NOT NULL,
        fee INTEGER NOT NULL,
        at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX ledger_by_time ON ledger (at, currency);

    CREATE TABLE order_mandates (
        order_id TEXT NOT NULL REFERENCES orders (id),
        seq INTEGER NOT NULL CHECK (seq >= 0),
        token TEXT NOT NULL,
        PRIMARY KEY (order_id, seq)
    ) STRICT;
    ",
);

/// The durable store on SQLite. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
    clock: Arc<dyn Clock>,
    /// Counts writes of expiring records to pace the opportunistic purge.
    writes: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.db.path()).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/agentgate.db` with every
    /// migration of the embedded database.
    pub fn open(data_dir: &Path) -> Result<SqliteStore> {
        let db = Db::open(&data_dir.join(DB_FILE), &super::migrations())?;
        Ok(Self::from_db(db))
    }

    /// Wraps an already opened database, which must have had [`MIGRATIONS`]
    /// applied (see [`super::migrations`]).
    pub fn from_db(db: Arc<Db>) -> SqliteStore {
        SqliteStore { db, clock: Arc::new(SystemClock), writes: Arc::new(AtomicU64::new(0)) }
    }

    /// Uses `clock` to decide what has expired, so tests that move time
    /// see the store agree with the rest of the gateway.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> SqliteStore {
        self.clock = clock;
        self
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    fn now(&self) -> i64 {
        nanos_clamped(self.clock.now())
    }

    /// Deletes expired idempotency records and mandate ids (a batch of each)
    /// and returns how many rows went. Reads already ignore expired rows;
    /// this only reclaims space.
    pub async fn purge_expired(&self) -> Result<u64> {
        let now = self.now();
        self.db.write(move |conn| purge(conn, now)).await
    }

    /// Runs a purge on every [`PURGE_EVERY`]th call, inside the caller's
    /// write. A failed purge is logged and does not fail the caller's write.
    fn maybe_purge(&self, conn: &Connection, now: i64) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            if let Err(e) = purge(conn, now) {
                tracing::warn!(error = %e, "purge of expired store rows failed");
            }
        }
    }
}

fn purge(conn: &Connection, now: i64) -> Result<u64> {
    let idem = conn
        .exec_cached(
            "DELETE FROM idempotency WHERE rowid IN
                (SELECT rowid FROM idempotency WHERE expires_at <= ?1 LIMIT ?2)",
            params![now, PURGE_BATCH],
        )
        .map_err(Error::store)?;
    let mandates = conn
        .exec_cached(
            "DELETE FROM mandate_ids WHERE rowid IN
                (SELECT rowid FROM mandate_ids WHERE keep_until <= ?1 LIMIT ?2)",
            params![now, PURGE_BATCH],
        )
        .map_err(Error::store)?;
    Ok((idem + mandates) as u64)
}

// ------------------------------------------------------------ helpers

/// A time as Unix nanoseconds, for a value that is stored. Times outside
/// 1678–2262 do not fit and are refused rather than silently moved.
fn nanos(t: OffsetDateTime) -> Result<i64> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| Error::invalid(format!("time {t} is out of the storable range")))
}

/// A time as Unix nanoseconds for a comparison, clamped to the storable
/// range: a bound before 1678 matches the same rows as one at the minimum.
fn nanos_clamped(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn from_nanos(n: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|e| Error::internal(format!("stored time {n} is out of range: {e}")))
}

fn version_from(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::internal(format!("stored version {v} is negative")))
}

fn quantity_from(sku: &str, q: i64) -> Result<u32> {
    u32::try_from(q)
        .map_err(|_| Error::internal(format!("stored stock {q} of {sku} is out of range")))
}

/// A version the caller expects, as SQLite stores it. A value above
/// `i64::MAX` can never have been handed out, so it matches nothing.
fn expected_version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(-1)
}

/// A unit of statements that stands or falls together. Every write runs
/// inside the writer's batch transaction (see [`Db::write`]), so the unit
/// is a savepoint; dropping it without `commit` rolls it back.
fn atomic(conn: &mut Connection) -> Result<rusqlite::Savepoint<'_>> {
    conn.savepoint().map_err(Error::store)
}

fn already_exists(what: &str, id: &str) -> Error {
    Error::new(ErrorCode::AlreadyExists, format!("{what} {id} already exists"))
}

fn insufficient(sku: &str) -> Error {
    Error::new(ErrorCode::InsufficientStock, format!("not enough stock for SKU {sku}"))
}

/// Why a compare-and-set on `table` touched no row: the row is there with
/// another version (`version_conflict`), or it is not there at all.
fn cas_miss(conn: &Connection, table: &'static str, what: &str, id: &str) -> Error {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = ?1)");
    match conn.row_cached(&sql, [id], |r| r.get::<_, bool>(0)) {
        Ok(true) => Error::new(
            ErrorCode::VersionConflict,
            format!("{what} {id} was changed by another request; reload and retry"),
        ),
        Ok(false) => Error::not_found(format!("{what} {id} not found")),
        Err(e) => Error::store(e),
    }
}

/// Reads `(version, body)` of one row of `table` and parses the body.
fn get_versioned<R, T>(
    conn: &Connection,
    table: &'static str,
    what: &'static str,
    id: &str,
) -> Result<Option<Versioned<T>>>
where
    R: for<'de> serde::Deserialize<'de>,
    T: TryFrom<R, Error = Error>,
{
    let sql = format!("SELECT version, body FROM {table} WHERE id = ?1");
    let row = conn
        .row_cached(&sql, [id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .optional()
        .map_err(Error::store)?;
    let Some((version, body)) = row else {
        return Ok(None);
    };
    let value = T::try_from(from_json::<R>(what, &body)?)?;
    Ok(Some(Versioned { value, version: version_from(version)? }))
}

const AUDIT_COLUMNS: &str =
    "id, at, action, target, actor, reason, trace_id, fingerprint, delta, stock_after";

type AuditRow = (AuditRecord, i64, Option<i64>);

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok((
        AuditRecord {
            id: r.get(0)?,
            at: OffsetDateTime::UNIX_EPOCH,
            action: r.get(2)?,
            target: r.get(3)?,
            actor: r.get(4)?,
            reason: r.get(5)?,
            trace_id: r.get(6)?,
            fingerprint: r.get(7)?,
            delta: r.get(8)?,
            stock_after: None,
        },
        r.get(1)?,
        r.get(9)?,
    ))
}

fn audit_from((mut record, at, stock_after): AuditRow) -> Result<AuditRecord> {
    record.at = from_nanos(at)?;
    record.stock_after = stock_after.map(|q| quantity_from(&record.target, q)).transpose()?;
    Ok(record)
}

fn get_audit(conn: &Connection, id: &str) -> Result<Option<AuditRecord>> {
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = ?1");
    let row = conn.query_row(&sql, [id], audit_row).optional().map_err(Error::store)?;
    row.map(audit_from).transpose()
}

/// The conditional decrement, on the caller's connection or transaction.
/// A SKU without a stock row has no units, so it is `insufficient_stock`
/// like an empty one: the checkout cannot take what was never counted, and
/// the agent sees the same answer either way.
fn decrement(conn: &Connection, sku: &str, quantity: u32) -> Result<u32> {
    let left = conn
        .row_cached(
            "UPDATE stock SET quantity = quantity - ?1 WHERE sku = ?2 AND quantity >= ?1
             RETURNING quantity",
            params![quantity, sku],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(Error::store)?;
    match left {
        Some(q) => quantity_from(sku, q),
        None => Err(insufficient(sku)),
    }
}

fn insert_events(conn: &Connection, events: &[OrderEvent]) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO order_events (order_id, at, body) VALUES (?1, ?2, ?3)")
        .map_err(Error::store)?;
    for event in events {
        let body = to_json("order event", &OrderEventRecord::from(event))?;
        stmt.execute(params![event.order_id.as_str(), nanos(event.at)?, body])
            .map_err(Error::store)?;
    }
    Ok(())
}

fn insert_ledger(conn: &Connection, entry: &LedgerEntry) -> Result<()> {
    let r = LedgerRecord::try_from(entry)?;
    let n = conn
        .exec_cached(
            "INSERT INTO ledger (id, order_id, kind, currency, gross, fee, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
            params![r.id, r.order_id, r.kind, r.currency, r.gross, r.fee, nanos(r.at)?],
        )
        .map_err(Error::store)?;
    if n == 0 {
        return Err(already_exists("ledger entry", &r.id));
    }
    Ok(())
}

/// Put-if-absent of outbox messages, pending and due at once.
fn insert_outbox(conn: &Connection, messages: &[OutboxMessage]) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO outbox (id, kind, destination, payload, order_id, created_at, status,
                 attempts, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?6) ON CONFLICT (id) DO NOTHING",
        )
        .map_err(Error::store)?;
    for m in messages {
        let n = stmt
            .execute(params![
                m.id,
                m.kind.as_str(),
                m.destination,
                m.payload,
                m.order_id.as_ref().map(|o| o.as_str().to_owned()),
                nanos(m.created_at)?,
            ])
            .map_err(Error::store)?;
        if n == 0 {
            return Err(already_exists("outbox message", &m.id));
        }
    }
    Ok(())
}

/// The columns of an outbox row, in the order [`OUTBOX_COLUMNS`] lists.
const OUTBOX_COLUMNS: &str = "id, kind, destination, payload, order_id, created_at, status, \
    attempts, next_attempt_at, last_error, delivered_at, lease_token, lease_until";

struct OutboxRow {
    entry: OutboxEntry,
    lease: Option<(String, i64)>,
}

fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRowRaw> {
    Ok(OutboxRowRaw {
        id: r.get(0)?,
        kind: r.get(1)?,
        destination: r.get(2)?,
        payload: r.get(3)?,
        order_id: r.get(4)?,
        created_at: r.get(5)?,
        status: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_at: r.get(8)?,
        last_error: r.get(9)?,
        delivered_at: r.get(10)?,
        lease_token: r.get(11)?,
        lease_until: r.get(12)?,
    })
}

/// An outbox row as SQLite returns it, before parsing.
struct OutboxRowRaw {
    id: String,
    kind: String,
    destination: String,
    payload: String,
    order_id: Option<String>,
    created_at: i64,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    lease_token: Option<String>,
    lease_until: Option<i64>,
}

impl TryFrom<OutboxRowRaw> for OutboxRow {
    type Error = Error;

    fn try_from(r: OutboxRowRaw) -> Result<Self> {
        let corrupt = |e: Error| Error::internal(format!("corrupt outbox row {}: {e}", r.id));
        let message = OutboxMessage {
            kind: OutboxKind::parse(&r.kind).map_err(corrupt)?,
            destination: r.destination.clone(),
            payload: r.payload.clone(),
            order_id: r.order_id.as_deref().map(OrderId::parse).transpose().map_err(corrupt)?,
            created_at: from_nanos(r.created_at)?,
            id: r.id.clone(),
        };
        let entry = OutboxEntry {
            message,
            status: OutboxStatus::parse(&r.status).map_err(corrupt)?,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            next_attempt_at: from_nanos(r.next_attempt_at)?,
            last_error: r.last_error.clone(),
            delivered_at: r.delivered_at.map(from_nanos).transpose()?,
        };
        let lease = r.lease_token.clone().zip(r.lease_until);
        Ok(OutboxRow { entry, lease })
    }
}

/// The columns an order row keeps beside its body.
struct OrderRow {
    id: String,
    checkout_id: String,
    owner: Option<String>,
    status: &'static str,
    created_at: i64,
    body: String,
}

impl OrderRow {
    fn new(order: &Order) -> Result<Self> {
        Ok(OrderRow {
            id: order.id.as_str().to_owned(),
            checkout_id: order.checkout_id.as_str().to_owned(),
            owner: order.owner.clone(),
            status: order.status().as_str(),
            created_at: nanos(order.created_at)?,
            body: to_json("order", &OrderRecord::from(order))?,
        })
    }

    /// Put-if-absent at version 1. The order id and the checkout id are
    /// both unique: a checkout is paid for once.
    fn insert(&self, conn: &Connection) -> Result<()> {
        let n = conn
            .exec_cached(
                "INSERT INTO orders (id, version, checkout_id, owner, status, created_at, body)
                 VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![
                    self.id,
                    self.checkout_id,
                    self.owner,
                    self.status,
                    self.created_at,
                    self.body
                ],
            )
            .map_err(Error::store)?;
        if n == 0 {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "order {} or an order for checkout {} already exists",
                    self.id, self.checkout_id
                ),
            ));
        }
        Ok(())
    }
}

fn insert_mandates(conn: &Connection, order: &str, mandates: &[String]) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO order_mandates (order_id, seq, token) VALUES (?1, ?2, ?3)")
        .map_err(Error::store)?;
    for (seq, token) in (0_i64..).zip(mandates) {
        stmt.execute(params![order, seq, token]).map_err(Error::store)?;
    }
    Ok(())
}

/// The columns a cart or checkout row keeps beside its body.
struct SessionRow {
    id: String,
    status: &'static str,
    owner: Option<String>,
    expires_at: i64,
    body: String,
}

impl SessionRow {
    fn cart(cart: &Cart) -> Result<Self> {
        Ok(SessionRow {
            id: cart.id.as_str().to_owned(),
            status: cart.status().as_str(),
            owner: cart.owner.clone(),
            expires_at: nanos(cart.expires_at)?,
            body: to_json("cart", &CartRecord::from(cart))?,
        })
    }

    fn checkout(session: &CheckoutSession) -> Result<Self> {
        Ok(SessionRow {
            id: session.id.as_str().to_owned(),
            status: session.status().as_str(),
            owner: session.owner.clone(),
            expires_at: nanos(session.expires_at)?,
            body: to_json("checkout session", &CheckoutRecord::from(session))?,
        })
    }

    /// Put-if-absent into `table` at version 1.
    fn insert(&self, conn: &Connection, table: &'static str, what: &str) -> Result<()> {
        let sql = format!(
            "INSERT INTO {table} (id, version, status, owner, expires_at, body)
             VALUES (?1, 1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING"
        );
        let n = conn
            .exec_cached(
                &sql,
                params![self.id, self.status, self.owner, self.expires_at, self.body],
            )
            .map_err(Error::store)?;
        if n == 0 {
            return Err(already_exists(what, &self.id));
        }
        Ok(())
    }

    /// Compare-and-set in `table`; returns the new version.
    fn update(
        &self,
        conn: &Connection,
        table: &'static str,
        what: &str,
        expected: u64,
    ) -> Result<u64> {
        let sql = format!(
            "UPDATE {table} SET version = version + 1, status = ?3, owner = ?4, expires_at = ?5,
                 body = ?6
             WHERE id = ?1 AND version = ?2 RETURNING version"
        );
        let version = conn
            .row_cached(
                &sql,
                params![
                    self.id,
                    expected_version(expected),
                    self.status,
                    self.owner,
                    self.expires_at,
                    self.body
                ],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(Error::store)?;
        match version {
            Some(v) => version_from(v),
            None => Err(cas_miss(conn, table, what, &self.id)),
        }
    }
}

/// Reads one idempotency record unless it has expired.
fn idempotency_row(conn: &Connection, key: &str, now: i64) -> Result<Option<IdempotencyRecord>> {
    let row = conn
        .row_cached(
            "SELECT fingerprint, state, status, body, expires_at FROM idempotency
             WHERE key = ?1 AND expires_at > ?2",
            params![key, now],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()
        .map_err(Error::store)?;
    let Some((fingerprint, state, status, body, expires_at)) = row else {
        return Ok(None);
    };
    let state = match (state.as_str(), status, body) {
        ("in_progress", _, _) => IdempotencyState::InProgress,
        ("completed", Some(status), Some(body)) => {
            let status = u16::try_from(status).map_err(|_| {
                Error::internal(format!("stored idempotency status {status} is out of range"))
            })?;
            IdempotencyState::Completed(StoredResponse { status, body })
        }
        (other, _, _) => {
            return Err(Error::internal(format!(
                "stored idempotency state {other:?} is incomplete"
            )))
        }
    };
    Ok(Some(IdempotencyRecord {
        key: key.to_owned(),
        fingerprint,
        state,
        expires_at: from_nanos(expires_at)?,
    }))
}

/// Stores the response on a key that is in progress and unexpired; returns
/// whether it did.
fn complete_idempotency(
    conn: &Connection,
    key: &str,
    response: &StoredResponse,
    now: i64,
) -> Result<bool> {
    let n = conn
        .exec_cached(
            "UPDATE idempotency SET state = 'completed', status = ?2, body = ?3
             WHERE key = ?1 AND state = 'in_progress' AND expires_at > ?4",
            params![key, response.status, response.body, now],
        )
        .map_err(Error::store)?;
    Ok(n == 1)
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<()> {
        self.db
            .read(|conn| {
                conn.row_cached("SELECT 1", [], |r| r.get::<_, i64>(0)).map_err(Error::store)?;
                Ok(())
            })
            .await
    }

    async fn insert_cart(&self, cart: &Cart) -> Result<()> {
        let row = SessionRow::cart(cart)?;
        self.db.write(move |conn| row.insert(conn, "carts", "cart")).await
    }

    async fn get_cart(&self, id: &CartId) -> Result<Option<Versioned<Cart>>> {
        let id = id.as_str().to_owned();
        self.db
            .read(move |conn| get_versioned::<CartRecord, Cart>(conn, "carts", "cart", &id))
            .await
    }

    async fn update_cart(&self, cart: &Cart, expected: u64) -> Result<u64> {
        let row = SessionRow::cart(cart)?;
        self.db.write(move |conn| row.update(conn, "carts", "cart", expected)).await
    }

    async fn insert_checkout(&self, session: &CheckoutSession) -> Result<()> {
        let row = SessionRow::checkout(session)?;
        self.db.write(move |conn| row.insert(conn, "checkouts", "checkout session")).await
    }

    async fn get_checkout(&self, id: &CheckoutId) -> Result<Option<Versioned<CheckoutSession>>> {
        let id = id.as_str().to_owned();
        self.db
            .read(move |conn| {
                get_versioned::<CheckoutRecord, CheckoutSession>(
                    conn,
                    "checkouts",
                    "checkout session",
                    &id,
                )
            })
            .await
    }

    async fn update_checkout(&self, session: &CheckoutSession, expected: u64) -> Result<u64> {
        let row = SessionRow::checkout(session)?;
        self.db.write(move |conn| row.update(conn, "checkouts", "checkout session", expected)).await
    }

    async fn get_order(&self, id: &OrderId) -> Result<Option<Versioned<Order>>> {
        let id = id.as_str().to_owned();
        self.db
            .read(move |conn| get_versioned::<OrderRecord, Order>(conn, "orders", "order", &id))
            .await
    }

    async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<Order>> {
        let limit = match filter.limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let owner = filter.owner.clone();
        let status = filter.status.map(|s| s.as_str());
        let from = filter.created_from.map(nanos_clamped);
        let to = filter.created_to.map(nanos_clamped);
        let before = filter.before.as_ref().map(|(at, id)| (nanos_clamped(*at), id.to_string()));
        self.db
            .read(move |conn| {
                // The query is built from fixed fragments so each filter
                // combination can use its index; values are always bound.
                let mut conditions = Vec::new();
                let mut values: Vec<&dyn ToSql> = Vec::new();
                if let Some(owner) = &owner {
                    conditions.push("owner = ?");
                    values.push(owner);
                }
                if let Some(status) = &status {
                    conditions.push("status = ?");
                    values.push(status);
                }
                if let Some(from) = &from {
                    conditions.push("created_at >= ?");
                    values.push(from);
                }
                if let Some(to) = &to {
                    conditions.push("created_at < ?");
                    values.push(to);
                }
                if let Some((at, id)) = &before {
                    conditions.push("(created_at < ? OR (created_at = ? AND id < ?))");
                    values.push(at);
                    values.push(at);
                    values.push(id);
                }
                values.push(&limit);
                let filter = if conditions.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", conditions.join(" AND "))
                };
                let sql = format!(
                    "SELECT body FROM orders {filter} ORDER BY created_at DESC, id DESC LIMIT ?"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(Error::store)?;
                let bodies = stmt
                    .query_map(values.as_slice(), |r| r.get::<_, String>(0))
                    .map_err(Error::store)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(Error::store)?;
                bodies
                    .iter()
                    .map(|b| Order::try_from(from_json::<OrderRecord>("order", b)?))
                    .collect()
            })
            .await
    }

    async fn order_events(&self, id: &OrderId) -> Result<Vec<OrderEvent>> {
        let id = id.as_str().to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT body FROM order_events WHERE order_id = ?1 ORDER BY seq",
                    )
                    .map_err(Error::store)?;
                let bodies = stmt
                    .query_map([&id], |r| r.get::<_, String>(0))
                    .map_err(Error::store)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(Error::store)?;
                bodies
                    .iter()
                    .map(|b| OrderEvent::try_from(from_json::<OrderEventRecord>("order event", b)?))
                    .collect()
            })
            .await
    }

    async fn order_mandates(&self, id: &OrderId) -> Result<Vec<String>> {
        let id = id.as_str().to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT token FROM order_mandates WHERE order_id = ?1 ORDER BY seq",
                    )
                    .map_err(Error::store)?;
                let tokens = stmt
                    .query_map([&id], |r| r.get::<_, String>(0))
                    .map_err(Error::store)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(Error::store)?;
                Ok(tokens)
            })
            .await
    }

    async fn update_order(
        &self,
        order: &Order,
        expected: u64,
        events: &[OrderEvent],
        outbox: &[OutboxMessage],
    ) -> Result<u64> {
        check_events(&order.id, events)?;
        check_outbox(Some(&order.id), outbox)?;
        let row = OrderRow::new(order)?;
        let events = events.to_vec();
        let outbox = outbox.to_vec();
        self.db
            .write(move |conn| {
                let tx = atomic(conn)?;
                let version = tx
                    .row_cached(
                        "UPDATE orders SET version = version + 1, checkout_id = ?3, owner = ?4,
                             status = ?5, created_at = ?6, body = ?7
                         WHERE id = ?1 AND version = ?2 RETURNING version",
                        params![
                            row.id,
                            expected_version(expected),
                            row.checkout_id,
                            row.owner,
                            row.status,
                            row.created_at,
                            row.body
                        ],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                    .map_err(Error::store)?;
                let Some(version) = version else {
                    return Err(cas_miss(&tx, "orders", "order", &row.id));
                };
                insert_events(&tx, &events)?;
                insert_outbox(&tx, &outbox)?;
                tx.commit().map_err(Error::store)?;
                version_from(version)
            })
            .await
    }

    async fn idempotency_begin(
        &self,
        key: &str,
        fingerprint: &str,
        expires_at: OffsetDateTime,
    ) -> Result<IdempotencyBegin> {
        let (key, fingerprint) = (key.to_owned(), fingerprint.to_owned());
        let expires_at = nanos(expires_at)?;
        let now = self.now();
        let store = self.clone();
        self.db
            .write(move |conn| {
                let tx = atomic(conn)?;
                // Put-if-absent, where an expired record counts as absent and
                // is taken over in place.
                let n = tx
                    .exec_cached(
                        "INSERT INTO idempotency (key, fingerprint, state, status, body, expires_at)
                         VALUES (?1, ?2, 'in_progress', NULL, NULL, ?3)
                         ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
                             state = 'in_progress', status = NULL, body = NULL,
                             expires_at = excluded.expires_at
                         WHERE idempotency.expires_at <= ?4",
                        params![key, fingerprint, expires_at, now],
                    )
                    .map_err(Error::store)?;
                let outcome = if n == 1 {
                    IdempotencyBegin::Started
                } else {
                    let existing = idempotency_row(&tx, &key, now)?.ok_or_else(|| {
                        Error::internal("idempotency record vanished inside a transaction")
                    })?;
                    IdempotencyBegin::Existing(existing)
                };
                store.maybe_purge(&tx, now);
                tx.commit().map_err(Error::store)?;
                Ok(outcome)
            })
            .await
    }

    async fn idempotency_complete(&self, key: &str, response: &StoredResponse) -> Result<()> {
        let key = key.to_owned();
        let response = response.clone();
        let now = self.now();
        self.db
            .write(move |conn| {
                if complete_idempotency(conn, &key, &response, now)? {
                    return Ok(());
                }
                // Nothing was in progress under the key: say why.
                match idempotency_row(conn, &key, now)? {
                    Some(_) => Err(Error::new(
                        ErrorCode::AlreadyExists,
                        "a response is already stored under this idempotency key",
                    )),
                    None => Err(Error::not_found("the idempotency key is not held")),
                }
            })
            .await
    }

    async fn idempotency_release(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.db
            .write(move |conn| {
                // Only an in-progress record is released: a completed one is
                // the answer retries must replay.
                conn.exec_cached(
                    "DELETE FROM idempotency WHERE key = ?1 AND state = 'in_progress'",
                    [&key],
                )
                .map_err(Error::store)?;
                Ok(())
            })
            .await
    }

    async fn idempotency_get(&self, key: &str) -> Result<Option<IdempotencyRecord>> {
        let key = key.to_owned();
        let now = self.now();
        self.db.read(move |conn| idempotency_row(conn, &key, now)).await
    }

    async fn discount_uses(&self, code: &str) -> Result<u64> {
        let code = code.to_owned();
        self.db
            .read(move |conn| {
                // A scan of completed sessions: small next to the writes a
                // completion costs, and exact without a counter to keep.
                let n: i64 = conn
                    .row_cached(
                        "SELECT count(*) FROM checkouts c,
                             json_each(c.body, '$.applied_discounts') d
                         WHERE c.status = 'completed'
                           AND json_extract(d.value, '$.code') = ?1",
                        [&code],
                        |r| r.get(0),
                    )
                    .map_err(Error::store)?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    async fn reserve_mandate_id(&self, id: &str, keep_until: OffsetDateTime) -> Result<bool> {
        Ok(self.reserve_mandate_ids(&[(id, keep_until)]).await? == 1)
    }

    /// One write for the whole list: a completion's three ids cost one
    /// trip to the writer instead of three.
    async fn reserve_mandate_ids(&self, ids: &[(&str, OffsetDateTime)]) -> Result<usize> {
        let ids = ids
            .iter()
            .map(|(id, keep_until)| Ok(((*id).to_owned(), nanos(*keep_until)?)))
            .collect::<Result<Vec<_>>>()?;
        let now = self.now();
        let store = self.clone();
        self.db
            .write(move |conn| {
                let mut reserved = 0;
                for (id, keep_until) in &ids {
                    let n = conn
                        .exec_cached(
                            "INSERT INTO mandate_ids (id, keep_until) VALUES (?1, ?2)
                             ON CONFLICT (id) DO UPDATE SET keep_until = excluded.keep_until
                             WHERE mandate_ids.keep_until <= ?3",
                            params![id, keep_until, now],
                        )
                        .map_err(Error::store)?;
                    if n != 1 {
                        break;
                    }
                    reserved += 1;
                }
                store.maybe_purge(conn, now);
                Ok(reserved)
            })
            .await
    }

    async fn mark_webhook_seen(&self, source: &str, event_id: &str) -> Result<bool> {
        let (source, event_id) = (source.to_owned(), event_id.to_owned());
        let now = self.now();
        self.db
            .write(move |conn| {
                let n = conn
                    .exec_cached(
                        "INSERT INTO webhook_events (source, event_id, seen_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT DO NOTHING",
                        params![source, event_id, now],
                    )
                    .map_err(Error::store)?;
                Ok(n == 1)
            })
            .await
    }

    async fn forget_webhook(&self, source: &str, event_id: &str) -> Result<()> {
        let (source, event_id) = (source.to_owned(), event_id.to_owned());
        self.db
            .write(move |conn| {
                conn.exec_cached(
                    "DELETE FROM webhook_events WHERE source = ?1 AND event_id = ?2",
                    params![source, event_id],
                )
                .map_err(Error::store)?;
                Ok(())
            })
            .await
    }

    async fn set_stock(&self, sku: &Sku, quantity: u32) -> Result<()> {
        let sku = sku.as_str().to_owned();
        self.db
            .write(move |conn| {
                conn.exec_cached(
                    "INSERT INTO stock (sku, quantity) VALUES (?1, ?2)
                     ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity",
                    params![sku, quantity],
                )
                .map_err(Error::store)?;
                Ok(())
            })
            .await
    }

    async fn get_stock(&self, sku: &Sku) -> Result<Option<u32>> {
        let sku = sku.as_str().to_owned();
        self.db
            .read(move |conn| {
                let q = conn
                    .row_cached("SELECT quantity FROM stock WHERE sku = ?1", [&sku], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()
                    .map_err(Error::store)?;
                q.map(|q| quantity_from(&sku, q)).transpose()
            })
            .await
    }

    async fn decrement_stock(&self, sku: &Sku, quantity: u32) -> Result<u32> {
        let sku = sku.as_str().to_owned();
        self.db.write(move |conn| decrement(conn, &sku, quantity)).await
    }

    /// A removal larger than what is left fails with `insufficient_stock`
    /// and changes nothing, rather than clamping to zero: an operator
    /// correcting a count should learn that the count was already off.
    /// A SKU without a row starts from zero. A result above `u32::MAX` is
    /// `invalid_input`.
    async fn adjust_stock(&self, sku: &Sku, delta: i64) -> Result<u32> {
        let sku = sku.as_str().to_owned();
        self.db
            .write(move |conn| {
                let tx = atomic(conn)?;
                let current = tx
                    .row_cached("SELECT quantity FROM stock WHERE sku = ?1", [&sku], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()
                    .map_err(Error::store)?
                    .unwrap_or(0);
                // i128 holds any i64 sum, so the two failures stay distinct.
                let next = i128::from(current) + i128::from(delta);
                if next < 0 {
                    return Err(Error::new(
                        ErrorCode::InsufficientStock,
                        format!(
                            "removing {} units would take SKU {sku} below zero",
                            delta.unsigned_abs()
                        ),
                    ));
                }
                let next = u32::try_from(next).map_err(|_| {
                    Error::invalid(format!("stock of SKU {sku} cannot exceed {}", u32::MAX))
                })?;
                tx.exec_cached(
                    "INSERT INTO stock (sku, quantity) VALUES (?1, ?2)
                     ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity",
                    params![sku, next],
                )
                .map_err(Error::store)?;
                tx.commit().map_err(Error::store)?;
                Ok(next)
            })
            .await
    }

    /// One savepoint: look for the record, then
    /// read-add-write the stock and insert the record. The single writer
    /// serialises it with every checkout commit, so no decrement is lost.
    async fn adjust_stock_audited(&self, sku: &Sku, record: &AuditRecord) -> Result<AuditedStock> {
        let sku = sku.as_str().to_owned();
        let mut record = record.clone();
        let at = nanos(record.at)?;
        self.db
            .write(move |conn| {
                let tx = atomic(conn)?;
                if let Some(existing) = get_audit(&tx, &record.id)? {
                    return Ok(AuditedStock::Existing(existing));
                }
                let current = tx
                    .query_row("SELECT quantity FROM stock WHERE sku = ?1", [&sku], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()
                    .map_err(Error::store)?
                    .unwrap_or(0);
                let next = i128::from(current) + i128::from(record.delta);
                if next < 0 {
                    return Err(Error::new(
                        ErrorCode::InsufficientStock,
                        format!(
                            "removing {} units would take SKU {sku} below zero ({current} left)",
                            record.delta.unsigned_abs()
                        ),
                    ));
                }
                let next = u32::try_from(next).map_err(|_| {
                    Error::invalid(format!("stock of SKU {sku} cannot exceed {}", u32::MAX))
                })?;
                tx.execute(
                    "INSERT INTO stock (sku, quantity) VALUES (?1, ?2)
                     ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity",
                    params![sku, next],
                )
                .map_err(Error::store)?;
                record.stock_after = Some(next);
                tx.execute(
                    &format!(
                        "INSERT INTO audit_log ({AUDIT_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                    ),
                    params![
                        record.id,
                        at,
                        record.action,
                        record.target,
                        record.actor,
                        record.reason,
                        record.trace_id,
                        record.fingerprint,
                        record.delta,
                        next
                    ],
                )
                .map_err(Error::store)?;
                tx.commit().map_err(Error::store)?;
                Ok(AuditedStock::Applied(record))
            })
            .await
    }

    async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let limit = match filter.limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let target = filter.target.clone();
        self.db
            .read(move |conn| {
                let rows = match &target {
                    Some(t) => {
                        let sql = format!(
                            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE target = ?1
                             ORDER BY at DESC, id DESC LIMIT ?2"
                        );
                        let mut stmt = conn.prepare_cached(&sql).map_err(Error::store)?;
                        let rows = stmt
                            .query_map(params![t, limit], audit_row)
                            .map_err(Error::store)?
                            .collect::<rusqlite::Result<Vec<_>>>();
                        rows
                    }
                    None => {
                        let sql = format!(
                            "SELECT {AUDIT_COLUMNS} FROM audit_log
                             ORDER BY at DESC, id DESC LIMIT ?1"
                        );
                        let mut stmt = conn.prepare_cached(&sql).map_err(Error::store)?;
                        let rows = stmt
                            .query_map(params![limit], audit_row)
                            .map_err(Error::store)?
                            .collect::<rusqlite::Result<Vec<_>>>();
                        rows
                    }
                };
                rows.map_err(Error::store)?.into_iter().map(audit_from).collect()
            })
            .await
    }

    async fn checkouts_needing_attention(&self, limit: u32) -> Result<Vec<CheckoutSession>> {
        let limit = match limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT body FROM checkouts
                         WHERE status IN ('requires_escalation', 'complete_in_progress')",
                    )
                    .map_err(Error::store)?;
                let bodies = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(Error::store)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(Error::store)?;
                let mut sessions = bodies
                    .iter()
                    .map(|b| {
                        CheckoutSession::try_from(from_json::<CheckoutRecord>(
                            "checkout session",
                            b,
                        )?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                // Oldest first by last change: the longest wait on top.
                sessions.sort_by(|a, b| {
                    (a.updated_at, a.id.as_str()).cmp(&(b.updated_at, b.id.as_str()))
                });
                sessions.truncate(limit as usize);
                Ok(sessions)
            })
            .await
    }

    async fn append_ledger(&self, entry: &LedgerEntry) -> Result<()> {
        let entry = entry.clone();
        // Fail on a malformed entry before taking the writer.
        LedgerRecord::try_from(&entry)?;
        self.db.write(move |conn| insert_ledger(conn, &entry)).await
    }

    async fn ledger_entries(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        currency: Option<Currency>,
    ) -> Result<Vec<LedgerEntry>> {
        let (from, to) = (nanos_clamped(from), nanos_clamped(to));
        let currency = currency.map(|c| c.code().to_owned());
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, order_id, kind, currency, gross, fee, at FROM ledger
                         WHERE at >= ?1 AND at < ?2 AND (?3 IS NULL OR currency = ?3)
                         ORDER BY at, id",
                    )
                    .map_err(Error::store)?;
                let rows = stmt
                    .query_map(params![from, to, currency], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    })
                    .map_err(Error::store)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(Error::store)?;
                rows.into_iter()
                    .map(|(id, order_id, kind, currency, gross, fee, at)| {
                        LedgerEntry::try_from(LedgerRecord {
                            schema: SCHEMA_VERSION,
                            id,
                            order_id,
                            kind,
                            currency,
                            gross,
                            fee,
                            at: from_nanos(at)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn commit_checkout(&self, commit: &CheckoutCommit) -> Result<()> {
        check_commit(commit)?;
        // Everything that can fail without the database is done before the
        // writer is taken, so the transaction holds it only for SQL.
        let session = SessionRow::checkout(&commit.session)?;
        let order = OrderRow::new(&commit.order)?;
        let commit = commit.clone();
        let now = self.now();
        self.db
            .write(move |conn| {
                // Dropping `tx` without commit rolls back, so every early
                // return below leaves nothing half-written.
                let tx = atomic(conn)?;
                session.update(&tx, "checkouts", "checkout session", commit.expected_version)?;
                for (sku, quantity) in &commit.stock {
                    decrement(&tx, sku.as_str(), *quantity)?;
                }
                order.insert(&tx)?;
                insert_events(&tx, &commit.events)?;
                insert_ledger(&tx, &commit.ledger)?;
                insert_mandates(&tx, &order.id, &commit.mandates)?;
                insert_outbox(&tx, &commit.outbox)?;
                if let Some((key, response)) = &commit.idempotency {
                    // The session's compare-and-set, not this record, is what
                    // stops a second completion; an order that was charged must
                    // not be refunded because its replay record went missing.
                    if !complete_idempotency(&tx, key, response, now)? {
                        tracing::warn!(
                            order = %order.id,
                            "idempotency key not in progress at commit; response not stored"
                        );
                    }
                }
                tx.commit().map_err(Error::store)?;
                Ok(())
            })
            .await
    }

    async fn claim_outbox(
        &self,
        now: OffsetDateTime,
        lease: time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxLease>> {
        let now_n = nanos_clamped(now);
        let until = now + lease;
        let until_n = nanos(until)?;
        let limit = i64::from(limit.max(1));
        self.db
            .write(move |conn| {
                // One statement under the single writer: a row is chosen and
                // leased at once, so two claims never take the same row.
                // Each row gets its own token, so settling one message never
                // touches another.
                let sql = format!(
                    "UPDATE outbox SET lease_token = lower(hex(randomblob(16))), lease_until = ?2
                     WHERE id IN (
                         SELECT id FROM outbox
                         WHERE status = 'pending' AND next_attempt_at <= ?1
                           AND (lease_until IS NULL OR lease_until <= ?1)
                         ORDER BY next_attempt_at, created_at, id
                         LIMIT ?3)
                     RETURNING {OUTBOX_COLUMNS}"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(Error::store)?;
                let raws = stmt
                    .query_map(params![now_n, until_n, limit], outbox_row)
                    .map_err(Error::store)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(Error::store)?;
                let mut leases = Vec::with_capacity(raws.len());
                for raw in raws {
                    let row = OutboxRow::try_from(raw)?;
                    let (token, _) = row
                        .lease
                        .ok_or_else(|| Error::internal("a claimed outbox row has no lease"))?;
                    leases.push(OutboxLease {
                        message: row.entry.message,
                        attempts: row.entry.attempts,
                        token,
                        until,
                    });
                }
                leases.sort_by(|a, b| {
                    (a.message.created_at, &a.message.id)
                        .cmp(&(b.message.created_at, &b.message.id))
                });
                Ok(leases)
            })
            .await
    }

    async fn finish_outbox(&self, lease: &OutboxLease, result: &OutboxResult) -> Result<()> {
        let id = lease.message.id.clone();
        let token = lease.token.clone();
        let now = self.now();
        let (status, next, error, delivered) = match result {
            OutboxResult::Delivered => ("delivered", None, None, Some(now)),
            OutboxResult::Retry { at, error } => {
                ("pending", Some(nanos(*at)?), Some(error.clone()), None)
            }
            OutboxResult::Dead { error } => ("dead", None, Some(error.clone()), None),
        };
        self.db
            .write(move |conn| {
                let n = conn
                    .exec_cached(
                        "UPDATE outbox SET status = ?3, attempts = attempts + 1,
                             next_attempt_at = coalesce(?4, next_attempt_at),
                             last_error = coalesce(?5, last_error), delivered_at = ?6,
                             lease_token = NULL, lease_until = NULL
                         WHERE id = ?1 AND lease_token = ?2 AND status = 'pending'",
                        params![id, token, status, next, error, delivered],
                    )
                    .map_err(Error::store)?;
                if n == 0 {
                    return Err(Error::new(
                        ErrorCode::VersionConflict,
                        format!("outbox message {id} is no longer leased under this token"),
                    ));
                }
                Ok(())
            })
            .await
    }

    async fn outbox_entries(&self, filter: &OutboxFilter) -> Result<Vec<OutboxEntry>> {
        let order = filter.order_id.as_ref().map(|o| o.as_str().to_owned());
        let status = filter.status.map(|s| s.as_str());
        let limit = match filter.limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        self.db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                     WHERE (?1 IS NULL OR order_id = ?1) AND (?2 IS NULL OR status = ?2)
                     ORDER BY created_at, id LIMIT ?3"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(Error::store)?;
                let raws = stmt
                    .query_map(params![order, status, limit], outbox_row)
                    .map_err(Error::store)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(Error::store)?;
                raws.into_iter().map(|r| OutboxRow::try_from(r).map(|row| row.entry)).collect()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn t(n: i128) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(n).unwrap()
    }

    #[test]
    fn nanos_keep_order_and_refuse_what_does_not_fit() {
        let cases = [
            (t(0), Some(0)),
            (t(1), Some(1)),
            (t(-1), Some(-1)),
            (t(1_800_000_000_123_456_789), Some(1_800_000_000_123_456_789)),
            (t(i128::from(i64::MAX)), Some(i64::MAX)),
            (t(i128::from(i64::MAX) + 1), None),
            (t(i128::from(i64::MIN) - 1), None),
        ];
        for (time, want) in cases {
            assert_eq!(nanos(time).ok(), want, "{time}");
            if let Some(n) = want {
                assert_eq!(from_nanos(n).unwrap(), time);
            }
        }
        assert_eq!(nanos_clamped(t(i128::from(i64::MAX) + 5)), i64::MAX);
        assert_eq!(nanos_clamped(t(i128::from(i64::MIN) - 5)), i64::MIN);
    }

    /// The audit trail cannot be rewritten even by SQL that bypasses the
    /// store's code.
    #[tokio::test]
    async fn order_events_refuse_update_and_delete() {
        let (_dir, store) = open();
        let results = store
            .db()
            .write(|conn| {
                conn.execute_batch(
                    "INSERT INTO orders (id, version, checkout_id, status, created_at, body)
                     VALUES ('ord_1', 1, 'chk_1', 'paid', 0, '{}');
                     INSERT INTO order_events (order_id, at, body) VALUES ('ord_1', 0, '{}');",
                )
                .map_err(Error::store)?;
                Ok([
                    conn.execute("UPDATE order_events SET body = '[]'", [])
                        .map_err(|e| e.to_string()),
                    conn.execute("DELETE FROM order_events", []).map_err(|e| e.to_string()),
                ])
            })
            .await
            .unwrap();
        for r in results {
            assert!(r.unwrap_err().contains("append-only"));
        }
    }

    /// CHECK constraints refuse rows that break an invariant, whoever
    /// writes them.
    #[tokio::test]
    async fn constraints_guard_invariants() {
        let (_dir, store) = open();
        let cases: &[(&str, &str)] = &[
            ("negative stock", "INSERT INTO stock VALUES ('s', -1)"),
            ("version zero", "INSERT INTO carts VALUES ('cart_1', 0, 'active', NULL, 0, '{}')"),
            ("unknown status", "INSERT INTO checkouts VALUES ('chk_1', 1, 'done', NULL, 0, '{}')"),
            ("body not json", "INSERT INTO carts VALUES ('cart_1', 1, 'active', NULL, 0, 'x')"),
            (
                "completed without response",
                "INSERT INTO idempotency VALUES ('k', 'f', 'completed', NULL, NULL, 0)",
            ),
            (
                "in progress with response",
                "INSERT INTO idempotency VALUES ('k', 'f', 'in_progress', 200, x'00', 0)",
            ),
            (
                "status too large",
                "INSERT INTO idempotency VALUES ('k', 'f', 'completed', 70000, x'', 0)",
            ),
            (
                "unknown ledger kind",
                "INSERT INTO ledger VALUES ('l', 'ord_1', 'tip', 'USD', 1, 1, 0)",
            ),
            (
                "event without order",
                "INSERT INTO order_events (order_id, at, body) VALUES ('ord_x', 0, '{}')",
            ),
            ("text in an integer column", "INSERT INTO stock VALUES ('s', 'ten')"),
        ];
        for (name, sql) in cases {
            let sql = sql.to_string();
            let res =
                store.db().write(move |conn| Ok(conn.execute(&sql, []).is_err())).await.unwrap();
            assert!(res, "{name} was accepted");
        }
    }

    #[tokio::test]
    async fn purge_removes_only_expired_rows() {
        let (_dir, store) = open();
        let past = OffsetDateTime::now_utc() - time::Duration::hours(1);
        let future = OffsetDateTime::now_utc() + time::Duration::hours(1);
        store.idempotency_begin("old", "f", past).await.unwrap();
        store.idempotency_begin("new", "f", future).await.unwrap();
        store.reserve_mandate_id("m-old", past).await.unwrap();
        store.reserve_mandate_id("m-new", future).await.unwrap();
        assert_eq!(store.purge_expired().await.unwrap(), 2);
        assert_eq!(store.purge_expired().await.unwrap(), 0);
        assert!(store.idempotency_get("new").await.unwrap().is_some());
        assert!(!store.reserve_mandate_id("m-new", future).await.unwrap());
    }

    #[tokio::test]
    async fn a_test_clock_decides_expiry() {
        struct Fixed(OffsetDateTime);
        impl Clock for Fixed {
            fn now(&self) -> OffsetDateTime {
                self.0
            }
        }
        let (_dir, store) = open();
        let then = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        let store = store.with_clock(Arc::new(Fixed(then)));
        // Expired by the real clock, live by the store's.
        let until = then + time::Duration::minutes(5);
        assert!(store.reserve_mandate_id("m", until).await.unwrap());
        assert!(!store.reserve_mandate_id("m", until).await.unwrap());
    }
}
