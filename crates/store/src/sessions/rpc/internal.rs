//! StoreInternal: the run path records invocations and appends turns. The
//! callers (gateway, scheduler; sharing for OpenSession) are checked by the
//! identity layer; the facts they send come from sharing's plan and are
//! stored as given, after checking that they are well formed.

use agentshare_kit::{Error, Result, ids};
use agentshare_proto::store::v1 as pb;
use pb::store_internal_service_server::StoreInternalService;

use super::{invocation_to_proto, message_to_proto, session_to_proto};
use crate::sessions::rules::{
    self, Completion, Invocation, NewMessage, SessionSpec, Status as RunStatus, same_owner,
};
use crate::sessions::storage::{Append, Completed, Storage, Target};

/// Longest idempotency key, in bytes.
const MAX_REQUEST_ID_BYTES: usize = 256;

#[derive(Clone)]
pub struct Internal {
    pub storage: Storage,
    pub max_message_bytes: u64,
}

fn request_id(value: &str) -> Result<&str> {
    if value.is_empty() {
        return Err(Error::invalid(
            "request_id",
            "required: an idempotency key such as the invocation id",
        ));
    }
    if value.len() > MAX_REQUEST_ID_BYTES {
        return Err(Error::invalid(
            "request_id",
            format!("is over {MAX_REQUEST_ID_BYTES} bytes"),
        ));
    }
    Ok(value)
}

fn spec_of(wire: Option<pb::SessionSpec>) -> Result<SessionSpec> {
    let wire = wire.ok_or_else(|| Error::invalid("spec", "required"))?;
    Ok(SessionSpec {
        org_id: wire.org_id,
        agent_id: wire.agent_id,
        agent_name: wire.agent_name,
        user_id: wire.user_id,
        anonymous: wire.anonymous,
        grant_id: wire.grant_id,
        project_id: wire.project_id,
        workspace_id: wire.workspace_id,
    })
}

fn non_negative(field: &str, value: i64) -> Result<i64> {
    if value < 0 {
        return Err(Error::invalid(field, "must not be negative"));
    }
    Ok(value)
}

impl Internal {
    fn messages(&self, wire: Vec<pb::NewMessage>) -> Result<Vec<NewMessage>> {
        if wire.is_empty() {
            return Err(Error::invalid("messages", "append at least one message"));
        }
        wire.into_iter()
            .enumerate()
            .map(|(i, m)| {
                rules::new_message(i, m.role, m.content, m.tool_name, self.max_message_bytes)
            })
            .collect()
    }

    async fn complete_invocation(
        &self,
        request: pb::CompleteInvocationRequest,
    ) -> Result<pb::CompleteInvocationResponse> {
        let completed = self.complete(request).await?;
        Ok(pb::CompleteInvocationResponse {
            invocation: Some(invocation_to_proto(completed)),
        })
    }

    async fn complete(&self, request: pb::CompleteInvocationRequest) -> Result<Invocation> {
        let id = ids::parse("invocation_id", &request.invocation_id)?;
        let status = rules::final_status(request.status)?;
        let input_tokens = non_negative("input_tokens", request.input_tokens)?;
        let output_tokens = non_negative("output_tokens", request.output_tokens)?;
        let session_id = ids::parse_optional("session_id", &request.session_id)?;
        let end_time = request
            .end_time
            .as_ref()
            .map(|t| rules::micros_of("end_time", t))
            .transpose()?;
        let duration = request
            .duration
            .as_ref()
            .map(|d| rules::duration_micros("duration", d))
            .transpose()?;
        let failed = status == RunStatus::Failed;
        // A second pass settles a completion that raced another.
        for _ in 0..2 {
            let stored = self
                .storage
                .invocation(&id)
                .await?
                .ok_or_else(|| Error::not_found("invocation"))?;
            match rules::completion(stored.status, status) {
                Completion::Unchanged => return Ok(stored),
                Completion::Conflict(current) => {
                    return Err(Error::FailedPrecondition(format!(
                        "the invocation already completed as {}; it cannot end twice",
                        current.as_str().to_uppercase()
                    )));
                }
                Completion::Record => {}
            }
            let start = stored.facts.start_time;
            // A start the caller dated ahead of our clock still ends after it.
            let end_time = end_time.unwrap_or_else(|| self.storage.clock.now_micros().max(start));
            if end_time < start {
                return Err(Error::invalid(
                    "end_time",
                    "is before the invocation's start time",
                ));
            }
            let end = Completed {
                status,
                error_code: if failed { &request.error_code } else { "" },
                error_message: if failed { &request.error_message } else { "" },
                end_time,
                duration_micros: duration.unwrap_or(end_time - start),
                input_tokens,
                output_tokens,
                session_id: &session_id,
            };
            if self.storage.complete(&id, &end).await? {
                return self
                    .storage
                    .invocation(&id)
                    .await?
                    .ok_or_else(|| Error::internal("a completed invocation vanished"));
            }
        }
        Err(Error::Aborted(
            "the invocation changed while completing it; retry".into(),
        ))
    }

    async fn record_invocation(
        &self,
        request: pb::RecordInvocationRequest,
    ) -> Result<pb::RecordInvocationResponse> {
        let record = request
            .invocation
            .ok_or_else(|| Error::invalid("invocation", "required"))?;
        let (id, facts, start_set) = rules::run_facts(record, self.storage.clock.now_micros())?;
        let invocation = Invocation {
            id,
            facts,
            status: RunStatus::Running,
            error_code: String::new(),
            error_message: String::new(),
            duration_micros: None,
            end_time: None,
            input_tokens: 0,
            output_tokens: 0,
        };
        let stored = match self.storage.record(&invocation).await? {
            None => invocation,
            Some(existing) if existing.facts.same_run(&invocation.facts, start_set) => existing,
            Some(_) => {
                return Err(Error::AlreadyExists(format!(
                    "invocation {} is already recorded with other facts; use a new id for a new run",
                    invocation.id
                )));
            }
        };
        Ok(pb::RecordInvocationResponse {
            invocation: Some(invocation_to_proto(stored)),
        })
    }

    async fn create_session(
        &self,
        message: pb::CreateSessionRequest,
    ) -> Result<pb::CreateSessionResponse> {
        let request_id = request_id(&message.request_id)?;
        let spec = rules::session_spec("spec", spec_of(message.spec)?)?;
        let digest =
            rules::new_secret_digest("session_secret", spec.anonymous, &message.session_secret)?;
        let created = self
            .storage
            .create_session(request_id, &spec, &digest)
            .await?;
        if created.retried {
            same_owner(&created.session, &spec, &digest)?;
        }
        Ok(pb::CreateSessionResponse {
            session: Some(session_to_proto(created.session)),
        })
    }

    async fn append_turn(&self, message: pb::AppendTurnRequest) -> Result<pb::AppendTurnResponse> {
        let request_id = request_id(&message.request_id)?;
        let messages = self.messages(message.messages)?;
        let invocation_id = ids::parse_optional("invocation_id", &message.invocation_id)?;
        let agent_version_number =
            non_negative("agent_version_number", message.agent_version_number)?;
        let wire_spec = spec_of(message.spec)?;
        let secret = message.session_secret;
        let session_id = ids::parse_optional("session_id", &message.session_id)?;
        let appended = if session_id.is_empty() {
            let spec = rules::session_spec("spec", wire_spec)?;
            let digest = rules::new_secret_digest("session_secret", spec.anonymous, &secret)?;
            let append = Append {
                request_id,
                target: Target::New {
                    spec: &spec,
                    secret_digest: &digest,
                },
                agent_name: &spec.agent_name,
                invocation_id: &invocation_id,
                agent_version_number,
                messages: &messages,
            };
            self.storage
                .append(&append, |session| same_owner(session, &spec, &digest))
                .await?
        } else {
            let agent_id = ids::parse("spec.agent_id", &wire_spec.agent_id)?;
            let spec = SessionSpec {
                user_id: ids::parse_optional("spec.user_id", &wire_spec.user_id)?,
                agent_id,
                ..wire_spec
            };
            rules::owner_fields("spec", &spec)?;
            let append = Append {
                request_id,
                target: Target::Existing(&session_id),
                agent_name: &spec.agent_name,
                invocation_id: &invocation_id,
                agent_version_number,
                messages: &messages,
            };
            self.storage
                .append(&append, |session| rules::continues(session, &spec, &secret))
                .await?
        };
        Ok(pb::AppendTurnResponse {
            session: Some(session_to_proto(appended.session)),
            messages: appended
                .messages
                .into_iter()
                .map(message_to_proto)
                .collect(),
            created: appended.created,
        })
    }

    async fn open_session(
        &self,
        message: pb::OpenSessionRequest,
    ) -> Result<pb::OpenSessionResponse> {
        let session_id = ids::parse("session_id", &message.session_id)?;
        let user_id = ids::parse_optional("user_id", &message.user_id)?;
        let session = self
            .storage
            .session(&session_id)
            .await?
            .filter(|session| rules::opens(session, &user_id, &message.session_secret))
            .ok_or_else(|| Error::not_found("session"))?;
        Ok(pb::OpenSessionResponse {
            session: Some(session_to_proto(session)),
        })
    }

    async fn get_invocation(
        &self,
        request: pb::GetInvocationRequest,
    ) -> Result<pb::GetInvocationResponse> {
        let id = ids::parse("invocation_id", &request.invocation_id)?;
        let invocation = self
            .storage
            .invocation(&id)
            .await?
            .ok_or_else(|| Error::not_found("invocation"))?;
        Ok(pb::GetInvocationResponse {
            invocation: Some(invocation_to_proto(invocation)),
        })
    }
}

/// The run path's calls carry no user caller: the identity layer admits
/// only the services listed for them.
#[tonic::async_trait]
impl StoreInternalService for Internal {
    agentshare_kit::internal_handlers! {
        record_invocation(pb::RecordInvocationRequest) -> pb::RecordInvocationResponse;
        complete_invocation(pb::CompleteInvocationRequest) -> pb::CompleteInvocationResponse;
        create_session(pb::CreateSessionRequest) -> pb::CreateSessionResponse;
        append_turn(pb::AppendTurnRequest) -> pb::AppendTurnResponse;
        open_session(pb::OpenSessionRequest) -> pb::OpenSessionResponse;
        get_invocation(pb::GetInvocationRequest) -> pb::GetInvocationResponse;
    }
}
