//! Items: the keys of every item kind, the sortable forms of times, and
//! typed reads of attributes that turn damaged data into `internal` errors.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::table::{PK, SK};
use crate::domain::{Error, Result};

/// One DynamoDB item, or a key, as the SDK takes it.
pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's limits on key attribute values, in bytes.
const MAX_PK_BYTES: usize = 2048;
const MAX_SK_BYTES: usize = 1024;

/// The primary key of one item.
///
/// Every kind has its own `pk` prefix, and no prefix is a prefix of
/// another, so `prefix + id` names one kind and one id whatever the id
/// contains. The sort key is fixed per kind except inside an order's item
/// collection (its events and mandates) and for webhook event ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    /// A key, refused with `invalid_input` when a part is longer than
    /// DynamoDB allows (caller-chosen strings such as idempotency keys can
    /// be).
    fn new(pk: String, sk: impl Into<String>) -> Result<Key> {
        let sk = sk.into();
        if pk.len() > MAX_PK_BYTES || sk.len() > MAX_SK_BYTES {
            return Err(Error::invalid(format!(
                "a key of {} bytes is too long to store (at most {MAX_PK_BYTES})",
                pk.len().max(sk.len())
            )));
        }
        Ok(Key { pk, sk })
    }

    pub fn cart(id: &str) -> Result<Key> {
        Key::new(format!("CART#{id}"), "CART")
    }

    pub fn checkout(id: &str) -> Result<Key> {
        Key::new(format!("CHECKOUT#{id}"), "CHECKOUT")
    }

    pub fn order(id: &str) -> Result<Key> {
        Key::new(format!("ORDER#{id}"), "ORDER")
    }

    /// The guard that makes a checkout's order unique: written
    /// put-if-absent with the order, it names the order of the checkout.
    pub fn checkout_order(checkout_id: &str) -> Result<Key> {
        Key::new(format!("CHECKOUT_ORDER#{checkout_id}"), "ORDER")
    }

    /// An order event, in the order's item collection. Events written with
    /// order version `version` sort after those of every earlier version,
    /// and by position within the write; the compare-and-set on the order
    /// makes each version's events come from one writer only.
    pub fn order_event(order_id: &str, version: u64, index: usize) -> Result<Key> {
        Key::new(format!("ORDER#{order_id}"), format!("{EVENT_PREFIX}{version:020}#{index:04}"))
    }

    /// A mandate kept with an order, in the order's item collection.
    pub fn order_mandate(order_id: &str, seq: usize) -> Result<Key> {
        Key::new(format!("ORDER#{order_id}"), format!("{MANDATE_PREFIX}{seq:04}"))
    }

    pub fn stock(sku: &str) -> Result<Key> {
        Key::new(format!("STOCK#{sku}"), "STOCK")
    }

    pub fn idempotency(key: &str) -> Result<Key> {
        Key::new(format!("IDEM#{key}"), "IDEM")
    }

    pub fn mandate_id(id: &str) -> Result<Key> {
        Key::new(format!("MANDATE_ID#{id}"), "MANDATE_ID")
    }

    /// Source and event id go in different key parts, so neither can
    /// contain a separator that would make two pairs collide.
    pub fn webhook(source: &str, event_id: &str) -> Result<Key> {
        Key::new(format!("WEBHOOK#{source}"), format!("EVENT#{event_id}"))
    }

    pub fn ledger(id: &str) -> Result<Key> {
        Key::new(format!("LEDGER#{id}"), "LEDGER")
    }

    /// An outbox message. Keyed by its id alone, so an id is unique across
    /// every order (put-if-absent, as the port requires).
    pub fn outbox(id: &str) -> Result<Key> {
        Key::new(format!("OUTBOX#{id}"), "OUTBOX")
    }

    /// An operator audit record, by its id.
    pub fn audit(id: &str) -> Result<Key> {
        Key::new(format!("AUDIT#{id}"), "AUDIT")
    }

    /// How many completed checkouts applied a discount code.
    pub fn discount_uses(code: &str) -> Result<Key> {
        Key::new(format!("DISCOUNT#{code}"), "USES")
    }

    /// Marks that a catalog's stock was seeded (see
    /// `DynamoStore::seed_stock`).
    pub fn stock_seed(marker: &str) -> Result<Key> {
        Key::new("META#stock_seed".to_owned(), marker)
    }

    /// An item that never exists, read by the health check.
    pub fn health() -> Key {
        Key { pk: "HEALTH".into(), sk: "HEALTH".into() }
    }

    /// The key as an item (or the start of one).
    pub fn item(&self) -> Item {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(self.sk.clone())),
        ])
    }
}

/// The sort key prefix of order events.
pub const EVENT_PREFIX: &str = "EVENT#";
/// The sort key prefix of an order's mandates.
pub const MANDATE_PREFIX: &str = "MANDATE#";
/// `time_pk` of orders in the `by_time` index.
pub const ORDERS_BY_TIME: &str = "ORDER";
/// `time_pk` of ledger entries in the `by_time` index.
pub const LEDGER_BY_TIME: &str = "LEDGER";

/// `time_pk` of operator audit records in the `by_time` index.
pub const AUDIT_BY_TIME: &str = "AUDIT";
/// `time_pk` of checkout sessions waiting for an operator (in
/// `requires_escalation` or `complete_in_progress`) in the `by_time`
/// index, by last change. Sparse: a session leaves it when its status
/// moves on, since every write of a session rewrites its whole item.
pub const CHECKOUTS_NEEDING_ATTENTION: &str = "CHECKOUT_ATTENTION";

/// `time_pk` of outbox messages in the `by_time` index (by creation time).
pub const OUTBOX_BY_TIME: &str = "OUTBOX";
/// `due_pk` of pending outbox messages in the sparse `outbox_due` index.
pub const OUTBOX_DUE: &str = "DUE";

/// `owner_pk` of an owner's orders in the `by_owner` index.
pub fn owner_partition(owner: &str) -> String {
    format!("OWNER#{owner}")
}

/// A time as Unix nanoseconds, for a value that is stored. Times outside
/// 1678–2262 do not fit and are refused rather than silently moved (the
/// SQLite store has the same range).
pub fn nanos(t: OffsetDateTime) -> Result<i64> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| Error::invalid(format!("time {t} is out of the storable range")))
}

/// A time as Unix nanoseconds for a comparison, clamped to the storable
/// range.
pub fn nanos_clamped(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Nanoseconds as a fixed-width string that sorts like the number: the
/// value shifted to be non-negative, in 20 zero-padded digits. Index sort
/// keys start with it, so a string range is a time range.
pub fn time_key(nanos: i64) -> String {
    let shifted = (i128::from(nanos) - i128::from(i64::MIN)) as u64;
    format!("{shifted:020}")
}

/// `time_key` followed by an id: unique, and in (time, id) order.
pub fn time_sort_key(nanos: i64, id: &str) -> String {
    format!("{}#{id}", time_key(nanos))
}

/// The `ttl` for something that expires at `nanos`: whole Unix seconds,
/// rounded up so DynamoDB never deletes an item before it has expired.
pub fn ttl_seconds(nanos: i64) -> i64 {
    nanos.div_euclid(1_000_000_000) + i64::from(nanos.rem_euclid(1_000_000_000) != 0)
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn corrupt(what: &str, attribute: &str, why: &str) -> Error {
    Error::internal(format!("corrupt stored {what}: attribute {attribute} {why}"))
}

/// A string attribute.
pub fn get_s<'a>(item: &'a Item, name: &str, what: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        Some(_) => Err(corrupt(what, name, "is not a string")),
        None => Err(corrupt(what, name, "is missing")),
    }
}

/// A number attribute, parsed into `T`.
pub fn get_n<T: FromStr>(item: &Item, name: &str, what: &str) -> Result<T> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.parse().map_err(|_| corrupt(what, name, "is out of range for its type"))
        }
        Some(_) => Err(corrupt(what, name, "is not a number")),
        None => Err(corrupt(what, name, "is missing")),
    }
}

/// A binary attribute.
pub fn get_b<'a>(item: &'a Item, name: &str, what: &str) -> Result<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(v)) => Ok(v.as_ref()),
        Some(_) => Err(corrupt(what, name, "is not binary")),
        None => Err(corrupt(what, name, "is missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_like_the_times() {
        let times =
            [i64::MIN, i64::MIN + 1, -1_000_000_000, -1, 0, 1, 999, 1_800_000_000_000_000_000];
        let keys: Vec<String> = times.iter().map(|t| time_key(*t)).collect();
        assert!(keys.iter().all(|k| k.len() == 20), "{keys:?}");
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(time_key(i64::MAX), u64::MAX.to_string());
        // The id only breaks ties; an earlier time always sorts first.
        assert!(time_sort_key(5, "zzz") < time_sort_key(6, "aaa"));
        assert!(time_sort_key(5, "a") < time_sort_key(5, "b"));
        // A bare time key bounds the range of sort keys at that time.
        assert!(time_key(5) < time_sort_key(5, "a") && time_sort_key(5, "z") < time_key(6));
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        let cases = [
            (0, 0),
            (1, 1),
            (999_999_999, 1),
            (1_000_000_000, 1),
            (1_000_000_001, 2),
            (-1, 0),
            (-1_000_000_000, -1),
        ];
        for (nanos, want) in cases {
            assert_eq!(ttl_seconds(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn keys_of_different_kinds_never_collide_and_long_ones_are_refused() {
        let keys = [
            Key::cart("x").unwrap(),
            Key::checkout("x").unwrap(),
            Key::checkout_order("x").unwrap(),
            Key::order("x").unwrap(),
            Key::order_event("x", 1, 0).unwrap(),
            Key::order_mandate("x", 0).unwrap(),
            Key::stock("x").unwrap(),
            Key::idempotency("x").unwrap(),
            Key::mandate_id("x").unwrap(),
            Key::webhook("x", "x").unwrap(),
            Key::ledger("x").unwrap(),
            Key::stock_seed("x").unwrap(),
            Key::discount_uses("x").unwrap(),
            Key::outbox("x").unwrap(),
            Key::health(),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // A separator inside a webhook source cannot fake another pair.
        assert_ne!(Key::webhook("a#b", "c").unwrap(), Key::webhook("a", "b#c").unwrap());
        assert!(Key::idempotency(&"k".repeat(2040)).is_ok());
        let err = Key::idempotency(&"k".repeat(2050)).unwrap_err();
        assert_eq!(err.code(), crate::domain::ErrorCode::InvalidInput);
        // Events sort by version, then by position in the write.
        let e = |v, i| Key::order_event("o", v, i).unwrap().sk;
        assert!(e(1, 9) < e(2, 0) && e(2, 0) < e(2, 1) && e(9, 0) < e(10, 0));
    }

    #[test]
    fn damaged_attributes_are_internal_errors() {
        let item = Item::from([
            ("s".to_owned(), s("text")),
            ("n".to_owned(), n(-5)),
            ("big".to_owned(), n("5000000000")),
        ]);
        assert_eq!(get_s(&item, "s", "x").unwrap(), "text");
        assert_eq!(get_n::<i64>(&item, "n", "x").unwrap(), -5);
        let failures = [
            get_s(&item, "n", "x").map(|_| ()),
            get_s(&item, "missing", "x").map(|_| ()),
            get_n::<u32>(&item, "n", "x").map(|_| ()),
            get_n::<u32>(&item, "big", "x").map(|_| ()),
            get_n::<u64>(&item, "s", "x").map(|_| ()),
            get_b(&item, "s", "x").map(|_| ()),
        ];
        for f in failures {
            assert_eq!(f.unwrap_err().code(), crate::domain::ErrorCode::Internal);
        }
    }
}
