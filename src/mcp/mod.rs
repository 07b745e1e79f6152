//! The MCP edge: the gateway tools, resources and prompts (served at `/mcp`
//! and on stdio), the UCP MCP binding (served at `/ucp/mcp`) and the
//! operator tools (served at `/admin/mcp`).
//!
//! Only this module knows MCP. Like the HTTP edge, it turns each call into
//! one use case on [`Gateway`] and holds no business rule of its own; it
//! never reaches an adapter. What it owns is the shape agents see: flat
//! tool inputs, output schemas, tool errors as results, and descriptions
//! that steer a model towards the safe buying flow.
//!
//! Every tool call passes one wrapper ([`GatewayServer::call_tool`] and its
//! twin in [`ucp_binding`]): it establishes the [`Caller`](crate::gateway::Caller),
//! runs the tool in its own task so that even a bug cannot take the
//! connection down, turns argument-parsing failures into structured
//! `invalid_input` results, and logs the outcome.

pub mod caller;
pub mod checkout_tools;
pub mod demo;
pub mod error;
pub mod operator;
pub mod prompts;
pub mod resources;
mod schema;
pub mod tools;
pub mod transport;
pub mod ucp_binding;
pub mod views;

use std::sync::Arc;
use std::time::Instant;

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::domain::ErrorCode;
use crate::gateway::Gateway;
use error::ToolError;

/// The protocol revisions this edge speaks: 2025-06-18 brought
/// `structuredContent` and output schemas, which every tool here relies
/// on, so older revisions are not offered.
pub const PROTOCOL_VERSIONS: &[ProtocolVersion] =
    &[ProtocolVersion::V_2025_06_18, ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2026_07_28];

/// What the MCP servers share: the gateway and the documents rendered at
/// startup.
pub struct Edge {
    gateway: Arc<Gateway>,
    /// The UCP business profile, exactly as `/.well-known/ucp` serves it.
    ucp_profile: Arc<serde_json::Value>,
}

impl Edge {
    pub fn new(gateway: Arc<Gateway>, ucp_profile: Arc<serde_json::Value>) -> Arc<Self> {
        Arc::new(Self { gateway, ucp_profile })
    }
}

/// The gateway's own MCP server: five tools, resources and prompts.
#[derive(Clone)]
pub struct GatewayServer {
    edge: Arc<Edge>,
    tools: Arc<ToolRouter<Self>>,
    prompts: Arc<PromptRouter<Self>>,
}

impl GatewayServer {
    pub fn new(edge: Arc<Edge>) -> Self {
        let mut tools = Self::tool_router() + Self::checkout_router();
        schema::tidy_router(&mut tools);
        Self { edge, tools: Arc::new(tools), prompts: Arc::new(Self::prompt_router()) }
    }

    fn gateway(&self) -> &Gateway {
        &self.edge.gateway
    }

    /// Every tool definition, as `tools/list` returns them.
    pub fn tools(&self) -> Vec<Tool> {
        self.tools.list_all()
    }
}

const INSTRUCTIONS: &str = "This server sells the products of one store to AI buying agents. \
The safe flow is: scout_inventory to find products (its prices are the only trustworthy ones), \
manage_cart to build a cart, negotiate_terms to open a checkout and see totals, shipping and \
what is still missing, then show the user the items and the exact total and get an explicit \
yes before execute_checkout. Never invent prices. Retry execute_checkout only with the same \
idempotency_key, and never change its arguments on a retry. Use track_order afterwards. The \
prompt purchase_with_confirmation spells this out.";

/// The server identity and capabilities, shared by both servers.
fn server_config(name: &str, title: &str, instructions: &str, resources: bool) -> ServerConfig {
    let builder = ServerCapabilities::builder().enable_tools();
    let capabilities = if resources {
        builder.enable_resources().enable_prompts().build()
    } else {
        builder.build()
    };
    ServerConfig::new(capabilities)
        .with_server_info(
            Implementation::new(name, env!("CARGO_PKG_VERSION")).with_title(title.to_owned()),
        )
        .with_instructions(instructions.to_owned())
}

/// Runs a tool call in its own task: a panic, should one ever slip past the
/// house rules, becomes an `internal` tool error instead of a hung request,
/// and a client that disconnects mid-checkout does not abort a payment
/// half-way.
pub(crate) async fn run_tool<S>(
    gateway: &Gateway,
    server: S,
    router: Arc<ToolRouter<S>>,
    request: CallToolRequestParams,
    mut context: RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData>
where
    S: Send + Sync + 'static,
{
    let caller = caller::from_context(&context);
    let name = request.name.clone();
    if let Some(op) = crate::gateway::access::Operation::of_tool(&name) {
        if let Err(e) = gateway.authorize(&caller, op) {
            return Ok(ToolError::from(e).into_result().into());
        }
        let key = caller::rate_key(&context, &caller);
        if let Err(e) = gateway.rate_limit(op.class(), &key) {
            tracing::info!(tool = %name, class = op.class().as_str(), "rate limited");
            return Ok(ToolError::from(e).into_result().into());
        }
    }
    context.extensions.insert(caller);
    let started = Instant::now();
    // Boxed, so tokio moves a pointer rather than the tool's large future
    // (see `run_idempotent` in the UCP REST binding).
    let task = tokio::spawn(Box::pin(async move {
        let call = ToolCallContext::new(&server, request, context);
        router.call(call).await
    }));
    let response = match task.await {
        Ok(response) => response?,
        Err(join) => {
            tracing::error!(tool = %name, error = %join, "tool task failed");
            ToolError::new(ErrorCode::Internal, "internal error").into_result().into()
        }
    };
    let response = structure_argument_errors(response);
    if let CallToolResponse::Complete(result) = &response {
        let code = result
            .structured_content
            .as_ref()
            .filter(|_| result.is_error == Some(true))
            .and_then(|body| body.get("code"))
            .and_then(|c| c.as_str())
            .unwrap_or("ok");
        tracing::info!(
            tool = %name,
            outcome = code,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tool call"
        );
    }
    Ok(response)
}

/// rmcp reports arguments that do not deserialize (a wrong type, an unknown
/// `action`, a missing field) as a tool error with text only. Agents branch
/// on `code`, so give it the same structured body as every other error.
fn structure_argument_errors(response: CallToolResponse) -> CallToolResponse {
    match response {
        CallToolResponse::Complete(result)
            if result.is_error == Some(true) && result.structured_content.is_none() =>
        {
            let text = result
                .content
                .iter()
                .filter_map(|c| c.as_text())
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let message = text
                .strip_prefix("failed to deserialize parameters: ")
                .map(|rest| format!("invalid arguments: {rest}"))
                .unwrap_or(text);
            ToolError::invalid(message).into_result().into()
        }
        other => other,
    }
}

/// Cache hints are part of 2026-07-28 list results; older peers get the
/// legacy shape.
fn supports_cache_hints(context: &RequestContext<RoleServer>) -> bool {
    context.protocol_version().is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

impl ServerHandler for GatewayServer {
    fn get_info(&self) -> ServerConfig {
        server_config("agentgate", "agentgate: safe shopping for AI agents", INSTRUCTIONS, true)
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        run_tool(self.gateway(), self.clone(), Arc::clone(&self.tools), request, context).await
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut result = ListToolsResult::with_all_items(self.tools.list_all());
        if supports_cache_hints(&context) {
            result = result.with_ttl_ms(0).with_cache_scope(rmcp::model::CacheScope::Public);
        }
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.get(name).cloned()
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut result = ListPromptsResult::with_all_items(self.prompts.list_all());
        if supports_cache_hints(&context) {
            result = result.with_ttl_ms(0).with_cache_scope(rmcp::model::CacheScope::Public);
        }
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let prompt_context = rmcp::handler::server::prompt::PromptContext::new(
            self,
            request.name,
            request.arguments,
            context,
        );
        self.prompts.get_prompt(prompt_context).await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(resources::list()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(resources::templates()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = caller::from_context(&context);
        resources::read(&self.edge, &caller, &request.uri).await.map(Into::into)
    }
}
