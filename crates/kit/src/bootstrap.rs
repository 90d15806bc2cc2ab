//! What every service binary does before it serves: flags, config,
//! telemetry, database and migrations, keys; and the exit code 2 with one line
//! when any of it is wrong.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::colocated::Colocated;
use crate::config::{BadSetting, Config, ConfigArgs};
use crate::db::{Db, Migrations};
use crate::identity::{Identity, KeyRing, ServiceName};
use crate::server::{Running, ServiceChannel, Shutdown};

/// Everything a service needs to start, whichever way it is hosted.
#[derive(Clone)]
pub struct Context {
    pub config: Config,
    pub identity: Identity,
    pub clock: Clock,
    pub shutdown: Shutdown,
    /// The other services of this process, which it calls without a socket
    /// (`agentshare serve`); empty when it runs alone.
    pub colocated: Colocated,
}

impl Context {
    /// Loads this service's keys from the configured keys dir.
    pub fn new(
        config: Config,
        service: ServiceName,
        clock: Clock,
        shutdown: Shutdown,
    ) -> Result<Self, BadSetting> {
        let keys = KeyRing::load(&config.keys_dir(), service)
            .map_err(|e| BadSetting::new("keys_dir", e))?;
        Ok(Self {
            identity: Identity::new(keys, clock.clone()),
            config,
            clock,
            shutdown,
            colocated: Colocated::default(),
        })
    }

    pub fn grace(&self) -> Duration {
        self.config.shutdown_grace
    }

    pub fn drain_delay(&self) -> Duration {
        self.config.shutdown_delay
    }

    /// A channel to another service at the endpoints configured for it:
    /// the one way a backend reaches its peers.
    pub fn peer(&self, service: ServiceName) -> Result<ServiceChannel, BadSetting> {
        crate::server::channel(
            &self.identity,
            service,
            self.config.peers.of(service),
            &self.colocated,
        )
    }

    /// `event_poll_millis`, at least 10 ms: a tighter poll only loads the
    /// database.
    pub fn event_poll(&self) -> Duration {
        self.config.event_poll.max(Duration::from_millis(10))
    }
}

/// Opens and migrates `service`'s database.
pub async fn open_db(
    config: &Config,
    service: ServiceName,
    migrations: &Migrations,
) -> Result<Db, BadSetting> {
    let url = config.database_url_for(service);
    if config.database_url.is_empty() {
        config.ensure_data_dir()?;
    }
    let db = Db::connect(url.expose(), config.database_max_connections).await?;
    db.migrate(migrations).await?;
    db.observe_pool(service.as_str());
    Ok(db)
}

/// The flags of a per-service binary.
#[derive(Parser, Debug)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Run the database migrations and exit (for a Kubernetes Job).
    #[arg(long)]
    pub migrate_only: bool,
}

/// Starts one backend service on a migrated database.
pub type StartFn = fn(
    Context,
    Db,
    TcpListener,
) -> futures::future::BoxFuture<'static, Result<Running, BadSetting>>;

/// A backend service as every host mounts it: its binary, `agentshare
/// serve` and the test suite.
pub struct BackendService {
    pub name: ServiceName,
    pub migrations: &'static Migrations,
    pub start: StartFn,
}

/// A backend as every host mounts it: its name, its migrations and its
/// `start(context, db, listener)`.
#[macro_export]
macro_rules! backend_service {
    ($name:expr, $migrations:expr, $start:path) => {
        $crate::bootstrap::BackendService {
            name: $name,
            migrations: &$migrations,
            start: |context, db, listener| Box::pin($start(context, db, listener)),
        }
    };
}

/// The body of a backend's `main`: serves it alone until SIGTERM.
pub fn run_backend(service: &'static BackendService) -> ExitCode {
    run_service(
        service.name,
        Some(service.migrations),
        |context, db, listener| async move {
            match db {
                Some(db) => (service.start)(context, db, listener).await,
                None => Err(BadSetting::new(
                    "database_url",
                    format!("{} needs a database", service.name),
                )),
            }
        },
    )
}

/// The body of a per-service `main`: serves `service` alone until SIGTERM.
pub fn run_service<F, Fut>(
    service: ServiceName,
    migrations: Option<&'static Migrations>,
    start: F,
) -> ExitCode
where
    F: FnOnce(Context, Option<Db>, TcpListener) -> Fut,
    Fut: Future<Output = Result<Running, BadSetting>>,
{
    let args = ServiceArgs::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&BadSetting::new("runtime", e)),
    };
    runtime.block_on(async move {
        let config = match Config::load(&args.config) {
            Ok(config) => config,
            Err(e) => return fail(&e),
        };
        let _telemetry =
            match crate::telemetry::init(&format!("agentshare-{service}"), config.log.format) {
                Ok(telemetry) => telemetry,
                Err(e) => return fail(&e),
            };
        let result = async {
            let db = match migrations {
                Some(migrations) => Some(open_db(&config, service, migrations).await?),
                None => None,
            };
            if args.migrate_only {
                tracing::info!(%service, "migrations applied");
                return Ok(None);
            }
            let shutdown = Shutdown::default();
            let context = Context::new(config.clone(), service, Clock::system(), shutdown.clone())?;
            let listener = crate::server::bind("listen", config.listen_addr()?).await?;
            let running = start(context, db, listener).await?;
            tracing::info!(%service, addr = %running.addr, "serving");
            shutdown.trigger_on_signals();
            Ok(Some(running))
        }
        .await;
        match result {
            Ok(None) => ExitCode::SUCCESS,
            Ok(Some(running)) => match running.join().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    ExitCode::FAILURE
                }
            },
            Err(e) => fail(&e),
        }
    })
}

/// Prints one line naming the setting and returns exit code 2.
pub fn fail(error: &BadSetting) -> ExitCode {
    eprintln!("agentshare: {error}");
    ExitCode::from(2)
}

/// Serves a backend service: `names` are its gRPC services (health and
/// reflection list them), `add` mounts them, every call passes the identity
/// layer with `policy`.
pub async fn serve_backend(
    context: &Context,
    listener: TcpListener,
    policy: crate::identity::CallerPolicy,
    names: &[&str],
    add: impl FnOnce(tonic::service::Routes) -> tonic::service::Routes,
) -> Running {
    let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    let (health, routes) = crate::server::health_and_reflection(&names);
    crate::server::serve(
        crate::server::ServerSpec {
            listener,
            routes: add(routes),
            health_names: names,
            health,
            grace: context.grace(),
            drain_delay: context.drain_delay(),
            in_flight: crate::server::InFlight::default(),
            shutdown: context.shutdown.clone(),
            colocated: context.colocated.clone(),
            service: context.identity.me(),
        },
        crate::identity::IdentityLayer::new(context.identity.clone(), policy),
    )
    .await
}

/// A generated tonic server (`FooServiceServer::new(…)`) that accepts and
/// sends messages of up to `limit` bytes (`Config::max_message_size`), so
/// every service holds to the one `max_message_bytes`. Generated servers
/// take the limit as inherent methods, which no trait can add.
#[macro_export]
macro_rules! with_message_limit {
    ($limit:expr, $server:expr) => {{
        let limit: usize = $limit;
        $server
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }};
}

/// Serves a backend's generated tonic servers on `listener` through
/// [`serve_backend`]: each holds to `max_message_bytes`, and each is
/// reported SERVING under its own gRPC service name.
#[macro_export]
macro_rules! serve_backend {
    ($context:expr, $listener:expr, $policy:expr, [$($server:expr),+ $(,)?]) => {{
        let context: &$crate::bootstrap::Context = &$context;
        let limit = context.config.max_message_size();
        let mut names: Vec<&'static str> = Vec::new();
        let mut mounts: Vec<$crate::bootstrap::Mount> = Vec::new();
        $(
            let server = $crate::with_message_limit!(limit, $server);
            names.push($crate::bootstrap::service_name(&server));
            mounts.push(Box::new(move |routes: ::tonic::service::Routes| routes.add_service(server)));
        )+
        $crate::bootstrap::serve_backend(context, $listener, $policy, &names, |routes| {
            mounts.into_iter().fold(routes, |routes, mount| mount(routes))
        })
        .await
    }};
}

/// Adds one server to a backend's routes.
pub type Mount = Box<dyn FnOnce(tonic::service::Routes) -> tonic::service::Routes + Send>;

/// The gRPC name a generated server answers to.
pub fn service_name<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// This service's event log, stopped with the context.
pub fn event_log(context: &Context, db: &Db) -> crate::events::EventLog {
    crate::events::EventLog::new(db.clone(), context.event_poll(), context.shutdown.clone())
}
