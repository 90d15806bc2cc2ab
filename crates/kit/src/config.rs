//! Configuration, layered once for every binary: defaults, then an optional
//! TOML file, then `AGENTSHARE_*` environment variables (`__` nests, e.g.
//! `AGENTSHARE_PEERS__SHARING`), then CLI flags. It is validated at load, and
//! a bad setting is reported in one line that names it.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::identity::ServiceName;
use crate::secret::Secret;

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

/// Every setting. Durations are [`Duration`]s here and whole milliseconds or
/// seconds in files and the environment, as the setting's name says
/// (`shutdown_delay_millis`); secrets are [`Secret`]s, which never print.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the embedded mode keeps its SQLite files and generated keys.
    pub data_dir: PathBuf,
    /// The address this process listens on: the gateway's in `serve`.
    pub listen: String,
    /// `sqlite://…` or `postgres://…`; empty means SQLite in the data dir.
    /// A secret: the URL may carry the database password.
    pub database_url: Secret,
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
    #[serde(rename = "shutdown_grace_secs", with = "secs")]
    pub shutdown_grace: Duration,
    /// How long a stopping server still accepts calls after reporting
    /// NOT_SERVING, so clients and load balancers move away first.
    #[serde(rename = "shutdown_delay_millis", with = "millis")]
    pub shutdown_delay: Duration,
    /// How often event watchers poll for commits from other replicas.
    #[serde(rename = "event_poll_millis", with = "millis")]
    pub event_poll: Duration,
    /// The workspace store's quotas and watch settings (store).
    pub store: Store,
    /// Automations: firing and notification delivery (scheduler).
    pub scheduler: Scheduler,
    /// The agent runtime the gateway calls (`AGENTSHARE_RUNTIME_URL`), an
    /// `http://` or `https://` URL; empty runs the built-in echo runtime.
    pub runtime_url: String,
    /// How long one run may take before it fails with DEADLINE_EXCEEDED.
    #[serde(rename = "runtime_deadline_secs", with = "secs")]
    pub runtime_deadline: Duration,
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
    #[serde(rename = "fire_poll_millis", with = "millis")]
    pub fire_poll: Duration,
    /// How long a claimed run belongs to its replica without renewal; a
    /// run whose lease expired is retried once by any replica.
    #[serde(rename = "fire_lease_secs", with = "secs")]
    pub fire_lease: Duration,
    /// Due subscriptions one claim takes at most.
    pub fire_batch: u32,
    /// Runs one replica executes at once at most.
    pub fire_concurrency: u32,
    /// How late a scheduled time may fire before it counts as missed
    /// during downtime (then the catch-up policy decides).
    #[serde(rename = "fire_missed_after_secs", with = "secs")]
    pub fire_missed_after: Duration,
    /// How long one run may take, the agent's work included.
    #[serde(rename = "fire_run_timeout_secs", with = "secs")]
    pub fire_run_timeout: Duration,
    /// Whether to follow registry's and sharing's events, which stop
    /// subscriptions on unshare, delete and removal. Only tests turn it off,
    /// to show that the access check at fire time stops them too.
    pub follow_events: bool,
    /// How often each replica looks for due deliveries.
    #[serde(rename = "delivery_poll_millis", with = "millis")]
    pub delivery_poll: Duration,
    /// Attempts before a delivery is given up as FAILED.
    pub delivery_max_attempts: u32,
    /// The wait after the first failed attempt.
    #[serde(rename = "delivery_backoff_base_secs", with = "secs")]
    pub delivery_backoff_base: Duration,
    /// The longest wait between attempts.
    #[serde(rename = "delivery_backoff_max_secs", with = "secs")]
    pub delivery_backoff_max: Duration,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self {
            fire_poll: Duration::from_millis(1_000),
            fire_lease: Duration::from_secs(60),
            fire_batch: 100,
            fire_concurrency: 16,
            fire_missed_after: Duration::from_secs(300),
            fire_run_timeout: Duration::from_secs(900),
            follow_events: true,
            delivery_poll: Duration::from_millis(1_000),
            delivery_max_attempts: 6,
            delivery_backoff_base: Duration::from_secs(30),
            delivery_backoff_max: Duration::from_secs(3_600),
        }
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
    /// How long a change stays resumable.
    #[serde(rename = "watch_retention_secs", with = "secs")]
    pub watch_retention: Duration,
    /// Most watches one principal may hold open on one store replica.
    pub max_watches_per_principal: u64,
    /// How often an open watch checks that its caller may still RUN the
    /// agent; the stream ends within this long of a revocation.
    #[serde(rename = "watch_access_check_millis", with = "millis")]
    pub watch_access_check: Duration,
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
            watch_retention: Duration::from_secs(24 * 3600),
            max_watches_per_principal: 32,
            watch_access_check: Duration::from_millis(2_000),
            max_message_bytes: 1024 * 1024,
        }
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
    #[serde(rename = "step_up_max_age_secs", with = "secs")]
    pub step_up_max_age: Duration,
}

/// How connections' secrets are sealed, and which providers exist.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Connections {
    /// Sealing keys by id, each the base64 of 32 random bytes. Keep old keys
    /// listed until `agentshare rotate-secrets` has re-sealed everything
    /// under the active one. Empty means the embedded mode's generated
    /// `<keys_dir>/connections.key`, under the id `local`.
    pub secret_keys: std::collections::BTreeMap<String, Secret>,
    /// The key new secrets are sealed with; required when `secret_keys` is
    /// set.
    pub active_secret_key: String,
    /// Where OAuth providers send the user back (the client's callback page).
    pub oauth_redirect_url: String,
    /// Providers by key (`gmail`, `brave`, …). Tools name these keys.
    pub providers: std::collections::BTreeMap<String, Provider>,
}

/// One outside service users connect to.
#[derive(Clone, Debug, Default, Deserialize)]
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
    pub client_secret: Secret,
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
/// so the README's scenarios work on a new machine: web search (keys start
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
            step_up_max_age: Duration::from_secs(600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./agentshare-data"),
            listen: "127.0.0.1:50051".into(),
            database_url: Secret::default(),
            database_max_connections: 8,
            keys_dir: PathBuf::new(),
            peers: Peers::default(),
            auth: Auth::default(),
            connections: Connections::default(),
            shutdown_grace: Duration::from_secs(30),
            shutdown_delay: Duration::from_millis(500),
            event_poll: Duration::from_millis(200),
            store: Store::default(),
            scheduler: Scheduler::default(),
            runtime_url: String::new(),
            runtime_deadline: Duration::from_secs(300),
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
    // Layered by hand in `Config::load`: a secret does not serialize.
    #[serde(skip)]
    pub database_url: Option<Secret>,
}

impl Config {
    /// Loads the layers over the defaults and validates the result. The
    /// defaults come from `Config::default()` through `#[serde(default)]`,
    /// for what no layer sets.
    pub fn load(args: &ConfigArgs) -> Result<Config, BadSetting> {
        let mut figment = Figment::new();
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
        if let Some(url) = &args.database_url {
            figment = figment.merge(Serialized::default("database_url", url.expose()));
        }
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
            crate::db::Backend::of_url(self.database_url.expose())?;
        }
        for bounded in self.bounded_settings() {
            bounded.check()?;
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

    /// Every numeric setting once, with the values it allows in the unit
    /// operators write it in (the one its name ends with). `validate`
    /// checks them all alike.
    fn bounded_settings(&self) -> Vec<Bounded> {
        let (store, scheduler) = (&self.store, &self.scheduler);
        // The store's limits are kept as i64 in its SQL.
        let store_limit = 1..=i64::MAX as u64;
        vec![
            Bounded::count(
                "database_max_connections",
                self.database_max_connections,
                1..=u64::from(u32::MAX),
            ),
            Bounded::secs("shutdown_grace_secs", self.shutdown_grace, 0..=86_400),
            Bounded::millis("shutdown_delay_millis", self.shutdown_delay, 0..=3_600_000),
            // Below 10 ms is taken as 10 ms (`Context::event_poll`).
            Bounded::millis("event_poll_millis", self.event_poll, 0..=3_600_000),
            Bounded::secs("runtime_deadline_secs", self.runtime_deadline, 1..=86_400),
            // A step-up a week old is no longer a fresh second factor.
            Bounded::secs(
                "auth.step_up_max_age_secs",
                self.auth.step_up_max_age,
                0..=604_800,
            ),
            // 4 KiB holds any request of the contract with room to spare; a
            // gRPC length prefix is 32 bits.
            Bounded::count(
                "max_message_bytes",
                self.max_message_bytes,
                4 * 1024..=u64::from(u32::MAX),
            ),
            // The contract's own messages nest at most 6 deep before any
            // free-form value (the gateway's tests check it), and the
            // services decode at most 100 levels (prost's limit), so
            // whatever the gateway admits, they can read.
            Bounded::count("max_nesting_depth", self.max_nesting_depth, 8..=64),
            Bounded::count(
                "store.max_value_bytes",
                store.max_value_bytes,
                store_limit.clone(),
            ),
            Bounded::count("store.max_items", store.max_items, store_limit.clone()),
            Bounded::count(
                "store.max_total_bytes",
                store.max_total_bytes,
                store_limit.clone(),
            ),
            Bounded::count(
                "store.watch_retention_changes",
                store.watch_retention_changes,
                store_limit.clone(),
            ),
            Bounded::secs(
                "store.watch_retention_secs",
                store.watch_retention,
                store_limit.clone(),
            ),
            Bounded::count(
                "store.max_watches_per_principal",
                store.max_watches_per_principal,
                store_limit.clone(),
            ),
            Bounded::millis(
                "store.watch_access_check_millis",
                store.watch_access_check,
                store_limit.clone(),
            ),
            Bounded::count(
                "store.max_message_bytes",
                store.max_message_bytes,
                store_limit,
            ),
            Bounded::millis(
                "scheduler.fire_poll_millis",
                scheduler.fire_poll,
                1..=3_600_000,
            ),
            Bounded::secs(
                "scheduler.fire_lease_secs",
                scheduler.fire_lease,
                3..=86_400,
            ),
            Bounded::count("scheduler.fire_batch", scheduler.fire_batch, 1..=10_000),
            Bounded::count(
                "scheduler.fire_concurrency",
                scheduler.fire_concurrency,
                1..=1_000,
            ),
            Bounded::secs(
                "scheduler.fire_missed_after_secs",
                scheduler.fire_missed_after,
                1..=86_400,
            ),
            Bounded::secs(
                "scheduler.fire_run_timeout_secs",
                scheduler.fire_run_timeout,
                1..=86_400,
            ),
            Bounded::millis(
                "scheduler.delivery_poll_millis",
                scheduler.delivery_poll,
                1..=3_600_000,
            ),
            Bounded::count(
                "scheduler.delivery_max_attempts",
                scheduler.delivery_max_attempts,
                1..=100,
            ),
            Bounded::secs(
                "scheduler.delivery_backoff_base_secs",
                scheduler.delivery_backoff_base,
                1..=86_400,
            ),
            // Checked after the base, so its lower bound is a valid base.
            Bounded::secs(
                "scheduler.delivery_backoff_max_secs",
                scheduler.delivery_backoff_max,
                scheduler.delivery_backoff_base.as_secs()..=7 * 86_400,
            ),
        ]
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
    pub fn database_url_for(&self, service: ServiceName) -> Secret {
        if self.database_url.is_empty() {
            Secret::new(sqlite_url(&self.data_dir.join(format!("{service}.db"))))
        } else {
            self.database_url.clone()
        }
    }

    /// The HS256 key file of session tokens: `auth.hs256_key_file`, or
    /// `<keys_dir>/session.hs256`.
    pub fn hs256_key_file(&self) -> PathBuf {
        if self.auth.hs256_key_file.as_os_str().is_empty() {
            self.keys_dir().join(crate::identity::SESSION_SECRET_FILE)
        } else {
            self.auth.hs256_key_file.clone()
        }
    }

    /// Creates the data dir, reporting a path that cannot be a directory.
    pub fn ensure_data_dir(&self) -> Result<(), BadSetting> {
        ensure_dir(&self.data_dir).map_err(|e| BadSetting::new("data_dir", e))
    }
}

/// A numeric setting's value, in the unit of its name, and the values it
/// allows.
struct Bounded {
    setting: &'static str,
    value: u128,
    allowed: RangeInclusive<u64>,
}

impl Bounded {
    fn count(setting: &'static str, value: impl Into<u64>, allowed: RangeInclusive<u64>) -> Self {
        Self {
            setting,
            value: u128::from(value.into()),
            allowed,
        }
    }

    /// A `*_millis` setting: whole milliseconds, as it is written.
    fn millis(setting: &'static str, value: Duration, allowed: RangeInclusive<u64>) -> Self {
        Self {
            setting,
            value: value.as_millis(),
            allowed,
        }
    }

    /// A `*_secs` setting: whole seconds, as it is written.
    fn secs(setting: &'static str, value: Duration, allowed: RangeInclusive<u64>) -> Self {
        Self {
            setting,
            value: u128::from(value.as_secs()),
            allowed,
        }
    }

    /// The one form of an out-of-range setting: its name and its bounds.
    fn check(&self) -> Result<(), BadSetting> {
        let (min, max) = (*self.allowed.start(), *self.allowed.end());
        if (u128::from(min)..=u128::from(max)).contains(&self.value) {
            Ok(())
        } else {
            Err(BadSetting::new(
                self.setting,
                format!("must be between {min} and {max}"),
            ))
        }
    }
}

/// A `*_millis` setting: a [`Duration`] in the struct, whole milliseconds
/// where it is written.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// A `*_secs` setting: a [`Duration`] in the struct, whole seconds where it
/// is written.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
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
        let config = Config::load(&args).expect("loads");
        assert_eq!(config.listen, "127.0.0.1:0");

        let bad = ConfigArgs {
            database_url: Some("mysql://localhost/x".into()),
            ..ConfigArgs::default()
        };
        let err = Config::load(&bad).expect_err("mysql is not supported");
        assert_eq!(err.setting, "database_url");

        let bad = ConfigArgs {
            listen: Some("nowhere".into()),
            ..ConfigArgs::default()
        };
        assert_eq!(Config::load(&bad).expect_err("bad").setting, "listen");
    }

    #[test]
    fn the_database_url_flag_reaches_the_config() {
        let args = ConfigArgs {
            database_url: Some("postgres://app:hunter2@db/agentshare".into()),
            ..ConfigArgs::default()
        };
        let config = Config::load(&args).expect("loads");
        assert_eq!(
            config.database_url.expose(),
            "postgres://app:hunter2@db/agentshare"
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
        let figment = Figment::from(Serialized::default(
            "peers.sharing",
            "http://a:1, http://b:2",
        ));
        let config: Config = figment.extract().expect("extracts");
        assert_eq!(config.peers.sharing, ["http://a:1", "http://b:2"]);
    }

    /// Extracts `setting = value` (TOML) over the defaults, as a config
    /// file would set it, and validates.
    fn with(setting: &str, value: &str) -> Result<Config, BadSetting> {
        let file = tempfile::NamedTempFile::new().expect("file");
        let (table, key) = setting.rsplit_once('.').unwrap_or(("", setting));
        let toml = if table.is_empty() {
            format!("{key} = {value}\n")
        } else {
            format!("[{table}]\n{key} = {value}\n")
        };
        std::fs::write(file.path(), toml).expect("write");
        Config::load(&ConfigArgs {
            config: Some(file.path().to_path_buf()),
            ..ConfigArgs::default()
        })
    }

    #[test]
    fn durations_keep_their_names_units_and_defaults() {
        let config = Config::default();
        let scheduler = &config.scheduler;
        for (duration, expected) in [
            (config.shutdown_grace, Duration::from_secs(30)),
            (config.shutdown_delay, Duration::from_millis(500)),
            (config.event_poll, Duration::from_millis(200)),
            (config.runtime_deadline, Duration::from_secs(300)),
            (config.auth.step_up_max_age, Duration::from_secs(600)),
            (config.store.watch_retention, Duration::from_secs(86_400)),
            (
                config.store.watch_access_check,
                Duration::from_millis(2_000),
            ),
            (scheduler.fire_poll, Duration::from_millis(1_000)),
            (scheduler.fire_lease, Duration::from_secs(60)),
            (scheduler.fire_missed_after, Duration::from_secs(300)),
            (scheduler.fire_run_timeout, Duration::from_secs(900)),
            (scheduler.delivery_poll, Duration::from_millis(1_000)),
            (scheduler.delivery_backoff_base, Duration::from_secs(30)),
            (scheduler.delivery_backoff_max, Duration::from_secs(3_600)),
        ] {
            assert_eq!(duration, expected);
        }

        let config = with("scheduler.fire_poll_millis", "20").expect("loads");
        assert_eq!(config.scheduler.fire_poll, Duration::from_millis(20));
        let config = with("scheduler.fire_lease_secs", "7").expect("loads");
        assert_eq!(config.scheduler.fire_lease, Duration::from_secs(7));
        let config = with("shutdown_delay_millis", "0").expect("loads");
        assert_eq!(config.shutdown_delay, Duration::ZERO);

        // The harness writes settings back out as variables by these names.
        let written = serde_json::to_value(&config.scheduler).expect("serializes");
        assert_eq!(written["fire_poll_millis"], 1_000);
        assert_eq!(written["fire_lease_secs"], 60);
        assert_eq!(written["delivery_backoff_max_secs"], 3_600);
    }

    #[test]
    fn an_out_of_range_setting_names_itself_and_its_range() {
        for (setting, value, range) in [
            ("database_max_connections", "0", "1 and 4294967295"),
            ("shutdown_grace_secs", "86401", "0 and 86400"),
            ("shutdown_delay_millis", "3600001", "0 and 3600000"),
            ("event_poll_millis", "3600001", "0 and 3600000"),
            ("runtime_deadline_secs", "0", "1 and 86400"),
            ("runtime_deadline_secs", "86401", "1 and 86400"),
            ("auth.step_up_max_age_secs", "604801", "0 and 604800"),
            ("max_message_bytes", "4095", "4096 and 4294967295"),
            ("max_nesting_depth", "7", "8 and 64"),
            ("store.max_items", "0", "1 and 9223372036854775807"),
            (
                "store.watch_retention_secs",
                "0",
                "1 and 9223372036854775807",
            ),
            (
                "store.watch_access_check_millis",
                "0",
                "1 and 9223372036854775807",
            ),
            ("scheduler.fire_poll_millis", "0", "1 and 3600000"),
            ("scheduler.fire_poll_millis", "3600001", "1 and 3600000"),
            ("scheduler.fire_lease_secs", "2", "3 and 86400"),
            ("scheduler.fire_batch", "0", "1 and 10000"),
            ("scheduler.fire_concurrency", "1001", "1 and 1000"),
            ("scheduler.fire_missed_after_secs", "0", "1 and 86400"),
            ("scheduler.fire_run_timeout_secs", "86401", "1 and 86400"),
            ("scheduler.delivery_poll_millis", "0", "1 and 3600000"),
            ("scheduler.delivery_max_attempts", "101", "1 and 100"),
            ("scheduler.delivery_backoff_base_secs", "0", "1 and 86400"),
            ("scheduler.delivery_backoff_max_secs", "29", "30 and 604800"),
            (
                "scheduler.delivery_backoff_max_secs",
                "604801",
                "30 and 604800",
            ),
        ] {
            let err = with(setting, value).expect_err(setting);
            assert_eq!(err.setting, setting);
            assert_eq!(
                err.to_string(),
                format!("bad setting `{setting}`: must be between {range}")
            );
        }
        // Each bound itself is allowed.
        for (setting, value) in [
            ("scheduler.fire_lease_secs", "3"),
            ("scheduler.fire_poll_millis", "3600000"),
            ("shutdown_grace_secs", "0"),
            ("scheduler.delivery_backoff_max_secs", "30"),
        ] {
            with(setting, value).expect(setting);
        }
        // A negative or non-numeric duration fails where it is read, with
        // the same setting named.
        let err = with("auth.step_up_max_age_secs", "-1").expect_err("negative");
        assert_eq!(err.setting, "auth.step_up_max_age_secs");
    }

    /// The table's names are the names the settings are read by: a value
    /// just outside each range, written under the table's name, is refused
    /// naming that setting.
    #[test]
    fn every_bounded_setting_is_named_as_it_is_written() {
        for bounded in Config::default().bounded_settings() {
            let (min, max) = (*bounded.allowed.start(), *bounded.allowed.end());
            let outside = if min > 0 {
                u128::from(min) - 1
            } else {
                u128::from(max) + 1
            };
            let err = with(bounded.setting, &outside.to_string()).expect_err(bounded.setting);
            assert_eq!(err.setting, bounded.setting);
        }
    }

    #[test]
    fn secrets_never_print_and_a_bad_one_is_not_quoted() {
        let file = tempfile::NamedTempFile::new().expect("file");
        std::fs::write(
            file.path(),
            r#"
database_url = "postgres://app:hunter2@db/agentshare"
[connections]
active_secret_key = "k1"
secret_keys = { k1 = "c2VhbGluZy1rZXktc2VhbGluZy1rZXktc2VhbGluZy0=" }
oauth_redirect_url = "https://app.example.com/oauth/callback"
[connections.providers.gmail]
kind = "oauth"
authorize_url = "https://accounts.example.com/auth"
token_url = "https://accounts.example.com/token"
client_id = "client-1"
client_secret = "oauth-client-s3cret"
"#,
        )
        .expect("write");
        let config = Config::load(&ConfigArgs {
            config: Some(file.path().to_path_buf()),
            ..ConfigArgs::default()
        })
        .expect("loads");
        let printed = format!("{config:?} {:?}", config.connections);
        for secret in [
            "hunter2",
            "c2VhbGluZy1rZXktc2VhbGluZy1rZXktc2VhbGluZy0=",
            "oauth-client-s3cret",
        ] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(printed.contains("[redacted]"), "{printed}");
        assert_eq!(
            config.connections.providers["gmail"].client_secret.expose(),
            "oauth-client-s3cret"
        );

        let args = ConfigArgs {
            database_url: Some("postgres://app:hunter2@db/x".into()),
            ..ConfigArgs::default()
        };
        assert!(!format!("{args:?}").contains("hunter2"));

        // A secret the environment would parse as a number is refused
        // without being quoted.
        let err = with("connections.providers.gmail.client_secret", "918273645")
            .expect_err("not a string");
        assert_eq!(err.setting, "connections.providers.gmail.client_secret");
        assert!(!err.to_string().contains("918273645"), "{err}");
    }
}
