//! The run path: plan, record, session, runtime, record again. Invoke,
//! InvokeStream and automation runs all take it, so there is one path to
//! trust.
//!
//! Sharing decides everything first (ResolveInvocationWithSecrets): the
//! version, whose connection each integration uses, who is billed and the
//! store partition. The store then records the invocation and the input
//! turn before the runtime is called, so a run that crashes the gateway is
//! still on record as RUNNING, with its input kept.

use std::sync::Arc;
use std::time::Duration;

use agentshare_kit::Error;
use agentshare_kit::clock::{Clock, timestamp};
use agentshare_kit::identity::{
    GrantKind, Identity, Principal, PrincipalKind, RunGrant, RunOrigin, random_token,
};
use agentshare_kit::server::{InFlight, ServiceChannel};
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::runtime::v1 as runtime;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use futures::StreamExt;
use registry::agent_registry_internal_service_client::AgentRegistryInternalServiceClient;
use sharing::access_internal_service_client::AccessInternalServiceClient;
use store::sessions_service_client::SessionsServiceClient;
use store::store_internal_service_client::StoreInternalServiceClient;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use crate::runtime::Runtime;

/// The largest input one turn may carry.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
/// How many earlier messages of a session the runtime receives.
const HISTORY_MESSAGES: i64 = 50;
/// A run token outlives the run's deadline by this much, so a tool call the
/// runtime makes at the last moment still lands; the run's end kills the
/// token sooner anyway.
const RUN_TOKEN_SLACK_SECS: i64 = 30;

/// Everything the run path talks to.
#[derive(Clone)]
pub struct RunPath {
    pub access: AccessInternalServiceClient<ServiceChannel>,
    pub registry: AgentRegistryInternalServiceClient<ServiceChannel>,
    pub store: StoreInternalServiceClient<ServiceChannel>,
    pub sessions: SessionsServiceClient<ServiceChannel>,
    pub runtime: Arc<dyn Runtime>,
    pub identity: Identity,
    pub clock: Clock,
    /// Where the runtime calls the workspace tools.
    pub gateway_address: String,
    pub deadline: Duration,
    /// Runs in flight: a stopping gateway keeps taking their tool calls
    /// until they end, and refuses new runs once its drain delay is over.
    pub in_flight: InFlight,
}

/// What to run, as the caller asked.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    pub agent_id: String,
    pub input: String,
    pub session_id: Option<String>,
    pub session_secret: Option<String>,
    pub project_id: Option<String>,
    pub draft: bool,
    pub automation: Option<AutomationRun>,
}

/// An automation run: the scheduler's run id, stable across attempts.
#[derive(Clone, Debug, Default)]
pub struct AutomationRun {
    pub run_id: String,
    pub attempt: i32,
    pub key: String,
}

/// What a caller learns as soon as the run is allowed and recorded.
#[derive(Clone, Debug, Default)]
pub struct Started {
    pub invocation_id: String,
    pub session_id: String,
    /// Set only when this run started an anonymous session.
    pub session_secret: String,
    pub version_number: i64,
    pub draft: bool,
    /// Whether the owner pays (DELEGATE) rather than the caller.
    pub billed_to_owner: bool,
}

/// What happens during a run, in order, for a streaming caller.
pub enum Progress {
    Started(Started),
    Text(String),
    Tool(runtime::ToolCallRecord),
}

/// A run that answered.
pub struct Finished {
    pub started: Started,
    pub output_text: String,
    pub output_summary: String,
    pub truncated: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub duration: Duration,
    /// Finished tool calls, in call order.
    pub tool_calls: Vec<runtime::ToolCallRecord>,
}

/// A run that did not answer: refused before it started (`started` is
/// `None`) or failed after.
pub struct Failed {
    pub started: Option<Started>,
    pub status: Status,
}

impl From<Status> for Failed {
    fn from(status: Status) -> Self {
        Self {
            started: None,
            status,
        }
    }
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Status::from(error).into()
    }
}

/// The facts a run is recorded with, kept for its completion.
struct Recorded {
    started: Started,
    begun_at: i64,
}

impl RunPath {
    /// Runs `spec` as `principal` (signed: its token is forwarded to
    /// sharing and the store). `progress`, when given, receives every event
    /// as it happens; a closed receiver cancels the run.
    pub async fn run(
        &self,
        principal: &Principal,
        spec: RunSpec,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<Finished, Failed> {
        validate(principal, &spec)?;
        let _running = self.in_flight.enter().ok_or_else(|| {
            Status::unavailable("this gateway is stopping; call again to reach another")
        })?;
        let resolved = self.resolve(principal, &spec).await?;
        let admission_id = resolved.admission_id.clone();
        let ran = self.run_resolved(principal, spec, progress, resolved).await;
        if !admission_id.is_empty() {
            self.release(admission_id).await;
        }
        ran
    }

    /// The run once sharing planned and admitted it.
    async fn run_resolved(
        &self,
        principal: &Principal,
        spec: RunSpec,
        progress: Option<mpsc::Sender<Progress>>,
        resolved: sharing::ResolveInvocationWithSecretsResponse,
    ) -> Result<Finished, Failed> {
        let plan = resolved.plan.clone().unwrap_or_default();
        let content = self
            .registry
            .clone()
            .get_run_content(registry::GetRunContentRequest {
                agent_id: plan.agent_id.clone(),
                version_number: plan.version,
            })
            .await
            .map_err(|status| match Error::from(status) {
                // Deleted between the plan and now.
                Error::NotFound(_) => Error::not_found(format!("agent {}", spec.agent_id)),
                other => other,
            })?
            .into_inner();
        let recorded = self.record(principal, &spec, &plan).await?;
        let history = match &spec.session_id {
            Some(session_id) => self.history(principal, session_id, &spec).await,
            None => Ok((Vec::new(), false)),
        };
        let (history, history_truncated) = match history {
            Ok(history) => history,
            Err(status) => return Err(self.fail(recorded, status).await),
        };
        let session = self.append_input(principal, &spec, &plan, &recorded).await;
        let mut recorded = recorded;
        match session {
            Ok((session_id, secret)) => {
                recorded.started.session_id = session_id;
                recorded.started.session_secret = secret;
            }
            Err(status) => return Err(self.fail(recorded, status).await),
        }
        if let Some(progress) = &progress
            && progress
                .send(Progress::Started(recorded.started.clone()))
                .await
                .is_err()
        {
            return Err(self.cancel(recorded).await);
        }
        let request = match self.run_request(
            principal,
            &spec,
            &plan,
            &resolved.secrets,
            content,
            &recorded.started,
            history,
            history_truncated,
        ) {
            Ok(request) => request,
            Err(status) => return Err(self.fail(recorded, status).await),
        };
        let outcome = self.call_runtime(request, progress.as_ref()).await;
        match outcome {
            Ok(answer) => {
                self.succeed(principal, &spec, &plan, recorded, answer)
                    .await
            }
            Err(status) if status.code() == Code::Cancelled => Err(self.cancel(recorded).await),
            Err(status) => Err(self.fail(recorded, status).await),
        }
    }

    /// Frees the run's concurrency slot. A slot that cannot be freed now
    /// frees itself at the run's deadline; the run's own answer stands.
    async fn release(&self, admission_id: String) {
        let released = self
            .access
            .clone()
            .release_run(sharing::ReleaseRunRequest { admission_id })
            .await;
        if let Err(status) = released {
            tracing::warn!(
                error = %status.message(),
                "could not release a run's concurrency slot; it frees itself at the run's deadline"
            );
        }
    }

    async fn resolve(
        &self,
        principal: &Principal,
        spec: &RunSpec,
    ) -> Result<sharing::ResolveInvocationWithSecretsResponse, Status> {
        let mut request = tonic::Request::new(sharing::ResolveInvocationWithSecretsRequest {
            agent_id: spec.agent_id.clone(),
            session_id: spec.session_id.clone().unwrap_or_default(),
            project_id: spec.project_id.clone().unwrap_or_default(),
            draft: spec.draft,
            session_secret: spec.session_secret.clone().unwrap_or_default(),
            run_deadline: prost_types::Duration::try_from(self.deadline).ok(),
            automation_run: spec.automation.is_some(),
        });
        principal.forward(&mut request);
        let resolved = self
            .access
            .clone()
            .resolve_invocation_with_secrets(request)
            .await?
            .into_inner();
        let plan = resolved.plan.as_ref();
        if plan.is_none_or(|p| p.integrations.len() != resolved.secrets.len()) {
            return Err(Status::internal(
                "sharing answered a plan without one secret per integration",
            ));
        }
        Ok(resolved)
    }

    /// Records the invocation as RUNNING, before anything can fail unseen.
    async fn record(
        &self,
        principal: &Principal,
        spec: &RunSpec,
        plan: &sharing::InvocationPlan,
    ) -> Result<Recorded, Status> {
        let invocation_id = uuid::Uuid::now_v7().to_string();
        let begun_at = self.clock.now_micros();
        let caller_kind = caller_kind(principal, spec);
        let integrations = plan
            .integrations
            .iter()
            .map(|i| store::IntegrationUse {
                integration_key: i.integration_key.clone(),
                provider: i.provider.clone(),
                connection_owner: recorded_owner(i.connection_owner()).into(),
            })
            .collect();
        let record = store::InvocationRecord {
            id: invocation_id.clone(),
            org_id: plan.org_id.clone(),
            agent_id: plan.agent_id.clone(),
            agent_version_number: plan.version,
            draft_run: spec.draft,
            caller_kind: store::CallerKind::from(caller_kind).into(),
            user_id: principal.user_id.clone().unwrap_or_default(),
            anonymous: principal.user_id.is_none(),
            grant_id: plan.grant_id.clone(),
            session_id: spec.session_id.clone().unwrap_or_default(),
            project_id: spec.project_id.clone().unwrap_or_default(),
            automation_run_id: spec
                .automation
                .as_ref()
                .map(|a| a.run_id.clone())
                .unwrap_or_default(),
            integrations,
            executes_as_user_id: plan.executes_as_user_id.clone(),
            billed_to_user_id: plan.billed_to_user_id.clone(),
            store_partition: plan.store_workspace.clone(),
            start_time: Some(timestamp(begun_at)),
            agent_owner_user_id: plan.agent_owner_user_id.clone(),
            ..Default::default()
        };
        self.store
            .clone()
            .record_invocation(store::RecordInvocationRequest {
                invocation: Some(record),
            })
            .await?;
        Ok(Recorded {
            started: Started {
                invocation_id,
                session_id: String::new(),
                session_secret: String::new(),
                version_number: plan.version,
                draft: spec.draft,
                billed_to_owner: plan.grant_kind() == sharing::GrantKind::Delegate,
            },
            begun_at,
        })
    }

    /// The latest messages of the session the run continues, oldest first.
    async fn history(
        &self,
        principal: &Principal,
        session_id: &str,
        spec: &RunSpec,
    ) -> Result<(Vec<runtime::SessionMessage>, bool), Status> {
        let read = |after_sequence: i64, page_size: i64| {
            let mut request = tonic::Request::new(store::GetSessionRequest {
                session_id: session_id.to_string(),
                session_secret: spec.session_secret.clone().unwrap_or_default(),
                after_sequence,
                page_size: i32::try_from(page_size).unwrap_or(i32::MAX),
                page_token: String::new(),
            });
            principal.forward(&mut request);
            let mut sessions = self.sessions.clone();
            async move { sessions.get_session(request).await }
        };
        let first = read(0, HISTORY_MESSAGES).await?.into_inner();
        let count = first.session.as_ref().map_or(0, |s| s.message_count);
        let (messages, truncated) = if count > HISTORY_MESSAGES {
            let latest = read(count - HISTORY_MESSAGES, HISTORY_MESSAGES)
                .await?
                .into_inner();
            (latest.messages, true)
        } else {
            (first.messages, false)
        };
        let history = messages
            .into_iter()
            .map(|m| runtime::SessionMessage {
                role: history_role(m.role()).into(),
                content: m.content,
                tool_name: m.tool_name,
                create_time: m.create_time,
            })
            .collect();
        Ok((history, truncated))
    }

    fn session_spec(
        principal: &Principal,
        spec: &RunSpec,
        plan: &sharing::InvocationPlan,
    ) -> store::SessionSpec {
        store::SessionSpec {
            org_id: plan.org_id.clone(),
            agent_id: plan.agent_id.clone(),
            agent_name: plan.agent_name.clone(),
            user_id: principal.user_id.clone().unwrap_or_default(),
            anonymous: principal.user_id.is_none(),
            grant_id: plan.grant_id.clone(),
            project_id: spec.project_id.clone().unwrap_or_default(),
            workspace_id: plan.session_workspace_id.clone(),
        }
    }

    /// Appends the input turn, starting the session when the run names
    /// none. Returns the session id and, for a new anonymous session, its
    /// secret.
    async fn append_input(
        &self,
        principal: &Principal,
        spec: &RunSpec,
        plan: &sharing::InvocationPlan,
        recorded: &Recorded,
    ) -> Result<(String, String), Status> {
        let new_secret = match (&spec.session_id, principal.user_id.is_none()) {
            (None, true) => random_token()?,
            _ => String::new(),
        };
        let secret = match &spec.session_id {
            Some(_) => spec.session_secret.clone().unwrap_or_default(),
            None => new_secret.clone(),
        };
        let appended = self
            .store
            .clone()
            .append_turn(store::AppendTurnRequest {
                request_id: format!("{}/input", recorded.started.invocation_id),
                session_id: spec.session_id.clone().unwrap_or_default(),
                spec: Some(Self::session_spec(principal, spec, plan)),
                session_secret: secret,
                invocation_id: recorded.started.invocation_id.clone(),
                agent_version_number: plan.version,
                messages: vec![store::NewMessage {
                    role: store::MessageRole::User.into(),
                    content: spec.input.clone(),
                    tool_name: String::new(),
                }],
            })
            .await?
            .into_inner();
        let session_id = appended.session.map(|s| s.id).unwrap_or_default();
        Ok((session_id, new_secret))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_request(
        &self,
        principal: &Principal,
        spec: &RunSpec,
        plan: &sharing::InvocationPlan,
        secrets: &[sharing::ConnectionSecret],
        content: registry::GetRunContentResponse,
        started: &Started,
        history: Vec<runtime::SessionMessage>,
        history_truncated: bool,
    ) -> Result<runtime::RunRequest, Status> {
        let now = self.clock.now_micros();
        let deadline_micros =
            now.saturating_add(i64::try_from(self.deadline.as_micros()).unwrap_or(i64::MAX));
        let token_expires = deadline_micros / 1_000_000 + RUN_TOKEN_SLACK_SECS;
        let mut bound = principal.clone();
        bound.token = String::new();
        // A run lasts; its tool calls read the user's workspaces afresh.
        bound.memberships = None;
        let run_token = self.identity.sign_run_token(
            &RunGrant {
                run: started.invocation_id.clone(),
                agent_id: plan.agent_id.clone(),
                partition: plan.store_workspace.clone(),
                principal: bound,
                // What the run's store writes record as their origin.
                origin: RunOrigin {
                    session_id: Some(started.session_id.clone()).filter(|id| !id.is_empty()),
                    automation_run_id: spec
                        .automation
                        .as_ref()
                        .map(|a| a.run_id.clone())
                        .filter(|id| !id.is_empty()),
                },
            },
            token_expires,
        )?;
        let design = content.content.unwrap_or_default();
        let connections = plan
            .integrations
            .iter()
            .zip(secrets)
            .map(|(integration, secret)| resolved_connection(integration, secret))
            .collect();
        let automation = spec.automation.clone().unwrap_or_default();
        Ok(runtime::RunRequest {
            run_id: if automation.run_id.is_empty() {
                started.invocation_id.clone()
            } else {
                automation.run_id
            },
            attempt: automation.attempt.max(1),
            invocation_id: started.invocation_id.clone(),
            session_id: started.session_id.clone(),
            trigger: if spec.automation.is_some() {
                runtime::RunTrigger::Automation
            } else {
                runtime::RunTrigger::Invoke
            }
            .into(),
            automation_key: automation.key,
            caller: Some(runtime::RunCaller {
                kind: runtime::CallerKind::from(caller_kind(principal, spec)).into(),
                user_id: principal.user_id.clone().unwrap_or_default(),
                org_id: plan.org_id.clone(),
                grant_id: plan.grant_id.clone(),
            }),
            agent: Some(runtime::AgentVersion {
                agent_id: plan.agent_id.clone(),
                version_id: version_id(&plan.agent_id, plan.version),
                version_number: plan.version,
                draft: spec.draft,
                name: design.name,
                instructions: design.instructions,
                model: design.model.map(|m| runtime::ModelConfig {
                    provider: m.provider,
                    model: m.model,
                    parameters: m.parameters,
                }),
                tools: design
                    .tools
                    .into_iter()
                    .map(|t| runtime::AgentTool {
                        integration_key: t.integration_key,
                        provider: t.provider,
                        display_name: t.display_name,
                    })
                    .collect(),
                files: design
                    .files
                    .into_iter()
                    .map(|f| runtime::FileRef {
                        name: f.name,
                        content_hash: f.content_hash,
                        size_bytes: f.size_bytes,
                        uri: f.uri,
                    })
                    .collect(),
            }),
            input: spec.input.clone(),
            history,
            history_truncated,
            connections,
            workspace_tools: workspace_tools(),
            run_token,
            run_token_expire_time: Some(timestamp(token_expires.saturating_mul(1_000_000))),
            gateway_address: self.gateway_address.clone(),
            mcp_url: format!(
                "{}{}",
                self.gateway_address.trim_end_matches('/'),
                crate::mcp::RUN_PATH
            ),
            deadline: Some(timestamp(deadline_micros)),
        })
    }

    /// Calls the runtime and follows its events to the terminal one.
    async fn call_runtime(
        &self,
        request: runtime::RunRequest,
        progress: Option<&mpsc::Sender<Progress>>,
    ) -> Result<Answer, Status> {
        let begun = std::time::Instant::now();
        let follow = async {
            let mut events = self.runtime.run(request, self.deadline).await?;
            let mut answer = Answer::default();
            while let Some(event) = events.next().await {
                let event = event.map_err(|status| match status.code() {
                    Code::DeadlineExceeded => status,
                    _ => Status::unavailable(format!(
                        "the agent runtime failed mid-run: {}",
                        status.message()
                    )),
                })?;
                let emitted = match event.event {
                    Some(runtime::run_response::Event::TextDelta(delta)) => {
                        answer.streamed.push_str(&delta.text);
                        Some(Progress::Text(delta.text))
                    }
                    Some(runtime::run_response::Event::ToolCall(call)) => {
                        if call.status() != runtime::ToolCallStatus::Started {
                            answer.tool_calls.push(call.clone());
                        }
                        Some(Progress::Tool(call))
                    }
                    Some(runtime::run_response::Event::Result(result)) => {
                        answer.result = Some(result);
                        break;
                    }
                    Some(runtime::run_response::Event::Error(error)) => {
                        return Err(runtime_error(&error));
                    }
                    None => None,
                };
                if let (Some(progress), Some(emitted)) = (progress, emitted)
                    && progress.send(emitted).await.is_err()
                {
                    return Err(Status::cancelled("the caller went away"));
                }
            }
            if answer.result.is_none() {
                return Err(Status::unavailable(
                    "the agent runtime ended the run without an answer",
                ));
            }
            Ok(answer)
        };
        // A margin past the runtime's own deadline, so its DEADLINE_EXCEEDED
        // report wins when it sends one.
        let mut answer = tokio::time::timeout(self.deadline + Duration::from_secs(2), follow)
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "the agent did not finish within {} s",
                    self.deadline.as_secs()
                ))
            })??;
        answer.duration = begun.elapsed();
        Ok(answer)
    }

    async fn succeed(
        &self,
        principal: &Principal,
        spec: &RunSpec,
        plan: &sharing::InvocationPlan,
        recorded: Recorded,
        answer: Answer,
    ) -> Result<Finished, Failed> {
        let result = answer.result.unwrap_or_default();
        let truncated = result.status() == runtime::RunResultStatus::Truncated;
        let usage = result.usage.unwrap_or_default();
        let output_text = if result.output_text.is_empty() {
            answer.streamed
        } else {
            result.output_text
        };
        let mut messages: Vec<store::NewMessage> = answer
            .tool_calls
            .iter()
            .map(|call| store::NewMessage {
                role: store::MessageRole::Tool.into(),
                content: if call.status() == runtime::ToolCallStatus::Succeeded {
                    call.result_summary.clone()
                } else {
                    format!("failed: {}", call.error_message)
                },
                tool_name: call.tool_name.clone(),
            })
            .collect();
        messages.push(store::NewMessage {
            role: store::MessageRole::Assistant.into(),
            content: output_text.clone(),
            tool_name: String::new(),
        });
        let appended = self
            .store
            .clone()
            .append_turn(store::AppendTurnRequest {
                request_id: format!("{}/output", recorded.started.invocation_id),
                session_id: recorded.started.session_id.clone(),
                spec: Some(Self::session_spec(principal, spec, plan)),
                session_secret: if recorded.started.session_secret.is_empty() {
                    spec.session_secret.clone().unwrap_or_default()
                } else {
                    recorded.started.session_secret.clone()
                },
                invocation_id: recorded.started.invocation_id.clone(),
                agent_version_number: plan.version,
                messages,
            })
            .await;
        if let Err(status) = appended {
            return Err(self.fail(recorded, status).await);
        }
        let completed = self
            .store
            .clone()
            .complete_invocation(store::CompleteInvocationRequest {
                invocation_id: recorded.started.invocation_id.clone(),
                status: store::InvocationStatus::Succeeded.into(),
                duration: prost_types::Duration::try_from(answer.duration).ok(),
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                session_id: recorded.started.session_id.clone(),
                ..Default::default()
            })
            .await;
        if let Err(status) = completed {
            return Err(Failed {
                started: Some(recorded.started),
                status,
            });
        }
        let output_summary = if result.output_summary.is_empty() {
            output_text.chars().take(500).collect()
        } else {
            result.output_summary
        };
        Ok(Finished {
            started: recorded.started,
            output_text,
            output_summary,
            truncated,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            duration: answer.duration,
            tool_calls: answer.tool_calls,
        })
    }

    /// Records the failure and returns what the caller gets.
    async fn fail(&self, recorded: Recorded, status: Status) -> Failed {
        self.complete(&recorded, store::InvocationStatus::Failed, &status)
            .await;
        Failed {
            started: Some(recorded.started),
            status,
        }
    }

    async fn cancel(&self, recorded: Recorded) -> Failed {
        let status = Status::cancelled("the caller cancelled the run");
        self.complete(&recorded, store::InvocationStatus::Cancelled, &status)
            .await;
        Failed {
            started: Some(recorded.started),
            status,
        }
    }

    async fn complete(&self, recorded: &Recorded, outcome: store::InvocationStatus, why: &Status) {
        let elapsed = self.clock.now_micros().saturating_sub(recorded.begun_at);
        let completed = self
            .store
            .clone()
            .complete_invocation(store::CompleteInvocationRequest {
                invocation_id: recorded.started.invocation_id.clone(),
                status: outcome.into(),
                error_code: agentshare_kit::error::code_name(why.code()).to_string(),
                error_message: why.message().to_string(),
                duration: Some(prost_types::Duration {
                    seconds: elapsed / 1_000_000,
                    nanos: i32::try_from((elapsed % 1_000_000) * 1_000).unwrap_or(0),
                }),
                session_id: recorded.started.session_id.clone(),
                ..Default::default()
            })
            .await;
        if let Err(error) = completed {
            // The record stays RUNNING; the caller still gets the run's own
            // error, which is the one they can act on.
            tracing::error!(
                invocation_id = %recorded.started.invocation_id,
                error = %error.message(),
                "could not record how a run ended"
            );
        }
    }
}

/// What the runtime produced.
#[derive(Default)]
struct Answer {
    streamed: String,
    tool_calls: Vec<runtime::ToolCallRecord>,
    result: Option<runtime::RunResult>,
    duration: Duration,
}

/// Checks what the plan does not: the shape of the request, every bad field
/// at once, and what a share token may not ask of a run.
///
/// The two share-token refusals stay here, ahead of sharing's plan, because
/// the plan words them for a different question: it answers a draft run
/// with a share token from the grant's access decision ("a share token
/// allows running its agent only", or NOT_FOUND), and a project named with
/// one as a project it cannot see (NOT_FOUND). A client is told plainly
/// that test mode needs the owner signed in without a share token, and that
/// a grant's sessions belong to no project.
fn validate(principal: &Principal, spec: &RunSpec) -> Result<(), Error> {
    let mut violations = Vec::new();
    check_id(&mut violations, "agent_id", Some(&spec.agent_id));
    check_id(&mut violations, "session_id", spec.session_id.as_deref());
    check_id(&mut violations, "project_id", spec.project_id.as_deref());
    let mut violations: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.field.as_str(), v.description.as_str()))
        .collect();
    if spec.input.is_empty() {
        violations.push(("input", "must not be empty"));
    } else if spec.input.len() > MAX_INPUT_BYTES {
        violations.push(("input", "is larger than 256 KiB"));
    }
    let grant = principal.kind == PrincipalKind::Grant;
    if grant && spec.project_id.is_some() {
        violations.push((
            "project_id",
            "cannot be sent with a share token: a grant's sessions belong to no project",
        ));
    }
    if spec.session_secret.is_some() && spec.session_id.is_none() {
        violations.push(("session_secret", "needs the session_id it belongs to"));
    }
    if !violations.is_empty() {
        return Err(invalid(violations));
    }
    if grant && spec.draft {
        return Err(Error::PermissionDenied(
            "only the agent's owner runs its draft, signed in and without a share token".into(),
        ));
    }
    Ok(())
}

/// Adds the violation of a malformed id in `field`, in the form every
/// service answers it. `None` is a field left out; `Some("")` a required
/// one left empty.
pub fn check_id(
    violations: &mut Vec<agentshare_kit::error::FieldViolation>,
    field: &str,
    value: Option<&str>,
) {
    if let Some(value) = value
        && let Err(Error::InvalidArgument(found)) = agentshare_kit::ids::parse(field, value)
    {
        violations.extend(found);
    }
}

/// How the run's caller reached the agent, which the store records and the
/// runtime is told, each in its own enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallerKind {
    User,
    InvokeGrant,
    DelegateGrant,
    Automation,
}

fn caller_kind(principal: &Principal, spec: &RunSpec) -> CallerKind {
    match (&spec.automation, principal.grant.as_ref().map(|g| g.kind)) {
        (Some(_), _) => CallerKind::Automation,
        (None, Some(GrantKind::Invoke)) => CallerKind::InvokeGrant,
        (None, Some(GrantKind::Delegate)) => CallerKind::DelegateGrant,
        (None, None) => CallerKind::User,
    }
}

/// The store and the runtime name the caller kinds alike, each in its own
/// enum.
macro_rules! caller_kind_into {
    ($($target:ty),+) => {$(
        impl From<CallerKind> for $target {
            fn from(kind: CallerKind) -> Self {
                match kind {
                    CallerKind::User => Self::User,
                    CallerKind::InvokeGrant => Self::InvokeGrant,
                    CallerKind::DelegateGrant => Self::DelegateGrant,
                    CallerKind::Automation => Self::Automation,
                }
            }
        }
    )+};
}

caller_kind_into!(store::CallerKind, runtime::CallerKind);

/// Whose connection an integration used, as the invocation records it.
fn recorded_owner(owner: sharing::ConnectionOwnerKind) -> store::ConnectionOwner {
    match owner {
        sharing::ConnectionOwnerKind::Owner => store::ConnectionOwner::Owner,
        sharing::ConnectionOwnerKind::Builder => store::ConnectionOwner::Builder,
        sharing::ConnectionOwnerKind::Caller => store::ConnectionOwner::Caller,
        sharing::ConnectionOwnerKind::Holder => store::ConnectionOwner::Holder,
        sharing::ConnectionOwnerKind::Unspecified => store::ConnectionOwner::Unspecified,
    }
}

/// Whose connection an integration uses, as the runtime is told: the
/// agent's side (its owner or builder) or the caller's.
fn connection_source(owner: sharing::ConnectionOwnerKind) -> runtime::ConnectionSource {
    match owner {
        sharing::ConnectionOwnerKind::Owner | sharing::ConnectionOwnerKind::Builder => {
            runtime::ConnectionSource::AgentOwner
        }
        sharing::ConnectionOwnerKind::Caller | sharing::ConnectionOwnerKind::Holder => {
            runtime::ConnectionSource::Caller
        }
        sharing::ConnectionOwnerKind::Unspecified => runtime::ConnectionSource::Unspecified,
    }
}

/// Who wrote a message of the session, as the runtime's history names it.
fn history_role(role: store::MessageRole) -> runtime::MessageRole {
    match role {
        store::MessageRole::User => runtime::MessageRole::User,
        store::MessageRole::Assistant => runtime::MessageRole::Assistant,
        store::MessageRole::Tool => runtime::MessageRole::Tool,
        store::MessageRole::Unspecified => runtime::MessageRole::Unspecified,
    }
}

/// INVALID_ARGUMENT naming every bad field at once.
pub fn invalid(violations: Vec<(&str, &str)>) -> Error {
    Error::InvalidArgument(
        violations
            .into_iter()
            .map(
                |(field, description)| agentshare_kit::error::FieldViolation {
                    field: field.into(),
                    description: description.into(),
                },
            )
            .collect(),
    )
}

/// The version as a resource name: registry numbers versions per agent.
pub fn version_id(agent_id: &str, version: i64) -> String {
    if version == 0 {
        String::new()
    } else {
        format!("agents/{agent_id}/versions/{version}")
    }
}

fn resolved_connection(
    integration: &sharing::IntegrationPlan,
    secret: &sharing::ConnectionSecret,
) -> runtime::ResolvedConnection {
    let oauth = secret.kind() == sharing::ConnectionKind::Oauth;
    let source = connection_source(integration.connection_owner());
    runtime::ResolvedConnection {
        integration_key: integration.integration_key.clone(),
        provider: integration.provider.clone(),
        kind: if oauth {
            runtime::ConnectionKind::Oauth
        } else {
            runtime::ConnectionKind::ApiKey
        }
        .into(),
        source: source.into(),
        secret: Some(if oauth {
            runtime::resolved_connection::Secret::AccessToken(secret.secret.clone())
        } else {
            runtime::resolved_connection::Secret::ApiKey(secret.secret.clone())
        }),
        expire_time: secret.expire_time,
        scopes: Vec::new(),
        attributes: Default::default(),
    }
}

/// What the caller gets for a runtime's failure report.
fn runtime_error(error: &runtime::RunError) -> Status {
    let message = &error.message;
    match error.code() {
        runtime::RunErrorCode::InvalidInput => {
            Status::invalid_argument(format!("the agent cannot run this input: {message}"))
        }
        runtime::RunErrorCode::ModelRateLimited => Status::resource_exhausted(format!(
            "the model's quota or rate limit was reached; retry later: {message}"
        )),
        runtime::RunErrorCode::ConnectionFailed => Status::failed_precondition(format!(
            "reconnect {}: the provider rejected its credentials ({message})",
            error.integration_key
        )),
        runtime::RunErrorCode::DeadlineExceeded => {
            Status::deadline_exceeded(format!("the agent did not finish in time: {message}"))
        }
        runtime::RunErrorCode::Cancelled => Status::cancelled(message.clone()),
        runtime::RunErrorCode::ToolFailed => Status::unavailable(format!(
            "the agent's tool {} failed: {message}",
            error.integration_key
        )),
        runtime::RunErrorCode::ModelUnavailable
        | runtime::RunErrorCode::Internal
        | runtime::RunErrorCode::Unspecified => {
            Status::unavailable(format!("the agent runtime failed: {message}"))
        }
    }
}

/// The five workspace tools, as every run offers them.
pub(crate) fn workspace_tools() -> Vec<runtime::WorkspaceTool> {
    const SERVICE: &str = "/agentshare.store.v1.WorkspaceStoreService";
    let key = r#""key":{"type":"string","description":"The item's key."}"#;
    [
        (
            "workspace_list",
            "List the items of this agent's workspace, optionally under a key prefix.",
            r#"{"type":"object","properties":{"key_prefix":{"type":"string"}}}"#.to_string(),
            "WorkspaceList",
        ),
        (
            "workspace_read",
            "Read one item of this agent's workspace.",
            format!(r#"{{"type":"object","properties":{{{key}}},"required":["key"]}}"#),
            "WorkspaceRead",
        ),
        (
            "workspace_write",
            "Create or replace one item of this agent's workspace.",
            format!(
                r#"{{"type":"object","properties":{{{key},"value":{{"type":"string"}}}},"required":["key","value"]}}"#
            ),
            "WorkspaceWrite",
        ),
        (
            "workspace_delete",
            "Delete one item of this agent's workspace.",
            format!(r#"{{"type":"object","properties":{{{key}}},"required":["key"]}}"#),
            "WorkspaceDelete",
        ),
        (
            "workspace_publish",
            "Copy one item to the shared workspace of another agent.",
            format!(
                r#"{{"type":"object","properties":{{{key},"target_agent_id":{{"type":"string"}},"target_key":{{"type":"string"}}}},"required":["key","target_agent_id"]}}"#
            ),
            "WorkspacePublish",
        ),
    ]
    .into_iter()
    .map(
        |(name, description, schema, method)| runtime::WorkspaceTool {
            name: name.to_string(),
            description: description.to_string(),
            input_schema_json: schema,
            grpc_method: format!("{SERVICE}/{method}"),
        },
    )
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentshare_kit::error::FieldViolation;
    use agentshare_kit::identity::HeldGrant;

    const AGENT: &str = "0190f5e4-7c1a-7000-8000-000000000001";

    fn spec() -> RunSpec {
        RunSpec {
            agent_id: AGENT.into(),
            input: "hi".into(),
            ..Default::default()
        }
    }

    fn share_token(kind: GrantKind) -> Principal {
        Principal {
            kind: PrincipalKind::Grant,
            grant: Some(HeldGrant {
                id: "grant-1".into(),
                kind,
                agent_id: "agent-1".into(),
            }),
            ..Principal::user("carol")
        }
    }

    fn fields(error: Error) -> Vec<String> {
        let Error::InvalidArgument(violations) = error else {
            panic!("expected INVALID_ARGUMENT, got {error:?}");
        };
        violations
            .into_iter()
            .map(|v: FieldViolation| v.field)
            .collect()
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        assert!(validate(&Principal::user("alice"), &spec()).is_ok());
        let bad = RunSpec {
            agent_id: "not-an-id".into(),
            input: String::new(),
            session_secret: Some("s".into()),
            ..spec()
        };
        assert_eq!(
            fields(validate(&Principal::user("alice"), &bad).expect_err("bad")),
            ["agent_id", "input", "session_secret"]
        );
        let large = RunSpec {
            input: "x".repeat(MAX_INPUT_BYTES + 1),
            ..spec()
        };
        assert_eq!(
            fields(validate(&Principal::user("alice"), &large).expect_err("large")),
            ["input"]
        );
    }

    #[test]
    fn a_share_token_runs_no_draft_and_no_project() {
        let in_project = RunSpec {
            project_id: Some(AGENT.into()),
            ..spec()
        };
        assert!(validate(&Principal::user("alice"), &in_project).is_ok());
        assert_eq!(
            fields(validate(&share_token(GrantKind::Invoke), &in_project).expect_err("project")),
            ["project_id"]
        );
        let draft = RunSpec {
            draft: true,
            ..spec()
        };
        assert!(
            validate(&Principal::user("alice"), &draft).is_ok(),
            "sharing's plan decides who tests the draft"
        );
        for kind in [GrantKind::Invoke, GrantKind::Delegate] {
            let error = validate(&share_token(kind), &draft).expect_err("draft");
            assert!(
                matches!(&error, Error::PermissionDenied(m) if m.starts_with("only the agent's owner runs its draft")),
                "{error:?}"
            );
        }
        let both = RunSpec {
            draft: true,
            ..in_project
        };
        assert_eq!(
            fields(validate(&share_token(GrantKind::Delegate), &both).expect_err("both")),
            ["project_id"],
            "a malformed request is answered before a refusal"
        );
    }

    #[test]
    fn the_store_and_the_runtime_name_the_same_caller_kind() {
        let automation = RunSpec {
            automation: Some(AutomationRun::default()),
            ..spec()
        };
        let cases = [
            (Principal::user("alice"), spec(), CallerKind::User),
            (
                share_token(GrantKind::Invoke),
                spec(),
                CallerKind::InvokeGrant,
            ),
            (
                share_token(GrantKind::Delegate),
                spec(),
                CallerKind::DelegateGrant,
            ),
            (Principal::user("alice"), automation, CallerKind::Automation),
        ];
        for (principal, spec, kind) in cases {
            assert_eq!(caller_kind(&principal, &spec), kind);
            assert_eq!(
                store::CallerKind::from(kind)
                    .as_str_name()
                    .rsplit_once("CALLER_KIND_"),
                runtime::CallerKind::from(kind)
                    .as_str_name()
                    .rsplit_once("CALLER_KIND_"),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn the_agents_side_pays_with_the_owners_and_builders_connections() {
        use runtime::ConnectionSource as Source;
        use sharing::ConnectionOwnerKind as Owner;
        use store::ConnectionOwner as Recorded;
        let cases = [
            (Owner::Owner, Recorded::Owner, Source::AgentOwner),
            (Owner::Builder, Recorded::Builder, Source::AgentOwner),
            (Owner::Caller, Recorded::Caller, Source::Caller),
            (Owner::Holder, Recorded::Holder, Source::Caller),
            (
                Owner::Unspecified,
                Recorded::Unspecified,
                Source::Unspecified,
            ),
        ];
        for (owner, recorded, source) in cases {
            assert_eq!(recorded_owner(owner), recorded, "{owner:?}");
            assert_eq!(connection_source(owner), source, "{owner:?}");
        }
        assert_eq!(
            history_role(store::MessageRole::Assistant),
            runtime::MessageRole::Assistant
        );
    }
}
