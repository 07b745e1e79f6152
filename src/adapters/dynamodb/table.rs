//! The table: key schema, secondary indexes, TTL and billing, defined once.
//!
//! Three things must agree on the table's shape: the store's queries, the
//! `create-table` helper the tests and the CLI use, and `template.yaml`,
//! which creates the table in AWS. The shape is written here as data;
//! [`create_table`] builds the API calls from it, and
//! [`template_properties`] renders the exact YAML block that
//! `template.yaml` must contain (a unit test below checks that it does), so
//! none of the three can drift from the others.
//!
//! Single-table design, every attribute a string unless noted:
//! - `pk`/`sk`: the primary key. Each item kind has its own `pk` prefix
//!   (`CART#`, `CHECKOUT#`, `ORDER#`, `STOCK#`, …), so kinds never collide.
//! - index `by_owner` (`owner_pk`, `owner_sk`): orders by owner, newest
//!   first. Sparse: only orders with an owner carry the attributes.
//! - index `by_time` (`time_pk`, `time_sk`): every order under `ORDER` and
//!   every ledger entry under `LEDGER`, sorted by time, for `list_orders`
//!   without an owner and for ledger date ranges.
//! - index `outbox_due` (`due_pk`, `due_sk`): pending outbox messages under
//!   `DUE`, by next attempt time, for claiming. Sparse: delivered and dead
//!   messages lose the attributes. Outbox messages are also in `by_time`
//!   under `OUTBOX`, by creation time, for listing.
//! - `ttl` (number, Unix seconds): set on idempotency records and reserved
//!   mandate ids only, so DynamoDB deletes them some time after they expire.
//!
//! Every index projects every attribute: the reads that use them return
//! whole orders and ledger entries, and a keys-only projection would turn
//! each page into a second round of reads.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::retry::describe;
use crate::domain::{Error, ErrorCode, Result};

/// The partition key attribute.
pub const PK: &str = "pk";
/// The sort key attribute.
pub const SK: &str = "sk";
/// The attribute DynamoDB's TTL reads (Unix seconds).
pub const TTL: &str = "ttl";

/// A global secondary index with a string hash and range key, projecting
/// every attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub pk: &'static str,
    pub sk: &'static str,
}

/// Orders by owner, newest first.
pub const BY_OWNER: Index = Index { name: "by_owner", pk: "owner_pk", sk: "owner_sk" };
/// Orders (`time_pk = ORDER`) and ledger entries (`time_pk = LEDGER`) by
/// time.
pub const BY_TIME: Index = Index { name: "by_time", pk: "time_pk", sk: "time_sk" };

/// Pending outbox messages by next attempt time. Sparse: a message carries
/// `due_pk`/`due_sk` only while it is pending, so delivered and dead
/// messages drop out and a claim reads only what may be due.
pub const OUTBOX_DUE: Index = Index { name: "outbox_due", pk: "due_pk", sk: "due_sk" };

/// Every secondary index, in the order the template lists them.
pub const INDEXES: [Index; 3] = [BY_OWNER, BY_TIME, OUTBOX_DUE];

/// Options for [`create_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// Turn on point-in-time recovery, as the SAM template does. Tests skip
    /// it: a table that lives for one test has nothing to recover.
    pub point_in_time_recovery: bool,
    /// How long to wait for the table to become active.
    pub wait: Duration,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self { point_in_time_recovery: true, wait: Duration::from_secs(120) }
    }
}

/// Every key attribute, in the order the template defines them.
fn key_attributes() -> Vec<&'static str> {
    let mut names = vec![PK, SK];
    for index in INDEXES {
        names.push(index.pk);
        names.push(index.sk);
    }
    names
}

fn build_failed(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("cannot build a DynamoDB table request: {e}"))
}

fn key_schema(pk: &str, sk: &str) -> Result<Vec<KeySchemaElement>> {
    [(pk, KeyType::Hash), (sk, KeyType::Range)]
        .into_iter()
        .map(|(name, kind)| KeySchemaElement::builder().attribute_name(name).key_type(kind).build())
        .collect::<std::result::Result<_, _>>()
        .map_err(build_failed)
}

/// Creates the table with its indexes (on-demand billing), waits until it is
/// active, and turns on TTL and, if asked, point-in-time recovery. A table
/// that already exists is `already_exists`; nothing about it is changed.
pub async fn create_table(client: &Client, table: &str, options: CreateOptions) -> Result<()> {
    let definitions = key_attributes()
        .into_iter()
        .map(|name| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(build_failed)?;
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(definitions))
        .set_key_schema(Some(key_schema(PK, SK)?));
    for index in INDEXES {
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(index.name)
            .set_key_schema(Some(key_schema(index.pk, index.sk)?))
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(build_failed)?;
        request = request.global_secondary_indexes(gsi);
    }
    if let Err(e) = request.send().await {
        if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("DynamoDB table {table} already exists"),
            ));
        }
        return Err(Error::store(format!("create table {table}: {}", describe(&e))));
    }
    wait_active(client, table, options.wait).await?;
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(TTL)
        .enabled(true)
        .build()
        .map_err(build_failed)?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| Error::store(format!("enable TTL on {table}: {}", describe(&e))))?;
    if options.point_in_time_recovery {
        let pitr = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
            .map_err(build_failed)?;
        client
            .update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(pitr)
            .send()
            .await
            .map_err(|e| Error::store(format!("enable PITR on {table}: {}", describe(&e))))?;
    }
    Ok(())
}

async fn wait_active(client: &Client, table: &str, wait: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let status = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| Error::store(format!("describe table {table}: {}", describe(&e))))?
            .table
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::store(format!(
                "table {table} is not active after {}s (status {status:?})",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `Properties` block of the table resource in `template.yaml`, exactly
/// as it must appear there (six spaces of indentation). Printed by
/// `agentgate dynamodb template-properties`.
pub fn template_properties() -> String {
    let mut y = String::new();
    let mut line = |indent: usize, text: &str| {
        y.push_str(&" ".repeat(indent));
        y.push_str(text);
        y.push('\n');
    };
    line(6, "BillingMode: PAY_PER_REQUEST");
    line(6, "AttributeDefinitions:");
    for name in key_attributes() {
        line(8, &format!("- AttributeName: {name}"));
        line(10, "AttributeType: S");
    }
    let keys = |line: &mut dyn FnMut(usize, &str), indent: usize, pk: &str, sk: &str| {
        for (name, kind) in [(pk, "HASH"), (sk, "RANGE")] {
            line(indent, &format!("- AttributeName: {name}"));
            line(indent + 2, &format!("KeyType: {kind}"));
        }
    };
    line(6, "KeySchema:");
    keys(&mut line, 8, PK, SK);
    line(6, "GlobalSecondaryIndexes:");
    for index in INDEXES {
        line(8, &format!("- IndexName: {}", index.name));
        line(10, "KeySchema:");
        keys(&mut line, 12, index.pk, index.sk);
        line(10, "Projection:");
        line(12, "ProjectionType: ALL");
    }
    line(6, "TimeToLiveSpecification:");
    line(8, &format!("AttributeName: {TTL}"));
    line(8, "Enabled: true");
    line(6, "PointInTimeRecoverySpecification:");
    line(8, "PointInTimeRecoveryEnabled: true");
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SAM template creates the same table as [`create_table`]: its
    /// table resource carries the rendered block verbatim.
    #[test]
    fn the_template_creates_the_same_table() {
        let template = include_str!("../../../template.yaml");
        let block = template_properties();
        assert!(
            template.contains(&block),
            "template.yaml's table Properties differ from the store's table; \
             paste the output of `agentgate dynamodb template-properties`:\n{block}"
        );
    }

    #[test]
    fn every_index_key_is_a_defined_attribute_once() {
        let names = key_attributes();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.contains(&BY_OWNER.pk) && names.contains(&BY_TIME.sk));
        assert!(!names.contains(&TTL), "the TTL attribute is not a key");
    }
}
