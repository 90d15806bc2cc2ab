//! The workspace store: point reads, single-item writes and a page of a
//! listing, each against its raw SQLite limit; and Watch fan-out, one
//! writer and many watchers, timed from the write's answer to each
//! watcher's receipt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentshare_proto::store::v1 as store;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;

use super::Bench;
use crate::measure::{called, histogram, measure, record};
use crate::report::{Line, Target};

/// Keys written and read, and the size of each value: as the raw limit.
const KEYS: u64 = 500;
const VALUE_BYTES: usize = 1024;
/// A watcher gives up on a write it never receives after this long.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

fn write(agent: &str, key: String, value: String) -> store::WorkspaceWriteRequest {
    store::WorkspaceWriteRequest {
        agent_id: agent.into(),
        key,
        value,
        content_type: store::ItemContentType::Text as i32,
        expected_revision: None,
    }
}

pub async fn run(bench: &mut Bench<'_>) -> Result<(), String> {
    let org = bench.org;
    let agent = org.research.clone();
    let client = WorkspaceStoreServiceClient::new(org.member.channel());
    let value = Arc::new("v".repeat(VALUE_BYTES));
    for key in 0..KEYS {
        called(
            client
                .clone()
                .workspace_write(write(&agent, format!("item{key:03}"), value.to_string()))
                .await,
        )?;
    }

    let (c, a, v) = (client.clone(), agent.clone(), value.clone());
    let sample = measure(bench.load, move |worker, n| {
        let (mut c, a, v) = (c.clone(), a.clone(), v.clone());
        async move {
            let key = format!("item{:03}", crate::limits::spread(worker, n) % KEYS);
            called(c.workspace_write(write(&a, key, v.to_string())).await)?;
            Ok(())
        }
    })
    .await;
    let line = Line::rate("WorkspaceWrite", bench.detail("1 KiB"), &sample)
        .against(Some(&bench.limits.writes))
        .target(Target::RatioAtLeast(0.60));
    bench.report.add(line);

    let (c, a) = (client.clone(), agent.clone());
    let sample = measure(bench.load, move |worker, n| {
        let (mut c, a) = (c.clone(), a.clone());
        async move {
            let key = format!("item{:03}", crate::limits::spread(worker, n) % KEYS);
            let item = called(
                c.workspace_read(store::WorkspaceReadRequest { agent_id: a, key })
                    .await,
            )?;
            match item.into_inner().item {
                Some(item) if item.size_bytes == VALUE_BYTES as i64 => Ok(()),
                other => Err(format!("read {other:?}")),
            }
        }
    })
    .await;
    let line = Line::rate("WorkspaceRead", bench.detail("1 KiB"), &sample)
        .against(Some(&bench.limits.reads))
        .target(Target::RatioAtLeast(0.30));
    bench.report.add(line);

    let (c, a) = (client.clone(), agent.clone());
    let sample = measure(bench.load, move |_, _| {
        let (mut c, a) = (c.clone(), a.clone());
        async move {
            let page = called(
                c.workspace_list(store::WorkspaceListRequest {
                    agent_id: a,
                    page_size: 100,
                    ..Default::default()
                })
                .await,
            )?;
            match page.into_inner().items.len() {
                100 => Ok(()),
                other => Err(format!("a page of {other} items, not 100")),
            }
        }
    })
    .await;
    let line = Line::rate("WorkspaceList", bench.detail("page of 100"), &sample)
        .against(Some(&bench.limits.reads));
    bench.report.add(line);
    Ok(())
}

/// `watchers` Watch streams spread over the org's members, one writer
/// making `writes` writes one after another; every watcher must see every
/// write.
pub async fn fan_out(bench: &mut Bench<'_>, watchers: usize, writes: usize) -> Result<(), String> {
    let org = bench.org;
    // An agent of its own: the other workloads fill the research agent's
    // store to its quota.
    let agent = org.agents[0].clone();
    let (arrived_tx, mut arrived_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let mut ready = Vec::with_capacity(watchers);
    let mut streams = Vec::with_capacity(watchers);
    for n in 0..watchers {
        let member = org.members[n % org.members.len()].clone();
        let (agent, arrived) = (agent.clone(), arrived_tx.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        ready.push(ready_rx);
        streams.push(tokio::spawn(async move {
            let mut stream = called(
                WorkspaceStoreServiceClient::new(member.channel())
                    .watch(store::WatchRequest {
                        agent_id: agent,
                        key_prefix: "watched/".into(),
                        ..Default::default()
                    })
                    .await,
            )?
            .into_inner();
            // The first progress message says the watch is live.
            called(stream.message().await)?;
            let _ = ready_tx.send(());
            let mut received = 0;
            while received < writes {
                let message = tokio::time::timeout(DELIVERY_LIMIT, stream.message())
                    .await
                    .map_err(|_| format!("watcher {n} waited {DELIVERY_LIMIT:?} for a write"))?;
                let Some(message) = called(message)? else {
                    return Err(format!("watcher {n}'s stream ended"));
                };
                if let Some(store::watch_response::Event::Change(change)) = message.event {
                    received += 1;
                    let _ = arrived.send((change.revision, Instant::now()));
                }
            }
            Ok::<_, String>(())
        }));
    }
    drop(arrived_tx);
    for watcher in ready {
        watcher
            .await
            .map_err(|_| "a watcher ended before it was live".to_string())?;
    }
    let mut writer = WorkspaceStoreServiceClient::new(org.owner.channel());
    let mut written = HashMap::with_capacity(writes);
    let started = Instant::now();
    for n in 0..writes {
        let key = format!("watched/k{}", n % 10);
        let item = called(
            writer
                .workspace_write(write(&agent, key, n.to_string()))
                .await,
        )?
        .into_inner()
        .item
        .ok_or("a write without its item")?;
        written.insert(item.revision, Instant::now());
    }
    let mut latency = histogram();
    let mut deliveries = 0u64;
    while let Some((revision, at)) = arrived_rx.recv().await {
        let Some(sent) = written.get(&revision) else {
            return Err(format!(
                "a watcher saw revision {revision}, which was not written"
            ));
        };
        record(&mut latency, at.saturating_duration_since(*sent));
        deliveries += 1;
    }
    let elapsed = started.elapsed();
    let mut errors = Vec::new();
    for stream in streams {
        match stream.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let sample = crate::measure::Sample {
        calls: deliveries,
        errors: errors.len() as u64,
        first_error: errors.into_iter().next(),
        elapsed,
        latency,
    };
    let what = format!("{watchers} watchers, {writes} writes, one writer (deliveries)");
    let line = Line::rate("Watch fan-out", bench.detail_at(1, &what), &sample)
        .target(Target::P99Under(2.0));
    bench.report.add(line);
    Ok(())
}
