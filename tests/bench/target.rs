//! The server under test, in a process of its own as clients meet it: an
//! `agentshare serve` this tool starts on a data dir it owns (embedded
//! SQLite), or a gateway someone else runs, such as the multi-process
//! topology of `deploy/local` on PostgreSQL.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agentshare::cli::client::mint;
use agentshare_e2e::{UserClient, connect, public_services, wait};
use agentshare_kit::config::ConfigArgs;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long a start may take before the tool gives up on it.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How often readiness is asked while timing a start: fine enough that
/// the poll does not hide what the start costs.
const READY_POLL: Duration = Duration::from_millis(2);
/// Tokens outlive any run of the tool.
const TOKEN_SECS: i64 = 24 * 3600;

/// Where the server is and how to sign its users in.
pub struct Server {
    /// Minting settings: the data dir (or `AGENTSHARE_KEYS_DIR`) whose
    /// session key the server trusts.
    config: ConfigArgs,
    child: Option<tokio::process::Child>,
    channel: Channel,
    /// Put before every user this run signs in as, so runs against one
    /// long-lived gateway each seed users of their own.
    users_of_run: String,
}

/// An `agentshare serve` to start.
pub struct Spawn {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    /// TOML given to `--config`.
    pub config_file: PathBuf,
    /// Where serve's log lines go (warnings and errors); dropped without.
    pub log: Option<PathBuf>,
    /// serve's `database_url`: a PostgreSQL server and database prefix;
    /// SQLite in the data dir without.
    pub database_url: Option<String>,
}

impl Server {
    /// Starts `agentshare serve` and returns it with the time from spawn
    /// to every public service answering SERVING through the gateway.
    pub async fn start(spawn: &Spawn) -> Result<(Self, Duration), String> {
        let begin = Instant::now();
        let mut child = tokio::process::Command::new(&spawn.binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&spawn.data_dir)
            .arg("--config")
            .arg(&spawn.config_file)
            .args(
                spawn
                    .database_url
                    .iter()
                    .flat_map(|url| ["--database-url", url.as_str()]),
            )
            .env("RUST_LOG", "warn")
            .env_remove("AGENTSHARE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spawn.binary.display()))?;
        let stderr = child.stderr.take().ok_or("serve has no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let serving = async {
            let mut said = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("agentshare is serving on ") {
                    return rest
                        .split_whitespace()
                        .next()
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                        .ok_or_else(|| {
                            format!("serve said an address that does not parse: {line}")
                        });
                }
                said.push(line);
            }
            Err(format!(
                "agentshare serve exited before serving:\n{}",
                said.join("\n")
            ))
        };
        let addr = tokio::time::timeout(START_LIMIT, serving)
            .await
            .map_err(|_| format!("agentshare serve did not serve within {START_LIMIT:?}"))??;
        // Keep reading, so serve never blocks on a full pipe; what it logs
        // goes to the log file, when there is one.
        let mut log = match &spawn.log {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
            ),
            None => None,
        };
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(file) = log.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
            }
        });
        let channel = connect(addr).await;
        every_service_serving(&channel).await?;
        let took = begin.elapsed();
        let config = ConfigArgs {
            data_dir: Some(spawn.data_dir.clone()),
            config: Some(spawn.config_file.clone()),
            ..ConfigArgs::default()
        };
        Ok((
            Self {
                config,
                child: Some(child),
                channel,
                users_of_run: String::new(),
            },
            took,
        ))
    }

    /// A gateway run elsewhere; tokens are minted with the session key of
    /// `AGENTSHARE_KEYS_DIR` (or `AGENTSHARE_DATA_DIR`'s), as `agentshare
    /// token` does.
    pub async fn attach(addr: SocketAddr) -> Result<Self, String> {
        let channel = connect(addr).await;
        every_service_serving(&channel).await?;
        Ok(Self {
            config: ConfigArgs::default(),
            child: None,
            channel,
            users_of_run: format!("run{}-", agentshare_kit::ids::new_id()),
        })
    }

    /// Stops a server this tool started, as its operator would (SIGTERM),
    /// and waits for it to exit.
    pub async fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        agentshare_e2e::signal(&child, libc::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("waiting for serve to exit: {e}")),
            Err(_) => {
                let _ = child.kill().await;
                Err("serve did not stop within 30 s of SIGTERM".into())
            }
        }
    }

    /// The server's process id, when this tool started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?.id()
    }

    /// `user`, signed in (stepped up) through the gateway on one shared
    /// connection, as a client library would.
    pub fn user(&self, user: &str) -> Result<UserClient, String> {
        let user = &format!("{}{user}", self.users_of_run);
        let email = format!("{user}@example.com");
        let token = mint(&self.config, user, Some(&email), true, TOKEN_SECS)
            .map_err(|e| format!("cannot mint a token for {user}: {e}"))?;
        Ok(UserClient::new(self.channel.clone(), Some(token)))
    }
}

async fn every_service_serving(channel: &Channel) -> Result<(), String> {
    let health = HealthClient::new(channel.clone());
    let mut services = public_services();
    services.push(String::new());
    for service in services {
        let what = format!("{service:?} SERVING");
        wait::polling(READY_POLL, START_LIMIT, &what, || {
            let mut health = health.clone();
            let request = tonic_health::pb::HealthCheckRequest {
                service: service.clone(),
            };
            async move {
                let status = health.check(request).await.ok()?.into_inner().status;
                (status == ServingStatus::Serving as i32).then_some(())
            }
        })
        .await?;
    }
    Ok(())
}

/// The resident set of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// `url` (a PostgreSQL URL naming a database that exists) renamed to a
/// database prefix of its own for this run, so serve makes every service's
/// database anew.
pub fn fresh_databases(url: &str) -> Result<String, String> {
    let id = agentshare_kit::ids::new_id().replace('-', "");
    agentshare::with_database(url, &format!("bench_{}", &id[id.len() - 12..]))
        .map_err(|e| e.to_string())
}

/// Drops the databases serve made under the prefix `url` names, from the
/// server's maintenance database.
pub async fn drop_databases(url: &str) -> Result<(), String> {
    use sqlx::{Connection, Executor};
    // The workloads' limits install them first; a soak measures none.
    sqlx::any::install_default_drivers();
    let maintenance = agentshare::with_database(url, "postgres").map_err(|e| e.to_string())?;
    let failed = |e: sqlx::Error| format!("cannot drop the bench's databases: {e}");
    let mut admin = sqlx::AnyConnection::connect(&maintenance)
        .await
        .map_err(failed)?;
    for backend in agentshare::BACKENDS {
        let database =
            agentshare::service_database(url, backend.name).map_err(|e| e.to_string())?;
        let name = agentshare::database_of(&database).map_err(|e| e.to_string())?;
        let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        admin.execute(drop.as_str()).await.map_err(failed)?;
    }
    let _ = admin.close().await;
    Ok(())
}
