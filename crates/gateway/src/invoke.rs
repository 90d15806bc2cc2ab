//! InvokeService for clients and InvokeInternalService for the scheduler:
//! both authenticate, then hand the run to [`RunPath`].

use std::pin::Pin;
use std::sync::Arc;

use agentshare_kit::identity::{
    Identity, PRINCIPAL_HEADER, Principal, SERVICE_HEADER, ServiceName,
};
use agentshare_proto::gateway::v1 as pb;
use futures::Stream;
use pb::invoke_internal_service_server::InvokeInternalService;
use pb::invoke_service_server::InvokeService;
use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::auth::Authenticator;
use crate::run::{self, AutomationRun, Failed, Finished, Progress, RunPath, RunSpec, Started};

#[derive(Clone)]
pub struct Invoke {
    pub runs: Arc<RunPath>,
    pub auth: Authenticator,
    pub identity: Identity,
}

const INVOKE_PATH: &str = "/agentshare.gateway.v1.InvokeService/Invoke";
const INVOKE_STREAM_PATH: &str = "/agentshare.gateway.v1.InvokeService/InvokeStream";

impl Invoke {
    /// The caller's Principal, signed so the services the run calls can
    /// verify it.
    async fn principal(&self, metadata: &MetadataMap, path: &str) -> Result<Principal, Status> {
        let mut principal = self.auth.authenticate(metadata, path).await?;
        principal.token = self.identity.sign_principal(&principal)?;
        Ok(principal)
    }

    /// Runs on a task of its own: a caller that hangs up on a unary call
    /// does not stop the run halfway, so it is always recorded as ended.
    async fn spawn_run(
        &self,
        principal: Principal,
        spec: RunSpec,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<Finished, Failed> {
        let runs = self.runs.clone();
        // In the call's span, so the run's calls continue its trace.
        tokio::spawn(async move { runs.run(&principal, spec, progress).await }.in_current_span())
            .await
            .unwrap_or_else(|panic| {
                tracing::error!(error = %panic, "a run panicked");
                Err(Status::internal("internal error; it has been logged, please report it").into())
            })
    }
}

/// Invoke and InvokeStream ask for a run with the same fields.
macro_rules! run_spec_of {
    ($($request:ty),*) => {$(
        impl From<$request> for RunSpec {
            fn from(r: $request) -> Self {
                RunSpec {
                    agent_id: r.agent_id,
                    input: r.input,
                    session_id: r.session_id,
                    session_secret: r.session_secret,
                    project_id: r.project_id,
                    draft: r.draft,
                    automation: None,
                }
            }
        }
    )*};
}

run_spec_of!(pb::InvokeRequest, pb::InvokeStreamRequest);

fn billed_to(started: &Started) -> pb::BilledParty {
    if started.billed_to_owner {
        pb::BilledParty::AgentOwner
    } else {
        pb::BilledParty::Caller
    }
}

fn finish_reason(finished: &Finished) -> pb::FinishReason {
    if finished.truncated {
        pb::FinishReason::Truncated
    } else {
        pb::FinishReason::Completed
    }
}

fn usage_of(finished: &Finished) -> pb::TokenUsage {
    pb::TokenUsage {
        input_tokens: finished.input_tokens,
        output_tokens: finished.output_tokens,
        total_tokens: finished.input_tokens.saturating_add(finished.output_tokens),
        duration: prost_types::Duration::try_from(finished.duration).ok(),
    }
}

fn tool_call_event(call: agentshare_proto::runtime::v1::ToolCallRecord) -> pb::ToolCallEvent {
    use agentshare_proto::runtime::v1::ToolCallStatus;
    let status = ToolCallStatus::try_from(call.status).unwrap_or(ToolCallStatus::Failed);
    let started = status == ToolCallStatus::Started;
    pb::ToolCallEvent {
        call_id: call.call_id,
        phase: if started {
            pb::ToolCallPhase::Started
        } else {
            pb::ToolCallPhase::Finished
        }
        .into(),
        tool_name: call.tool_name,
        integration_key: call.integration_key,
        arguments_json: call.arguments_json,
        succeeded: status == ToolCallStatus::Succeeded,
        result_summary: call.result_summary,
        error_message: call.error_message,
        event_time: if started {
            call.start_time
        } else {
            call.finish_time.or(call.start_time)
        },
    }
}

/// How a run ended, as the stream's last event; the unary reply carries
/// the same fields.
fn completed(agent_id: &str, finished: Finished) -> pb::InvokeCompleted {
    let started = &finished.started;
    pb::InvokeCompleted {
        session_id: started.session_id.clone(),
        invocation_id: started.invocation_id.clone(),
        version_id: run::version_id(agent_id, started.version_number),
        version_number: started.version_number,
        draft: started.draft,
        usage: Some(usage_of(&finished)),
        billed_to: billed_to(started).into(),
        finish_reason: finish_reason(&finished).into(),
        output_text: finished.output_text,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::InvokeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl InvokeService for Invoke {
    type InvokeStreamStream = EventStream;

    async fn invoke(
        &self,
        request: Request<pb::InvokeRequest>,
    ) -> Result<Response<pb::InvokeResponse>, Status> {
        let principal = self.principal(request.metadata(), INVOKE_PATH).await?;
        let spec = RunSpec::from(request.into_inner());
        let agent_id = spec.agent_id.clone();
        let finished = self
            .spawn_run(principal, spec, None)
            .await
            .map_err(|failed| failed.status)?;
        let session_secret = finished.started.session_secret.clone();
        let tool_calls = finished
            .tool_calls
            .iter()
            .cloned()
            .map(tool_call_event)
            .collect();
        let completed = completed(&agent_id, finished);
        Ok(Response::new(pb::InvokeResponse {
            output_text: completed.output_text,
            session_id: completed.session_id,
            invocation_id: completed.invocation_id,
            version_id: completed.version_id,
            version_number: completed.version_number,
            draft: completed.draft,
            usage: completed.usage,
            billed_to: completed.billed_to,
            tool_calls,
            session_secret,
            finish_reason: completed.finish_reason,
        }))
    }

    async fn invoke_stream(
        &self,
        request: Request<pb::InvokeStreamRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let principal = self
            .principal(request.metadata(), INVOKE_STREAM_PATH)
            .await?;
        let spec = RunSpec::from(request.into_inner());
        let agent_id = spec.agent_id.clone();
        let (progress, mut events) = mpsc::channel::<Progress>(16);
        let (out, received) = mpsc::channel::<Result<pb::InvokeStreamResponse, Status>>(16);
        let runs = self.runs.clone();
        // Both tasks stay in the call's span, so the run continues its trace.
        tokio::spawn(
            async move {
                let run = tokio::spawn(
                    async move { runs.run(&principal, spec, Some(progress)).await }
                        .in_current_span(),
                );
                // Forward progress until the run drops its sender.
                while let Some(event) = events.recv().await {
                    let event = match event {
                        Progress::Started(started) => {
                            pb::invoke_stream_response::Event::Started(pb::InvokeStarted {
                                session_id: started.session_id.clone(),
                                invocation_id: started.invocation_id.clone(),
                                version_id: run::version_id(&agent_id, started.version_number),
                                version_number: started.version_number,
                                draft: started.draft,
                                session_secret: started.session_secret,
                            })
                        }
                        Progress::Text(text) => {
                            pb::invoke_stream_response::Event::TextDelta(pb::TextDelta { text })
                        }
                        Progress::Tool(call) => {
                            pb::invoke_stream_response::Event::ToolCall(tool_call_event(call))
                        }
                    };
                    let message = pb::InvokeStreamResponse { event: Some(event) };
                    if out.send(Ok(message)).await.is_err() {
                        // The caller hung up: dropping the receiver cancels
                        // the run at its next event.
                        drop(events);
                        let _ = run.await;
                        return;
                    }
                }
                let last = match run.await {
                    Ok(Ok(finished)) => Ok(pb::InvokeStreamResponse {
                        event: Some(pb::invoke_stream_response::Event::Completed(completed(
                            &agent_id, finished,
                        ))),
                    }),
                    Ok(Err(failed)) => Err(failed.status),
                    Err(panic) => {
                        tracing::error!(error = %panic, "a streamed run panicked");
                        Err(Status::internal(
                            "internal error; it has been logged, please report it",
                        ))
                    }
                };
                let _ = out.send(last).await;
            }
            .in_current_span(),
        );
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(received),
        )))
    }
}

#[tonic::async_trait]
impl InvokeInternalService for Invoke {
    async fn run_automation(
        &self,
        request: Request<pb::RunAutomationRequest>,
    ) -> Result<Response<pb::RunAutomationResponse>, Status> {
        let principal = self.scheduler_principal(request.metadata())?;
        let r = request.into_inner();
        let mut ids = Vec::new();
        run::check_id(&mut ids, "run_id", Some(&r.run_id));
        let mut violations: Vec<(&str, &str)> = ids
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        if r.attempt < 1 {
            violations.push(("attempt", "must be 1 or more"));
        }
        if r.automation_key.is_empty() {
            violations.push(("automation_key", "is required"));
        }
        if !violations.is_empty() {
            return Err(run::invalid(violations).into());
        }
        let spec = RunSpec {
            agent_id: r.agent_id,
            input: r.task,
            automation: Some(AutomationRun {
                run_id: r.run_id,
                attempt: r.attempt,
                key: r.automation_key,
            }),
            ..RunSpec::default()
        };
        let response = match self.spawn_run(principal, spec, None).await {
            Ok(finished) => pb::RunAutomationResponse {
                outcome: pb::AutomationRunOutcome::Succeeded.into(),
                invocation_id: finished.started.invocation_id.clone(),
                session_id: finished.started.session_id.clone(),
                version_number: finished.started.version_number,
                output_summary: finished.output_summary,
                output_text: finished.output_text,
                duration: prost_types::Duration::try_from(finished.duration).ok(),
                ..Default::default()
            },
            Err(failed) => {
                let started = failed.started.unwrap_or_default();
                pb::RunAutomationResponse {
                    outcome: pb::AutomationRunOutcome::Failed.into(),
                    invocation_id: started.invocation_id,
                    session_id: started.session_id,
                    version_number: started.version_number,
                    error_code: agentshare_kit::error::code_name(failed.status.code()).to_string(),
                    error_message: failed.status.message().to_string(),
                    ..Default::default()
                }
            }
        };
        Ok(Response::new(response))
    }
}

impl Invoke {
    /// The scheduler's identity and the Principal it signed for the
    /// subscribing user. The gateway serves its own services without the
    /// identity layer (clients call them), so this internal one checks
    /// both tokens itself.
    fn scheduler_principal(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let header = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Status::unauthenticated(format!("missing {name}")))
        };
        let caller = self
            .identity
            .verify_service(header(SERVICE_HEADER)?)
            .map_err(|e| Status::unauthenticated(format!("service identity rejected: {e}")))?;
        if caller != ServiceName::Scheduler {
            return Err(Status::permission_denied(format!(
                "{caller} may not run automations: only the scheduler does"
            )));
        }
        let principal = self
            .identity
            .verify_principal(header(PRINCIPAL_HEADER)?)
            .map_err(|e| Status::unauthenticated(format!("principal rejected: {e}")))?;
        if principal.user_id.is_none() || principal.grant.is_some() {
            return Err(Status::invalid_argument(
                "an automation runs as its subscribing user, with no grant",
            ));
        }
        Ok(principal)
    }
}
