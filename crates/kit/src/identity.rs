//! Who is calling: service identities and the signed user Principal.
//!
//! Every service holds an Ed25519 key pair. A service-to-service call carries
//! two short-lived EdDSA JWTs in metadata:
//! - `x-agentshare-service`: the calling service, addressed to the target;
//! - `x-agentshare-principal`: the user (or grant) the call is made for,
//!   signed by the gateway or the scheduler only, with an internal audience so
//!   a service can pass it on to the services it calls for that request.
//!
//! [`IdentityLayer`] verifies both on the server and rejects what it cannot
//! verify; [`Outbound`] attaches the service identity on the client.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::clock::Clock;
use crate::error::Error;

pub const SERVICE_HEADER: &str = "x-agentshare-service";
/// Every API key secret starts with this, so the gateway tells keys from
/// session JWTs without trying both.
pub const API_KEY_PREFIX: &str = "ask_";
/// What a share token's holder reads when they call anything but running
/// its agent: a valid credential that is not allowed there, so
/// PERMISSION_DENIED, wherever it is refused.
pub const GRANT_SCOPE_DENIED: &str =
    "a share token allows running its agent only: Invoke, your sessions and the agent's tools";
pub const PRINCIPAL_HEADER: &str = "x-agentshare-principal";
/// The audience of every Principal: any agentshare service, never a client.
pub const PRINCIPAL_AUDIENCE: &str = "agentshare-internal";
/// A Principal lives for one request and the calls it fans out into.
pub const PRINCIPAL_TTL_SECS: i64 = 60;
const SERVICE_TOKEN_TTL_SECS: i64 = 60;
/// A cached service token is replaced this long before it expires.
const SERVICE_TOKEN_REFRESH_SECS: i64 = 20;
/// Allowed drift between replicas' clocks.
const LEEWAY_SECS: i64 = 5;
/// A signed Principal is reused for an identical caller while at least this
/// long of its life remains, so a run that starts with it still has most of
/// a minute to pass it on.
const PRINCIPAL_REUSE_MIN_LEFT_SECS: i64 = 50;
/// Verified tokens remembered at most; past it the memory starts afresh.
const VERIFIED_CAPACITY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    Gateway,
    Registry,
    Sharing,
    Store,
    Scheduler,
}

crate::enum_names!(ServiceName {
    Gateway => "gateway",
    Registry => "registry",
    Sharing => "sharing",
    Store => "store",
    Scheduler => "scheduler",
});

impl ServiceName {
    /// Only these may sign a user Principal: the gateway for clients, the
    /// scheduler for automations it fires on a user's behalf.
    pub fn may_sign_principals(self) -> bool {
        matches!(self, Self::Gateway | Self::Scheduler)
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Our own signing key and every peer's public key.
pub struct KeyRing {
    me: ServiceName,
    signing: EncodingKey,
    verifying: HashMap<ServiceName, DecodingKey>,
}

impl KeyRing {
    /// Loads `<me>.key` and every `<service>.pub` from `dir`.
    pub fn load(dir: &Path, me: ServiceName) -> Result<Self, String> {
        let read = |file: String| {
            let path = dir.join(&file);
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let signing = EncodingKey::from_ed_pem(&read(format!("{me}.key"))?)
            .map_err(|e| format!("{me}.key is not an Ed25519 PKCS#8 PEM key: {e}"))?;
        let mut verifying = HashMap::new();
        for peer in ServiceName::ALL {
            let file = format!("{peer}.pub");
            let pem = match read(file.clone()) {
                Ok(pem) => pem,
                // A missing peer key means that peer is simply not trusted.
                Err(_) => continue,
            };
            let key = DecodingKey::from_ed_pem(&pem)
                .map_err(|e| format!("{file} is not an Ed25519 public key PEM: {e}"))?;
            verifying.insert(peer, key);
        }
        Ok(Self {
            me,
            signing,
            verifying,
        })
    }

    pub fn me(&self) -> ServiceName {
        self.me
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.signing)
            .map_err(Error::internal)
    }

    fn verify<T: for<'de> Deserialize<'de>>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<(ServiceName, T), String> {
        let issuer: IssuerOnly = peek_claims(token).ok_or("not a JWT")?;
        let issuer = ServiceName::parse(&issuer.iss).ok_or("issued by an unknown service")?;
        let key = self
            .verifying
            .get(&issuer)
            .ok_or_else(|| format!("no public key configured for {issuer}"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer.as_str()]);
        // Expiry is checked against our Clock, so tests can move time.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        let data =
            jsonwebtoken::decode::<T>(token, key, &validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    format!("signature does not verify against {issuer}'s key")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    "addressed to another audience".to_string()
                }
                _ => e.to_string(),
            })?;
        Ok((issuer, data.claims))
    }
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: String,
}

/// Reads the claims of a JWT without verifying it, to pick the key.
fn peek_claims<T: for<'de> Deserialize<'de>>(token: &str) -> Option<T> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A role in an org, as the Principal carries it (its lowercase name on
/// the wire) and as every service decides by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    Owner,
    Admin,
    Member,
    Viewer,
}

crate::enum_names!(OrgRole {
    Owner => "owner",
    Admin => "admin",
    Member => "member",
    Viewer => "viewer",
});

impl OrgRole {
    /// The role a client names; `None` for an unspecified or unknown one.
    pub fn of_proto(role: i32) -> Option<Self> {
        match agentshare_proto::sharing::v1::OrgRole::try_from(role).ok()? {
            agentshare_proto::sharing::v1::OrgRole::Unspecified => None,
            agentshare_proto::sharing::v1::OrgRole::Owner => Some(Self::Owner),
            agentshare_proto::sharing::v1::OrgRole::Admin => Some(Self::Admin),
            agentshare_proto::sharing::v1::OrgRole::Member => Some(Self::Member),
            agentshare_proto::sharing::v1::OrgRole::Viewer => Some(Self::Viewer),
        }
    }

    pub fn to_proto(self) -> agentshare_proto::sharing::v1::OrgRole {
        match self {
            Self::Owner => agentshare_proto::sharing::v1::OrgRole::Owner,
            Self::Admin => agentshare_proto::sharing::v1::OrgRole::Admin,
            Self::Member => agentshare_proto::sharing::v1::OrgRole::Member,
            Self::Viewer => agentshare_proto::sharing::v1::OrgRole::Viewer,
        }
    }

    /// Owners and admins run the org: they see every workspace, manage
    /// members and read the audit trail.
    pub fn manages_org(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// A stored role: one of the four names.
impl TryFrom<String> for OrgRole {
    type Error = String;

    fn try_from(role: String) -> Result<Self, String> {
        Self::parse(&role).ok_or_else(|| format!("unknown org role {role:?}"))
    }
}

/// What a share grant lets its holder do (DESIGN.md, "Access model
/// (sharing)"): run the agent with their own plan, or with the owner's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantKind {
    /// The holder runs the agent with their own connections and bill.
    Invoke,
    /// The holder runs the agent as its owner: the owner's connections and
    /// bill, with no user needed.
    Delegate,
}

/// The share grant a caller holds: its id, what it lets them do, and the
/// one agent it reaches. On the wire its fields sit beside the Principal's
/// (`grant_id`, `grant_kind`, `grant_agent_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldGrant {
    #[serde(rename = "grant_id")]
    pub id: String,
    #[serde(rename = "grant_kind")]
    pub kind: GrantKind,
    #[serde(rename = "grant_agent_id")]
    pub agent_id: String,
}

/// A user's workspaces in one org, as resolved for one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memberships {
    /// Every workspace of the org the user belongs to, the org's default
    /// first.
    pub workspace_ids: Vec<String>,
    /// The org's default workspace.
    pub default_workspace_id: String,
}

/// What kind of caller a Principal speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A signed-in user (session or API key).
    User,
    /// A share-grant holder; may also carry a user.
    Grant,
}

/// The caller of one request, as the gateway (or scheduler) resolved it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// The caller's role in `org_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_role: Option<OrgRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub workspaces_enabled: bool,
    /// The caller's workspaces in `org_id`, resolved with the rest of this
    /// Principal for this call; absent when its signer did not resolve
    /// them (the scheduler), and then read where they are needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memberships: Option<Memberships>,
    /// The user belongs to several orgs and named none.
    #[serde(default)]
    pub org_choice_required: bool,
    /// When the user last passed a second factor (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up_at: Option<i64>,
    /// The share grant the caller holds, for a grant holder.
    #[serde(flatten)]
    pub grant: Option<HeldGrant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Set when the caller authenticated with an API key, which never
    /// passes step-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// Set when the caller is an agent's runtime presenting a run token:
    /// the run it belongs to, which bounds what it may touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunScope>,
    /// The signed form, kept so the Principal can be passed on unchanged.
    #[serde(skip)]
    pub token: String,
}

impl Principal {
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            kind: PrincipalKind::User,
            user_id: Some(user_id.into()),
            org_id: None,
            org_role: None,
            workspace_id: None,
            workspaces_enabled: false,
            memberships: None,
            org_choice_required: false,
            step_up_at: None,
            grant: None,
            session_id: None,
            api_key_id: None,
            run: None,
            token: String::new(),
        }
    }

    /// The Principal the identity layer verified for this request.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Principal, Error> {
        request
            .extensions()
            .get::<Principal>()
            .ok_or_else(Self::missing)
    }

    /// The refusal of a call that reached a service without a caller.
    pub fn missing() -> Error {
        Error::Unauthenticated("this call needs a user: send a session token or API key".into())
    }

    /// The signed-in user, or UNAUTHENTICATED for a caller without one.
    pub fn require_user(&self) -> Result<&str, Error> {
        self.user_id.as_deref().ok_or_else(|| {
            Error::Unauthenticated(
                "this call needs a signed-in user: send a session token or API key".into(),
            )
        })
    }

    /// The org of the request, or a message saying how to name one.
    pub fn require_org(&self) -> Result<&str, Error> {
        if let Some(org) = self.org_id.as_deref() {
            return Ok(org);
        }
        if self.org_choice_required {
            return Err(Error::invalid(
                "x-agentshare-org",
                "you belong to several orgs: name one in the x-agentshare-org header",
            ));
        }
        Err(Error::FailedPrecondition(
            "you belong to no org yet: create one with TenancyService.CreateOrg".into(),
        ))
    }

    /// Adds this Principal to an outgoing request, unchanged.
    pub fn forward<T>(&self, request: &mut tonic::Request<T>) {
        if let Ok(value) = self.token.parse() {
            request.metadata_mut().insert(PRINCIPAL_HEADER, value);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PrincipalClaims {
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    #[serde(flatten)]
    principal: Principal,
}

#[derive(Serialize, Deserialize)]
struct ServiceClaims {
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Every run token starts with this, so the gateway tells it from a session
/// JWT or an API key without trying each.
pub const RUN_TOKEN_PREFIX: &str = "asr_";
/// The audience of run tokens: the gateway's tool calls, nothing else.
const RUN_TOKEN_AUDIENCE: &str = "agentshare-run";

/// The run a runtime's call belongs to: only its agent, and of that agent
/// only its store partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunScope {
    pub run_id: String,
    pub agent_id: String,
    pub partition: String,
    /// What the run's writes record as their writer, beyond its Principal.
    #[serde(flatten)]
    pub origin: RunOrigin,
}

/// Where a run came from, as far as its writes record it: the conversation
/// session it continues and, for an automation, its run. Both are absent
/// from tokens minted before they existed, which then read as neither.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOrigin {
    /// The session (conversation) of the run; an anonymous visitor's writes
    /// are told apart by it. Not a credential: reading it needs its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The automation run, when the scheduler fired this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automation_run_id: Option<String>,
}

/// What a run token binds: one run of one agent, as one Principal, over one
/// store partition. The runtime holds it for the length of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunGrant {
    /// The invocation the token belongs to; the token dies with it.
    pub run: String,
    pub agent_id: String,
    /// The store partition the plan chose; a tool call resolving to any
    /// other is refused.
    pub partition: String,
    pub principal: Principal,
    #[serde(flatten)]
    pub origin: RunOrigin,
}

#[derive(Serialize, Deserialize)]
struct RunClaims {
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    #[serde(flatten)]
    grant: RunGrant,
}

/// Signs and verifies on behalf of one service.
///
/// Signing and verifying Ed25519 was a tenth of a call's cost, paid on
/// every hop, so both are remembered: a token this service signed is reused
/// for the same claims until near its expiry, and a token it verified is
/// known by its exact bytes until it expires. What a token says is never
/// cached apart from the token: a Principal resolved afresh with other
/// claims is signed afresh, so caching never outlives a change of role,
/// membership or grant.
#[derive(Clone)]
pub struct Identity {
    keys: Arc<KeyRing>,
    clock: Clock,
    signed_services: Arc<Mutex<Remembered<ServiceName, String>>>,
    signed_principals: Arc<Mutex<Remembered<String, String>>>,
    verified_services: Arc<Mutex<Remembered<String, ServiceName>>>,
    verified_principals: Arc<Mutex<Remembered<String, Principal>>>,
}

/// Values by key with the life (`iat`, `exp`) of the token they belong to,
/// at most [`VERIFIED_CAPACITY`] of them.
struct Remembered<K, V> {
    entries: HashMap<K, (V, i64, i64)>,
}

impl<K, V> Default for Remembered<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Remembered<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<(V, i64, i64)>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.entries.get(key).cloned()
    }

    fn insert(&mut self, key: K, value: V, iat: i64, exp: i64) {
        if self.entries.len() >= VERIFIED_CAPACITY {
            self.entries.clear();
        }
        self.entries.insert(key, (value, iat, exp));
    }
}

fn remembered<T>(memory: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic mid-insert leaves at worst a missing entry: still usable.
    memory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Identity {
    pub fn new(keys: KeyRing, clock: Clock) -> Self {
        Self {
            keys: Arc::new(keys),
            clock,
            signed_services: Arc::default(),
            signed_principals: Arc::default(),
            verified_services: Arc::default(),
            verified_principals: Arc::default(),
        }
    }

    pub fn me(&self) -> ServiceName {
        self.keys.me
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Signs a Principal for one request. Only the gateway and the scheduler
    /// may; for any other service this is a bug.
    pub fn sign_principal(&self, principal: &Principal) -> Result<String, Error> {
        if !self.me().may_sign_principals() {
            return Err(Error::internal(format!(
                "{} may not sign principals",
                self.me()
            )));
        }
        let claims = serde_json::to_string(principal).map_err(Error::internal)?;
        self.signed(
            &self.signed_principals,
            claims,
            PRINCIPAL_REUSE_MIN_LEFT_SECS,
            PRINCIPAL_TTL_SECS,
            |iat, exp| {
                self.keys.sign(&PrincipalClaims {
                    iss: self.me().to_string(),
                    aud: PRINCIPAL_AUDIENCE.into(),
                    iat,
                    exp,
                    principal: principal.clone(),
                })
            },
        )
    }

    /// A run token for the runtime, valid until `expires_at` (Unix
    /// seconds). Only the gateway issues them: it alone runs agents.
    pub fn sign_run_token(&self, grant: &RunGrant, expires_at: i64) -> Result<String, Error> {
        if self.me() != ServiceName::Gateway {
            return Err(Error::internal(format!(
                "{} may not issue run tokens",
                self.me()
            )));
        }
        let token = self.keys.sign(&RunClaims {
            iss: self.me().to_string(),
            aud: RUN_TOKEN_AUDIENCE.into(),
            iat: self.clock.now_secs(),
            exp: expires_at,
            grant: grant.clone(),
        })?;
        Ok(format!("{RUN_TOKEN_PREFIX}{token}"))
    }

    /// Verifies a run token issued by a gateway and not yet expired. Whether
    /// its run still goes on is the caller's to check.
    pub fn verify_run_token(&self, token: &str) -> Result<RunGrant, String> {
        let jwt = token
            .strip_prefix(RUN_TOKEN_PREFIX)
            .ok_or("not a run token")?;
        let (signer, claims) = self.keys.verify::<RunClaims>(jwt, RUN_TOKEN_AUDIENCE)?;
        if signer != ServiceName::Gateway {
            return Err(format!("{signer} may not issue run tokens"));
        }
        if claims.exp + LEEWAY_SECS < self.clock.now_secs() {
            return Err("expired".into());
        }
        Ok(claims.grant)
    }

    /// A token naming us, addressed to `target`; reused until near expiry.
    pub fn service_token(&self, target: ServiceName) -> Result<String, Error> {
        self.signed(
            &self.signed_services,
            target,
            SERVICE_TOKEN_REFRESH_SECS + 1,
            SERVICE_TOKEN_TTL_SECS,
            |iat, exp| {
                self.keys.sign(&ServiceClaims {
                    iss: self.me().to_string(),
                    aud: target.to_string(),
                    iat,
                    exp,
                })
            },
        )
    }

    /// The token `memory` holds for `key` while at least `min_left` seconds
    /// of its life remain; else one `sign(iat, exp)` makes, living `ttl`.
    fn signed<K: std::hash::Hash + Eq>(
        &self,
        memory: &Mutex<Remembered<K, String>>,
        key: K,
        min_left: i64,
        ttl: i64,
        sign: impl FnOnce(i64, i64) -> Result<String, Error>,
    ) -> Result<String, Error> {
        let now = self.clock.now_secs();
        if let Some((token, iat, exp)) = remembered(memory).get(&key)
            && exp - now >= min_left
            && iat <= now
        {
            return Ok(token);
        }
        let exp = now + ttl;
        let token = sign(now, exp)?;
        remembered(memory).insert(key, token.clone(), now, exp);
        Ok(token)
    }

    /// Verifies a service token addressed to us; returns the caller.
    pub fn verify_service(&self, token: &str) -> Result<ServiceName, String> {
        if let Some((caller, iat, exp)) = remembered(&self.verified_services).get(token) {
            self.check_fresh(iat, exp)?;
            return Ok(caller);
        }
        let (caller, claims) = self
            .keys
            .verify::<ServiceClaims>(token, self.me().as_str())?;
        self.check_fresh(claims.iat, claims.exp)?;
        remembered(&self.verified_services).insert(
            token.to_string(),
            caller,
            claims.iat,
            claims.exp,
        );
        Ok(caller)
    }

    /// Verifies a Principal signed by the gateway or the scheduler.
    pub fn verify_principal(&self, token: &str) -> Result<Principal, String> {
        if let Some((principal, iat, exp)) = remembered(&self.verified_principals).get(token) {
            self.check_fresh(iat, exp)?;
            return Ok(principal);
        }
        let (signer, claims) = self
            .keys
            .verify::<PrincipalClaims>(token, PRINCIPAL_AUDIENCE)?;
        if !signer.may_sign_principals() {
            return Err(format!("{signer} may not sign principals"));
        }
        self.check_fresh(claims.iat, claims.exp)?;
        let mut principal = claims.principal;
        principal.token = token.to_string();
        remembered(&self.verified_principals).insert(
            token.to_string(),
            principal.clone(),
            claims.iat,
            claims.exp,
        );
        Ok(principal)
    }

    fn check_fresh(&self, iat: i64, exp: i64) -> Result<(), String> {
        let now = self.clock.now_secs();
        if exp + LEEWAY_SECS < now {
            return Err("expired".into());
        }
        if exp - iat > PRINCIPAL_TTL_SECS.max(SERVICE_TOKEN_TTL_SECS) || iat - LEEWAY_SECS > now {
            return Err("lifetime is longer than 60 s or starts in the future".into());
        }
        Ok(())
    }
}

/// Which services may call which gRPC services of this server.
///
/// Public services accept any verified agentshare service (in practice the
/// gateway, and the scheduler for automations); internal services accept only
/// the callers listed for them.
#[derive(Clone, Default)]
pub struct CallerPolicy {
    internal: HashMap<&'static str, &'static [ServiceName]>,
}

impl CallerPolicy {
    /// Restricts the gRPC service `service` (full name) to `callers`.
    pub fn internal(mut self, service: &'static str, callers: &'static [ServiceName]) -> Self {
        self.internal.insert(service, callers);
        self
    }

    /// Restricts this service's event log to the services that follow it.
    pub fn event_followers(self, followers: &'static [ServiceName]) -> Self {
        use agentshare_proto::events::v1::event_log_service_server::SERVICE_NAME;
        self.internal(SERVICE_NAME, followers)
    }

    /// Restricts one method (`pkg.Service/Method`) of an internal service
    /// to `callers`, in place of the service's list, so a caller that needs
    /// one RPC is granted that RPC only.
    pub fn internal_method(
        mut self,
        method: &'static str,
        callers: &'static [ServiceName],
    ) -> Self {
        self.internal.insert(method, callers);
        self
    }

    fn allows(&self, path: &str, caller: ServiceName) -> bool {
        let method = path.trim_start_matches('/');
        let rule = self
            .internal
            .get(method)
            .or_else(|| self.internal.get(grpc_service_of(path)));
        rule.is_none_or(|callers| callers.contains(&caller))
    }
}

/// Paths served to anyone: probes and schema discovery carry no data.
fn is_open_path(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// The gRPC service name of a request path `/pkg.Service/Method`.
pub fn grpc_service_of(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

/// A server layer that verifies the caller service and the Principal of every
/// request, and enforces the [`CallerPolicy`].
#[derive(Clone)]
pub struct IdentityLayer {
    identity: Identity,
    policy: Arc<CallerPolicy>,
}

impl IdentityLayer {
    pub fn new(identity: Identity, policy: CallerPolicy) -> Self {
        Self {
            identity,
            policy: Arc::new(policy),
        }
    }
}

impl<S> tower::Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct IdentityService<S> {
    inner: S,
    layer: IdentityLayer,
}

impl IdentityLayer {
    fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let path = request.uri().path().to_string();
        if is_open_path(&path) {
            return Ok(());
        }
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let service_token = header(SERVICE_HEADER).ok_or_else(|| {
            Status::unauthenticated(format!(
                "missing {SERVICE_HEADER}: this port serves agentshare services only; clients call the gateway"
            ))
        })?;
        let caller = self
            .identity
            .verify_service(&service_token)
            .map_err(|why| Status::unauthenticated(format!("service identity rejected: {why}")))?;
        if !self.policy.allows(&path, caller) {
            return Err(Status::permission_denied(format!(
                "{caller} may not call {}",
                path.trim_start_matches('/')
            )));
        }
        if let Some(token) = header(PRINCIPAL_HEADER) {
            let principal = self
                .identity
                .verify_principal(&token)
                .map_err(|why| Status::unauthenticated(format!("principal rejected: {why}")))?;
            request.extensions_mut().insert(principal);
        }
        request.extensions_mut().insert(caller);
        Ok(())
    }
}

impl<S, B> tower::Service<http::Request<B>> for IdentityService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.layer.admit(&mut request) {
            Ok(()) => futures::future::Either::Left(self.inner.call(request)),
            Err(status) => {
                futures::future::Either::Right(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// Client interceptor: names the calling service to the target, and carries
/// the W3C trace context of the current span.
#[derive(Clone)]
pub struct Outbound {
    identity: Identity,
    target: ServiceName,
}

impl Outbound {
    pub fn new(identity: Identity, target: ServiceName) -> Self {
        Self { identity, target }
    }
}

impl tonic::service::Interceptor for Outbound {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let token = self.identity.service_token(self.target)?;
        let value = token
            .parse()
            .map_err(|_| Status::internal("service token is not a valid header"))?;
        request.metadata_mut().insert(SERVICE_HEADER, value);
        crate::telemetry::inject_context(request.metadata_mut());
        Ok(request)
    }
}

/// Creates any missing key pair for every service in `dir`, and the dev
/// session secret: the embedded mode's keys.
pub fn generate_missing_keys(dir: &Path) -> Result<(), String> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for service in ServiceName::ALL {
        let private = dir.join(format!("{service}.key"));
        if private.exists() {
            continue;
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| format!("cannot encode key: {e}"))?;
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("cannot encode key: {e}"))?;
        write_secret(&private, private_pem.as_bytes())?;
        std::fs::write(dir.join(format!("{service}.pub")), public_pem)
            .map_err(|e| format!("cannot write key: {e}"))?;
    }
    let session = dir.join(SESSION_SECRET_FILE);
    if !session.exists() {
        let secret = random_token().map_err(|e| e.to_string())?;
        write_secret(&session, secret.as_bytes())?;
    }
    let connections = dir.join(CONNECTIONS_KEY_FILE);
    if !connections.exists() {
        use base64::Engine;
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(key);
        write_secret(&connections, encoded.as_bytes())?;
    }
    Ok(())
}

/// The HS256 secret of dev session tokens, beside the service keys.
pub const SESSION_SECRET_FILE: &str = "session.hs256";
/// The embedded mode's key for sealing connections' secrets (base64 of 32
/// bytes), used when `connections.secret_keys` is empty.
pub const CONNECTIONS_KEY_FILE: &str = "connections.key";

/// Writes a file readable by its owner only.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// 32 random bytes, URL-safe base64: for tokens and secrets.
pub fn random_token() -> Result<String, Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Error::internal)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Hex SHA-256 of a high-entropy secret (API key, share token): enough to
/// store it, since such secrets cannot be guessed; a slow password hash would
/// only add latency to every call.
pub fn secret_digest(secret: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identities(clock: &Clock) -> (Identity, Identity, tempfile::TempDir) {
        let keys = tempfile::tempdir().expect("dir");
        generate_missing_keys(keys.path()).expect("keys");
        let load = |service| KeyRing::load(keys.path(), service).expect("ring");
        let gateway = Identity::new(load(ServiceName::Gateway), clock.clone());
        let store = Identity::new(load(ServiceName::Store), clock.clone());
        (gateway, store, keys)
    }

    #[test]
    fn a_signature_is_reused_only_for_the_same_claims_and_a_remembered_one_still_expires() {
        let clock = Clock::manual(1_000_000_000_000_000);
        let (gateway, store, _keys) = identities(&clock);
        let mut alice = Principal::user("alice");
        alice.org_id = Some("org".into());
        let first = gateway.sign_principal(&alice).expect("signed");
        assert_eq!(gateway.sign_principal(&alice).expect("signed"), first);
        alice.org_role = Some(OrgRole::Member);
        let other = gateway.sign_principal(&alice).expect("signed");
        assert_ne!(other, first, "other claims, another token");

        assert!(store.verify_principal(&first).is_ok());
        let service = gateway.service_token(ServiceName::Store).expect("token");
        assert_eq!(store.verify_service(&service), Ok(ServiceName::Gateway));
        // Remembered above; past their expiry and leeway both are refused.
        clock.advance(std::time::Duration::from_secs(
            (PRINCIPAL_TTL_SECS + LEEWAY_SECS + 1) as u64,
        ));
        assert_eq!(store.verify_principal(&first), Err("expired".into()));
        assert_eq!(store.verify_service(&service), Err("expired".into()));
        assert_ne!(
            gateway.sign_principal(&alice).expect("signed"),
            other,
            "a token near its end is signed afresh"
        );
    }

    #[test]
    fn a_principal_carries_its_role_and_grant_kind_by_their_lowercase_names() {
        let mut principal = Principal::user("u-1");
        principal.kind = PrincipalKind::Grant;
        principal.org_role = Some(OrgRole::Admin);
        principal.grant = Some(HeldGrant {
            id: "g-1".into(),
            kind: GrantKind::Delegate,
            agent_id: "a-1".into(),
        });
        let wire = serde_json::to_value(&principal).expect("serialized");
        assert_eq!(wire["org_role"], "admin");
        assert_eq!(wire["grant_id"], "g-1");
        assert_eq!(wire["grant_kind"], "delegate");
        assert_eq!(wire["grant_agent_id"], "a-1");
        let back: Principal = serde_json::from_value(wire).expect("deserialized");
        assert_eq!(back, principal);
        let user = serde_json::to_value(Principal::user("u-2")).expect("serialized");
        assert!(user.get("grant_id").is_none(), "{user}");
        let back: Principal = serde_json::from_value(user).expect("deserialized");
        assert_eq!(back.grant, None);
        let unknown = serde_json::json!({ "kind": "user", "org_role": "emperor" });
        assert!(serde_json::from_value::<Principal>(unknown).is_err());
    }

    #[test]
    fn every_org_role_reads_back_from_its_name_and_its_proto() {
        for role in [
            OrgRole::Owner,
            OrgRole::Admin,
            OrgRole::Member,
            OrgRole::Viewer,
        ] {
            assert_eq!(OrgRole::parse(role.as_str()), Some(role));
            assert_eq!(OrgRole::of_proto(role.to_proto().into()), Some(role));
        }
        assert_eq!(OrgRole::of_proto(0), None);
        assert_eq!(OrgRole::of_proto(99), None);
    }
}
