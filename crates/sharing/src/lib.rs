//! The sharing service: tenancy and access. It is the authority on who may do
//! what (DESIGN.md, "Who owns what").

mod domain;
mod rpc;
mod storage;

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::event_log_service_server::{
    self as event_log, EventLogServiceServer,
};
use agentshare_proto::sharing::v1::access_internal_service_server::{
    self as access_internal, AccessInternalServiceServer,
};
use agentshare_proto::sharing::v1::tenancy_service_server::{
    self as tenancy, TenancyServiceServer,
};
use tokio::net::TcpListener;

static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("migrations/sqlite"),
    postgres: sqlx::migrate!("migrations/postgres"),
};

/// Who may call sharing's internal services.
fn caller_policy() -> CallerPolicy {
    CallerPolicy::default()
        .internal(access_internal::SERVICE_NAME, &[ServiceName::Gateway])
        .internal(
            event_log::SERVICE_NAME,
            &[
                ServiceName::Registry,
                ServiceName::Store,
                ServiceName::Scheduler,
            ],
        )
}

/// Serves sharing on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let storage = storage::Storage {
        db,
        clock: context.clock.clone(),
        events: events.clone(),
    };
    let names = [
        tenancy::SERVICE_NAME,
        access_internal::SERVICE_NAME,
        event_log::SERVICE_NAME,
    ];
    Ok(
        bootstrap::serve_backend(&context, listener, caller_policy(), &names, |routes| {
            routes
                .add_service(TenancyServiceServer::new(rpc::Tenancy {
                    storage: storage.clone(),
                }))
                .add_service(AccessInternalServiceServer::new(rpc::AccessInternal {
                    storage,
                }))
                .add_service(EventLogServiceServer::new(events))
        })
        .await,
    )
}

/// How every host mounts sharing.
pub static SERVICE: BackendService = BackendService {
    name: ServiceName::Sharing,
    migrations: &MIGRATIONS,
    start: |context, db, listener| Box::pin(start(context, db, listener)),
};
