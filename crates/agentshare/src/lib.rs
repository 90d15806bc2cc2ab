//! The embedded mode: all five services in one process on SQLite, each on
//! its own loopback port. They call each other in-process through each
//! other's whole server stack (identity, caller policy, handlers), as they do
//! on Kubernetes, without the socket (`kit::colocated`).

pub mod cli;

use std::net::SocketAddr;

use agentshare_kit::bootstrap::{BackendService, Context, open_db};
use agentshare_kit::clock::Clock;
use agentshare_kit::colocated::Colocated;
use agentshare_kit::config::{BadSetting, Config};
use agentshare_kit::identity::{ServiceName, generate_missing_keys};
use agentshare_kit::server::{Running, Shutdown, bind};

/// Every backend service, in the order they start.
pub static BACKENDS: [&BackendService; 4] = [
    &agentshare_sharing::SERVICE,
    &agentshare_registry::SERVICE,
    &agentshare_store::SERVICE,
    &agentshare_scheduler::SERVICE,
];

/// A running embedded suite.
pub struct Embedded {
    pub gateway: Running,
    backends: Vec<Running>,
}

impl Embedded {
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.addr
    }

    /// Stops the gateway first, so in-flight calls drain while the services
    /// behind it still answer; then the services.
    pub async fn stop(self) -> Result<(), String> {
        self.gateway.stop().await?;
        for backend in self.backends {
            backend.stop().await?;
        }
        Ok(())
    }

    /// Waits for the gateway to stop on its own (SIGTERM), then stops the rest.
    pub async fn wait(self) -> Result<(), String> {
        self.gateway.join().await?;
        for backend in self.backends {
            backend.stop().await?;
        }
        Ok(())
    }
}

/// Prepares the data dir (created on first start, with dev keys) and starts
/// every service; the gateway listens on `config.listen`.
pub async fn start(mut config: Config, gateway_shutdown: Shutdown) -> Result<Embedded, BadSetting> {
    if !config.database_url.is_empty() {
        return Err(BadSetting::new(
            "database_url",
            "`serve` runs on embedded SQLite in the data dir; run the per-service binaries for PostgreSQL",
        ));
    }
    config.ensure_data_dir()?;
    // A new machine can run the README's scenarios without a config file;
    // `serve` says so at start.
    if config.connections.providers.is_empty() {
        config.connections.providers = agentshare_kit::config::demo_providers();
    }
    generate_missing_keys(&config.keys_dir()).map_err(|e| BadSetting::new("keys_dir", e))?;
    let gateway_listener = bind("listen", config.listen_addr()?).await?;
    // The scheduler fires automations through the gateway's internal run
    // path; it reaches the gateway on loopback even when it listens on all
    // interfaces.
    let mut gateway_addr = gateway_listener
        .local_addr()
        .map_err(|e| BadSetting::new("listen", e))?;
    if gateway_addr.ip().is_unspecified() {
        gateway_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    config
        .peers
        .set(ServiceName::Gateway, vec![format!("http://{gateway_addr}")]);

    let mut listeners = Vec::new();
    for service in BACKENDS {
        let listener = bind("listen", SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| BadSetting::new("listen", e))?;
        config
            .peers
            .set(service.name, vec![format!("http://{addr}")]);
        listeners.push((service, listener));
    }

    let clock = Clock::system();
    let backend_shutdown = Shutdown::default();
    let colocated = Colocated::default();
    let mut running = Vec::new();
    for (service, listener) in listeners {
        let mut context = Context::new(
            config.clone(),
            service.name,
            clock.clone(),
            backend_shutdown.clone(),
        )?;
        context.colocated = colocated.clone();
        let db = open_db(&config, service.name, service.migrations).await?;
        running.push((service.start)(context, db, listener).await?);
    }
    let mut context = Context::new(config, ServiceName::Gateway, clock, gateway_shutdown)?;
    context.colocated = colocated;
    let gateway = agentshare_gateway::start(context, gateway_listener).await?;
    Ok(Embedded {
        gateway,
        backends: running,
    })
}
