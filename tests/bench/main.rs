//! `agentshare-bench`: measures every hot path of agentshare as clients
//! meet it, from a process of its own, against this machine's limits
//! measured in the same run (a no-op gRPC server on the same loopback, raw
//! SQLite reads and write transactions). It starts `agentshare serve` on a
//! new data dir, or benches a gateway that already runs (`--gateway`), and
//! prints a Markdown table, or JSON lines with `--json`.
//!
//! `--smoke` runs every workload briefly at a small scale: CI runs it to
//! prove the tool works, and never reads its numbers.
//!
//! `--soak SECS` runs a mixed load for SECS seconds instead of the
//! workloads, and fails unless every call succeeds and serve's memory and
//! open descriptors stay flat (see `soak.rs` for the tolerance).

// A tool run by hand: it prints, and the harness helpers it seeds with
// stop at the first failed setup call, which is what its user wants.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::expect_used)]

mod limits;
mod measure;
mod report;
mod seed;
mod soak;
mod target;
mod workloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agentshare_kit::identity::ServiceName;
use clap::{Parser, Subcommand, ValueEnum};

use crate::measure::Load;
use crate::report::{Line, Report, Target};
use crate::seed::Scale;
use crate::target::{Server, Spawn};
use crate::workloads::{Bench, Limits};

/// Scheduler settings of a mass fire: a backlog due at once is still this
/// minute's, not downtime, and one replica keeps 64 runs going.
const FIRE_CONFIG: &str = "[scheduler]\n\
    fire_poll_millis = 100\n\
    fire_batch = 200\n\
    fire_concurrency = 64\n\
    fire_missed_after_secs = 3600\n";

#[derive(Parser)]
#[command(
    name = "agentshare-bench",
    about = "Measure agentshare's hot paths against this machine's limits.",
    after_help = "Build and run: cargo build --release --bin agentshare --bin agentshare-bench && target/release/agentshare-bench"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Bench a gateway that already runs instead of starting `agentshare
    /// serve`; tokens are signed with AGENTSHARE_KEYS_DIR's session key.
    #[arg(long, value_name = "ADDR")]
    gateway: Option<SocketAddr>,
    /// With --gateway: the scheduler's database URL, for the mass fire.
    #[arg(long, value_name = "URL")]
    scheduler_database_url: Option<String>,
    /// Start serve on this PostgreSQL server instead of SQLite: serve makes
    /// a database per service, named after a fresh prefix for this run,
    /// which the tool drops at the end. The URL names a database that
    /// exists (such as postgres://HOST/postgres), where the database limits
    /// are measured too.
    #[arg(long, value_name = "URL", conflicts_with = "gateway")]
    serve_on_postgres: Option<String>,
    /// Measure the database limits on this database instead of a scratch
    /// SQLite file: a PostgreSQL URL, to bench a deployment on PostgreSQL.
    /// The tool creates a table `agentshare_bench_kv` there and drops it.
    #[arg(long, value_name = "URL")]
    limit_database_url: Option<String>,
    /// The `agentshare` binary to start; by default the one beside this
    /// tool, from the same build.
    #[arg(long, value_name = "FILE")]
    serve: Option<PathBuf>,
    /// Append the started serve's log (warnings and errors) to this file.
    #[arg(long, value_name = "FILE")]
    serve_log: Option<PathBuf>,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long each workload is measured, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seeded before measuring: ORGSxWORKSPACESxAGENTSxMEMBERS. Org 0 is
    /// the one the workloads call in.
    #[arg(long, default_value = "1x1x1000x16")]
    scale: Scale,
    /// Due runs of the mass fire.
    #[arg(long, default_value_t = 100_000)]
    fire_runs: usize,
    /// Stop waiting for the mass fire after this many seconds.
    #[arg(long, default_value_t = 900)]
    fire_limit_secs: u64,
    /// Run only these workload groups.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Group>,
    /// Each workload briefly at a small scale: proves the tool works.
    #[arg(long)]
    smoke: bool,
    /// Instead of the workloads: a mixed load of reads and writes for this
    /// many seconds against the serve the tool starts, failing on any
    /// failed call or on serve's memory or open descriptors growing.
    #[arg(long, value_name = "SECS", conflicts_with_all = ["gateway", "smoke"])]
    soak: Option<f64>,
    /// JSON lines on stdout as results come, instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// The no-op gRPC server the tool measures as a limit (started by the
    /// tool itself).
    #[command(hide = true)]
    EchoServer,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    /// Start time and idle memory of `agentshare serve`.
    Start,
    /// Check, CheckBulk, ListMyAgents, GetAgent, ResolveInvocation.
    Access,
    /// Invoke on the echo runtime.
    Invoke,
    /// Workspace store reads, writes and lists.
    Store,
    /// Watch fan-out.
    Watch,
    /// Mass fire of due automation runs.
    Fire,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("agentshare-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match args.command {
            Some(Command::EchoServer) => limits::serve_echo().await.map(|()| true),
            None => bench(args).await,
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("agentshare-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the bench; `Ok(false)` when a call failed or a run fired twice.
async fn bench(mut args: Args) -> Result<bool, String> {
    if args.smoke {
        args.seconds = args.seconds.min(0.3);
        args.scale = Scale {
            orgs: 2,
            workspaces: 2,
            agents: 20,
            members: 4,
        };
        args.fire_runs = args.fire_runs.min(200);
    }
    if args.concurrency == 0 || args.seconds <= 0.0 || args.seconds.is_nan() {
        return Err("--concurrency and --seconds must be above 0".into());
    }
    if let Some(seconds) = args.soak {
        return soak(&args, seconds).await;
    }
    let runs = |group: Group| args.only.is_empty() || args.only.contains(&group);
    let load = Load {
        concurrency: args.concurrency,
        duration: Duration::from_secs_f64(args.seconds),
        warmup: Duration::from_secs_f64((args.seconds / 5.0).min(1.0)),
    };
    let mut report = Report::new(args.json);
    let scratch = tempfile::tempdir().map_err(|e| format!("a scratch dir: {e}"))?;

    eprintln!("limits of this machine (c{}):", load.concurrency);
    let echo = report.add(Line::rate(
        "limit: no-op gRPC",
        format!(
            "c{}, tonic health in its own process, loopback",
            load.concurrency
        ),
        &limits::echo(load).await?,
    ));
    let (database, durability, limit_url) = match args
        .limit_database_url
        .as_ref()
        .or(args.serve_on_postgres.as_ref())
    {
        Some(url) => (
            "PostgreSQL",
            "synchronous_commit as the server sets it",
            url.clone(),
        ),
        None => (
            "SQLite",
            "WAL, synchronous=NORMAL",
            limits::scratch_sqlite(scratch.path()),
        ),
    };
    let (reads, writes) = limits::database(&limit_url, load).await?;
    let reads = report.add(Line::rate(
        &format!("limit: {database} read"),
        format!(
            "c{}, raw sqlx point read, 1 KiB, pool of 8",
            load.concurrency
        ),
        &reads,
    ));
    let writes = report.add(Line::rate(
        &format!("limit: {database} write"),
        format!(
            "c{}, raw sqlx single-row transaction, 1 KiB, pool of 8, {durability}",
            load.concurrency
        ),
        &writes,
    ));

    let mut dropped_at_end = None;
    let (mut server, setting, scheduler_db) = match args.gateway {
        Some(addr) => {
            let server = Server::attach(addr).await?;
            (
                server,
                format!("gateway {addr}"),
                args.scheduler_database_url.clone(),
            )
        }
        None => {
            let spawn = spawn_of(&args, scratch.path())?;
            let backend = if spawn.database_url.is_some() {
                "PostgreSQL"
            } else {
                "SQLite"
            };
            std::fs::write(&spawn.config_file, FIRE_CONFIG).map_err(|e| e.to_string())?;
            eprintln!("agentshare serve:");
            let (mut first, new_dir) = Server::start(&spawn).await?;
            first.stop().await?;
            let (server, existing_dir) = Server::start(&spawn).await?;
            if runs(Group::Start) {
                let setting = format!("serve, {backend}");
                report.add(
                    Line::value(
                        "start to every service SERVING",
                        format!("new data dir, {setting}"),
                        secs(new_dir),
                        "s",
                    )
                    .target(Target::Under(1.0)),
                );
                report.add(
                    Line::value(
                        "start to every service SERVING",
                        format!("existing data dir, {setting}"),
                        secs(existing_dir),
                        "s",
                    )
                    .target(Target::Under(1.0)),
                );
            }
            let scheduler = match &spawn.database_url {
                Some(url) => agentshare::service_database(url, ServiceName::Scheduler)
                    .map_err(|e| e.to_string())?,
                None => agentshare_kit::config::sqlite_url(&spawn.data_dir.join("scheduler.db")),
            };
            dropped_at_end = spawn.database_url.clone();
            (server, format!("serve, {backend}"), Some(scheduler))
        }
    };

    eprintln!("seeding {}:", args.scale);
    let org = seed::seed(&server, args.scale).await?;
    if runs(Group::Start)
        && let Some(mib) = server.pid().and_then(target::rss_mib)
    {
        report.add(
            Line::value(
                "serve RSS, idle",
                format!("seeded {}, {setting}", args.scale),
                mib,
                "MiB",
            )
            .target(Target::Under(60.0)),
        );
    }

    eprintln!("workloads:");
    let mut bench = Bench {
        server: &server,
        org: &org,
        load,
        setting: setting.clone(),
        limits: Limits {
            echo,
            reads,
            writes,
        },
        report: &mut report,
    };
    if runs(Group::Access) {
        workloads::access::run(&mut bench).await;
    }
    if runs(Group::Invoke) {
        workloads::runs::run(&mut bench).await?;
    }
    if runs(Group::Store) {
        workloads::store::run(&mut bench).await?;
    }
    if runs(Group::Watch) {
        let (watchers, writes) = if args.smoke { (10, 5) } else { (100, 200) };
        workloads::store::fan_out(&mut bench, watchers, writes).await?;
    }
    if runs(Group::Fire) {
        match scheduler_db {
            Some(database) => {
                let fire = workloads::fire::Fire {
                    server: &server,
                    database,
                    runs: args.fire_runs,
                    limit: Duration::from_secs(args.fire_limit_secs),
                    // Only a serve this tool starts has its fire settings.
                    setting: if args.gateway.is_some() {
                        setting.clone()
                    } else {
                        format!("{setting}, fire_concurrency 64, fire_batch 200")
                    },
                };
                workloads::fire::run(fire, &mut report).await?;
            }
            None => eprintln!("  mass fire skipped: give --scheduler-database-url with --gateway"),
        }
    }
    server.stop().await?;
    if let Some(url) = dropped_at_end {
        target::drop_databases(&url).await?;
    }

    if !args.json {
        println!("{}", report.table());
    }
    let failures = report.failures();
    for line in &failures {
        eprintln!(
            "agentshare-bench: {} ({}): {} failed; the first: {}",
            line.workload,
            line.detail,
            line.errors,
            line.first_error.as_deref().unwrap_or("")
        );
    }
    let duplicated = report
        .lines()
        .iter()
        .any(|l| l.workload == "Mass fire duplicates" && l.figure > 0.0);
    Ok(failures.is_empty() && !duplicated)
}

/// The serve this tool starts, in `scratch`.
fn spawn_of(args: &Args, scratch: &std::path::Path) -> Result<Spawn, String> {
    Ok(Spawn {
        binary: match &args.serve {
            Some(path) => path.clone(),
            None => beside_this_tool("agentshare")?,
        },
        data_dir: scratch.join("data"),
        config_file: scratch.join("agentshare.toml"),
        log: args.serve_log.clone(),
        database_url: match &args.serve_on_postgres {
            Some(url) => Some(target::fresh_databases(url)?),
            None => None,
        },
    })
}

/// The soak: serve started, a small org seeded, the mixed load run and
/// judged, serve stopped (and its PostgreSQL databases dropped).
async fn soak(args: &Args, seconds: f64) -> Result<bool, String> {
    if seconds < 5.0 || seconds.is_nan() {
        return Err("--soak needs 5 seconds at least, to judge growth after a warm-up".into());
    }
    let scratch = tempfile::tempdir().map_err(|e| format!("a scratch dir: {e}"))?;
    let spawn = spawn_of(args, scratch.path())?;
    std::fs::write(&spawn.config_file, "").map_err(|e| e.to_string())?;
    eprintln!("agentshare serve:");
    let (mut server, _) = Server::start(&spawn).await?;
    let pid = server.pid().ok_or("serve has no process id")?;
    let scale = Scale {
        orgs: 1,
        workspaces: 1,
        agents: 4,
        members: 2,
    };
    eprintln!("seeding {scale}:");
    let outcome = match seed::seed(&server, scale).await {
        Ok(org) => soak::run(&org, pid, args.concurrency, seconds).await,
        Err(e) => Err(e),
    };
    server.stop().await?;
    if let Some(url) = &spawn.database_url {
        target::drop_databases(url).await?;
    }
    outcome
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A binary of the same build as this tool (`target/<profile>/NAME`).
/// Building both in one cargo command keeps their dependencies' features
/// the same, so nothing is compiled twice.
fn beside_this_tool(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing; build it with this tool: \
             cargo build --release --bin agentshare --bin agentshare-bench (or pass --serve FILE)",
            path.display()
        ))
    }
}
