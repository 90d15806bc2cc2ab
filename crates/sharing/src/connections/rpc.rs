//! ConnectionsService: a user's connections, OAuth flows and agent setups.
//! No answer here carries a secret or another user's connection id.

use std::time::Duration;

use agentshare_kit::Error;
use agentshare_kit::clock::{duration_micros, timestamp};
use agentshare_kit::identity::{Principal, random_token, secret_digest};
use agentshare_kit::ids;
use agentshare_kit::page::Page;
use agentshare_proto::sharing::v1 as pb;
use pb::connections_service_server::ConnectionsService;

use crate::access::rules::decision::{self, Action};
use crate::access::rules::{retirement, scope};
use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::common::Storage;
use crate::connections::credentials::{self, Credentials};
use crate::connections::oauth::{self, TokenError};
use crate::connections::providers::Provider;
use crate::connections::setup::{self, Gap, IntegrationSetup, Runner};
use crate::connections::storage::{ConnectionRow, Flow, Kind, Material, Status as ConnStatus};
use crate::tenancy::rules;

/// How long an OAuth flow waits for its code.
const FLOW_TTL: Duration = Duration::from_secs(10 * 60);
/// Pending flows one user may have at once.
const MAX_PENDING_FLOWS: i64 = 20;

#[derive(Clone)]
pub struct Connections {
    pub storage: Storage,
    pub credentials: Credentials,
}

fn status_to_proto(status: ConnStatus) -> pb::ConnectionStatus {
    match status {
        ConnStatus::Live => pb::ConnectionStatus::Live,
        ConnStatus::Expired => pb::ConnectionStatus::Expired,
        ConnStatus::Failed => pb::ConnectionStatus::Failed,
    }
}

fn connection_to_proto(row: &ConnectionRow, now: i64) -> pb::Connection {
    let (status, message) = row.status_at(now);
    pb::Connection {
        id: row.id.clone(),
        provider: row.provider.clone(),
        kind: match row.kind {
            Kind::ApiKey => pb::ConnectionKind::ApiKey,
            Kind::OAuth => pb::ConnectionKind::Oauth,
        }
        .into(),
        label: row.label.clone(),
        status: status_to_proto(status).into(),
        status_message: message,
        create_time: Some(timestamp(row.created_at)),
        last_use_time: row.last_used_at.map(timestamp),
        last_test_time: row.last_tested_at.map(timestamp),
        expire_time: row.expires_at.map(timestamp),
        scopes: row.scopes.clone(),
    }
}

fn gap_to_proto(gap: Gap) -> pb::SetupGapReason {
    match gap {
        Gap::NotBound => pb::SetupGapReason::NotBound,
        Gap::Expired => pb::SetupGapReason::ConnectionExpired,
        Gap::Failed => pb::SetupGapReason::ConnectionFailed,
        Gap::BuilderUnavailable => pb::SetupGapReason::BuilderConnectionUnavailable,
    }
}

fn setup_to_proto(
    agent_id: &str,
    version: i64,
    setups: &[IntegrationSetup],
    complete_time: Option<i64>,
) -> pb::AgentSetup {
    pb::AgentSetup {
        agent_id: agent_id.to_string(),
        version,
        status: if setup::ready(setups) {
            pb::SetupStatus::Ready
        } else {
            pb::SetupStatus::SetupRequired
        }
        .into(),
        integrations: setups
            .iter()
            .map(|s| pb::IntegrationSetup {
                integration_key: s.integration.key.clone(),
                provider: s.integration.provider.clone(),
                scope: if s.integration.shared {
                    pb::IntegrationScope::Shared
                } else {
                    pb::IntegrationScope::UserConfigured
                }
                .into(),
                binding_required: s.binding_required,
                bound_connection_id: s
                    .bound
                    .as_ref()
                    .map(|(c, _)| c.id.clone())
                    .unwrap_or_default(),
                bound_connection_label: s
                    .bound
                    .as_ref()
                    .map(|(c, _)| c.label.clone())
                    .unwrap_or_default(),
                bound_connection_status: s
                    .bound
                    .as_ref()
                    .map_or(pb::ConnectionStatus::Unspecified, |(_, status)| {
                        status_to_proto(*status)
                    })
                    .into(),
                gap: s
                    .gap
                    .map_or(pb::SetupGapReason::Unspecified, gap_to_proto)
                    .into(),
            })
            .collect(),
        missing: setups
            .iter()
            .filter_map(|s| {
                s.gap.map(|gap| pb::SetupGap {
                    integration_key: s.integration.key.clone(),
                    provider: s.integration.provider.clone(),
                    reason: gap_to_proto(gap).into(),
                })
            })
            .collect(),
        complete_time: complete_time.map(timestamp),
    }
}

/// An agent a user configures their own use of: the version they run and
/// how.
struct Configured {
    agent: AgentRow,
    version: i64,
    runner: Runner,
}

impl Connections {
    async fn own(&self, user: &str, id: &str) -> Result<ConnectionRow, Error> {
        let id = ids::parse("connection_id", id)?;
        self.storage
            .connections
            .connection(user, &id)
            .await?
            .ok_or_else(|| Error::not_found(format!("connection {id}")))
    }

    /// A connection as the user sees it now.
    async fn own_proto(&self, user: &str, id: &str) -> Result<pb::Connection, Error> {
        let row = self.own(user, id).await?;
        Ok(connection_to_proto(&row, self.storage.clock.now_micros()))
    }

    /// Begins an OAuth flow for a new connection or a reconnect.
    async fn start_flow(
        &self,
        user: &str,
        provider: &Provider,
        label: &str,
        connection_id: Option<String>,
    ) -> Result<(String, String, i64), Error> {
        let config = provider.oauth.as_ref().ok_or_else(|| {
            Error::invalid(
                "provider",
                format!("{} is not an OAuth provider", provider.key),
            )
        })?;
        if self.storage.connections.pending_flows(user).await? >= MAX_PENDING_FLOWS {
            return Err(Error::ResourceExhausted(format!(
                "you have {MAX_PENDING_FLOWS} OAuth flows pending; complete one or wait 10 minutes"
            )));
        }
        let state = random_token()?;
        let authorization = oauth::authorize(config, &state).map_err(Error::internal)?;
        let digest = secret_digest(&state);
        let expires_at = self.storage.clock.now_micros() + duration_micros(FLOW_TTL);
        let flow = Flow {
            user_id: user.to_string(),
            provider: provider.key.clone(),
            label: label.to_string(),
            connection_id,
            verifier: self.credentials.secrets.seal(
                &authorization.pkce_verifier,
                &Flow::verifier_context(&digest),
            )?,
            expires_at,
            used_at: None,
        };
        self.storage.connections.insert_flow(&digest, &flow).await?;
        Ok((authorization.url, state, expires_at))
    }

    /// The agent, the version the caller runs and how, once the caller may
    /// configure their own use of it.
    async fn configurable(
        &self,
        principal: &Principal,
        agent_id: &str,
    ) -> Result<Configured, Error> {
        let user = principal.require_user()?;
        let agent_id = ids::parse("agent_id", agent_id)?;
        let subject = scope::caller(&self.storage, principal).await?;
        let agent = self.storage.access.agent(&agent_id).await?;
        let agent = decision::require(agent, &agent_id, &subject, Action::ConfigureOwn)?;
        let grant_pin = match &subject.grant {
            Some(held) => self
                .storage
                .access
                .grant(&held.id)
                .await?
                .and_then(|g| g.pinned_version),
            None => None,
        };
        let user_pin = self
            .storage
            .access
            .pin_of(&agent.agent_id, user)
            .await?
            .map(|pin| pin.version);
        let (grant_pin, user_pin) = if grant_pin.is_some() || user_pin.is_some() {
            // A retired version's pin decides nothing: set up the latest.
            let retirements = self.storage.access.retirements_of(&agent.agent_id).await?;
            let now = self.storage.clock.now_micros();
            (
                retirement::in_force(grant_pin, &retirements, now),
                retirement::in_force(user_pin, &retirements, now),
            )
        } else {
            (grant_pin, user_pin)
        };
        let version = setup::version_to_set_up(
            agent.state == AccessState::Draft,
            grant_pin,
            user_pin,
            agent.latest_version,
        );
        let runner = setup::runner_of(subject.grant.is_some(), agent.owner_user_id == user);
        Ok(Configured {
            agent,
            version,
            runner,
        })
    }

    /// The user's setup of the agent now, integration by integration.
    async fn setups(&self, user: &str, of: &Configured) -> Result<Vec<IntegrationSetup>, Error> {
        let wanted = [(of.agent.agent_id.clone(), of.version, of.runner)];
        let setups = setup::setups(&self.storage, user, &wanted).await?;
        Ok(setups.into_iter().next().unwrap_or_default())
    }

    /// An agent the caller configures, with their setup of it now: what a
    /// change to the setup starts from.
    async fn setup_of(
        &self,
        caller: &Principal,
        agent_id: &str,
    ) -> Result<(Configured, Vec<IntegrationSetup>), Error> {
        let agent = self.configurable(caller, agent_id).await?;
        let setups = self.setups(caller.require_user()?, &agent).await?;
        Ok((agent, setups))
    }

    /// The user's setup of the agent now, as answered.
    async fn agent_setup(&self, user: &str, of: &Configured) -> Result<pb::AgentSetup, Error> {
        let setups = self.setups(user, of).await?;
        let agent_id = &of.agent.agent_id;
        let connections = &self.storage.connections;
        let completed = connections.setup_completed_at(agent_id, user).await?;
        Ok(setup_to_proto(agent_id, of.version, &setups, completed))
    }
}

/// The ConnectionsService handlers, one per unary call.
impl Connections {
    async fn create_api_key_connection(
        &self,
        caller: Principal,
        request: pb::CreateApiKeyConnectionRequest,
    ) -> agentshare_kit::Result<pb::CreateApiKeyConnectionResponse> {
        let user = caller.require_user()?;
        let providers = &self.credentials.providers;
        let provider = providers.of_kind(&request.provider, Kind::ApiKey)?;
        let label = rules::display_name("label", &request.label)?;
        let key = credentials::pasted_key(&request.api_key)?;
        let now = self.storage.clock.now_micros();
        let expires_at = rules::expiry(request.expire_time.as_ref(), now)?;
        let id = self.storage.connections.new_connection_id();
        let row = ConnectionRow {
            secret: self
                .credentials
                .secrets
                .seal(key, &ConnectionRow::secret_context(&id))?,
            id,
            user_id: user.to_string(),
            provider: provider.key.clone(),
            kind: Kind::ApiKey,
            label,
            status: ConnStatus::Live,
            status_message: String::new(),
            refresh: None,
            access_expires_at: None,
            expires_at,
            scopes: Vec::new(),
            created_at: now,
            last_used_at: None,
            last_tested_at: None,
        };
        self.storage.connections.insert_connection(&row).await?;
        Ok(pb::CreateApiKeyConnectionResponse {
            connection: Some(connection_to_proto(&row, now)),
        })
    }

    async fn start_o_auth_connection(
        &self,
        caller: Principal,
        request: pb::StartOAuthConnectionRequest,
    ) -> agentshare_kit::Result<pb::StartOAuthConnectionResponse> {
        let user = caller.require_user()?;
        let providers = &self.credentials.providers;
        let provider = providers.of_kind(&request.provider, Kind::OAuth)?;
        let label = rules::display_name("label", &request.label)?;
        let (authorize_url, state, expires_at) =
            self.start_flow(user, provider, &label, None).await?;
        Ok(pb::StartOAuthConnectionResponse {
            authorize_url,
            state,
            expire_time: Some(timestamp(expires_at)),
        })
    }

    async fn complete_o_auth_connection(
        &self,
        caller: Principal,
        request: pb::CompleteOAuthConnectionRequest,
    ) -> agentshare_kit::Result<pb::CompleteOAuthConnectionResponse> {
        let user = caller.require_user()?;
        let start_again = |why: &str| {
            Error::invalid(
                "state",
                format!("{why}: start again with StartOAuthConnection"),
            )
        };
        if request.state.is_empty() {
            return Err(Error::invalid("state", "must not be empty"));
        }
        let digest = secret_digest(&request.state);
        // Another user's flow reads exactly like an unknown one.
        let flow = self
            .storage
            .connections
            .take_flow(&digest)
            .await?
            .filter(|flow| flow.user_id == user)
            .ok_or_else(|| start_again("unknown OAuth state"))?;
        if flow.used_at.is_some() {
            return Err(start_again("this OAuth state was already used"));
        }
        let now = self.storage.clock.now_micros();
        if flow.expires_at <= now {
            return Err(start_again("this OAuth flow expired"));
        }
        if !request.error.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{} refused the authorization: start again",
                flow.provider
            )));
        }
        if request.code.is_empty() {
            return Err(Error::invalid(
                "code",
                "must not be empty unless error is set",
            ));
        }
        let providers = &self.credentials.providers;
        let provider = providers.of_kind(&flow.provider, Kind::OAuth)?;
        let config = provider
            .oauth
            .as_ref()
            .ok_or_else(|| Error::internal("an OAuth provider without OAuth settings"))?;
        let verifier = self
            .credentials
            .secrets
            .open(&flow.verifier, &Flow::verifier_context(&digest))
            .map_err(Error::internal)?;
        let tokens = match oauth::exchange_code(config, &request.code, &verifier).await {
            Ok(tokens) => tokens,
            Err(TokenError::Refused(reason)) => {
                return Err(Error::FailedPrecondition(format!(
                    "{} refused the code ({reason}): start again",
                    flow.provider
                )));
            }
            Err(TokenError::Unreachable(reason)) => {
                return Err(Error::Unavailable(format!(
                    "{} could not be reached ({reason}); start again later",
                    flow.provider
                )));
            }
        };
        let connections = &self.storage.connections;
        let row = match &flow.connection_id {
            Some(id) => {
                let material = self.credentials.seal_tokens(id, &tokens, &config.scopes)?;
                connections.replace_material(id, &material).await?;
                self.own(user, id).await?
            }
            None => {
                let id = connections.new_connection_id();
                let material = self.credentials.seal_tokens(&id, &tokens, &config.scopes)?;
                let row = ConnectionRow {
                    id,
                    user_id: user.to_string(),
                    provider: flow.provider.clone(),
                    kind: Kind::OAuth,
                    label: flow.label.clone(),
                    status: ConnStatus::Live,
                    status_message: String::new(),
                    secret: material.secret,
                    refresh: material.refresh,
                    access_expires_at: material.access_expires_at,
                    expires_at: None,
                    scopes: material.scopes,
                    created_at: now,
                    last_used_at: None,
                    last_tested_at: None,
                };
                connections.insert_connection(&row).await?;
                row
            }
        };
        Ok(pb::CompleteOAuthConnectionResponse {
            connection: Some(connection_to_proto(&row, now)),
        })
    }

    async fn list_connections(
        &self,
        caller: Principal,
        request: pb::ListConnectionsRequest,
    ) -> agentshare_kit::Result<pb::ListConnectionsResponse> {
        let user = caller.require_user()?;
        let listing = format!("connections:{user}:{}", request.provider);
        let page = Page::of(request.page_size, &request.page_token, listing)?;
        let connections = &self.storage.connections;
        let rows = connections
            .connections_of(user, &request.provider, &page)
            .await?;
        let now = self.storage.clock.now_micros();
        let answer = |row: ConnectionRow| connection_to_proto(&row, now);
        let (connections, next_page_token) = page.answer(rows, |row| row.id.clone(), answer);
        Ok(pb::ListConnectionsResponse {
            connections,
            next_page_token,
        })
    }

    async fn get_connection(
        &self,
        caller: Principal,
        request: pb::GetConnectionRequest,
    ) -> agentshare_kit::Result<pb::GetConnectionResponse> {
        let user = caller.require_user()?;
        Ok(pb::GetConnectionResponse {
            connection: Some(self.own_proto(user, &request.connection_id).await?),
        })
    }

    async fn delete_connection(
        &self,
        caller: Principal,
        request: pb::DeleteConnectionRequest,
    ) -> agentshare_kit::Result<pb::DeleteConnectionResponse> {
        let user = caller.require_user()?;
        let id = ids::parse("connection_id", &request.connection_id)?;
        let removed = self
            .storage
            .connections
            .delete_connection(user, &id)
            .await?
            .ok_or_else(|| Error::not_found(format!("connection {id}")))?;
        Ok(pb::DeleteConnectionResponse {
            removed_binding_count: i32::try_from(removed).unwrap_or(i32::MAX),
        })
    }

    async fn test_connection(
        &self,
        caller: Principal,
        request: pb::TestConnectionRequest,
    ) -> agentshare_kit::Result<pb::TestConnectionResponse> {
        let user = caller.require_user()?;
        let row = self.own(user, &request.connection_id).await?;
        let now = self.storage.clock.now_micros();
        let (status, message) = row.status_at(now);
        let (ok, message) = if status == ConnStatus::Expired {
            (false, message)
        } else {
            match self.credentials.fresh_secret(&row).await {
                Ok(secret) => {
                    let provider = self.credentials.providers.get(&row.provider);
                    let provider = provider.ok_or_else(|| {
                        Error::FailedPrecondition(format!(
                            "provider {} is no longer configured",
                            row.provider
                        ))
                    })?;
                    match provider.check.check(&secret).await {
                        Ok(()) => (true, format!("{} accepted the credential", row.provider)),
                        Err(why) => (false, why),
                    }
                }
                // The refresh was refused and the connection marked FAILED.
                Err(Error::FailedPrecondition(why)) => (false, why),
                Err(other) => return Err(other),
            }
        };
        let recorded = credentials::checked_status(ok, status);
        self.storage
            .connections
            .record_check(&row.id, recorded, if ok { "" } else { &message })
            .await?;
        Ok(pb::TestConnectionResponse {
            ok,
            message,
            connection: Some(self.own_proto(user, &row.id).await?),
        })
    }

    async fn reconnect_connection(
        &self,
        caller: Principal,
        request: pb::ReconnectConnectionRequest,
    ) -> agentshare_kit::Result<pb::ReconnectConnectionResponse> {
        let user = caller.require_user()?;
        let row = self.own(user, &request.connection_id).await?;
        match row.kind {
            Kind::ApiKey => {
                let key = credentials::pasted_key(&request.api_key)?;
                let context = ConnectionRow::secret_context(&row.id);
                let material = Material {
                    secret: self.credentials.secrets.seal(key, &context)?,
                    refresh: None,
                    access_expires_at: None,
                    expires_at: None,
                    scopes: Vec::new(),
                };
                self.storage
                    .connections
                    .replace_material(&row.id, &material)
                    .await?;
                Ok(pb::ReconnectConnectionResponse {
                    connection: Some(self.own_proto(user, &row.id).await?),
                    ..Default::default()
                })
            }
            Kind::OAuth => {
                if !request.api_key.is_empty() {
                    return Err(Error::invalid(
                        "api_key",
                        "an OAuth connection reconnects through its provider: send no key",
                    ));
                }
                let providers = &self.credentials.providers;
                let provider = providers.of_kind(&row.provider, Kind::OAuth)?;
                let (authorize_url, state, _) = self
                    .start_flow(user, provider, &row.label, Some(row.id.clone()))
                    .await?;
                let now = self.storage.clock.now_micros();
                Ok(pb::ReconnectConnectionResponse {
                    connection: Some(connection_to_proto(&row, now)),
                    authorize_url,
                    state,
                })
            }
        }
    }

    async fn get_agent_setup(
        &self,
        caller: Principal,
        request: pb::GetAgentSetupRequest,
    ) -> agentshare_kit::Result<pb::GetAgentSetupResponse> {
        let user = caller.require_user()?;
        let agent = self.configurable(&caller, &request.agent_id).await?;
        Ok(pb::GetAgentSetupResponse {
            setup: Some(self.agent_setup(user, &agent).await?),
        })
    }

    async fn bind_integration(
        &self,
        caller: Principal,
        request: pb::BindIntegrationRequest,
    ) -> agentshare_kit::Result<pb::BindIntegrationResponse> {
        let user = caller.require_user()?;
        let (agent, setups) = self.setup_of(&caller, &request.agent_id).await?;
        let agent_id = &agent.agent.agent_id;
        let integration = setup::integration(&setups, &request.integration_key, agent_id)?;
        let connection = self.own(user, &request.connection_id).await?;
        setup::bindable(integration, &connection.provider)?;
        let (key, connections) = (&integration.integration.key, &self.storage.connections);
        connections
            .bind(agent_id, user, key, &connection.id)
            .await?;
        Ok(pb::BindIntegrationResponse {
            setup: Some(self.agent_setup(user, &agent).await?),
        })
    }

    async fn unbind_integration(
        &self,
        caller: Principal,
        request: pb::UnbindIntegrationRequest,
    ) -> agentshare_kit::Result<pb::UnbindIntegrationResponse> {
        let user = caller.require_user()?;
        let (agent, setups) = self.setup_of(&caller, &request.agent_id).await?;
        let agent_id = &agent.agent.agent_id;
        let key = &request.integration_key;
        setup::integration(&setups, key, agent_id)?;
        self.storage.connections.unbind(agent_id, user, key).await?;
        Ok(pb::UnbindIntegrationResponse {
            setup: Some(self.agent_setup(user, &agent).await?),
        })
    }

    async fn complete_agent_setup(
        &self,
        caller: Principal,
        request: pb::CompleteAgentSetupRequest,
    ) -> agentshare_kit::Result<pb::CompleteAgentSetupResponse> {
        let user = caller.require_user()?;
        let (agent, setups) = self.setup_of(&caller, &request.agent_id).await?;
        if setup::ready(&setups) {
            let connections = &self.storage.connections;
            connections
                .complete_setup(&agent.agent.agent_id, user)
                .await?;
        }
        Ok(pb::CompleteAgentSetupResponse {
            setup: Some(self.agent_setup(user, &agent).await?),
        })
    }
}

#[tonic::async_trait]
impl ConnectionsService for Connections {
    agentshare_kit::handlers! {
        create_api_key_connection(pb::CreateApiKeyConnectionRequest) -> pb::CreateApiKeyConnectionResponse;
        start_o_auth_connection(pb::StartOAuthConnectionRequest) -> pb::StartOAuthConnectionResponse;
        complete_o_auth_connection(pb::CompleteOAuthConnectionRequest) -> pb::CompleteOAuthConnectionResponse;
        list_connections(pb::ListConnectionsRequest) -> pb::ListConnectionsResponse;
        get_connection(pb::GetConnectionRequest) -> pb::GetConnectionResponse;
        delete_connection(pb::DeleteConnectionRequest) -> pb::DeleteConnectionResponse;
        test_connection(pb::TestConnectionRequest) -> pb::TestConnectionResponse;
        reconnect_connection(pb::ReconnectConnectionRequest) -> pb::ReconnectConnectionResponse;
        get_agent_setup(pb::GetAgentSetupRequest) -> pb::GetAgentSetupResponse;
        bind_integration(pb::BindIntegrationRequest) -> pb::BindIntegrationResponse;
        unbind_integration(pb::UnbindIntegrationRequest) -> pb::UnbindIntegrationResponse;
        complete_agent_setup(pb::CompleteAgentSetupRequest) -> pb::CompleteAgentSetupResponse;
    }
}
