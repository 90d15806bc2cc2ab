//! The store service: workspace-scoped data (items, sessions and messages,
//! invocation records). Its behaviour arrives with issues 8 and 10; until
//! then every RPC answers UNIMPLEMENTED naming its issue, so the whole
//! contract is reachable from the start.

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::roadmap::Planned;
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::event_log_service_server::{
    self as event_log, EventLogServiceServer,
};
use agentshare_proto::store::v1::sessions_service_server::{
    self as sessions, SessionsService, SessionsServiceServer,
};
use agentshare_proto::store::v1::store_internal_service_server::{
    self as store_internal, StoreInternalService, StoreInternalServiceServer,
};
use agentshare_proto::store::v1::usage_service_server::{
    self as usage, UsageService, UsageServiceServer,
};
use agentshare_proto::store::v1::workspace_store_service_server::{
    self as workspace_store, WorkspaceStoreService, WorkspaceStoreServiceServer,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

/// Only kit's outbox tables so far.
static MIGRATIONS: Migrations = Migrations {
    sqlite: Migrator::DEFAULT,
    postgres: Migrator::DEFAULT,
};

/// The gateway and the scheduler record runs; the scheduler follows store
/// events.
fn caller_policy() -> CallerPolicy {
    CallerPolicy::default()
        .internal(
            store_internal::SERVICE_NAME,
            &[ServiceName::Gateway, ServiceName::Scheduler],
        )
        .internal(event_log::SERVICE_NAME, &[ServiceName::Scheduler])
}

static ROADMAP: &[Planned] = &[
    Planned::service(workspace_store::SERVICE_NAME, "the workspace store", 8),
    Planned::service(sessions::SERVICE_NAME, "sessions", 10),
    Planned::service(usage::SERVICE_NAME, "usage records", 10),
    Planned::service(
        store_internal::SERVICE_NAME,
        "invocation records and turns",
        10,
    ),
];

/// RPCs that later issues build; each answers UNIMPLEMENTED naming its issue.
struct Unbuilt;

impl WorkspaceStoreService for Unbuilt {}
impl SessionsService for Unbuilt {}
impl UsageService for Unbuilt {}
impl StoreInternalService for Unbuilt {}

/// Serves the store on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let names = [
        workspace_store::SERVICE_NAME,
        sessions::SERVICE_NAME,
        usage::SERVICE_NAME,
        store_internal::SERVICE_NAME,
        event_log::SERVICE_NAME,
    ];
    Ok(bootstrap::serve_backend(
        &context,
        listener,
        caller_policy(),
        &names,
        ROADMAP,
        |routes| {
            routes
                .add_service(WorkspaceStoreServiceServer::new(Unbuilt))
                .add_service(SessionsServiceServer::new(Unbuilt))
                .add_service(UsageServiceServer::new(Unbuilt))
                .add_service(StoreInternalServiceServer::new(Unbuilt))
                .add_service(EventLogServiceServer::new(events))
        },
    )
    .await)
}

/// How every host mounts the store.
pub static SERVICE: BackendService = BackendService {
    name: ServiceName::Store,
    migrations: &MIGRATIONS,
    start: |context, db, listener| Box::pin(start(context, db, listener)),
};
