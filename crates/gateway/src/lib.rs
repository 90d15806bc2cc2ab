//! The gateway: the one public endpoint. It authenticates every call, signs
//! the caller's Principal, and forwards public services to their backend.

mod auth;
mod proxy;
mod routes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentshare_kit::bootstrap::Context;
use agentshare_kit::config::BadSetting;
use agentshare_kit::identity::ServiceName;
use agentshare_kit::roadmap::Planned;
use agentshare_kit::server::{self, Running, ServerSpec, ServiceChannel};
use agentshare_proto::gateway::v1::invoke_service_server::{
    self as invoke, InvokeService, InvokeServiceServer,
};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

pub use auth::{ORG_HEADER, WORKSPACE_HEADER};
pub use routes::RouteTable;

/// What later issues build here.
static ROADMAP: &[Planned] = &[Planned::service(invoke::SERVICE_NAME, "Invoke", 10)];

/// The gateway's own RPCs that later issues build.
struct Unbuilt;

impl InvokeService for Unbuilt {}

/// Serves the gateway on `listener` until the context's shutdown.
pub async fn start(context: Context, listener: TcpListener) -> Result<Running, BadSetting> {
    let routes = RouteTable::from_contract();
    let mut backends = HashMap::new();
    for backend in routes.backends().into_iter().chain([ServiceName::Sharing]) {
        let endpoints = context.config.peers.of(backend);
        backends.insert(
            backend,
            server::channel(&context.identity, backend, endpoints)?,
        );
    }
    let sharing = backends
        .get(&ServiceName::Sharing)
        .cloned()
        .ok_or_else(|| BadSetting::new("peers.sharing", "no endpoint configured"))?;
    let auth = auth::Authenticator::new(&context.config, sharing, context.clock.clone())?;
    let own = routes.own_services().to_vec();
    let public: Vec<String> = routes
        .public_services()
        .into_iter()
        .map(|(name, _)| name)
        .chain(own.iter().cloned())
        .collect();
    let (health, routes_served_here) = server::health_and_reflection(&public);
    let routes_served_here = routes_served_here.add_service(InvokeServiceServer::new(Unbuilt));
    for backend in routes.backends() {
        let names: Vec<String> = routes
            .public_services()
            .into_iter()
            .filter(|(_, b)| *b == backend)
            .map(|(name, _)| name)
            .collect();
        if let Some(channel) = backends.get(&backend) {
            tokio::spawn(mirror_health(
                channel.clone(),
                names,
                health.clone(),
                context.shutdown.clone(),
            ));
        }
    }
    let forwarder = Arc::new(proxy::Forwarder {
        routes,
        backends,
        auth,
        identity: context.identity.clone(),
    });
    Ok(server::serve(
        ServerSpec {
            listener,
            routes: routes_served_here,
            // Routed services turn SERVING when their backend does.
            health_names: own,
            roadmap: ROADMAP,
            health,
            grace: context.grace(),
            drain_delay: context.drain_delay(),
            shutdown: context.shutdown.clone(),
        },
        proxy::GatewayLayer { forwarder },
    )
    .await)
}

/// Reports each public service as its backend reports itself, so a probe of
/// the gateway tells whether calls to that service can succeed.
async fn mirror_health(
    channel: ServiceChannel,
    names: Vec<String>,
    health: HealthReporter,
    mut shutdown: server::Shutdown,
) {
    let set_all = |status: ServingStatus| {
        let health = health.clone();
        let names = names.clone();
        async move {
            for name in &names {
                health.set_service_status(name, status).await;
            }
        }
    };
    set_all(ServingStatus::NotServing).await;
    loop {
        let mut client = HealthClient::new(channel.clone());
        let watch = client.watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        });
        let stream = tokio::select! {
            result = watch => result,
            () = shutdown.wait() => break,
        };
        if let Ok(response) = stream {
            let mut stream = response.into_inner();
            loop {
                let update = tokio::select! {
                    update = stream.message() => update,
                    () = shutdown.wait() => break,
                };
                match update {
                    Ok(Some(update)) => {
                        let serving = update.status
                            == tonic_health::pb::health_check_response::ServingStatus::Serving
                                as i32;
                        set_all(if serving {
                            ServingStatus::Serving
                        } else {
                            ServingStatus::NotServing
                        })
                        .await;
                    }
                    _ => break,
                }
            }
        }
        if shutdown.is_triggered() {
            break;
        }
        set_all(ServingStatus::NotServing).await;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = shutdown.wait() => break,
        }
    }
    set_all(ServingStatus::NotServing).await;
}
