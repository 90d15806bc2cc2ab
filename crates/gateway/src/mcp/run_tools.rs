//! `/mcp/run`: the five workspace tools, for an agent runtime holding a run
//! token. They are the tools a `RunRequest` lists, with the same names and
//! input schemas, and each call is the `WorkspaceStoreService` call the
//! gRPC path makes: bound to the run's agent and store partition by the
//! token, refused once the run ends or its access does.

use std::sync::Arc;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ErrorData, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::Value as Json;

use super::calls::Calls;
use super::{RunAgent, request_of};

/// One runtime's MCP session. The run token travels on every request, so
/// each call is checked against its run afresh.
#[derive(Clone)]
pub struct RunTools {
    calls: Calls,
    tools: Arc<[WorkspaceTool]>,
}

struct WorkspaceTool {
    tool: Tool,
    grpc_path: String,
}

impl RunTools {
    pub fn new(calls: Calls) -> Self {
        let tools = crate::run::workspace_tools()
            .into_iter()
            .map(|t| {
                let schema: JsonObject =
                    serde_json::from_str(&t.input_schema_json).unwrap_or_default();
                WorkspaceTool {
                    tool: Tool::new(t.name, t.description, schema),
                    grpc_path: t.grpc_method,
                }
            })
            .collect();
        Self { calls, tools }
    }
}

impl ServerHandler for RunTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "agentshare-run",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "The workspace tools of one agent run: read, list, write and delete the \
                 run's store partition, and publish an item to a shared agent's store.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut result =
            ListToolsResult::with_all_items(self.tools.iter().map(|t| t.tool.clone()).collect());
        // Bound to one run: nobody else may reuse the list.
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.tools.iter().find(|t| t.tool.name == request.name) else {
            let names: Vec<&str> = self.tools.iter().map(|t| t.tool.name.as_ref()).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "there is no tool named {:?}; the tools are {}",
                    request.name,
                    names.join(", ")
                ),
                None,
            ));
        };
        let request_parts = request_of(&context.extensions)?;
        let mut arguments = request.arguments.unwrap_or_default();
        if let Some(RunAgent(agent_id)) = request_parts.extensions.get::<RunAgent>() {
            arguments
                .entry("agent_id")
                .or_insert_with(|| Json::String(agent_id.clone()));
        }
        let headers = &request_parts.headers;
        let arguments = Json::Object(arguments);
        Ok(
            match self.calls.call(&tool.grpc_path, headers, arguments).await {
                Ok(answer) => CallToolResult::structured(answer),
                Err(status) => self.calls.refusal(&status),
            }
            .into(),
        )
    }
}
