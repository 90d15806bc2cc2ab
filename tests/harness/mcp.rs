//! MCP sessions with the gateway, opened with the official Rust SDK's
//! client, as a person's MCP client or an agent framework opens them.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion, Tool};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::Value;
use tokio::sync::Notify;

use crate::Suite;

/// Which protocol generation a session speaks: the 2026-07-28 protocol
/// (no handshake; notifications through `subscriptions/listen`) or the
/// earlier one (an `initialize` handshake and a session stream).
#[derive(Clone, Copy, Debug)]
pub enum Generation {
    Modern,
    Legacy,
}

/// What a legacy session's client heard on its session stream.
#[derive(Clone, Default)]
pub struct Heard {
    pub tools_changed: Arc<Notify>,
}

impl ClientHandler for Heard {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }
}

/// An open MCP session.
pub type McpSession = RunningService<RoleClient, Heard>;

impl Suite {
    /// The gateway's URL for `path` (`/mcp`, `/mcp/run`, …).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway_addr())
    }

    /// Opens an MCP session on `path` with `bearer` as the credential and
    /// `headers` besides.
    pub async fn mcp(
        &self,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        generation: Generation,
    ) -> Result<McpSession, String> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url(path));
        if let Some(bearer) = bearer {
            config = config.auth_header(bearer.to_string());
        }
        let headers: HashMap<HeaderName, HeaderValue> = headers
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    HeaderValue::from_str(value).expect("header value"),
                )
            })
            .collect();
        let transport = StreamableHttpClientTransport::from_config(config.custom_headers(headers));
        let lifecycle = match generation {
            Generation::Modern => ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
            Generation::Legacy => ClientLifecycleMode::Initialize,
        };
        Heard::default()
            .serve_with_lifecycle(transport, lifecycle)
            .await
            .map_err(|e| format!("{e}"))
    }
}

/// The names of the session's tools, sorted.
pub async fn tool_names(session: &McpSession) -> Vec<String> {
    let mut names: Vec<String> = tools(session)
        .await
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

pub async fn tools(session: &McpSession) -> Vec<Tool> {
    session.list_all_tools().await.expect("tools/list")
}

/// Calls `tool` with `arguments` (a JSON object).
pub async fn call(session: &McpSession, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be a JSON object");
    };
    session
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .expect("tools/call")
}

/// The text of a tool result.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}
