//! The product as an operator runs it: `agentshare serve`, the per-service
//! binaries, SIGTERM, SIGKILL and bad settings.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use agentshare_e2e::collector::Collector;
use agentshare_e2e::{Suite, UserClient, binary, connect, eventually, public_services, wait_ready};
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use sqlx::Connection;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn serve(data_dir: &std::path::Path, addr: SocketAddr) -> tokio::process::Child {
    exporting(data_dir, addr, None)
}

/// `agentshare serve`, exporting its metrics every 100 ms to `collector`
/// when there is one.
fn exporting(
    data_dir: &std::path::Path,
    addr: SocketAddr,
    collector: Option<&Collector>,
) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(binary("agentshare"));
    if let Some(collector) = collector {
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
            .env("OTEL_METRIC_EXPORT_INTERVAL", "100");
    }
    command
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve")
}

fn token(data_dir: &std::path::Path, user: &str) -> String {
    let output = std::process::Command::new(binary("agentshare"))
        .args(["token", "--user", user, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[allow(unsafe_code)]
fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: kill(2) on our own child has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Registry's pool connections in use and writes waiting for one, as
/// `serve` last exported them.
fn registry_connections_used(collector: &Collector) -> Option<f64> {
    let points = collector.points();
    let latest = |metric: &str, state: Option<&str>| {
        points
            .iter()
            .rev()
            .find(|p| {
                p.metric == metric
                    && p.attributes
                        .get("db.client.connection.pool.name")
                        .map(String::as_str)
                        == Some("registry")
                    && p.attributes
                        .get("db.client.connection.state")
                        .map(String::as_str)
                        == state
            })
            .and_then(|p| p.value)
    };
    // A write that waits its turn for the writer's connection is in the
    // server as surely as one that holds a connection.
    let used = latest("db.client.connection.count", Some("used"))?;
    let waiting = latest("db.client.connection.pending_requests", None).unwrap_or(0.0);
    Some(used + waiting)
}

/// Whether the server at `addr` has begun to stop: it reports NOT_SERVING
/// from the moment the stop is requested, and refuses new connections once
/// its drain delay is over.
async fn stopping(addr: SocketAddr) -> Result<(), &'static str> {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
    else {
        return Ok(());
    };
    match HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
    {
        Ok(answer) if answer.get_ref().status() == ServingStatus::Serving => Err("SERVING"),
        _ => Ok(()),
    }
}

/// Waits until the gateway and every public service behind it are SERVING.
async fn wait_all_ready(addr: SocketAddr) {
    wait_ready(addr, "").await;
    for service in public_services() {
        wait_ready(addr, &service).await;
    }
}

#[tokio::test]
async fn serve_drains_in_flight_calls_on_sigterm_and_keeps_their_data() {
    let dir = tempfile::tempdir().expect("dir");
    let data_dir = dir.path().join("data");
    let addr = agentshare_e2e::reserve_addr();
    // Its pool metrics, exported often, show when the calls are in flight.
    let collector = Collector::start().await;
    let mut child = exporting(&data_dir, addr, Some(&collector));
    wait_all_ready(addr).await;
    let alice = UserClient::new(connect(addr).await, Some(token(&data_dir, "alice")));
    alice.new_org("Before").await;

    // Hold registry's write lock, so the next calls are surely in flight,
    // waiting inside the server, when SIGTERM arrives.
    let url = agentshare_kit::config::sqlite_url(&data_dir.join("registry.db"));
    sqlx::any::install_default_drivers();
    let mut blocker = sqlx::AnyConnection::connect(&url)
        .await
        .expect("open registry.db");
    sqlx::Executor::execute(&mut blocker, "BEGIN IMMEDIATE")
        .await
        .expect("lock");
    let mut calls = Vec::new();
    for i in 0..5 {
        let alice = alice.clone();
        calls.push(tokio::spawn(async move {
            alice
                .registry()
                .create_agent(agentshare_e2e::draft_agent(&format!("Agent {i}")))
                .await
        }));
    }
    // Each call holds one of registry's connections while it waits for the
    // lock: five in use means all five are inside the server.
    eventually(
        "five calls waiting inside the server for the lock",
        || async {
            let used = registry_connections_used(&collector);
            if used >= Some(5.0) { Ok(()) } else { Err(used) }
        },
    )
    .await;
    sigterm(&child);
    eventually("serve beginning its stop", || {
        let running = child.try_wait().expect("wait").is_none();
        async move {
            assert!(running, "serve exited before it drained");
            stopping(addr).await
        }
    })
    .await;
    assert!(
        calls.iter().all(|c| !c.is_finished()),
        "calls finished before the lock was released"
    );
    sqlx::Executor::execute(&mut blocker, "ROLLBACK")
        .await
        .expect("unlock");
    drop(blocker);

    let mut agents = Vec::new();
    for call in calls {
        let agent = call
            .await
            .expect("task")
            .expect("an in-flight call finishes after SIGTERM");
        agents.push(agent.into_inner().agent.expect("agent").id);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("serve exits after draining")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "serve exits 0 after SIGTERM");

    // A restart on the same data dir sees everything that was committed.
    let mut child = serve(&data_dir, addr);
    wait_all_ready(addr).await;
    let alice = UserClient::new(connect(addr).await, Some(token(&data_dir, "alice")));
    let org = alice
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await
        .expect("org survives");
    assert_eq!(org.into_inner().org.expect("org").name, "Before");
    for id in agents {
        alice
            .registry()
            .get_agent(registry::GetAgentRequest { agent_id: id })
            .await
            .expect("agent created during the drain survives");
    }
    sigterm(&child);
    let status = child.wait().await.expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Runs a binary that must refuse to start; returns its stderr.
async fn refuses(program: &str, args: &[&str]) -> String {
    refuses_with(program, args, &[]).await
}

/// As [`refuses`], with extra environment variables.
async fn refuses_with(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = tokio::process::Command::new(binary(program))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(
        output.status.code(),
        Some(2),
        "exit code for {args:?}; stderr: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test]
async fn bad_settings_exit_2_with_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().expect("dir");

    let stderr = refuses(
        "agentshare-registry",
        &["--database-url", "mysql://localhost/agents"],
    )
    .await;
    assert!(stderr.contains("database_url"), "{stderr}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let data = dir.path().join("data");
    let stderr = refuses(
        "agentshare",
        &[
            "serve",
            "--listen",
            &port,
            "--data-dir",
            data.to_str().expect("path"),
        ],
    )
    .await;
    assert!(
        stderr.contains("listen") && stderr.contains("in use"),
        "{stderr}"
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let under_file = file.join("data");
    let stderr = refuses(
        "agentshare",
        &["serve", "--data-dir", under_file.to_str().expect("path")],
    )
    .await;
    assert!(stderr.contains("data_dir"), "{stderr}");

    let stderr = refuses("agentshare", &["serve", "--listen", "nowhere"]).await;
    assert!(stderr.contains("listen"), "{stderr}");

    let stderr = refuses(
        "agentshare-sharing",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            under_file.to_str().expect("path"),
        ],
    )
    .await;
    assert!(stderr.contains("data_dir"), "{stderr}");

    // An export the OTEL_* variables ask for and this build cannot do.
    let stderr = refuses_with(
        "agentshare-store",
        &["--listen", "127.0.0.1:0"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    )
    .await;
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && stderr.contains("grpc"),
        "{stderr}"
    );
}

#[tokio::test]
async fn per_service_processes_survive_a_sigkilled_replica_and_its_restart() {
    let mut suite = Suite::builder()
        .replicas(ServiceName::Registry, 2)
        .processes()
        .start()
        .await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice
        .registry()
        .create_agent(agentshare_e2e::draft_agent("Durable"))
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");

    suite.kill_replica(ServiceName::Registry, 0).await;
    // The other replica carries on. Calls routed to the dead one before the
    // balancer notices may fail with UNAVAILABLE, nothing else may; within
    // a bounded time it leaves the rotation and every call succeeds.
    eventually(
        "the killed replica leaving the rotation: 20 calls in a row succeed",
        || async {
            for _ in 0..20 {
                let call = alice
                    .registry()
                    .get_agent(registry::GetAgentRequest {
                        agent_id: agent.id.clone(),
                    })
                    .await;
                if let Err(status) = call {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                    return Err(status);
                }
            }
            Ok(())
        },
    )
    .await;

    suite.restart_replica(ServiceName::Registry, 0).await;
    let mut direct = registry::agent_registry_service_client::AgentRegistryServiceClient::new(
        suite
            .service_channel(ServiceName::Gateway, ServiceName::Registry, 0)
            .await,
    );
    // The restarted replica answers (and reads the shared database).
    let status = direct
        .get_agent(registry::GetAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect_err("no principal: the replica is up and rejects it");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    suite.stop().await;
}

/// `agentshare serve` with the `search` provider and `extra` settings.
fn serve_with(
    data_dir: &std::path::Path,
    addr: SocketAddr,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    tokio::process::Command::new(binary("agentshare"))
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &addr.to_string()])
        .env("AGENTSHARE_CONNECTIONS__PROVIDERS__SEARCH__KIND", "api_key")
        .env(
            "AGENTSHARE_CONNECTIONS__PROVIDERS__SEARCH__KEY_PREFIX",
            "srch-",
        )
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve")
}

#[tokio::test]
async fn rotate_secrets_reseals_everything_so_the_old_key_can_go() {
    use sharing::connections_service_client::ConnectionsServiceClient;
    let dir = tempfile::tempdir().expect("dir");
    let addr = agentshare_e2e::reserve_addr();
    let mut first = serve_with(dir.path(), addr, &[]);
    wait_all_ready(addr).await;
    let alice = UserClient::new(connect(addr).await, Some(token(dir.path(), "alice")));
    let created = ConnectionsServiceClient::new(alice.channel())
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: "search".into(),
            api_key: "srch-rotate-me-0001".into(),
            label: "Team search".into(),
            expire_time: None,
        })
        .await
        .expect("create")
        .into_inner()
        .connection
        .expect("connection");
    sigterm(&first);
    first.wait().await.expect("stopped");

    // A new key, made active; the generated one is still on disk.
    let new_key = [
        (
            "AGENTSHARE_CONNECTIONS__SECRET_KEYS__K2",
            "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
        ),
        ("AGENTSHARE_CONNECTIONS__ACTIVE_SECRET_KEY", "k2"),
    ];
    let rotated = tokio::process::Command::new(binary("agentshare"))
        .args(["rotate-secrets", "--data-dir"])
        .arg(dir.path())
        .envs(new_key)
        .output()
        .await
        .expect("rotate");
    let said = String::from_utf8_lossy(&rotated.stderr);
    assert!(rotated.status.success(), "{said}");
    assert!(said.contains("re-sealed 1 secrets"), "{said}");

    // The old key goes; the connection still opens under the new one.
    std::fs::remove_file(dir.path().join("keys/connections.key")).expect("remove old key");
    let _second = serve_with(dir.path(), addr, &new_key);
    wait_all_ready(addr).await;
    let alice = UserClient::new(connect(addr).await, Some(token(dir.path(), "alice")));
    let tested = ConnectionsServiceClient::new(alice.channel())
        .test_connection(sharing::TestConnectionRequest {
            connection_id: created.id.clone(),
        })
        .await
        .expect("test")
        .into_inner();
    assert!(tested.ok, "{}", tested.message);
}
