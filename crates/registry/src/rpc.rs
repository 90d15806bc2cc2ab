//! The gRPC face of the registry: decode the request, establish the
//! caller, call the application service in `agents` and map its answer.

use agentshare_kit::Error;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;
use agentshare_proto::registry::v1 as pb;
use pb::agent_registry_service_server::AgentRegistryService;
use tonic::{Request, Response, Status};

use crate::agents::{Agents, Deployed, DraftEdit, Publication, Rollback};
use crate::diff;
use crate::domain::{self, Access, Caller, View};
use crate::storage::{AgentRow, TemplateRow, VersionRow};

#[derive(Clone)]
pub struct Registry {
    pub agents: Agents,
}

fn agent_to_proto(agent: &AgentRow, view: View) -> pb::Agent {
    let full = view != View::Holder;
    let draft = if full {
        agent.draft.clone()
    } else {
        agent
            .latest
            .as_ref()
            .map(domain::holder_view)
            .unwrap_or_default()
    };
    pb::Agent {
        id: agent.id.clone(),
        org_id: agent.org_id.clone(),
        owner_user_id: agent.owner_user_id.clone(),
        home_workspace_id: agent.home_workspace_id.clone(),
        state: agent.state.to_proto().into(),
        draft: Some(draft),
        draft_revision: if full { agent.draft_revision } else { 0 },
        create_time: Some(timestamp(agent.created_at)),
        update_time: Some(timestamp(agent.updated_at)),
        is_default: agent.is_default,
        is_managed: agent.is_managed,
        latest_version_number: agent.latest_version,
        latest_deploy_time: agent.latest_deployed_at.map(timestamp),
        has_undeployed_changes: full && agent.latest.as_ref() != Some(&agent.draft),
        caller_can_edit: view == View::Editor,
        delete_time: agent.deleted_at.map(timestamp),
    }
}

fn version_to_proto(version: VersionRow, access: Access, with_content: bool) -> pb::AgentVersion {
    pb::AgentVersion {
        content: with_content.then(|| domain::shown(access, &version.content)),
        agent_id: version.agent_id,
        number: version.number,
        deployer_user_id: version.deployer_user_id,
        deploy_time: Some(timestamp(version.deployed_at)),
        notes: version.notes,
        origin: version.origin.to_proto().into(),
        rollback_of_version_number: version.rollback_of,
        draft_revision: if access == Access::Edit {
            version.draft_revision
        } else {
            0
        },
    }
}

fn template_to_proto(template: TemplateRow, with_content: bool) -> pb::Template {
    pb::Template {
        id: template.id,
        org_id: template.org_id,
        name: template.name,
        description: template.description,
        content: with_content.then_some(template.content),
        source_agent_id: template.source_agent_id,
        source_version_number: template.source_version,
        publisher_user_id: template.publisher_user_id,
        create_time: Some(timestamp(template.created_at)),
    }
}

/// A deploy's or a rollback's new (or unchanged) version, as its editor
/// sees it.
fn deployed_to_proto(deployed: Deployed) -> (Option<pb::Agent>, Option<pb::AgentVersion>, bool) {
    (
        Some(agent_to_proto(&deployed.agent, View::Editor)),
        Some(version_to_proto(deployed.version, Access::Edit, true)),
        deployed.created,
    )
}

/// The side a diff's selector names, if it names one.
fn selector(side: Option<&pb::VersionSelector>) -> Option<&pb::version_selector::Selector> {
    side.and_then(|s| s.selector.as_ref())
}

fn caller_of<T>(request: &Request<T>) -> Result<Caller, Error> {
    Caller::of(Principal::of(request)?)
}

#[tonic::async_trait]
impl AgentRegistryService for Registry {
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let draft = request.draft.unwrap_or_default();
        let agent = self
            .agents
            .create(&caller, draft, request.is_managed)
            .await?;
        Ok(Response::new(pb::CreateAgentResponse {
            agent: Some(agent_to_proto(&agent, View::Editor)),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let caller = caller_of(&request)?;
        let (agent, view) = self
            .agents
            .get(&caller, &request.get_ref().agent_id)
            .await?;
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent_to_proto(&agent, view)),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let state = pb::AgentState::try_from(request.state)
            .map_err(|_| Error::invalid("state", "unknown agent state"))?;
        let state = domain::listed_state(state)?;
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!(
                "agents:{}:{}:{}:{}",
                caller.org_id, caller.user_id, request.owned_by_caller, request.state
            ),
        )?;
        let (agents, next_page_token) = self
            .agents
            .list(&caller, request.owned_by_caller, state, &page)
            .await?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents
                .iter()
                .map(|(agent, view)| agent_to_proto(agent, *view))
                .collect(),
            next_page_token,
        }))
    }

    async fn update_draft(
        &self,
        request: Request<pb::UpdateDraftRequest>,
    ) -> Result<Response<pb::UpdateDraftResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let edit = DraftEdit {
            agent_id: request.agent_id,
            expected_draft_revision: request.expected_draft_revision,
            draft: request.draft.unwrap_or_default(),
            paths: request.update_mask.map(|m| m.paths).unwrap_or_default(),
        };
        let agent = self.agents.update_draft(&caller, edit).await?;
        Ok(Response::new(pb::UpdateDraftResponse {
            agent: Some(agent_to_proto(&agent, View::Editor)),
        }))
    }

    async fn deploy_agent(
        &self,
        request: Request<pb::DeployAgentRequest>,
    ) -> Result<Response<pb::DeployAgentResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.get_ref();
        let deployed = self
            .agents
            .deploy(
                &caller,
                &request.agent_id,
                request.expected_draft_revision,
                &request.notes,
            )
            .await?;
        let (agent, version, created) = deployed_to_proto(deployed);
        Ok(Response::new(pb::DeployAgentResponse {
            agent,
            version,
            created,
        }))
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.get_ref();
        let (versions, access, next_page_token) = self
            .agents
            .versions(
                &caller,
                &request.agent_id,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListVersionsResponse {
            versions: versions
                .into_iter()
                .map(|v| version_to_proto(v, access, false))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_version(
        &self,
        request: Request<pb::GetVersionRequest>,
    ) -> Result<Response<pb::GetVersionResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.get_ref();
        let (version, access) = self
            .agents
            .version(&caller, &request.agent_id, request.version_number)
            .await?;
        Ok(Response::new(pb::GetVersionResponse {
            version: Some(version_to_proto(version, access, true)),
        }))
    }

    async fn diff_versions(
        &self,
        request: Request<pb::DiffVersionsRequest>,
    ) -> Result<Response<pb::DiffVersionsResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.get_ref();
        let (base, target) = self
            .agents
            .diff_sides(
                &caller,
                &request.agent_id,
                selector(request.base.as_ref()),
                selector(request.target.as_ref()),
            )
            .await?;
        Ok(Response::new(pb::DiffVersionsResponse {
            changes: diff::diff(&base, &target),
        }))
    }

    async fn rollback_agent(
        &self,
        request: Request<pb::RollbackAgentRequest>,
    ) -> Result<Response<pb::RollbackAgentResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let rollback = Rollback {
            agent_id: request.agent_id,
            version_number: request.version_number,
            expected_latest_version: request.expected_latest_version_number,
            notes: request.notes,
        };
        let (agent, version, created) =
            deployed_to_proto(self.agents.rollback(&caller, rollback).await?);
        Ok(Response::new(pb::RollbackAgentResponse {
            agent,
            version,
            created,
        }))
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        let caller = caller_of(&request)?;
        let agent = self
            .agents
            .delete(&caller, &request.get_ref().agent_id)
            .await?;
        Ok(Response::new(pb::DeleteAgentResponse {
            agent: Some(agent_to_proto(&agent, View::History)),
        }))
    }

    async fn create_template_from_agent(
        &self,
        request: Request<pb::CreateTemplateFromAgentRequest>,
    ) -> Result<Response<pb::CreateTemplateFromAgentResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let publication = Publication {
            agent_id: request.agent_id,
            version_number: request.version_number,
            name: request.name,
            description: request.description,
        };
        let template = self.agents.publish(&caller, publication).await?;
        Ok(Response::new(pb::CreateTemplateFromAgentResponse {
            template: Some(template_to_proto(template, true)),
        }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.get_ref();
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("templates:{}", caller.org_id),
        )?;
        let (templates, next_page_token) = self.agents.templates(&caller, &page).await?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: templates
                .into_iter()
                .map(|t| template_to_proto(t, false))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        let caller = caller_of(&request)?;
        let template = self
            .agents
            .template(&caller, &request.get_ref().template_id)
            .await?;
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(template_to_proto(template, true)),
        }))
    }

    async fn create_agent_from_template(
        &self,
        request: Request<pb::CreateAgentFromTemplateRequest>,
    ) -> Result<Response<pb::CreateAgentFromTemplateResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.get_ref();
        let agent = self
            .agents
            .create_from_template(&caller, &request.template_id, &request.name)
            .await?;
        Ok(Response::new(pb::CreateAgentFromTemplateResponse {
            agent: Some(agent_to_proto(&agent, View::Editor)),
        }))
    }

    async fn get_default_agent(
        &self,
        request: Request<pb::GetDefaultAgentRequest>,
    ) -> Result<Response<pb::GetDefaultAgentResponse>, Status> {
        let caller = caller_of(&request)?;
        let (agent, view) = self.agents.default_agent(&caller).await?;
        Ok(Response::new(pb::GetDefaultAgentResponse {
            agent: Some(agent_to_proto(&agent, view)),
        }))
    }
}
