//! The sharing service: tenancy and access. It is the authority on who may do
//! what (DESIGN.md, "Who owns what").

mod access;
mod agent_access;
mod api_keys;
mod audit;
mod domain;
mod members;
mod pins;
mod projects;
mod rpc;
mod scope;
mod storage;
mod workspaces;

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::roadmap::Planned;
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::event_log_service_server::{
    self as event_log, EventLogServiceServer,
};
use agentshare_proto::sharing::v1::access_internal_service_server::{
    self as access_internal, AccessInternalServiceServer,
};
use agentshare_proto::sharing::v1::access_service_server::{
    self as access_service, AccessServiceServer,
};
use agentshare_proto::sharing::v1::connections_service_server::{
    self as connections, ConnectionsServiceServer,
};
use agentshare_proto::sharing::v1::sharing_service_server::{
    self as sharing, SharingServiceServer,
};
use agentshare_proto::sharing::v1::tenancy_service_server::{
    self as tenancy, TenancyServiceServer,
};
use tokio::net::TcpListener;

static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("migrations/sqlite"),
    postgres: sqlx::migrate!("migrations/postgres"),
};

/// Who may call sharing's internal services: the gateway authenticates
/// callers and plans runs, registry syncs agents, the scheduler plans
/// automation runs.
fn caller_policy() -> CallerPolicy {
    CallerPolicy::default()
        .internal(
            access_internal::SERVICE_NAME,
            &[
                ServiceName::Gateway,
                ServiceName::Registry,
                ServiceName::Scheduler,
            ],
        )
        .internal(
            event_log::SERVICE_NAME,
            &[
                ServiceName::Registry,
                ServiceName::Store,
                ServiceName::Scheduler,
            ],
        )
}

/// What later issues build here.
static ROADMAP: &[Planned] = &[
    Planned::service(
        tenancy::SERVICE_NAME,
        "tenancy (orgs, workspaces, members, projects, API keys, audit)",
        4,
    ),
    Planned::method(sharing::SERVICE_NAME, "CreateGrant", "share grants", 9),
    Planned::method(sharing::SERVICE_NAME, "ListGrants", "share grants", 9),
    Planned::method(sharing::SERVICE_NAME, "RevokeGrant", "share grants", 9),
    Planned::method(
        sharing::SERVICE_NAME,
        "GetAgentReach",
        "an agent's reach",
        9,
    ),
    Planned::service(
        connections::SERVICE_NAME,
        "connections and personal setup",
        7,
    ),
    Planned::method(
        access_service::SERVICE_NAME,
        "ResolveInvocation",
        "invocation plans",
        9,
    ),
    Planned::service(
        access_internal::SERVICE_NAME,
        "grant tokens and invocation plans",
        9,
    ),
];

/// Serves sharing on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let storage = storage::Storage {
        db,
        clock: context.clock.clone(),
        events: events.clone(),
    };
    let repaired = storage.clone();
    agentshare_kit::events::follow(
        &context,
        storage.db.clone(),
        ServiceName::Registry,
        "sharing.agent_access",
        move |event| {
            let storage = repaired.clone();
            Box::pin(async move { agent_access::repair(&storage, &event).await })
        },
    )?;
    let names = [
        tenancy::SERVICE_NAME,
        sharing::SERVICE_NAME,
        connections::SERVICE_NAME,
        access_service::SERVICE_NAME,
        access_internal::SERVICE_NAME,
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
                .add_service(TenancyServiceServer::new(rpc::Tenancy {
                    storage: storage.clone(),
                    step_up_max_age_secs: context.config.auth.step_up_max_age_secs,
                }))
                .add_service(SharingServiceServer::new(rpc::Sharing {
                    storage: storage.clone(),
                    step_up_max_age_secs: context.config.auth.step_up_max_age_secs,
                }))
                .add_service(ConnectionsServiceServer::new(rpc::Unbuilt))
                .add_service(AccessServiceServer::new(rpc::Access {
                    storage: storage.clone(),
                }))
                .add_service(AccessInternalServiceServer::new(rpc::AccessInternal {
                    storage,
                }))
                .add_service(EventLogServiceServer::new(events))
        },
    )
    .await)
}

/// How every host mounts sharing.
pub static SERVICE: BackendService = BackendService {
    name: ServiceName::Sharing,
    migrations: &MIGRATIONS,
    start: |context, db, listener| Box::pin(start(context, db, listener)),
};
