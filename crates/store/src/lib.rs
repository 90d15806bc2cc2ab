//! The store service: workspace-scoped data (items, sessions and messages,
//! invocation records). The workspace store is built (issue 8); sessions,
//! usage and the internal recording RPCs arrive with issue 10 and until
//! then answer UNIMPLEMENTED naming it.

mod access;
mod domain;
mod rpc;
mod storage;
mod watch;

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::events;
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::roadmap::Planned;
use agentshare_kit::server::{self, Running};
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
    self as workspace_store, WorkspaceStoreServiceServer,
};
use tokio::net::TcpListener;

static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("migrations/sqlite"),
    postgres: sqlx::migrate!("migrations/postgres"),
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

impl SessionsService for Unbuilt {}
impl UsageService for Unbuilt {}
impl StoreInternalService for Unbuilt {}

/// Where the store's cursor over registry's events is stored.
const AGENT_FOLLOWER: &str = "store.agent_deleted";

/// Drops a deleted agent's store as registry announces the deletion.
/// Private `user-*` workspaces are the users' and stay.
fn follow_deleted_agents(
    context: &Context,
    db: Db,
    storage: storage::Storage,
) -> Result<(), BadSetting> {
    events::follow(
        context,
        db,
        ServiceName::Registry,
        AGENT_FOLLOWER,
        move |event| {
            let storage = storage.clone();
            Box::pin(async move {
                if event.kind != "agent.deleted" {
                    return Ok(());
                }
                // Registry's ids are UUIDs; anything else names no store.
                let Ok(agent_id) = uuid::Uuid::parse_str(&event.subject_id) else {
                    tracing::warn!(subject = %event.subject_id, "agent.deleted names no agent id");
                    return Ok(());
                };
                let dropped = storage
                    .drop_agent_store(&agent_id.hyphenated().to_string())
                    .await?;
                tracing::info!(agent_id = %agent_id, partitions = dropped, "deleted agent's store dropped");
                Ok(())
            })
        },
    )?;
    Ok(())
}

/// Serves the store on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let settings = &context.config.store;
    let retention = storage::Retention {
        changes: i64::try_from(settings.watch_retention_changes).unwrap_or(i64::MAX),
        age_micros: i64::try_from(settings.watch_retention_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000),
    };
    let storage = storage::Storage {
        db: db.clone(),
        clock: context.clock.clone(),
        limits: domain::Limits::from_config(settings),
        retention,
    };
    let sharing = server::channel(
        &context.identity,
        ServiceName::Sharing,
        context.config.peers.of(ServiceName::Sharing),
    )?;
    let workspace_store = rpc::WorkspaceStore {
        storage: storage.clone(),
        access: access::Access::new(sharing),
        hub: watch::Hub::default(),
        caps: watch::Caps::default(),
        settings: rpc::WatchSettings::new(settings, context.event_poll()),
        shutdown: context.shutdown.clone(),
    };
    follow_deleted_agents(&context, db, storage)?;
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
                .add_service(WorkspaceStoreServiceServer::new(workspace_store))
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
