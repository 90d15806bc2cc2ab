//! SharingService: sharing an agent with its workspaces, unsharing it, and
//! setting its workspace list (DESIGN.md, "Access model (sharing)", Agents
//! and sharing), the agent's share grants, and who may write its shared
//! store.

use std::collections::HashSet;

use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::{Principal, random_token, secret_digest};
use agentshare_kit::page::Page;
use agentshare_kit::server::ServiceChannel;
use agentshare_kit::{Error, ids};
use agentshare_proto::scheduler::v1::automations_internal_service_client::AutomationsInternalServiceClient;
use agentshare_proto::scheduler::v1::{
    ListEnabledSubscriptionsRequest, ListEnabledSubscriptionsResponse,
};
use agentshare_proto::sharing::v1 as pb;
use pb::sharing_service_server::SharingService;

use crate::access::rules::decision::{self, Action, Subject};
use crate::access::rules::grants::{self, GRANT_TOKEN_PREFIX, MAX_ACTIVE_GRANTS};
use crate::access::rules::sharing as rules;
use crate::access::rules::{budgets, policy, retirement, scope};
use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::access::storage::grants::{GrantKind, GrantRow, GrantState};
use crate::common::Storage;
use crate::tenancy;
use crate::tenancy::rpc::workspace_to_proto;
use crate::tenancy::rules::OrgRole;

#[derive(Clone)]
pub struct Sharing {
    pub storage: Storage,
    /// How recent a second factor must be for privileged mutations.
    pub step_up_max_age_secs: i64,
    /// The scheduler, which knows the subscriptions an unshare would stop.
    pub automations: AutomationsInternalServiceClient<ServiceChannel>,
}

/// A count in a response.
fn total(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Sharing {
    /// The agent and the caller, once the caller may `action` it.
    async fn owned(
        &self,
        principal: &Principal,
        agent_id: &str,
        action: Action,
    ) -> Result<(AgentRow, Subject), Error> {
        scope::agent_for(&self.storage, principal, agent_id, action).await
    }

    /// The workspaces of the agent's org `subject` can access (every one
    /// for org owners and admins).
    async fn accessible(
        &self,
        agent: &AgentRow,
        subject: &Subject,
    ) -> Result<Vec<crate::tenancy::storage::orgs::WorkspaceRow>, Error> {
        let org_admin = subject.org_role.is_some_and(OrgRole::manages_org);
        self.storage
            .tenancy
            .workspaces_visible_to(&agent.org_id, &subject.user_id, org_admin)
            .await
    }

    /// The agent's sharing as `subject` may see it: only the workspaces they
    /// can access, home first.
    async fn sharing_state(
        &self,
        agent: &AgentRow,
        subject: &Subject,
        shared: bool,
    ) -> Result<Option<pb::AgentSharingState>, Error> {
        let accessible = self.accessible(agent, subject).await?;
        let workspaces = agent
            .workspaces
            .iter()
            .filter_map(|id| accessible.iter().find(|w| &w.id == id))
            .map(|w| workspace_to_proto(w.clone()))
            .collect();
        Ok(Some(pb::AgentSharingState {
            agent_id: agent.agent_id.clone(),
            shared,
            home_workspace_id: agent.home_workspace_id.clone(),
            workspaces,
        }))
    }

    /// Sets or clears the agent's `shared` flag, answering its sharing.
    async fn set_shared(
        &self,
        principal: &Principal,
        agent_id: &str,
        shared: bool,
    ) -> Result<Option<pb::AgentSharingState>, Error> {
        let (agent, subject) = self.owned(principal, agent_id, Action::Share).await?;
        if shared {
            rules::require_deployed(&agent)?;
        }
        self.storage.access.set_shared(&agent, shared).await?;
        self.sharing_state(&agent, &subject, shared).await
    }

    /// The subscriptions an unshare would stop: every one but the owner's.
    /// Fails rather than answer with a gap.
    async fn stopping(&self, agent: &AgentRow) -> Result<ListEnabledSubscriptionsResponse, Error> {
        if !agent.shared {
            return Ok(ListEnabledSubscriptionsResponse::default());
        }
        let answer = self
            .automations
            .clone()
            .list_enabled_subscriptions(ListEnabledSubscriptionsRequest {
                agent_id: agent.agent_id.clone(),
                exclude_user_id: agent.owner_user_id.clone(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .map_err(|status| {
                Error::Unavailable(format!(
                    "the scheduler could not say which automations would stop ({}); retry",
                    status.message()
                ))
            })?;
        Ok(answer.into_inner())
    }

    /// The agent of a grant call, once the caller may manage its grants.
    async fn grants_agent(&self, principal: &Principal, agent_id: &str) -> Result<AgentRow, Error> {
        let (agent, _) = self
            .owned(principal, agent_id, Action::ManageGrants)
            .await?;
        Ok(agent)
    }

    /// A grant by id, or NOT_FOUND.
    /// A grant the caller manages; a grant of an agent the caller cannot
    /// see reads as no grant.
    async fn owned_grant(&self, principal: &Principal, grant_id: &str) -> Result<GrantRow, Error> {
        let grant = self.grant(grant_id).await?;
        self.grants_agent(principal, &grant.agent_id)
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => no_grant(grant_id),
                other => other,
            })?;
        Ok(grant)
    }

    async fn grant(&self, grant_id: &str) -> Result<GrantRow, Error> {
        self.storage
            .access
            .grant(grant_id)
            .await?
            .ok_or_else(|| no_grant(grant_id))
    }

    async fn surviving_grants(&self, agent_id: &str) -> Result<Vec<GrantRow>, Error> {
        let now = self.storage.clock.now_micros();
        Ok(self
            .storage
            .access
            .grants_of(agent_id, None, MAX_ACTIVE_GRANTS * 10)
            .await?
            .into_iter()
            .filter(|g| g.state_at(now) == GrantState::Active)
            .collect())
    }

    /// One page of an agent's grants; inactive ones are filtered after
    /// reading.
    async fn grants_page(
        &self,
        agent_id: &str,
        include_inactive: bool,
        page: &Page,
        now: i64,
    ) -> Result<Vec<GrantRow>, Error> {
        let access = &self.storage.access;
        let grants = |after: Option<String>| async move {
            access
                .grants_of(agent_id, after.as_deref(), page.limit())
                .await
        };
        let shown = |grant: GrantRow| {
            (include_inactive || grant.state_at(now) == GrantState::Active).then_some(grant)
        };
        super::filtered_page(page, grants, |grant| grant.id.clone(), shown).await
    }
}

/// The SharingService handlers, one per unary call.
impl Sharing {
    async fn share_agent(
        &self,
        caller: Principal,
        request: pb::ShareAgentRequest,
    ) -> agentshare_kit::Result<pb::ShareAgentResponse> {
        let sharing = self.set_shared(&caller, &request.agent_id, true).await?;
        Ok(pb::ShareAgentResponse { sharing })
    }

    async fn unshare_agent(
        &self,
        caller: Principal,
        request: pb::UnshareAgentRequest,
    ) -> agentshare_kit::Result<pb::UnshareAgentResponse> {
        let sharing = self.set_shared(&caller, &request.agent_id, false).await?;
        Ok(pb::UnshareAgentResponse { sharing })
    }

    async fn preview_unshare_agent(
        &self,
        caller: Principal,
        request: pb::PreviewUnshareAgentRequest,
    ) -> agentshare_kit::Result<pb::PreviewUnshareAgentResponse> {
        let (agent, subject) = self
            .owned(&caller, &request.agent_id, Action::Share)
            .await?;
        let losing = if agent.shared && agent.state == AccessState::Active {
            self.storage
                .access
                .users_reaching(
                    &agent,
                    subject.workspaces_enabled,
                    &subject.org_default_workspace,
                )
                .await?
        } else {
            Vec::new()
        };
        let surviving = self.surviving_grants(&agent.agent_id).await?;
        let stopping = self.stopping(&agent).await?;
        let now = self.storage.clock.now_micros();
        Ok(pb::PreviewUnshareAgentResponse {
            automations_disabled_total: stopping.total,
            automations_disabled: stopping
                .subscriptions
                .into_iter()
                .map(|s| pb::AutomationImpact {
                    user_id: s.user_id,
                    automation_key: s.automation_key,
                    subscription_id: s.subscription_id,
                })
                .collect(),
            surviving_grants_total: total(surviving.len()),
            surviving_grants: surviving.iter().map(|g| grant_to_proto(g, now)).collect(),
            shared: agent.shared,
            users_losing_access_total: total(losing.len()),
            users_losing_access: losing
                .into_iter()
                .map(|user| pb::UserImpact {
                    user_id: user.user_id,
                    email: user.email,
                    display_name: user.display_name,
                    workspace_ids: user.workspace_ids,
                })
                .collect(),
        })
    }

    async fn get_agent_workspaces(
        &self,
        caller: Principal,
        request: pb::GetAgentWorkspacesRequest,
    ) -> agentshare_kit::Result<pb::GetAgentWorkspacesResponse> {
        let (agent, subject) = self.owned(&caller, &request.agent_id, Action::View).await?;
        let sharing = self.sharing_state(&agent, &subject, agent.shared).await?;
        Ok(pb::GetAgentWorkspacesResponse { sharing })
    }

    async fn set_agent_workspaces(
        &self,
        caller: Principal,
        request: pb::SetAgentWorkspacesRequest,
    ) -> agentshare_kit::Result<pb::SetAgentWorkspacesResponse> {
        let (agent, subject) = self
            .owned(&caller, &request.agent_id, Action::Share)
            .await?;
        rules::require_unmanaged(&agent)?;
        tenancy::rules::require_step_up(
            &caller,
            self.storage.clock.now_secs(),
            self.step_up_max_age_secs,
        )?;
        let requested = rules::requested_workspaces(&request.workspace_ids)?;
        let accessible: HashSet<String> = self
            .accessible(&agent, &subject)
            .await?
            .into_iter()
            .map(|w| w.id)
            .collect();
        for id in &requested {
            if !accessible.contains(id)
                && !self
                    .storage
                    .tenancy
                    .workspace_exists(&agent.org_id, id)
                    .await?
            {
                return Err(Error::not_found(format!("workspace {id}")));
            }
        }
        let after = rules::workspace_list(&agent, requested, &accessible, &subject)?;
        let (added, removed) = self
            .storage
            .access
            .set_agent_workspaces(&caller, &agent, &after)
            .await?;
        let agent = AgentRow {
            workspaces: after,
            ..agent
        };
        Ok(pb::SetAgentWorkspacesResponse {
            sharing: self.sharing_state(&agent, &subject, agent.shared).await?,
            added_workspace_ids: added,
            removed_workspace_ids: removed,
        })
    }

    async fn create_grant(
        &self,
        caller: Principal,
        request: pb::CreateGrantRequest,
    ) -> agentshare_kit::Result<pb::CreateGrantResponse> {
        let user = caller.require_user()?;
        let agent = self.grants_agent(&caller, &request.agent_id).await?;
        let now = self.storage.clock.now_micros();
        let asked = grants::new_grant(&agent, &request, now)?;
        if let Some(pinned) = asked.pinned_version {
            let retirements = self.storage.access.retirements_of(&agent.agent_id).await?;
            retirement::require_pinnable("pinned_version", pinned, &retirements, now)?;
        }
        let limits = budgets::for_new_grant(asked.kind, request.limits.as_ref())?;
        let org = scope::org(&self.storage, &agent.org_id).await?;
        policy::may_create_grant(&org.policy, asked.kind)?;
        let active = self
            .storage
            .access
            .active_grant_count(&agent.agent_id)
            .await?;
        grants::require_room(&agent.agent_id, active)?;
        let token = format!("{GRANT_TOKEN_PREFIX}{}", random_token()?);
        let mut grant = GrantRow {
            id: agentshare_kit::db::new_id(),
            agent_id: agent.agent_id.clone(),
            org_id: agent.org_id.clone(),
            kind: asked.kind,
            label: asked.label,
            token_prefix: grants::token_prefix(&token),
            pinned_version: asked.pinned_version,
            creator_user_id: user.to_string(),
            created_at: now,
            expires_at: asked.expires_at,
            last_used_at: None,
            revoked_at: None,
            ended_at: None,
            runs_per_minute: None,
            runs_per_day: None,
            concurrent_runs: None,
            session_runs_per_minute: None,
            runs_total: 0,
            refusals_total: 0,
            last_refusal_at: None,
        };
        grant.set_limits(limits);
        self.storage
            .access
            .insert_grant(&grant, &secret_digest(&token))
            .await?;
        Ok(pb::CreateGrantResponse {
            grant: Some(grant_to_proto(&grant, now)),
            token,
        })
    }

    async fn list_grants(
        &self,
        caller: Principal,
        request: pb::ListGrantsRequest,
    ) -> agentshare_kit::Result<pb::ListGrantsResponse> {
        let agent = self.grants_agent(&caller, &request.agent_id).await?;
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("grants:{}:{}", agent.agent_id, request.include_inactive),
        )?;
        let now = self.storage.clock.now_micros();
        let rows = self
            .grants_page(&agent.agent_id, request.include_inactive, &page, now)
            .await?;
        let (rows, next_page_token) = page.split(rows, |g| g.id.clone());
        Ok(pb::ListGrantsResponse {
            grants: rows.iter().map(|g| grant_to_proto(g, now)).collect(),
            next_page_token,
        })
    }

    async fn update_grant(
        &self,
        caller: Principal,
        request: pb::UpdateGrantRequest,
    ) -> agentshare_kit::Result<pb::UpdateGrantResponse> {
        let grant_id = ids::parse("grant_id", &request.grant_id)?;
        let asked = request
            .limits
            .ok_or_else(|| Error::invalid("limits", "must be set: name the limits to change"))?;
        let grant = self.owned_grant(&caller, &grant_id).await?;
        let now = self.storage.clock.now_micros();
        if matches!(grant.state_at(now), GrantState::Revoked | GrantState::Ended) {
            return Err(Error::FailedPrecondition(format!(
                "grant {grant_id} is revoked or ended; create a new one"
            )));
        }
        let limits = budgets::apply(grant.limits(), &asked)?;
        self.storage
            .access
            .update_grant_limits(&grant, limits)
            .await?;
        let grant = self.grant(&grant_id).await?;
        Ok(pb::UpdateGrantResponse {
            grant: Some(grant_to_proto(&grant, now)),
        })
    }

    async fn revoke_grant(
        &self,
        caller: Principal,
        request: pb::RevokeGrantRequest,
    ) -> agentshare_kit::Result<pb::RevokeGrantResponse> {
        let grant_id = ids::parse("grant_id", &request.grant_id)?;
        let grant = self.owned_grant(&caller, &grant_id).await?;
        self.storage.access.revoke_grant(&grant).await?;
        let grant = self.grant(&grant_id).await?;
        Ok(pb::RevokeGrantResponse {
            grant: Some(grant_to_proto(&grant, self.storage.clock.now_micros())),
        })
    }

    async fn get_agent_reach(
        &self,
        caller: Principal,
        request: pb::GetAgentReachRequest,
    ) -> agentshare_kit::Result<pb::GetAgentReachResponse> {
        let (subject, agent) = reach_and_subject(&self.storage, &caller, &request.agent_id).await?;
        let grants = self.surviving_grants(&agent.agent_id).await?;
        let pins = self.storage.access.pins_of(&agent.agent_id).await?;
        let retirements = self.storage.access.retirements_of(&agent.agent_id).await?;
        let now = self.storage.clock.now_micros();
        Ok(pb::GetAgentReachResponse {
            sharing: self.sharing_state(&agent, &subject, agent.shared).await?,
            is_default: agent.is_default,
            grants_total: total(grants.len()),
            grants: grants.iter().map(|g| grant_to_proto(g, now)).collect(),
            pins_total: total(pins.len()),
            pins: pins
                .into_iter()
                .map(|pin| {
                    super::access::pin_to_proto(pin, &retirements, agent.latest_version, now)
                })
                .collect(),
            store_write_policy: Some(agent.store_policy.to_proto()),
        })
    }

    async fn set_store_write_policy(
        &self,
        caller: Principal,
        request: pb::SetStoreWritePolicyRequest,
    ) -> agentshare_kit::Result<pb::SetStoreWritePolicyResponse> {
        // EDIT: the owner, and org owners and admins for the default agent.
        let (agent, _) = self.owned(&caller, &request.agent_id, Action::Edit).await?;
        let after = agent.store_policy.updated(&request)?;
        self.storage
            .access
            .set_store_policy(&caller, &agent, after)
            .await?;
        Ok(pb::SetStoreWritePolicyResponse {
            policy: Some(after.to_proto()),
        })
    }
}

#[tonic::async_trait]
impl SharingService for Sharing {
    agentshare_kit::handlers! {
        share_agent(pb::ShareAgentRequest) -> pb::ShareAgentResponse;
        unshare_agent(pb::UnshareAgentRequest) -> pb::UnshareAgentResponse;
        preview_unshare_agent(pb::PreviewUnshareAgentRequest) -> pb::PreviewUnshareAgentResponse;
        get_agent_workspaces(pb::GetAgentWorkspacesRequest) -> pb::GetAgentWorkspacesResponse;
        set_agent_workspaces(pb::SetAgentWorkspacesRequest) -> pb::SetAgentWorkspacesResponse;
        create_grant(pb::CreateGrantRequest) -> pb::CreateGrantResponse;
        list_grants(pb::ListGrantsRequest) -> pb::ListGrantsResponse;
        update_grant(pb::UpdateGrantRequest) -> pb::UpdateGrantResponse;
        revoke_grant(pb::RevokeGrantRequest) -> pb::RevokeGrantResponse;
        get_agent_reach(pb::GetAgentReachRequest) -> pb::GetAgentReachResponse;
        set_store_write_policy(pb::SetStoreWritePolicyRequest) -> pb::SetStoreWritePolicyResponse;
    }
}

/// The agent whose reach (its grants and pins) the caller reads, and the
/// caller: its owner, or an org owner or admin.
async fn reach_and_subject(
    storage: &Storage,
    caller: &Principal,
    agent_id: &str,
) -> Result<(Subject, AgentRow), Error> {
    let (subject, agent_id, agent) = scope::caller_and_agent(storage, caller, agent_id).await?;
    let agent = match agent {
        Some(agent) if rules::reads_reach_as_admin(&agent, &subject) => agent,
        other => decision::require(other, &agent_id, &subject, Action::ManageGrants)?,
    };
    Ok((subject, agent))
}

/// The agent whose reach the caller reads, as for GetAgentReach.
pub(super) async fn reach_of(
    storage: &Storage,
    caller: &Principal,
    agent_id: &str,
) -> Result<AgentRow, Error> {
    Ok(reach_and_subject(storage, caller, agent_id).await?.1)
}

/// A grant that does not exist, or that the caller may not see.
fn no_grant(grant_id: &str) -> Error {
    Error::not_found(format!("grant {grant_id}"))
}

pub fn grant_to_proto(grant: &GrantRow, now: i64) -> pb::Grant {
    pb::Grant {
        id: grant.id.clone(),
        agent_id: grant.agent_id.clone(),
        org_id: grant.org_id.clone(),
        kind: grant_kind_to_proto(grant.kind).into(),
        label: grant.label.clone(),
        token_prefix: grant.token_prefix.clone(),
        pinned_version: grant.pinned_version,
        state: grant_state_to_proto(grant.state_at(now)).into(),
        creator_user_id: grant.creator_user_id.clone(),
        create_time: Some(timestamp(grant.created_at)),
        expire_time: grant.expires_at.map(timestamp),
        last_use_time: grant.last_used_at.map(timestamp),
        revoke_time: grant.revoked_at.or(grant.ended_at).map(timestamp),
        limits: Some(budgets::to_proto(grant.limits())),
        usage: Some(pb::GrantUsage {
            runs: grant.runs_total,
            refusals: grant.refusals_total,
            last_refusal_time: grant.last_refusal_at.map(timestamp),
        }),
    }
}

pub fn grant_kind_to_proto(kind: GrantKind) -> pb::GrantKind {
    match kind {
        GrantKind::Invoke => pb::GrantKind::Invoke,
        GrantKind::Delegate => pb::GrantKind::Delegate,
    }
}

pub fn grant_state_to_proto(state: GrantState) -> pb::GrantState {
    match state {
        GrantState::Active => pb::GrantState::Active,
        GrantState::Expired => pb::GrantState::Expired,
        GrantState::Revoked => pb::GrantState::Revoked,
        GrantState::Ended => pb::GrantState::Ended,
    }
}
