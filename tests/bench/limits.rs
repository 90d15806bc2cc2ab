//! This machine's limits, measured by the same loop just before the
//! workloads so every figure has its ceiling from the same minute: a gRPC
//! server that does nothing (tonic's health service in a process of its
//! own, on the same loopback), and sqlx on the database the services use
//! (a SQLite file with their pragmas, or a PostgreSQL database named with
//! `--limit-database-url`) at their pool size, for point reads and
//! single-row write transactions.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;

use agentshare_kit::config::sqlite_url;
use agentshare_kit::db::Db;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::measure::{Load, Sample, called, measure};

/// What the echo server says once it listens.
const ECHO_READY: &str = "echo serving on ";
/// The scratch table of the database limits; dropped when measured.
const TABLE: &str = "agentshare_bench_kv";
/// Rows of the raw table, and the size of each value.
const ROWS: u64 = 10_000;
const VALUE_BYTES: usize = 1024;
/// The services' default pool size (`database_max_connections`).
const POOL: u32 = 8;

/// Serves tonic's health service, answering SERVING to everything, until
/// killed; prints its address on stdout first.
pub async fn serve_echo() -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    println!("{ECHO_READY}{addr}");
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|e| format!("echo server: {e}"))
}

/// The no-op gRPC call, with the client in this process and the server in
/// a child process started from this same binary.
pub async fn echo(load: Load) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(exe)
        .arg("echo-server")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the echo server: {e}"))?;
    let stdout = child.stdout.take().ok_or("the echo server has no stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the echo server exited before serving")?;
    let addr: SocketAddr = line
        .strip_prefix(ECHO_READY)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("the echo server said {line:?}"))?;
    let client = HealthClient::new(agentshare_e2e::connect(addr).await);
    let sample = measure(load, move |_, _| {
        let mut client = client.clone();
        async move {
            called(client.check(HealthCheckRequest::default()).await)?;
            Ok(())
        }
    })
    .await;
    let _ = child.kill().await;
    Ok(sample)
}

/// A SQLite file in `dir`, as the services open theirs.
pub fn scratch_sqlite(dir: &std::path::Path) -> String {
    sqlite_url(&dir.join("limit.db"))
}

/// Raw point reads and single-row write transactions on a table of `ROWS`
/// rows in the database at `url`, with the services' pool size.
pub async fn database(url: &str, load: Load) -> Result<(Sample, Sample), String> {
    let db = Db::connect(url, POOL).await.map_err(|e| e.to_string())?;
    let pool = db.pool.clone();
    for statement in [
        format!("DROP TABLE IF EXISTS {TABLE}"),
        format!(
            "CREATE TABLE {TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL, revision BIGINT NOT NULL)"
        ),
    ] {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .map_err(|e| e.to_string())?;
    }
    let measured = rows_read_and_written(&pool, load).await;
    sqlx::query(&format!("DROP TABLE {TABLE}"))
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
    measured
}

async fn rows_read_and_written(
    pool: &sqlx::AnyPool,
    load: Load,
) -> Result<(Sample, Sample), String> {
    let pool = pool.clone();
    let insert = format!("INSERT INTO {TABLE} (key, value, revision) VALUES ($1, $2, 1)");
    let read: Arc<str> = format!("SELECT value, revision FROM {TABLE} WHERE key = $1").into();
    let update: Arc<str> =
        format!("UPDATE {TABLE} SET value = $1, revision = revision + 1 WHERE key = $2").into();
    let value = Arc::new("v".repeat(VALUE_BYTES));
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    for n in 0..ROWS {
        sqlx::query(&insert)
            .bind(format!("k{n}"))
            .bind(value.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;

    let reads = {
        let pool = pool.clone();
        measure(load, move |worker, n| {
            let (pool, read) = (pool.clone(), read.clone());
            async move {
                let key = format!("k{}", spread(worker, n) % ROWS);
                sqlx::query(&read)
                    .bind(key)
                    .fetch_one(&pool)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await
    };
    let writes = measure(load, move |worker, n| {
        let (pool, value, update) = (pool.clone(), value.clone(), update.clone());
        async move {
            let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
            sqlx::query(&update)
                .bind(value.as_str())
                .bind(format!("k{}", spread(worker, n) % ROWS))
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        }
    })
    .await;
    Ok((reads, writes))
}

/// A key number that differs across workers and calls, so concurrent
/// calls rarely touch one row.
pub fn spread(worker: usize, n: u64) -> u64 {
    (worker as u64)
        .wrapping_mul(7919)
        .wrapping_add(n.wrapping_mul(104_729))
}
