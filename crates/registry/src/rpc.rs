//! The gRPC face of the registry: decode the request, establish the
//! caller, call the application service in `agents` and map its answer.

use agentshare_kit::clock::timestamp;
use agentshare_kit::page::Page;
use agentshare_kit::{Error, rpc};
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

#[tonic::async_trait]
impl AgentRegistryService for Registry {
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let draft = request.draft.unwrap_or_default();
            let agent = self
                .agents
                .create(&caller, draft, request.is_managed)
                .await?;
            Ok(pb::CreateAgentResponse {
                agent: Some(agent_to_proto(&agent, View::Editor)),
            })
        })
        .await
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let (agent, view) = self.agents.get(&caller, &request.agent_id).await?;
            Ok(pb::GetAgentResponse {
                agent: Some(agent_to_proto(&agent, view)),
            })
        })
        .await
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
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
            Ok(pb::ListAgentsResponse {
                agents: agents
                    .iter()
                    .map(|(agent, view)| agent_to_proto(agent, *view))
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn update_draft(
        &self,
        request: Request<pb::UpdateDraftRequest>,
    ) -> Result<Response<pb::UpdateDraftResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let edit = DraftEdit {
                agent_id: request.agent_id,
                expected_draft_revision: request.expected_draft_revision,
                draft: request.draft.unwrap_or_default(),
                paths: request.update_mask.map(|m| m.paths).unwrap_or_default(),
            };
            let agent = self.agents.update_draft(&caller, edit).await?;
            Ok(pb::UpdateDraftResponse {
                agent: Some(agent_to_proto(&agent, View::Editor)),
            })
        })
        .await
    }

    async fn deploy_agent(
        &self,
        request: Request<pb::DeployAgentRequest>,
    ) -> Result<Response<pb::DeployAgentResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
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
            Ok(pb::DeployAgentResponse {
                agent,
                version,
                created,
            })
        })
        .await
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let (versions, access, next_page_token) = self
                .agents
                .versions(
                    &caller,
                    &request.agent_id,
                    request.page_size,
                    &request.page_token,
                )
                .await?;
            Ok(pb::ListVersionsResponse {
                versions: versions
                    .into_iter()
                    .map(|v| version_to_proto(v, access, false))
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn get_version(
        &self,
        request: Request<pb::GetVersionRequest>,
    ) -> Result<Response<pb::GetVersionResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let (version, access) = self
                .agents
                .version(&caller, &request.agent_id, request.version_number)
                .await?;
            Ok(pb::GetVersionResponse {
                version: Some(version_to_proto(version, access, true)),
            })
        })
        .await
    }

    async fn diff_versions(
        &self,
        request: Request<pb::DiffVersionsRequest>,
    ) -> Result<Response<pb::DiffVersionsResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let (base, target) = self
                .agents
                .diff_sides(
                    &caller,
                    &request.agent_id,
                    selector(request.base.as_ref()),
                    selector(request.target.as_ref()),
                )
                .await?;
            Ok(pb::DiffVersionsResponse {
                changes: diff::diff(&base, &target),
            })
        })
        .await
    }

    async fn rollback_agent(
        &self,
        request: Request<pb::RollbackAgentRequest>,
    ) -> Result<Response<pb::RollbackAgentResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let rollback = Rollback {
                agent_id: request.agent_id,
                version_number: request.version_number,
                expected_latest_version: request.expected_latest_version_number,
                notes: request.notes,
            };
            let (agent, version, created) =
                deployed_to_proto(self.agents.rollback(&caller, rollback).await?);
            Ok(pb::RollbackAgentResponse {
                agent,
                version,
                created,
            })
        })
        .await
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let agent = self.agents.delete(&caller, &request.agent_id).await?;
            Ok(pb::DeleteAgentResponse {
                agent: Some(agent_to_proto(&agent, View::History)),
            })
        })
        .await
    }

    async fn create_template_from_agent(
        &self,
        request: Request<pb::CreateTemplateFromAgentRequest>,
    ) -> Result<Response<pb::CreateTemplateFromAgentResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let publication = Publication {
                agent_id: request.agent_id,
                version_number: request.version_number,
                name: request.name,
                description: request.description,
            };
            let template = self.agents.publish(&caller, publication).await?;
            Ok(pb::CreateTemplateFromAgentResponse {
                template: Some(template_to_proto(template, true)),
            })
        })
        .await
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let page = Page::of(
                request.page_size,
                &request.page_token,
                format!("templates:{}", caller.org_id),
            )?;
            let (templates, next_page_token) = self.agents.templates(&caller, &page).await?;
            Ok(pb::ListTemplatesResponse {
                templates: templates
                    .into_iter()
                    .map(|t| template_to_proto(t, false))
                    .collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let template = self.agents.template(&caller, &request.template_id).await?;
            Ok(pb::GetTemplateResponse {
                template: Some(template_to_proto(template, true)),
            })
        })
        .await
    }

    async fn create_agent_from_template(
        &self,
        request: Request<pb::CreateAgentFromTemplateRequest>,
    ) -> Result<Response<pb::CreateAgentFromTemplateResponse>, Status> {
        rpc::unary(request, async |caller, request| {
            let caller = Caller::of(&caller)?;
            let agent = self
                .agents
                .create_from_template(&caller, &request.template_id, &request.name)
                .await?;
            Ok(pb::CreateAgentFromTemplateResponse {
                agent: Some(agent_to_proto(&agent, View::Editor)),
            })
        })
        .await
    }

    async fn get_default_agent(
        &self,
        request: Request<pb::GetDefaultAgentRequest>,
    ) -> Result<Response<pb::GetDefaultAgentResponse>, Status> {
        rpc::unary(request, async |caller, _| {
            let caller = Caller::of(&caller)?;
            let (agent, view) = self.agents.default_agent(&caller).await?;
            Ok(pb::GetDefaultAgentResponse {
                agent: Some(agent_to_proto(&agent, view)),
            })
        })
        .await
    }
}
