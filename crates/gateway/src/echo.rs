//! The built-in echo runtime: the default in the embedded mode and in tests.
//!
//! It answers deterministically from the input alone, and never repeats the
//! builder's instructions or any secret. Input lines that start with `/` are
//! a script, run in order before the answer:
//! - `/workspace_write {"key":"k","value":"v"}` (and the other four
//!   workspace tools, with the arguments of their `input_schema_json`) calls
//!   the tool through the gateway with the run token, as a real agent would;
//! - `/fail CODE message` ends the run with that `RunErrorCode` (for example
//!   `/fail CONNECTION_FAILED crm`, `/fail MODEL_UNAVAILABLE`);
//! - `/truncate` ends the answer as cut short by a model limit;
//! - `/transport mcp` makes the later tool calls through MCP (`mcp_url`,
//!   the same run token), as an MCP-capable agent framework would;
//!   `/transport grpc` goes back to gRPC, the default.
//!
//! The answer is `echo: <the other lines>`, one line per tool call with its
//! result, and which connection each integration used.

use std::time::Duration;

use agentshare_kit::clock::Clock;
use agentshare_proto::runtime::v1 as pb;
use agentshare_proto::store::v1 as store;
use futures::StreamExt;
use serde_json::Value;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::runtime::{RunEvents, Runtime};

pub struct Echo {
    pub clock: Clock,
}

#[tonic::async_trait]
impl Runtime for Echo {
    async fn run(&self, request: pb::RunRequest, deadline: Duration) -> Result<RunEvents, Status> {
        let (events, received) = mpsc::channel(16);
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let run = perform(request, &events, &clock);
            let last = match tokio::time::timeout(deadline, run).await {
                Ok(last) => last,
                Err(_) => error_event(pb::RunErrorCode::DeadlineExceeded, "the run took too long"),
            };
            // The receiver is gone when the caller cancelled: nothing to do.
            let _ = events.send(Ok(last)).await;
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(received).boxed())
    }
}

type Sink = mpsc::Sender<Result<pb::RunResponse, Status>>;

/// Runs the script and the answer; returns the terminal event.
async fn perform(request: pb::RunRequest, events: &Sink, clock: &Clock) -> pb::RunResponse {
    let mut said = Vec::new();
    let mut lines = Vec::new();
    let mut truncated = false;
    let mut tools = Tools::new(&request);
    let mut model_calls = 1;
    for line in request.input.lines() {
        let Some(command) = line.strip_prefix('/') else {
            said.push(line);
            continue;
        };
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        match name {
            "fail" => {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                return failure(code, message);
            }
            "truncate" => truncated = true,
            "transport" => match rest.trim() {
                "mcp" => tools.over_mcp = true,
                "grpc" => tools.over_mcp = false,
                other => {
                    return failure(
                        "INTERNAL",
                        &format!("the echo runtime has no transport {other:?}; use mcp or grpc"),
                    );
                }
            },
            tool => {
                model_calls += 1;
                let call_id = format!("call-{model_calls}");
                let start = clock.now_micros();
                let mut record = pb::ToolCallRecord {
                    call_id,
                    tool_name: tool.to_string(),
                    status: pb::ToolCallStatus::Started.into(),
                    arguments_json: rest.trim().to_string(),
                    start_time: Some(agentshare_kit::clock::timestamp(start)),
                    ..Default::default()
                };
                if !send(events, pb::run_response::Event::ToolCall(record.clone())).await {
                    return error_event(pb::RunErrorCode::Cancelled, "the caller went away");
                }
                match tools.call(tool, rest.trim()).await {
                    Ok(summary) => {
                        record.status = pb::ToolCallStatus::Succeeded.into();
                        lines.push(format!("{tool}: {summary}"));
                        record.result_summary = summary;
                    }
                    Err(message) => {
                        record.status = pb::ToolCallStatus::Failed.into();
                        lines.push(format!("{tool} failed: {message}"));
                        record.error_message = message;
                    }
                }
                record.finish_time = Some(agentshare_kit::clock::timestamp(clock.now_micros()));
                if !send(events, pb::run_response::Event::ToolCall(record)).await {
                    return error_event(pb::RunErrorCode::Cancelled, "the caller went away");
                }
            }
        }
    }
    let mut answer = vec![format!("echo: {}", said.join("\n"))];
    answer.extend(lines);
    let mut uses: Vec<String> = request
        .connections
        .iter()
        .map(|c| {
            let whose = match pb::ConnectionSource::try_from(c.source) {
                Ok(pb::ConnectionSource::AgentOwner) => "the agent owner's",
                Ok(pb::ConnectionSource::Caller) => "your",
                _ => "an unknown",
            };
            format!(
                "{} ({}) with {whose} connection",
                c.integration_key, c.provider
            )
        })
        .collect();
    uses.sort();
    if !uses.is_empty() {
        answer.push(format!("integrations: {}", uses.join(", ")));
    }
    let output = answer.join("\n");
    // Streamed a line at a time, so a streaming caller sees several deltas.
    let mut first = true;
    for line in &answer {
        let text = if first {
            line.clone()
        } else {
            format!("\n{line}")
        };
        first = false;
        if !send(
            events,
            pb::run_response::Event::TextDelta(pb::TextDelta { text }),
        )
        .await
        {
            return error_event(pb::RunErrorCode::Cancelled, "the caller went away");
        }
    }
    let words = |text: &str| i64::try_from(text.split_whitespace().count()).unwrap_or(i64::MAX);
    let history: i64 = request.history.iter().map(|m| words(&m.content)).sum();
    pb::RunResponse {
        event: Some(pb::run_response::Event::Result(pb::RunResult {
            output_summary: output.chars().take(500).collect(),
            usage: Some(pb::TokenUsage {
                input_tokens: words(&request.input) + history,
                output_tokens: words(&output),
                cached_input_tokens: 0,
                model_calls,
            }),
            status: if truncated {
                pb::RunResultStatus::Truncated
            } else {
                pb::RunResultStatus::Completed
            }
            .into(),
            output_text: output,
        })),
    }
}

async fn send(events: &Sink, event: pb::run_response::Event) -> bool {
    events
        .send(Ok(pb::RunResponse { event: Some(event) }))
        .await
        .is_ok()
}

fn error_event(code: pb::RunErrorCode, message: &str) -> pb::RunResponse {
    pb::RunResponse {
        event: Some(pb::run_response::Event::Error(pb::RunError {
            code: code.into(),
            message: message.to_string(),
            ..Default::default()
        })),
    }
}

/// A scripted failure: `CODE` is a `RunErrorCode` name without its prefix.
fn failure(code: &str, rest: &str) -> pb::RunResponse {
    let code = pb::RunErrorCode::from_str_name(&format!("RUN_ERROR_CODE_{code}"))
        .unwrap_or(pb::RunErrorCode::Internal);
    let integration = match code {
        pb::RunErrorCode::ConnectionFailed | pb::RunErrorCode::ToolFailed => {
            rest.split_whitespace().next().unwrap_or_default()
        }
        _ => "",
    };
    let message = if rest.is_empty() {
        format!("scripted failure {}", code.as_str_name())
    } else {
        rest.to_string()
    };
    pb::RunResponse {
        event: Some(pb::run_response::Event::Error(pb::RunError {
            code: code.into(),
            message,
            integration_key: integration.to_string(),
            usage: None,
        })),
    }
}

/// The five workspace tools, called through the gateway as the runtime
/// contract says: `authorization: Bearer <run token>`.
struct Tools {
    agent_id: String,
    token: String,
    address: String,
    client: Option<ToolClient>,
    /// Whether tool calls go through MCP rather than gRPC.
    over_mcp: bool,
    mcp_url: String,
    mcp: Option<McpClient>,
}

type McpClient = rmcp::service::RunningService<rmcp::RoleClient, ()>;

type ToolClient = WorkspaceStoreServiceClient<InterceptedService<Channel, RunToken>>;

/// Puts `authorization: Bearer <run token>` on every tool call.
#[derive(Clone)]
struct RunToken(MetadataValue<Ascii>);

impl Interceptor for RunToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

impl Tools {
    fn new(request: &pb::RunRequest) -> Self {
        Self {
            agent_id: request
                .agent
                .as_ref()
                .map(|a| a.agent_id.clone())
                .unwrap_or_default(),
            token: request.run_token.clone(),
            address: request.gateway_address.clone(),
            client: None,
            over_mcp: false,
            mcp_url: request.mcp_url.clone(),
            mcp: None,
        }
    }

    /// The MCP session, opened on first use.
    async fn mcp(&mut self) -> Result<&McpClient, String> {
        if self.mcp.is_none() {
            use rmcp::ServiceExt as _;
            use rmcp::transport::StreamableHttpClientTransport;
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let transport = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(self.mcp_url.clone())
                    .auth_header(self.token.clone()),
            );
            let client = ()
                .serve(transport)
                .await
                .map_err(|e| format!("cannot open the MCP session at {}: {e}", self.mcp_url))?;
            self.mcp = Some(client);
        }
        self.mcp
            .as_ref()
            .ok_or_else(|| "no MCP session".to_string())
    }

    /// Calls one tool through MCP; the answer is the structured content,
    /// which mirrors the gRPC answer with the proto's field names.
    async fn call_mcp(&mut self, tool: &str, args: &Value) -> Result<Value, String> {
        let arguments = match args {
            Value::Object(object) => object.clone(),
            _ => return Err("arguments must be a JSON object".into()),
        };
        let result = self
            .mcp()
            .await?
            .call_tool(
                rmcp::model::CallToolRequestParams::new(tool.to_string()).with_arguments(arguments),
            )
            .await
            .map_err(|e| format!("MCP call failed: {e}"))?;
        if result.is_error == Some(true) {
            let said: Vec<String> = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect();
            return Err(said.join(" "));
        }
        result
            .structured_content
            .ok_or_else(|| format!("{tool} answered no structured content"))
    }

    /// Calls one tool through MCP; the result is the same one-line summary
    /// as over gRPC.
    async fn call_over_mcp(&mut self, tool: &str, args: &Value) -> Result<String, String> {
        let answer = self.call_mcp(tool, args).await?;
        let text = |value: &Value| match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let arg = |name: &str| text(&args[name]);
        Ok(match tool {
            "workspace_list" => {
                let keys: Vec<String> = answer["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| text(&i["key"]))
                    .collect();
                format!(
                    "partition {} holds [{}]",
                    text(&answer["partition"]),
                    keys.join(", ")
                )
            }
            "workspace_read" => format!(
                "{} = {}",
                text(&answer["item"]["key"]),
                text(&answer["item"]["value"])
            ),
            "workspace_write" => format!(
                "wrote {} at revision {}",
                text(&answer["item"]["key"]),
                text(&answer["item"]["revision"])
            ),
            "workspace_delete" => format!("deleted {}", arg("key")),
            "workspace_publish" => format!(
                "published {} to agent {}",
                arg("key"),
                arg("target_agent_id")
            ),
            other => return Err(format!("the echo runtime has no tool {other:?}")),
        })
    }

    fn client(&mut self) -> Result<ToolClient, String> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let channel = Endpoint::from_shared(self.address.clone())
            .map_err(|e| format!("bad gateway address: {e}"))?
            .connect_lazy();
        let token = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| "the run token is not a valid header".to_string())?;
        let client = WorkspaceStoreServiceClient::with_interceptor(channel, RunToken(token));
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Calls one tool; the result is a one-line summary for the answer.
    async fn call(&mut self, tool: &str, arguments: &str) -> Result<String, String> {
        let args: Value = if arguments.is_empty() {
            Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(arguments).map_err(|e| format!("arguments are not JSON: {e}"))?
        };
        let text = |name: &str| {
            args.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if self.over_mcp {
            return self.call_over_mcp(tool, &args).await;
        }
        let agent_id = self.agent_id.clone();
        let mut client = self.client()?;
        match tool {
            "workspace_list" => {
                let listed = reply(client.workspace_list(store::WorkspaceListRequest {
                    agent_id,
                    key_prefix: text("key_prefix"),
                    ..Default::default()
                }))
                .await?;
                let keys: Vec<String> = listed.items.into_iter().map(|i| i.key).collect();
                Ok(format!(
                    "partition {} holds [{}]",
                    listed.partition,
                    keys.join(", ")
                ))
            }
            "workspace_read" => {
                let item = reply(client.workspace_read(store::WorkspaceReadRequest {
                    agent_id,
                    key: text("key"),
                }))
                .await?
                .item
                .unwrap_or_default();
                Ok(format!("{} = {}", item.key, item.value))
            }
            "workspace_write" => {
                let written = reply(client.workspace_write(store::WorkspaceWriteRequest {
                    agent_id,
                    key: text("key"),
                    value: text("value"),
                    ..Default::default()
                }))
                .await?
                .item
                .unwrap_or_default();
                Ok(format!(
                    "wrote {} at revision {}",
                    written.key, written.revision
                ))
            }
            "workspace_delete" => {
                reply(client.workspace_delete(store::WorkspaceDeleteRequest {
                    agent_id,
                    key: text("key"),
                    expected_revision: None,
                }))
                .await?;
                Ok(format!("deleted {}", text("key")))
            }
            "workspace_publish" => {
                let target_key = text("target_key");
                reply(client.workspace_publish(store::WorkspacePublishRequest {
                    agent_id,
                    key: text("key"),
                    target_agent_id: text("target_agent_id"),
                    target_key: (!target_key.is_empty()).then_some(target_key),
                    expected_target_revision: None,
                }))
                .await?;
                Ok(format!(
                    "published {} to agent {}",
                    text("key"),
                    text("target_agent_id")
                ))
            }
            other => Err(format!("the echo runtime has no tool {other:?}")),
        }
    }
}

/// A tool's reply, or its failure as the answer reports it.
async fn reply<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, String> {
    call.await
        .map(tonic::Response::into_inner)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}
