//! The scheduler service: automations. The users' side: what
//! builders scheduled, each user's subscriptions with their channels and
//! pauses, the schedule math in IANA zones, workspace caps, the inbox and
//! the email and push outbox. Firing: exactly one run per
//! subscription and scheduled time across replicas, under leases, with
//! catch-up after downtime, stopped by access events and by the access
//! check at fire time; and the run history. Versions retiring on a
//! schedule: the notices to the users pinned to them.

mod events;
mod firing;
mod peers;
mod retirements;
pub mod schedule;
mod stored;
mod subscriptions;

use std::sync::Arc;

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::server::{Passes, Running};
use agentshare_proto::events::v1::event_log_service_server::EventLogServiceServer;
use agentshare_proto::scheduler::v1::automations_internal_service_server::{
    self as automations_internal, AutomationsInternalServiceServer,
};
use agentshare_proto::scheduler::v1::automations_service_server::AutomationsServiceServer;
use tokio::net::TcpListener;

pub use firing::delivery::{LoggingSender, Outgoing, Sender};

/// `migrations/`, the same SQL on both backends (see `Migrations`).
static MIGRATIONS: Migrations = Migrations::shared(sqlx::migrate!("./migrations"));

/// Sharing asks which automations an unshare would stop; no service
/// consumes the scheduler's events yet.
fn caller_policy() -> CallerPolicy {
    CallerPolicy::default()
        .event_followers(&[])
        .internal(automations_internal::SERVICE_NAME, &[ServiceName::Sharing])
}

/// Serves the scheduler on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let storage = subscriptions::storage::Storage {
        db,
        clock: context.clock.clone(),
    };
    let peers = peers::Peers::new(
        context.peer(ServiceName::Registry)?,
        &context.peer(ServiceName::Sharing)?,
        context.identity.clone(),
    );
    let subscriptions = subscriptions::service::Subscriptions {
        storage: storage.clone(),
        peers: peers.clone(),
    };
    let retirements =
        retirements::Retirements::new(storage.clone(), context.peer(ServiceName::Sharing)?);
    if context.config.scheduler.follow_events {
        events::follow_registry(&context, storage.clone(), retirements.clone())?;
        events::follow_sharing(&context, storage.clone(), peers)?;
    }
    let firing_passes = Passes::default();
    firing::passes::Firing::new(
        storage.clone(),
        context.peer(ServiceName::Gateway)?,
        context.identity.clone(),
        context.config.scheduler.clone(),
        firing_passes.clone(),
        retirements,
    )
    .spawn(context.shutdown.clone());
    firing::delivery::Delivery {
        storage,
        sender: Arc::new(LoggingSender),
        settings: context.config.scheduler.clone(),
    }
    .spawn(context.shutdown.clone());
    let mut running = agentshare_kit::serve_backend!(
        context,
        listener,
        caller_policy(),
        [
            AutomationsServiceServer::new(subscriptions::rpc::Automations {
                subscriptions: subscriptions.clone(),
            }),
            AutomationsInternalServiceServer::new(subscriptions::rpc::AutomationsInternal {
                subscriptions
            },),
            EventLogServiceServer::new(events),
        ]
    );
    running.loop_passes = firing_passes;
    Ok(running)
}

/// How every host mounts the scheduler.
pub static SERVICE: BackendService =
    agentshare_kit::backend_service!(ServiceName::Scheduler, MIGRATIONS, start);
