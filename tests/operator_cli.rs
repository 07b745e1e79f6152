//! `agentgate ledger` and `agentgate admin …` as an operator runs them: the
//! built binary on a data dir, reading and writing the same store the
//! gateway uses, with table and JSON output and a non-zero exit on every
//! refusal.

use std::path::Path;
use std::process::{Command, Output};

use agentgate::domain::{Currency, LedgerEntry, LedgerKind, Money, OrderId, Sku};
use agentgate::settings::Settings;
use serde_json::Value;
use time::OffsetDateTime;

const SKU: &str = "ORGANIC-COTTON-TEE-BLACK";

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        // Only what the test sets: no settings leak in from the machine.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("USER", "tester")
        .output()
        .expect("the binary runs")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let text = ok(dir, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

/// Runs a command that must be refused; returns its stderr.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout when refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn entry(kind: LedgerKind, gross: Money, fee: Money, at: OffsetDateTime) -> LedgerEntry {
    let order_id = OrderId::from_uuid(uuid::Uuid::now_v7());
    LedgerEntry { id: format!("fee_{order_id}"), order_id, kind, gross, fee, at }
}

/// Books ledger entries straight into the data dir's store, as completed
/// checkouts would, then closes it.
async fn book(dir: &Path, entries: &[LedgerEntry]) {
    let app = agentgate::bootstrap::build(Settings::for_data_dir(dir)).await.expect("build");
    for e in entries {
        app.store.append_ledger(e).await.expect("append");
    }
}

#[tokio::test]
async fn ledger_reports_a_window_as_a_table_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let usd = |m| Money::new(m, Currency::usd());
    let eur = |m| Money::new(m, Currency::parse("EUR").unwrap());
    let old = time::macros::datetime!(2020-01-01 00:00 UTC);
    book(
        dir.path(),
        &[
            entry(LedgerKind::Fee, usd(10_000), usd(50), now),
            entry(LedgerKind::Fee, usd(2_000), usd(10), now),
            entry(LedgerKind::Fee, eur(5_000), eur(25), now),
            entry(LedgerKind::Fee, usd(9_900), usd(99), old),
        ],
    )
    .await;
    let today = now.date().to_string();

    let table = ok(dir.path(), &["ledger", "--from", &today, "--to", &today, "--currency", "USD"]);
    assert!(table.contains("TOTAL USD: fees USD 0.60 on gross USD 120.00 (2 entries)"), "{table}");
    assert!(!table.contains("EUR"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains(" fee ")).count(), 2, "{table}");

    let all = json(dir.path(), &["ledger", "--from", &today, "--to", &today]);
    assert_eq!(all["entries"].as_array().unwrap().len(), 3, "{all}");
    assert_eq!(all["totals"]["USD"]["amount"], 60);
    assert_eq!(all["totals"]["EUR"]["amount"], 25);
    assert_eq!(all["gross"]["USD"]["amount"], 12_000);
    // RFC 3339 bounds work too, and the admin alias answers the same.
    let wide = json(
        dir.path(),
        &["admin", "fees", "--from", "2019-12-31T00:00:00Z", "--to", "2020-01-02T00:00:00+00:00"],
    );
    assert_eq!(wide["totals"]["USD"]["amount"], 99, "{wide}");

    for (args, code) in [
        (vec!["ledger", "--from", "last week", "--to", &today], "invalid_input"),
        (vec!["ledger", "--from", &today, "--to", "2026-02-30"], "invalid_input"),
        (vec!["ledger", "--from", &today, "--to", &today, "--currency", "ZZZ"], "invalid_currency"),
        (vec!["ledger", "--from", "2026-02-01", "--to", "2026-01-01"], "invalid_input"),
    ] {
        let err = refused(dir.path(), &args);
        assert!(err.contains(&format!("error: {code}:")), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn admin_commands_share_the_operator_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The first command creates the store and seeds the demo catalog,
    // as `serve` would.
    let orders = json(d, &["admin", "orders"]);
    assert_eq!(orders["orders"], serde_json::json!([]));
    assert!(orders["next_cursor"].is_null());
    let before = {
        let app = agentgate::bootstrap::build(Settings::for_data_dir(d)).await.unwrap();
        app.store.get_stock(&Sku::parse(SKU).unwrap()).await.unwrap().unwrap_or(0)
    };

    let adjust = ["admin", "adjust-stock", "--sku", SKU, "--delta", "-2", "--reason", "damaged"];
    let args: Vec<&str> = adjust.iter().copied().chain(["--idempotency-key", "cli-1"]).collect();
    let first = json(d, &args);
    assert_eq!(first["stock"], before - 2, "{first}");
    assert_eq!(first["replayed"], false);
    assert_eq!(first["actor"], "cli:tester");
    let again = ok(d, &args);
    assert!(again.contains("replayed"), "{again}");
    assert!(again.contains(&format!("{} in stock", before - 2)), "{again}");

    let conflict: Vec<&str> = ["admin", "adjust-stock", "--sku", SKU, "--delta", "-3"]
        .into_iter()
        .chain(["--reason", "damaged", "--idempotency-key", "cli-1"])
        .collect();
    assert!(refused(d, &conflict).contains("error: idempotency_conflict:"));
    let minus = format!("-{}", before + 10);
    let below: Vec<&str> = ["admin", "adjust-stock", "--sku", SKU, "--delta", minus.as_str()]
        .into_iter()
        .chain(["--reason", "count", "--idempotency-key", "cli-2"])
        .collect();
    assert!(refused(d, &below).contains("error: insufficient_stock:"));
    let unknown = ["admin", "adjust-stock", "--sku", "NOPE", "--delta", "1", "--reason", "x"];
    let unknown: Vec<&str> = unknown.into_iter().chain(["--idempotency-key", "cli-3"]).collect();
    assert!(refused(d, &unknown).contains("error: not_found:"));

    let audit = json(d, &["admin", "audit", "--sku", SKU]);
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "only the applied change: {audit}");
    assert_eq!(records[0]["delta"], -2);
    assert_eq!(records[0]["stock_after"], before - 2);
    assert_eq!(records[0]["actor"], "cli:tester");
    let table = ok(d, &["admin", "audit"]);
    assert!(table.starts_with("AT"), "{table}");
    assert!(table.contains("damaged"), "{table}");

    let pending = json(d, &["admin", "escalations"]);
    assert_eq!(pending["escalations"], serde_json::json!([]));
    assert!(ok(d, &["admin", "escalations"]).contains("0 sessions waiting"));

    let missing = OrderId::from_uuid(uuid::Uuid::now_v7()).to_string();
    let refund = ["admin", "refund", "--order-id", missing.as_str(), "--reason", "test"];
    let refund: Vec<&str> = refund.into_iter().chain(["--idempotency-key", "r-1"]).collect();
    assert!(refused(d, &refund).contains("error: not_found:"));
    assert!(refused(d, &["admin", "orders", "--status", "lost"]).contains("error: invalid_input:"));
    assert!(refused(d, &["admin", "orders", "--cursor", "junk"]).contains("error: invalid_input:"));
}
