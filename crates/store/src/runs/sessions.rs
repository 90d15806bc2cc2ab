//! SessionsService: a user, grant holder or anonymous visitor reads their
//! own conversations, and nobody else's.

use agentshare_kit::Error;
use agentshare_kit::identity::Principal;
use agentshare_kit::ids;
use agentshare_proto::store::v1 as pb;
use pb::sessions_service_server::SessionsService;
use tonic::{Request, Response, Status};

use agentshare_kit::page::Page;

use super::domain::{self, Reader, SessionState};
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
        let page = Page::keyed(
            message.page_size,
            &message.page_token,
            format!("sessions:{agent_id}:{project_id}:{}", message.state),
            2,
        )?;
        let after = match page.after_parts() {
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
        let sessions = self
            .storage
            .sessions(&filter, after, page.limit())
            .await
            .map_err(Error::from)?;
        let (sessions, next_page_token) = page.split_keyed(sessions, |session| {
            vec![session.created_at.to_string(), session.id.clone()]
        });
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
        let page = Page::of(
            message.page_size,
            &message.page_token,
            format!("messages:{session_id}:{}", message.after_sequence),
        )?;
        let after = match page.after() {
            Some(after) => domain::cursor_number(after)?.max(message.after_sequence),
            None => message.after_sequence,
        };
        let session = self
            .storage
            .session(&session_id)
            .await
            .map_err(Error::from)?
            .filter(|session| reader.may_read(session, &message.session_secret))
            .ok_or_else(|| Error::not_found("session"))?;
        let messages = self
            .storage
            .messages(&session.id, after, page.limit())
            .await
            .map_err(Error::from)?;
        let (messages, next_page_token) =
            page.split(messages, |message| message.sequence.to_string());
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(wire::session(session)),
            messages: messages.into_iter().map(wire::message).collect(),
            next_page_token,
        }))
    }
}
