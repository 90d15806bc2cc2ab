//! The store service. Its domain arrives with its own issues; until then it
//! serves health, reflection and its event log, so the suite's topology and
//! trust are complete from the start.

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::event_log_service_server::{
    self as event_log, EventLogServiceServer,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

/// Only kit's outbox tables so far.
static MIGRATIONS: Migrations = Migrations {
    sqlite: Migrator::DEFAULT,
    postgres: Migrator::DEFAULT,
};

fn caller_policy() -> CallerPolicy {
    CallerPolicy::default().internal(event_log::SERVICE_NAME, &[ServiceName::Scheduler])
}

/// Serves store on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    Ok(bootstrap::serve_backend(
        &context,
        listener,
        caller_policy(),
        &[event_log::SERVICE_NAME],
        |routes| routes.add_service(EventLogServiceServer::new(events)),
    )
    .await)
}

/// How every host mounts store.
pub static SERVICE: BackendService = BackendService {
    name: ServiceName::Store,
    migrations: &MIGRATIONS,
    start: |context, db, listener| Box::pin(start(context, db, listener)),
};
