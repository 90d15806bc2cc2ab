//! Automations, firing: a due subscription runs the agent as its
//! user through the gateway's run path and notifies them; exactly one run
//! per (subscription, scheduled time) with any number of schedulers; a run
//! whose claimant died is retried once under the same id; catch-up after
//! downtime; unshare, delete and removals stop subscriptions, from events
//! and at fire time. Time is the suite's manual clock: no test waits for a
//! real schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agentshare_e2e::{Suite, UserClient, eventually};
use agentshare_kit::config::Scheduler;
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;
use pb::NotificationChannel::{Email, Push, Web};
use sqlx::Row;
use tonic::Code;

use crate::assert_status;
use crate::automations::{
    agent_with, automation, automations, hourly, mine, org_with_bob, subscribe,
};

const HOUR_MICROS: i64 = 3_600_000_000;
const MONTH: i64 = 30 * 86_400;

/// Fast firing for tests: a short poll, the default lease.
pub(crate) fn fast() -> Scheduler {
    Scheduler {
        fire_poll: Duration::from_millis(20),
        delivery_poll: Duration::from_millis(50),
        ..Scheduler::default()
    }
}

/// Several schedulers where the backend lets them claim side by side.
pub(crate) fn schedulers() -> usize {
    if std::env::var_os("AGENTSHARE_TEST_POSTGRES_URL").is_some() {
        2
    } else {
        1
    }
}

async fn suite() -> Suite {
    Suite::builder()
        .replicas(ServiceName::Scheduler, schedulers())
        .scheduler(fast())
        .start()
        .await
}

/// Moves the suite clock to `seconds` past the next full hour.
pub(crate) fn to_next_hour(suite: &Suite, seconds: i64) -> i64 {
    let now = suite.clock.now_micros();
    let hour = (now / HOUR_MICROS + 1) * HOUR_MICROS;
    let target = hour + seconds * 1_000_000;
    suite.clock.advance(Duration::from_micros(
        u64::try_from(target - now).expect("ahead"),
    ));
    hour
}

async fn runs(user: &UserClient, request: pb::ListRunsRequest) -> Vec<pb::AutomationRun> {
    automations(user)
        .list_runs(request)
        .await
        .expect("list runs")
        .into_inner()
        .runs
}

fn finished(run: &pb::AutomationRun) -> bool {
    run.finish_time.is_some()
        || matches!(
            run.status(),
            pb::AutomationRunStatus::Missed | pb::AutomationRunStatus::Skipped
        )
}

/// Waits until `user` has `count` runs, all finished.
async fn settled(user: &UserClient, count: usize) -> Vec<pb::AutomationRun> {
    eventually(&format!("{count} finished runs"), || async {
        // A scheduler that just restarted may still be out of the
        // gateway's rotation: UNAVAILABLE means ask again.
        let all = automations(user)
            .list_runs(pb::ListRunsRequest {
                page_size: 200,
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .runs;
        (all.len() == count && all.iter().all(finished)).then_some(all)
    })
    .await
}

/// (subscription, scheduled time, status, attempt) of every run row.
async fn run_rows(suite: &Suite) -> Vec<(String, i64, String, i64)> {
    let db = suite.db(ServiceName::Scheduler).await;
    sqlx::query("SELECT subscription_id, scheduled_at, status, attempt FROM automation_runs")
        .fetch_all(&db.pool)
        .await
        .expect("runs")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn a_due_subscription_runs_as_its_user_once_per_time_and_notifies_each_channel() {
    let suite = suite().await;
    let (alice, bob, bob_id) = org_with_bob(&suite).await;
    let keys = ["pulse", "digest", "audit"];
    let crm = registry::Tool {
        integration_key: "crm".into(),
        provider: "crm".into(),
        scope: registry::IntegrationScope::UserConfigured as i32,
        ..Default::default()
    };
    let agent = agent_with(
        &alice,
        "Monitor",
        vec![crm],
        keys.iter()
            .map(|k| automation(k, &format!("{k} report"), hourly(0), "UTC", &[]))
            .collect(),
    )
    .await;
    for user in [&alice, &bob] {
        let own = user.api_key_connection("crm", "crm-own-key").await;
        user.bind(&agent.id, "crm", &own).await;
    }
    for key in keys {
        subscribe(&bob, &agent.id, key, true, &[Web, Email, Push])
            .await
            .expect("bob subscribes");
        subscribe(&alice, &agent.id, key, true, &[Web])
            .await
            .expect("alice subscribes");
    }

    let first = to_next_hour(&suite, 1);
    let bobs = settled(&bob, 3).await;
    for run in &bobs {
        assert_eq!(run.user_id, bob_id);
        assert_eq!(
            crate::automations::micros(run.scheduled_time.as_ref()),
            first
        );
        assert_eq!(run.status(), pb::AutomationRunStatus::Succeeded, "{run:?}");
        assert!(!run.output_summary.is_empty());
        assert!(!run.session_id.is_empty() && !run.invocation_id.is_empty());
        assert_eq!((run.attempt, run.agent_version_number), (1, 1));
        assert!(run.start_time.is_some() && run.finish_time.is_some());
        assert!(!run.catch_up && !run.retried_after_lease_expiry);
    }
    settled(&alice, 3).await;

    // Each run went through the run path as Bob: his usage record with his
    // own CRM, billed to him, and a session he reads.
    let usage = bob
        .usage()
        .list_invocations(agentshare_proto::store::v1::ListInvocationsRequest {
            scope: agentshare_proto::store::v1::UsageScope::BilledToCaller as i32,
            ..Default::default()
        })
        .await
        .expect("usage")
        .into_inner()
        .invocations;
    let record = usage
        .iter()
        .find(|r| r.automation_run_id == bobs[0].id)
        .expect("a usage record of the run");
    assert_eq!(record.id, bobs[0].invocation_id);
    assert_eq!(
        record.caller_kind(),
        agentshare_proto::store::v1::CallerKind::Automation
    );
    assert_eq!(
        (
            record.executes_as_user_id.as_str(),
            record.billed_to_user_id.as_str()
        ),
        (bob_id.as_str(), bob_id.as_str())
    );
    assert_eq!(
        record.integrations[0].connection_owner(),
        agentshare_proto::store::v1::ConnectionOwner::Caller
    );
    let session = bob
        .sessions()
        .get_session(agentshare_proto::store::v1::GetSessionRequest {
            session_id: bobs[0].session_id.clone(),
            ..Default::default()
        })
        .await
        .expect("Bob reads the run's session")
        .into_inner();
    assert!(session.messages.len() >= 2, "{session:?}");

    // One inbox item per run, and email and push rows in the outbox.
    let run = automations(&bob)
        .get_run(pb::GetRunRequest {
            run_id: bobs[0].id.clone(),
        })
        .await
        .expect("get run")
        .into_inner()
        .run
        .expect("run");
    let channels: BTreeSet<i32> = run.deliveries.iter().map(|d| d.channel).collect();
    assert_eq!(
        channels,
        BTreeSet::from([Web as i32, Email as i32, Push as i32])
    );
    let inbox = automations(&bob)
        .list_inbox(pb::ListInboxRequest::default())
        .await
        .expect("inbox")
        .into_inner();
    assert_eq!(inbox.items.len(), 3);
    assert!(
        inbox
            .items
            .iter()
            .all(|i| i.kind() == pb::InboxItemKind::RunSucceeded && !i.run_id.is_empty())
    );

    // Nobody reads another user's runs, not even the agent's owner.
    assert_status(
        automations(&alice)
            .get_run(pb::GetRunRequest {
                run_id: bobs[0].id.clone(),
            })
            .await,
        Code::NotFound,
        "run",
    );

    // The next hour fires again, once per subscription.
    to_next_hour(&suite, 1);
    settled(&bob, 6).await;
    settled(&alice, 6).await;
    let rows = run_rows(&suite).await;
    let unique: BTreeSet<(String, i64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    assert_eq!((rows.len(), unique.len()), (12, 12), "{rows:?}");

    // The history pages newest first and filters by automation and status.
    let page = automations(&bob)
        .list_runs(pb::ListRunsRequest {
            agent_id: agent.id.clone(),
            automation_key: "pulse".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(page.runs.len(), 1);
    let newest = crate::automations::micros(page.runs[0].scheduled_time.as_ref());
    assert_eq!(newest, first + HOUR_MICROS);
    let next = runs(
        &bob,
        pb::ListRunsRequest {
            agent_id: agent.id.clone(),
            automation_key: "pulse".into(),
            page_size: 1,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        crate::automations::micros(next[0].scheduled_time.as_ref()),
        first
    );
    assert_status(
        automations(&bob)
            .list_runs(pb::ListRunsRequest {
                automation_key: "pulse".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "agent_id",
    );
    let failed = runs(
        &bob,
        pb::ListRunsRequest {
            statuses: vec![pb::AutomationRunStatus::Failed as i32],
            ..Default::default()
        },
    )
    .await;
    assert!(failed.is_empty());
    suite.stop().await;
}

#[tokio::test]
async fn after_downtime_the_latest_missed_time_runs_once_and_the_rest_are_counted() {
    let mut suite = suite().await;
    let (alice, _bob, _) = org_with_bob(&suite).await;
    let mut skip = automation("tally", "Tally", hourly(0), "UTC", &[]);
    skip.catch_up_policy = registry::CatchUpPolicy::SkipMissed as i32;
    let agent = agent_with(
        &alice,
        "Counter",
        Vec::new(),
        vec![automation("pulse", "Pulse", hourly(0), "UTC", &[]), skip],
    )
    .await;
    subscribe(&alice, &agent.id, "pulse", true, &[Web])
        .await
        .expect("pulse");
    subscribe(&alice, &agent.id, "tally", true, &[Web])
        .await
        .expect("tally");

    // Every scheduler is down across five scheduled times.
    for replica in 0..schedulers() {
        suite.stop_replica(ServiceName::Scheduler, replica).await;
    }
    let first = to_next_hour(&suite, 0);
    suite.clock.advance(Duration::from_secs(4 * 3600 + 10 * 60));
    for replica in 0..schedulers() {
        suite.restart_replica(ServiceName::Scheduler, replica).await;
    }

    // pulse: one MISSED row for the four earlier times, one catch-up run.
    // tally (SKIP_MISSED): five SKIPPED rows, nothing runs.
    let all = settled(&alice, 7).await;
    let pulse: Vec<_> = all.iter().filter(|r| r.automation_key == "pulse").collect();
    assert_eq!(pulse.len(), 2, "{pulse:?}");
    let (latest, missed) = (pulse[0], pulse[1]);
    assert_eq!(latest.status(), pb::AutomationRunStatus::Succeeded);
    assert!(latest.catch_up);
    assert_eq!(
        latest.note,
        "catch-up of the latest time missed during downtime"
    );
    assert_eq!(
        crate::automations::micros(latest.scheduled_time.as_ref()),
        first + 4 * HOUR_MICROS
    );
    assert_eq!(missed.status(), pb::AutomationRunStatus::Missed);
    assert_eq!(missed.missed_count, 4);
    assert_eq!(
        crate::automations::micros(missed.scheduled_time.as_ref()),
        first
    );
    assert_eq!(
        crate::automations::micros(missed.missed_through_time.as_ref()),
        first + 3 * HOUR_MICROS
    );
    let tally: Vec<_> = all.iter().filter(|r| r.automation_key == "tally").collect();
    assert_eq!(tally.len(), 5);
    assert!(
        tally
            .iter()
            .all(|r| r.status() == pb::AutomationRunStatus::Skipped && r.finish_time.is_none())
    );
    let skipped = runs(
        &alice,
        pb::ListRunsRequest {
            statuses: vec![
                pb::AutomationRunStatus::Skipped as i32,
                pb::AutomationRunStatus::Missed as i32,
            ],
            page_size: 200,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(skipped.len(), 6);

    // Scheduling never stopped: both fire at the next hour as usual.
    to_next_hour(&suite, 1);
    let all = settled(&alice, 9).await;
    let newest: Vec<_> = all
        .iter()
        .filter(|r| {
            crate::automations::micros(r.scheduled_time.as_ref()) == first + 5 * HOUR_MICROS
        })
        .collect();
    assert_eq!(newest.len(), 2);
    assert!(
        newest
            .iter()
            .all(|r| r.status() == pb::AutomationRunStatus::Succeeded && !r.catch_up)
    );
    suite.stop().await;
}

/// Inserts a run as a replica that died mid-run would have left it.
async fn orphan_run(
    suite: &Suite,
    subscription: &pb::Subscription,
    org_id: &str,
    scheduled_at: i64,
    attempt: i64,
) -> String {
    let db = suite.db(ServiceName::Scheduler).await;
    let id = uuid::Uuid::now_v7().to_string();
    let now = suite.clock.now_micros();
    sqlx::query(
        "INSERT INTO automation_runs (id, subscription_id, org_id, agent_id, automation_key, \
         automation_name, user_id, workspace_id, task, scheduled_at, status, started_at, attempt, \
         lease_owner, lease_expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, 'running', $11, $12, 'a-replica-that-died', $13, $11)",
    )
    .bind(&id)
    .bind(&subscription.id)
    .bind(org_id)
    .bind(&subscription.agent_id)
    .bind(&subscription.automation_key)
    .bind(&subscription.automation_name)
    .bind(&subscription.user_id)
    .bind(&subscription.workspace_id)
    .bind("Run the Pulse.")
    .bind(scheduled_at)
    .bind(now - 2 * 60_000_000)
    .bind(attempt)
    .bind(now - 1)
    .execute(&db.pool)
    .await
    .expect("orphan run");
    id
}

#[tokio::test]
async fn a_run_whose_claimant_died_is_retried_once_under_the_same_run_id() {
    let suite = suite().await;
    let (alice, _bob, _) = org_with_bob(&suite).await;
    let org_id = alice
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner()
        .org_id;
    let agent = agent_with(
        &alice,
        "Monitor",
        Vec::new(),
        vec![automation("pulse", "Pulse", hourly(0), "UTC", &[])],
    )
    .await;
    let subscription = subscribe(&alice, &agent.id, "pulse", true, &[Web])
        .await
        .expect("subscribe");
    let hour = (suite.clock.now_micros() / HOUR_MICROS) * HOUR_MICROS;
    // A first attempt whose lease expired: retried once, as attempt 2.
    let retried = orphan_run(&suite, &subscription, &org_id, hour - HOUR_MICROS, 1).await;
    // A retry whose lease expired too: failed, never tried a third time.
    let given_up = orphan_run(&suite, &subscription, &org_id, hour - 2 * HOUR_MICROS, 2).await;

    let all = settled(&alice, 2).await;
    let run = all.iter().find(|r| r.id == retried).expect("retried run");
    assert_eq!(run.status(), pb::AutomationRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.attempt, 2);
    assert!(run.retried_after_lease_expiry);
    assert_eq!(run.note, "retried after lease expiry");
    let run = all.iter().find(|r| r.id == given_up).expect("given up");
    assert_eq!(run.status(), pb::AutomationRunStatus::Failed);
    assert_eq!(run.error.as_ref().map(|e| e.code.as_str()), Some("ABORTED"));
    let rows = run_rows(&suite).await;
    assert_eq!(rows.iter().filter(|r| r.3 == 3).count(), 0);
    suite.stop().await;
}

#[tokio::test]
async fn unsharing_disables_every_subscription_but_the_owners_and_deleting_stops_all() {
    let suite = suite().await;
    let (alice, bob, _) = org_with_bob(&suite).await;
    let agent = agent_with(
        &alice,
        "Monitor",
        Vec::new(),
        vec![automation("pulse", "Pulse", hourly(0), "UTC", &[])],
    )
    .await;
    subscribe(&alice, &agent.id, "pulse", true, &[Web])
        .await
        .expect("alice");
    subscribe(&bob, &agent.id, "pulse", true, &[Web])
        .await
        .expect("bob");

    alice.unshare(&agent.id).await;
    let stopped = eventually("bob's subscription stopping", || async {
        let rows = mine(&bob, &[pb::SubscriptionStatus::Disabled]).await;
        (rows.len() == 1).then_some(rows)
    })
    .await;
    assert_eq!(
        stopped[0].status_reason(),
        pb::SubscriptionStatusReason::AgentUnshared
    );
    assert_eq!(stopped[0].status_message, "agent unshared");
    assert_eq!(
        mine(&alice, &[pb::SubscriptionStatus::Active]).await.len(),
        1
    );
    let inbox = automations(&bob)
        .list_inbox(pb::ListInboxRequest::default())
        .await
        .expect("inbox")
        .into_inner();
    assert_eq!(inbox.items.len(), 1);
    assert_eq!(
        inbox.items[0].kind(),
        pb::InboxItemKind::SubscriptionStopped
    );

    // The owner's still fires; Bob's does not, and sharing again does not
    // turn it back on.
    to_next_hour(&suite, 1);
    settled(&alice, 1).await;
    alice.share(&agent.id).await;
    to_next_hour(&suite, 1);
    settled(&alice, 2).await;
    assert!(runs(&bob, pb::ListRunsRequest::default()).await.is_empty());
    assert_eq!(
        mine(&bob, &[pb::SubscriptionStatus::Disabled]).await.len(),
        1
    );

    // Deleting the agent stops all, the owner's included.
    alice
        .registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("delete");
    eventually("the owner's subscription stopping", || async {
        let rows = mine(&alice, &[pb::SubscriptionStatus::Inactive]).await;
        (rows.len() == 1).then_some(())
    })
    .await;
    to_next_hour(&suite, 1);
    suite.firing_caught_up().await;
    assert_eq!(runs(&alice, pb::ListRunsRequest::default()).await.len(), 2);
    suite.stop().await;
}

#[tokio::test]
async fn removals_stop_only_the_subscriptions_whose_user_can_no_longer_run_the_agent() {
    let suite = suite().await;
    let long = |user: &str, step_up: bool| suite.token_with(user, step_up, MONTH);
    let alice = suite.user("alice").await.with_token(&long("alice", false));
    let acme = alice.new_org("Acme").await;
    let strong = alice.with_token(&long("alice", true));
    strong.enable_workspaces().await;
    let sales = strong.create_workspace("Sales").await;
    let ops = strong.create_workspace("Ops").await;
    let mut users = BTreeMap::new();
    for name in ["bob", "carol", "dave"] {
        let client = suite.user(name).await.with_token(&long(name, false));
        let id = client.user_id().await;
        strong.add_member(&id, sharing::OrgRole::Member).await;
        users.insert(name, (client, id));
    }
    let (bob, bob_id) = users["bob"].clone();
    let (carol, carol_id) = users["carol"].clone();
    let (dave, dave_id) = users["dave"].clone();
    // Bob works in the default workspace and Sales; Carol in Sales only;
    // Dave in Ops only.
    strong
        .add_to_workspace(&sales, &bob_id, sharing::WorkspaceRole::Member)
        .await;
    strong
        .add_to_workspace(&sales, &carol_id, sharing::WorkspaceRole::Member)
        .await;
    strong
        .add_to_workspace(&ops, &dave_id, sharing::WorkspaceRole::Member)
        .await;
    for id in [&carol_id, &dave_id] {
        strong
            .remove_from_workspace(&acme.default_workspace_id, id)
            .await;
    }
    let agent = agent_with(
        &alice,
        "Monitor",
        Vec::new(),
        vec![automation("pulse", "Pulse", hourly(0), "UTC", &[])],
    )
    .await;
    strong
        .sharing()
        .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
            agent_id: agent.id.clone(),
            workspace_ids: vec![
                acme.default_workspace_id.clone(),
                sales.clone(),
                ops.clone(),
            ],
        })
        .await
        .expect("workspaces");
    for (client, workspace) in [(&bob, &sales), (&carol, &sales), (&dave, &ops)] {
        subscribe(
            &client.in_workspace(workspace),
            &agent.id,
            "pulse",
            true,
            &[Web],
        )
        .await
        .expect("subscribe");
    }

    // Bob and Carol leave Sales: Bob still reaches the agent through the
    // default workspace and keeps his subscription there; Carol does not.
    strong.remove_from_workspace(&sales, &bob_id).await;
    strong.remove_from_workspace(&sales, &carol_id).await;
    let carols = eventually("carol's subscription stopping", || async {
        let rows = mine(&carol, &[pb::SubscriptionStatus::Disabled]).await;
        (rows.len() == 1).then_some(rows)
    })
    .await;
    assert_eq!(
        carols[0].status_reason(),
        pb::SubscriptionStatusReason::AccessLost
    );
    let bobs = eventually("bob's subscription moving", || async {
        let rows = mine(&bob, &[pb::SubscriptionStatus::Active]).await;
        (rows.len() == 1 && rows[0].workspace_id == acme.default_workspace_id).then_some(rows)
    })
    .await;
    assert_eq!(bobs.len(), 1);

    // Ops leaves the agent's list: Dave loses it, Bob keeps his.
    strong
        .sharing()
        .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
            agent_id: agent.id.clone(),
            workspace_ids: vec![acme.default_workspace_id.clone(), sales.clone()],
        })
        .await
        .expect("workspaces");
    eventually("dave's subscription stopping", || async {
        let rows = mine(&dave, &[pb::SubscriptionStatus::Disabled]).await;
        (rows.len() == 1 && rows[0].status_reason() == pb::SubscriptionStatusReason::AccessLost)
            .then_some(())
    })
    .await;
    to_next_hour(&suite, 1);
    settled(&bob, 1).await;
    suite.firing_caught_up().await;
    for user in [&carol, &dave] {
        assert!(runs(user, pb::ListRunsRequest::default()).await.is_empty());
    }
    assert_eq!(mine(&bob, &[pb::SubscriptionStatus::Active]).await.len(), 1);
    suite.stop().await;
}

#[tokio::test]
async fn with_the_watcher_paused_an_unshare_is_still_stopped_at_fire_time() {
    let suite = Suite::builder()
        .scheduler(Scheduler {
            follow_events: false,
            ..fast()
        })
        .start()
        .await;
    let (alice, bob, _) = org_with_bob(&suite).await;
    let agent = agent_with(
        &alice,
        "Monitor",
        Vec::new(),
        vec![automation("pulse", "Pulse", hourly(0), "UTC", &[])],
    )
    .await;
    subscribe(&bob, &agent.id, "pulse", true, &[Web])
        .await
        .expect("bob");
    alice.unshare(&agent.id).await;
    // No event stops it: still ACTIVE, with the firing loop come round,
    // until it fires.
    suite.firing_caught_up().await;
    assert_eq!(mine(&bob, &[pb::SubscriptionStatus::Active]).await.len(), 1);

    to_next_hour(&suite, 1);
    let all = settled(&bob, 1).await;
    let run = &all[0];
    assert_eq!(run.status(), pb::AutomationRunStatus::Skipped, "{run:?}");
    assert!(run.error.is_some());
    assert!(run.session_id.is_empty(), "the agent never ran");
    let rows = mine(&bob, &[pb::SubscriptionStatus::Disabled]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].status_reason(),
        pb::SubscriptionStatusReason::AccessLost
    );
    // It never fires again.
    to_next_hour(&suite, 1);
    suite.firing_caught_up().await;
    assert_eq!(runs(&bob, pb::ListRunsRequest::default()).await.len(), 1);
    suite.stop().await;
}
