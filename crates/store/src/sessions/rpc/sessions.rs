//! SessionsService: a user, grant holder or anonymous visitor reads their
//! own conversations, and nobody else's.

use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;
use agentshare_kit::{Error, Result, ids};
use agentshare_proto::store::v1 as pb;
use pb::sessions_service_server::SessionsService;

use super::{message_to_proto, session_to_proto};
use crate::sessions::rules::{Reader, SessionFilter, SessionState};
use crate::sessions::storage::Storage;

#[derive(Clone)]
pub struct Sessions {
    pub storage: Storage,
}

fn state_filter(wire: i32) -> Result<Option<SessionState>> {
    match pb::SessionState::try_from(wire) {
        Ok(pb::SessionState::Unspecified) => Ok(None),
        Ok(pb::SessionState::Active) => Ok(Some(SessionState::Active)),
        Ok(pb::SessionState::Archived) => Ok(Some(SessionState::Archived)),
        Err(_) => Err(Error::invalid(
            "state",
            "must be ACTIVE, ARCHIVED or UNSPECIFIED for both",
        )),
    }
}

/// The SessionsService handlers, one per unary call.
impl Sessions {
    async fn list_sessions(
        &self,
        caller: Principal,
        message: pb::ListSessionsRequest,
    ) -> agentshare_kit::Result<pb::ListSessionsResponse> {
        let reader = Reader::of(&caller)?;
        let agent_id = ids::parse_optional("agent_id", &message.agent_id)?;
        let project_id = ids::parse_optional("project_id", &message.project_id)?;
        let state = state_filter(message.state)?;
        let page = Page::keyed(
            message.page_size,
            &message.page_token,
            format!("sessions:{agent_id}:{project_id}:{}", message.state),
            2,
        )?;
        let filter = SessionFilter::of(
            &reader,
            Some(agent_id.as_str()).filter(|a| !a.is_empty()),
            Some(project_id.as_str()).filter(|p| !p.is_empty()),
            state,
        )?;
        let sessions = self.storage.sessions(&filter, &page).await?;
        let (sessions, next_page_token) = page.split_keyed(sessions, |session| {
            vec![session.created_at.to_string(), session.id.clone()]
        });
        Ok(pb::ListSessionsResponse {
            sessions: sessions.into_iter().map(session_to_proto).collect(),
            next_page_token,
        })
    }

    async fn get_session(
        &self,
        caller: Principal,
        message: pb::GetSessionRequest,
    ) -> agentshare_kit::Result<pb::GetSessionResponse> {
        let reader = Reader::of(&caller)?;
        let session_id = ids::parse("session_id", &message.session_id)?;
        if message.after_sequence < 0 {
            return Err(Error::invalid("after_sequence", "must not be negative"));
        }
        let page = Page::of(
            message.page_size,
            &message.page_token,
            format!("messages:{session_id}:{}", message.after_sequence),
        )?;
        let session = self
            .storage
            .session(&session_id)
            .await?
            .filter(|session| reader.may_read(session, &message.session_secret))
            .ok_or_else(|| Error::not_found("session"))?;
        let messages = self
            .storage
            .messages(&session.id, message.after_sequence, &page)
            .await?;
        let (messages, next_page_token) =
            page.split(messages, |message| message.sequence.to_string());
        Ok(pb::GetSessionResponse {
            session: Some(session_to_proto(session)),
            messages: messages.into_iter().map(message_to_proto).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl SessionsService for Sessions {
    agentshare_kit::handlers! {
        list_sessions(pb::ListSessionsRequest) -> pb::ListSessionsResponse;
        get_session(pb::GetSessionRequest) -> pb::GetSessionResponse;
    }
}
