//! AccessService: checks and their explanation, My Agents, version pins.

use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;
use agentshare_kit::server::ServiceChannel;
use agentshare_kit::{Error, ids};
use agentshare_proto::sharing::v1 as pb;
use agentshare_proto::store::v1 as store_pb;
use pb::access_service_server::AccessService;
use store_pb::store_internal_service_client::StoreInternalServiceClient;

use crate::access::rules::decision::{self, Action, Explanation, Subject};
use crate::access::rules::plan::{self, ConnectionOwner, Plan, SessionFacts, VersionSource};
use crate::access::rules::retirement::{self, Retirement};
use crate::access::rules::{policy, scope};
use crate::access::storage::agent_access::{AccessState, AgentRow, Listed};
use crate::access::storage::grants::GrantKind;
use crate::access::storage::grants::{GrantRow, GrantState};
use crate::access::storage::pins::PinRow;
use crate::access::storage::retirements::PinnedUserRow;
use crate::common::Storage;
use crate::connections::setup::{self, Runner};

/// The most agents one CheckBulk answers.
pub const MAX_BULK: usize = 1000;

#[derive(Clone)]
pub struct Access {
    pub storage: Storage,
    pub sessions: SessionStore,
}

/// A pin with where its version stands at `now`, among the agent's
/// `retirements`.
pub(super) fn pin_to_proto(
    pin: PinRow,
    retirements: &[Retirement],
    latest_version: i64,
    now: i64,
) -> pb::Pin {
    let standing = retirement::standing(pin.version, retirements, now);
    let pinned = pinned_fields(standing);
    pb::Pin {
        summary: retirement::summary(pin.version, standing, latest_version),
        agent_id: pin.agent_id,
        user_id: pin.user_id,
        version: pin.version,
        create_time: Some(timestamp(pin.created_at)),
        sunset_time: pinned.sunset_time,
        deprecation_note: pinned.note,
        retired: pinned.retired,
    }
}

/// A pinned version's deprecation as the proto fields show it.
#[derive(Default)]
struct PinnedFields {
    sunset_time: Option<prost_types::Timestamp>,
    note: String,
    retired: bool,
}

fn pinned_fields(standing: retirement::Standing<'_>) -> PinnedFields {
    match standing {
        retirement::Standing::Kept => PinnedFields::default(),
        retirement::Standing::Retiring(r) | retirement::Standing::Retired(r) => PinnedFields {
            sunset_time: Some(timestamp(r.sunset_at)),
            note: r.note.clone(),
            retired: matches!(standing, retirement::Standing::Retired(_)),
        },
    }
}

/// Who pins each version of an agent, oldest version first, with each
/// version's deprecation at `now`. Only active grants count: an ended one
/// runs nothing.
pub(super) fn version_pins(
    users: Vec<PinnedUserRow>,
    grants: &[GrantRow],
    retirements: &[Retirement],
    now: i64,
) -> Vec<pb::VersionPins> {
    let mut versions: Vec<i64> = users
        .iter()
        .map(|u| u.version)
        .chain(grants.iter().filter_map(|g| g.pinned_version))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let mut users = users.into_iter().peekable();
    versions
        .into_iter()
        .map(|version| {
            let pinned = pinned_fields(retirement::standing(version, retirements, now));
            let mut pins = pb::VersionPins {
                version,
                sunset_time: pinned.sunset_time,
                deprecation_note: pinned.note,
                retired: pinned.retired,
                users: Vec::new(),
                grants: grants
                    .iter()
                    .filter(|g| g.pinned_version == Some(version))
                    .map(|g| pb::PinnedGrant {
                        grant_id: g.id.clone(),
                        label: g.label.clone(),
                        kind: super::sharing::grant_kind_to_proto(g.kind).into(),
                        creator_user_id: g.creator_user_id.clone(),
                    })
                    .collect(),
            };
            while let Some(user) = users.next_if(|u| u.version == version) {
                pins.users.push(pb::PinnedUser {
                    user_id: user.user_id,
                    email: user.email,
                    display_name: user.display_name,
                    pin_time: Some(timestamp(user.created_at)),
                });
            }
            pins
        })
        .collect()
}

fn state_to_proto(state: AccessState) -> pb::AgentAccessState {
    match state {
        AccessState::Draft => pb::AgentAccessState::Draft,
        AccessState::Active => pb::AgentAccessState::Active,
        AccessState::Deleted => pb::AgentAccessState::Deleted,
    }
}

/// A grant a path or a plan goes through, as its id and kind fields.
fn grant_fields(grant: Option<&(String, GrantKind)>) -> (String, i32) {
    match grant {
        Some((id, kind)) => (
            id.clone(),
            super::sharing::grant_kind_to_proto(*kind).into(),
        ),
        None => (String::new(), pb::GrantKind::Unspecified.into()),
    }
}

fn explanation_to_proto(explanation: Explanation) -> pb::ExplainResponse {
    pb::ExplainResponse {
        allowed: explanation.allowed,
        reason: explanation.reason.into(),
        paths: explanation
            .paths
            .into_iter()
            .map(|path| {
                let (grant_id, grant_kind) = grant_fields(path.grant.as_ref());
                pb::AccessPath {
                    kind: path.kind.into(),
                    workspace_id: path.workspace_id,
                    grant_id,
                    grant_kind,
                    actions: path.actions.iter().map(|a| a.to_proto().into()).collect(),
                }
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

/// An id of a `principal` field that may be empty.
fn optional_id(field: &str, id: &str) -> Result<String, Error> {
    match id {
        "" => Ok(String::new()),
        id => ids::parse(field, id),
    }
}

fn asked(principal: Option<&pb::PrincipalRef>, caller: &str) -> Result<Asked, Error> {
    let Some(principal) = principal else {
        return Ok(Asked::Caller);
    };
    if !principal.grant_id.is_empty() {
        return Ok(Asked::Holder {
            user_id: optional_id("principal.user_id", &principal.user_id)?,
            grant_id: ids::parse("principal.grant_id", &principal.grant_id)?,
        });
    }
    let workspace = optional_id("principal.workspace_id", &principal.workspace_id)?;
    match principal.user_id.as_str() {
        "" => Ok(Asked::Caller),
        id if id == caller && workspace.is_empty() => Ok(Asked::Caller),
        id => Ok(Asked::Member {
            user_id: ids::parse("principal.user_id", id)?,
            workspace,
        }),
    }
}

impl Access {
    /// The agent a request names, by its parsed id, if sharing knows it.
    async fn named(&self, agent_id: &str) -> Result<(String, Option<AgentRow>), Error> {
        let agent_id = ids::parse("agent_id", agent_id)?;
        let agent = self.storage.access.agent(&agent_id).await?;
        Ok((agent_id, agent))
    }

    /// The explanation of `action` on the agent a Check or Explain names,
    /// for the subject it asks about.
    async fn explained(
        &self,
        principal: &Principal,
        agent_id: &str,
        question: Option<&pb::PrincipalRef>,
        action: Action,
    ) -> Result<Explanation, Error> {
        let (agent_id, agent) = self.named(agent_id).await?;
        let subject = self
            .subject_for(principal, question, agent.as_ref(), &agent_id)
            .await?;
        Ok(decision::explain(agent.as_ref(), &subject, action))
    }

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
        if !decision::may_ask(&caller, agent) {
            return Err(Error::not_found(format!("agent {agent_id}")));
        }
        match asked(question, &caller.user_id)? {
            Asked::Caller => Ok(caller),
            Asked::Member { user_id, workspace } => {
                if !decision::may_ask_about_others(&caller, agent) {
                    return Err(Error::PermissionDenied(
                        "only the user themselves, the agent's owner, or an org owner or admin may ask about a user's access".into(),
                    ));
                }
                self.member(&caller, &user_id, &workspace).await
            }
            Asked::Holder { grant_id, user_id } => {
                self.holder(&caller, agent, &grant_id, user_id).await
            }
        }
    }

    /// Another member of the caller's org as a subject.
    async fn member(
        &self,
        caller: &Subject,
        user_id: &str,
        workspace: &str,
    ) -> Result<Subject, Error> {
        let org = scope::org(&self.storage, &caller.org_id).await?;
        scope::member(&self.storage, &org, user_id, workspace).await
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
        if !decision::may_ask_about_others(caller, agent) {
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
        let now = self.storage.clock.now_micros();
        Ok(decision::holder_of(caller, &grant, now, user_id))
    }

    /// The signed-in caller and the agent a pin call names, once they may
    /// do `action` with it.
    async fn pinned<'a>(
        &self,
        caller: &'a Principal,
        agent_id: &str,
        action: Action,
    ) -> Result<(&'a str, AgentRow), Error> {
        let user = caller.require_user()?;
        let (agent, _) = scope::agent_for(&self.storage, caller, agent_id, action).await?;
        Ok((user, agent))
    }

    /// One page of My Agents before setup status: the candidates storage
    /// reads, filtered by the same decision Check makes.
    async fn my_agents(
        &self,
        subject: &Subject,
        relation: pb::AgentRelation,
        page: &Page,
    ) -> Result<Vec<pb::MyAgent>, Error> {
        let standing = subject.standing();
        let (access, standing) = (&self.storage.access, standing.as_deref());
        let candidates = |after: Option<String>| async move {
            access
                .my_agent_candidates(
                    &subject.org_id,
                    &subject.user_id,
                    standing,
                    subject.workspaces_enabled,
                    after.as_deref(),
                    page.limit(),
                )
                .await
        };
        let now = self.storage.clock.now_micros();
        let listed = |row: Listed| {
            let agent = &row.agent;
            let kind = decision::relation(agent, subject)?;
            if relation != pb::AgentRelation::Unspecified && relation != kind {
                return None;
            }
            let pin = pin_of_listed(&row, now);
            Some(pb::MyAgent {
                agent_id: agent.agent_id.clone(),
                name: agent.name.clone(),
                description: agent.description.clone(),
                owner_user_id: agent.owner_user_id.clone(),
                owner_display_name: row.owner_display_name,
                relation: kind.into(),
                state: state_to_proto(agent.state).into(),
                can_run: decision::explain(Some(agent), subject, Action::Run).allowed,
                // Filled in for the whole page at once.
                setup_status: pb::SetupStatus::Unspecified.into(),
                latest_version: agent.latest_version,
                pinned_version: row.pinned_version,
                ..pin
            })
        };
        super::filtered_page(page, candidates, |row| row.agent.agent_id.clone(), listed).await
    }
}

/// The pin fields of a My Agents row at `now`.
fn pin_of_listed(row: &Listed, now: i64) -> pb::MyAgent {
    let Some(version) = row.pinned_version else {
        return pb::MyAgent::default();
    };
    let retirements: Vec<Retirement> = row.pin_retirement.iter().cloned().collect();
    let standing = retirement::standing(version, &retirements, now);
    let pinned = pinned_fields(standing);
    pb::MyAgent {
        pin_summary: retirement::summary(version, standing, row.agent.latest_version),
        pinned_version_sunset_time: pinned.sunset_time,
        pinned_version_deprecation_note: pinned.note,
        pinned_version_retired: pinned.retired,
        ..Default::default()
    }
}

/// The AccessService handlers, one per unary call.
impl Access {
    async fn check(
        &self,
        caller: Principal,
        request: pb::CheckRequest,
    ) -> agentshare_kit::Result<pb::CheckResponse> {
        let Explanation {
            allowed, reason, ..
        } = self
            .explained(
                &caller,
                &request.agent_id,
                request.principal.as_ref(),
                Action::of(request.action, None)?,
            )
            .await?;
        Ok(pb::CheckResponse {
            allowed,
            reason: reason.into(),
        })
    }

    async fn check_bulk(
        &self,
        principal: Principal,
        request: pb::CheckBulkRequest,
    ) -> agentshare_kit::Result<pb::CheckBulkResponse> {
        let action = Action::of(request.action, None)?;
        if request.agent_ids.is_empty() || request.agent_ids.len() > MAX_BULK {
            return Err(Error::invalid(
                "agent_ids",
                format!("must hold 1 to {MAX_BULK} agent ids"),
            ));
        }
        let ids = request
            .agent_ids
            .iter()
            .map(|id| ids::parse("agent_ids", id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        let agents = self.storage.access.agents(&unique).await?;
        let caller = scope::caller(&self.storage, &principal).await?;
        let subject = match asked(request.principal.as_ref(), &caller.user_id)? {
            Asked::Caller => caller.clone(),
            Asked::Holder { grant_id, user_id } => {
                self.holder(&caller, agents.first(), &grant_id, user_id)
                    .await?
            }
            Asked::Member { user_id, workspace } => {
                let may = decision::may_ask_about_others(&caller, None)
                    || agents
                        .iter()
                        .any(|a| decision::may_ask_about_others(&caller, Some(a)));
                if !may {
                    return Err(Error::PermissionDenied(
                        "only the user themselves, the agents' owner, or an org owner or admin may ask about a user's access".into(),
                    ));
                }
                self.member(&caller, &user_id, &workspace).await?
            }
        };
        let about_someone_else = subject.user_id != caller.user_id;
        let decisions = ids
            .into_iter()
            .map(|id| {
                let agent = agents.iter().find(|a| a.agent_id == id);
                // About someone else, a plain member answers only for
                // the agents they own.
                let may_ask = decision::may_ask(&caller, agent)
                    && (!about_someone_else || decision::may_ask_about_others(&caller, agent));
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
        Ok(pb::CheckBulkResponse { decisions })
    }

    async fn explain(
        &self,
        caller: Principal,
        request: pb::ExplainRequest,
    ) -> agentshare_kit::Result<pb::ExplainResponse> {
        let explanation = self
            .explained(
                &caller,
                &request.agent_id,
                request.principal.as_ref(),
                Action::of(request.action, Some(Action::View))?,
            )
            .await?;
        Ok(explanation_to_proto(explanation))
    }

    async fn list_my_agents(
        &self,
        caller: Principal,
        request: pb::ListMyAgentsRequest,
    ) -> agentshare_kit::Result<pb::ListMyAgentsResponse> {
        let relation = pb::AgentRelation::try_from(request.relation).map_err(|_| {
            Error::invalid(
                "relation",
                "must be OWNED, SHARED_WITH_YOU, ORG_DEFAULT or UNSPECIFIED",
            )
        })?;
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("my-agents:{}", request.relation),
        )?;
        let subject = scope::caller(&self.storage, &caller).await?;
        let rows = self.my_agents(&subject, relation, &page).await?;
        let (mut agents, next_page_token) = page.split(rows, |row| row.agent_id.clone());
        let wanted: Vec<(String, i64, Runner)> = agents
            .iter()
            .map(|row| {
                let runner = if row.owner_user_id == subject.user_id {
                    Runner::Owner
                } else {
                    Runner::Member
                };
                let draft = row.state() == pb::AgentAccessState::Draft;
                let pinned = row.pinned_version.filter(|_| !row.pinned_version_retired);
                let version = plan::listed_version(draft, pinned, row.latest_version);
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
        Ok(pb::ListMyAgentsResponse {
            agents,
            next_page_token,
        })
    }

    async fn resolve_invocation(
        &self,
        caller: Principal,
        request: pb::ResolveInvocationRequest,
    ) -> agentshare_kit::Result<pb::ResolveInvocationResponse> {
        let run = Run {
            agent_id: &request.agent_id,
            project_id: &request.project_id,
            draft: request.draft,
            session_id: &request.session_id,
            session_secret: "",
        };
        let plan = run_plan(&self.storage, &self.sessions, &caller, run).await?;
        Ok(pb::ResolveInvocationResponse {
            plan: Some(plan_to_proto(&plan)),
        })
    }

    async fn pin_version(
        &self,
        caller: Principal,
        request: pb::PinVersionRequest,
    ) -> agentshare_kit::Result<pb::PinVersionResponse> {
        let (user, agent) = self.pinned(&caller, &request.agent_id, Action::Run).await?;
        plan::check_pin(&agent, request.version)?;
        let retirements = self.storage.access.retirements_of(&agent.agent_id).await?;
        let now = self.storage.clock.now_micros();
        retirement::require_pinnable("version", request.version, &retirements, now)?;
        let pin = self
            .storage
            .access
            .pin(&agent.agent_id, user, request.version)
            .await?;
        Ok(pb::PinVersionResponse {
            pin: Some(pin_to_proto(pin, &retirements, agent.latest_version, now)),
        })
    }

    async fn unpin_version(
        &self,
        caller: Principal,
        request: pb::UnpinVersionRequest,
    ) -> agentshare_kit::Result<pb::UnpinVersionResponse> {
        let (user, agent) = self
            .pinned(&caller, &request.agent_id, Action::View)
            .await?;
        let removed = self.storage.access.unpin(&agent.agent_id, user).await?;
        Ok(pb::UnpinVersionResponse { removed })
    }

    async fn get_pin(
        &self,
        caller: Principal,
        request: pb::GetPinRequest,
    ) -> agentshare_kit::Result<pb::GetPinResponse> {
        let (user, agent) = self
            .pinned(&caller, &request.agent_id, Action::View)
            .await?;
        let Some(pin) = self.storage.access.pin_of(&agent.agent_id, user).await? else {
            return Ok(pb::GetPinResponse { pin: None });
        };
        let retirements = self.storage.access.retirements_of(&agent.agent_id).await?;
        let now = self.storage.clock.now_micros();
        Ok(pb::GetPinResponse {
            pin: Some(pin_to_proto(pin, &retirements, agent.latest_version, now)),
        })
    }

    async fn list_version_pins(
        &self,
        caller: Principal,
        request: pb::ListVersionPinsRequest,
    ) -> agentshare_kit::Result<pb::ListVersionPinsResponse> {
        if request.version < 0 {
            return Err(Error::invalid(
                "version",
                "must be a version number, or 0 for every version",
            ));
        }
        let agent = super::sharing::reach_of(&self.storage, &caller, &request.agent_id).await?;
        let storage = &self.storage.access;
        let users = storage
            .pinned_users(&agent.agent_id, request.version)
            .await?;
        let now = self.storage.clock.now_micros();
        let grants = pinned_grants(&self.storage, &agent.agent_id, request.version, now).await?;
        let retirements = storage.retirements_of(&agent.agent_id).await?;
        Ok(pb::ListVersionPinsResponse {
            versions: version_pins(users, &grants, &retirements, now),
        })
    }
}

#[tonic::async_trait]
impl AccessService for Access {
    agentshare_kit::handlers! {
        check(pb::CheckRequest) -> pb::CheckResponse;
        check_bulk(pb::CheckBulkRequest) -> pb::CheckBulkResponse;
        explain(pb::ExplainRequest) -> pb::ExplainResponse;
        list_my_agents(pb::ListMyAgentsRequest) -> pb::ListMyAgentsResponse;
        resolve_invocation(pb::ResolveInvocationRequest) -> pb::ResolveInvocationResponse;
        pin_version(pb::PinVersionRequest) -> pb::PinVersionResponse;
        unpin_version(pb::UnpinVersionRequest) -> pb::UnpinVersionResponse;
        get_pin(pb::GetPinRequest) -> pb::GetPinResponse;
        list_version_pins(pb::ListVersionPinsRequest) -> pb::ListVersionPinsResponse;
    }
}

pub(super) fn plan_to_proto(plan: &Plan) -> pb::InvocationPlan {
    let (grant_id, grant_kind) = grant_fields(plan.grant.as_ref());
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
        grant_id,
        grant_kind,
        caller_user_id: plan.caller_user_id.clone(),
        session_workspace_id: plan.session_workspace_id.clone(),
        agent_owner_user_id: plan.agent.owner_user_id.clone(),
        agent_name: plan.agent.name.clone(),
    }
}

/// The store's internal face, which sharing asks only to open a session a
/// run would continue.
pub type SessionStore = StoreInternalServiceClient<ServiceChannel>;

/// A run as a request describes it.
pub(super) struct Run<'a> {
    pub agent_id: &'a str,
    pub project_id: &'a str,
    pub draft: bool,
    /// Empty for a run that starts a new session.
    pub session_id: &'a str,
    /// An anonymous visitor's proof that the session is theirs.
    pub session_secret: &'a str,
}

impl<'a> Run<'a> {
    /// A run of the agent alone: in no project, continuing no session.
    pub fn of_agent(agent_id: &'a str, draft: bool) -> Self {
        Self {
            agent_id,
            project_id: "",
            draft,
            session_id: "",
            session_secret: "",
        }
    }
}

/// The plan of `run` for the caller, continuing its session if it names
/// one.
pub(super) async fn run_plan(
    storage: &Storage,
    sessions: &SessionStore,
    principal: &Principal,
    run: Run<'_>,
) -> Result<Plan, Error> {
    let session = open_session(sessions, principal, run.session_id, run.session_secret).await?;
    plan_for(
        storage,
        principal,
        run.agent_id,
        run.project_id,
        run.draft,
        session,
    )
    .await
}

/// The caller's session `session_id`, opened by the store (which checks
/// that it is the caller's, or that the anonymous secret is right), or
/// `None` for a run that starts a new session.
async fn open_session(
    store: &SessionStore,
    principal: &Principal,
    session_id: &str,
    secret: &str,
) -> Result<Option<SessionFacts>, Error> {
    if session_id.is_empty() {
        if !secret.is_empty() {
            return Err(Error::invalid(
                "session_secret",
                "a session secret needs the session_id it belongs to",
            ));
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
        .map_err(|status| match Error::from(status) {
            Error::NotFound(_) => Error::not_found(format!("session {session_id}")),
            other => other,
        })?
        .into_inner()
        .session
        .ok_or_else(|| Error::internal("the store opened a session without returning it"))?;
    Ok(Some(SessionFacts {
        agent_id: opened.agent_id,
        project_id: opened.project_id,
        workspace_id: opened.workspace_id,
        archived: opened.state == store_pb::SessionState::Archived as i32,
    }))
}

async fn plan_for(
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
    let mut plan = plan::resolve(
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
    .await?;
    // Read with the plan, for this very run: a policy turned on shows now.
    plan.org_policy = scope::org(storage, &plan.agent.org_id).await?.policy;
    let owner_runs = plan::runner_of(&plan.agent, &subject) == Runner::Owner;
    policy::may_run(&plan.org_policy, &plan, owner_runs)?;
    Ok(plan)
}

/// The agent's active grants pinned to `version` (to any version when 0).
pub(super) async fn pinned_grants(
    storage: &Storage,
    agent_id: &str,
    version: i64,
    now: i64,
) -> Result<Vec<GrantRow>, Error> {
    Ok(storage
        .access
        .grants_of(
            agent_id,
            None,
            crate::access::rules::grants::MAX_ACTIVE_GRANTS * 10,
        )
        .await?
        .into_iter()
        .filter(|g| g.state_at(now) == GrantState::Active)
        .filter(|g| {
            g.pinned_version
                .is_some_and(|pinned| version == 0 || pinned == version)
        })
        .collect())
}
