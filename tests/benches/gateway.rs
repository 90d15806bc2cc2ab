//! Benchmarks of the suite as clients see it. Run with
//! `cargo bench -p agentshare-e2e --bench gateway`; the README keeps the
//! figures. Bounded in count and time, loopback only.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use agentshare_e2e::{Suite, binary, public_services, wait_ready};
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use hdrhistogram::Histogram;

fn report(name: &str, histogram: &Histogram<u64>, elapsed: Duration) {
    let micros = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<44} n={:>5}  p50={:>8.2} ms  p99={:>8.2} ms  max={:>8.2} ms  {:>7.0} calls/s",
        histogram.len(),
        micros(0.5),
        micros(0.99),
        histogram.max() as f64 / 1000.0,
        histogram.len() as f64 / elapsed.as_secs_f64()
    );
}

/// From spawning `agentshare serve` on a new data dir to every public
/// service answering SERVING through the gateway.
async fn serve_start(runs: usize) {
    let serve = binary("agentshare");
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("dir");
        let addr = agentshare_e2e::reserve_addr();
        let begin = Instant::now();
        let mut child = tokio::process::Command::new(&serve)
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        wait_ready(addr, "").await;
        for service in public_services() {
            wait_ready(addr, &service).await;
        }
        histogram
            .record(begin.elapsed().as_micros() as u64)
            .expect("record");
        let _ = child.kill().await;
    }
    println!(
        "{:<44} n={:>5}  p50={:>8.2} ms  max={:>8.2} ms",
        "serve: new data dir to every service SERVING",
        histogram.len(),
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0
    );
}

/// Unary calls through the gateway at a given concurrency.
async fn unary(suite: &Suite, concurrency: usize, per_worker: usize) {
    let alice = suite.user("alice").await;
    let agent = alice
        .registry()
        .create_agent(agentshare_e2e::draft_agent("Bench"))
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let alice = alice.clone();
        let id = agent.id.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            let mut client = alice.registry();
            for _ in 0..per_worker {
                let begin = Instant::now();
                client
                    .get_agent(registry::GetAgentRequest {
                        agent_id: id.clone(),
                    })
                    .await
                    .expect("get");
                histogram
                    .record(begin.elapsed().as_micros() as u64)
                    .expect("record");
            }
            histogram
        }));
    }
    let mut total = Histogram::<u64>::new(3).expect("histogram");
    for worker in workers {
        total.add(worker.await.expect("worker")).expect("add");
    }
    report(
        &format!("GetAgent via gateway, concurrency {concurrency}"),
        &total,
        started.elapsed(),
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        serve_start(5).await;
        let suite = Suite::start().await;
        suite
            .user("alice")
            .await
            .tenancy()
            .create_org(sharing::CreateOrgRequest {
                name: "Bench".into(),
            })
            .await
            .expect("org");
        unary(&suite, 1, 1000).await;
        unary(&suite, 16, 250).await;
        suite.stop().await;
    });
}
