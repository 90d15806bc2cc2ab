//! The embedded mode: all five services in one process, on SQLite in the
//! data dir (or on one PostgreSQL server, a database per service), each on
//! its own loopback port. They call each other in-process through each
//! other's whole server stack (identity, caller policy, handlers), as they do
//! on Kubernetes, without the socket (`kit::colocated`).

pub mod cli;

use std::net::SocketAddr;

use agentshare_kit::bootstrap::{BackendService, Context, open_db};
use agentshare_kit::clock::Clock;
use agentshare_kit::colocated::Colocated;
use agentshare_kit::config::{BadSetting, Config};
use agentshare_kit::db::{Backend, Db};
use agentshare_kit::identity::{ServiceName, generate_missing_keys};
use agentshare_kit::secret::Secret;
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
/// every service; the gateway listens on `config.listen`. With a
/// `database_url`, every service keeps its data on that PostgreSQL server
/// in a database of its own ([`service_database`]), made on first start.
pub async fn start(mut config: Config, gateway_shutdown: Shutdown) -> Result<Embedded, BadSetting> {
    let server = match config.database_url.expose() {
        "" => None,
        url => match Backend::of_url(url)? {
            Backend::Postgres => Some(url.to_string()),
            Backend::Sqlite => {
                return Err(BadSetting::new(
                    "database_url",
                    "`serve` keeps SQLite in the data dir (set --data-dir); database_url names a PostgreSQL server",
                ));
            }
        },
    };
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
    if let Some(server) = &server {
        create_databases(server).await?;
    }
    let mut running = Vec::new();
    for (service, listener) in listeners {
        let mut config = config.clone();
        if let Some(server) = &server {
            config.database_url = Secret::new(service_database(server, service.name)?);
        }
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
    // The gateway keeps no data.
    config.database_url = Secret::default();
    let mut context = Context::new(config, ServiceName::Gateway, clock, gateway_shutdown)?;
    context.colocated = colocated;
    let gateway = agentshare_gateway::start(context, gateway_listener).await?;
    Ok(Embedded {
        gateway,
        backends: running,
    })
}

/// The database of `service` on the PostgreSQL server of `url`: the
/// database `url` names, suffixed with the service (`…/agentshare` →
/// `…/agentshare_sharing`), as `deploy/local` names them.
pub fn service_database(url: &str, service: ServiceName) -> Result<String, BadSetting> {
    with_database(url, &format!("{}_{service}", database_of(url)?))
}

/// The database a PostgreSQL `url` names.
pub fn database_of(url: &str) -> Result<&str, BadSetting> {
    Ok(server_and_database(url)?.1)
}

/// `url`'s server part (`postgres://user@host:port`) and the database it
/// names.
fn server_and_database(url: &str) -> Result<(&str, &str), BadSetting> {
    let address = url.split('?').next().unwrap_or(url);
    address
        .split_once("://")
        .and_then(|(scheme, rest)| {
            let (authority, database) = rest.split_once('/')?;
            let ok = !authority.is_empty() && !database.is_empty() && !database.contains('/');
            ok.then(|| (&address[..scheme.len() + 3 + authority.len()], database))
        })
        .ok_or_else(|| {
            BadSetting::new(
                "database_url",
                "name a server and a database, as in postgres://HOST/agentshare",
            )
        })
}

/// `url` naming `database` instead, with its parameters.
pub fn with_database(url: &str, database: &str) -> Result<String, BadSetting> {
    let (server, _) = server_and_database(url)?;
    let mut named = format!("{server}/{database}");
    if let Some((_, query)) = url.split_once('?') {
        named.push('?');
        named.push_str(query);
    }
    Ok(named)
}

/// Makes each backend's database on the server of `url` ([`service_database`])
/// unless it is there, from the server's maintenance database `postgres`:
/// the database `url` names is only the prefix, and need not exist.
async fn create_databases(url: &str) -> Result<(), BadSetting> {
    let admin = Db::connect(&with_database(url, "postgres")?, 1).await?;
    for backend in BACKENDS {
        let service_url = service_database(url, backend.name)?;
        let name = database_of(&service_url)?;
        let refused = |e: &dyn std::fmt::Display| {
            BadSetting::new(
                "database_url",
                format!(
                    "cannot make database {name}: {e}; create it yourself, or give the user CREATEDB"
                ),
            )
        };
        let exists = agentshare_kit::db::exists(
            &admin.pool,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            (name,),
        )
        .await
        .map_err(|e| refused(&e))?;
        if exists {
            continue;
        }
        // A name cannot be a bind parameter; it is quoted as an identifier.
        let created = agentshare_kit::db::execute(
            &admin.pool,
            &format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")),
            (),
        )
        .await;
        // Another process made it between the look and the create.
        if let Err(e) = created
            && !agentshare_kit::db::is_unique_violation(&e)
        {
            return Err(refused(&e));
        }
    }
    admin.pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_has_a_database_named_after_it() {
        assert_eq!(
            service_database("postgres://db.internal:5432/agentshare", ServiceName::Store).unwrap(),
            "postgres://db.internal:5432/agentshare_store"
        );
        assert_eq!(
            service_database("postgres://u@h/app?sslmode=require", ServiceName::Sharing).unwrap(),
            "postgres://u@h/app_sharing?sslmode=require"
        );
        for nameless in [
            "postgres://h",
            "postgres://h/",
            "postgres:/x",
            "postgres://h/a/b",
        ] {
            assert!(
                service_database(nameless, ServiceName::Store).is_err(),
                "{nameless}"
            );
        }
    }
}
