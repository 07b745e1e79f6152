//! The UCP MCP binding at `/ucp/mcp`: the thirteen tools of the UCP
//! shopping service's OpenRPC document, each taking `meta` (`ucp-agent`,
//! `idempotency-key`) plus an `id` and/or a payload, and answering with the
//! UCP wire shapes in `structuredContent`.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{tool_router, ErrorData, RoleServer, ServerHandler};

use super::{run_tool, server_config, supports_cache_hints, Edge, PROTOCOL_VERSIONS};

#[derive(Clone)]
pub struct UcpServer {
    edge: Arc<Edge>,
    tools: Arc<ToolRouter<Self>>,
}

impl UcpServer {
    pub fn new(edge: Arc<Edge>) -> Self {
        let mut tools = Self::tool_router();
        super::schema::tidy_router(&mut tools);
        Self { edge, tools: Arc::new(tools) }
    }

    pub fn tools(&self) -> Vec<Tool> {
        self.tools.list_all()
    }
}

#[tool_router(router = tool_router, vis = "pub(crate)", allow_empty = true)]
impl UcpServer {}

const INSTRUCTIONS: &str = "The Universal Commerce Protocol (UCP 2026-04-08) shopping service \
of this merchant, as MCP tools. Every call takes meta.ucp-agent.profile, the URL of your \
platform profile; state-changing calls also take meta.idempotency-key.";

impl ServerHandler for UcpServer {
    fn get_info(&self) -> ServerConfig {
        server_config("agentgate-ucp", "agentgate UCP shopping service", INSTRUCTIONS, false)
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        run_tool(self.clone(), Arc::clone(&self.tools), request, context).await
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
}
