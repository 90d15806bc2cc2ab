//! SharingService: sharing agents with their workspaces (`000_*`) and
//! setting the workspace list (`003_*`).

use std::collections::HashSet;

use agentshare_kit::Error;
use agentshare_kit::identity::Principal;
use agentshare_proto::sharing::v1 as pb;
use pb::sharing_service_server::SharingService;
use tonic::{Request, Response, Status};

use super::tenancy::workspace_to_proto;
use crate::access::{self, Action, Subject};
use crate::agent_access::{AccessState, AgentRow};
use crate::domain::{self, OrgRole};
use crate::scope;
use crate::storage::Storage;

/// The most workspaces one agent's list may name.
const MAX_WORKSPACES: usize = 1000;

#[derive(Clone)]
pub struct Sharing {
    pub storage: Storage,
    /// How recent a second factor must be for privileged mutations.
    pub step_up_max_age_secs: i64,
}

impl Sharing {
    /// The agent and the caller, once the caller may `action` it. The
    /// default agent is never shared or unshared, and only its owner shares
    /// an agent.
    async fn owned(
        &self,
        principal: &Principal,
        agent_id: &str,
        action: Action,
    ) -> Result<(AgentRow, Subject), Error> {
        let agent_id = domain::uuid("agent_id", agent_id)?;
        let subject = scope::caller(&self.storage, principal).await?;
        let agent = self.storage.agent(&agent_id).await?;
        let agent = access::require(agent, &agent_id, &subject, action)?;
        Ok((agent, subject))
    }

    /// The agent's sharing as `subject` may see it: only the workspaces they
    /// can access (every one for org owners and admins), home first.
    async fn sharing_state(
        &self,
        agent: &AgentRow,
        subject: &Subject,
        shared: bool,
    ) -> Result<pb::AgentSharingState, Error> {
        let org_admin = matches!(subject.org_role, Some(OrgRole::Owner | OrgRole::Admin));
        let accessible = self
            .storage
            .workspaces_visible_to(&agent.org_id, &subject.user_id, org_admin, None, i64::MAX)
            .await?;
        let workspaces = agent
            .workspaces
            .iter()
            .filter_map(|id| accessible.iter().find(|(w, _)| &w.id == id))
            .map(|(w, _)| workspace_to_proto(w.clone()))
            .collect();
        Ok(pb::AgentSharingState {
            agent_id: agent.agent_id.clone(),
            shared,
            home_workspace_id: agent.home_workspace_id.clone(),
            workspaces,
        })
    }
}

#[tonic::async_trait]
impl SharingService for Sharing {
    async fn share_agent(
        &self,
        request: Request<pb::ShareAgentRequest>,
    ) -> Result<Response<pb::ShareAgentResponse>, Status> {
        let principal = Principal::of(&request)?;
        let (agent, subject) = self
            .owned(principal, &request.get_ref().agent_id, Action::Share)
            .await?;
        if agent.state == AccessState::Draft {
            return Err(
                Error::FailedPrecondition("deploy the agent before sharing it".into()).into(),
            );
        }
        self.storage
            .set_shared(&agent, true)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ShareAgentResponse {
            sharing: Some(self.sharing_state(&agent, &subject, true).await?),
        }))
    }

    async fn unshare_agent(
        &self,
        request: Request<pb::UnshareAgentRequest>,
    ) -> Result<Response<pb::UnshareAgentResponse>, Status> {
        let principal = Principal::of(&request)?;
        let (agent, subject) = self
            .owned(principal, &request.get_ref().agent_id, Action::Share)
            .await?;
        self.storage
            .set_shared(&agent, false)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::UnshareAgentResponse {
            sharing: Some(self.sharing_state(&agent, &subject, false).await?),
        }))
    }

    async fn preview_unshare_agent(
        &self,
        request: Request<pb::PreviewUnshareAgentRequest>,
    ) -> Result<Response<pb::PreviewUnshareAgentResponse>, Status> {
        let principal = Principal::of(&request)?;
        let (agent, subject) = self
            .owned(principal, &request.get_ref().agent_id, Action::Share)
            .await?;
        let losing = if agent.shared && agent.state == AccessState::Active {
            self.storage
                .users_reaching(
                    &agent,
                    subject.workspaces_enabled,
                    &subject.org_default_workspace,
                )
                .await
                .map_err(Error::from)?
        } else {
            Vec::new()
        };
        let total = i32::try_from(losing.len()).unwrap_or(i32::MAX);
        Ok(Response::new(pb::PreviewUnshareAgentResponse {
            shared: agent.shared,
            users_losing_access: losing
                .into_iter()
                .map(|user| pb::UserImpact {
                    user_id: user.user_id,
                    email: user.email,
                    display_name: user.display_name,
                    workspace_ids: user.workspace_ids,
                })
                .collect(),
            users_losing_access_total: total,
            ..Default::default()
        }))
    }

    async fn get_agent_workspaces(
        &self,
        request: Request<pb::GetAgentWorkspacesRequest>,
    ) -> Result<Response<pb::GetAgentWorkspacesResponse>, Status> {
        let principal = Principal::of(&request)?;
        let (agent, subject) = self
            .owned(principal, &request.get_ref().agent_id, Action::View)
            .await?;
        let sharing = self.sharing_state(&agent, &subject, agent.shared).await?;
        Ok(Response::new(pb::GetAgentWorkspacesResponse {
            sharing: Some(sharing),
        }))
    }

    async fn set_agent_workspaces(
        &self,
        request: Request<pb::SetAgentWorkspacesRequest>,
    ) -> Result<Response<pb::SetAgentWorkspacesResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let (agent, subject) = self
            .owned(principal, &request.agent_id, Action::Share)
            .await?;
        if agent.is_managed {
            return Err(Error::PermissionDenied(access::denial_message(
                pb::DecisionReason::ManagedAgent,
            ))
            .into());
        }
        domain::require_step_up(
            principal,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )?;
        if request.workspace_ids.len() > MAX_WORKSPACES {
            return Err(Error::invalid(
                "workspace_ids",
                format!("must name at most {MAX_WORKSPACES} workspaces"),
            )
            .into());
        }
        let mut requested = Vec::with_capacity(request.workspace_ids.len());
        let mut seen = HashSet::new();
        for id in &request.workspace_ids {
            let id = domain::uuid("workspace_ids", id)?;
            if !seen.insert(id.clone()) {
                return Err(Error::invalid(
                    "workspace_ids",
                    format!("workspace {id} is listed twice"),
                )
                .into());
            }
            requested.push(id);
        }
        let org_admin = matches!(subject.org_role, Some(OrgRole::Owner | OrgRole::Admin));
        let accessible: HashSet<String> = self
            .storage
            .workspaces_visible_to(&agent.org_id, &subject.user_id, org_admin, None, i64::MAX)
            .await
            .map_err(Error::from)?
            .into_iter()
            .map(|(w, _)| w.id)
            .collect();
        for id in &requested {
            if !accessible.contains(id)
                && !self
                    .storage
                    .workspace_exists(&agent.org_id, id)
                    .await
                    .map_err(Error::from)?
            {
                return Err(Error::not_found(format!("workspace {id}")).into());
            }
        }
        // The home workspace always stays, and so do the listed workspaces
        // the caller cannot see: they cannot take away what they cannot see.
        let mut after = vec![agent.home_workspace_id.clone()];
        for id in agent.workspaces.iter().skip(1) {
            if !accessible.contains(id) {
                after.push(id.clone());
            }
        }
        for id in requested {
            if !after.contains(&id) {
                after.push(id);
            }
        }
        for id in after.iter().filter(|id| !agent.workspaces.contains(id)) {
            if !subject.memberships.contains(id) {
                return Err(Error::PermissionDenied(format!(
                    "you are not a member of workspace {id}; only members add a workspace"
                ))
                .into());
            }
        }
        let (added, removed) = self
            .storage
            .set_agent_workspaces(principal, &agent, &after)
            .await
            .map_err(Error::from)?;
        let agent = AgentRow {
            workspaces: after,
            ..agent
        };
        Ok(Response::new(pb::SetAgentWorkspacesResponse {
            sharing: Some(self.sharing_state(&agent, &subject, agent.shared).await?),
            added_workspace_ids: added,
            removed_workspace_ids: removed,
        }))
    }
}
