//! Mass fire: 100,000 enabled subscriptions due in the same minute, each run
//! through the whole run path (the gateway's RunAutomation: plan, usage
//! record, session, the built-in echo runtime) and recorded with its
//! notification. Reports the time to fire all (every run started) and to
//! finish all, the fire lateness p50/p99 (start minus scheduled time), and
//! the duplicate count, which must be 0.
//!
//! Run with `cargo bench -p agentshare-e2e --bench fire` (SQLite, one
//! scheduler) and with `AGENTSHARE_TEST_POSTGRES_URL` set (PostgreSQL, two
//! schedulers). `FIRE_BENCH_SUBSCRIPTIONS` changes the count (a multiple of
//! 100); `FIRE_BENCH_LIMIT_SECS` bounds the wait (default 3600), after which
//! the figures so far are printed. The README keeps the figures.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::time::{Duration, Instant};

use agentshare_e2e::Suite;
use agentshare_e2e::fire::{Pair, all_due_at, copy_subscriptions};
use agentshare_kit::config::Scheduler;
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;
use hdrhistogram::Histogram;
use pb::automations_service_client::AutomationsServiceClient;
use sqlx::Row;

/// Automations of the one agent; the users are the count over this.
const KEYS: usize = 100;
const MONTH: i64 = 30 * 86_400;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn settings() -> Scheduler {
    Scheduler {
        fire_poll: Duration::from_millis(100),
        fire_batch: 200,
        fire_concurrency: 64,
        // Late runs of the backlog are still this minute's, not downtime.
        fire_missed_after: Duration::from_secs(3600),
        ..Scheduler::default()
    }
}

/// Keeps the suite's manual clock on real time, so lateness is real.
fn follow_real_time(clock: agentshare_kit::clock::Clock) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = Instant::now();
            clock.advance(now - last);
            last = now;
        }
    })
}

async fn setup(suite: &Suite, users: usize) -> (String, i64) {
    let long = |user: &str, step_up: bool| suite.token_with(user, step_up, MONTH);
    let alice = suite.user("alice").await.with_token(&long("alice", false));
    alice.new_org("Acme").await;
    let strong = alice.with_token(&long("alice", true));
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let name = format!("member{i}");
        let client = suite.user(&name).await.with_token(&long(&name, false));
        let id = client.user_id().await;
        strong.add_member(&id, sharing::OrgRole::Member).await;
        ids.push((client, id));
    }
    let automations = (0..KEYS)
        .map(|i| registry::Automation {
            key: format!("a{i:03}"),
            display_name: format!("a{i:03}"),
            schedule: Some(registry::Schedule {
                kind: Some(registry::schedule::Kind::Hourly(registry::HourlySchedule {
                    minute: 59,
                })),
            }),
            time_zone: "UTC".into(),
            task: "Report.".into(),
            ..Default::default()
        })
        .collect();
    let agent = alice
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Fleet".into(),
                instructions: "You report.".into(),
                automations,
                ..Default::default()
            }),
            is_managed: false,
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let agent = alice.deploy(&agent).await;
    alice.share(&agent.id).await;
    let template = AutomationsServiceClient::new(ids[0].0.channel())
        .subscribe(pb::SubscribeRequest {
            agent_id: agent.id.clone(),
            automation_key: "a000".into(),
            enabled: true,
            channels: vec![pb::NotificationChannel::Web as i32],
        })
        .await
        .expect("template")
        .into_inner()
        .subscription
        .expect("subscription");
    let mut pairs = Vec::with_capacity(users * KEYS);
    for (u, (_, user_id)) in ids.iter().enumerate() {
        for k in 0..KEYS {
            if u == 0 && k == 0 {
                continue;
            }
            pairs.push(Pair {
                user_id: user_id.clone(),
                automation_key: format!("a{k:03}"),
                task: "Report.".into(),
            });
        }
    }
    let db = suite.db(ServiceName::Scheduler).await;
    // Far enough ahead for the seeding to finish first.
    let due = suite.clock.now_micros() + 3_600_000_000;
    let copied = copy_subscriptions(&db, &template.id, &pairs, due).await;
    assert_eq!(copied, users * KEYS - 1);
    (template.id, due)
}

struct Progress {
    started: i64,
    finished: i64,
    succeeded: i64,
}

async fn progress(db: &agentshare_kit::db::Db) -> Progress {
    let row = sqlx::query(
        "SELECT COUNT(*), \
         COALESCE(SUM(CASE WHEN status <> 'running' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), 0) \
         FROM automation_runs",
    )
    .fetch_one(&db.pool)
    .await
    .expect("progress");
    Progress {
        started: row.get(0),
        finished: row.get(1),
        succeeded: row.get(2),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let total = usize::try_from(env_number("FIRE_BENCH_SUBSCRIPTIONS", 100_000))
            .expect("count")
            .max(KEYS);
        let users = total / KEYS;
        let total = users * KEYS;
        let limit = Duration::from_secs(env_number("FIRE_BENCH_LIMIT_SECS", 3600));
        let postgres = std::env::var("AGENTSHARE_TEST_POSTGRES_URL").is_ok();
        let (backend, schedulers) = if postgres {
            ("PostgreSQL", 2)
        } else {
            ("SQLite", 1)
        };
        let suite = Suite::builder()
            .replicas(ServiceName::Scheduler, schedulers)
            .scheduler(settings())
            .start()
            .await;
        let seeding = Instant::now();
        let (_template, due) = setup(&suite, users).await;
        println!(
            "mass fire on {backend}, {schedulers} scheduler(s), {total} subscriptions ({users} users x {KEYS} automations), seeded in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
        let db = suite.db(ServiceName::Scheduler).await;
        // Everything due in the same minute: now.
        let now = suite.clock.now_micros();
        assert!(now < due);
        all_due_at(&db, now).await;
        let due = now;
        let ticker = follow_real_time(suite.clock.clone());
        let began = Instant::now();
        let mut last_print = Instant::now();
        let done = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let p = progress(&db).await;
            if last_print.elapsed() >= Duration::from_secs(10) {
                println!(
                    "  {:>6.0} s: {} started, {} finished ({} succeeded)",
                    began.elapsed().as_secs_f64(),
                    p.started,
                    p.finished,
                    p.succeeded
                );
                last_print = Instant::now();
            }
            if usize::try_from(p.finished).unwrap_or(0) >= total {
                break true;
            }
            if began.elapsed() >= limit {
                break false;
            }
        };
        ticker.abort();
        let rows = sqlx::query(
            "SELECT subscription_id, scheduled_at, started_at, finished_at, status \
             FROM automation_runs",
        )
        .fetch_all(&db.pool)
        .await
        .expect("runs");
        let mut lateness = Histogram::<u64>::new(3).expect("histogram");
        let mut keys = std::collections::HashSet::with_capacity(rows.len());
        let (mut last_start, mut last_finish, mut succeeded) = (due, due, 0);
        for row in &rows {
            let subscription: String = row.get(0);
            let scheduled: i64 = row.get(1);
            let started: Option<i64> = row.get(2);
            let finished: Option<i64> = row.get(3);
            keys.insert((subscription, scheduled));
            if let Some(started) = started {
                lateness
                    .record(u64::try_from(started - scheduled).unwrap_or(0))
                    .expect("record");
                last_start = last_start.max(started);
            }
            if let Some(finished) = finished {
                last_finish = last_finish.max(finished);
            }
            if row.get::<String, _>(4) == "succeeded" {
                succeeded += 1;
            }
        }
        let duplicates = rows.len() - keys.len();
        let ms = |q: f64| lateness.value_at_quantile(q) as f64 / 1000.0;
        let secs = |micros: i64| micros as f64 / 1e6;
        println!(
            "{} of {total} runs recorded ({succeeded} succeeded){}",
            rows.len(),
            if done { "" } else { "; stopped at the time limit" }
        );
        println!(
            "time to fire all (last start): {:.1} s; to finish all: {:.1} s; {:.0} runs/s",
            secs(last_start - due),
            secs(last_finish - due),
            rows.len() as f64 / secs((last_finish - due).max(1)),
        );
        println!(
            "fire lateness p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; duplicates {duplicates}",
            ms(0.5),
            ms(0.99),
            lateness.max() as f64 / 1000.0
        );
        assert_eq!(duplicates, 0, "a scheduled time ran twice");
        suite.stop().await;
    });
}
