//! SharingService: sharing an agent with its workspaces, unsharing it, and
//! setting its workspace list (DESIGN.md, "Access model (sharing)", Agents
//! and sharing).

use agentshare_kit::clock::micros_of;
use agentshare_kit::ids;
use agentshare_kit::page::Page;
use std::collections::HashSet;

use agentshare_kit::Error;
use agentshare_kit::identity::Principal;
use agentshare_proto::sharing::v1 as pb;
use pb::sharing_service_server::SharingService;
use tonic::{Request, Response, Status};

use crate::access::rules::decision::{self, Action, Subject};
use crate::access::rules::scope;
use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::access::storage::grants::{GrantKind, GrantRow, GrantState};
use crate::common::Storage;
use crate::tenancy;
use crate::tenancy::rpc::workspace_to_proto;
use crate::tenancy::rules::OrgRole;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::{random_token, secret_digest};
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::scheduler::v1::automations_internal_service_client::AutomationsInternalServiceClient;
use agentshare_proto::scheduler::v1::{
    ListEnabledSubscriptionsRequest, ListEnabledSubscriptionsResponse,
};

/// The most workspaces one agent's list may name.
const MAX_WORKSPACES: usize = 1000;

#[derive(Clone)]
pub struct Sharing {
    pub storage: Storage,
    /// How recent a second factor must be for privileged mutations.
    pub step_up_max_age_secs: i64,
    /// The scheduler, which knows the subscriptions an unshare would stop.
    pub automations: AutomationsInternalServiceClient<ServiceChannel>,
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
        let agent_id = ids::parse("agent_id", agent_id)?;
        let subject = scope::caller(&self.storage, principal).await?;
        let agent = self.storage.access.agent(&agent_id).await?;
        let agent = decision::require(agent, &agent_id, &subject, action)?;
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
        let org_admin = subject.org_role.is_some_and(OrgRole::manages_org);
        let accessible = self
            .storage
            .tenancy
            .workspaces_visible_to(&agent.org_id, &subject.user_id, org_admin)
            .await?;
        let workspaces = agent
            .workspaces
            .iter()
            .filter_map(|id| accessible.iter().find(|w| &w.id == id))
            .map(|w| workspace_to_proto(w.clone()))
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
            .access
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
            .access
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
                .access
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
        let surviving = self.surviving_grants(&agent.agent_id).await?;
        // An unshare stops every subscription but the owner's; the dry-run
        // lists them, and fails rather than answer with a gap.
        let stopping = if agent.shared {
            self.automations
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
                })?
                .into_inner()
        } else {
            ListEnabledSubscriptionsResponse::default()
        };
        let now = self.storage.clock.now_micros();
        Ok(Response::new(pb::PreviewUnshareAgentResponse {
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
            surviving_grants_total: i32::try_from(surviving.len()).unwrap_or(i32::MAX),
            surviving_grants: surviving.iter().map(|g| grant_to_proto(g, now)).collect(),
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
            return Err(Error::PermissionDenied(decision::denial_message(
                pb::DecisionReason::ManagedAgent,
            ))
            .into());
        }
        tenancy::rules::require_step_up(
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
            let id = ids::parse("workspace_ids", id)?;
            if !seen.insert(id.clone()) {
                return Err(Error::invalid(
                    "workspace_ids",
                    format!("workspace {id} is listed twice"),
                )
                .into());
            }
            requested.push(id);
        }
        let org_admin = subject.org_role.is_some_and(OrgRole::manages_org);
        let accessible: HashSet<String> = self
            .storage
            .tenancy
            .workspaces_visible_to(&agent.org_id, &subject.user_id, org_admin)
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
            .access
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

    async fn create_grant(
        &self,
        request: Request<pb::CreateGrantRequest>,
    ) -> Result<Response<pb::CreateGrantResponse>, Status> {
        let principal = Principal::of(&request)?;
        Ok(Response::new(
            self.create_grant_impl(principal, request.get_ref()).await?,
        ))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let request = request.get_ref();
        let (agent, _) = self.grants_agent(principal, &request.agent_id).await?;
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("grants:{}:{}", agent.agent_id, request.include_inactive),
        )?;
        let now = self.storage.clock.now_micros();
        // Inactive grants are filtered after reading, so read on until the
        // page is full.
        let mut rows = Vec::new();
        let mut after = page.after().map(str::to_string);
        loop {
            let batch = self
                .storage
                .access
                .grants_of(&agent.agent_id, after.as_deref(), page.limit())
                .await
                .map_err(Error::from)?;
            let exhausted = i64::try_from(batch.len()).unwrap_or(i64::MAX) < page.limit();
            after = batch.last().map(|g| g.id.clone());
            rows.extend(
                batch
                    .into_iter()
                    .filter(|g| request.include_inactive || g.state_at(now) == GrantState::Active),
            );
            if exhausted || i64::try_from(rows.len()).unwrap_or(i64::MAX) > page.size {
                break;
            }
        }
        let (rows, next_page_token) = page.split(rows, |g| g.id.clone());
        Ok(Response::new(pb::ListGrantsResponse {
            grants: rows.iter().map(|g| grant_to_proto(g, now)).collect(),
            next_page_token,
        }))
    }

    async fn revoke_grant(
        &self,
        request: Request<pb::RevokeGrantRequest>,
    ) -> Result<Response<pb::RevokeGrantResponse>, Status> {
        let principal = Principal::of(&request)?;
        let grant_id = ids::parse("grant_id", &request.get_ref().grant_id)?;
        let not_found = || Error::not_found(format!("grant {grant_id}"));
        let grant = self
            .storage
            .access
            .grant(&grant_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        // A grant of an agent the caller cannot see reads as no grant.
        self.grants_agent(principal, &grant.agent_id)
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => not_found(),
                other => other,
            })?;
        self.storage
            .access
            .revoke_grant(&grant)
            .await
            .map_err(Error::from)?;
        let grant = self
            .storage
            .access
            .grant(&grant_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        Ok(Response::new(pb::RevokeGrantResponse {
            grant: Some(grant_to_proto(&grant, self.storage.clock.now_micros())),
        }))
    }

    async fn get_agent_reach(
        &self,
        request: Request<pb::GetAgentReachRequest>,
    ) -> Result<Response<pb::GetAgentReachResponse>, Status> {
        let principal = Principal::of(&request)?;
        let agent_id = ids::parse("agent_id", &request.get_ref().agent_id)?;
        let subject = scope::caller(&self.storage, principal).await?;
        let agent = self
            .storage
            .access
            .agent(&agent_id)
            .await
            .map_err(Error::from)?;
        let org_admin = subject.org_role.is_some_and(OrgRole::manages_org);
        let agent = match agent {
            Some(agent)
                if org_admin
                    && agent.org_id == subject.org_id
                    && agent.state != AccessState::Deleted =>
            {
                agent
            }
            other => decision::require(other, &agent_id, &subject, Action::ManageGrants)?,
        };
        let grants = self.surviving_grants(&agent.agent_id).await?;
        let pins = self
            .storage
            .access
            .pins_of(&agent.agent_id)
            .await
            .map_err(Error::from)?;
        let now = self.storage.clock.now_micros();
        Ok(Response::new(pb::GetAgentReachResponse {
            sharing: Some(self.sharing_state(&agent, &subject, agent.shared).await?),
            is_default: agent.is_default,
            grants_total: i32::try_from(grants.len()).unwrap_or(i32::MAX),
            grants: grants.iter().map(|g| grant_to_proto(g, now)).collect(),
            pins_total: i32::try_from(pins.len()).unwrap_or(i32::MAX),
            pins: pins
                .into_iter()
                .map(|pin| pb::Pin {
                    agent_id: pin.agent_id,
                    user_id: pin.user_id,
                    version: pin.version,
                    create_time: Some(timestamp(pin.created_at)),
                })
                .collect(),
        }))
    }
}

/// Share tokens start with this, so a leaked one is recognisable.
pub const GRANT_TOKEN_PREFIX: &str = "asg_";
/// Active grants one agent may have at once.
const MAX_ACTIVE_GRANTS: i64 = 100;

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

impl Sharing {
    /// The agent of a grant call, once the caller may manage its grants
    /// (the owner; org owners and admins may read its reach too).
    async fn grants_agent(
        &self,
        principal: &Principal,
        agent_id: &str,
    ) -> Result<(AgentRow, Subject), Error> {
        self.owned(principal, agent_id, Action::ManageGrants).await
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

    pub async fn create_grant_impl(
        &self,
        principal: &Principal,
        request: &pb::CreateGrantRequest,
    ) -> Result<pb::CreateGrantResponse, Error> {
        let user = principal.require_user()?;
        let (agent, _) = self.grants_agent(principal, &request.agent_id).await?;
        let kind = match pb::GrantKind::try_from(request.kind) {
            Ok(pb::GrantKind::Invoke) => GrantKind::Invoke,
            Ok(pb::GrantKind::Delegate) => GrantKind::Delegate,
            _ => return Err(Error::invalid("kind", "must be INVOKE or DELEGATE")),
        };
        let label = tenancy::rules::display_name("label", &request.label)?;
        if agent.state != AccessState::Active {
            return Err(Error::FailedPrecondition(
                "deploy the agent before granting access to it".into(),
            ));
        }
        let now = self.storage.clock.now_micros();
        let expires_at = request.expire_time.as_ref().map(micros_of);
        if expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("expire_time", "must be in the future"));
        }
        if let Some(pinned) = request.pinned_version
            && (pinned < 1 || pinned > agent.latest_version)
        {
            return Err(Error::not_found(format!(
                "version {pinned} of agent {} (the latest is {})",
                agent.agent_id, agent.latest_version
            )));
        }
        if self
            .storage
            .access
            .active_grant_count(&agent.agent_id)
            .await?
            >= MAX_ACTIVE_GRANTS
        {
            return Err(Error::ResourceExhausted(format!(
                "agent {} has {MAX_ACTIVE_GRANTS} active grants; revoke one first",
                agent.agent_id
            )));
        }
        let token = format!("{GRANT_TOKEN_PREFIX}{}", random_token()?);
        let grant = GrantRow {
            id: agentshare_kit::db::new_id(),
            agent_id: agent.agent_id.clone(),
            org_id: agent.org_id.clone(),
            kind,
            label,
            token_prefix: token.chars().take(GRANT_TOKEN_PREFIX.len() + 4).collect(),
            pinned_version: request.pinned_version,
            creator_user_id: user.to_string(),
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
            ended_at: None,
        };
        self.storage
            .access
            .insert_grant(&grant, &secret_digest(&token))
            .await?;
        Ok(pb::CreateGrantResponse {
            grant: Some(grant_to_proto(&grant, now)),
            token,
        })
    }
}
