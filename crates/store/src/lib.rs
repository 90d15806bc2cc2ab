//! The store service: workspace-scoped data. `items` is the workspace
//! store (items, their quotas and watches); `sessions` holds sessions and
//! their messages, invocation records and usage, with the internal
//! recording RPCs of the run path.

mod items;
mod sessions;
mod stored;

use agentshare_kit::Error;
use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::events;
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::Event;
use agentshare_proto::events::v1::event_log_service_server::EventLogServiceServer;
use agentshare_proto::store::v1::sessions_service_server::SessionsServiceServer;
use agentshare_proto::store::v1::store_internal_service_server::{
    self as store_internal, StoreInternalServiceServer,
};
use agentshare_proto::store::v1::usage_service_server::UsageServiceServer;
use agentshare_proto::store::v1::workspace_store_service_server::WorkspaceStoreServiceServer;
use tokio::net::TcpListener;

/// What an item's key and value may be: pure checks over a decoded
/// request, reached by the fuzz targets.
pub use items::rules as item_rules;

static MIGRATIONS: Migrations = agentshare_kit::migrations_per_backend!();

/// The gateway and the scheduler record runs; sharing also opens a session
/// to check who continues it before planning a run. The scheduler follows
/// store events.
fn caller_policy() -> CallerPolicy {
    CallerPolicy::default()
        .internal(
            store_internal::SERVICE_NAME,
            &[ServiceName::Gateway, ServiceName::Scheduler],
        )
        .internal_method(
            "agentshare.store.v1.StoreInternalService/OpenSession",
            &[
                ServiceName::Gateway,
                ServiceName::Scheduler,
                ServiceName::Sharing,
            ],
        )
        .event_followers(&[ServiceName::Scheduler])
}

/// Registry's events, as far as the store follows them.
const AGENT_DELETIONS: events::Feed =
    events::Feed::new(ServiceName::Registry, "store.agent_deleted");

/// Drops a deleted agent's store and archives its sessions as registry
/// announces the deletion. Private `user-*` workspaces are the users' and
/// stay; so do the sessions, readable but never continued.
async fn drop_deleted_agent(
    (storage, sessions): (items::Storage, sessions::Storage),
    event: Event,
) -> Result<(), Error> {
    if event.kind != "agent.deleted" {
        return Ok(());
    }
    // Registry's ids are UUIDs; anything else names no store.
    let Ok(agent_id) = uuid::Uuid::parse_str(&event.subject_id) else {
        tracing::warn!(subject = %event.subject_id, "agent.deleted names no agent id");
        return Ok(());
    };
    let agent_id = agent_id.hyphenated().to_string();
    let dropped = storage.drop_agent_store(&agent_id).await?;
    let archived = sessions.archive_agent(&agent_id).await?;
    tracing::info!(%agent_id, partitions = dropped, sessions = archived, "deleted agent's store dropped and sessions archived");
    Ok(())
}

/// Serves the store on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let settings = &context.config.store;
    let retention = items::Retention {
        changes: i64::try_from(settings.watch_retention_changes).unwrap_or(i64::MAX),
        age_micros: i64::try_from(settings.watch_retention.as_micros()).unwrap_or(i64::MAX),
    };
    let storage = items::Storage {
        db: db.clone(),
        clock: context.clock.clone(),
        limits: items::Limits::from_config(settings),
        retention,
    };
    let sharing = context.peer(ServiceName::Sharing)?;
    let records = sessions::Storage {
        db: db.clone(),
        clock: context.clock.clone(),
    };
    let internal = sessions::Internal {
        storage: records.clone(),
        max_message_bytes: settings.max_message_bytes,
    };
    let sessions = sessions::Sessions {
        storage: records.clone(),
    };
    let usage = sessions::Usage {
        storage: records.clone(),
        sharing: sharing.clone(),
    };
    let workspace_store = items::WorkspaceStore {
        storage: storage.clone(),
        access: items::Access::new(sharing),
        hub: items::Hub::default(),
        caps: items::Caps::default(),
        settings: items::WatchSettings::new(settings, context.event_poll()),
        shutdown: context.shutdown.clone(),
    };
    events::follow(
        &context,
        db,
        AGENT_DELETIONS,
        (storage, records),
        drop_deleted_agent,
    )?;
    Ok(agentshare_kit::serve_backend!(
        context,
        listener,
        caller_policy(),
        [
            WorkspaceStoreServiceServer::new(workspace_store),
            SessionsServiceServer::new(sessions),
            UsageServiceServer::new(usage),
            StoreInternalServiceServer::new(internal),
            EventLogServiceServer::new(events),
        ]
    ))
}

/// How every host mounts the store.
pub static SERVICE: BackendService =
    agentshare_kit::backend_service!(ServiceName::Store, MIGRATIONS, start);
