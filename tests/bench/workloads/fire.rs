//! Mass fire: many enabled subscriptions due in the same instant, each run
//! through the whole run path (the gateway's RunAutomation: plan, usage
//! record, session, the echo runtime) and recorded with its notification.
//! One real subscription is made through the API; the rest are copies of
//! its row in the scheduler's database, as creating them one by one
//! would take longer than the runs. Reports the time until every run
//! finished, the fire lateness, and the duplicates, which must be 0.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use agentshare_e2e::fire::{Pair, copy_subscriptions};
use agentshare_e2e::{UserClient, wait};
use agentshare_kit::clock::Clock;
use agentshare_kit::db::Db;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;
use futures::{StreamExt as _, TryStreamExt as _};
use pb::automations_service_client::AutomationsServiceClient;
use sqlx::Row as _;

use crate::measure::{Sample, called, histogram, record};
use crate::report::{Line, Report, Target};
use crate::target::Server;

/// Automations of the one agent; the users are the runs over this.
const KEYS: usize = 100;
const PROGRESS_POLL: Duration = Duration::from_millis(200);
const PROGRESS_SAY: Duration = Duration::from_secs(10);

/// Where the runs are recorded, and how many to fire.
pub struct Fire<'a> {
    pub server: &'a Server,
    /// The scheduler's database URL.
    pub database: String,
    pub runs: usize,
    /// Give up waiting after this long; what finished by then is reported.
    pub limit: Duration,
    pub setting: String,
}

pub async fn run(fire: Fire<'_>, report: &mut Report) -> Result<(), String> {
    let users = fire.runs.div_ceil(KEYS).max(1);
    let total = users * KEYS;
    let db = Db::connect(&fire.database, 2)
        .await
        .map_err(|e| format!("the scheduler's database: {e}"))?;
    let seeding = Instant::now();
    let agent_id = seed(fire.server, &db, users).await?;
    eprintln!(
        "  mass fire: {total} subscriptions seeded in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let due = Clock::system().now_micros();
    // Only this bench's subscriptions: a long-lived server (the topology)
    // has others, whose runs must count neither as these nor against them.
    sqlx::query("UPDATE subscriptions SET next_run_at = $1 WHERE enabled = 1 AND agent_id = $2")
        .bind(due)
        .bind(&agent_id)
        .execute(&db.pool)
        .await
        .map_err(|e| format!("making the runs due: {e}"))?;
    let began = Instant::now();
    let said = std::cell::Cell::new(began);
    let what = format!("all {total} runs ending");
    let ended = wait::polling(PROGRESS_POLL, fire.limit, &what, || async {
        let (started, finished) = match progress(&db, due, &agent_id).await {
            Ok(counts) => counts,
            Err(e) => return Err(e),
        };
        if said.get().elapsed() >= PROGRESS_SAY {
            eprintln!(
                "    {:>4.0} s: {started} started, {finished} finished",
                began.elapsed().as_secs_f64()
            );
            said.set(Instant::now());
        }
        if finished >= total as i64 {
            Ok(())
        } else {
            Err(format!("{finished} of {total}"))
        }
    })
    .await;
    // What had not ended by the limit is reported below, as failures.
    if let Err(waited) = ended {
        eprintln!("    {waited}");
    }
    let rows = sqlx::query(
        "SELECT subscription_id, scheduled_at, started_at, finished_at, status FROM automation_runs \
         WHERE scheduled_at = $1 AND agent_id = $2",
    )
    .bind(due)
    .bind(&agent_id)
    .fetch_all(&db.pool)
    .await
    .map_err(|e| format!("reading the runs: {e}"))?;
    let mut lateness = histogram();
    let mut keys = HashSet::with_capacity(rows.len());
    let (mut last_finish, mut failed, mut unfinished) = (due, 0u64, 0u64);
    let mut first_failure = None;
    for row in &rows {
        let subscription: String = row.get(0);
        let scheduled: i64 = row.get(1);
        let started: Option<i64> = row.get(2);
        let finished: Option<i64> = row.get(3);
        let status: String = row.get(4);
        keys.insert((subscription, scheduled));
        if let Some(started) = started {
            let late = u64::try_from(started - scheduled).unwrap_or(0);
            record(&mut lateness, Duration::from_micros(late));
        }
        if let Some(finished) = finished {
            last_finish = last_finish.max(finished);
        }
        match status.as_str() {
            "succeeded" => {}
            "running" => unfinished += 1,
            other => {
                failed += 1;
                first_failure.get_or_insert(format!("a run ended {other}"));
            }
        }
    }
    let duplicates = rows.len() - keys.len();
    let seconds = (last_finish - due) as f64 / 1e6;
    let missing = (total as u64).saturating_sub(rows.len() as u64) + unfinished;
    let sample = Sample {
        calls: rows.len() as u64,
        errors: failed + missing,
        first_error: first_failure.or_else(|| {
            (missing > 0)
                .then(|| format!("{missing} runs had not finished when the bench stopped waiting"))
        }),
        elapsed: Duration::from_secs_f64(seconds.max(1e-6)),
        latency: lateness,
    };
    let what = format!("{total} due runs, time to finish all; latency = fire lateness");
    let mut line = Line::rate("Mass fire", format!("{what}, {}", fire.setting), &sample);
    line.figure = seconds;
    line.unit = "s";
    report.add(line.target(Target::Under(60.0)));
    let duplicates = Line::value(
        "Mass fire duplicates",
        fire.setting.clone(),
        duplicates as f64,
        "runs",
    )
    .target(Target::Exactly(0.0));
    report.add(duplicates);
    Ok(())
}

/// An org of `users` members, an agent with `KEYS` hourly automations
/// shared with it, and one subscription per (member, automation); the
/// agent's id.
async fn seed(server: &Server, db: &Db, users: usize) -> Result<String, String> {
    let owner = server.user("fleet-owner")?;
    called(
        owner
            .tenancy()
            .create_org(sharing::CreateOrgRequest {
                name: "Fleet".into(),
            })
            .await,
    )?;
    let members: Vec<(UserClient, String)> = futures::stream::iter(0..users)
        .map(|n| {
            let owner = owner.clone();
            let member = server.user(&format!("fleet-m{n}"));
            async move {
                let member = member?;
                let id = member.user_id().await;
                owner.add_member(&id, sharing::OrgRole::Member).await;
                Ok::<_, String>((member, id))
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let far_hour = i32::try_from((Clock::system().now_secs() / 3600 + 12) % 24).unwrap_or(0);
    let automations = (0..KEYS)
        .map(|i| registry::Automation {
            key: format!("a{i:03}"),
            display_name: format!("a{i:03}"),
            // Daily, twelve hours from now: its own time never comes while
            // the bench runs, so every run is the one the bench made due.
            schedule: Some(registry::Schedule {
                kind: Some(registry::schedule::Kind::Daily(registry::DailySchedule {
                    time_of_day: Some(registry::TimeOfDay {
                        hours: far_hour,
                        minutes: 0,
                    }),
                })),
            }),
            time_zone: "UTC".into(),
            task: "Report.".into(),
            ..Default::default()
        })
        .collect();
    let agent = called(
        owner
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
            .await,
    )?
    .into_inner()
    .agent
    .ok_or("an agent without its agent")?;
    let agent = owner.deploy(&agent).await;
    owner.share(&agent.id).await;
    let (first, _) = &members[0];
    let template = called(
        AutomationsServiceClient::new(first.channel())
            .subscribe(pb::SubscribeRequest {
                agent_id: agent.id.clone(),
                automation_key: "a000".into(),
                enabled: true,
                channels: vec![pb::NotificationChannel::Web as i32],
            })
            .await,
    )?
    .into_inner()
    .subscription
    .ok_or("a subscription without its subscription")?;
    let mut pairs = Vec::with_capacity(users * KEYS);
    for (u, (_, user_id)) in members.iter().enumerate() {
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
    // Far enough ahead that nothing fires while the rest is copied.
    let later = Clock::system().now_micros() + 3_600_000_000;
    let copied = copy_subscriptions(db, &template.id, &pairs, later).await;
    if copied != pairs.len() {
        return Err(format!("copied {copied} subscriptions of {}", pairs.len()));
    }
    Ok(agent.id)
}

/// Runs of the time made due started, and those that ended (any way).
async fn progress(db: &Db, due: i64, agent_id: &str) -> Result<(i64, i64), String> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'running' THEN 0 ELSE 1 END), 0) \
         FROM automation_runs WHERE scheduled_at = $1 AND agent_id = $2",
    )
    .bind(due)
    .bind(agent_id)
    .fetch_one(&db.pool)
    .await
    .map_err(|e| format!("reading progress: {e}"))?;
    Ok((row.get(0), row.get(1)))
}
