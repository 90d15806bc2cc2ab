//! Turns a client's credential into a signed Principal.

use agentshare_kit::Error;
use agentshare_kit::clock::Clock;
use agentshare_kit::config::{BadSetting, Config};
use agentshare_kit::identity::{
    API_KEY_PREFIX, GRANT_SCOPE_DENIED, GrantKind, HeldGrant, Identity, Memberships, OrgRole,
    Principal, PrincipalKind, RUN_TOKEN_PREFIX, RunScope,
};
use agentshare_kit::secret::Secret;
use agentshare_kit::server::ServiceChannel;
use agentshare_kit::session::SessionVerifier;
use agentshare_proto::sharing::v1::{
    self as sharing, access_internal_service_client::AccessInternalServiceClient,
};
use agentshare_proto::store::v1::{
    self as store, store_internal_service_client::StoreInternalServiceClient,
};
use tonic::metadata::MetadataMap;

pub const ORG_HEADER: &str = "x-agentshare-org";
pub const WORKSPACE_HEADER: &str = "x-agentshare-workspace";
/// A share token (grant), alone or beside a user credential.
pub const GRANT_HEADER: &str = "x-agentshare-grant-token";

/// `amr` values that name a second factor (RFC 8176).
const SECOND_FACTORS: &[&str] = &[
    "otp", "mfa", "hwk", "swk", "sms", "fpt", "face", "iris", "retina", "sc", "pop",
];

#[derive(Clone)]
pub struct Authenticator {
    verifier: SessionVerifier,
    sharing: AccessInternalServiceClient<ServiceChannel>,
    /// Where a run token's run is looked up, on every use.
    invocations: StoreInternalServiceClient<ServiceChannel>,
    identity: Identity,
    clock: Clock,
}

impl Authenticator {
    pub fn new(
        config: &Config,
        sharing: ServiceChannel,
        store: ServiceChannel,
        identity: Identity,
    ) -> Result<Self, BadSetting> {
        let clock = identity.clock().clone();
        let auth = &config.auth;
        let verifier = if !auth.jwks_file.as_os_str().is_empty() {
            let json = std::fs::read(&auth.jwks_file)
                .map_err(|e| BadSetting::new("auth.jwks_file", format!("cannot read: {e}")))?;
            SessionVerifier::from_jwks(&json, &auth.issuer, &auth.audience)
                .map_err(|e| BadSetting::new("auth.jwks_file", e))?
        } else if !auth.public_key_file.as_os_str().is_empty() {
            let pem = std::fs::read(&auth.public_key_file).map_err(|e| {
                BadSetting::new("auth.public_key_file", format!("cannot read: {e}"))
            })?;
            SessionVerifier::from_public_pem(&pem, &auth.issuer, &auth.audience)
                .map_err(|e| BadSetting::new("auth.public_key_file", e))?
        } else {
            let file = config.hs256_key_file();
            let secret = std::fs::read(&file)
                .map(Secret::<[u8]>::from)
                .map_err(|e| {
                    BadSetting::new(
                        "auth.hs256_key_file",
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?;
            if secret.expose().len() < 32 {
                return Err(BadSetting::new(
                    "auth.hs256_key_file",
                    "the secret must be at least 32 bytes",
                ));
            }
            SessionVerifier::hs256(secret.expose(), &auth.issuer, &auth.audience)
        };
        Ok(Self {
            verifier,
            sharing: AccessInternalServiceClient::new(sharing),
            invocations: StoreInternalServiceClient::new(store),
            identity,
            clock,
        })
    }

    /// The Principal of a call to `path`: a share token's holder when the
    /// call carries one (see [`Self::authenticate_grant`]), else the user
    /// of the bearer credential (a session JWT or an API key), with the org
    /// and workspace of the request resolved against membership.
    pub async fn authenticate(
        &self,
        metadata: &MetadataMap,
        path: &str,
    ) -> Result<Principal, tonic::Status> {
        if let Some(token) = metadata.get(GRANT_HEADER) {
            let token = token
                .to_str()
                .map_err(|_| Error::Unauthenticated("malformed share token header".into()))?;
            return self.authenticate_grant(metadata, token.trim(), path).await;
        }
        if let Ok(token) = bearer(metadata)
            && token.starts_with(RUN_TOKEN_PREFIX)
        {
            return self.authenticate_run(token, path).await;
        }
        self.authenticate_user(metadata, true).await
    }

    /// An agent's runtime calling a workspace tool with its run token. The
    /// token is checked against its run on every call, so it dies with the
    /// run on every replica; the services it reaches then check the run's
    /// Principal afresh (a revoked grant, an unshare), and sharing holds it
    /// to the run's store partition.
    async fn authenticate_run(&self, token: &str, path: &str) -> Result<Principal, tonic::Status> {
        let rejected = |why: &str| Error::Unauthenticated(format!("run token rejected: {why}"));
        let grant = self
            .identity
            .verify_run_token(token)
            .map_err(|why| rejected(&why))?;
        if !path.starts_with("/agentshare.store.v1.WorkspaceStoreService/") {
            return Err(Error::PermissionDenied(
                "a run token calls the five workspace tools only".into(),
            )
            .into());
        }
        let invocation = self
            .invocations
            .clone()
            .get_invocation(store::GetInvocationRequest {
                invocation_id: grant.run.clone(),
            })
            .await
            .map_err(|status| match Error::from(status) {
                Error::NotFound(_) => rejected("unknown run"),
                other => other,
            })?
            .into_inner()
            .invocation
            .unwrap_or_default();
        if invocation.status != store::InvocationStatus::Running as i32 {
            return Err(rejected("the run has ended").into());
        }
        let mut principal = grant.principal;
        principal.token = String::new();
        principal.run = Some(RunScope {
            run_id: grant.run,
            agent_id: grant.agent_id,
            partition: grant.partition,
            origin: grant.origin,
        });
        Ok(principal)
    }

    /// A share token's holder. The grant is read fresh on every call (no
    /// cache), so a revocation shows on the very next one, on every
    /// replica. A grant's principal may call only what running its agent
    /// needs: Invoke, its sessions, the agent's tools and its own setup.
    async fn authenticate_grant(
        &self,
        metadata: &MetadataMap,
        token: &str,
        path: &str,
    ) -> Result<Principal, tonic::Status> {
        if token.is_empty() {
            return Err(Error::Unauthenticated("share token rejected: empty token".into()).into());
        }
        let grant = self
            .sharing
            .clone()
            .authenticate_grant_token(sharing::AuthenticateGrantTokenRequest {
                token: token.to_string(),
            })
            .await?
            .into_inner();
        let rejected = |why: &str| Error::Unauthenticated(format!("share token rejected: {why}"));
        match sharing::GrantState::try_from(grant.state).unwrap_or(sharing::GrantState::Unspecified)
        {
            sharing::GrantState::Active => {}
            sharing::GrantState::Expired => return Err(rejected("token expired").into()),
            sharing::GrantState::Revoked => return Err(rejected("token revoked").into()),
            sharing::GrantState::Ended => {
                return Err(rejected("grant ended: the agent was deleted").into());
            }
            sharing::GrantState::Unspecified => return Err(rejected("unknown state").into()),
        }
        if !grant_may_call(path) {
            return Err(Error::PermissionDenied(GRANT_SCOPE_DENIED.into()).into());
        }
        let invoke = grant.kind == sharing::GrantKind::Invoke as i32;
        let user = if metadata.get("authorization").is_some() {
            Some(self.authenticate_user(metadata, false).await?)
        } else {
            None
        };
        if invoke && user.is_none() {
            return Err(rejected(
                "an INVOKE share token needs a signed-in user as well: send `authorization: Bearer <session or API key>`",
            )
            .into());
        }
        let mut principal = Principal::user(String::new());
        principal.kind = PrincipalKind::Grant;
        principal.user_id = user.as_ref().and_then(|u| u.user_id.clone());
        principal.session_id = user.as_ref().and_then(|u| u.session_id.clone());
        principal.api_key_id = user.and_then(|u| u.api_key_id);
        principal.org_id = non_empty(grant.org_id);
        principal.grant = Some(HeldGrant {
            id: grant.grant_id,
            kind: if invoke {
                GrantKind::Invoke
            } else {
                GrantKind::Delegate
            },
            agent_id: grant.agent_id,
        });
        Ok(principal)
    }

    /// The agent behind a share token, and whether the grant works now: for
    /// naming the grant's one MCP tool. Read fresh, like every grant check.
    pub async fn grant_of(&self, token: &str) -> Result<GrantedAgent, tonic::Status> {
        let grant = self
            .sharing
            .clone()
            .authenticate_grant_token(sharing::AuthenticateGrantTokenRequest {
                token: token.trim().to_string(),
            })
            .await?
            .into_inner();
        Ok(GrantedAgent {
            active: grant.state == sharing::GrantState::Active as i32,
            agent_id: grant.agent_id,
            agent_name: grant.agent_name,
            agent_description: grant.agent_description,
        })
    }

    /// The user of the bearer credential. `scoped` resolves the org and
    /// workspace the request names; a grant call needs only who the user is.
    async fn authenticate_user(
        &self,
        metadata: &MetadataMap,
        scoped: bool,
    ) -> Result<Principal, tonic::Status> {
        let token = bearer(metadata)?;
        let header = |name: &str| {
            if !scoped {
                return String::new();
            }
            metadata
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        if token.starts_with(API_KEY_PREFIX) {
            let key = self
                .sharing
                .clone()
                .authenticate_api_key(sharing::AuthenticateApiKeyRequest {
                    secret: token.to_string(),
                    requested_org_id: header(ORG_HEADER),
                    requested_workspace_id: header(WORKSPACE_HEADER),
                })
                .await?
                .into_inner();
            let mut principal = Principal::user(key.user_id);
            principal.org_id = non_empty(key.org_id);
            principal.org_role = OrgRole::of_proto(key.org_role);
            principal.workspace_id = non_empty(key.workspace_id);
            principal.workspaces_enabled = key.workspaces_enabled;
            // An API key never passes step-up: `step_up_at` stays unset.
            principal.api_key_id = Some(key.api_key_id);
            return Ok(principal);
        }
        let claims = self.verifier.verify(token, &self.clock)?;
        let resolved = self
            .sharing
            .clone()
            .resolve_caller(sharing::ResolveCallerRequest {
                subject: claims.sub.clone(),
                email: claims.email.clone().unwrap_or_default(),
                display_name: claims.name.clone().unwrap_or_default(),
                requested_org_id: header(ORG_HEADER),
                requested_workspace_id: header(WORKSPACE_HEADER),
                session_id: claims.sid.clone().unwrap_or_default(),
            })
            .await?
            .into_inner();
        let second_factor = claims
            .amr
            .iter()
            .any(|m| SECOND_FACTORS.contains(&m.as_str()));
        let mut principal = Principal::user(resolved.user_id);
        principal.org_id = non_empty(resolved.org_id);
        principal.org_role = OrgRole::of_proto(resolved.org_role);
        principal.workspace_id = non_empty(resolved.workspace_id);
        principal.workspaces_enabled = resolved.workspaces_enabled;
        principal.org_choice_required = resolved.org_choice_required;
        if principal.org_id.is_some() {
            principal.memberships = Some(Memberships {
                workspace_ids: resolved.workspace_ids,
                default_workspace_id: resolved.default_workspace_id,
            });
        }
        principal.step_up_at = if second_factor {
            claims.auth_time
        } else {
            None
        };
        principal.session_id = claims.sid;
        Ok(principal)
    }
}

/// A share token's agent (see [`Authenticator::grant_of`]).
pub struct GrantedAgent {
    pub active: bool,
    pub agent_id: String,
    pub agent_name: String,
    pub agent_description: String,
}

/// What a share token's holder may call.
fn grant_may_call(path: &str) -> bool {
    const SERVICES: &[&str] = &[
        "/agentshare.gateway.v1.InvokeService/",
        "/agentshare.store.v1.SessionsService/",
        "/agentshare.store.v1.WorkspaceStoreService/",
    ];
    const METHODS: &[&str] = &[
        "/agentshare.sharing.v1.AccessService/ResolveInvocation",
        "/agentshare.sharing.v1.ConnectionsService/GetAgentSetup",
        "/agentshare.sharing.v1.ConnectionsService/BindIntegration",
        "/agentshare.sharing.v1.ConnectionsService/UnbindIntegration",
        "/agentshare.sharing.v1.ConnectionsService/CompleteAgentSetup",
    ];
    SERVICES.iter().any(|s| path.starts_with(s)) || METHODS.contains(&path)
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn bearer(metadata: &MetadataMap) -> Result<&str, Error> {
    let missing = || {
        Error::Unauthenticated(
            "missing credential: send `authorization: Bearer <token>` (mint a dev token with `agentshare token --user NAME`)"
                .into(),
        )
    };
    let value = metadata.get("authorization").ok_or_else(missing)?;
    let value = value
        .to_str()
        .map_err(|_| Error::Unauthenticated("malformed authorization header".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            Error::Unauthenticated(
                "malformed authorization header: expected `Bearer <token>`".into(),
            )
        })?
        .trim();
    if token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}
