//! The scheduler service: automations (per-user subscriptions, firing,
//! runs, notifications). Its behaviour arrives with issues 11 and 12; until
//! then every RPC answers UNIMPLEMENTED naming its issue.

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::roadmap::Planned;
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::event_log_service_server::{
    self as event_log, EventLogServiceServer,
};
use agentshare_proto::scheduler::v1::automations_service_server::{
    self as automations, AutomationsService, AutomationsServiceServer,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

/// Only kit's outbox tables so far.
static MIGRATIONS: Migrations = Migrations {
    sqlite: Migrator::DEFAULT,
    postgres: Migrator::DEFAULT,
};

/// No service consumes the scheduler's events yet.
fn caller_policy() -> CallerPolicy {
    CallerPolicy::default().internal(event_log::SERVICE_NAME, &[])
}

static ROADMAP: &[Planned] = &[
    Planned::service(
        automations::SERVICE_NAME,
        "automations and subscriptions",
        11,
    ),
    Planned::method(automations::SERVICE_NAME, "ListRuns", "automation runs", 12),
    Planned::method(automations::SERVICE_NAME, "GetRun", "automation runs", 12),
];

/// RPCs that later issues build; each answers UNIMPLEMENTED naming its issue.
struct Unbuilt;

impl AutomationsService for Unbuilt {}

/// Serves the scheduler on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let names = [automations::SERVICE_NAME, event_log::SERVICE_NAME];
    Ok(bootstrap::serve_backend(
        &context,
        listener,
        caller_policy(),
        &names,
        ROADMAP,
        |routes| {
            routes
                .add_service(AutomationsServiceServer::new(Unbuilt))
                .add_service(EventLogServiceServer::new(events))
        },
    )
    .await)
}

/// How every host mounts the scheduler.
pub static SERVICE: BackendService = BackendService {
    name: ServiceName::Scheduler,
    migrations: &MIGRATIONS,
    start: |context, db, listener| Box::pin(start(context, db, listener)),
};
