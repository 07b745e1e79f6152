//! The operator MCP server at `/admin/mcp`: the merchant's tools, for an
//! operator's own assistant or scripts.
//!
//! Access: the HTTP edge admits only callers holding the `admin` scope to
//! anything under `/admin/` (in every auth mode), and the tool wrapper
//! checks the same rule again per call, so a transport mounted elsewhere
//! by mistake still refuses. Each tool is one
//! [`operator`](crate::gateway::operator) use case, the same function the
//! `agentgate admin` commands call; the admitted caller's subject is the
//! actor the audit trail names.
//!
//! Results are the use case's JSON in `structuredContent` (with a text
//! mirror); failures are tool errors with the usual `{code, message,
//! retryable}`.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ToolError;
use super::schema::flat_input;
use super::{run_tool, server_config, Edge, PROTOCOL_VERSIONS};
use crate::gateway::operator::OrderQuery;
use crate::gateway::{Caller, Gateway, OrderActor};

const INSTRUCTIONS: &str = "Operator tools of one store: correct stock (adjust_stock), list \
orders (list_orders), refund an order (refund_order), report platform fees (fee_report) and \
list checkouts waiting for someone (pending_escalations). adjust_stock and refund_order change \
real stock and move real money: confirm with the operator first, give each logical change a \
fresh idempotency_key, and retry only with the same key and the same arguments. Every change \
is audited under your credential.";

#[derive(Clone)]
pub struct OperatorServer {
    edge: Arc<Edge>,
    tools: Arc<ToolRouter<Self>>,
}

/// Who the audit trail names: the admitted credential's subject.
fn actor(caller: &Caller, context_trace: Option<String>) -> OrderActor {
    let name = caller.subject.clone().unwrap_or_else(|| "operator".to_owned());
    let trace = context_trace.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    OrderActor::new(name, trace)
}

fn structured<T: Serialize>(value: &T) -> Result<CallToolResult, ToolError> {
    let value = serde_json::to_value(value)
        .map_err(|e| ToolError::new(crate::domain::ErrorCode::Internal, e.to_string()))?;
    Ok(CallToolResult::structured(value))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct AdjustStockArgs {
    /// The SKU to correct, exactly as in the catalog.
    pub sku: String,
    /// Units to add (positive) or remove (negative); never zero.
    pub delta: i64,
    /// Why, for the audit log (a cycle count, damaged goods, a delivery).
    pub reason: String,
    /// A fresh unique string per logical change (a UUID). Repeating it
    /// with the same arguments answers the first result and changes
    /// nothing; with other arguments it is refused.
    pub idempotency_key: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct ListOrdersArgs {
    /// Only orders in this status: created, paid, partially_fulfilled,
    /// fulfilled, delivered, canceled or refunded.
    pub status: Option<String>,
    /// Orders created at or after this date (YYYY-MM-DD, UTC) or RFC 3339
    /// time.
    pub from: Option<String>,
    /// Orders created before the end of this date, or before this RFC 3339
    /// time.
    pub to: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct RefundOrderArgs {
    pub order_id: String,
    /// Minor units to refund (cents for USD). Leave out to refund
    /// everything still paid, which also reverses the platform fee and
    /// moves the order to refunded.
    pub amount: Option<i64>,
    /// Why, for the order's audit trail and the processor.
    pub reason: String,
    /// A fresh unique string per logical refund (a UUID); a retry with the
    /// same key refunds nothing more.
    pub idempotency_key: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct FeeReportArgs {
    /// Start: a date (YYYY-MM-DD, UTC, from its start) or an RFC 3339 time.
    pub from: String,
    /// End: a date (to its end) or an RFC 3339 time (exclusive).
    pub to: String,
    /// An ISO 4217 code to report only one currency.
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = flat_input)]
pub struct PendingEscalationsArgs {
    /// How many sessions, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

#[tool_router(router = operator_router, vis = "pub(crate)")]
impl OperatorServer {
    #[tool(
        name = "adjust_stock",
        title = "Correct the stock of a SKU",
        description = "Add (positive delta) or remove (negative delta) units of one SKU, with a \
reason, audited under your credential. Stock never goes below zero: a removal larger than what \
is left is refused with insufficient_stock and changes nothing. Idempotent on idempotency_key.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn adjust_stock(
        &self,
        Extension(caller): Extension<Caller>,
        Extension(trace): Extension<TraceId>,
        Parameters(args): Parameters<AdjustStockArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let by = actor(&caller, trace.0);
        let done = self
            .gateway()
            .adjust_stock(&by, &args.sku, args.delta, &args.reason, &args.idempotency_key)
            .await?;
        structured(&done)
    }

    #[tool(
        name = "list_orders",
        title = "List orders",
        description = "Orders of every customer, newest first, optionally by status and \
creation date, a page at a time (pass next_cursor back as cursor). Read-only.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn list_orders(
        &self,
        Parameters(args): Parameters<ListOrdersArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let query = OrderQuery {
            status: args.status,
            from: args.from,
            to: args.to,
            limit: args.limit,
            cursor: args.cursor,
        };
        structured(&self.gateway().operator_orders(&query).await?)
    }

    #[tool(
        name = "refund_order",
        title = "Refund an order",
        description = "Refund an order through the payment processor: all that is still paid \
(the order becomes refunded and the platform fee is reversed in the ledger) or, with amount, \
part of it. Moves real money; confirm first. Idempotent on idempotency_key.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    pub async fn refund_order(
        &self,
        Extension(caller): Extension<Caller>,
        Extension(trace): Extension<TraceId>,
        Parameters(args): Parameters<RefundOrderArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let by = actor(&caller, trace.0);
        let done = self
            .gateway()
            .operator_refund(
                &by,
                args.order_id.trim(),
                args.amount,
                &args.reason,
                &args.idempotency_key,
            )
            .await?;
        structured(&done)
    }

    #[tool(
        name = "fee_report",
        title = "Platform fee report",
        description = "The platform fee ledger between two dates: every fee and reversal, with \
totals per currency. The same data as GET /admin/ledger and `agentgate ledger`. Read-only.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn fee_report(
        &self,
        Parameters(args): Parameters<FeeReportArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let report =
            self.gateway().fee_report(&args.from, &args.to, args.currency.as_deref()).await?;
        structured(&report)
    }

    #[tool(
        name = "pending_escalations",
        title = "Checkouts waiting for someone",
        description = "Checkout sessions waiting in requires_escalation (the buyer must finish \
at continue_url) or stuck in complete_in_progress, longest wait first. Read-only.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn pending_escalations(
        &self,
        Parameters(args): Parameters<PendingEscalationsArgs>,
    ) -> Result<CallToolResult, ToolError> {
        #[derive(Serialize)]
        struct Out {
            escalations: Vec<crate::gateway::operator::Escalation>,
        }
        let escalations = self.gateway().pending_escalations(args.limit).await?;
        structured(&Out { escalations })
    }
}

/// The request id of the HTTP request behind a tool call, when there is
/// one, so the audit trail and the logs share it.
#[derive(Debug, Clone, Default)]
pub struct TraceId(pub Option<String>);

impl OperatorServer {
    pub fn new(edge: Arc<Edge>) -> Self {
        let mut tools = Self::operator_router();
        super::schema::tidy_router(&mut tools);
        Self { edge, tools: Arc::new(tools) }
    }

    fn gateway(&self) -> &Gateway {
        &self.edge.gateway
    }

    /// Every tool definition, as `tools/list` returns them.
    pub fn tools(&self) -> Vec<Tool> {
        self.tools.list_all()
    }
}

impl ServerHandler for OperatorServer {
    fn get_info(&self) -> ServerConfig {
        server_config("agentgate-operator", "agentgate: operator tools", INSTRUCTIONS, false)
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let trace = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get("request-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        context.extensions.insert(TraceId(trace));
        run_tool(self.gateway(), self.clone(), Arc::clone(&self.tools), request, context).await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.list_all()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.get(name).cloned()
    }
}
