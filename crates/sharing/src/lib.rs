//! The sharing service: tenancy and access. It is the authority on who may do
//! what (DESIGN.md, "Who owns what").

mod access;
mod common;
mod connections;
mod tenancy;

use agentshare_kit::bootstrap::{self, BackendService, Context};
use agentshare_kit::config::BadSetting;
use agentshare_kit::db::{Db, Migrations};
use agentshare_kit::events;
use agentshare_kit::identity::{CallerPolicy, ServiceName};
use agentshare_kit::server::Running;
use agentshare_proto::events::v1::event_log_service_server::EventLogServiceServer;
use agentshare_proto::scheduler::v1::automations_internal_service_client::AutomationsInternalServiceClient;
use agentshare_proto::sharing::v1::access_internal_service_server::{
    self as access_internal, AccessInternalServiceServer,
};
use agentshare_proto::sharing::v1::access_service_server::AccessServiceServer;
use agentshare_proto::sharing::v1::connections_service_server::ConnectionsServiceServer;
use agentshare_proto::sharing::v1::sharing_service_server::SharingServiceServer;
use agentshare_proto::sharing::v1::tenancy_service_server::TenancyServiceServer;
use agentshare_proto::store::v1::store_internal_service_client::StoreInternalServiceClient;
use tokio::net::TcpListener;

use crate::access::storage::agent_access;

/// `migrations/`, the same SQL on both backends (see `Migrations`).
static MIGRATIONS: Migrations = Migrations::shared(sqlx::migrate!("./migrations"));

/// Registry's events, from which sharing repairs its access facts.
const AGENTS: events::Feed = events::Feed::new(ServiceName::Registry, "sharing.agent_access");

/// Who may call sharing's internal services: the gateway authenticates
/// callers, plans runs and releases their slots, registry syncs agents, the store resolves its
/// partitions, the scheduler plans automation runs and asks who pins a retiring version.
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
        .internal_method(
            "agentshare.sharing.v1.AccessInternalService/ResolveStore",
            &[ServiceName::Store],
        )
        .internal_method(
            "agentshare.sharing.v1.AccessInternalService/ReleaseRun",
            &[ServiceName::Gateway],
        )
        .internal_method(
            "agentshare.sharing.v1.AccessInternalService/ListVersionHolders",
            &[ServiceName::Scheduler],
        )
        // The gateway hears access change, so its MCP sessions list their
        // tools again.
        .event_followers(&[
            ServiceName::Registry,
            ServiceName::Store,
            ServiceName::Scheduler,
            ServiceName::Gateway,
        ])
}

/// Serves sharing on `listener` until the context's shutdown.
pub async fn start(context: Context, db: Db, listener: TcpListener) -> Result<Running, BadSetting> {
    let events = bootstrap::event_log(&context, &db);
    let storage = common::Storage::new(db.clone(), context.clock.clone(), events.clone());
    let secrets = connections::secrets::SecretBox::from_config(&context.config)?;
    let providers = std::sync::Arc::new(connections::providers::Providers::from_config(
        &context.config,
    )?);
    let credentials = connections::credentials::Credentials {
        storage: storage.clone(),
        secrets,
        providers,
    };
    let scheduler = context.peer(ServiceName::Scheduler)?;
    let sessions = StoreInternalServiceClient::new(context.peer(ServiceName::Store)?);
    events::follow(
        &context,
        db,
        AGENTS,
        storage.access.clone(),
        |access, event| async move { agent_access::repair(&access, &event).await },
    )?;
    // The step-up rule counts in the clock's whole seconds.
    let step_up_max_age_secs =
        i64::try_from(context.config.auth.step_up_max_age.as_secs()).unwrap_or(i64::MAX);
    Ok(agentshare_kit::serve_backend!(
        context,
        listener,
        caller_policy(),
        [
            TenancyServiceServer::new(tenancy::rpc::Tenancy {
                storage: storage.clone(),
                step_up_max_age_secs,
            }),
            SharingServiceServer::new(access::rpc::Sharing {
                storage: storage.clone(),
                step_up_max_age_secs,
                automations: AutomationsInternalServiceClient::new(scheduler),
            }),
            ConnectionsServiceServer::new(connections::rpc::Connections {
                storage: storage.clone(),
                credentials: credentials.clone(),
            }),
            AccessServiceServer::new(access::rpc::Access {
                storage: storage.clone(),
                sessions: sessions.clone(),
            }),
            AccessInternalServiceServer::new(access::rpc::AccessInternal {
                storage,
                credentials,
                sessions,
            }),
            EventLogServiceServer::new(events),
        ]
    ))
}

/// How every host mounts sharing.
pub static SERVICE: BackendService =
    agentshare_kit::backend_service!(ServiceName::Sharing, MIGRATIONS, start);

/// Re-seals every connection secret and pending OAuth verifier under the
/// active key, so older keys can then be removed from config. Safe to run
/// while sharing serves: a row changed meanwhile is left for the next run.
/// Returns how many values were re-sealed.
pub async fn rotate_secrets(config: &agentshare_kit::config::Config) -> Result<usize, BadSetting> {
    let db = bootstrap::open_db(config, ServiceName::Sharing, &MIGRATIONS).await?;
    let secrets = connections::secrets::SecretBox::from_config(config)?;
    let storage = common::Storage::new(
        db.clone(),
        agentshare_kit::clock::Clock::system(),
        agentshare_kit::events::EventLog::new(
            db,
            std::time::Duration::from_secs(1),
            agentshare_kit::server::Shutdown::default(),
        ),
    );
    let failed = |e: &dyn std::fmt::Display| BadSetting::new("connections.secret_keys", e);
    let (connections, flows) = storage
        .connections
        .sealed_elsewhere(secrets.active_key_id())
        .await
        .map_err(|e| failed(&e))?;
    let mut resealed = 0;
    for row in connections {
        let open = |sealed: &connections::secrets::Sealed, context: &str| {
            secrets
                .open(sealed, context)
                .map_err(|e| failed(&format!("connection {}: {e}", row.id)))
        };
        let secret = open(
            &row.secret,
            &connections::storage::ConnectionRow::secret_context(&row.id),
        )?;
        let refresh = row
            .refresh
            .as_ref()
            .map(|r| {
                open(
                    r,
                    &connections::storage::ConnectionRow::refresh_context(&row.id),
                )
            })
            .transpose()?;
        let seal =
            |plain: &str, context: &str| secrets.seal(plain, context).map_err(|e| failed(&e));
        let secret = seal(
            &secret,
            &connections::storage::ConnectionRow::secret_context(&row.id),
        )?;
        let refresh = refresh
            .map(|r| {
                seal(
                    &r,
                    &connections::storage::ConnectionRow::refresh_context(&row.id),
                )
            })
            .transpose()?;
        if storage
            .connections
            .reseal_connection(&row, &secret, refresh.as_ref())
            .await
            .map_err(|e| failed(&e))?
        {
            resealed += 1 + usize::from(refresh.is_some());
        }
    }
    for connections::storage::SealedVerifier {
        state_sha256: state,
        verifier,
    } in flows
    {
        let context = connections::storage::Flow::verifier_context(&state);
        let plain = secrets
            .open(&verifier, &context)
            .map_err(|e| failed(&format!("an OAuth flow: {e}")))?;
        let sealed = secrets.seal(&plain, &context).map_err(|e| failed(&e))?;
        storage
            .connections
            .reseal_flow(&state, &sealed)
            .await
            .map_err(|e| failed(&e))?;
        resealed += 1;
    }
    Ok(resealed)
}
