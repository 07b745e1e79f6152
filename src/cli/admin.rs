//! `agentgate ledger` and `agentgate admin …`: the operator tools on the
//! command line, working offline against the store the settings name (the
//! same data dir, or DynamoDB table, as `serve`).
//!
//! Each command builds the application like `serve` does and calls the
//! same [`operator`](crate::gateway::operator) use case as the matching
//! tool of `/admin/mcp`; this module only parses arguments and prints.
//! Output is a table for people or, with `--format json`, the use case's
//! JSON on stdout for scripts. Any refusal goes to stderr as
//! `error: <code>: <message>` with a non-zero exit status.
//!
//! Whoever can run the binary on the gateway's data is its operator, so
//! the audit trail names the local user (`cli:<user>`).

use std::path::PathBuf;

use serde::Serialize;

use crate::domain::Money;
use crate::gateway::operator::{
    parse_bound, Escalation, FeeReport, OrderPage, OrderQuery, RefundOutcome, StockAdjustment,
};
use crate::gateway::{Gateway, OrderActor};
use crate::ports::AuditRecord;
use crate::settings::{Overrides, Settings};

/// `--format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns with totals, for reading.
    #[default]
    Table,
    /// The JSON the matching `/admin/mcp` tool returns.
    Json,
}

/// Options every operator command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Directory of the store and keys [default: the `data_dir` setting,
    /// ./data].
    #[arg(long, env = "AGENTGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// `agentgate ledger`.
#[derive(Debug, Clone, clap::Args)]
pub struct LedgerArgs {
    /// Start: a date (YYYY-MM-DD, UTC, from its start) or an RFC 3339 time.
    #[arg(long)]
    pub from: String,
    /// End: a date (to its end) or an RFC 3339 time (exclusive).
    #[arg(long)]
    pub to: String,
    /// Only this ISO 4217 currency [default: every currency].
    #[arg(long)]
    pub currency: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Add or remove units of one SKU, audited; once per idempotency key.
    AdjustStock {
        #[arg(long)]
        sku: String,
        /// Units to add, or remove when negative (e.g. --delta -3).
        #[arg(long, allow_negative_numbers = true)]
        delta: i64,
        /// Why, for the audit log.
        #[arg(long)]
        reason: String,
        /// A fresh unique string per change; repeating it changes nothing.
        #[arg(long)]
        idempotency_key: String,
        #[command(flatten)]
        common: Common,
    },
    /// List orders, newest first.
    Orders {
        /// created, paid, partially_fulfilled, fulfilled, delivered,
        /// canceled or refunded.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Page size, 1 to 200 [default: 50].
        #[arg(long)]
        limit: Option<u32>,
        /// The next_cursor a previous page printed.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Refund an order through the payment processor; once per key.
    Refund {
        #[arg(long)]
        order_id: String,
        /// Minor units to refund [default: everything still paid, which
        /// also reverses the platform fee].
        #[arg(long)]
        amount: Option<i64>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        idempotency_key: String,
        #[command(flatten)]
        common: Common,
    },
    /// The platform fee ledger over a window (same as `agentgate ledger`).
    Fees(LedgerArgs),
    /// Checkouts waiting in requires_escalation or stuck completing.
    Escalations {
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// The audit log of operator changes, newest first.
    Audit {
        /// Only changes to this SKU.
        #[arg(long)]
        sku: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        common: Common,
    },
}

/// Builds the gateway from the settings, as `serve` would.
async fn gateway(
    config: Option<&std::path::Path>,
    common: &Common,
) -> anyhow::Result<std::sync::Arc<Gateway>> {
    let overrides = Overrides { data_dir: common.data_dir.clone(), ..Overrides::default() };
    let settings = Settings::load(config, &overrides)?;
    Ok(crate::bootstrap::build(settings).await?.gateway)
}

fn local_actor() -> OrderActor {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64 && u.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "operator".to_owned());
    OrderActor::new(format!("cli:{user}"), uuid::Uuid::now_v7().to_string())
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `agentgate ledger`.
pub async fn ledger(config: Option<&std::path::Path>, args: LedgerArgs) -> anyhow::Result<()> {
    // A mistyped bound or currency is refused before anything is opened.
    parse_bound("from", &args.from, false)?;
    parse_bound("to", &args.to, true)?;
    args.currency.as_deref().map(crate::domain::Currency::parse).transpose()?;
    let gw = gateway(config, &args.common).await?;
    let report = gw.fee_report(&args.from, &args.to, args.currency.as_deref()).await?;
    match args.common.format {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Table => {
            print!("{}", ledger_table(&report));
            Ok(())
        }
    }
}

pub async fn run(config: Option<&std::path::Path>, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::AdjustStock { sku, delta, reason, idempotency_key, common } => {
            let gw = gateway(config, &common).await?;
            let done =
                gw.adjust_stock(&local_actor(), &sku, delta, &reason, &idempotency_key).await?;
            match common.format {
                OutputFormat::Json => print_json(&done),
                OutputFormat::Table => {
                    print!("{}", adjustment_text(&done));
                    Ok(())
                }
            }
        }
        AdminCommand::Orders { status, from, to, limit, cursor, common } => {
            let gw = gateway(config, &common).await?;
            let page = gw.operator_orders(&OrderQuery { status, from, to, limit, cursor }).await?;
            match common.format {
                OutputFormat::Json => print_json(&page),
                OutputFormat::Table => {
                    print!("{}", orders_table(&page));
                    Ok(())
                }
            }
        }
        AdminCommand::Refund { order_id, amount, reason, idempotency_key, common } => {
            let gw = gateway(config, &common).await?;
            let done = gw
                .operator_refund(&local_actor(), &order_id, amount, &reason, &idempotency_key)
                .await?;
            match common.format {
                OutputFormat::Json => print_json(&done),
                OutputFormat::Table => {
                    print!("{}", refund_text(&done));
                    Ok(())
                }
            }
        }
        AdminCommand::Fees(args) => ledger(config, args).await,
        AdminCommand::Escalations { limit, common } => {
            let gw = gateway(config, &common).await?;
            let list = gw.pending_escalations(limit).await?;
            match common.format {
                OutputFormat::Json => print_json(&serde_json::json!({"escalations": list})),
                OutputFormat::Table => {
                    print!("{}", escalations_table(&list));
                    Ok(())
                }
            }
        }
        AdminCommand::Audit { sku, limit, common } => {
            let gw = gateway(config, &common).await?;
            let records = gw.audit_log(sku.as_deref(), limit).await?;
            match common.format {
                OutputFormat::Json => {
                    let rows: Vec<_> = records.iter().map(audit_json).collect();
                    print_json(&serde_json::json!({"records": rows}))
                }
                OutputFormat::Table => {
                    print!("{}", audit_table(&records));
                    Ok(())
                }
            }
        }
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn audit_json(r: &AuditRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "action": r.action, "target": r.target, "delta": r.delta,
        "stock_after": r.stock_after, "actor": r.actor, "reason": r.reason,
        "trace_id": r.trace_id, "at": rfc3339(r.at),
    })
}

/// Left-aligned columns, each as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn money(m: &Money) -> String {
    m.to_string()
}

fn ledger_table(r: &FeeReport) -> String {
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                rfc3339(e.at),
                e.order_id.to_string(),
                e.kind.as_str().to_owned(),
                money(&e.gross),
                money(&e.fee),
            ]
        })
        .collect();
    let mut out = format!("fee ledger from {} to {}\n", rfc3339(r.from), rfc3339(r.to));
    out.push_str(&table(&["AT", "ORDER", "KIND", "GROSS", "FEE"], &rows));
    if r.totals.is_empty() {
        out.push_str("no entries\n");
    }
    for (code, total) in &r.totals {
        let count = r.entries.iter().filter(|e| e.fee.currency().code() == code).count();
        let gross = r.gross.get(code).map(money).unwrap_or_else(|| format!("{code} 0"));
        out.push_str(&format!(
            "TOTAL {code}: fees {} on gross {gross} ({count} entries)\n",
            money(total)
        ));
    }
    out
}

fn adjustment_text(a: &StockAdjustment) -> String {
    let replay =
        if a.replayed { " (replayed: this key was used before; nothing changed)" } else { "" };
    format!(
        "stock of {} adjusted by {:+}: {} in stock{replay}\naudit {} by {} at {}: {}\n",
        a.sku,
        a.delta,
        a.stock,
        a.audit_id,
        a.actor,
        rfc3339(a.at),
        a.reason
    )
}

fn orders_table(p: &OrderPage) -> String {
    let rows: Vec<Vec<String>> = p
        .orders
        .iter()
        .map(|o| {
            vec![
                rfc3339(o.created_at),
                o.id.clone(),
                o.status.to_owned(),
                money(&o.total),
                money(&o.fee),
                o.owner.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = table(&["CREATED", "ORDER", "STATUS", "TOTAL", "FEE", "OWNER"], &rows);
    out.push_str(&format!("{} orders", p.orders.len()));
    match &p.next_cursor {
        Some(c) => out.push_str(&format!("; more with --cursor {c}\n")),
        None => out.push('\n'),
    }
    out
}

fn refund_text(r: &RefundOutcome) -> String {
    let replay =
        if r.replayed { " (replayed: this key was used before; nothing moved)" } else { "" };
    format!(
        "order {} refunded {} {} (total refunded {}), status {}{}{replay}\n",
        r.order_id,
        r.amount,
        r.currency,
        r.total_refunded,
        r.status,
        if r.fee_reversed { ", platform fee reversed" } else { "" }
    )
}

fn escalations_table(list: &[Escalation]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                rfc3339(e.updated_at),
                e.checkout_id.clone(),
                e.status.to_owned(),
                money(&e.total),
                if e.expired { "yes".into() } else { "no".into() },
                e.continue_url.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out =
        table(&["SINCE", "CHECKOUT", "STATUS", "TOTAL", "EXPIRED", "CONTINUE_URL"], &rows);
    out.push_str(&format!("{} sessions waiting\n", list.len()));
    out
}

fn audit_table(records: &[AuditRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                rfc3339(r.at),
                r.action.clone(),
                r.target.clone(),
                format!("{:+}", r.delta),
                r.stock_after.map_or_else(|| "-".into(), |q| q.to_string()),
                r.actor.clone(),
                r.reason.clone(),
            ]
        })
        .collect();
    table(&["AT", "ACTION", "TARGET", "DELTA", "STOCK", "ACTOR", "REASON"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let out = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()]]);
        assert_eq!(out, "A          LONGER\nwide cell  x\n");
    }
}
