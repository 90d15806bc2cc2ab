//! The gateway: the one public endpoint. It authenticates every call, signs
//! the caller's Principal, and forwards public services to their backend.

mod auth;
mod echo;
pub mod http;
mod invoke;
mod limits;
mod mcp;
mod proxy;
mod routes;
mod run;
mod runtime;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentshare_kit::bootstrap::Context;
use agentshare_kit::config::BadSetting;
use agentshare_kit::identity::ServiceName;
use agentshare_kit::server::{self, Running, ServerSpec, ServiceChannel};
use agentshare_proto::gateway::v1::invoke_internal_service_server::InvokeInternalServiceServer;
use agentshare_proto::gateway::v1::invoke_service_server::InvokeServiceServer;
use agentshare_proto::registry::v1::agent_registry_internal_service_client::AgentRegistryInternalServiceClient;
use agentshare_proto::sharing::v1::access_internal_service_client::AccessInternalServiceClient;
use agentshare_proto::store::v1::sessions_service_client::SessionsServiceClient;
use agentshare_proto::store::v1::store_internal_service_client::StoreInternalServiceClient;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

pub use auth::{ORG_HEADER, WORKSPACE_HEADER};
pub use routes::RouteTable;

/// Serves the gateway on `listener` until the context's shutdown.
pub async fn start(context: Context, listener: TcpListener) -> Result<Running, BadSetting> {
    // The contract, decoded once: routes, limits and HTTP/JSON all read it.
    let contract = http::contract_pool().map_err(|e| BadSetting::new("contract", e))?;
    let routes = RouteTable::of_pool(&contract);
    let mut backends = HashMap::new();
    let needed = [
        ServiceName::Sharing,
        ServiceName::Registry,
        ServiceName::Store,
    ];
    for backend in routes.backends().into_iter().chain(needed) {
        backends.insert(backend, context.peer(backend)?);
    }
    let backend = |service: ServiceName| {
        backends
            .get(&service)
            .cloned()
            .ok_or_else(|| BadSetting::new(format!("peers.{service}"), "no endpoint configured"))
    };
    let sharing = backend(ServiceName::Sharing)?;
    let store = backend(ServiceName::Store)?;
    let auth = auth::Authenticator::new(
        &context.config,
        sharing.clone(),
        store.clone(),
        context.identity.clone(),
    )?;
    let gateway_address = if context.config.gateway_address.is_empty() {
        let local = listener
            .local_addr()
            .map_err(|e| BadSetting::new("listen", e.to_string()))?;
        format!("http://{local}")
    } else {
        context.config.gateway_address.clone()
    };
    let runtime: Arc<dyn runtime::Runtime> = if context.config.runtime_url.is_empty() {
        // Said at start, so an operator who forgot the setting sees it.
        tracing::warn!(
            "runtime_url is not set: agent runs go to the built-in echo runtime (set AGENTSHARE_RUNTIME_URL)"
        );
        Arc::new(echo::Echo {
            clock: context.clock.clone(),
        })
    } else {
        Arc::new(runtime::Remote::new(&context.config.runtime_url)?)
    };
    let gateway_url = gateway_address.clone();
    let auth_for_mcp = auth.clone();
    // The run path reads designs and session pages as large as any
    // service may send.
    let limit = context.config.max_message_size();
    let runs_in_flight = server::InFlight::default();
    let invoke = invoke::Invoke {
        runs: Arc::new(run::RunPath {
            access: AccessInternalServiceClient::new(sharing).max_decoding_message_size(limit),
            registry: AgentRegistryInternalServiceClient::new(backend(ServiceName::Registry)?)
                .max_decoding_message_size(limit),
            store: StoreInternalServiceClient::new(store.clone()).max_decoding_message_size(limit),
            sessions: SessionsServiceClient::new(store).max_decoding_message_size(limit),
            runtime,
            identity: context.identity.clone(),
            clock: context.clock.clone(),
            gateway_address,
            deadline: context.config.runtime_deadline,
            in_flight: runs_in_flight.clone(),
        }),
        auth: auth.clone(),
        identity: context.identity.clone(),
    };
    let own = routes.own_services().to_vec();
    let public: Vec<String> = routes
        .public_services()
        .into_iter()
        .map(|(name, _)| name)
        .chain(own.iter().cloned())
        .collect();
    let (health, routes_served_here) = server::health_and_reflection(&public);
    let routes_served_here = routes_served_here
        .add_service(agentshare_kit::with_message_limit!(
            limit,
            InvokeServiceServer::new(invoke.clone())
        ))
        .add_service(agentshare_kit::with_message_limit!(
            limit,
            InvokeInternalServiceServer::new(invoke)
        ));
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
    let contract_for_mcp = contract.clone();
    let forwarder = Arc::new(proxy::Forwarder {
        routes,
        backends,
        auth,
        identity: context.identity.clone(),
        limits: limits::Limits::new(&context.config, &contract),
        max_message_size: limit,
    });
    // A JSON body is held to the same limit as the message it stands for.
    let api =
        http::Api::from_contract(contract, limit).map_err(|e| BadSetting::new("contract", e))?;
    let mcp = mcp::Mcp::new(
        &context,
        auth_for_mcp,
        contract_for_mcp,
        &gateway_url,
        limit,
    )?;
    let edge = Edge {
        forwarder,
        mcp: Arc::new(mcp),
        api: Arc::new(api),
        cors: http::cors(&context.config.http.allowed_origins),
    };
    Ok(server::serve(
        ServerSpec {
            listener,
            routes: routes_served_here,
            // Routed services turn SERVING when their backend does.
            health_names: own,
            health,
            grace: context.grace(),
            drain_delay: context.drain_delay(),
            in_flight: runs_in_flight,
            shutdown: context.shutdown.clone(),
            colocated: context.colocated.clone(),
            service: ServiceName::Gateway,
        },
        edge,
    )
    .await)
}

/// Every way in on the one port, outermost first: CORS for browsers, MCP,
/// HTTP/JSON transcoded to gRPC, gRPC-Web translated to gRPC, and then the
/// gRPC side, which authenticates and forwards public calls or serves the
/// gateway's own services. MCP's tool calls go straight to the gRPC side.
#[derive(Clone)]
struct Edge {
    forwarder: Arc<proxy::Forwarder>,
    mcp: Arc<mcp::Mcp>,
    api: Arc<http::Api>,
    cors: tower_http::cors::CorsLayer,
}

impl tower::Layer<tonic::service::Routes> for Edge {
    type Service = tower_http::cors::Cors<
        mcp::McpEdge<
            http::Transcoding<
                tonic_web::GrpcWebService<proxy::GatewayService<tonic::service::Routes>>,
            >,
        >,
    >;

    fn layer(&self, routes: tonic::service::Routes) -> Self::Service {
        let gateway = proxy::GatewayService::new(routes, self.forwarder.clone());
        let calls = tower::util::BoxCloneSyncService::new(gateway.clone());
        let grpc = tonic_web::GrpcWebLayer::new().layer(gateway);
        let transcoding = http::Transcoding {
            grpc,
            api: self.api.clone(),
        };
        self.cors.layer(self.mcp.layer(transcoding, calls))
    }
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
