//! SessionsService: a user, grant holder or anonymous visitor reads their
//! own conversations, and nobody else's.

use agentshare_kit::Error;
use agentshare_kit::identity::Principal;
use agentshare_kit::ids;
use agentshare_proto::store::v1 as pb;
use pb::sessions_service_server::SessionsService;
use tonic::{Request, Response, Status};

use super::domain::{self, Cursor, Reader, SessionState};
use super::storage::{SessionFilter, Storage};
use super::wire;

#[derive(Clone)]
pub struct Sessions {
    pub storage: Storage,
}

fn state_filter(wire: i32) -> Result<Option<SessionState>, Error> {
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

#[tonic::async_trait]
impl SessionsService for Sessions {
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let reader = Reader::of(Principal::of(&request)?)?;
        let message = request.into_inner();
        let agent_id = ids::parse_optional("agent_id", &message.agent_id)?;
        let project_id = ids::parse_optional("project_id", &message.project_id)?;
        let state = state_filter(message.state)?;
        let size = domain::page_size(message.page_size, 50, 500)?;
        let list = format!("sessions:{agent_id}:{project_id}:{}", message.state);
        let after = match Cursor::resume(&message.page_token, &list, 2)? {
            Some(after) => Some((domain::cursor_number(&after[0])?, after[1].clone())),
            None => None,
        };
        let mut filter = SessionFilter {
            user_id: "",
            org_id: None,
            grant_id: None,
            agent_id: Some(agent_id.as_str()).filter(|a| !a.is_empty()),
            project_id: Some(project_id.as_str()).filter(|p| !p.is_empty()),
            state,
        };
        match &reader {
            Reader::User { user_id, org_id } => {
                filter.user_id = user_id;
                filter.org_id = Some(org_id);
            }
            Reader::GrantHolder { user_id, grant_id } => {
                filter.user_id = user_id;
                filter.grant_id = Some(grant_id);
            }
            Reader::Visitor { .. } => {
                return Err(Error::PermissionDenied(
                    "an anonymous visitor has no session list; read your session with GetSession \
                     and the secret Invoke returned"
                        .into(),
                )
                .into());
            }
        }
        let mut sessions = self
            .storage
            .sessions(&filter, after, size + 1)
            .await
            .map_err(Error::from)?;
        let mut next_page_token = String::new();
        if i64::try_from(sessions.len()).unwrap_or(i64::MAX) > size {
            sessions.truncate(usize::try_from(size).unwrap_or(0));
            if let Some(last) = sessions.last() {
                next_page_token = Cursor {
                    list,
                    after: vec![last.created_at.to_string(), last.id.clone()],
                }
                .encode();
            }
        }
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.into_iter().map(wire::session).collect(),
            next_page_token,
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let reader = Reader::of(Principal::of(&request)?)?;
        let message = request.into_inner();
        let session_id = ids::parse("session_id", &message.session_id)?;
        if message.after_sequence < 0 {
            return Err(Error::invalid("after_sequence", "must not be negative").into());
        }
        let size = domain::page_size(message.page_size, 100, 1_000)?;
        let list = format!("messages:{session_id}:{}", message.after_sequence);
        let after = match Cursor::resume(&message.page_token, &list, 1)? {
            Some(after) => domain::cursor_number(&after[0])?.max(message.after_sequence),
            None => message.after_sequence,
        };
        let session = self
            .storage
            .session(&session_id)
            .await
            .map_err(Error::from)?
            .filter(|session| reader.may_read(session, &message.session_secret))
            .ok_or_else(|| Error::not_found("session"))?;
        let mut messages = self
            .storage
            .messages(&session.id, after, size + 1)
            .await
            .map_err(Error::from)?;
        let mut next_page_token = String::new();
        if i64::try_from(messages.len()).unwrap_or(i64::MAX) > size {
            messages.truncate(usize::try_from(size).unwrap_or(0));
            if let Some(last) = messages.last() {
                next_page_token = Cursor {
                    list,
                    after: vec![last.sequence.to_string()],
                }
                .encode();
            }
        }
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(wire::session(session)),
            messages: messages.into_iter().map(wire::message).collect(),
            next_page_token,
        }))
    }
}
