//! The workspace store as agents use it, through the gateway: read, write
//! and list at concurrency 16, and a watch fan-out of 100 watchers to one
//! writer. Run with `cargo bench -p agentshare-e2e --bench store` (SQLite),
//! and with `AGENTSHARE_TEST_POSTGRES_URL` set for PostgreSQL. The README
//! keeps the figures.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::time::{Duration, Instant};

use agentshare_e2e::bench::{measure, report};
use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use hdrhistogram::Histogram;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;

/// Calls per workload, split over the workers.
const CALLS: usize = 2000;
const CONCURRENCY: usize = 16;
const WATCHERS: usize = 100;
/// Watches one principal may hold by default; the watchers are spread over
/// enough members to stay under it.
const WATCHES_PER_MEMBER: usize = 25;
/// Writes the fan-out delivers to every watcher.
const FAN_OUT_WRITES: usize = 200;

fn write(agent: &str, key: String, value: String) -> store::WorkspaceWriteRequest {
    store::WorkspaceWriteRequest {
        agent_id: agent.into(),
        key,
        value,
        content_type: store::ItemContentType::Text as i32,
        expected_revision: None,
    }
}

/// Alice shares an agent with her org; members join to watch it.
async fn setup(suite: &Suite, members: usize) -> (UserClient, Vec<UserClient>, String) {
    let alice = suite.user("alice").await;
    alice.new_org("Bench").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let mut joined = Vec::new();
    for n in 0..members {
        let member = suite.user(&format!("member{n}")).await;
        strong
            .tenancy()
            .add_org_member(sharing::AddOrgMemberRequest {
                user: Some(sharing::add_org_member_request::User::UserId(
                    member.user_id().await,
                )),
                role: sharing::OrgRole::Member as i32,
            })
            .await
            .expect("member joins");
        joined.push(member);
    }
    let agent = alice.shared_agent("Team memory").await.id;
    (alice, joined, agent)
}

/// 100 watchers on one partition, one writer: the time from each write's
/// answer until every watcher has received it.
async fn fan_out(writer: &UserClient, members: &[UserClient], agent: &str) {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, i64, Instant)>();
    let mut ready = Vec::new();
    for n in 0..WATCHERS {
        let member = members[n / WATCHES_PER_MEMBER].clone();
        let agent = agent.to_string();
        let done = done_tx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        tokio::spawn(async move {
            let mut stream = WorkspaceStoreServiceClient::new(member.channel())
                .watch(store::WatchRequest {
                    agent_id: agent,
                    ..Default::default()
                })
                .await
                .expect("watch")
                .into_inner();
            // The first progress report says the stream is live.
            stream.message().await.expect("progress").expect("message");
            let _ = ready_tx.send(());
            let mut received = 0;
            while received < FAN_OUT_WRITES {
                let message = stream.message().await.expect("stream").expect("open");
                if let Some(store::watch_response::Event::Change(change)) = message.event {
                    received += 1;
                    let _ = done.send((n, change.revision, Instant::now()));
                }
            }
        });
    }
    drop(done_tx);
    for ready in ready {
        ready.await.expect("watcher ready");
    }
    let mut client = WorkspaceStoreServiceClient::new(writer.channel());
    let mut written = std::collections::HashMap::new();
    let started = Instant::now();
    let collector = tokio::spawn(async move {
        let mut arrivals = Vec::with_capacity(WATCHERS * FAN_OUT_WRITES);
        while let Some(arrival) = done_rx.recv().await {
            arrivals.push(arrival);
        }
        arrivals
    });
    for n in 0..FAN_OUT_WRITES {
        let item = client
            .workspace_write(write(agent, format!("k{}", n % 10), n.to_string()))
            .await
            .expect("write")
            .into_inner()
            .item
            .expect("item");
        written.insert(item.revision, Instant::now());
        // An agent's writes are paced; this keeps each write's fan-out apart.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrivals = collector.await.expect("collector");
    let elapsed = started.elapsed();
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    for (_, revision, at) in &arrivals {
        let sent = written.get(revision).expect("a written revision");
        histogram
            .record(at.saturating_duration_since(*sent).as_micros() as u64)
            .expect("record");
    }
    assert_eq!(
        arrivals.len(),
        WATCHERS * FAN_OUT_WRITES,
        "every watcher saw every write"
    );
    report(
        &format!("Watch fan-out, {WATCHERS} watchers x {FAN_OUT_WRITES} writes (deliveries)"),
        &histogram,
        elapsed,
    );
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
        println!("store benches on {backend}, {CALLS} calls per line");
        let (alice, members, agent) = setup(&suite, WATCHERS / WATCHES_PER_MEMBER).await;
        let client = WorkspaceStoreServiceClient::new(alice.channel());

        let value = "v".repeat(1024);
        let (c, a) = (client.clone(), agent.clone());
        measure(
            "WorkspaceWrite (1 KiB, 500 keys)",
            CALLS,
            CONCURRENCY,
            move |n| {
                let (mut c, a, value) = (c.clone(), a.clone(), value.clone());
                async move {
                    c.workspace_write(write(&a, format!("item{:03}", n % 500), value))
                        .await
                        .expect("write");
                }
            },
        )
        .await;
        let (c, a) = (client.clone(), agent.clone());
        measure("WorkspaceRead (1 KiB)", CALLS, CONCURRENCY, move |n| {
            let (mut c, a) = (c.clone(), a.clone());
            async move {
                let item = c
                    .workspace_read(store::WorkspaceReadRequest {
                        agent_id: a,
                        key: format!("item{:03}", n % 500),
                    })
                    .await
                    .expect("read");
                assert_eq!(item.into_inner().item.expect("item").size_bytes, 1024);
            }
        })
        .await;
        let (c, a) = (client.clone(), agent.clone());
        measure(
            "WorkspaceList (page of 100)",
            CALLS,
            CONCURRENCY,
            move |_| {
                let (mut c, a) = (c.clone(), a.clone());
                async move {
                    let page = c
                        .workspace_list(store::WorkspaceListRequest {
                            agent_id: a,
                            ..Default::default()
                        })
                        .await
                        .expect("list");
                    assert_eq!(page.into_inner().items.len(), 100);
                }
            },
        )
        .await;
        fan_out(&alice, &members, &agent).await;
        suite.stop().await;
    });
}
