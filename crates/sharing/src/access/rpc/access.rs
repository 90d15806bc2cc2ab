//! AccessService: checks and their explanation, My Agents, version pins.

use agentshare_kit::Error;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::Principal;
use agentshare_kit::ids;
use agentshare_kit::page::Page;
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::sharing::v1 as pb;
use agentshare_proto::store::v1 as store_pb;
use pb::access_service_server::AccessService;
use store_pb::store_internal_service_client::StoreInternalServiceClient;
use tonic::{Request, Response, Status};

use crate::access::rules::decision::{self, Action, Explanation, Subject};
use crate::access::rules::plan::{self, ConnectionOwner, Plan, SessionFacts, VersionSource};
use crate::access::rules::scope;
use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::access::storage::pins::PinRow;
use crate::common::Storage;
use crate::connections::setup::{self, Runner};
use crate::tenancy::rules::OrgRole;

/// The most agents one CheckBulk answers.
pub const MAX_BULK: usize = 1000;

#[derive(Clone)]
pub struct Access {
    pub storage: Storage,
    pub sessions: SessionStore,
}

fn pin_to_proto(pin: PinRow) -> pb::Pin {
    pb::Pin {
        agent_id: pin.agent_id,
        user_id: pin.user_id,
        version: pin.version,
        create_time: Some(timestamp(pin.created_at)),
    }
}

fn state_to_proto(state: AccessState) -> pb::AgentAccessState {
    match state {
        AccessState::Draft => pb::AgentAccessState::Draft,
        AccessState::Active => pb::AgentAccessState::Active,
        AccessState::Deleted => pb::AgentAccessState::Deleted,
    }
}

fn explanation_to_proto(explanation: Explanation) -> pb::ExplainResponse {
    pb::ExplainResponse {
        allowed: explanation.allowed,
        reason: explanation.reason.into(),
        paths: explanation
            .paths
            .into_iter()
            .map(|path| pb::AccessPath {
                kind: path.kind.into(),
                workspace_id: path.workspace_id,
                grant_id: path
                    .grant
                    .as_ref()
                    .map(|(id, _)| id.clone())
                    .unwrap_or_default(),
                grant_kind: path
                    .grant
                    .as_ref()
                    .map_or(pb::GrantKind::Unspecified, |(_, kind)| {
                        super::sharing::grant_kind_to_proto(*kind)
                    })
                    .into(),
                actions: path.actions.iter().map(|a| a.to_proto().into()).collect(),
            })
            .collect(),
        denial_reasons: explanation.denials.into_iter().map(Into::into).collect(),
        facts: explanation
            .facts
            .into_iter()
            .map(|fact| pb::AccessFact {
                code: fact.code.into(),
                subject_id: fact.subject_id,
                value: fact.value,
                supports_access: fact.supports_access,
            })
            .collect(),
    }
}

/// Who a question is about, once the asker may ask it.
enum Asked {
    /// The caller themselves.
    Caller,
    /// Another member of the caller's org, acting in a workspace.
    Member { user_id: String, workspace: String },
    /// A holder of a grant, with the signed-in user presenting it if any.
    Holder { grant_id: String, user_id: String },
}

fn asked(principal: Option<&pb::PrincipalRef>, caller: &str) -> Result<Asked, Error> {
    let Some(principal) = principal else {
        return Ok(Asked::Caller);
    };
    if !principal.grant_id.is_empty() {
        let user_id = match principal.user_id.as_str() {
            "" => String::new(),
            id => ids::parse("principal.user_id", id)?,
        };
        return Ok(Asked::Holder {
            grant_id: ids::parse("principal.grant_id", &principal.grant_id)?,
            user_id,
        });
    }
    let workspace = match principal.workspace_id.as_str() {
        "" => String::new(),
        id => ids::parse("principal.workspace_id", id)?,
    };
    match principal.user_id.as_str() {
        "" => Ok(Asked::Caller),
        id if id == caller && workspace.is_empty() => Ok(Asked::Caller),
        id => Ok(Asked::Member {
            user_id: ids::parse("principal.user_id", id)?,
            workspace,
        }),
    }
}

/// Whether `caller` may ask about `agent` at all: they see it, or they are
/// an owner or admin of its org. Anything else answers NOT_FOUND, exactly
/// like an agent that never existed.
fn administers(caller: &Subject, agent: Option<&AgentRow>) -> bool {
    let Some(agent) = agent else {
        return false;
    };
    let org_admin = caller.org_role.is_some_and(OrgRole::manages_org);
    (org_admin && agent.org_id == caller.org_id)
        || decision::visible(&decision::explain(Some(agent), caller, Action::View))
}

impl Access {
    /// The subject of a Check or Explain about `agent`, or PERMISSION_DENIED
    /// when the caller may not ask about them: only the subject themselves,
    /// the agent's owner, and org owners and admins may, so access cannot be
    /// probed.
    async fn subject_for(
        &self,
        principal: &Principal,
        question: Option<&pb::PrincipalRef>,
        agent: Option<&AgentRow>,
        agent_id: &str,
    ) -> Result<Subject, Error> {
        let caller = scope::caller(&self.storage, principal).await?;
        if !administers(&caller, agent) {
            return Err(Error::not_found(format!("agent {agent_id}")));
        }
        let (user_id, workspace) = match asked(question, &caller.user_id)? {
            Asked::Caller => return Ok(caller),
            Asked::Member { user_id, workspace } => (user_id, workspace),
            Asked::Holder { grant_id, user_id } => {
                return self.holder(&caller, agent, &grant_id, user_id).await;
            }
        };
        let org_admin = caller.org_role.is_some_and(OrgRole::manages_org);
        let owns = agent.is_some_and(|a| a.owner_user_id == caller.user_id);
        if !org_admin && !owns {
            return Err(Error::PermissionDenied(
                "only the user themselves, the agent's owner, or an org owner or admin may ask about a user's access".into(),
            ));
        }
        let org = self
            .storage
            .tenancy
            .org(&caller.org_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("org {}", caller.org_id)))?;
        scope::member(&self.storage, &org, &user_id, &workspace).await
    }

    /// The holder of one of `agent`'s grants as a subject; only the agent's
    /// owner and org owners and admins may ask about one.
    async fn holder(
        &self,
        caller: &Subject,
        agent: Option<&AgentRow>,
        grant_id: &str,
        user_id: String,
    ) -> Result<Subject, Error> {
        let org_admin = caller.org_role.is_some_and(OrgRole::manages_org);
        let owns = agent.is_some_and(|a| a.owner_user_id == caller.user_id);
        if !org_admin && !owns {
            return Err(Error::PermissionDenied(
                "only the agent's owner, or an org owner or admin, may ask about a grant".into(),
            ));
        }
        let grant = self
            .storage
            .access
            .grant(grant_id)
            .await?
            .filter(|g| g.org_id == caller.org_id)
            .ok_or_else(|| Error::not_found(format!("grant {grant_id}")))?;
        Ok(Subject {
            grant: Some(crate::access::rules::decision::GrantHeld {
                id: grant.id.clone(),
                kind: grant.kind,
                agent_id: grant.agent_id.clone(),
                state: grant.state_at(self.storage.clock.now_micros()),
                with_user: !user_id.is_empty()
                    || grant.kind == crate::access::storage::grants::GrantKind::Delegate,
            }),
            user_id,
            org_role: None,
            active_workspace: None,
            memberships: Vec::new(),
            ..caller.clone()
        })
    }

    /// The agent named by a request, if the caller may do `action` with it.
    async fn agent_for(
        &self,
        principal: &Principal,
        agent_id: &str,
        action: Action,
    ) -> Result<AgentRow, Error> {
        let agent_id = ids::parse("agent_id", agent_id)?;
        let subject = scope::caller(&self.storage, principal).await?;
        let agent = self
            .storage
            .access
            .agent(&agent_id)
            .await
            .map_err(Error::from)?;
        decision::require(agent, &agent_id, &subject, action)
    }
}

#[tonic::async_trait]
impl AccessService for Access {
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let action = Action::of(request.action, None)?;
        let agent_id = ids::parse("agent_id", &request.agent_id)?;
        let agent = self
            .storage
            .access
            .agent(&agent_id)
            .await
            .map_err(Error::from)?;
        let subject = self
            .subject_for(
                principal,
                request.principal.as_ref(),
                agent.as_ref(),
                &agent_id,
            )
            .await?;
        let explanation = decision::explain(agent.as_ref(), &subject, action);
        Ok(Response::new(pb::CheckResponse {
            allowed: explanation.allowed,
            reason: explanation.reason.into(),
        }))
    }

    async fn check_bulk(
        &self,
        request: Request<pb::CheckBulkRequest>,
    ) -> Result<Response<pb::CheckBulkResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let action = Action::of(request.action, None)?;
        if request.agent_ids.is_empty() || request.agent_ids.len() > MAX_BULK {
            return Err(Error::invalid(
                "agent_ids",
                format!("must hold 1 to {MAX_BULK} agent ids"),
            )
            .into());
        }
        let ids = request
            .agent_ids
            .iter()
            .map(|id| ids::parse("agent_ids", id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        let agents = self
            .storage
            .access
            .agents(&unique)
            .await
            .map_err(Error::from)?;
        let caller = scope::caller(&self.storage, principal).await?;
        let org_admin = caller.org_role.is_some_and(OrgRole::manages_org);
        let subject = match asked(request.principal.as_ref(), &caller.user_id)? {
            Asked::Caller => caller.clone(),
            Asked::Holder { grant_id, user_id } => {
                let first = agents.first();
                self.holder(&caller, first, &grant_id, user_id).await?
            }
            Asked::Member { user_id, workspace } => {
                let owns_any = agents.iter().any(|a| a.owner_user_id == caller.user_id);
                if !org_admin && !owns_any {
                    return Err(Error::PermissionDenied(
                        "only the user themselves, the agents' owner, or an org owner or admin may ask about a user's access".into(),
                    )
                    .into());
                }
                let org = self
                    .storage
                    .tenancy
                    .org(&caller.org_id)
                    .await?
                    .ok_or_else(|| Error::not_found(format!("org {}", caller.org_id)))?;
                scope::member(&self.storage, &org, &user_id, &workspace).await?
            }
        };
        let about_someone_else = subject.user_id != caller.user_id;
        let decisions = ids
            .into_iter()
            .map(|id| {
                let agent = agents.iter().find(|a| a.agent_id == id);
                // About someone else, a plain member answers only for the
                // agents they own.
                let may_ask = administers(&caller, agent)
                    && (!about_someone_else
                        || org_admin
                        || agent.is_some_and(|a| a.owner_user_id == caller.user_id));
                let (allowed, reason) = if may_ask {
                    let explanation = decision::explain(agent, &subject, action);
                    (explanation.allowed, explanation.reason)
                } else {
                    (false, pb::DecisionReason::NotFound)
                };
                pb::Decision {
                    agent_id: id,
                    allowed,
                    reason: reason.into(),
                }
            })
            .collect();
        Ok(Response::new(pb::CheckBulkResponse { decisions }))
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let action = Action::of(request.action, Some(Action::View))?;
        let agent_id = ids::parse("agent_id", &request.agent_id)?;
        let agent = self
            .storage
            .access
            .agent(&agent_id)
            .await
            .map_err(Error::from)?;
        let subject = self
            .subject_for(
                principal,
                request.principal.as_ref(),
                agent.as_ref(),
                &agent_id,
            )
            .await?;
        let explanation = decision::explain(agent.as_ref(), &subject, action);
        Ok(Response::new(explanation_to_proto(explanation)))
    }

    async fn list_my_agents(
        &self,
        request: Request<pb::ListMyAgentsRequest>,
    ) -> Result<Response<pb::ListMyAgentsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let relation = match pb::AgentRelation::try_from(request.relation) {
            Ok(relation) => relation,
            Err(_) => {
                return Err(Error::invalid(
                    "relation",
                    "must be OWNED, SHARED_WITH_YOU, ORG_DEFAULT or UNSPECIFIED",
                )
                .into());
            }
        };
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("my-agents:{}", request.relation),
        )?;
        let subject = scope::caller(&self.storage, principal).await?;
        let standing = if subject.workspaces_enabled {
            subject.active_workspace.clone()
        } else {
            Some(subject.org_default_workspace.clone())
        };
        let wanted = usize::try_from(page.size).unwrap_or(usize::MAX);
        let mut rows = Vec::new();
        let mut after = page.after().map(str::to_string);
        // Candidates are filtered by the same decision Check makes, so a
        // batch may yield fewer rows than asked; read on until the page is
        // full or the candidates run out.
        loop {
            let batch = self
                .storage
                .access
                .my_agent_candidates(
                    &subject.org_id,
                    &subject.user_id,
                    standing.as_deref(),
                    subject.workspaces_enabled,
                    after.as_deref(),
                    page.limit(),
                )
                .await
                .map_err(Error::from)?;
            let exhausted = batch.len() < usize::try_from(page.limit()).unwrap_or(usize::MAX);
            after = batch.last().map(|row| row.agent.agent_id.clone());
            for row in batch {
                let agent = &row.agent;
                let seen = decision::explain(Some(agent), &subject, Action::View);
                if !decision::visible(&seen) {
                    continue;
                }
                let kind = if agent.owner_user_id == subject.user_id {
                    pb::AgentRelation::Owned
                } else if agent.is_default {
                    pb::AgentRelation::OrgDefault
                } else {
                    pb::AgentRelation::SharedWithYou
                };
                if relation != pb::AgentRelation::Unspecified && relation != kind {
                    continue;
                }
                let can_run = decision::explain(Some(agent), &subject, Action::Run).allowed;
                rows.push(pb::MyAgent {
                    agent_id: agent.agent_id.clone(),
                    name: agent.name.clone(),
                    description: agent.description.clone(),
                    owner_user_id: agent.owner_user_id.clone(),
                    owner_display_name: row.owner_display_name.clone(),
                    relation: kind.into(),
                    state: state_to_proto(agent.state).into(),
                    can_run,
                    // Filled in below, for the whole page at once.
                    setup_status: pb::SetupStatus::Unspecified.into(),
                    latest_version: agent.latest_version,
                    pinned_version: row.pinned_version,
                });
                if rows.len() > wanted {
                    break;
                }
            }
            if rows.len() > wanted || exhausted {
                break;
            }
        }
        let (mut agents, next_page_token) = page.split(rows, |row| row.agent_id.clone());
        let wanted: Vec<(String, i64, Runner)> = agents
            .iter()
            .map(|row| {
                let version = if row.state() == pb::AgentAccessState::Draft {
                    0
                } else {
                    row.pinned_version.unwrap_or(row.latest_version)
                };
                let runner = if row.owner_user_id == subject.user_id {
                    Runner::Owner
                } else {
                    Runner::Member
                };
                (row.agent_id.clone(), version, runner)
            })
            .collect();
        let setups = setup::setups(&self.storage, &subject.user_id, &wanted).await?;
        for (row, setups) in agents.iter_mut().zip(setups) {
            row.set_setup_status(if setup::ready(&setups) {
                pb::SetupStatus::Ready
            } else {
                pb::SetupStatus::SetupRequired
            });
        }
        Ok(Response::new(pb::ListMyAgentsResponse {
            agents,
            next_page_token,
        }))
    }

    async fn resolve_invocation(
        &self,
        request: Request<pb::ResolveInvocationRequest>,
    ) -> Result<Response<pb::ResolveInvocationResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let session = open_session(&self.sessions, principal, &request.session_id, "").await?;
        let plan = plan_for(
            &self.storage,
            principal,
            &request.agent_id,
            &request.project_id,
            request.draft,
            session,
        )
        .await?;
        Ok(Response::new(pb::ResolveInvocationResponse {
            plan: Some(plan_to_proto(&plan)),
        }))
    }

    async fn pin_version(
        &self,
        request: Request<pb::PinVersionRequest>,
    ) -> Result<Response<pb::PinVersionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let agent = self
            .agent_for(principal, &request.agent_id, Action::Run)
            .await?;
        if request.version < 1 {
            return Err(Error::invalid("version", "must be a deployed version, 1 or more").into());
        }
        if request.version > agent.latest_version {
            return Err(Error::not_found(format!(
                "version {} of agent {} (the latest is {})",
                request.version, agent.agent_id, agent.latest_version
            ))
            .into());
        }
        let pin = self
            .storage
            .access
            .pin(&agent.agent_id, user, request.version)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::PinVersionResponse {
            pin: Some(pin_to_proto(pin)),
        }))
    }

    async fn unpin_version(
        &self,
        request: Request<pb::UnpinVersionRequest>,
    ) -> Result<Response<pb::UnpinVersionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let agent = self
            .agent_for(principal, &request.get_ref().agent_id, Action::View)
            .await?;
        let removed = self
            .storage
            .access
            .unpin(&agent.agent_id, user)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::UnpinVersionResponse { removed }))
    }

    async fn get_pin(
        &self,
        request: Request<pb::GetPinRequest>,
    ) -> Result<Response<pb::GetPinResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let agent = self
            .agent_for(principal, &request.get_ref().agent_id, Action::View)
            .await?;
        let pin = self
            .storage
            .access
            .pin_of(&agent.agent_id, user)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetPinResponse {
            pin: pin.map(pin_to_proto),
        }))
    }
}

pub(super) fn plan_to_proto(plan: &Plan) -> pb::InvocationPlan {
    pb::InvocationPlan {
        agent_id: plan.agent.agent_id.clone(),
        org_id: plan.agent.org_id.clone(),
        version: plan.version,
        version_source: match plan.source {
            VersionSource::Latest => pb::VersionSource::Latest,
            VersionSource::UserPin => pb::VersionSource::UserPin,
            VersionSource::GrantPin => pb::VersionSource::GrantPin,
            VersionSource::Draft => pb::VersionSource::Draft,
        }
        .into(),
        integrations: plan
            .integrations
            .iter()
            .map(|i| pb::IntegrationPlan {
                integration_key: i.setup.integration.key.clone(),
                provider: i.setup.integration.provider.clone(),
                scope: if i.setup.integration.shared {
                    pb::IntegrationScope::Shared
                } else {
                    pb::IntegrationScope::UserConfigured
                }
                .into(),
                connection_owner: match i.owner {
                    ConnectionOwner::Owner => pb::ConnectionOwnerKind::Owner,
                    ConnectionOwner::Builder => pb::ConnectionOwnerKind::Builder,
                    ConnectionOwner::Caller => pb::ConnectionOwnerKind::Caller,
                    ConnectionOwner::Holder => pb::ConnectionOwnerKind::Holder,
                }
                .into(),
                // Only the caller's own connection is ever named.
                connection_id: i
                    .connection
                    .as_ref()
                    .filter(|c| !plan.caller_user_id.is_empty() && c.user_id == plan.caller_user_id)
                    .map(|c| c.id.clone())
                    .unwrap_or_default(),
                connection_status: i
                    .status
                    .map_or(pb::ConnectionStatus::Unspecified, |status| match status {
                        crate::connections::storage::Status::Live => pb::ConnectionStatus::Live,
                        crate::connections::storage::Status::Expired => {
                            pb::ConnectionStatus::Expired
                        }
                        crate::connections::storage::Status::Failed => pb::ConnectionStatus::Failed,
                    })
                    .into(),
            })
            .collect(),
        executes_as_user_id: plan.executes_as.clone(),
        billed_to_user_id: plan.billed_to.clone(),
        store_workspace: plan.store_workspace.clone(),
        store_scope: plan.store_scope.to_proto().into(),
        grant_id: plan
            .grant
            .as_ref()
            .map(|(id, _)| id.clone())
            .unwrap_or_default(),
        grant_kind: plan
            .grant
            .as_ref()
            .map_or(pb::GrantKind::Unspecified, |(_, kind)| {
                super::sharing::grant_kind_to_proto(*kind)
            })
            .into(),
        caller_user_id: plan.caller_user_id.clone(),
        session_workspace_id: plan.session_workspace_id.clone(),
        agent_owner_user_id: plan.agent.owner_user_id.clone(),
        agent_name: plan.agent.name.clone(),
    }
}

/// The plan of a run as the request describes it, for the caller.
/// The store's internal face, which sharing asks only to open a session a
/// run would continue.
pub type SessionStore = StoreInternalServiceClient<ServiceChannel>;

/// The caller's session `session_id`, opened by the store (which checks
/// that it is the caller's, or that the anonymous secret is right), or
/// `None` for a run that starts a new session.
pub(super) async fn open_session(
    store: &SessionStore,
    principal: &Principal,
    session_id: &str,
    secret: &str,
) -> Result<Option<SessionFacts>, Status> {
    if session_id.is_empty() {
        if !secret.is_empty() {
            return Err(Error::invalid(
                "session_secret",
                "a session secret needs the session_id it belongs to",
            )
            .into());
        }
        return Ok(None);
    }
    let session_id = ids::parse("session_id", session_id)?;
    let opened = store
        .clone()
        .open_session(store_pb::OpenSessionRequest {
            session_id: session_id.clone(),
            user_id: principal.user_id.clone().unwrap_or_default(),
            session_secret: secret.to_string(),
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => Error::not_found(format!("session {session_id}")).into(),
            _ => status,
        })?
        .into_inner()
        .session
        .ok_or_else(|| Status::internal("the store opened a session without returning it"))?;
    Ok(Some(SessionFacts {
        agent_id: opened.agent_id,
        project_id: opened.project_id,
        workspace_id: opened.workspace_id,
        archived: opened.state == store_pb::SessionState::Archived as i32,
    }))
}

pub(super) async fn plan_for(
    storage: &Storage,
    principal: &Principal,
    agent_id: &str,
    project_id: &str,
    draft: bool,
    session: Option<SessionFacts>,
) -> Result<Plan, Error> {
    let agent_id = ids::parse("agent_id", agent_id)?;
    if let Some(session) = &session
        && !project_id.is_empty()
        && project_id != session.project_id
    {
        return Err(Error::invalid(
            "project_id",
            "differs from the session's project: a session stays in the project it started in",
        ));
    }
    let subject = scope::caller(storage, principal).await?;
    let project_home = match project_id {
        "" => None,
        id => {
            let id = ids::parse("project_id", id)?;
            let viewer = crate::tenancy::storage::projects::Viewer {
                org_id: &subject.org_id,
                user_id: &subject.user_id,
                workspaces_enabled: subject.workspaces_enabled,
            };
            let project = storage
                .tenancy
                .visible_project(&viewer, &id)
                .await?
                .filter(|_| subject.grant.is_none())
                .ok_or_else(|| Error::not_found(format!("project {id}")))?;
            Some(project.home_workspace_id)
        }
    };
    let agent = storage.access.agent(&agent_id).await?;
    plan::resolve(
        storage,
        agent,
        &agent_id,
        &subject,
        &plan::Options {
            draft,
            project_home,
            session,
        },
    )
    .await
}
