//! `--soak SECS`: a bounded soak. A mixed load of reads and writes across
//! every service runs for SECS seconds against the `agentshare serve` this
//! tool started, while serve's resident memory (`VmRSS` of
//! `/proc/PID/status`) and open file descriptors (`/proc/PID/fd`) are
//! sampled every second. It fails when any call fails, or when memory or
//! descriptors keep growing after the warm-up.
//!
//! "Flat", with its tolerance: the samples after the warm-up (the first
//! fifth of the run) are cut into thirds, and the last third's highest
//! sample may pass the first third's highest by at most
//! [`RSS_GROWTH_FRACTION`] of it plus [`RSS_GROWTH_MIB`] for memory, and by
//! at most [`FD_GROWTH`] for descriptors. Caches that fill once (pools,
//! prepared statements, SQLite's page cache) fill during the warm-up or the
//! first third; a leak goes on growing into the last.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as scheduler;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use scheduler::automations_service_client::AutomationsServiceClient;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;

use crate::measure::{Load, called, measure};
use crate::seed::BenchOrg;

/// Memory may grow from the first third to the last by this fraction of
/// the first third's highest sample …
pub const RSS_GROWTH_FRACTION: f64 = 0.10;
/// … plus this many MiB.
pub const RSS_GROWTH_MIB: f64 = 8.0;
/// Descriptors may grow by this many (a connection opened late to a pool
/// that was not yet at its size).
pub const FD_GROWTH: usize = 4;
/// The keys the load writes and reads over, so the store stays one size.
const KEYS: u64 = 200;
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One look at serve: seconds into the run, resident MiB, open descriptors.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: f64,
    rss_mib: f64,
    fds: usize,
}

fn sample(pid: u32, begin: Instant) -> Option<Sample> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample {
        at: begin.elapsed().as_secs_f64(),
        rss_mib: crate::target::rss_mib(pid)?,
        fds,
    })
}

/// Runs the soak against serve (`pid`) for `seconds`; `Ok(false)` when a
/// call failed or serve's memory or descriptors grew.
pub async fn run(
    org: &BenchOrg,
    pid: u32,
    concurrency: usize,
    seconds: f64,
) -> Result<bool, String> {
    let items = WorkspaceStoreServiceClient::new(org.member.channel());
    for key in 0..KEYS {
        called(
            items
                .clone()
                .workspace_write(write(&org.research, key, 0))
                .await,
        )?;
    }
    let warmup = seconds / 5.0;
    eprintln!(
        "soak: {seconds} s of mixed calls at c{concurrency} (the first {warmup:.0} s warm up), \
         sampling serve's memory and descriptors every second"
    );
    let begin = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let mut samples = Vec::new();
            let mut next_report = 10.0;
            // A steady period: one sample a second, however long a read took.
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            while !done.load(Ordering::Relaxed) {
                every.tick().await;
                if let Some(sample) = sample(pid, begin) {
                    if sample.at >= next_report {
                        eprintln!(
                            "  {:>4.0} s: RSS {:.1} MiB, {} fds",
                            sample.at, sample.rss_mib, sample.fds
                        );
                        next_report += 10.0;
                    }
                    samples.push(sample);
                }
            }
            samples
        }
    });
    let load = Load {
        concurrency,
        duration: Duration::from_secs_f64(seconds),
        // Every call counts: an error in the warm-up fails the soak too.
        warmup: Duration::ZERO,
    };
    let calls = Calls::of(org);
    let measured = measure(load, move |worker, n| {
        let calls = calls.clone();
        async move { calls.one(worker, n).await }
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let samples = sampler
        .await
        .map_err(|e| format!("the sampler failed: {e}"))?;

    eprintln!(
        "soak: {} calls in {:.0} s ({:.0}/s), {} failed",
        measured.calls + measured.errors,
        measured.elapsed.as_secs_f64(),
        measured.per_second(),
        measured.errors
    );
    let mut passed = true;
    if measured.errors > 0 {
        eprintln!(
            "agentshare-bench: soak: {} calls failed (the error rate must be 0); the first: {}",
            measured.errors,
            measured.first_error.as_deref().unwrap_or("")
        );
        passed = false;
    }
    let after_warmup: Vec<Sample> = samples.into_iter().filter(|s| s.at >= warmup).collect();
    let third = after_warmup.len() / 3;
    if third == 0 {
        return Err(format!(
            "soak: too few samples after the warm-up to judge growth ({}); run longer",
            after_warmup.len()
        ));
    }
    let (first, last) = (
        &after_warmup[..third],
        &after_warmup[after_warmup.len() - third..],
    );
    let highest = |samples: &[Sample], of: fn(&Sample) -> f64| {
        samples.iter().map(of).fold(f64::MIN, f64::max)
    };
    let (rss_first, rss_last) = (highest(first, |s| s.rss_mib), highest(last, |s| s.rss_mib));
    let (fds_first, fds_last) = (
        highest(first, |s| s.fds as f64),
        highest(last, |s| s.fds as f64),
    );
    let rss_allowed = rss_first * (1.0 + RSS_GROWTH_FRACTION) + RSS_GROWTH_MIB;
    let fds_allowed = fds_first + FD_GROWTH as f64;
    eprintln!(
        "soak: RSS highest {rss_first:.1} MiB in the first third after warm-up, \
         {rss_last:.1} MiB in the last (at most {rss_allowed:.1}); \
         fds {fds_first:.0} then {fds_last:.0} (at most {fds_allowed:.0})"
    );
    if rss_last > rss_allowed {
        eprintln!(
            "agentshare-bench: soak: serve's memory kept growing: {rss_first:.1} MiB -> {rss_last:.1} MiB \
             (allowed {:.0}% + {RSS_GROWTH_MIB} MiB)",
            RSS_GROWTH_FRACTION * 100.0
        );
        passed = false;
    }
    if fds_last > fds_allowed {
        eprintln!(
            "agentshare-bench: soak: serve's open descriptors kept growing: {fds_first:.0} -> {fds_last:.0} \
             (allowed +{FD_GROWTH})"
        );
        passed = false;
    }
    if passed {
        eprintln!("soak: passed");
    }
    Ok(passed)
}

fn write(agent: &str, key: u64, version: u64) -> store::WorkspaceWriteRequest {
    store::WorkspaceWriteRequest {
        agent_id: agent.into(),
        key: format!("soak{key:03}"),
        value: format!("value {version} of {key}"),
        content_type: store::ItemContentType::Text as i32,
        expected_revision: None,
    }
}

/// The mixed load: each call is one of these, in turn.
#[derive(Clone)]
struct Calls {
    owner: agentshare_e2e::UserClient,
    member: agentshare_e2e::UserClient,
    research: String,
    agent: String,
}

impl Calls {
    fn of(org: &BenchOrg) -> Self {
        Self {
            owner: org.owner.clone(),
            member: org.member.clone(),
            research: org.research.clone(),
            agent: org
                .agents
                .first()
                .cloned()
                .unwrap_or_else(|| org.research.clone()),
        }
    }

    async fn one(&self, worker: usize, n: u64) -> Result<(), String> {
        let key = crate::limits::spread(worker, n) % KEYS;
        match n % 7 {
            // Store: a write over a bounded set of keys, and a read.
            0 => {
                called(
                    WorkspaceStoreServiceClient::new(self.member.channel())
                        .workspace_write(write(&self.research, key, n))
                        .await,
                )?;
            }
            1 => {
                called(
                    WorkspaceStoreServiceClient::new(self.member.channel())
                        .workspace_read(store::WorkspaceReadRequest {
                            agent_id: self.research.clone(),
                            key: format!("soak{key:03}"),
                        })
                        .await,
                )?;
            }
            // The run path: sharing's plan, store's records, the runtime.
            2 => {
                called(
                    self.member
                        .run(&self.research, &format!("soak {worker}.{n}"))
                        .await,
                )?;
            }
            // Registry: a read, and a new draft (with its sync to sharing
            // and its event).
            3 => {
                called(
                    self.member
                        .registry()
                        .get_agent(registry::GetAgentRequest {
                            agent_id: self.agent.clone(),
                        })
                        .await,
                )?;
            }
            4 => {
                called(
                    self.owner
                        .registry()
                        .create_agent(agentshare_e2e::draft_agent(&format!("Soak {worker}.{n}")))
                        .await,
                )?;
            }
            // Sharing: a grant made and revoked.
            5 => {
                let grant = called(
                    self.owner
                        .sharing()
                        .create_grant(sharing::CreateGrantRequest {
                            agent_id: self.agent.clone(),
                            kind: sharing::GrantKind::Invoke as i32,
                            label: format!("soak {worker}.{n}"),
                            expire_time: None,
                            pinned_version: None,
                            limits: None,
                        })
                        .await,
                )?
                .into_inner()
                .grant
                .ok_or("CreateGrant answered no grant")?;
                called(
                    self.owner
                        .sharing()
                        .revoke_grant(sharing::RevokeGrantRequest { grant_id: grant.id })
                        .await,
                )?;
            }
            // Scheduler: the member's subscriptions.
            _ => {
                called(
                    AutomationsServiceClient::new(self.member.channel())
                        .list_my_subscriptions(scheduler::ListMySubscriptionsRequest::default())
                        .await,
                )?;
            }
        }
        Ok(())
    }
}
