//! The gRPC face of the registry: decode the request, establish the
//! caller, call the application service in `agents` and map its answer.

use agentshare_kit::Error;
use agentshare_kit::clock::{micros_of, timestamp};
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;
use agentshare_proto::registry::v1 as pb;
use pb::agent_registry_service_server::AgentRegistryService;

use crate::agents::{Agents, Deployed, DraftEdit, Publication, Retirement, Rollback};
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

fn version_to_proto(
    version: VersionRow,
    access: Access,
    with_content: bool,
    now: i64,
) -> pb::AgentVersion {
    pb::AgentVersion {
        retired: domain::retired(version.sunset_at, now),
        sunset_time: version.sunset_at.map(timestamp),
        deprecation_note: version.deprecation_note,
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
fn deployed_to_proto(
    deployed: Deployed,
    now: i64,
) -> (Option<pb::Agent>, Option<pb::AgentVersion>, bool) {
    (
        Some(agent_to_proto(&deployed.agent, View::Editor)),
        Some(version_to_proto(deployed.version, Access::Edit, true, now)),
        deployed.created,
    )
}

/// The side a diff's selector names, if it names one.
fn selector(side: Option<&pb::VersionSelector>) -> Option<&pb::version_selector::Selector> {
    side.and_then(|s| s.selector.as_ref())
}

/// The AgentRegistryService handlers, one per unary call.
impl Registry {
    /// Now, by the service's clock, for whether a version has retired.
    fn now(&self) -> i64 {
        self.agents.storage.clock.now_micros()
    }

    async fn deprecate_version(
        &self,
        caller: Principal,
        request: pb::DeprecateVersionRequest,
    ) -> agentshare_kit::Result<pb::DeprecateVersionResponse> {
        let caller = Caller::of(&caller)?;
        let retirement = Retirement {
            agent_id: request.agent_id,
            version_number: request.version_number,
            sunset_at: request.sunset_time.as_ref().map(micros_of),
            note: request.note,
        };
        let version = self.agents.deprecate(&caller, retirement).await?;
        Ok(pb::DeprecateVersionResponse {
            version: Some(version_to_proto(version, Access::Edit, false, self.now())),
        })
    }

    async fn undeprecate_version(
        &self,
        caller: Principal,
        request: pb::UndeprecateVersionRequest,
    ) -> agentshare_kit::Result<pb::UndeprecateVersionResponse> {
        let caller = Caller::of(&caller)?;
        let (version, cancelled) = self
            .agents
            .undeprecate(&caller, &request.agent_id, request.version_number)
            .await?;
        Ok(pb::UndeprecateVersionResponse {
            version: Some(version_to_proto(version, Access::Edit, false, self.now())),
            cancelled,
        })
    }

    async fn create_agent(
        &self,
        caller: Principal,
        request: pb::CreateAgentRequest,
    ) -> agentshare_kit::Result<pb::CreateAgentResponse> {
        let caller = Caller::of(&caller)?;
        let draft = request.draft.unwrap_or_default();
        let agent = self
            .agents
            .create(&caller, draft, request.is_managed)
            .await?;
        Ok(pb::CreateAgentResponse {
            agent: Some(agent_to_proto(&agent, View::Editor)),
        })
    }

    async fn get_agent(
        &self,
        caller: Principal,
        request: pb::GetAgentRequest,
    ) -> agentshare_kit::Result<pb::GetAgentResponse> {
        let caller = Caller::of(&caller)?;
        let (agent, view) = self.agents.get(&caller, &request.agent_id).await?;
        Ok(pb::GetAgentResponse {
            agent: Some(agent_to_proto(&agent, view)),
        })
    }

    async fn list_agents(
        &self,
        caller: Principal,
        request: pb::ListAgentsRequest,
    ) -> agentshare_kit::Result<pb::ListAgentsResponse> {
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
    }

    async fn update_draft(
        &self,
        caller: Principal,
        request: pb::UpdateDraftRequest,
    ) -> agentshare_kit::Result<pb::UpdateDraftResponse> {
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
    }

    async fn deploy_agent(
        &self,
        caller: Principal,
        request: pb::DeployAgentRequest,
    ) -> agentshare_kit::Result<pb::DeployAgentResponse> {
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
        let (agent, version, created) = deployed_to_proto(deployed, self.now());
        Ok(pb::DeployAgentResponse {
            agent,
            version,
            created,
        })
    }

    async fn list_versions(
        &self,
        caller: Principal,
        request: pb::ListVersionsRequest,
    ) -> agentshare_kit::Result<pb::ListVersionsResponse> {
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
                .map(|v| version_to_proto(v, access, false, self.now()))
                .collect(),
            next_page_token,
        })
    }

    async fn get_version(
        &self,
        caller: Principal,
        request: pb::GetVersionRequest,
    ) -> agentshare_kit::Result<pb::GetVersionResponse> {
        let caller = Caller::of(&caller)?;
        let (version, access) = self
            .agents
            .version(&caller, &request.agent_id, request.version_number)
            .await?;
        Ok(pb::GetVersionResponse {
            version: Some(version_to_proto(version, access, true, self.now())),
        })
    }

    async fn diff_versions(
        &self,
        caller: Principal,
        request: pb::DiffVersionsRequest,
    ) -> agentshare_kit::Result<pb::DiffVersionsResponse> {
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
    }

    async fn rollback_agent(
        &self,
        caller: Principal,
        request: pb::RollbackAgentRequest,
    ) -> agentshare_kit::Result<pb::RollbackAgentResponse> {
        let caller = Caller::of(&caller)?;
        let rollback = Rollback {
            agent_id: request.agent_id,
            version_number: request.version_number,
            expected_latest_version: request.expected_latest_version_number,
            notes: request.notes,
        };
        let (agent, version, created) =
            deployed_to_proto(self.agents.rollback(&caller, rollback).await?, self.now());
        Ok(pb::RollbackAgentResponse {
            agent,
            version,
            created,
        })
    }

    async fn delete_agent(
        &self,
        caller: Principal,
        request: pb::DeleteAgentRequest,
    ) -> agentshare_kit::Result<pb::DeleteAgentResponse> {
        let caller = Caller::of(&caller)?;
        let agent = self.agents.delete(&caller, &request.agent_id).await?;
        Ok(pb::DeleteAgentResponse {
            agent: Some(agent_to_proto(&agent, View::History)),
        })
    }

    async fn create_template_from_agent(
        &self,
        caller: Principal,
        request: pb::CreateTemplateFromAgentRequest,
    ) -> agentshare_kit::Result<pb::CreateTemplateFromAgentResponse> {
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
    }

    async fn list_templates(
        &self,
        caller: Principal,
        request: pb::ListTemplatesRequest,
    ) -> agentshare_kit::Result<pb::ListTemplatesResponse> {
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
    }

    async fn get_template(
        &self,
        caller: Principal,
        request: pb::GetTemplateRequest,
    ) -> agentshare_kit::Result<pb::GetTemplateResponse> {
        let caller = Caller::of(&caller)?;
        let template = self.agents.template(&caller, &request.template_id).await?;
        Ok(pb::GetTemplateResponse {
            template: Some(template_to_proto(template, true)),
        })
    }

    async fn create_agent_from_template(
        &self,
        caller: Principal,
        request: pb::CreateAgentFromTemplateRequest,
    ) -> agentshare_kit::Result<pb::CreateAgentFromTemplateResponse> {
        let caller = Caller::of(&caller)?;
        let agent = self
            .agents
            .create_from_template(&caller, &request.template_id, &request.name)
            .await?;
        Ok(pb::CreateAgentFromTemplateResponse {
            agent: Some(agent_to_proto(&agent, View::Editor)),
        })
    }

    async fn get_default_agent(
        &self,
        caller: Principal,
        _request: pb::GetDefaultAgentRequest,
    ) -> agentshare_kit::Result<pb::GetDefaultAgentResponse> {
        let caller = Caller::of(&caller)?;
        let (agent, view) = self.agents.default_agent(&caller).await?;
        Ok(pb::GetDefaultAgentResponse {
            agent: Some(agent_to_proto(&agent, view)),
        })
    }
}

#[tonic::async_trait]
impl AgentRegistryService for Registry {
    agentshare_kit::handlers! {
        create_agent(pb::CreateAgentRequest) -> pb::CreateAgentResponse;
        get_agent(pb::GetAgentRequest) -> pb::GetAgentResponse;
        list_agents(pb::ListAgentsRequest) -> pb::ListAgentsResponse;
        update_draft(pb::UpdateDraftRequest) -> pb::UpdateDraftResponse;
        deploy_agent(pb::DeployAgentRequest) -> pb::DeployAgentResponse;
        list_versions(pb::ListVersionsRequest) -> pb::ListVersionsResponse;
        get_version(pb::GetVersionRequest) -> pb::GetVersionResponse;
        diff_versions(pb::DiffVersionsRequest) -> pb::DiffVersionsResponse;
        rollback_agent(pb::RollbackAgentRequest) -> pb::RollbackAgentResponse;
        deprecate_version(pb::DeprecateVersionRequest) -> pb::DeprecateVersionResponse;
        undeprecate_version(pb::UndeprecateVersionRequest) -> pb::UndeprecateVersionResponse;
        delete_agent(pb::DeleteAgentRequest) -> pb::DeleteAgentResponse;
        create_template_from_agent(pb::CreateTemplateFromAgentRequest) -> pb::CreateTemplateFromAgentResponse;
        list_templates(pb::ListTemplatesRequest) -> pb::ListTemplatesResponse;
        get_template(pb::GetTemplateRequest) -> pb::GetTemplateResponse;
        create_agent_from_template(pb::CreateAgentFromTemplateRequest) -> pb::CreateAgentFromTemplateResponse;
        get_default_agent(pb::GetDefaultAgentRequest) -> pb::GetDefaultAgentResponse;
    }
}
