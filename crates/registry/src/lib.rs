//! The registry service: the authority on an agent's design and versions.

mod domain;
mod rpc;
mod storage;

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::roadmap::Planned;
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::event_log_service_server::{
    self as event_log, EventLogServiceServer,
};
use agentshare_proto::registry::v1::agent_registry_service_server::{
    self as registry, AgentRegistryServiceServer,
};
use tokio::net::TcpListener;

static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("migrations/sqlite"),
    postgres: sqlx::migrate!("migrations/postgres"),
};

/// Sharing repairs its access facts from registry's events; the scheduler
/// follows automation changes.
fn caller_policy() -> CallerPolicy {
    CallerPolicy::default().internal(
        event_log::SERVICE_NAME,
        &[ServiceName::Sharing, ServiceName::Scheduler],
    )
}

/// What later issues build here.
static ROADMAP: &[Planned] = &[Planned::service(
    registry::SERVICE_NAME,
    "the agent lifecycle (drafts, deploys, versions, templates, the default agent)",
    5,
)];

/// Serves the registry on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let storage = storage::Storage {
        db,
        clock: context.clock.clone(),
        events: events.clone(),
    };
    let names = [registry::SERVICE_NAME, event_log::SERVICE_NAME];
    Ok(bootstrap::serve_backend(
        &context,
        listener,
        caller_policy(),
        &names,
        ROADMAP,
        |routes| {
            routes
                .add_service(AgentRegistryServiceServer::new(rpc::Registry { storage }))
                .add_service(EventLogServiceServer::new(events))
        },
    )
    .await)
}

/// How every host mounts registry.
pub static SERVICE: BackendService = BackendService {
    name: ServiceName::Registry,
    migrations: &MIGRATIONS,
    start: |context, db, listener| Box::pin(start(context, db, listener)),
};
