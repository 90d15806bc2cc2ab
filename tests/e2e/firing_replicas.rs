//! Firing across replicas: three scheduler processes on PostgreSQL,
//! a thousand subscriptions due at once, one replica killed mid-run; every
//! run happens exactly once and none is missed, by the run records and by
//! the run ids the recording runtime received.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agentshare_e2e::{Suite, UserClient, eventually, eventually_within};
use agentshare_kit::config::Scheduler;
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use sqlx::Row;

use crate::automations::{agent_with, automation, hourly, subscribe};
use agentshare_proto::scheduler::v1 as pb;
use pb::NotificationChannel::Web;

const MONTH: i64 = 30 * 86_400;

/// An agent with `count` hourly automations, keys `a000`, `a001`, ….
pub(crate) async fn agent_with_many(owner: &UserClient, count: usize) -> registry::Agent {
    let automations = (0..count)
        .map(|i| {
            let key = format!("a{i:03}");
            automation(&key, &key, hourly(59), "UTC", &[])
        })
        .collect();
    agent_with(owner, "Fleet", Vec::new(), automations).await
}

#[tokio::test]
async fn three_scheduler_processes_run_a_thousand_due_subscriptions_exactly_once_when_one_is_killed()
 {
    // Child processes read the system clock, which no SQLite suite shares
    // with its test; the replica test is PostgreSQL's.
    if std::env::var_os("AGENTSHARE_TEST_POSTGRES_URL").is_none() {
        return;
    }
    const USERS: usize = 10;
    const KEYS: usize = 100;
    const HELD: usize = 30;
    let runtime = agentshare_e2e::runtime::RecordingRuntime::start().await;
    let mut suite = Suite::builder()
        .processes()
        .replicas(ServiceName::Scheduler, 3)
        .runtime(&runtime)
        .scheduler(Scheduler {
            fire_poll: Duration::from_millis(100),
            fire_lease: Duration::from_secs(3),
            fire_concurrency: 8,
            fire_batch: 8,
            ..Scheduler::default()
        })
        .start()
        .await;
    let long = |user: &str, step_up: bool| suite.token_with(user, step_up, MONTH);
    let alice = suite.user("alice").await.with_token(&long("alice", false));
    alice.new_org("Acme").await;
    let strong = alice.with_token(&long("alice", true));
    let mut members = Vec::new();
    for i in 0..USERS {
        let name = format!("member{i}");
        let client = suite.user(&name).await.with_token(&long(&name, false));
        let id = client.user_id().await;
        strong.add_member(&id, sharing::OrgRole::Member).await;
        members.push((client, id));
    }
    let agent = agent_with_many(&alice, KEYS).await;
    let template = subscribe(&members[0].0, &agent.id, "a000", true, &[Web])
        .await
        .expect("template");
    // The first runs hold until released, so every replica is mid-run
    // when one is killed.
    let mut pairs = Vec::new();
    for (u, (_, user_id)) in members.iter().enumerate() {
        for k in 0..KEYS {
            if u == 0 && k == 0 {
                continue;
            }
            let n = u * KEYS + k;
            pairs.push(agentshare_e2e::fire::Pair {
                user_id: user_id.clone(),
                automation_key: format!("a{k:03}"),
                task: if n < HELD {
                    format!("run {n} /hold")
                } else {
                    format!("run {n}")
                },
            });
        }
    }
    let db = suite.db(ServiceName::Scheduler).await;
    let due = suite.clock.now_micros() + 2_000_000;
    let copied = agentshare_e2e::fire::copy_subscriptions(&db, &template.id, &pairs, due).await;
    assert_eq!(copied, USERS * KEYS - 1);
    agentshare_e2e::fire::all_due_at(&db, due).await;
    // The held runs are due first, so they are claimed first.
    sqlx::query("UPDATE subscriptions SET next_run_at = $1 WHERE task LIKE '%/hold'")
        .bind(due - 1_000_000)
        .execute(&db.pool)
        .await
        .expect("held first");

    // Every replica is busy with held runs: kill the first.
    eventually("the held runs starting", || async {
        let held = runtime
            .received()
            .iter()
            .filter(|r| r.request.input.contains("/hold"))
            .count();
        (held >= 16).then_some(())
    })
    .await;
    suite.kill_replica(ServiceName::Scheduler, 0).await;
    for _ in 0..4 * HELD {
        runtime.release();
    }

    let rows = eventually_within(Duration::from_secs(300), "every run finishing", || async {
        let rows = sqlx::query(
            "SELECT id, subscription_id, status, attempt, retried_after_lease_expiry \
             FROM automation_runs",
        )
        .fetch_all(&db.pool)
        .await
        .expect("runs");
        let done = rows
            .iter()
            .all(|r| r.get::<String, _>("status") != "running");
        (rows.len() == USERS * KEYS && done).then_some(rows)
    })
    .await;
    let mut ids = BTreeSet::new();
    let mut subscriptions = BTreeSet::new();
    let mut retried = BTreeSet::new();
    for row in &rows {
        let id: String = row.get("id");
        assert_eq!(row.get::<String, _>("status"), "succeeded", "{id}");
        if row.get::<i64, _>("retried_after_lease_expiry") == 1 {
            assert_eq!(row.get::<i64, _>("attempt"), 2);
            retried.insert(id.clone());
        }
        ids.insert(id);
        subscriptions.insert(row.get::<String, _>("subscription_id"));
    }
    assert_eq!(
        (ids.len(), subscriptions.len()),
        (USERS * KEYS, USERS * KEYS)
    );
    assert!(!retried.is_empty(), "the killed replica held runs");
    // No run beyond its scheduled time, and none missed.
    let all: i64 = sqlx::query("SELECT COUNT(*) FROM automation_runs")
        .fetch_one(&db.pool)
        .await
        .expect("count")
        .get(0);
    assert_eq!(all, i64::try_from(USERS * KEYS).expect("count"));

    // The runtime saw every run id, each attempt at most once, and a
    // second attempt only of runs retried after lease expiry.
    let mut seen: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for received in runtime.received() {
        *seen
            .entry((received.request.run_id.clone(), received.request.attempt))
            .or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "an attempt ran twice");
    let received_ids: BTreeSet<String> = seen.keys().map(|(id, _)| id.clone()).collect();
    assert_eq!(received_ids, ids);
    let second: BTreeSet<String> = seen
        .keys()
        .filter(|(_, attempt)| *attempt == 2)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(second.is_subset(&retried), "{second:?} vs {retried:?}");
    suite.stop().await;
}
