//! The gRPC face of sessions and records: SessionsService and UsageService
//! for their owners, StoreInternalService for the run path; and the stored
//! sessions, messages and records as the contract shows them.

mod internal;
mod sessions;
mod usage;

use agentshare_kit::clock::timestamp;
use agentshare_proto::store::v1 as pb;

use super::rules::{self, Invocation, Message, Role, Session, SessionState};

pub use internal::Internal;
pub use sessions::Sessions;
pub use usage::Usage;

fn session_to_proto(session: Session) -> pb::Session {
    let state = match session.state {
        SessionState::Active => pb::SessionState::Active,
        SessionState::Archived => pb::SessionState::Archived,
    };
    pb::Session {
        id: session.id,
        org_id: session.spec.org_id,
        agent_id: session.spec.agent_id,
        agent_name: session.spec.agent_name,
        user_id: session.spec.user_id,
        anonymous: session.spec.anonymous,
        grant_id: session.spec.grant_id,
        project_id: session.spec.project_id,
        workspace_id: session.spec.workspace_id,
        state: state.into(),
        title: session.title,
        message_count: session.message_count,
        create_time: Some(timestamp(session.created_at)),
        update_time: Some(timestamp(session.updated_at)),
        archive_time: session.archived_at.map(timestamp),
    }
}

fn message_to_proto(message: Message) -> pb::SessionMessage {
    let role = match message.role {
        Role::User => pb::MessageRole::User,
        Role::Assistant => pb::MessageRole::Assistant,
        Role::Tool => pb::MessageRole::Tool,
    };
    pb::SessionMessage {
        sequence: message.sequence,
        role: role.into(),
        content: message.content,
        create_time: Some(timestamp(message.created_at)),
        invocation_id: message.invocation_id,
        agent_version_number: message.agent_version_number,
        tool_name: message.tool_name,
    }
}

fn invocation_to_proto(invocation: Invocation) -> pb::InvocationRecord {
    let facts = invocation.facts;
    pb::InvocationRecord {
        id: invocation.id,
        org_id: facts.org_id,
        agent_id: facts.agent_id,
        agent_version_number: facts.agent_version_number,
        draft_run: facts.draft_run,
        caller_kind: facts.caller_kind.wire(),
        user_id: facts.user_id,
        anonymous: facts.anonymous,
        grant_id: facts.grant_id,
        session_id: facts.session_id,
        project_id: facts.project_id,
        automation_run_id: facts.automation_run_id,
        integrations: facts
            .integrations
            .into_iter()
            .map(|used| pb::IntegrationUse {
                integration_key: used.key,
                provider: used.provider,
                connection_owner: rules::connection_owner_wire(&used.owner),
            })
            .collect(),
        executes_as_user_id: facts.executes_as_user_id,
        billed_to_user_id: facts.billed_to_user_id,
        store_partition: facts.store_partition,
        status: invocation.status.wire(),
        error_code: invocation.error_code,
        error_message: invocation.error_message,
        duration: invocation.duration_micros.map(rules::duration),
        start_time: Some(timestamp(facts.start_time)),
        end_time: invocation.end_time.map(timestamp),
        input_tokens: invocation.input_tokens,
        output_tokens: invocation.output_tokens,
        agent_owner_user_id: facts.agent_owner_user_id,
    }
}
