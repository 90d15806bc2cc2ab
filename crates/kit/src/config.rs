//! Configuration, layered once for every binary: defaults, then an optional
//! TOML file, then `AGENTSHARE_*` environment variables (`__` nests, e.g.
//! `AGENTSHARE_PEERS__SHARING`), then CLI flags. It is validated at load, and
//! a bad setting is reported in one line that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::identity::ServiceName;

/// A setting that stops the process from starting. Binaries print it as one
/// line and exit with code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad setting `{setting}`: {message}")]
pub struct BadSetting {
    pub setting: String,
    pub message: String,
}

impl BadSetting {
    pub fn new(setting: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            setting: setting.into(),
            message: message.to_string().replace('\n', " "),
        }
    }

    /// The exit code for any configuration or start-up error.
    pub const EXIT_CODE: i32 = 2;
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Where the embedded mode keeps its SQLite files and generated keys.
    pub data_dir: PathBuf,
    /// The address this process listens on: the gateway's in `serve`.
    pub listen: String,
    /// `sqlite://…` or `postgres://…`; empty means SQLite in the data dir.
    pub database_url: String,
    /// Upper bound on the connections of this service's pool.
    pub database_max_connections: u32,
    /// Holds `<service>.key` (own private key) and `<service>.pub` (peers);
    /// empty means `<data_dir>/keys`.
    pub keys_dir: PathBuf,
    /// Endpoints of the other services, several per service for replicas.
    pub peers: Peers,
    /// How user session tokens are verified (gateway).
    pub auth: Auth,
    /// Users' connections: the keys their secrets are sealed with, and the
    /// providers they may connect to (sharing).
    pub connections: Connections,
    /// How long in-flight calls may take to drain after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// How long a stopping server still accepts calls after reporting
    /// NOT_SERVING, so clients and load balancers move away first.
    pub shutdown_delay_millis: u64,
    /// How often event watchers poll for commits from other replicas.
    pub event_poll_millis: u64,
    /// The workspace store's quotas and watch settings (store).
    pub store: Store,
    /// Automations: firing and notification delivery (scheduler).
    pub scheduler: Scheduler,
    /// The agent runtime the gateway calls (`AGENTSHARE_RUNTIME_URL`), an
    /// `http://` or `https://` URL; empty runs the built-in echo runtime.
    pub runtime_url: String,
    /// How long one run may take before it fails with DEADLINE_EXCEEDED.
    pub runtime_deadline_secs: u64,
    /// Where a runtime reaches the gateway to call the workspace tools;
    /// empty means `http://` and the gateway's own listen address.
    pub gateway_address: String,
    /// The gateway's HTTP/JSON and gRPC-Web side.
    pub http: Http,
    /// The largest gRPC message, in bytes, that any server accepts or sends:
    /// the gateway on every way in (forwarded calls and its own services)
    /// and every service behind it. A larger request is RESOURCE_EXHAUSTED,
    /// naming this setting.
    pub max_message_bytes: u64,
    /// How deep a request's messages may nest at the gateway (the request
    /// itself is level 1). Checked only for methods whose input can nest
    /// without bound (`google.protobuf.Struct`, `Value`, `ListValue` or a
    /// recursive message); deeper is INVALID_ARGUMENT naming the field.
    pub max_nesting_depth: u32,
    /// How this process writes its logs.
    pub log: Log,
}

/// The process's log lines on stderr; `RUST_LOG` picks which.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Log {
    pub format: LogFormat,
}

/// `text` for people at a terminal; `json` for log pipelines: one object a
/// line, with the trace and span ids that join it to its trace.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The gateway's HTTP side: HTTP/JSON and gRPC-Web share its one port with
/// gRPC.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Http {
    /// Browser origins (`https://app.example.com`) allowed to call the
    /// gateway across origins, for HTTP/JSON and gRPC-Web alike. Empty, the
    /// default, allows none: browsers then reach it only from its own origin.
    #[serde(deserialize_with = "endpoint_list")]
    pub allowed_origins: Vec<String>,
}

impl Http {
    fn validate(&self) -> Result<(), BadSetting> {
        for origin in &self.allowed_origins {
            let well_formed = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && http::HeaderValue::from_str(origin).is_ok();
            if !well_formed {
                return Err(BadSetting::new(
                    "http.allowed_origins",
                    format!(
                        "{origin:?} is not an origin; write scheme://host[:port] with no path, such as https://app.example.com"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Bounds of `max_message_bytes`: 4 KiB holds any request of the contract
/// with room to spare; a gRPC length prefix is 32 bits.
const MESSAGE_BYTES_RANGE: std::ops::RangeInclusive<u64> = 4 * 1024..=u32::MAX as u64;
/// Bounds of `max_nesting_depth`: the contract's own messages nest at most 6
/// deep before any free-form value (the gateway's tests check it), and the
/// services decode at most 100 levels (prost's limit), so whatever the
/// gateway admits, they can read.
const NESTING_DEPTH_RANGE: std::ops::RangeInclusive<u32> = 8..=64;

/// How the scheduler fires automations and delivers email and push
/// notifications from its outbox.
///
/// Firing: every replica polls for due subscriptions each
/// `fire_poll_millis`, claims at most `fire_batch` at a time under a lease
/// of `fire_lease_secs` (renewed while the run is in flight), and runs at
/// most `fire_concurrency` at once. A scheduled time more than
/// `fire_missed_after_secs` late counts as missed during downtime, for the
/// catch-up policy.
///
/// Delivery: a failed attempt is retried after a backoff that doubles from
/// `delivery_backoff_base_secs` up to `delivery_backoff_max_secs`, until
/// `delivery_max_attempts` attempts have failed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Scheduler {
    /// How often each replica looks for due subscriptions and expired
    /// leases.
    pub fire_poll_millis: u64,
    /// How long a claimed run belongs to its replica without renewal; a
    /// run whose lease expired is retried once by any replica.
    pub fire_lease_secs: u64,
    /// Due subscriptions one claim takes at most.
    pub fire_batch: u32,
    /// Runs one replica executes at once at most.
    pub fire_concurrency: u32,
    /// How late a scheduled time may fire before it counts as missed
    /// during downtime (then the catch-up policy decides).
    pub fire_missed_after_secs: u64,
    /// How long one run may take, the agent's work included.
    pub fire_run_timeout_secs: u64,
    /// Whether to follow registry's and sharing's events, which stop
    /// subscriptions on unshare, delete and removal. Only tests turn it off,
    /// to show that the access check at fire time stops them too.
    pub follow_events: bool,
    /// How often each replica looks for due deliveries.
    pub delivery_poll_millis: u64,
    /// Attempts before a delivery is given up as FAILED.
    pub delivery_max_attempts: u32,
    /// The wait after the first failed attempt.
    pub delivery_backoff_base_secs: u64,
    /// The longest wait between attempts.
    pub delivery_backoff_max_secs: u64,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self {
            fire_poll_millis: 1_000,
            fire_lease_secs: 60,
            fire_batch: 100,
            fire_concurrency: 16,
            fire_missed_after_secs: 300,
            fire_run_timeout_secs: 900,
            follow_events: true,
            delivery_poll_millis: 1_000,
            delivery_max_attempts: 6,
            delivery_backoff_base_secs: 30,
            delivery_backoff_max_secs: 3_600,
        }
    }
}

impl Scheduler {
    fn validate(&self) -> Result<(), BadSetting> {
        for (setting, value, min, max) in [
            (
                "scheduler.fire_poll_millis",
                self.fire_poll_millis,
                1,
                3_600_000,
            ),
            ("scheduler.fire_lease_secs", self.fire_lease_secs, 3, 86_400),
            (
                "scheduler.fire_batch",
                u64::from(self.fire_batch),
                1,
                10_000,
            ),
            (
                "scheduler.fire_concurrency",
                u64::from(self.fire_concurrency),
                1,
                1_000,
            ),
            (
                "scheduler.fire_missed_after_secs",
                self.fire_missed_after_secs,
                1,
                86_400,
            ),
            (
                "scheduler.fire_run_timeout_secs",
                self.fire_run_timeout_secs,
                1,
                86_400,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(BadSetting::new(
                    setting,
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        if self.delivery_poll_millis == 0 || self.delivery_poll_millis > 3_600_000 {
            return Err(BadSetting::new(
                "scheduler.delivery_poll_millis",
                "must be between 1 and 3600000",
            ));
        }
        if !(1..=100).contains(&self.delivery_max_attempts) {
            return Err(BadSetting::new(
                "scheduler.delivery_max_attempts",
                "must be between 1 and 100",
            ));
        }
        if self.delivery_backoff_base_secs == 0 || self.delivery_backoff_base_secs > 86_400 {
            return Err(BadSetting::new(
                "scheduler.delivery_backoff_base_secs",
                "must be between 1 and 86400",
            ));
        }
        if self.delivery_backoff_max_secs < self.delivery_backoff_base_secs
            || self.delivery_backoff_max_secs > 7 * 86_400
        {
            return Err(BadSetting::new(
                "scheduler.delivery_backoff_max_secs",
                "must be at least delivery_backoff_base_secs and at most 604800",
            ));
        }
        Ok(())
    }
}

/// Limits of the workspace store. Each store partition (`user-<id>`,
/// `agent-<id>/<workspace>`, …) is counted on its own.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Store {
    /// Largest value of one item, in bytes of UTF-8.
    pub max_value_bytes: u64,
    /// Most items one partition may hold.
    pub max_items: u64,
    /// Largest total size of one partition's values, in bytes.
    pub max_total_bytes: u64,
    /// How many of a partition's latest changes Watch can resume from.
    pub watch_retention_changes: u64,
    /// How long a change stays resumable, in seconds.
    pub watch_retention_secs: u64,
    /// Most watches one principal may hold open on one store replica.
    pub max_watches_per_principal: u64,
    /// How often an open watch checks that its caller may still RUN the
    /// agent; the stream ends within this long of a revocation.
    pub watch_access_check_millis: u64,
    /// Largest message of a session turn, in bytes of UTF-8.
    pub max_message_bytes: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            max_value_bytes: 256 * 1024,
            max_items: 1_000,
            max_total_bytes: 16 * 1024 * 1024,
            watch_retention_changes: 10_000,
            watch_retention_secs: 24 * 3600,
            max_watches_per_principal: 32,
            watch_access_check_millis: 2_000,
            max_message_bytes: 1024 * 1024,
        }
    }
}

impl Store {
    fn validate(&self) -> Result<(), BadSetting> {
        for (setting, value) in [
            ("store.max_value_bytes", self.max_value_bytes),
            ("store.max_items", self.max_items),
            ("store.max_total_bytes", self.max_total_bytes),
            (
                "store.watch_retention_changes",
                self.watch_retention_changes,
            ),
            ("store.watch_retention_secs", self.watch_retention_secs),
            (
                "store.max_watches_per_principal",
                self.max_watches_per_principal,
            ),
            (
                "store.watch_access_check_millis",
                self.watch_access_check_millis,
            ),
            ("store.max_message_bytes", self.max_message_bytes),
        ] {
            if value == 0 || i64::try_from(value).is_err() {
                return Err(BadSetting::new(setting, "must be between 1 and 2^63-1"));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Peers {
    #[serde(deserialize_with = "endpoint_list")]
    pub registry: Vec<String>,
    #[serde(deserialize_with = "endpoint_list")]
    pub sharing: Vec<String>,
    #[serde(deserialize_with = "endpoint_list")]
    pub store: Vec<String>,
    #[serde(deserialize_with = "endpoint_list")]
    pub scheduler: Vec<String>,
    /// The gateway's internal endpoints: the scheduler runs automations
    /// through its InvokeInternalService.
    #[serde(deserialize_with = "endpoint_list")]
    pub gateway: Vec<String>,
}

impl Peers {
    pub fn of(&self, service: ServiceName) -> &[String] {
        match service {
            ServiceName::Registry => &self.registry,
            ServiceName::Sharing => &self.sharing,
            ServiceName::Store => &self.store,
            ServiceName::Scheduler => &self.scheduler,
            ServiceName::Gateway => &self.gateway,
        }
    }

    pub fn set(&mut self, service: ServiceName, endpoints: Vec<String>) {
        match service {
            ServiceName::Registry => self.registry = endpoints,
            ServiceName::Sharing => self.sharing = endpoints,
            ServiceName::Store => self.store = endpoints,
            ServiceName::Scheduler => self.scheduler = endpoints,
            ServiceName::Gateway => self.gateway = endpoints,
        }
    }
}

/// Accepts a list, or one string with comma-separated endpoints (handy in an
/// environment variable).
fn endpoint_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Auth {
    /// Expected `iss` of session tokens.
    pub issuer: String,
    /// Expected `aud` of session tokens.
    pub audience: String,
    /// HS256 secret file; empty means `<keys_dir>/session.hs256` when no
    /// public key is configured.
    pub hs256_key_file: PathBuf,
    /// RS256/ES256 public key PEM of the identity provider.
    pub public_key_file: PathBuf,
    /// The identity provider's JWKS document (RS256/ES256 keys, chosen by
    /// the token's `kid`); an alternative to `public_key_file`.
    pub jwks_file: PathBuf,
    /// How recent `auth_time` must be for step-up.
    pub step_up_max_age_secs: i64,
}

/// How connections' secrets are sealed, and which providers exist.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Connections {
    /// Sealing keys by id, each the base64 of 32 random bytes. Keep old keys
    /// listed until `agentshare rotate-secrets` has re-sealed everything
    /// under the active one. Empty means the embedded mode's generated
    /// `<keys_dir>/connections.key`, under the id `local`.
    pub secret_keys: std::collections::BTreeMap<String, String>,
    /// The key new secrets are sealed with; required when `secret_keys` is
    /// set.
    pub active_secret_key: String,
    /// Where OAuth providers send the user back (the client's callback page).
    pub oauth_redirect_url: String,
    /// Providers by key (`gmail`, `brave`, …). Tools name these keys.
    pub providers: std::collections::BTreeMap<String, Provider>,
}

/// One outside service users connect to.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Provider {
    /// `api_key` or `oauth`.
    pub kind: String,
    /// How TestConnection checks a credential; `static` checks its shape
    /// only and needs no network.
    pub check: String,
    /// A prefix every API key of this provider has (for `static`), such as
    /// `sk-`; empty for none.
    pub key_prefix: String,
    /// OAuth: the provider's authorize endpoint.
    pub authorize_url: String,
    /// OAuth: the provider's token endpoint.
    pub token_url: String,
    /// OAuth: agentshare's client id at the provider.
    pub client_id: String,
    /// OAuth: agentshare's client secret at the provider.
    pub client_secret: String,
    /// OAuth: the scopes to ask for.
    pub scopes: Vec<String>,
}

impl Provider {
    /// An API-key provider whose TestConnection checks only the key's shape.
    pub fn api_key(key_prefix: &str) -> Self {
        Self {
            kind: "api_key".into(),
            check: "static".into(),
            key_prefix: key_prefix.into(),
            ..Self::default()
        }
    }
}

/// The API-key providers the embedded mode serves when none is configured,
/// so the seeds' scenarios work on a new machine: web search (keys start
/// `srch-`), CRM, document storage, a warehouse database, Slack (`xoxp-`)
/// and mail. Their check is `static`: nothing leaves the machine.
pub fn demo_providers() -> std::collections::BTreeMap<String, Provider> {
    [
        ("search", "srch-"),
        ("crm", ""),
        ("drive", ""),
        ("warehouse", ""),
        ("slack", "xoxp-"),
        ("outlook", ""),
    ]
    .into_iter()
    .map(|(key, prefix)| (key.to_string(), Provider::api_key(prefix)))
    .collect()
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            issuer: crate::session::DEV_ISSUER.into(),
            audience: crate::session::DEV_AUDIENCE.into(),
            hs256_key_file: PathBuf::new(),
            public_key_file: PathBuf::new(),
            jwks_file: PathBuf::new(),
            step_up_max_age_secs: 600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./agentshare-data"),
            listen: "127.0.0.1:50051".into(),
            database_url: String::new(),
            database_max_connections: 8,
            keys_dir: PathBuf::new(),
            peers: Peers::default(),
            auth: Auth::default(),
            connections: Connections::default(),
            shutdown_grace_secs: 30,
            shutdown_delay_millis: 500,
            event_poll_millis: 200,
            store: Store::default(),
            scheduler: Scheduler::default(),
            runtime_url: String::new(),
            runtime_deadline_secs: 300,
            gateway_address: String::new(),
            http: Http::default(),
            max_message_bytes: 4 * 1024 * 1024,
            max_nesting_depth: 32,
            log: Log::default(),
        }
    }
}

/// The flags every binary takes; each overrides its setting when given.
#[derive(clap::Args, Debug, Default, Clone, Serialize)]
pub struct ConfigArgs {
    /// A TOML config file, read after the defaults and before the environment.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data dir of the embedded mode.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:50051.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://…
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the layers over `defaults` and validates the result.
    pub fn load(defaults: Config, args: &ConfigArgs) -> Result<Config, BadSetting> {
        let mut figment = Figment::from(Serialized::defaults(defaults));
        if let Some(file) = &args.config {
            if !file.is_file() {
                return Err(BadSetting::new(
                    "config",
                    format!("{} is not a readable file", file.display()),
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(
                Env::prefixed("AGENTSHARE_")
                    .split("__")
                    .ignore(&["test_postgres_url"]),
            )
            .merge(Serialized::defaults(args));
        let config: Config = figment.extract().map_err(|e| {
            let setting = if e.path.is_empty() {
                "config".to_string()
            } else {
                e.path.join(".")
            };
            BadSetting::new(setting, e.kind)
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), BadSetting> {
        self.listen_addr()?;
        if !self.database_url.is_empty() {
            crate::db::Backend::of_url(&self.database_url)?;
        }
        if self.database_max_connections == 0 {
            return Err(BadSetting::new(
                "database_max_connections",
                "must be at least 1",
            ));
        }
        if !self.auth.public_key_file.as_os_str().is_empty()
            && !self.auth.jwks_file.as_os_str().is_empty()
        {
            return Err(BadSetting::new(
                "auth.jwks_file",
                "set either auth.public_key_file or auth.jwks_file, not both",
            ));
        }
        self.validate_connections()?;
        self.http.validate()?;
        self.store.validate()?;
        self.scheduler.validate()?;
        for (setting, url) in [
            ("runtime_url", &self.runtime_url),
            ("gateway_address", &self.gateway_address),
        ] {
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                return Err(BadSetting::new(
                    setting,
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if !MESSAGE_BYTES_RANGE.contains(&self.max_message_bytes) {
            return Err(BadSetting::new(
                "max_message_bytes",
                format!(
                    "must be between {} and {}",
                    MESSAGE_BYTES_RANGE.start(),
                    MESSAGE_BYTES_RANGE.end()
                ),
            ));
        }
        if !NESTING_DEPTH_RANGE.contains(&self.max_nesting_depth) {
            return Err(BadSetting::new(
                "max_nesting_depth",
                format!(
                    "must be between {} and {}",
                    NESTING_DEPTH_RANGE.start(),
                    NESTING_DEPTH_RANGE.end()
                ),
            ));
        }
        if self.runtime_deadline_secs == 0 || self.runtime_deadline_secs > 24 * 3600 {
            return Err(BadSetting::new(
                "runtime_deadline_secs",
                "must be between 1 and 86400",
            ));
        }
        for service in ServiceName::ALL {
            for endpoint in self.peers.of(service) {
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return Err(BadSetting::new(
                        format!("peers.{service}"),
                        format!("{endpoint:?} is not an http:// or https:// URL"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_connections(&self) -> Result<(), BadSetting> {
        let connections = &self.connections;
        if !connections.secret_keys.is_empty()
            && !connections
                .secret_keys
                .contains_key(&connections.active_secret_key)
        {
            return Err(BadSetting::new(
                "connections.active_secret_key",
                "must name one of connections.secret_keys",
            ));
        }
        for (key, provider) in &connections.providers {
            let setting = |field: &str| format!("connections.providers.{key}.{field}");
            match provider.kind.as_str() {
                "api_key" => {}
                "oauth" => {
                    for (field, value) in [
                        ("authorize_url", &provider.authorize_url),
                        ("token_url", &provider.token_url),
                        ("client_id", &provider.client_id),
                    ] {
                        if value.is_empty() {
                            return Err(BadSetting::new(
                                setting(field),
                                "is required for an OAuth provider",
                            ));
                        }
                    }
                    if connections.oauth_redirect_url.is_empty() {
                        return Err(BadSetting::new(
                            "connections.oauth_redirect_url",
                            "is required when an OAuth provider is configured",
                        ));
                    }
                }
                other => {
                    return Err(BadSetting::new(
                        setting("kind"),
                        format!("{other:?} is not a provider kind; use api_key or oauth"),
                    ));
                }
            }
            if !matches!(provider.check.as_str(), "" | "static") {
                return Err(BadSetting::new(
                    setting("check"),
                    format!("{:?} is not a known check; use static", provider.check),
                ));
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, BadSetting> {
        self.listen.parse().map_err(|e| {
            BadSetting::new(
                "listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:50051 ({e})",
                    self.listen
                ),
            )
        })
    }

    /// `max_message_bytes` as tonic's servers and clients take it.
    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX)
    }

    pub fn keys_dir(&self) -> PathBuf {
        if self.keys_dir.as_os_str().is_empty() {
            self.data_dir.join("keys")
        } else {
            self.keys_dir.clone()
        }
    }

    /// The database of `service`: the configured URL, or its SQLite file.
    pub fn database_url_for(&self, service: ServiceName) -> String {
        if self.database_url.is_empty() {
            sqlite_url(&self.data_dir.join(format!("{service}.db")))
        } else {
            self.database_url.clone()
        }
    }

    /// Creates the data dir, reporting a path that cannot be a directory.
    pub fn ensure_data_dir(&self) -> Result<(), BadSetting> {
        ensure_dir(&self.data_dir).map_err(|e| BadSetting::new("data_dir", e))
    }
}

pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(".agentshare-write-probe");
    std::fs::write(&probe, b"").map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_defaults_and_bad_values_name_their_setting() {
        let args = ConfigArgs {
            listen: Some("127.0.0.1:0".into()),
            ..ConfigArgs::default()
        };
        let config = Config::load(Config::default(), &args).expect("loads");
        assert_eq!(config.listen, "127.0.0.1:0");

        let bad = ConfigArgs {
            database_url: Some("mysql://localhost/x".into()),
            ..ConfigArgs::default()
        };
        let err = Config::load(Config::default(), &bad).expect_err("mysql is not supported");
        assert_eq!(err.setting, "database_url");

        let bad = ConfigArgs {
            listen: Some("nowhere".into()),
            ..ConfigArgs::default()
        };
        assert_eq!(
            Config::load(Config::default(), &bad)
                .expect_err("bad")
                .setting,
            "listen"
        );
    }

    #[test]
    fn message_limits_default_to_4_mib_and_32_levels_and_are_bounded() {
        let config = Config::default();
        assert_eq!(config.max_message_bytes, 4_194_304);
        assert_eq!(config.max_nesting_depth, 32);
        for (bad, setting) in [
            (
                Config {
                    max_message_bytes: 100,
                    ..Config::default()
                },
                "max_message_bytes",
            ),
            (
                Config {
                    max_nesting_depth: 200,
                    ..Config::default()
                },
                "max_nesting_depth",
            ),
        ] {
            assert_eq!(bad.validate().expect_err("out of range").setting, setting);
        }
    }

    #[test]
    fn peers_accept_a_comma_separated_string() {
        let figment = Figment::from(Serialized::defaults(Config::default())).merge(
            Serialized::default("peers.sharing", "http://a:1, http://b:2"),
        );
        let config: Config = figment.extract().expect("extracts");
        assert_eq!(config.peers.sharing, ["http://a:1", "http://b:2"]);
    }
}
