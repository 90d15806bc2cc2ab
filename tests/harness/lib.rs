//! The end-to-end harness: starts the real suite on ephemeral loopback
//! ports, in-process or as child processes, over SQLite or PostgreSQL, and
//! hands back authenticated clients that talk gRPC through the gateway.
//!
//! - SQLite: one file per service in a temp dir.
//! - PostgreSQL: set `AGENTSHARE_TEST_POSTGRES_URL`; each suite gets its own
//!   schema per service and pools of at most 2. An unreachable server fails
//!   the test; it never skips.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod cli;
pub mod collector;
mod db;
pub mod fire;
pub mod load;
pub mod mcp;
pub mod oauth_provider;
mod org;
pub mod runtime;
pub mod wait;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentshare_kit::bootstrap::{Context, open_db};
use agentshare_kit::clock::Clock;
use agentshare_kit::colocated::Colocated;
use agentshare_kit::config::Config;
use agentshare_kit::identity::{Identity, KeyRing, ServiceName, generate_missing_keys};
use agentshare_kit::server::{Running, ServiceChannel, Shutdown, bind};
use agentshare_kit::session;
use agentshare_proto::events::v1::event_log_service_client::EventLogServiceClient;
use agentshare_proto::events::v1::{Event, WatchRequest};
use agentshare_proto::gateway::v1::invoke_service_client::InvokeServiceClient;
use agentshare_proto::gateway::v1::{InvokeRequest, InvokeResponse};
use agentshare_proto::registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use agentshare_proto::registry::v1::{
    Agent, AgentDraft, CreateAgentRequest, DeployAgentRequest, IntegrationScope, Tool,
};
use agentshare_proto::sharing::v1::access_service_client::AccessServiceClient;
use agentshare_proto::sharing::v1::connections_service_client::ConnectionsServiceClient;
use agentshare_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use agentshare_proto::sharing::v1::tenancy_service_client::TenancyServiceClient;
use agentshare_proto::sharing::v1::{
    AddOrgMemberRequest, AddWorkspaceMemberRequest, CreateOrgRequest, CreateWorkspaceRequest,
    GetMeRequest, Org, OrgRole, RemoveWorkspaceMemberRequest, ShareAgentRequest,
    UnshareAgentRequest, UpdateOrgRequest, WorkspaceRole, add_org_member_request,
};
use agentshare_proto::sharing::v1::{
    BindIntegrationRequest, CreateApiKeyConnectionRequest, CreateGrantRequest, GrantKind,
};
use agentshare_proto::store::v1::sessions_service_client::SessionsServiceClient;
use agentshare_proto::store::v1::usage_service_client::UsageServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub use db::{Databases, POSTGRES_URL_VAR};
pub use org::{Member, OrgBuilder, OrgFixture};
pub use wait::{eventually, eventually_within};

/// How long a service may take to become ready before the test fails.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A service run as a child process (its own binary).
struct Child {
    process: tokio::process::Child,
    env: Vec<(String, String)>,
}

enum Host {
    InProcess(Running),
    Process(Child),
    Stopped,
}

struct Instance {
    service: ServiceName,
    addr: SocketAddr,
    host: Host,
}

/// The providers every suite knows: API-key ones for the shared agents' tools
/// (web search, CRM, document storage, a warehouse database, Slack, mail),
/// and `gmail` over OAuth when a suite runs a fake provider.
fn connections(
    gmail: Option<agentshare_kit::config::Provider>,
) -> agentshare_kit::config::Connections {
    let mut providers = agentshare_kit::config::demo_providers();
    if let Some(gmail) = gmail {
        providers.insert("gmail".to_string(), gmail);
    }
    agentshare_kit::config::Connections {
        oauth_redirect_url: "http://127.0.0.1:9/oauth/callback".into(),
        providers,
        ..Default::default()
    }
}

/// What to start.
pub struct SuiteBuilder {
    replicas: HashMap<ServiceName, usize>,
    env: Vec<(String, String)>,
    processes: bool,
    auth: Option<agentshare_kit::config::Auth>,
    oauth: Option<agentshare_kit::config::Provider>,
    log_files: bool,
    runtime_url: String,
    scheduler: agentshare_kit::config::Scheduler,
}

impl SuiteBuilder {
    /// Runs agents on the external runtime at `runtime` instead of the
    /// built-in echo runtime.
    pub fn runtime(self, runtime: &runtime::RecordingRuntime) -> Self {
        self.runtime_url(&runtime.url())
    }

    /// Runs agents on the external runtime at `url`, reachable or not.
    pub fn runtime_url(mut self, url: &str) -> Self {
        self.runtime_url = url.to_string();
        self
    }

    /// The scheduler's settings (firing pace, leases, event following),
    /// in-process and in child processes alike.
    pub fn scheduler(mut self, settings: agentshare_kit::config::Scheduler) -> Self {
        self.scheduler = settings;
        self
    }

    /// Runs `count` replicas of `service`.
    pub fn replicas(mut self, service: ServiceName, count: usize) -> Self {
        self.replicas.insert(service, count.max(1));
        self
    }

    /// Runs every service as a child process of its own binary.
    /// Adds the OAuth provider `gmail`, served by `fake`.
    pub fn oauth(mut self, fake: &oauth_provider::FakeOAuth) -> Self {
        self.oauth = Some(agentshare_kit::config::Provider {
            kind: "oauth".into(),
            check: "static".into(),
            authorize_url: fake.authorize_url(),
            token_url: fake.token_url(),
            client_id: fake.client_id(),
            client_secret: fake.client_secret().into(),
            scopes: vec!["mail.compose".into(), "mail.send".into()],
            ..Default::default()
        });
        self
    }

    /// Child processes log everything (`RUST_LOG=trace`) to files that
    /// [`Suite::logs`] reads back.
    pub fn log_files(mut self) -> Self {
        self.log_files = true;
        self
    }

    /// How the gateway verifies session tokens, instead of the dev key.
    pub fn session_auth(mut self, auth: agentshare_kit::config::Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn processes(mut self) -> Self {
        self.processes = true;
        self
    }

    /// An extra variable for every child process (with [`Self::processes`]),
    /// such as `OTEL_EXPORTER_OTLP_ENDPOINT` or `AGENTSHARE_LOG__FORMAT`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub async fn start(self) -> Suite {
        agentshare_kit::telemetry::init_for_tests();
        let dir = tempfile::tempdir().expect("temp dir");
        let keys_dir = dir.path().join("keys");
        generate_missing_keys(&keys_dir).expect("keys");
        let databases = Databases::create(dir.path()).await;
        // Child processes cannot share a manual clock; they read the system's.
        let clock = if self.processes {
            Clock::system()
        } else {
            Clock::manual(Clock::system().now_micros())
        };
        let mut suite = Suite {
            clock,
            dir,
            keys_dir,
            databases,
            instances: Vec::new(),
            config: Config::default(),
            processes: self.processes,
            // One replica of each in one process calls in-process, as
            // `serve` does; replicas and child processes call over TCP.
            colocated: (!self.processes && self.replicas.values().all(|count| *count == 1))
                .then(Colocated::default),
            log_files: self.log_files,
            env: self.env.clone(),
        };
        let count = |s: ServiceName| self.replicas.get(&s).copied().unwrap_or(1);

        // Every port first, so each service knows all its peers' addresses.
        // Child processes bind their own ports after we let go of them, so
        // they get a loopback address of their own, where no in-process
        // suite can take a freed port in between.
        let ip = if self.processes {
            private_loopback()
        } else {
            std::net::Ipv4Addr::LOCALHOST
        };
        let mut listeners = Vec::new();
        for service in ServiceName::ALL {
            for _ in 0..count(service) {
                let listener = bind("listen", SocketAddr::from((ip, 0)))
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                listeners.push((service, addr, listener));
            }
        }
        let mut config = Config {
            data_dir: suite.dir.path().to_path_buf(),
            keys_dir: suite.keys_dir.clone(),
            database_max_connections: 2,
            event_poll: Duration::from_millis(50),
            auth: self.auth.clone().unwrap_or_default(),
            connections: connections(self.oauth.clone()),
            shutdown_grace: Duration::from_secs(10),
            shutdown_delay: Duration::from_millis(300),
            runtime_url: self.runtime_url.clone(),
            scheduler: self.scheduler.clone(),
            ..Config::default()
        };
        for service in ServiceName::ALL {
            let endpoints = listeners
                .iter()
                .filter(|(s, _, _)| *s == service)
                .map(|(_, addr, _)| format!("http://{addr}"))
                .collect();
            config.peers.set(service, endpoints);
        }
        suite.config = config;

        // The services first, then the gateways, as a rollout would: a
        // gateway then finds every replica serving from its first probe.
        let (gateways, backends): (Vec<_>, Vec<_>) = listeners
            .into_iter()
            .partition(|(service, _, _)| *service == ServiceName::Gateway);
        for tier in [backends, gateways] {
            let first = suite.instances.len();
            for (service, addr, listener) in tier {
                let host = if suite.processes {
                    drop(listener);
                    Host::Process(suite.spawn(service, addr).await)
                } else {
                    Host::InProcess(suite.start_in_process(service, listener).await)
                };
                suite.instances.push(Instance {
                    service,
                    addr,
                    host,
                });
            }
            for instance in &suite.instances[first..] {
                wait_ready(instance.addr, "").await;
            }
        }
        // The gateway reports each public service once its backend answers.
        for gateway in suite.addrs(ServiceName::Gateway) {
            for service in public_services() {
                wait_ready(gateway, &service).await;
            }
        }
        suite
    }
}

/// A running suite. Stop it with [`Suite::stop`] to drop its databases.
pub struct Suite {
    pub clock: Clock,
    dir: tempfile::TempDir,
    keys_dir: PathBuf,
    databases: Databases,
    instances: Vec<Instance>,
    config: Config,
    processes: bool,
    colocated: Option<Colocated>,
    log_files: bool,
    env: Vec<(String, String)>,
}

impl Suite {
    pub fn builder() -> SuiteBuilder {
        SuiteBuilder {
            replicas: HashMap::new(),
            env: Vec::new(),
            processes: false,
            auth: None,
            oauth: None,
            log_files: false,
            runtime_url: String::new(),
            scheduler: agentshare_kit::config::Scheduler::default(),
        }
    }

    /// One replica of everything, in-process.
    pub async fn start() -> Suite {
        Self::builder().start().await
    }

    async fn start_in_process(
        &self,
        service: ServiceName,
        listener: tokio::net::TcpListener,
    ) -> Running {
        let mut config = self.config.clone();
        config.database_url = self.databases.url(service).into();
        // Each replica stops on its own, so tests can stop just one.
        let mut context = Context::new(
            config.clone(),
            service,
            self.clock.clone(),
            Shutdown::default(),
        )
        .expect("context");
        if let Some(colocated) = &self.colocated {
            context.colocated = colocated.clone();
        }
        match agentshare::BACKENDS.iter().find(|b| b.name == service) {
            Some(backend) => {
                let db = open_db(&config, service, backend.migrations)
                    .await
                    .expect("database");
                (backend.start)(context, db, listener).await.expect("start")
            }
            None => agentshare_gateway::start(context, listener)
                .await
                .expect("start gateway"),
        }
    }

    fn child_env(&self, service: ServiceName, addr: SocketAddr) -> Vec<(String, String)> {
        let mut env = vec![
            ("AGENTSHARE_LISTEN".into(), addr.to_string()),
            (
                "AGENTSHARE_DATA_DIR".into(),
                self.dir.path().display().to_string(),
            ),
            (
                "AGENTSHARE_KEYS_DIR".into(),
                self.keys_dir.display().to_string(),
            ),
            ("AGENTSHARE_DATABASE_MAX_CONNECTIONS".into(), "2".into()),
            ("AGENTSHARE_EVENT_POLL_MILLIS".into(), "50".into()),
            ("AGENTSHARE_SHUTDOWN_DELAY_MILLIS".into(), "300".into()),
        ];
        if service == ServiceName::Gateway && !self.config.runtime_url.is_empty() {
            env.push((
                "AGENTSHARE_RUNTIME_URL".into(),
                self.config.runtime_url.clone(),
            ));
        }
        if service == ServiceName::Scheduler {
            env.extend(scheduler_env(&self.config.scheduler));
        }
        if service != ServiceName::Gateway {
            env.push((
                "AGENTSHARE_DATABASE_URL".into(),
                self.databases.url(service),
            ));
        }
        if self.log_files {
            let logs = self.dir.path().join("logs");
            std::fs::create_dir_all(&logs).expect("logs dir");
            env.push(("RUST_LOG".into(), "trace".into()));
            env.push((
                LOG_FILE_VAR.into(),
                logs.join(format!("{service}-{}.log", addr.port()))
                    .display()
                    .to_string(),
            ));
        }
        let connections = &self.config.connections;
        env.extend(self.env.iter().cloned());
        env.push((
            "AGENTSHARE_CONNECTIONS__OAUTH_REDIRECT_URL".into(),
            connections.oauth_redirect_url.clone(),
        ));
        for (key, provider) in &connections.providers {
            let prefix = format!("AGENTSHARE_CONNECTIONS__PROVIDERS__{}", key.to_uppercase());
            for (field, value) in [
                ("KIND", provider.kind.as_str()),
                ("CHECK", provider.check.as_str()),
                ("KEY_PREFIX", provider.key_prefix.as_str()),
                ("AUTHORIZE_URL", provider.authorize_url.as_str()),
                ("TOKEN_URL", provider.token_url.as_str()),
                ("CLIENT_ID", provider.client_id.as_str()),
                // The child process reads it from its environment, as a
                // deployment passes it.
                ("CLIENT_SECRET", provider.client_secret.expose()),
            ] {
                if !value.is_empty() {
                    env.push((format!("{prefix}__{field}"), value.to_string()));
                }
            }
        }
        let auth = &self.config.auth;
        env.push(("AGENTSHARE_AUTH__ISSUER".into(), auth.issuer.clone()));
        env.push(("AGENTSHARE_AUTH__AUDIENCE".into(), auth.audience.clone()));
        for (name, file) in [
            ("PUBLIC_KEY_FILE", &auth.public_key_file),
            ("JWKS_FILE", &auth.jwks_file),
        ] {
            if !file.as_os_str().is_empty() {
                env.push((
                    format!("AGENTSHARE_AUTH__{name}"),
                    file.display().to_string(),
                ));
            }
        }
        for peer in ServiceName::ALL {
            let endpoints = self.config.peers.of(peer);
            if !endpoints.is_empty() {
                env.push((
                    format!("AGENTSHARE_PEERS__{}", peer.as_str().to_uppercase()),
                    endpoints.join(","),
                ));
            }
        }
        env
    }

    async fn spawn(&self, service: ServiceName, addr: SocketAddr) -> Child {
        let env = self.child_env(service, addr);
        Child {
            process: spawn_binary(service, &env),
            env,
        }
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        self.addrs(ServiceName::Gateway)[0]
    }

    /// The addresses of every replica of `service`.
    pub fn addrs(&self, service: ServiceName) -> Vec<SocketAddr> {
        self.instances
            .iter()
            .filter(|i| i.service == service)
            .map(|i| i.addr)
            .collect()
    }

    /// Every byte the services stored so far, as a thief with the disk or
    /// a database dump would see it.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        self.databases.stored_bytes(self.dir.path()).await
    }

    /// Everything the suite's child processes logged so far (see
    /// [`SuiteBuilder::log_files`]).
    pub fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) {
            for entry in entries.flatten() {
                all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn keys_dir(&self) -> &Path {
        &self.keys_dir
    }

    /// Calls each in-process replica of `service` has received.
    pub fn calls_served(&self, service: ServiceName) -> Vec<u64> {
        self.instances
            .iter()
            .filter(|i| i.service == service)
            .map(|i| match &i.host {
                Host::InProcess(running) => running.calls.load(Ordering::Relaxed),
                _ => 0,
            })
            .collect()
    }

    /// Waits until every running scheduler replica's firing loop has come
    /// round: two more passes, so one began after this call, and whatever
    /// was due by the suite clock then has been claimed, its run row
    /// written. A test asserts that something did not fire after this,
    /// never after a sleep. In-process replicas only: a child process's
    /// loop cannot be watched.
    pub async fn firing_caught_up(&self) {
        let loops: Vec<_> = self
            .instances
            .iter()
            .filter(|i| i.service == ServiceName::Scheduler)
            .filter_map(|i| match &i.host {
                Host::InProcess(running) => Some(running.loop_passes.clone()),
                Host::Process(_) => panic!("a child process's firing loop cannot be watched"),
                Host::Stopped => None,
            })
            .map(|passes| {
                let target = passes.count() + 2;
                (passes, target)
            })
            .collect();
        for (passes, target) in loops {
            tokio::time::timeout(READY_WITHIN, passes.reached(target))
                .await
                .expect("the firing loop did not come round");
        }
    }

    fn instance_mut(&mut self, service: ServiceName, replica: usize) -> &mut Instance {
        self.instances
            .iter_mut()
            .filter(|i| i.service == service)
            .nth(replica)
            .expect("no such replica")
    }

    /// Stops one replica gracefully (in-process: drain; process: SIGTERM).
    pub async fn stop_replica(&mut self, service: ServiceName, replica: usize) {
        let instance = self.instance_mut(service, replica);
        match std::mem::replace(&mut instance.host, Host::Stopped) {
            Host::Process(mut child) => {
                signal(&child.process, libc::SIGTERM);
                let status = child.process.wait().await.expect("wait");
                assert!(
                    status.success(),
                    "{service} exited with {status} after SIGTERM"
                );
            }
            other => stop_host(other).await,
        }
    }

    /// Kills a child-process replica with SIGKILL: no drain, no cleanup.
    pub async fn kill_replica(&mut self, service: ServiceName, replica: usize) {
        let instance = self.instance_mut(service, replica);
        let Host::Process(mut child) = std::mem::replace(&mut instance.host, Host::Stopped) else {
            panic!("only child processes can be killed; build the suite with .processes()");
        };
        signal(&child.process, libc::SIGKILL);
        let _ = child.process.wait().await;
    }

    /// Starts a stopped replica again on the same address and waits for it.
    pub async fn restart_replica(&mut self, service: ServiceName, replica: usize) {
        let processes = self.processes;
        let addr = self.instance_mut(service, replica).addr;
        let host = if processes {
            Host::Process(self.spawn(service, addr).await)
        } else {
            let listener = bind("listen", addr).await.expect("rebind");
            Host::InProcess(self.start_in_process(service, listener).await)
        };
        self.instance_mut(service, replica).host = host;
        wait_ready(addr, "").await;
    }

    /// A channel to the gateway, as any client has.
    pub async fn gateway_channel(&self) -> Channel {
        connect(self.gateway_addr()).await
    }

    /// A dev session token for `user`, valid for an hour of the suite clock.
    pub fn token(&self, user: &str) -> String {
        self.token_with(user, false, 3600)
    }

    pub fn token_with(&self, user: &str, step_up: bool, ttl_secs: i64) -> String {
        let claims = session::dev_claims(
            user,
            Some(&format!("{user}@example.com")),
            step_up,
            self.clock.now_secs(),
            ttl_secs,
        );
        self.sign_session(&claims)
    }

    pub fn sign_session(&self, claims: &session::SessionClaims) -> String {
        let secret = std::fs::read(
            self.keys_dir
                .join(agentshare_kit::identity::SESSION_SECRET_FILE),
        )
        .expect("secret");
        session::mint_hs256(&secret, claims).expect("mint")
    }

    /// Clients for `user` through the gateway, signed in with a fresh token.
    pub async fn user(&self, user: &str) -> UserClient {
        UserClient::new(self.gateway_channel().await, Some(self.token(user)))
    }

    /// An org named `name` to make through the API, owned by `alice`
    /// unless the builder says otherwise.
    pub fn org(&self, name: &str) -> OrgBuilder<'_> {
        OrgBuilder::new(self, name)
    }

    /// Clients through the gateway with no credential at all.
    pub async fn anonymous(&self) -> UserClient {
        UserClient::new(self.gateway_channel().await, None)
    }

    /// Every event `target` has emitted so far about `subject`, oldest
    /// first, read as a consumer would: Watch from the start (as the
    /// scheduler, which may follow every service) until nothing more comes
    /// for 300 ms.
    pub async fn events_about(&self, target: ServiceName, subject: &str) -> Vec<Event> {
        let channel = self
            .service_channel(ServiceName::Scheduler, target, 0)
            .await;
        let mut stream = EventLogServiceClient::new(channel)
            .watch(WatchRequest {
                after_seq: 0,
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        let mut events = Vec::new();
        while let Ok(next) =
            tokio::time::timeout(Duration::from_millis(300), stream.message()).await
        {
            let Some(message) = next.expect("event stream") else {
                break;
            };
            let event = message.event.expect("event");
            if event.subject_id == subject {
                events.push(event);
            }
        }
        events
    }

    /// A channel straight to one replica of `target`, calling as the service
    /// `caller` with that service's real key.
    pub async fn service_channel(
        &self,
        caller: ServiceName,
        target: ServiceName,
        replica: usize,
    ) -> ServiceChannel {
        let keys = KeyRing::load(&self.keys_dir, caller).expect("keys");
        let identity = Identity::new(keys, self.clock.clone());
        let addr = self.addrs(target)[replica];
        agentshare_kit::server::channel(
            &identity,
            target,
            &[format!("http://{addr}")],
            &Colocated::default(),
        )
        .expect("channel")
    }

    /// A pool on `service`'s own database, for tests that write beside it.
    pub async fn db(&self, service: ServiceName) -> agentshare_kit::db::Db {
        agentshare_kit::db::Db::connect(&self.databases.url(service), 4)
            .await
            .expect("db")
    }

    /// Stops everything: the gateways first, then the services; drops the
    /// suite's PostgreSQL schemas.
    pub async fn stop(mut self) {
        for gateways_first in [true, false] {
            let mut stopping = Vec::new();
            for instance in &mut self.instances {
                if (instance.service == ServiceName::Gateway) != gateways_first {
                    continue;
                }
                stopping.push(stop_host(std::mem::replace(
                    &mut instance.host,
                    Host::Stopped,
                )));
            }
            futures::future::join_all(stopping).await;
        }
        self.databases.drop_all().await;
    }
}

/// The scheduler's settings as `AGENTSHARE_SCHEDULER__*` variables.
fn scheduler_env(settings: &agentshare_kit::config::Scheduler) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(settings) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            (
                format!("AGENTSHARE_SCHEDULER__{}", name.to_uppercase()),
                value,
            )
        })
        .collect()
}

/// Stops one replica: a graceful drain in-process, SIGTERM for a process.
async fn stop_host(host: Host) {
    match host {
        Host::InProcess(running) => running.stop().await.expect("stops cleanly"),
        Host::Process(mut child) => {
            signal(&child.process, libc::SIGTERM);
            let _ = child.process.wait().await;
        }
        Host::Stopped => {}
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        for instance in &mut self.instances {
            match std::mem::replace(&mut instance.host, Host::Stopped) {
                Host::InProcess(running) => running.shutdown.trigger(),
                Host::Process(child) => signal(&child.process, libc::SIGKILL),
                Host::Stopped => {}
            }
        }
    }
}

/// Sends `signal` to a child process (SIGTERM to stop it as an operator
/// would).
#[allow(unsafe_code)]
pub fn signal(child: &tokio::process::Child, signal: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }
}

/// Path of one of the workspace's binaries (`agentshare`, or
/// `agentshare-<service>`), built on first use so the suite always runs the
/// code under test.
pub fn binary(name: &str) -> PathBuf {
    static TARGET_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let target_dir = TARGET_DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        // Cargo describes this test binary in the environment; passed on,
        // those variables would make the build look different and rebuild.
        for (key, _) in std::env::vars() {
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
                "CARGO_TARGET_TMPDIR",
            ]
            .iter()
            .any(|prefix| key.starts_with(prefix))
                || key == "OUT_DIR"
                || key == "LD_LIBRARY_PATH"
            {
                command.env_remove(key);
            }
        }
        // target/<profile>/deps/<this binary> → target/<profile>
        let exe = std::env::current_exe().expect("current exe");
        let target_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        command.args(["build", "--quiet", "--bins", "-p", "agentshare"]);
        if target_dir.ends_with("release") {
            command.arg("--release");
        }
        for s in ServiceName::ALL {
            command.args(["-p", &format!("agentshare-{s}")]);
        }
        let status = command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
        target_dir
    });
    target_dir.join(name)
}

/// Where a child's output goes when the suite keeps log files; the harness
/// reads it and never passes it on.
const LOG_FILE_VAR: &str = "HARNESS_LOG_FILE";

fn spawn_binary(service: ServiceName, env: &[(String, String)]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(binary(&format!("agentshare-{service}")));
    command
        .envs(env.iter().filter(|(k, _)| k != LOG_FILE_VAR).cloned())
        .kill_on_drop(true);
    if let Some((_, path)) = env.iter().find(|(k, _)| k == LOG_FILE_VAR) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("log file");
        command
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
    } else if std::env::var_os("TEST_LOG").is_none() {
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    command.spawn().expect("spawn service binary")
}

/// The environment a child replica was started with.
pub fn child_env_of(suite: &Suite, service: ServiceName, replica: usize) -> Vec<(String, String)> {
    suite
        .instances
        .iter()
        .filter(|i| i.service == service)
        .nth(replica)
        .and_then(|i| match &i.host {
            Host::Process(child) => Some(child.env.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A loopback address of 127.0.0.0/8 that no other suite of this test run
/// uses, for servers that bind in another process after we chose their port.
pub fn private_loopback() -> std::net::Ipv4Addr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(2);
    // Each test binary counts in a /24 of its own (from its process id):
    // test binaries that run at once, on a machine others build and test
    // on too, would otherwise count through the same addresses, and one
    // could take the port of a replica a test killed before it restarts.
    let base = (std::process::id() & 0xFFFF) << 8;
    let n = base + NEXT.fetch_add(1, Ordering::Relaxed);
    let [_, b, c, d] = n.to_be_bytes();
    std::net::Ipv4Addr::new(127, b, c, d.max(2))
}

/// A port on a private loopback address, free now and not handed out by the
/// kernel to any other suite of this run.
pub fn reserve_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind((private_loopback(), 0)).expect("bind");
    listener.local_addr().expect("addr")
}

/// Every public gRPC service of the contract, as the gateway serves them.
pub fn public_services() -> Vec<String> {
    let routes = agentshare_gateway::RouteTable::from_contract().expect("the contract decodes");
    let mut all: Vec<String> = routes
        .public_services()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    all.extend(routes.own_services().iter().cloned());
    all
}

/// An agent's integration `key` on `provider`; `connection` names the
/// builder's connection for SHARED, and is empty for USER_CONFIGURED.
pub fn tool(key: &str, provider: &str, scope: IntegrationScope, connection: &str) -> Tool {
    Tool {
        integration_key: key.into(),
        provider: provider.into(),
        scope: scope as i32,
        connection_id: connection.into(),
        ..Default::default()
    }
}

/// A request for a draft agent with just a name.
pub fn draft_agent(name: &str) -> CreateAgentRequest {
    CreateAgentRequest {
        draft: Some(AgentDraft {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_lazy()
}

/// Waits until `service` (empty: the server) reports SERVING.
pub async fn wait_ready(addr: SocketAddr, service: &str) {
    let client = HealthClient::new(connect(addr).await);
    let what = format!("{addr} {service:?} serving");
    wait::eventually_within(READY_WITHIN, &what, || {
        let mut client = client.clone();
        let request = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        async move {
            let status = client.check(request).await.ok()?.into_inner().status;
            (status == ServingStatus::Serving as i32).then_some(())
        }
    })
    .await;
}

/// Adds the bearer token and the org and workspace headers to every call.
#[derive(Clone)]
pub struct Credentials {
    token: Option<String>,
    org: Option<String>,
    workspace: Option<String>,
    grant: Option<String>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        if let Some(token) = &self.token {
            metadata.insert(
                "authorization",
                MetadataValue::try_from(format!("Bearer {token}")).expect("header"),
            );
        }
        if let Some(org) = &self.org {
            metadata.insert(
                "x-agentshare-org",
                MetadataValue::try_from(org.as_str()).expect("header"),
            );
        }
        if let Some(workspace) = &self.workspace {
            metadata.insert(
                "x-agentshare-workspace",
                MetadataValue::try_from(workspace.as_str()).expect("header"),
            );
        }
        if let Some(grant) = &self.grant {
            metadata.insert(
                "x-agentshare-grant-token",
                MetadataValue::try_from(grant.as_str()).expect("header"),
            );
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Credentials>;

/// One caller's clients for every public service, through the gateway.
#[derive(Clone)]
pub struct UserClient {
    channel: Channel,
    credentials: Credentials,
}

impl UserClient {
    pub fn new(channel: Channel, token: Option<String>) -> Self {
        Self {
            channel,
            credentials: Credentials {
                token,
                org: None,
                workspace: None,
                grant: None,
            },
        }
    }

    /// The same caller, naming `org` in `x-agentshare-org`.
    pub fn in_org(&self, org: &str) -> Self {
        let mut next = self.clone();
        next.credentials.org = Some(org.to_string());
        next
    }

    /// The same caller, naming `workspace` in `x-agentshare-workspace`.
    pub fn in_workspace(&self, workspace: &str) -> Self {
        let mut next = self.clone();
        next.credentials.workspace = Some(workspace.to_string());
        next
    }

    /// The same caller and credentials over another channel (another
    /// gateway replica).
    pub fn on_channel(&self, channel: Channel) -> Self {
        let mut next = self.clone();
        next.channel = channel;
        next
    }

    /// The same caller presenting a share token too.
    pub fn with_grant(&self, token: &str) -> Self {
        let mut next = self.clone();
        next.credentials.grant = Some(token.to_string());
        next
    }

    /// The same caller with another raw credential.
    pub fn with_token(&self, token: &str) -> Self {
        let mut next = self.clone();
        next.credentials.token = Some(token.to_string());
        next
    }

    /// The raw authenticated channel, for clients of any service.
    pub fn channel(&self) -> Authed {
        self.authed()
    }

    fn authed(&self) -> Authed {
        InterceptedService::new(self.channel.clone(), self.credentials.clone())
    }

    pub fn tenancy(&self) -> TenancyServiceClient<Authed> {
        TenancyServiceClient::new(self.authed())
    }

    pub fn registry(&self) -> AgentRegistryServiceClient<Authed> {
        AgentRegistryServiceClient::new(self.authed())
    }

    pub fn sharing(&self) -> SharingServiceClient<Authed> {
        SharingServiceClient::new(self.authed())
    }

    pub fn access(&self) -> AccessServiceClient<Authed> {
        AccessServiceClient::new(self.authed())
    }

    /// The caller's user id.
    pub async fn user_id(&self) -> String {
        self.tenancy()
            .get_me(GetMeRequest {})
            .await
            .expect("me")
            .into_inner()
            .user
            .expect("user")
            .id
    }

    /// Shares the agent with its workspaces.
    pub async fn share(&self, agent_id: &str) {
        self.sharing()
            .share_agent(ShareAgentRequest {
                agent_id: agent_id.into(),
            })
            .await
            .expect("share");
    }

    /// Unshares the agent; its workspace list stays.
    pub async fn unshare(&self, agent_id: &str) {
        self.sharing()
            .unshare_agent(UnshareAgentRequest {
                agent_id: agent_id.into(),
            })
            .await
            .expect("unshare");
    }

    /// Adds a user to the caller's org (the caller needs step-up).
    pub async fn add_member(&self, user_id: &str, role: OrgRole) {
        self.tenancy()
            .add_org_member(AddOrgMemberRequest {
                user: Some(add_org_member_request::User::UserId(user_id.into())),
                role: role as i32,
            })
            .await
            .expect("add org member");
    }

    /// Turns workspaces on in the caller's org (the owner, with step-up).
    pub async fn enable_workspaces(&self) {
        self.tenancy()
            .update_org(UpdateOrgRequest {
                workspaces_enabled: Some(true),
                ..Default::default()
            })
            .await
            .expect("workspaces on");
    }

    /// Creates a workspace; returns its id (the caller needs step-up).
    pub async fn create_workspace(&self, name: &str) -> String {
        self.tenancy()
            .create_workspace(CreateWorkspaceRequest { name: name.into() })
            .await
            .expect("create workspace")
            .into_inner()
            .workspace
            .expect("workspace")
            .id
    }

    /// Puts a member in a workspace (the caller needs step-up).
    pub async fn add_to_workspace(&self, workspace_id: &str, user_id: &str, role: WorkspaceRole) {
        self.tenancy()
            .add_workspace_member(AddWorkspaceMemberRequest {
                workspace_id: workspace_id.into(),
                user_id: user_id.into(),
                role: role as i32,
            })
            .await
            .expect("add workspace member");
    }

    /// Takes a member out of a workspace (the caller needs step-up).
    pub async fn remove_from_workspace(&self, workspace_id: &str, user_id: &str) {
        self.tenancy()
            .remove_workspace_member(RemoveWorkspaceMemberRequest {
                workspace_id: workspace_id.into(),
                user_id: user_id.into(),
            })
            .await
            .expect("remove workspace member");
    }

    /// Creates an agent named `name` and deploys it as version 1.
    pub async fn deployed_agent(&self, name: &str) -> Agent {
        let agent = self.new_agent(name).await;
        self.deploy(&agent).await
    }

    /// Deploys the agent's current draft.
    pub async fn deploy(&self, agent: &Agent) -> Agent {
        self.registry()
            .deploy_agent(DeployAgentRequest {
                agent_id: agent.id.clone(),
                expected_draft_revision: agent.draft_revision,
                notes: String::new(),
            })
            .await
            .expect("deploy")
            .into_inner()
            .agent
            .expect("agent")
    }

    /// Creates, deploys and shares an agent named `name` with its home
    /// workspace.
    pub async fn shared_agent(&self, name: &str) -> Agent {
        let agent = self.deployed_agent(name).await;
        self.share(&agent.id).await;
        agent
    }

    /// Creates an agent with these instructions and tools, deploys it as
    /// version 1 and shares it with its home workspace.
    pub async fn shared_agent_with(
        &self,
        name: &str,
        instructions: &str,
        tools: Vec<Tool>,
    ) -> Agent {
        let agent = self
            .registry()
            .create_agent(CreateAgentRequest {
                draft: Some(AgentDraft {
                    name: name.into(),
                    instructions: instructions.into(),
                    tools,
                    ..Default::default()
                }),
                is_managed: false,
            })
            .await
            .expect("create agent")
            .into_inner()
            .agent
            .expect("agent");
        let agent = self.deploy(&agent).await;
        self.share(&agent.id).await;
        agent
    }

    /// Creates an org named `name`, with this caller as its owner.
    pub async fn new_org(&self, name: &str) -> Org {
        self.tenancy()
            .create_org(CreateOrgRequest { name: name.into() })
            .await
            .expect("create org")
            .into_inner()
            .org
            .expect("org")
    }

    /// Creates a draft agent named `name` in the caller's org.
    pub async fn new_agent(&self, name: &str) -> Agent {
        self.new_agent_result(name).await.expect("create agent")
    }

    /// Tries to create a draft agent named `name`.
    pub async fn new_agent_result(&self, name: &str) -> Result<Agent, tonic::Status> {
        let response = self.registry().create_agent(draft_agent(name)).await?;
        Ok(response.into_inner().agent.expect("agent"))
    }

    pub fn invoke(&self) -> InvokeServiceClient<Authed> {
        InvokeServiceClient::new(self.authed())
    }

    pub fn sessions(&self) -> SessionsServiceClient<Authed> {
        SessionsServiceClient::new(self.authed())
    }

    pub fn usage(&self) -> UsageServiceClient<Authed> {
        UsageServiceClient::new(self.authed())
    }

    /// Runs `agent_id` once on `input` in a new session.
    pub async fn run(&self, agent_id: &str, input: &str) -> Result<InvokeResponse, tonic::Status> {
        self.invoke()
            .invoke(InvokeRequest {
                agent_id: agent_id.into(),
                input: input.into(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Mints a share grant on `agent_id`; returns its id and its token.
    pub async fn grant(&self, agent_id: &str, kind: GrantKind) -> (String, String) {
        self.grant_limited(agent_id, kind, None).await
    }

    /// As [`Self::grant`], with `limits` (or the kind's defaults).
    pub async fn grant_limited(
        &self,
        agent_id: &str,
        kind: GrantKind,
        limits: Option<agentshare_proto::sharing::v1::GrantLimits>,
    ) -> (String, String) {
        let created = self
            .sharing()
            .create_grant(CreateGrantRequest {
                agent_id: agent_id.into(),
                kind: kind as i32,
                label: "test grant".into(),
                expire_time: None,
                pinned_version: None,
                limits,
            })
            .await
            .expect("grant")
            .into_inner();
        (created.grant.expect("grant").id, created.token)
    }

    /// Saves an API-key connection to `provider`; returns its id.
    pub async fn api_key_connection(&self, provider: &str, key: &str) -> String {
        ConnectionsServiceClient::new(self.authed())
            .create_api_key_connection(CreateApiKeyConnectionRequest {
                provider: provider.into(),
                api_key: key.into(),
                label: format!("{provider} key"),
                expire_time: None,
            })
            .await
            .expect("api key connection")
            .into_inner()
            .connection
            .expect("connection")
            .id
    }

    /// Binds the caller's connection to one integration of an agent.
    pub async fn bind(&self, agent_id: &str, integration_key: &str, connection_id: &str) {
        ConnectionsServiceClient::new(self.authed())
            .bind_integration(BindIntegrationRequest {
                agent_id: agent_id.into(),
                integration_key: integration_key.into(),
                connection_id: connection_id.into(),
            })
            .await
            .expect("bind");
    }
}
