//! Access checks as clients see them, through the gateway: Check,
//! CheckBulk of 100 agents, and ListMyAgents, at concurrency 1, 16 and 64;
//! and ResolveInvocation, the plan of a run, at concurrency 16.
//! Run with `cargo bench -p agentshare-e2e --bench access` (SQLite), and
//! with `AGENTSHARE_TEST_POSTGRES_URL` set for PostgreSQL. The README keeps
//! the figures.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::future::Future;
use std::time::{Duration, Instant};

use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::sharing::v1 as sharing;
use hdrhistogram::Histogram;

/// Calls per concurrency level, split over the workers.
const CALLS: usize = 2000;

fn report(name: &str, histogram: &Histogram<u64>, elapsed: Duration) {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<34} n={:>5}  {:>7.0} ops/s  p50={:>7.2} ms  p99={:>7.2} ms  p99.9={:>7.2} ms",
        histogram.len(),
        histogram.len() as f64 / elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
    );
}

/// Runs `call` `CALLS` times over `concurrency` workers and reports it.
async fn measure<F, Fut>(name: &str, concurrency: usize, call: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_worker = CALLS / concurrency;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).expect("histogram");
            for _ in 0..per_worker {
                let begin = Instant::now();
                call().await;
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
        &format!("{name}, concurrency {concurrency}"),
        &total,
        started.elapsed(),
    );
}

/// Alice shares 100 agents with the org; Bob, a member, asks about them.
async fn setup(suite: &Suite) -> (UserClient, Vec<String>) {
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Bench").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::UserId(
                bob.user_id().await,
            )),
            role: sharing::OrgRole::Member as i32,
        })
        .await
        .expect("bob joins");
    let mut ids = Vec::new();
    for n in 0..100 {
        ids.push(alice.shared_agent(&format!("Agent {n}")).await.id);
    }
    (bob, ids)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let suite = Suite::start().await;
        let backend = if std::env::var("AGENTSHARE_TEST_POSTGRES_URL").is_ok() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        println!("access benches on {backend}, {CALLS} calls per line");
        let (bob, ids) = setup(&suite).await;
        for concurrency in [1, 16, 64] {
            let (client, id) = (bob.clone(), ids[0].clone());
            measure("Check", concurrency, move || {
                let (client, id) = (client.clone(), id.clone());
                async move {
                    let answer = client
                        .access()
                        .check(sharing::CheckRequest {
                            principal: None,
                            agent_id: id,
                            action: sharing::Action::Run as i32,
                        })
                        .await
                        .expect("check");
                    assert!(answer.into_inner().allowed);
                }
            })
            .await;
            let (client, all) = (bob.clone(), ids.clone());
            measure("CheckBulk(100)", concurrency, move || {
                let (client, all) = (client.clone(), all.clone());
                async move {
                    let answer = client
                        .access()
                        .check_bulk(sharing::CheckBulkRequest {
                            principal: None,
                            agent_ids: all,
                            action: sharing::Action::Run as i32,
                        })
                        .await
                        .expect("bulk");
                    assert_eq!(answer.into_inner().decisions.len(), 100);
                }
            })
            .await;
            let client = bob.clone();
            measure("ListMyAgents(page of 50)", concurrency, move || {
                let client = client.clone();
                async move {
                    let page = client
                        .access()
                        .list_my_agents(sharing::ListMyAgentsRequest::default())
                        .await
                        .expect("list");
                    assert_eq!(page.into_inner().agents.len(), 50);
                }
            })
            .await;
        }
        let (client, id) = (bob.clone(), ids[0].clone());
        measure("ResolveInvocation", 16, move || {
            let (client, id) = (client.clone(), id.clone());
            async move {
                let plan = client
                    .access()
                    .resolve_invocation(sharing::ResolveInvocationRequest {
                        agent_id: id,
                        ..Default::default()
                    })
                    .await
                    .expect("plan");
                assert!(plan.into_inner().plan.is_some());
            }
        })
        .await;
        suite.stop().await;
    });
}
