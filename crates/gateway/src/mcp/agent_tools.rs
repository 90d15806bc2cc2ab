//! `/mcp`: the agents a person may RUN, as MCP tools. A member sees the
//! agents of their active workspace that they can run (their own, those
//! shared with them, the org default agent); a share token's holder sees
//! the grant's one agent. Calling a tool is `Invoke` as that caller: their
//! plan, their connections, their bill, and for a grant the grant's rules.
//!
//! The list is read afresh for every `tools/list` and every call, so an
//! unshare, a revocation, a removal or a delete takes the tool away at
//! once; sessions that listen hear `notifications/tools/list_changed`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use http::HeaderMap;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value as Json, json};
use tonic::Status;

use super::calls::Calls;
use super::changes::{AccessChanges, ChangeMark};
use super::{credentials_of, request_of};
use crate::auth::{Authenticator, GRANT_HEADER};

const LIST_MY_AGENTS: &str = "/agentshare.sharing.v1.AccessService/ListMyAgents";
const INVOKE: &str = "/agentshare.gateway.v1.InvokeService/Invoke";
/// The most tool names an MCP client is asked to take (the specification's
/// advice for names: 1 to 64 characters of `A-Za-z0-9_-`).
const NAME_CHARS: usize = 64;

/// One person's MCP session.
#[derive(Clone)]
pub struct AgentTools {
    calls: Calls,
    auth: Authenticator,
    changes: AccessChanges,
}

/// An agent the caller may run, as a tool.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AgentTool {
    name: String,
    agent_id: String,
    agent_name: String,
    description: String,
}

/// An agent as listed, before it is named as a tool.
struct Runnable {
    agent_id: String,
    name: String,
    description: String,
    owner: String,
}

impl AgentTools {
    pub fn new(calls: Calls, auth: Authenticator, changes: AccessChanges) -> Self {
        Self {
            calls,
            auth,
            changes,
        }
    }

    /// The tools of the caller whose credentials are `headers`, now.
    async fn tools(&self, headers: &HeaderMap) -> Result<Vec<AgentTool>, Status> {
        let runnable = match headers.get(GRANT_HEADER) {
            Some(token) => self.granted(token.to_str().unwrap_or_default()).await?,
            None => self.member_agents(headers).await?,
        };
        Ok(named(runnable))
    }

    /// A share token's one agent, while the grant is active.
    async fn granted(&self, token: &str) -> Result<Vec<Runnable>, Status> {
        let grant = self.auth.grant_of(token).await?;
        if !grant.active {
            return Ok(Vec::new());
        }
        Ok(vec![Runnable {
            agent_id: grant.agent_id,
            name: grant.agent_name,
            description: grant.agent_description,
            owner: String::new(),
        }])
    }

    /// The agents of the member's active workspace that they can run.
    async fn member_agents(&self, headers: &HeaderMap) -> Result<Vec<Runnable>, Status> {
        let mut agents = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .calls
                .call(
                    LIST_MY_AGENTS,
                    headers,
                    json!({ "page_size": 1000, "page_token": page_token }),
                )
                .await?;
            for agent in page["agents"].as_array().into_iter().flatten() {
                if agent["can_run"].as_bool() != Some(true) {
                    continue;
                }
                let text = |field: &str| agent[field].as_str().unwrap_or_default().to_string();
                agents.push(Runnable {
                    agent_id: text("agent_id"),
                    name: text("name"),
                    description: text("description"),
                    owner: text("owner_display_name"),
                });
            }
            match page["next_page_token"].as_str() {
                Some(next) if !next.is_empty() => page_token = next.to_string(),
                _ => return Ok(agents),
            }
        }
    }

    /// Follows access changes for one session until `closed`, or until the
    /// client is gone (`notify` fails), telling the client through `notify`
    /// whenever its list of tools differs from the last one it was told of.
    /// A list that cannot be read (the credential was revoked) counts as
    /// empty.
    ///
    /// A change since `since` (when the request that opened the session
    /// arrived) is told at once, since the list the client holds may
    /// predate it.
    async fn announce_changes<N, F>(
        &self,
        headers: HeaderMap,
        since: Option<ChangeMark>,
        closed: impl std::future::Future<Output = ()>,
        mut notify: N,
    ) where
        N: FnMut() -> Option<F>,
        F: std::future::Future<Output = bool>,
    {
        let mut changes = self.changes.subscribe();
        let names = |tools: Vec<AgentTool>| -> BTreeSet<String> {
            tools
                .into_iter()
                .map(|t| t.name + "\0" + &t.agent_id)
                .collect()
        };
        let mut known = names(self.tools(&headers).await.unwrap_or_default());
        if since.is_some_and(|mark| mark.passed(&changes)) {
            let Some(sent) = notify() else { return };
            if !sent.await {
                return;
            }
        }
        tokio::pin!(closed);
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = &mut closed => return,
            }
            // Many events come in bursts; one read answers them all.
            changes.mark_unchanged();
            let now = names(self.tools(&headers).await.unwrap_or_default());
            if now != known {
                known = now;
                let Some(sent) = notify() else { return };
                if !sent.await {
                    return;
                }
            }
        }
    }
}

/// Tool names from agent names: the specification's characters, lower
/// case, and unique within one list; an agent whose name another already
/// took gets the end of its id added, so a name never moves between agents
/// as the list changes order.
fn named(agents: Vec<Runnable>) -> Vec<AgentTool> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for agent in &agents {
        *count.entry(slug(&agent.name)).or_default() += 1;
    }
    agents
        .into_iter()
        .map(|agent| {
            let base = slug(&agent.name);
            let name = if count.get(&base).copied().unwrap_or_default() > 1 {
                let tail: String = agent
                    .agent_id
                    .chars()
                    .rev()
                    .filter(char::is_ascii_alphanumeric)
                    .take(8)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let room = NAME_CHARS - tail.len() - 1;
                format!("{}_{tail}", truncate(&base, room))
            } else {
                base
            };
            let mut description = format!("Runs the agent \"{}\"", agent.name);
            if !agent.description.is_empty() {
                description.push_str(&format!(": {}", agent.description.trim_end_matches('.')));
            }
            if !agent.owner.is_empty() {
                description.push_str(&format!(" (built by {})", agent.owner));
            }
            description.push_str(
                ". Pass the message as `input`; pass back the `session_id` it answers to continue the conversation.",
            );
            AgentTool {
                name,
                agent_id: agent.agent_id,
                agent_name: agent.name,
                description,
            }
        })
        .collect()
}

fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '-' {
            slug.push(c);
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    let slug = truncate(slug.trim_matches('_'), NAME_CHARS);
    if slug.is_empty() {
        "agent".to_string()
    } else {
        slug.to_string()
    }
}

fn truncate(text: &str, chars: usize) -> &str {
    text.char_indices()
        .nth(chars)
        .map_or(text, |(end, _)| &text[..end])
}

/// The input every agent tool takes.
fn input_schema() -> Arc<JsonObject> {
    let schema = json!({
        "type": "object",
        "properties": {
            "input": {
                "type": "string",
                "description": "The message for the agent."
            },
            "session_id": {
                "type": "string",
                "description": "Continue this session: the `session_id` an earlier call answered. Leave out to start a new one."
            }
        },
        "required": ["input"]
    });
    match schema {
        Json::Object(object) => Arc::new(object),
        _ => Arc::default(),
    }
}

fn as_tool(tool: &AgentTool) -> Tool {
    let mut described = Tool::new(tool.name.clone(), tool.description.clone(), input_schema());
    described.title = Some(tool.agent_name.clone());
    described
}

impl ServerHandler for AgentTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("agentshare", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Each tool runs one agent shared with you, with your own connections. \
             Tools come and go as agents are shared with you or taken away.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let headers = credentials_of(&context.extensions)?;
        let tools = self
            .tools(headers)
            .await
            .map_err(|status| ErrorData::invalid_request(super::calls::said(&status), None))?;
        let mut result = ListToolsResult::with_all_items(tools.iter().map(as_tool).collect());
        // The list is this caller's, and access can end on the next call.
        result.cache_scope = Some(CacheScope::Private);
        result.ttl_ms = Some(0);
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let headers = credentials_of(&context.extensions)?;
        let tools = match self.tools(headers).await {
            Ok(tools) => tools,
            Err(status) => return Ok(self.calls.refusal(&status).into()),
        };
        let Some(tool) = tools.into_iter().find(|t| t.name == request.name) else {
            return Ok(self
                .calls
                .refusal(&Status::not_found(format!(
                    "no agent tool named {:?} is yours to run: it was never listed, or the agent was unshared, \
                     deleted or its grant revoked; list the tools again",
                    request.name
                )))
                .into());
        };
        let arguments = request.arguments.unwrap_or_default();
        let mut invoke = JsonObject::new();
        invoke.insert("agent_id".into(), Json::String(tool.agent_id));
        for (field, value) in arguments {
            match field.as_str() {
                "input" | "session_id" => {
                    invoke.insert(field, value);
                }
                other => {
                    return Err(ErrorData::invalid_params(
                        format!(
                            "{other:?} is not an argument of this tool; it takes `input` and optionally `session_id`"
                        ),
                        None,
                    ));
                }
            }
        }
        Ok(
            match self.calls.call(INVOKE, headers, Json::Object(invoke)).await {
                Ok(answer) => {
                    let text = answer["output_text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let mut result = CallToolResult::structured(answer);
                    result.content = vec![ContentBlock::text(text)];
                    result
                }
                Err(status) => self.calls.refusal(&status),
            }
            .into(),
        )
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    /// `subscriptions/listen` (2026-07-28 and later).
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        if context.accepted().tools_list_changed != Some(true) {
            context.cancelled().await;
            return Ok(());
        }
        let request = request_of(&context.request_context().extensions)?;
        let since = request.extensions.get::<ChangeMark>().copied();
        let headers = request.headers.clone();
        let sink = context.sink().clone();
        self.announce_changes(headers, since, context.cancelled(), || {
            let sink = sink.clone();
            Some(async move { sink.notify_tool_list_changed().await.is_ok() })
        })
        .await;
        Ok(())
    }

    /// Sessions of earlier protocol versions hear changes on their session
    /// stream for as long as the session lasts.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let Ok(request) = request_of(&context.extensions) else {
            return;
        };
        let since = request.extensions.get::<ChangeMark>().copied();
        let headers = request.headers.clone();
        let tools = self.clone();
        let peer = context.peer;
        // Ends at the first change after the session closed.
        tokio::spawn(async move {
            tools
                .announce_changes(headers, since, std::future::pending(), || {
                    let peer = peer.clone();
                    (!peer.is_transport_closed())
                        .then_some(async move { peer.notify_tool_list_changed().await.is_ok() })
                })
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, name: &str) -> Runnable {
        Runnable {
            agent_id: id.into(),
            name: name.into(),
            description: String::new(),
            owner: String::new(),
        }
    }

    #[test]
    fn names_keep_to_the_characters_mcp_clients_take() {
        assert_eq!(slug("Triage Helper"), "triage_helper");
        assert_eq!(slug("  Sales / CRM: weekly  "), "sales_crm_weekly");
        assert_eq!(slug("résumé-bot"), "r_sum_-bot");
        assert_eq!(slug("???"), "agent");
        assert_eq!(slug(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn agents_of_one_name_get_the_end_of_their_id() {
        let tools = named(vec![
            agent("0190f5e4-7c1a-7000-8000-00000000aaaa", "Helper"),
            agent("0190f5e4-7c1a-7000-8000-00000000bbbb", "helper"),
            agent("0190f5e4-7c1a-7000-8000-00000000cccc", "Other"),
        ]);
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["helper_0000aaaa", "helper_0000bbbb", "other"]);
        assert!(tools.iter().all(|t| t.name.len() <= NAME_CHARS));
    }
}
