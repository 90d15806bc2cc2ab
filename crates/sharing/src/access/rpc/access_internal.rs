//! AccessInternalService: what the gateway, registry and scheduler ask of
//! sharing with their service identity.

use agentshare_kit::identity::Principal;
use agentshare_kit::identity::secret_digest;
use agentshare_kit::{Error, ids};
use agentshare_proto::sharing::v1 as pb;
use pb::access_internal_service_server::AccessInternalService;

use super::access::{Run, run_plan};
use crate::access::rules::plan::Plan;
use crate::access::rules::{budgets, decision, scope};
use crate::access::storage::agent_access;
use crate::access::storage::budgets::Admitted;
use crate::common::Storage;
use crate::connections::storage::{ConnectionRow, Kind};
use crate::tenancy;
use crate::tenancy::rules::{OrgChoice, OrgRole};

#[derive(Clone)]
pub struct AccessInternal {
    pub storage: Storage,
    pub credentials: crate::connections::credentials::Credentials,
    pub sessions: super::access::SessionStore,
}

/// A signed-in user's standing in the org of a request.
struct Standing {
    role: OrgRole,
    workspaces_enabled: bool,
    workspace_id: String,
}

impl AccessInternal {
    /// One connection's secret for the runtime, refreshed first when due.
    async fn secret_of(
        &self,
        integration_key: &str,
        connection: &ConnectionRow,
    ) -> Result<pb::ConnectionSecret, Error> {
        let secret = self.credentials.fresh_secret(connection).await?;
        // Read again: a refresh moved the access token's expiry.
        let expires = self
            .storage
            .connections
            .connection(&connection.user_id, &connection.id)
            .await?
            .and_then(|c| c.access_expires_at.or(c.expires_at));
        self.storage
            .connections
            .touch_connection(&connection.id)
            .await?;
        Ok(pb::ConnectionSecret {
            integration_key: integration_key.to_string(),
            provider: connection.provider.clone(),
            kind: match connection.kind {
                Kind::ApiKey => pb::ConnectionKind::ApiKey,
                Kind::OAuth => pb::ConnectionKind::Oauth,
            }
            .into(),
            secret,
            expire_time: expires.map(agentshare_kit::clock::timestamp),
        })
    }

    /// The user's role in `org_id`, and the workspace they act in there:
    /// `requested`, else `preferred`, else their default. `no_role` and
    /// `no_org` answer a user who left the org and an org that is gone.
    async fn standing(
        &self,
        org_id: &str,
        user_id: &str,
        (requested, preferred): (&str, Option<&str>),
        no_role: Error,
        no_org: Error,
    ) -> Result<Standing, Error> {
        let storage = &self.storage;
        let role = storage
            .tenancy
            .org_role(org_id, user_id)
            .await?
            .ok_or(no_role)?;
        let org = storage.tenancy.org(org_id).await?.ok_or(no_org)?;
        let workspace_id =
            scope::workspace_of(storage, &org, user_id, requested, preferred).await?;
        Ok(Standing {
            role,
            workspaces_enabled: org.workspaces_enabled,
            workspace_id,
        })
    }
}

impl AccessInternal {
    /// Admits the run of `plan` against its grant's limits and the org's
    /// runs per minute per principal; the concurrency slot it holds, if any.
    async fn admit(
        &self,
        caller: &Principal,
        request: &pb::ResolveInvocationWithSecretsRequest,
        plan: &Plan,
    ) -> Result<Option<String>, Error> {
        let grant = match &plan.grant {
            Some((grant_id, kind)) => {
                let limits = self
                    .storage
                    .access
                    .grant(grant_id)
                    .await?
                    .map(|g| g.limits())
                    .unwrap_or_default();
                Some((grant_id.as_str(), *kind, limits))
            }
            None => None,
        };
        let principal = match (&caller.api_key_id, &caller.user_id) {
            _ if request.automation_run => None,
            (Some(api_key), _) => Some(api_key.as_str()),
            (None, Some(user)) => Some(user.as_str()),
            (None, None) => None,
        };
        let run_deadline = request
            .run_deadline
            .and_then(|d| std::time::Duration::try_from(d).ok())
            .unwrap_or(budgets::DEFAULT_RUN_DEADLINE);
        let now = self.storage.clock.now_micros();
        let admission = budgets::admission(&budgets::RunFacts {
            grant,
            anonymous_session: Some(request.session_id.as_str())
                .filter(|s| !s.is_empty() && caller.user_id.is_none()),
            principal,
            principal_runs_per_minute: plan.org_policy.runs_per_minute_per_principal,
            now,
            run_deadline,
        });
        match self.storage.access.admit(&admission).await? {
            Admitted::Yes(slot) => Ok(slot),
            Admitted::No(counter) => Err(budgets::refusal(&counter, now)),
        }
    }
}

/// The AccessInternalService handlers, one per unary call.
impl AccessInternal {
    async fn resolve_store(
        &self,
        caller: Principal,
        request: pb::ResolveStoreRequest,
    ) -> agentshare_kit::Result<pb::ResolveStoreResponse> {
        let (subject, agent_id, agent) =
            scope::caller_and_agent(&self.storage, &caller, &request.agent_id).await?;
        // The owner's draft has a store too: they test it in the builder.
        let action = match &agent {
            Some(a) if !a.is_default && a.owner_user_id == subject.user_id => {
                decision::Action::ConfigureOwn
            }
            _ => decision::Action::Run,
        };
        let agent = decision::require(agent, &agent_id, &subject, action)?;
        let (store_workspace, scope) = crate::access::rules::plan::store_of(&agent, &subject)?;
        // A runtime's run token reaches its run's partition of its agent
        // and nothing else of it, even if the caller's standing changed.
        if let Some(run) = &caller.run
            && run.agent_id == agent.agent_id
            && run.partition != store_workspace
        {
            return Err(Error::PermissionDenied(
                "this run token is bound to another store of the agent".into(),
            ));
        }
        let write_refusal =
            crate::access::rules::store_policy::write_refusal(&agent, &subject, scope)
                .unwrap_or_default();
        Ok(pb::ResolveStoreResponse {
            store_workspace,
            store_scope: scope.to_proto().into(),
            org_id: agent.org_id,
            write_refusal,
        })
    }

    async fn resolve_invocation_with_secrets(
        &self,
        caller: Principal,
        request: pb::ResolveInvocationWithSecretsRequest,
    ) -> agentshare_kit::Result<pb::ResolveInvocationWithSecretsResponse> {
        let run = Run {
            agent_id: &request.agent_id,
            project_id: &request.project_id,
            draft: request.draft,
            session_id: &request.session_id,
            session_secret: &request.session_secret,
        };
        let plan = run_plan(&self.storage, &self.sessions, &caller, run).await?;
        let admission_id = self.admit(&caller, &request, &plan).await?;
        let mut secrets = Vec::with_capacity(plan.integrations.len());
        for integration in &plan.integrations {
            let key = &integration.setup.integration.key;
            secrets.push(self.secret_of(key, integration.connection()?).await?);
        }
        Ok(pb::ResolveInvocationWithSecretsResponse {
            plan: Some(super::access::plan_to_proto(&plan)),
            secrets,
            admission_id: admission_id.unwrap_or_default(),
        })
    }

    async fn release_run(
        &self,
        request: pb::ReleaseRunRequest,
    ) -> agentshare_kit::Result<pb::ReleaseRunResponse> {
        let admission_id = ids::parse("admission_id", &request.admission_id)?;
        self.storage.access.release(&admission_id).await?;
        Ok(pb::ReleaseRunResponse {})
    }

    async fn resolve_connection_secret(
        &self,
        caller: Principal,
        request: pb::ResolveConnectionSecretRequest,
    ) -> agentshare_kit::Result<pb::ResolveConnectionSecretResponse> {
        // Version 0 names the draft.
        let run = Run::of_agent(&request.agent_id, request.version == 0);
        let plan = run_plan(&self.storage, &self.sessions, &caller, run).await?;
        let integration = plan
            .integrations
            .iter()
            .find(|i| i.setup.integration.key == request.integration_key)
            .ok_or_else(|| Error::not_found("integration key of the run's agent"))?;
        let secret = self
            .secret_of(&request.integration_key, integration.connection()?)
            .await?;
        Ok(pb::ResolveConnectionSecretResponse {
            secret: Some(secret),
        })
    }
}

/// The AccessInternalService handlers for calls that carry no user caller.
impl AccessInternal {
    async fn resolve_caller(
        &self,
        request: pb::ResolveCallerRequest,
    ) -> agentshare_kit::Result<pb::ResolveCallerResponse> {
        if request.subject.is_empty() {
            return Err(Error::invalid("subject", "must not be empty"));
        }
        let tenancy = &self.storage.tenancy;
        let user_id = tenancy
            .upsert_user(&request.subject, &request.email, &request.display_name)
            .await?;
        let memberships = tenancy.memberships_of(&user_id).await?;
        let orgs: Vec<String> = memberships.iter().map(|m| m.org.id.clone()).collect();
        let mut response = pb::ResolveCallerResponse {
            user_id: user_id.clone(),
            ..Default::default()
        };
        let org_id = match tenancy::rules::choose_org(&request.requested_org_id, &orgs)? {
            OrgChoice::Chosen(org_id) => org_id,
            OrgChoice::NoOrg => return Ok(response),
            OrgChoice::Ambiguous => {
                response.org_choice_required = true;
                return Ok(response);
            }
        };
        let not_found = || Error::not_found(format!("org {org_id}"));
        let membership = memberships
            .into_iter()
            .find(|m| m.org.id == org_id)
            .ok_or_else(not_found)?;
        let role = OrgRole::parse(&membership.role).ok_or_else(not_found)?;
        let chosen = match request.session_id.as_str() {
            "" => None,
            session => {
                tenancy
                    .session_workspace(session, &org_id, &user_id)
                    .await?
            }
        };
        let workspace_ids = tenancy.workspace_ids_of(&org_id, &user_id).await?;
        response.workspace_id = scope::choose_workspace(
            &membership.org,
            &workspace_ids,
            &request.requested_workspace_id,
            chosen.as_deref(),
        )?;
        response.org_role = role.to_proto().into();
        response.workspaces_enabled = membership.org.workspaces_enabled;
        response.default_workspace_id = membership.org.default_workspace_id;
        response.workspace_ids = workspace_ids;
        response.org_id = org_id;
        Ok(response)
    }

    async fn list_version_holders(
        &self,
        request: pb::ListVersionHoldersRequest,
    ) -> agentshare_kit::Result<pb::ListVersionHoldersResponse> {
        let agent_id = ids::parse("agent_id", &request.agent_id)?;
        if request.version < 1 {
            return Err(Error::invalid("version", "required: 1 or more"));
        }
        let Some(agent) = self.storage.access.agent(&agent_id).await? else {
            return Ok(pb::ListVersionHoldersResponse::default());
        };
        let users = self
            .storage
            .access
            .pinned_users(&agent_id, request.version)
            .await?;
        let now = self.storage.clock.now_micros();
        let grants =
            super::access::pinned_grants(&self.storage, &agent_id, request.version, now).await?;
        let retirements = self.storage.access.retirements_of(&agent_id).await?;
        let pins = super::access::version_pins(users, &grants, &retirements, now)
            .into_iter()
            .next()
            .unwrap_or(pb::VersionPins {
                version: request.version,
                ..Default::default()
            });
        Ok(pb::ListVersionHoldersResponse {
            org_id: agent.org_id,
            agent_name: agent.name,
            pins: Some(pins),
            latest_version: agent.latest_version,
        })
    }

    async fn sync_agent(
        &self,
        request: pb::SyncAgentRequest,
    ) -> agentshare_kit::Result<pb::SyncAgentResponse> {
        let facts = request
            .agent
            .ok_or_else(|| Error::invalid("agent", "must be set"))?;
        let synced = agent_access::sync(&self.storage.access, facts).await?;
        Ok(pb::SyncAgentResponse {
            applied: synced.applied,
            stored_revision: synced.stored_revision,
        })
    }

    async fn authenticate_grant_token(
        &self,
        request: pb::AuthenticateGrantTokenRequest,
    ) -> agentshare_kit::Result<pb::AuthenticateGrantTokenResponse> {
        let token = request.token;
        if token.is_empty() {
            return Err(Error::invalid("token", "must not be empty"));
        }
        let access = &self.storage.access;
        let grant = access
            .use_grant(&secret_digest(&token))
            .await?
            .ok_or_else(|| Error::Unauthenticated("share token rejected: unknown token".into()))?;
        let agent = access.agent(&grant.agent_id).await?;
        let (owner, agent_name, agent_description) = agent
            .map(|a| (a.owner_user_id, a.name, a.description))
            .unwrap_or_default();
        let now = self.storage.clock.now_micros();
        Ok(pb::AuthenticateGrantTokenResponse {
            grant_id: grant.id.clone(),
            agent_id: grant.agent_id.clone(),
            org_id: grant.org_id.clone(),
            kind: super::sharing::grant_kind_to_proto(grant.kind).into(),
            state: super::sharing::grant_state_to_proto(grant.state_at(now)).into(),
            owner_user_id: owner,
            pinned_version: grant.pinned_version,
            expire_time: grant.expires_at.map(agentshare_kit::clock::timestamp),
            agent_name,
            agent_description,
        })
    }

    async fn authenticate_api_key(
        &self,
        request: pb::AuthenticateApiKeyRequest,
    ) -> agentshare_kit::Result<pb::AuthenticateApiKeyResponse> {
        let rejected = |why: &str| Error::Unauthenticated(format!("API key rejected: {why}"));
        let key = self
            .storage
            .tenancy
            .use_api_key(&secret_digest(&request.secret))
            .await?
            .ok_or_else(|| rejected("unknown key; create one with TenancyService.CreateApiKey"))?;
        if key.revoked_at.is_some() {
            return Err(rejected("API key revoked"));
        }
        if key
            .expires_at
            .is_some_and(|at| at <= self.storage.clock.now_micros())
        {
            return Err(rejected("API key expired; create a new one"));
        }
        if !request.requested_org_id.is_empty() && request.requested_org_id != key.org_id {
            return Err(Error::PermissionDenied(
                "this API key works in its own org only; drop x-agentshare-org or use a key of that org".into(),
            ));
        }
        let standing = self
            .standing(
                &key.org_id,
                &key.user_id,
                (
                    &request.requested_workspace_id,
                    Some(&key.default_workspace_id),
                ),
                rejected("its user is no longer a member of its org"),
                rejected("its org no longer exists"),
            )
            .await?;
        Ok(pb::AuthenticateApiKeyResponse {
            api_key_id: key.id,
            user_id: key.user_id,
            org_id: key.org_id,
            org_role: standing.role.to_proto().into(),
            workspace_id: standing.workspace_id,
            workspaces_enabled: standing.workspaces_enabled,
        })
    }
}

#[tonic::async_trait]
impl AccessInternalService for AccessInternal {
    agentshare_kit::internal_handlers! {
        resolve_caller(pb::ResolveCallerRequest) -> pb::ResolveCallerResponse;
        sync_agent(pb::SyncAgentRequest) -> pb::SyncAgentResponse;
        list_version_holders(pb::ListVersionHoldersRequest) -> pb::ListVersionHoldersResponse;
        authenticate_grant_token(pb::AuthenticateGrantTokenRequest) -> pb::AuthenticateGrantTokenResponse;
        authenticate_api_key(pb::AuthenticateApiKeyRequest) -> pb::AuthenticateApiKeyResponse;
        release_run(pb::ReleaseRunRequest) -> pb::ReleaseRunResponse;
    }
    agentshare_kit::handlers! {
        resolve_store(pb::ResolveStoreRequest) -> pb::ResolveStoreResponse;
        resolve_invocation_with_secrets(pb::ResolveInvocationWithSecretsRequest) -> pb::ResolveInvocationWithSecretsResponse;
        resolve_connection_secret(pb::ResolveConnectionSecretRequest) -> pb::ResolveConnectionSecretResponse;
    }
}
