//! ConnectionsService: a user's connections, OAuth flows and agent setups.
//! No answer here carries a secret or another user's connection id.

use agentshare_kit::clock::duration_micros;
use agentshare_kit::clock::micros_of;
use agentshare_kit::ids;
use agentshare_kit::page::Page;
use std::time::Duration;

use agentshare_kit::Error;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::{Principal, random_token, secret_digest};
use agentshare_proto::sharing::v1 as pb;
use pb::connections_service_server::ConnectionsService;
use tonic::{Request, Response, Status};

use crate::access::rules::decision::{self, Action};
use crate::access::rules::scope;
use crate::access::storage::agent_access::{AccessState, AgentRow};
use crate::common::Storage;
use crate::connections::credentials::Credentials;
use crate::connections::oauth::{self, TokenError};
use crate::connections::providers::Provider;
use crate::connections::setup::{self, Gap, IntegrationSetup, Runner};
use crate::connections::storage::{ConnectionRow, Flow, Kind, Material, Status as ConnStatus};
use crate::tenancy;

/// The largest API key accepted.
const MAX_KEY_BYTES: usize = 8 * 1024;
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

/// A pasted API key: present, not too long, and one line of visible
/// characters (a stray newline or space is a copy-paste slip).
fn api_key(key: &str) -> Result<&str, Error> {
    if key.is_empty() {
        return Err(Error::invalid("api_key", "must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid("api_key", "must be at most 8 KiB"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "api_key",
            "must not contain spaces, line breaks or control characters",
        ));
    }
    Ok(key)
}

impl Connections {
    fn provider(&self, key: &str, kind: Kind) -> Result<&Provider, Error> {
        let provider = self.credentials.providers.get(key).ok_or_else(|| {
            Error::invalid(
                "provider",
                format!(
                    "is not a configured provider; use one of: {}",
                    self.credentials.providers.keys()
                ),
            )
        })?;
        if provider.kind != kind {
            return Err(Error::invalid(
                "provider",
                match kind {
                    Kind::ApiKey => format!("{key} connects with OAuth: use StartOAuthConnection"),
                    Kind::OAuth => format!("{key} takes an API key: use CreateApiKeyConnection"),
                },
            ));
        }
        Ok(provider)
    }

    async fn own(&self, user: &str, id: &str) -> Result<ConnectionRow, Error> {
        let id = ids::parse("connection_id", id)?;
        self.storage
            .connections
            .connection(user, &id)
            .await?
            .ok_or_else(|| Error::not_found(format!("connection {id}")))
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
    ) -> Result<(AgentRow, i64, Runner), Error> {
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
        let version = if agent.state == AccessState::Draft {
            0
        } else if let Some(pinned) = grant_pin {
            pinned
        } else {
            self.storage
                .access
                .pin_of(&agent.agent_id, user)
                .await?
                .map_or(agent.latest_version, |pin| pin.version)
        };
        let runner = if subject.grant.is_some() {
            Runner::InvokeHolder
        } else if agent.owner_user_id == user {
            Runner::Owner
        } else {
            Runner::Member
        };
        Ok((agent, version, runner))
    }

    async fn agent_setup(
        &self,
        user: &str,
        agent: &AgentRow,
        version: i64,
        runner: Runner,
    ) -> Result<(Vec<IntegrationSetup>, pb::AgentSetup), Error> {
        let setups = setup::setups(
            &self.storage,
            user,
            &[(agent.agent_id.clone(), version, runner)],
        )
        .await?
        .pop()
        .unwrap_or_default();
        let completed = self
            .storage
            .connections
            .setup_completed_at(&agent.agent_id, user)
            .await?;
        let proto = setup_to_proto(&agent.agent_id, version, &setups, completed);
        Ok((setups, proto))
    }
}

#[tonic::async_trait]
impl ConnectionsService for Connections {
    async fn create_api_key_connection(
        &self,
        request: Request<pb::CreateApiKeyConnectionRequest>,
    ) -> Result<Response<pb::CreateApiKeyConnectionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let provider = self.provider(&request.provider, Kind::ApiKey)?;
        let label = tenancy::rules::display_name("label", &request.label)?;
        let key = api_key(&request.api_key)?;
        let now = self.storage.clock.now_micros();
        let expires_at = request.expire_time.as_ref().map(micros_of);
        if expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("expire_time", "must be in the future").into());
        }
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
        self.storage
            .connections
            .insert_connection(&row)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::CreateApiKeyConnectionResponse {
            connection: Some(connection_to_proto(&row, now)),
        }))
    }

    async fn start_o_auth_connection(
        &self,
        request: Request<pb::StartOAuthConnectionRequest>,
    ) -> Result<Response<pb::StartOAuthConnectionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let provider = self.provider(&request.provider, Kind::OAuth)?;
        let label = tenancy::rules::display_name("label", &request.label)?;
        let (authorize_url, state, expires_at) =
            self.start_flow(user, provider, &label, None).await?;
        Ok(Response::new(pb::StartOAuthConnectionResponse {
            authorize_url,
            state,
            expire_time: Some(timestamp(expires_at)),
        }))
    }

    async fn complete_o_auth_connection(
        &self,
        request: Request<pb::CompleteOAuthConnectionRequest>,
    ) -> Result<Response<pb::CompleteOAuthConnectionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let start_again = |why: &str| {
            Error::invalid(
                "state",
                format!("{why}: start again with StartOAuthConnection"),
            )
        };
        if request.state.is_empty() {
            return Err(Error::invalid("state", "must not be empty").into());
        }
        let digest = secret_digest(&request.state);
        // Another user's flow reads exactly like an unknown one.
        let flow = self
            .storage
            .connections
            .take_flow(&digest)
            .await
            .map_err(Error::from)?
            .filter(|flow| flow.user_id == user)
            .ok_or_else(|| start_again("unknown OAuth state"))?;
        if flow.used_at.is_some() {
            return Err(start_again("this OAuth state was already used").into());
        }
        let now = self.storage.clock.now_micros();
        if flow.expires_at <= now {
            return Err(start_again("this OAuth flow expired").into());
        }
        if !request.error.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "{} refused the authorization: start again",
                flow.provider
            ))
            .into());
        }
        if request.code.is_empty() {
            return Err(Error::invalid("code", "must not be empty unless error is set").into());
        }
        let provider = self.provider(&flow.provider, Kind::OAuth)?;
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
                ))
                .into());
            }
            Err(TokenError::Unreachable(reason)) => {
                return Err(Error::Unavailable(format!(
                    "{} could not be reached ({reason}); start again later",
                    flow.provider
                ))
                .into());
            }
        };
        let row = match &flow.connection_id {
            Some(id) => {
                let material = self.credentials.seal_tokens(id, &tokens, &config.scopes)?;
                self.storage
                    .connections
                    .replace_material(id, &material)
                    .await
                    .map_err(Error::from)?;
                self.own(user, id).await?
            }
            None => {
                let id = self.storage.connections.new_connection_id();
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
                self.storage
                    .connections
                    .insert_connection(&row)
                    .await
                    .map_err(Error::from)?;
                row
            }
        };
        Ok(Response::new(pb::CompleteOAuthConnectionResponse {
            connection: Some(connection_to_proto(&row, now)),
        }))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let page = Page::of(
            request.page_size,
            &request.page_token,
            format!("connections:{user}:{}", request.provider),
        )?;
        let rows = self
            .storage
            .connections
            .connections_of(user, &request.provider, page.after(), page.limit())
            .await
            .map_err(Error::from)?;
        let now = self.storage.clock.now_micros();
        let (rows, next_page_token) = page.split(rows, |row| row.id.clone());
        Ok(Response::new(pb::ListConnectionsResponse {
            connections: rows.iter().map(|r| connection_to_proto(r, now)).collect(),
            next_page_token,
        }))
    }

    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::GetConnectionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let row = self.own(user, &request.get_ref().connection_id).await?;
        Ok(Response::new(pb::GetConnectionResponse {
            connection: Some(connection_to_proto(&row, self.storage.clock.now_micros())),
        }))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Result<Response<pb::DeleteConnectionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let id = ids::parse("connection_id", &request.get_ref().connection_id)?;
        let removed = self
            .storage
            .connections
            .delete_connection(user, &id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(format!("connection {id}")))?;
        Ok(Response::new(pb::DeleteConnectionResponse {
            removed_binding_count: i32::try_from(removed).unwrap_or(i32::MAX),
        }))
    }

    async fn test_connection(
        &self,
        request: Request<pb::TestConnectionRequest>,
    ) -> Result<Response<pb::TestConnectionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let row = self.own(user, &request.get_ref().connection_id).await?;
        let now = self.storage.clock.now_micros();
        let (status, message) = row.status_at(now);
        let (ok, message) = if status == ConnStatus::Expired {
            (false, message)
        } else {
            match self.credentials.fresh_secret(&row).await {
                Ok(secret) => {
                    let provider =
                        self.credentials
                            .providers
                            .get(&row.provider)
                            .ok_or_else(|| {
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
                Err(other) => return Err(other.into()),
            }
        };
        let recorded = if ok {
            ConnStatus::Live
        } else if status == ConnStatus::Expired {
            ConnStatus::Expired
        } else {
            ConnStatus::Failed
        };
        self.storage
            .connections
            .record_check(&row.id, recorded, if ok { "" } else { &message })
            .await
            .map_err(Error::from)?;
        let row = self.own(user, &row.id).await?;
        Ok(Response::new(pb::TestConnectionResponse {
            ok,
            message,
            connection: Some(connection_to_proto(&row, self.storage.clock.now_micros())),
        }))
    }

    async fn reconnect_connection(
        &self,
        request: Request<pb::ReconnectConnectionRequest>,
    ) -> Result<Response<pb::ReconnectConnectionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let row = self.own(user, &request.connection_id).await?;
        match row.kind {
            Kind::ApiKey => {
                let key = api_key(&request.api_key)?;
                let material = Material {
                    secret: self
                        .credentials
                        .secrets
                        .seal(key, &ConnectionRow::secret_context(&row.id))?,
                    refresh: None,
                    access_expires_at: None,
                    expires_at: None,
                    scopes: Vec::new(),
                };
                self.storage
                    .connections
                    .replace_material(&row.id, &material)
                    .await
                    .map_err(Error::from)?;
                let row = self.own(user, &row.id).await?;
                Ok(Response::new(pb::ReconnectConnectionResponse {
                    connection: Some(connection_to_proto(&row, self.storage.clock.now_micros())),
                    ..Default::default()
                }))
            }
            Kind::OAuth => {
                if !request.api_key.is_empty() {
                    return Err(Error::invalid(
                        "api_key",
                        "an OAuth connection reconnects through its provider: send no key",
                    )
                    .into());
                }
                let provider = self.provider(&row.provider, Kind::OAuth)?;
                let (authorize_url, state, _) = self
                    .start_flow(user, provider, &row.label, Some(row.id.clone()))
                    .await?;
                Ok(Response::new(pb::ReconnectConnectionResponse {
                    connection: Some(connection_to_proto(&row, self.storage.clock.now_micros())),
                    authorize_url,
                    state,
                }))
            }
        }
    }

    async fn get_agent_setup(
        &self,
        request: Request<pb::GetAgentSetupRequest>,
    ) -> Result<Response<pb::GetAgentSetupResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let (agent, version, runner) = self
            .configurable(principal, &request.get_ref().agent_id)
            .await?;
        let (_, setup) = self.agent_setup(user, &agent, version, runner).await?;
        Ok(Response::new(pb::GetAgentSetupResponse {
            setup: Some(setup),
        }))
    }

    async fn bind_integration(
        &self,
        request: Request<pb::BindIntegrationRequest>,
    ) -> Result<Response<pb::BindIntegrationResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let (agent, version, runner) = self.configurable(principal, &request.agent_id).await?;
        let (setups, _) = self.agent_setup(user, &agent, version, runner).await?;
        let integration = setups
            .iter()
            .find(|s| s.integration.key == request.integration_key)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "integration key (GetAgentSetup lists those of agent {})",
                    agent.agent_id
                ))
            })?;
        let connection = self.own(user, &request.connection_id).await?;
        if connection.provider != integration.integration.provider {
            return Err(Error::invalid(
                "connection_id",
                format!(
                    "the connection is a {} connection; {} needs {}",
                    connection.provider,
                    integration.integration.key,
                    integration.integration.provider
                ),
            )
            .into());
        }
        if !integration.binding_required {
            return Err(Error::FailedPrecondition(format!(
                "{} uses the builder's connection; there is nothing for you to bind",
                integration.integration.key
            ))
            .into());
        }
        self.storage
            .connections
            .bind(
                &agent.agent_id,
                user,
                &integration.integration.key,
                &connection.id,
            )
            .await
            .map_err(Error::from)?;
        let (_, setup) = self.agent_setup(user, &agent, version, runner).await?;
        Ok(Response::new(pb::BindIntegrationResponse {
            setup: Some(setup),
        }))
    }

    async fn unbind_integration(
        &self,
        request: Request<pb::UnbindIntegrationRequest>,
    ) -> Result<Response<pb::UnbindIntegrationResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let (agent, version, runner) = self.configurable(principal, &request.agent_id).await?;
        let (setups, _) = self.agent_setup(user, &agent, version, runner).await?;
        if setups
            .iter()
            .all(|s| s.integration.key != request.integration_key)
        {
            return Err(Error::not_found(format!(
                "integration key (GetAgentSetup lists those of agent {})",
                agent.agent_id
            ))
            .into());
        }
        self.storage
            .connections
            .unbind(&agent.agent_id, user, &request.integration_key)
            .await
            .map_err(Error::from)?;
        let (_, setup) = self.agent_setup(user, &agent, version, runner).await?;
        Ok(Response::new(pb::UnbindIntegrationResponse {
            setup: Some(setup),
        }))
    }

    async fn complete_agent_setup(
        &self,
        request: Request<pb::CompleteAgentSetupRequest>,
    ) -> Result<Response<pb::CompleteAgentSetupResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let (agent, version, runner) = self
            .configurable(principal, &request.get_ref().agent_id)
            .await?;
        let (setups, _) = self.agent_setup(user, &agent, version, runner).await?;
        if setup::ready(&setups) {
            self.storage
                .connections
                .complete_setup(&agent.agent_id, user)
                .await
                .map_err(Error::from)?;
        }
        let (_, setup) = self.agent_setup(user, &agent, version, runner).await?;
        Ok(Response::new(pb::CompleteAgentSetupResponse {
            setup: Some(setup),
        }))
    }
}
