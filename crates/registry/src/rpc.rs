//! The gRPC face of the registry.

use agentshare_kit::Error;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::Principal;
use agentshare_proto::registry::v1 as pb;
use pb::agent_registry_service_server::AgentRegistryService;
use tonic::{Request, Response, Status};

use crate::domain::{self, AgentState};
use crate::storage::{AgentRow, Storage};

#[derive(Clone)]
pub struct Registry {
    pub storage: Storage,
}

/// The agent as `viewer` may see it: instructions are the owner's alone.
fn agent_to_proto(agent: AgentRow, viewer: &str) -> pb::Agent {
    let is_owner = agent.owner_user_id == viewer;
    pb::Agent {
        draft: Some(pb::AgentDraft {
            name: agent.draft.name,
            description: agent.draft.description,
            instructions: if is_owner {
                agent.draft.instructions
            } else {
                String::new()
            },
            ..Default::default()
        }),
        id: agent.id,
        org_id: agent.org_id,
        owner_user_id: agent.owner_user_id,
        home_workspace_id: agent.home_workspace_id,
        state: agent.state.to_proto().into(),
        draft_revision: agent.draft_revision,
        create_time: Some(timestamp(agent.created_at)),
        update_time: Some(timestamp(agent.updated_at)),
        has_undeployed_changes: agent.state == AgentState::Draft,
        caller_can_edit: is_owner,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl AgentRegistryService for Registry {
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let org = principal.require_org()?;
        domain::require_builder(principal)?;
        let workspace = principal.workspace_id.as_deref().ok_or_else(|| {
            Error::PermissionDenied(
                "you have no workspace in this org; ask an admin to add you to one".into(),
            )
        })?;
        if request.get_ref().is_managed {
            return Err(Error::Unimplemented("managed agents arrive with issue #5".into()).into());
        }
        let draft = domain::validate_draft(request.get_ref().draft.clone())?;
        let agent = self
            .storage
            .create_agent(org, user, workspace, draft)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::CreateAgentResponse {
            agent: Some(agent_to_proto(agent, user)),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let org = principal.require_org()?;
        let agent_id = &request.get_ref().agent_id;
        if agent_id.is_empty() {
            return Err(Error::invalid("agent_id", "must not be empty").into());
        }
        let agent = self
            .storage
            .agent(org, agent_id)
            .await
            .map_err(Error::from)?
            // A draft is its builder's alone; sharing rules come with the
            // sharing issue.
            .filter(|agent| agent.owner_user_id == user || agent.state != AgentState::Draft)
            .ok_or_else(|| Error::not_found(format!("agent {agent_id}")))?;
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent_to_proto(agent, user)),
        }))
    }
}
