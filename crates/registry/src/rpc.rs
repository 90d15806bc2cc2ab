//! The gRPC face of the registry: decode, check the caller, apply the
//! domain's rules, store, sync access facts to sharing, map the result.

use agentshare_kit::Error;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::Principal;
use agentshare_kit::ids;
use agentshare_proto::registry::v1 as pb;
use pb::agent_registry_service_server::AgentRegistryService;
use tonic::{Request, Response, Status};

use crate::diff;
use agentshare_kit::page::Page;

use crate::domain::{self, Access, AgentState, Caller, Origin};
use crate::storage::{
    AgentFilter, AgentRow, NewAgent, NewTemplate, NewVersion, Storage, TemplateRow, VersionRow,
};
use crate::sync::{AccessSync, NotSynced};

/// How often a deploy or rollback re-reads the agent when another one landed
/// between its read and its write, before it gives up with ABORTED.
const WRITE_ATTEMPTS: usize = 3;

#[derive(Clone)]
pub struct Registry {
    pub storage: Storage,
    pub access: AccessSync,
    pub holders: crate::holders::Holders,
}

/// How much of an agent a caller sees.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    /// The full draft; the caller may change it.
    Editor,
    /// The holder view of the latest version.
    Holder,
    /// A deleted agent, shown to its owner in full but read-only.
    History,
}

impl From<Access> for View {
    fn from(access: Access) -> Self {
        match access {
            Access::Edit => Self::Editor,
            Access::Read => Self::Holder,
        }
    }
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
    let editor = access == Access::Edit;
    pb::AgentVersion {
        content: with_content.then(|| {
            if editor {
                version.content.clone()
            } else {
                domain::holder_view(&version.content)
            }
        }),
        agent_id: version.agent_id,
        number: version.number,
        deployer_user_id: version.deployer_user_id,
        deploy_time: Some(timestamp(version.deployed_at)),
        notes: version.notes,
        origin: version.origin.to_proto().into(),
        rollback_of_version_number: version.rollback_of,
        draft_revision: if editor { version.draft_revision } else { 0 },
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

/// FAILED_PRECONDITION naming each SHARED tool that needs a connection.
fn undeployable(keys: &[String]) -> Status {
    Error::Unmet(
        format!(
            "these SHARED tools need one of your connections before a version can be made: {}; \
             set their connection_id with UpdateDraft and deploy again",
            keys.join(", ")
        ),
        keys.iter()
            .map(|key| {
                (
                    "SHARED_TOOL_WITHOUT_CONNECTION".to_string(),
                    format!("tools[{key}]"),
                    format!("the SHARED tool {key} names none of your connections"),
                )
            })
            .collect(),
    )
    .into()
}

fn aborted_draft(current: i64) -> Error {
    Error::Aborted(format!(
        "the draft changed since you read it (it is now at revision {current}); read the agent again, reapply your change and retry"
    ))
}

fn version_not_found(agent_id: &str, number: i64) -> Error {
    Error::not_found(format!("version {number} of agent {agent_id}"))
}

impl Registry {
    /// The agent and what the caller may do with it; NOT_FOUND when the
    /// caller may not see it.
    async fn visible(&self, caller: &Caller, agent_id: &str) -> Result<(AgentRow, Access), Error> {
        let agent_id = &ids::parse("agent_id", agent_id)?;
        let agent = self
            .storage
            .agent(&caller.org_id, agent_id)
            .await?
            .ok_or_else(|| domain::not_found(agent_id))?;
        let access = self
            .access_of(caller, Some(&agent))
            .await?
            .ok_or_else(|| domain::not_found(agent_id))?;
        Ok((agent, access))
    }

    async fn editable(&self, caller: &Caller, agent_id: &str) -> Result<AgentRow, Error> {
        let agent_id = &ids::parse("agent_id", agent_id)?;
        let agent = self.storage.agent(&caller.org_id, agent_id).await?;
        let access = self.access_of(caller, agent.as_ref()).await?;
        domain::require_edit(access, agent_id)?;
        agent.ok_or_else(|| domain::not_found(agent_id))
    }

    /// What the caller may do with the agent: the owner's and the default
    /// agent's rules here, and for anyone else sharing's decision, so a
    /// holder of a shared agent reads its holder view.
    async fn access_of(
        &self,
        caller: &Caller,
        agent: Option<&AgentRow>,
    ) -> Result<Option<Access>, Error> {
        let Some(agent) = agent else {
            return Ok(None);
        };
        if let Some(access) = domain::access(&agent.standing(), caller) {
            return Ok(Some(access));
        }
        if agent.state != AgentState::Active || agent.is_default {
            return Ok(None);
        }
        Ok(self
            .holders
            .may_view(caller, &agent.id)
            .await?
            .then_some(Access::Read))
    }

    async fn version_of(&self, agent_id: &str, number: i64) -> Result<VersionRow, Error> {
        self.storage
            .version(agent_id, number)
            .await?
            .ok_or_else(|| version_not_found(agent_id, number))
    }

    /// Repeats the agent's latest sync, for a call that changed nothing but
    /// may follow one whose sync failed.
    async fn resync(&self, agent_id: &str) -> Result<(), Error> {
        let (_, facts) = self.storage.current_facts(agent_id).await?;
        self.access
            .sync(facts)
            .await
            .map_err(NotSynced::after_commit)
    }

    /// The org's default agent, created on first need exactly once: the
    /// storage's unique index lets one creator win, and the others read its
    /// agent.
    pub async fn ensure_default_agent(&self, org_id: &str) -> Result<AgentRow, Error> {
        if let Some(agent) = self.storage.default_agent(org_id).await? {
            return Ok(agent);
        }
        let design = domain::default_agent_design();
        match self.storage.create_default_agent(org_id, &design).await? {
            Some((agent, facts)) => {
                self.access
                    .sync(facts)
                    .await
                    .map_err(NotSynced::after_commit)?;
                Ok(agent)
            }
            None => self.storage.default_agent(org_id).await?.ok_or_else(|| {
                Error::internal(format!(
                    "org {org_id}: default agent not found after its unique index refused a second one"
                ))
            }),
        }
    }

    async fn create(
        &self,
        caller: &Caller,
        draft: pb::AgentDraft,
        is_managed: bool,
    ) -> Result<AgentRow, Error> {
        let home = caller.home_workspace()?;
        let (agent, facts) = self
            .storage
            .create_agent(NewAgent {
                org_id: &caller.org_id,
                owner_user_id: &caller.user_id,
                home_workspace_id: home,
                draft: &draft,
                is_managed,
            })
            .await?;
        self.access
            .sync(facts)
            .await
            .map_err(NotSynced::after_commit)?;
        Ok(agent)
    }

    /// Adds a version from `content` unless it equals the latest one, in
    /// which case the latest one is returned with `created = false`.
    async fn add_version(
        &self,
        agent: &AgentRow,
        new: NewVersion<'_>,
    ) -> Result<Option<(AgentRow, VersionRow, bool)>, Status> {
        if agent.latest.as_ref() == Some(new.content) {
            let latest = self.version_of(&agent.id, agent.latest_version).await?;
            self.resync(&agent.id).await?;
            return Ok(Some((agent.clone(), latest, false)));
        }
        let missing = domain::tools_without_connection(new.content);
        if !missing.is_empty() {
            return Err(undeployable(&missing));
        }
        let Some((agent, version, facts)) =
            self.storage.add_version(new).await.map_err(Error::from)?
        else {
            return Ok(None);
        };
        self.access
            .sync(facts)
            .await
            .map_err(NotSynced::after_commit)?;
        Ok(Some((agent, version, true)))
    }
}

fn page_of_versions(page: &Page) -> Result<Option<i64>, Error> {
    page.after()
        .map(|n| {
            n.parse::<i64>()
                .map_err(|_| Error::invalid("page_token", "not a token from a previous page"))
        })
        .transpose()
}

fn state_filter(state: i32) -> Result<Option<AgentState>, Error> {
    match pb::AgentState::try_from(state) {
        Ok(pb::AgentState::Unspecified) => Ok(None),
        Ok(pb::AgentState::Draft) => Ok(Some(AgentState::Draft)),
        Ok(pb::AgentState::Active) => Ok(Some(AgentState::Active)),
        Ok(pb::AgentState::Deleted) => Err(Error::invalid(
            "state",
            "deleted agents are in no list; read one with GetAgent",
        )),
        Err(_) => Err(Error::invalid("state", "unknown agent state")),
    }
}

#[tonic::async_trait]
impl AgentRegistryService for Registry {
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        caller.require_builder()?;
        caller.home_workspace()?;
        let request = request.into_inner();
        if request.is_managed {
            caller.require_may_manage()?;
        }
        let draft = domain::validate_draft("draft", request.draft.unwrap_or_default())?;
        let agent = self.create(&caller, draft, request.is_managed).await?;
        Ok(Response::new(pb::CreateAgentResponse {
            agent: Some(agent_to_proto(&agent, View::Editor)),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let agent_id = &ids::parse("agent_id", &request.get_ref().agent_id)?;
        let agent = self
            .storage
            .agent(&caller.org_id, agent_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| domain::not_found(agent_id))?;
        let view = if domain::sees_deleted(&agent.standing(), &caller) {
            View::History
        } else {
            self.access_of(&caller, Some(&agent))
                .await?
                .ok_or_else(|| domain::not_found(agent_id))?
                .into()
        };
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent_to_proto(&agent, view)),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        let state = state_filter(request.state)?;
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!(
                "agents:{}:{}:{}:{}",
                caller.org_id, caller.user_id, request.owned_by_caller, request.state
            ),
        )?;
        let listing = domain::listing(&caller, request.owned_by_caller);
        let rows = self
            .storage
            .agents(AgentFilter {
                org_id: &caller.org_id,
                listing: &listing,
                state,
                after_id: page.after(),
                limit: page.limit(),
            })
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |agent| agent.id.clone());
        let agents = rows
            .iter()
            .filter_map(|agent| {
                domain::access(&agent.standing(), &caller)
                    .map(|access| agent_to_proto(agent, access.into()))
            })
            .collect();
        Ok(Response::new(pb::ListAgentsResponse {
            agents,
            next_page_token,
        }))
    }

    async fn update_draft(
        &self,
        request: Request<pb::UpdateDraftRequest>,
    ) -> Result<Response<pb::UpdateDraftResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        if request.expected_draft_revision <= 0 {
            return Err(Error::invalid(
                "expected_draft_revision",
                "required: pass the draft_revision you read",
            )
            .into());
        }
        let agent = self.editable(&caller, &request.agent_id).await?;
        if agent.draft_revision != request.expected_draft_revision {
            return Err(aborted_draft(agent.draft_revision).into());
        }
        let mut draft = agent.draft.clone();
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        domain::apply_mask(&mut draft, &request.draft.unwrap_or_default(), &paths)?;
        let draft = domain::validate_draft("draft", draft)?;
        let changes_facts = domain::edit_changes_facts(agent.state, &agent.draft, &draft);
        let updated = self
            .storage
            .update_draft(
                &agent.id,
                request.expected_draft_revision,
                &draft,
                changes_facts,
            )
            .await
            .map_err(Error::from)?;
        let Some((agent, facts)) = updated else {
            // Deleted or edited meanwhile: read again to say which.
            let now = self.editable(&caller, &agent.id).await?;
            return Err(aborted_draft(now.draft_revision).into());
        };
        if let Some(facts) = facts {
            self.access
                .sync(facts)
                .await
                .map_err(NotSynced::after_commit)?;
        }
        Ok(Response::new(pb::UpdateDraftResponse {
            agent: Some(agent_to_proto(&agent, View::Editor)),
        }))
    }

    async fn deploy_agent(
        &self,
        request: Request<pb::DeployAgentRequest>,
    ) -> Result<Response<pb::DeployAgentResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        if request.expected_draft_revision <= 0 {
            return Err(Error::invalid(
                "expected_draft_revision",
                "required: pass the draft_revision you reviewed",
            )
            .into());
        }
        domain::check_notes(&request.notes)?;
        for _ in 0..WRITE_ATTEMPTS {
            let agent = self.editable(&caller, &request.agent_id).await?;
            if agent.draft_revision != request.expected_draft_revision {
                return Err(aborted_draft(agent.draft_revision).into());
            }
            // A draft may be incomplete while edited; a version may not.
            let content = domain::validate_draft("draft", agent.draft.clone())?;
            let new = NewVersion {
                agent_id: &agent.id,
                expected_latest: agent.latest_version,
                expected_draft_revision: Some(agent.draft_revision),
                content: &content,
                deployer_user_id: &caller.user_id,
                notes: &request.notes,
                origin: Origin::Deploy,
                rollback_of: 0,
                draft_revision: agent.draft_revision,
            };
            // `None`: a deploy of this very draft landed meanwhile; the next
            // read finds it and answers `created = false`.
            if let Some((agent, version, created)) = self.add_version(&agent, new).await? {
                return Ok(Response::new(pb::DeployAgentResponse {
                    agent: Some(agent_to_proto(&agent, View::Editor)),
                    version: Some(version_to_proto(version, Access::Edit, true)),
                    created,
                }));
            }
        }
        Err(Error::Aborted(
            "other deploys kept landing first; read the agent again and retry".into(),
        )
        .into())
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        let (agent, access) = self.visible(&caller, &request.agent_id).await?;
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("versions:{}", agent.id),
        )?;
        let rows = self
            .storage
            .versions(&agent.id, page_of_versions(&page)?, page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |v| v.number.to_string());
        Ok(Response::new(pb::ListVersionsResponse {
            versions: rows
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
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        let (agent, access) = self.visible(&caller, &request.agent_id).await?;
        let version = self.version_of(&agent.id, request.version_number).await?;
        Ok(Response::new(pb::GetVersionResponse {
            version: Some(version_to_proto(version, access, true)),
        }))
    }

    async fn diff_versions(
        &self,
        request: Request<pb::DiffVersionsRequest>,
    ) -> Result<Response<pb::DiffVersionsResponse>, Status> {
        use pb::version_selector::Selector;
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        let (agent, access) = self.visible(&caller, &request.agent_id).await?;
        let mut sides = Vec::with_capacity(2);
        for (field, selector) in [("base", &request.base), ("target", &request.target)] {
            let content = match selector.as_ref().and_then(|s| s.selector.as_ref()) {
                None => {
                    return Err(Error::invalid(field, "name a version_number or the draft").into());
                }
                Some(Selector::Draft(false)) => {
                    return Err(
                        Error::invalid(format!("{field}.draft"), "must be true when set").into(),
                    );
                }
                Some(Selector::Draft(true)) => {
                    if access != Access::Edit {
                        return Err(Error::PermissionDenied(
                            "only the agent's editors may read its draft".into(),
                        )
                        .into());
                    }
                    agent.draft.clone()
                }
                Some(Selector::VersionNumber(number)) => {
                    self.version_of(&agent.id, *number).await?.content
                }
            };
            // Non-editors compare what they may see, so changes outside the
            // holder view stay hidden.
            sides.push(if access == Access::Edit {
                content
            } else {
                domain::holder_view(&content)
            });
        }
        Ok(Response::new(pb::DiffVersionsResponse {
            changes: diff::diff(&sides[0], &sides[1]),
        }))
    }

    async fn rollback_agent(
        &self,
        request: Request<pb::RollbackAgentRequest>,
    ) -> Result<Response<pb::RollbackAgentResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        domain::check_notes(&request.notes)?;
        for _ in 0..WRITE_ATTEMPTS {
            let agent = self.editable(&caller, &request.agent_id).await?;
            if agent.latest_version == 0 {
                return Err(Error::FailedPrecondition(
                    "the agent has no deployed version yet; deploy it first".into(),
                )
                .into());
            }
            if let Some(expected) = request.expected_latest_version_number
                && expected != agent.latest_version
            {
                return Err(Error::Aborted(format!(
                    "version {} was deployed since you read the agent; read it again and retry",
                    agent.latest_version
                ))
                .into());
            }
            let old = self.version_of(&agent.id, request.version_number).await?;
            let new = NewVersion {
                agent_id: &agent.id,
                expected_latest: agent.latest_version,
                expected_draft_revision: None,
                content: &old.content,
                deployer_user_id: &caller.user_id,
                notes: &request.notes,
                origin: Origin::Rollback,
                rollback_of: old.number,
                draft_revision: 0,
            };
            if let Some((agent, version, created)) = self.add_version(&agent, new).await? {
                return Ok(Response::new(pb::RollbackAgentResponse {
                    agent: Some(agent_to_proto(&agent, View::Editor)),
                    version: Some(version_to_proto(version, Access::Edit, true)),
                    created,
                }));
            }
        }
        Err(Error::Aborted(
            "other deploys kept landing first; read the agent again and retry".into(),
        )
        .into())
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let agent_id = &ids::parse("agent_id", &request.get_ref().agent_id)?;
        let agent = self
            .storage
            .agent(&caller.org_id, agent_id)
            .await
            .map_err(Error::from)?;
        let access = self.access_of(&caller, agent.as_ref()).await?;
        let agent = agent.ok_or_else(|| domain::not_found(agent_id))?;
        domain::require_may_delete(
            &agent.standing(),
            agent.is_managed,
            access,
            &caller,
            agent_id,
        )?;
        // Access ends before anything else: sharing learns of the delete
        // first, and nothing changes here unless it did.
        let (_, facts) = self
            .storage
            .current_facts(&agent.id)
            .await
            .map_err(Error::from)?;
        let ending = domain::deleted_facts(facts);
        let ended_at = ending.revision;
        self.access
            .sync(ending)
            .await
            .map_err(NotSynced::before_delete)?;
        let (agent, facts) = self
            .storage
            .delete_agent(&agent.id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| domain::not_found(agent_id))?;
        // A change that committed between the read and the delete took the
        // revision sharing got, so the final one must follow.
        if facts.revision != ended_at {
            self.access
                .sync(facts)
                .await
                .map_err(NotSynced::after_commit)?;
        }
        Ok(Response::new(pb::DeleteAgentResponse {
            agent: Some(agent_to_proto(&agent, View::History)),
        }))
    }

    async fn create_template_from_agent(
        &self,
        request: Request<pb::CreateTemplateFromAgentRequest>,
    ) -> Result<Response<pb::CreateTemplateFromAgentResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        let agent = self.editable(&caller, &request.agent_id).await?;
        if agent.latest_version == 0 {
            return Err(Error::FailedPrecondition(
                "the agent has no deployed version to publish; deploy it first".into(),
            )
            .into());
        }
        if request.version_number <= 0 {
            return Err(Error::invalid("version_number", "required: 1 or more").into());
        }
        let version = self.version_of(&agent.id, request.version_number).await?;
        let name = match request.name.trim() {
            "" => version.content.name.clone(),
            name => name.to_string(),
        };
        domain::check_name(&name).map_err(|why| Error::invalid("name", why))?;
        let description = match request.description.as_str() {
            "" => version.content.description.clone(),
            text => text.to_string(),
        };
        let content = domain::without_connections(&version.content);
        let template = self
            .storage
            .create_template(NewTemplate {
                org_id: &caller.org_id,
                name: &name,
                description: &description,
                content: &content,
                source_agent_id: &agent.id,
                source_version: version.number,
                publisher_user_id: &caller.user_id,
            })
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::CreateTemplateFromAgentResponse {
            template: Some(template_to_proto(template, true)),
        }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let request = request.into_inner();
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("templates:{}", caller.org_id),
        )?;
        let rows = self
            .storage
            .templates(&caller.org_id, page.after(), page.limit())
            .await
            .map_err(Error::from)?;
        let (rows, next_page_token) = page.split(rows, |t| t.id.clone());
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: rows
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
        let caller = Caller::of(Principal::of(&request)?)?;
        let template_id = &ids::parse("template_id", &request.get_ref().template_id)?;
        let template = self
            .storage
            .template(&caller.org_id, template_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("template {template_id}")))?;
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(template_to_proto(template, true)),
        }))
    }

    async fn create_agent_from_template(
        &self,
        request: Request<pb::CreateAgentFromTemplateRequest>,
    ) -> Result<Response<pb::CreateAgentFromTemplateResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        caller.require_builder()?;
        caller.home_workspace()?;
        let request = request.into_inner();
        let template_id = ids::parse("template_id", &request.template_id)?;
        let template = self
            .storage
            .template(&caller.org_id, &template_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("template {template_id}")))?;
        let mut draft = domain::without_connections(&template.content);
        draft.name = match request.name.trim() {
            "" => template.name,
            name => {
                domain::check_name(name).map_err(|why| Error::invalid("name", why))?;
                name.to_string()
            }
        };
        let draft = domain::validate_draft("draft", draft)?;
        let agent = self.create(&caller, draft, false).await?;
        Ok(Response::new(pb::CreateAgentFromTemplateResponse {
            agent: Some(agent_to_proto(&agent, View::Editor)),
        }))
    }

    async fn get_default_agent(
        &self,
        request: Request<pb::GetDefaultAgentRequest>,
    ) -> Result<Response<pb::GetDefaultAgentResponse>, Status> {
        let caller = Caller::of(Principal::of(&request)?)?;
        let agent = self.ensure_default_agent(&caller.org_id).await?;
        let access = domain::access(&agent.standing(), &caller).ok_or_else(|| {
            Error::internal(format!(
                "org {}: the default agent is not visible to a member",
                caller.org_id
            ))
        })?;
        Ok(Response::new(pb::GetDefaultAgentResponse {
            agent: Some(agent_to_proto(&agent, access.into())),
        }))
    }
}
