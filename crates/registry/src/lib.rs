//! The registry service: the authority on an agent's design and versions.

mod agents;
mod diff;
mod domain;
mod holders;
mod internal;
mod rpc;
mod storage;
mod sync;

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::events;
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::event_log_service_server::EventLogServiceServer;
use agentshare_proto::registry::v1::agent_registry_internal_service_server::{
    self as registry_internal, AgentRegistryInternalServiceServer,
};
use agentshare_proto::registry::v1::agent_registry_service_server::AgentRegistryServiceServer;
use tokio::net::TcpListener;

/// A draft's rules, pure over the decoded request: what the fuzz targets
/// run after decoding registry's requests.
pub use domain::{apply_mask, parse_cron, validate_draft};

static MIGRATIONS: Migrations = agentshare_kit::migrations_per_backend!();

/// Sharing repairs its access facts from registry's events; the scheduler
/// follows automation changes; the store drops a deleted agent's items;
/// the gateway tells its MCP sessions that their tools may have changed.
fn caller_policy() -> CallerPolicy {
    CallerPolicy::default()
        .event_followers(&[
            ServiceName::Sharing,
            ServiceName::Store,
            ServiceName::Scheduler,
            ServiceName::Gateway,
        ])
        .internal(
            registry_internal::SERVICE_NAME,
            &[ServiceName::Gateway, ServiceName::Scheduler],
        )
}

/// Sharing's events, as far as registry follows them.
const NEW_ORGS: events::Feed =
    events::Feed::new(ServiceName::Sharing, "registry.org-default-agents");

/// Creates each new org's default agent as sharing announces the org. The
/// first GetDefaultAgent may have created it already; either way there is
/// exactly one.
fn follow_new_orgs(context: &Context, db: Db, agents: agents::Agents) -> Result<(), BadSetting> {
    events::follow(context, db, NEW_ORGS, agents, |agents, event| async move {
        if event.kind == "org.created" {
            agents.ensure_default_agent(&event.subject_id).await?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Serves the registry on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let storage = storage::Storage {
        db,
        clock: context.clock.clone(),
        events: events.clone(),
    };
    let sharing = context.peer(ServiceName::Sharing)?;
    let agents = agents::Agents {
        storage,
        access: sync::AccessSync::new(sharing.clone()),
        holders: holders::Holders::new(sharing),
    };
    follow_new_orgs(&context, agents.storage.db.clone(), agents.clone())?;
    let internal = internal::RegistryInternal {
        agents: agents.clone(),
    };
    let registry = rpc::Registry { agents };
    Ok(agentshare_kit::serve_backend!(
        context,
        listener,
        caller_policy(),
        [
            AgentRegistryServiceServer::new(registry),
            AgentRegistryInternalServiceServer::new(internal),
            EventLogServiceServer::new(events),
        ]
    ))
}

/// How every host mounts registry.
pub static SERVICE: BackendService =
    agentshare_kit::backend_service!(ServiceName::Registry, MIGRATIONS, start);
