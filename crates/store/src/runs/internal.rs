//! StoreInternal: the run path records invocations and appends turns. The
//! callers (gateway, scheduler; sharing for OpenSession) are checked by the
//! identity layer; the facts they send come from sharing's plan and are
//! stored as given, after checking that they are well formed.

use agentshare_kit::Error;
use agentshare_kit::ids;
use agentshare_proto::store::v1 as pb;
use pb::store_internal_service_server::StoreInternalService;
use tonic::{Request, Response, Status};

use super::domain::{
    self, Completion, IntegrationUse, Invocation, NewMessage, RunFacts, Session, SessionSpec,
    Status as RunStatus,
};
use super::storage::{Append, Completed, Storage, Target};
use super::wire;

/// Longest idempotency key, in bytes.
const MAX_REQUEST_ID_BYTES: usize = 256;

#[derive(Clone)]
pub struct Internal {
    pub storage: Storage,
    pub max_message_bytes: u64,
}

fn request_id(value: &str) -> Result<&str, Error> {
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

fn spec_of(wire: Option<pb::SessionSpec>) -> Result<SessionSpec, Error> {
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

/// Whether a retried create names the session it created: same owner, same
/// agent, same secret.
fn same_owner(session: &Session, spec: &SessionSpec, digest: &str) -> Result<(), Error> {
    let same = session.spec.user_id == spec.user_id
        && session.spec.anonymous == spec.anonymous
        && session.spec.agent_id == spec.agent_id
        && session.secret_digest == digest;
    if same {
        Ok(())
    } else {
        Err(Error::invalid(
            "request_id",
            "was already used to start a session for someone else; use a new request_id",
        ))
    }
}

/// The facts of a run's start, checked field by field.
fn run_facts(record: pb::InvocationRecord, now: i64) -> Result<(String, RunFacts, bool), Error> {
    let field = |name: &str| format!("invocation.{name}");
    let id = ids::parse(&field("id"), &record.id)?;
    let caller_kind = domain::caller_kind_name(record.caller_kind).ok_or_else(|| {
        Error::invalid(
            field("caller_kind"),
            "must be USER, INVOKE_GRANT, DELEGATE_GRANT or AUTOMATION",
        )
    })?;
    let user_id = ids::parse_optional(&field("user_id"), &record.user_id)?;
    match (record.anonymous, user_id.is_empty()) {
        (true, false) => {
            return Err(Error::invalid(
                field("user_id"),
                "must be empty for an anonymous visitor",
            ));
        }
        (false, true) => {
            return Err(Error::invalid(
                field("user_id"),
                "required unless the caller is an anonymous visitor",
            ));
        }
        _ => {}
    }
    if record.anonymous && caller_kind != "delegate_grant" {
        return Err(Error::invalid(
            field("anonymous"),
            "only DELEGATE_GRANT runs have anonymous callers",
        ));
    }
    let grant_id = ids::parse_optional(&field("grant_id"), &record.grant_id)?;
    if grant_id.is_empty() && matches!(caller_kind, "invoke_grant" | "delegate_grant") {
        return Err(Error::invalid(
            field("grant_id"),
            "required for a grant's run",
        ));
    }
    match (record.draft_run, record.agent_version_number) {
        (true, 0) | (false, 1..) => {}
        (true, _) => {
            return Err(Error::invalid(
                field("agent_version_number"),
                "must be 0 for a draft run",
            ));
        }
        (false, _) => {
            return Err(Error::invalid(
                field("agent_version_number"),
                "must be 1 or more; set draft_run for a run of the draft",
            ));
        }
    }
    let mut integrations = Vec::with_capacity(record.integrations.len());
    for (i, used) in record.integrations.into_iter().enumerate() {
        let at = |name: &str| format!("invocation.integrations[{i}].{name}");
        if used.integration_key.is_empty() {
            return Err(Error::invalid(at("integration_key"), "required"));
        }
        let owner = domain::connection_owner_name(used.connection_owner).ok_or_else(|| {
            Error::invalid(
                at("connection_owner"),
                "must be OWNER, BUILDER, CALLER or HOLDER",
            )
        })?;
        integrations.push(IntegrationUse {
            key: used.integration_key,
            provider: used.provider,
            owner: owner.to_string(),
        });
    }
    let start_set = record.start_time.is_some();
    let start_time = match &record.start_time {
        Some(time) => domain::micros_of(&field("start_time"), time)?,
        None => now,
    };
    let facts = RunFacts {
        org_id: ids::parse(&field("org_id"), &record.org_id)?,
        agent_id: ids::parse(&field("agent_id"), &record.agent_id)?,
        // Empty for the org default agent: no user owns it, and each run
        // is billed to its caller.
        agent_owner_user_id: ids::parse_optional(
            &field("agent_owner_user_id"),
            &record.agent_owner_user_id,
        )?,
        agent_version_number: record.agent_version_number,
        draft_run: record.draft_run,
        caller_kind,
        user_id,
        anonymous: record.anonymous,
        grant_id,
        session_id: ids::parse_optional(&field("session_id"), &record.session_id)?,
        project_id: ids::parse_optional(&field("project_id"), &record.project_id)?,
        automation_run_id: ids::parse_optional(
            &field("automation_run_id"),
            &record.automation_run_id,
        )?,
        integrations,
        executes_as_user_id: ids::parse(
            &field("executes_as_user_id"),
            &record.executes_as_user_id,
        )?,
        billed_to_user_id: ids::parse(&field("billed_to_user_id"), &record.billed_to_user_id)?,
        store_partition: record.store_partition,
        start_time,
    };
    Ok((id, facts, start_set))
}

fn non_negative(field: &str, value: i64) -> Result<i64, Error> {
    if value < 0 {
        return Err(Error::invalid(field, "must not be negative"));
    }
    Ok(value)
}

impl Internal {
    fn messages(&self, wire: Vec<pb::NewMessage>) -> Result<Vec<NewMessage>, Error> {
        if wire.is_empty() {
            return Err(Error::invalid("messages", "append at least one message"));
        }
        wire.into_iter()
            .enumerate()
            .map(|(i, m)| {
                domain::new_message(i, m.role, m.content, m.tool_name, self.max_message_bytes)
            })
            .collect()
    }

    async fn complete(&self, request: pb::CompleteInvocationRequest) -> Result<Invocation, Error> {
        let id = ids::parse("invocation_id", &request.invocation_id)?;
        let status = domain::final_status(request.status)?;
        let input_tokens = non_negative("input_tokens", request.input_tokens)?;
        let output_tokens = non_negative("output_tokens", request.output_tokens)?;
        let session_id = ids::parse_optional("session_id", &request.session_id)?;
        let end_time = request
            .end_time
            .as_ref()
            .map(|t| domain::micros_of("end_time", t))
            .transpose()?;
        let duration = request
            .duration
            .as_ref()
            .map(|d| domain::duration_micros("duration", d))
            .transpose()?;
        let failed = status == RunStatus::Failed;
        // A second pass settles a completion that raced another.
        for _ in 0..2 {
            let stored = self
                .storage
                .invocation(&id)
                .await?
                .ok_or_else(|| Error::not_found("invocation"))?;
            match domain::completion(stored.status, status) {
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
}

#[tonic::async_trait]
impl StoreInternalService for Internal {
    async fn record_invocation(
        &self,
        request: Request<pb::RecordInvocationRequest>,
    ) -> Result<Response<pb::RecordInvocationResponse>, Status> {
        let record = request
            .into_inner()
            .invocation
            .ok_or_else(|| Error::invalid("invocation", "required"))?;
        let (id, facts, start_set) = run_facts(record, self.storage.clock.now_micros())?;
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
                ))
                .into());
            }
        };
        Ok(Response::new(pb::RecordInvocationResponse {
            invocation: Some(wire::invocation(stored)),
        }))
    }

    async fn complete_invocation(
        &self,
        request: Request<pb::CompleteInvocationRequest>,
    ) -> Result<Response<pb::CompleteInvocationResponse>, Status> {
        let completed = self.complete(request.into_inner()).await?;
        Ok(Response::new(pb::CompleteInvocationResponse {
            invocation: Some(wire::invocation(completed)),
        }))
    }

    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let message = request.into_inner();
        let request_id = request_id(&message.request_id)?;
        let spec = domain::session_spec("spec", spec_of(message.spec)?)?;
        let digest =
            domain::new_secret_digest("session_secret", spec.anonymous, &message.session_secret)?;
        let created = self
            .storage
            .create_session(request_id, &spec, &digest)
            .await?;
        if created.retried {
            same_owner(&created.session, &spec, &digest)?;
        }
        Ok(Response::new(pb::CreateSessionResponse {
            session: Some(wire::session(created.session)),
        }))
    }

    async fn append_turn(
        &self,
        request: Request<pb::AppendTurnRequest>,
    ) -> Result<Response<pb::AppendTurnResponse>, Status> {
        let message = request.into_inner();
        let request_id = request_id(&message.request_id)?;
        let messages = self.messages(message.messages)?;
        let invocation_id = ids::parse_optional("invocation_id", &message.invocation_id)?;
        let agent_version_number =
            non_negative("agent_version_number", message.agent_version_number)?;
        let wire_spec = spec_of(message.spec)?;
        let secret = message.session_secret;
        let session_id = ids::parse_optional("session_id", &message.session_id)?;
        let appended = if session_id.is_empty() {
            let spec = domain::session_spec("spec", wire_spec)?;
            let digest = domain::new_secret_digest("session_secret", spec.anonymous, &secret)?;
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
            domain::owner_fields("spec", &spec)?;
            let append = Append {
                request_id,
                target: Target::Existing(&session_id),
                agent_name: &spec.agent_name,
                invocation_id: &invocation_id,
                agent_version_number,
                messages: &messages,
            };
            self.storage
                .append(&append, |session| {
                    let theirs = domain::opens(session, &spec.user_id, &secret)
                        && session.spec.anonymous == spec.anonymous
                        && session.spec.agent_id == spec.agent_id;
                    if theirs {
                        Ok(())
                    } else {
                        Err(Error::not_found("session"))
                    }
                })
                .await?
        };
        Ok(Response::new(pb::AppendTurnResponse {
            session: Some(wire::session(appended.session)),
            messages: appended.messages.into_iter().map(wire::message).collect(),
            created: appended.created,
        }))
    }

    async fn open_session(
        &self,
        request: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<pb::OpenSessionResponse>, Status> {
        let message = request.into_inner();
        let session_id = ids::parse("session_id", &message.session_id)?;
        let user_id = ids::parse_optional("user_id", &message.user_id)?;
        let session = self
            .storage
            .session(&session_id)
            .await
            .map_err(Error::from)?
            .filter(|session| domain::opens(session, &user_id, &message.session_secret))
            .ok_or_else(|| Error::not_found("session"))?;
        Ok(Response::new(pb::OpenSessionResponse {
            session: Some(wire::session(session)),
        }))
    }

    async fn get_invocation(
        &self,
        request: Request<pb::GetInvocationRequest>,
    ) -> Result<Response<pb::GetInvocationResponse>, Status> {
        let id = ids::parse("invocation_id", &request.get_ref().invocation_id)?;
        let invocation = self
            .storage
            .invocation(&id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found("invocation"))?;
        Ok(Response::new(pb::GetInvocationResponse {
            invocation: Some(wire::invocation(invocation)),
        }))
    }
}
