//! Automations, users' side (DESIGN.md, "Automations (scheduler)"): what the
//! builder scheduled, each user's own opt-in with channels, setup first, who
//! may subscribe, pauses on the suite clock, redeploys, the workspace cap,
//! and the inbox and outbox the scheduler writes when it stops a
//! subscription.

use std::time::Duration;

use agentshare_e2e::{Suite, UserClient, eventually};
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;
use pb::automations_internal_service_client::AutomationsInternalServiceClient;
use pb::automations_service_client::AutomationsServiceClient;
use sharing::connections_service_client::ConnectionsServiceClient;
use sqlx::Row;
use tonic::Code;
use tonic_types::StatusExt;

use crate::assert_status;

const MONTH: i64 = 30 * 86_400;
const HOUR_MICROS: i64 = 3_600_000_000;
const DAY_MICROS: i64 = 24 * HOUR_MICROS;

pub(crate) fn automations(user: &UserClient) -> AutomationsServiceClient<agentshare_e2e::Authed> {
    AutomationsServiceClient::new(user.channel())
}

pub(crate) fn automation(
    key: &str,
    name: &str,
    kind: registry::schedule::Kind,
    zone: &str,
    suggested: &[registry::NotificationChannel],
) -> registry::Automation {
    registry::Automation {
        key: key.into(),
        display_name: name.into(),
        schedule: Some(registry::Schedule { kind: Some(kind) }),
        time_zone: zone.into(),
        task: format!("Run the {name}."),
        suggested_channels: suggested.iter().map(|c| *c as i32).collect(),
        catch_up_policy: 0,
    }
}

pub(crate) fn daily(hours: i32, minutes: i32) -> registry::schedule::Kind {
    registry::schedule::Kind::Daily(registry::DailySchedule {
        time_of_day: Some(registry::TimeOfDay { hours, minutes }),
    })
}

pub(crate) fn hourly(minute: i32) -> registry::schedule::Kind {
    registry::schedule::Kind::Hourly(registry::HourlySchedule { minute })
}

fn cron(expression: &str) -> registry::schedule::Kind {
    registry::schedule::Kind::Cron(registry::CronSchedule {
        expression: expression.into(),
    })
}

/// Creates, deploys and shares an agent with these tools and automations.
pub(crate) async fn agent_with(
    owner: &UserClient,
    name: &str,
    tools: Vec<registry::Tool>,
    automations: Vec<registry::Automation>,
) -> registry::Agent {
    let agent = owner
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: name.into(),
                instructions: format!("You are the {name}."),
                tools,
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
    let agent = owner.deploy(&agent).await;
    owner.share(&agent.id).await;
    agent
}

/// Replaces the agent's automations and deploys the next version.
async fn redeploy_with(
    owner: &UserClient,
    agent_id: &str,
    automations: Vec<registry::Automation>,
) -> registry::Agent {
    let current = owner
        .registry()
        .get_agent(registry::GetAgentRequest {
            agent_id: agent_id.into(),
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let mut request = registry::UpdateDraftRequest {
        agent_id: agent_id.into(),
        draft: Some(registry::AgentDraft {
            automations,
            ..Default::default()
        }),
        update_mask: Some(Default::default()),
        expected_draft_revision: current.draft_revision,
    };
    if let Some(mask) = request.update_mask.as_mut() {
        mask.paths = vec!["automations".into()];
    }
    let edited = owner
        .registry()
        .update_draft(request)
        .await
        .expect("edit")
        .into_inner()
        .agent
        .expect("agent");
    owner.deploy(&edited).await
}

/// Alice's org with Bob as a member; tokens outlive the days these tests
/// move the clock by.
pub(crate) async fn org_with_bob(suite: &Suite) -> (UserClient, UserClient, String) {
    let acme = suite
        .org("Acme")
        .member("bob", sharing::OrgRole::Member)
        .tokens_for(MONTH)
        .build()
        .await;
    let bob = acme.members[0].clone();
    (acme.owner, bob.client, bob.user_id)
}

async fn list(user: &UserClient, agent_id: &str) -> Vec<pb::Automation> {
    automations(user)
        .list_automations(pb::ListAutomationsRequest {
            agent_id: agent_id.into(),
            ..Default::default()
        })
        .await
        .expect("list automations")
        .into_inner()
        .automations
}

pub(crate) async fn subscribe(
    user: &UserClient,
    agent_id: &str,
    key: &str,
    enabled: bool,
    channels: &[pb::NotificationChannel],
) -> Result<pb::Subscription, tonic::Status> {
    automations(user)
        .subscribe(pb::SubscribeRequest {
            agent_id: agent_id.into(),
            automation_key: key.into(),
            enabled,
            channels: channels.iter().map(|c| *c as i32).collect(),
        })
        .await
        .map(|r| r.into_inner().subscription.expect("subscription"))
}

pub(crate) async fn update(
    user: &UserClient,
    agent_id: &str,
    key: &str,
    enabled: Option<bool>,
    channels: Option<&[pb::NotificationChannel]>,
) -> Result<pb::Subscription, tonic::Status> {
    let mut paths = Vec::new();
    if enabled.is_some() {
        paths.push("enabled".to_string());
    }
    if channels.is_some() {
        paths.push("channels".to_string());
    }
    let mut request = pb::UpdateSubscriptionRequest {
        agent_id: agent_id.into(),
        automation_key: key.into(),
        settings: Some(pb::SubscriptionSettings {
            enabled: enabled.unwrap_or_default(),
            channels: channels
                .unwrap_or_default()
                .iter()
                .map(|c| *c as i32)
                .collect(),
        }),
        update_mask: Some(Default::default()),
    };
    if let Some(mask) = request.update_mask.as_mut() {
        mask.paths = paths;
    }
    automations(user)
        .update_subscription(request)
        .await
        .map(|r| r.into_inner().subscription.expect("subscription"))
}

pub(crate) async fn mine(
    user: &UserClient,
    statuses: &[pb::SubscriptionStatus],
) -> Vec<pb::Subscription> {
    automations(user)
        .list_my_subscriptions(pb::ListMySubscriptionsRequest {
            statuses: statuses.iter().map(|s| *s as i32).collect(),
            ..Default::default()
        })
        .await
        .expect("my subscriptions")
        .into_inner()
        .subscriptions
}

/// A timestamp of the contract in microseconds since the epoch.
pub(crate) fn micros<T: Clone>(t: Option<&T>) -> i64
where
    std::time::SystemTime: TryFrom<T>,
{
    let at = std::time::SystemTime::try_from(t.expect("timestamp").clone())
        .unwrap_or_else(|_| panic!("timestamp out of range"));
    let since = at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    i64::try_from(since.as_micros()).expect("fits")
}

use pb::NotificationChannel::{Email, Push, Web};

#[tokio::test]
async fn users_see_the_schedule_opt_in_disabled_and_enable_only_with_setup_ready() {
    let suite = Suite::start().await;
    let (alice, bob, bob_id) = org_with_bob(&suite).await;
    let agent = agent_with(
        &alice,
        "Sales assistant",
        vec![registry::Tool {
            integration_key: "crm".into(),
            provider: "crm".into(),
            scope: registry::IntegrationScope::UserConfigured as i32,
            ..Default::default()
        }],
        vec![
            automation(
                "morning",
                "Morning report",
                daily(8, 0),
                "Europe/Berlin",
                &[
                    registry::NotificationChannel::Web,
                    registry::NotificationChannel::Email,
                ],
            ),
            automation("digest", "Weekly digest", cron("30 9 * * 1"), "UTC", &[]),
            automation("pulse", "Pulse", hourly(15), "America/New_York", &[]),
        ],
    )
    .await;

    // What the builder defined, in words and as cron, ordered by key.
    let listed = list(&bob, &agent.id).await;
    let keys: Vec<&str> = listed.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["digest", "morning", "pulse"]);
    let morning = &listed[1];
    let schedule = morning.schedule.as_ref().expect("schedule");
    assert_eq!(schedule.description, "Daily at 08:00 Europe/Berlin");
    assert_eq!(schedule.cron, "0 8 * * *");
    assert_eq!(schedule.kind(), pb::ScheduleKind::Daily);
    assert_eq!(schedule.time_zone, "Europe/Berlin");
    assert_eq!(morning.task, "Run the Morning report.");
    assert_eq!(morning.name, "Morning report");
    assert_eq!(morning.agent_version_number, 1);
    assert_eq!(
        morning.catch_up_policy(),
        pb::CatchUpPolicy::RunLatestMissed
    );
    assert_eq!(morning.suggested_channels, [Web as i32, Email as i32]);
    assert_eq!(morning.next_fire_times.len(), 3);
    let now = suite.clock.now_micros();
    let mut previous = now;
    for fire in &morning.next_fire_times {
        let at = micros(fire.fire_time.as_ref());
        assert!(at > previous && at - previous <= DAY_MICROS + HOUR_MICROS);
        assert!(
            fire.local_time.contains("T08:00:00+0"),
            "{}",
            fire.local_time
        );
        previous = at;
    }
    assert_eq!(
        listed[2].schedule.as_ref().expect("schedule").description,
        "Hourly at :15 America/New_York"
    );
    assert_eq!(
        listed[0].schedule.as_ref().expect("schedule").description,
        "Cron \"30 9 * * 1\" UTC"
    );
    assert!(morning.my_subscription.is_none());
    assert!(!morning.can_enable);
    assert!(
        morning.cannot_enable_reason.contains("crm (crm)"),
        "{}",
        morning.cannot_enable_reason
    );

    // Subscribing starts disabled, with the builder's suggested channels.
    let subscription = subscribe(&bob, &agent.id, "morning", false, &[])
        .await
        .expect("subscribe");
    assert!(!subscription.enabled);
    assert_eq!(subscription.status(), pb::SubscriptionStatus::Disabled);
    assert_eq!(
        subscription.status_reason(),
        pb::SubscriptionStatusReason::User
    );
    assert_eq!(subscription.channels, [Web as i32, Email as i32]);
    assert_eq!(subscription.user_id, bob_id);
    assert!(subscription.next_run_time.is_none());
    assert!(subscription.last_run.is_none());
    assert_status(
        subscribe(&bob, &agent.id, "morning", false, &[]).await,
        Code::AlreadyExists,
        "UpdateSubscription",
    );
    assert_status(
        subscribe(&bob, &agent.id, "nightly", false, &[]).await,
        Code::NotFound,
        "automation nightly",
    );

    // Enabling needs setup READY: the error lists what is missing.
    let status = assert_status(
        update(&bob, &agent.id, "morning", Some(true), None).await,
        Code::FailedPrecondition,
        "setup required: connect crm (crm)",
    );
    let violations = status
        .get_details_precondition_failure()
        .expect("precondition failure")
        .violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].r#type, "SETUP_REQUIRED");
    assert_eq!(violations[0].subject, "integration/crm");
    assert_status(
        subscribe(&bob, &agent.id, "pulse", true, &[]).await,
        Code::FailedPrecondition,
        "crm (crm)",
    );
    assert!(
        mine(&bob, &[]).await.len() == 1,
        "a refused subscribe leaves nothing"
    );

    let connections = ConnectionsServiceClient::new(bob.channel());
    let connection = connections
        .clone()
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: "crm".into(),
            api_key: "crm-bob-0001".into(),
            label: "Bob's CRM".into(),
            expire_time: None,
        })
        .await
        .expect("connection")
        .into_inner()
        .connection
        .expect("connection");
    connections
        .clone()
        .bind_integration(sharing::BindIntegrationRequest {
            agent_id: agent.id.clone(),
            integration_key: "crm".into(),
            connection_id: connection.id,
        })
        .await
        .expect("bind");
    assert!(list(&bob, &agent.id).await[1].can_enable);

    let enabled = update(&bob, &agent.id, "morning", Some(true), None)
        .await
        .expect("enable");
    assert!(enabled.enabled);
    assert_eq!(enabled.status(), pb::SubscriptionStatus::Active);
    assert_eq!(
        micros(enabled.next_run_time.as_ref()),
        micros(morning.next_fire_times[0].fire_time.as_ref())
    );
    assert_eq!(enabled.id, subscription.id);

    // Channels are the user's own choice, each named once.
    let pushed = update(&bob, &agent.id, "morning", None, Some(&[Push, Web]))
        .await
        .expect("channels");
    assert_eq!(pushed.channels, [Push as i32, Web as i32]);
    assert!(pushed.enabled, "changing channels keeps the switch");
    assert_status(
        update(&bob, &agent.id, "morning", None, Some(&[Web, Web])).await,
        Code::InvalidArgument,
        "named twice",
    );
    assert_status(
        subscribe(
            &bob,
            &agent.id,
            "digest",
            false,
            &[pb::NotificationChannel::Unspecified],
        )
        .await,
        Code::InvalidArgument,
        "WEB, EMAIL or PUSH",
    );
    assert_status(
        update(&bob, &agent.id, "morning", None, None).await,
        Code::InvalidArgument,
        "update_mask",
    );

    // Alice's settings are hers alone: Bob's subscription is not hers.
    let for_alice = list(&alice, &agent.id).await;
    assert!(for_alice[1].my_subscription.is_none());
    assert!(
        list(&bob, &agent.id).await[1]
            .my_subscription
            .as_ref()
            .is_some_and(|s| s.enabled)
    );
    let alices = subscribe(&alice, &agent.id, "morning", false, &[Email])
        .await
        .expect("alice subscribes");
    assert_eq!(alices.status(), pb::SubscriptionStatus::Disabled);
    assert_eq!(
        mine(&bob, &[]).await[0].status(),
        pb::SubscriptionStatus::Active
    );

    // Settings → Your Account.
    let rows = mine(&bob, &[]).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.agent_name, "Sales assistant");
    assert_eq!(row.automation_name, "Morning report");
    assert_eq!(row.schedule_description, "Daily at 08:00 Europe/Berlin");
    assert_eq!(row.channels, [Push as i32, Web as i32]);
    assert!(row.next_run_time.is_some());
    assert!(row.last_run.is_none());

    // NextRuns previews the schedule.
    let preview = automations(&bob)
        .next_runs(pb::NextRunsRequest {
            agent_id: agent.id.clone(),
            automation_key: "pulse".into(),
            count: 5,
            after_time: Some(timestamp(now)),
        })
        .await
        .expect("next runs")
        .into_inner();
    assert_eq!(preview.fire_times.len(), 5);
    assert_status(
        automations(&bob)
            .next_runs(pb::NextRunsRequest {
                agent_id: agent.id.clone(),
                automation_key: "pulse".into(),
                count: 51,
                after_time: None,
            })
            .await,
        Code::InvalidArgument,
        "count",
    );

    let gone = automations(&bob)
        .unsubscribe(pb::UnsubscribeRequest {
            agent_id: agent.id.clone(),
            automation_key: "morning".into(),
        })
        .await
        .expect("unsubscribe")
        .into_inner();
    assert_eq!(gone.subscription_id, subscription.id);
    assert!(mine(&bob, &[]).await.is_empty());
    assert_status(
        automations(&bob)
            .unsubscribe(pb::UnsubscribeRequest {
                agent_id: agent.id.clone(),
                automation_key: "morning".into(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    let again = subscribe(&bob, &agent.id, "morning", false, &[])
        .await
        .expect("subscribe again");
    assert!(!again.enabled, "subscribing again starts disabled");
    suite.stop().await;
}

#[tokio::test]
async fn only_the_owner_and_workspace_members_subscribe_never_a_grant_or_a_viewer() {
    let suite = Suite::start().await;
    let (alice, bob, bob_id) = org_with_bob(&suite).await;
    let vera = suite.user("vera").await;
    let vera_id = vera.user_id().await;
    alice
        .with_token(&suite.token_with("alice", true, 7200))
        .add_member(&vera_id, sharing::OrgRole::Viewer)
        .await;
    let report = || {
        vec![automation(
            "morning",
            "Morning report",
            daily(8, 0),
            "Europe/Berlin",
            &[],
        )]
    };
    let agent = agent_with(&alice, "Reporter", Vec::new(), report()).await;

    // The owner and a workspace member subscribe.
    let owners = subscribe(&alice, &agent.id, "morning", true, &[])
        .await
        .expect("owner");
    assert_eq!(owners.status(), pb::SubscriptionStatus::Active);
    assert_eq!(
        owners.channels,
        [Web as i32],
        "WEB when the builder suggests none"
    );
    let members = subscribe(&bob, &agent.id, "morning", true, &[])
        .await
        .expect("member");
    assert_eq!(members.workspace_id, owners.workspace_id);
    assert!(!members.workspace_id.is_empty());

    // In a workspace the agent is not shared with, Bob cannot subscribe.
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong.enable_workspaces().await;
    let ops = strong.create_workspace("Ops").await;
    strong
        .add_to_workspace(&ops, &bob_id, sharing::WorkspaceRole::Member)
        .await;
    let in_ops = bob.in_workspace(&ops);
    assert_status(
        automations(&in_ops)
            .list_automations(pb::ListAutomationsRequest {
                agent_id: agent.id.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        subscribe(&in_ops, &agent.id, "morning", false, &[]).await,
        Code::NotFound,
        "not found",
    );

    // A viewer may see the automations but not run, so not subscribe.
    let seen = list(&vera, &agent.id).await;
    assert!(!seen[0].can_enable);
    assert!(seen[0].cannot_enable_reason.contains("viewers"));
    assert_status(
        subscribe(&vera, &agent.id, "morning", false, &[]).await,
        Code::PermissionDenied,
        "viewers",
    );

    // An agent that is not shared is not there for Bob.
    let private = alice.deployed_agent("Private").await;
    assert_status(
        automations(&bob)
            .list_automations(pb::ListAutomationsRequest {
                agent_id: private.id.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        subscribe(&bob, &private.id, "morning", false, &[]).await,
        Code::NotFound,
        "not found",
    );
    // A never-deployed agent has nothing to subscribe to yet.
    let draft = alice.new_agent("Draft").await;
    assert_status(
        automations(&alice)
            .list_automations(pb::ListAutomationsRequest {
                agent_id: draft.id.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "deploy the agent first",
    );

    // A share grant runs the agent, but never makes a subscriber.
    let token = alice
        .sharing()
        .create_grant(sharing::CreateGrantRequest {
            agent_id: agent.id.clone(),
            kind: sharing::GrantKind::Invoke as i32,
            label: "partner".into(),
            expire_time: None,
            pinned_version: None,
            limits: None,
        })
        .await
        .expect("grant")
        .into_inner()
        .token;
    let carol = suite.user("carol").await;
    carol.user_id().await;
    assert_status(
        subscribe(&carol.with_grant(&token), &agent.id, "morning", false, &[]).await,
        Code::PermissionDenied,
        "",
    );
    assert!(
        subscribe(&carol, &agent.id, "morning", false, &[])
            .await
            .is_err()
    );

    // Sharing's unshare dry-run asks which enabled subscriptions would stop.
    let internal = AutomationsInternalServiceClient::new(
        suite
            .service_channel(ServiceName::Sharing, ServiceName::Scheduler, 0)
            .await,
    );
    let would_stop = internal
        .clone()
        .list_enabled_subscriptions(pb::ListEnabledSubscriptionsRequest {
            agent_id: agent.id.clone(),
            exclude_user_id: agent.owner_user_id.clone(),
            ..Default::default()
        })
        .await
        .expect("enabled subscriptions")
        .into_inner();
    assert_eq!(would_stop.total, 1);
    assert_eq!(would_stop.subscriptions[0].user_id, bob_id);
    assert_eq!(would_stop.subscriptions[0].automation_key, "morning");
    let as_registry = AutomationsInternalServiceClient::new(
        suite
            .service_channel(ServiceName::Registry, ServiceName::Scheduler, 0)
            .await,
    );
    assert_status(
        as_registry
            .clone()
            .list_enabled_subscriptions(pb::ListEnabledSubscriptionsRequest {
                agent_id: agent.id.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "may not call",
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_pause_lasts_until_its_time_and_the_subscription_resumes_by_itself() {
    let suite = Suite::start().await;
    let (alice, _bob, _) = org_with_bob(&suite).await;
    let agent = agent_with(
        &alice,
        "Monitor",
        Vec::new(),
        vec![automation("pulse", "Pulse", hourly(0), "UTC", &[])],
    )
    .await;
    subscribe(&alice, &agent.id, "pulse", true, &[])
        .await
        .expect("subscribe");
    let pause = |until: i64| {
        let client = automations(&alice);
        let agent_id = agent.id.clone();
        async move {
            client
                .clone()
                .pause_subscription(pb::PauseSubscriptionRequest {
                    agent_id,
                    automation_key: "pulse".into(),
                    paused_until: Some(timestamp(until)),
                })
                .await
                .map(|r| r.into_inner().subscription.expect("subscription"))
        }
    };
    let now = suite.clock.now_micros();
    // Pauses end in the future, within 366 days.
    assert_status(pause(now - 1).await, Code::InvalidArgument, "future");
    assert_status(
        pause(now + 367 * DAY_MICROS).await,
        Code::InvalidArgument,
        "366 days",
    );

    let until = now + DAY_MICROS + 30 * 60_000_000;
    let paused = pause(until).await.expect("pause");
    assert_eq!(paused.status(), pb::SubscriptionStatus::Paused);
    assert_eq!(micros(paused.paused_until.as_ref()), until);
    let next = micros(paused.next_run_time.as_ref());
    assert!(next >= until && next - until <= HOUR_MICROS);
    assert_eq!(
        mine(&alice, &[pb::SubscriptionStatus::Paused]).await.len(),
        1
    );
    assert!(
        mine(&alice, &[pb::SubscriptionStatus::Active])
            .await
            .is_empty()
    );

    // Past the end of the pause it is ACTIVE again, with no call.
    suite.clock.advance(Duration::from_secs(26 * 3600));
    let rows = mine(&alice, &[pb::SubscriptionStatus::Active]).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].paused_until.is_none());
    assert!(micros(rows[0].next_run_time.as_ref()) > suite.clock.now_micros());

    // Resume ends a pause at once; resuming what is not paused is a no-op.
    let now = suite.clock.now_micros();
    pause(now + 3 * DAY_MICROS).await.expect("pause again");
    let resume = || {
        let mut client = automations(&alice);
        let request = pb::ResumeSubscriptionRequest {
            agent_id: agent.id.clone(),
            automation_key: "pulse".into(),
        };
        async move { client.resume_subscription(request).await }
    };
    let resumed = resume()
        .await
        .expect("resume")
        .into_inner()
        .subscription
        .expect("subscription");
    assert_eq!(resumed.status(), pb::SubscriptionStatus::Active);
    assert!(micros(resumed.next_run_time.as_ref()) - now <= HOUR_MICROS);
    resume().await.expect("resume again");

    // Only an enabled subscription pauses; disabling clears a pause.
    pause(now + DAY_MICROS).await.expect("pause");
    let disabled = update(&alice, &agent.id, "pulse", Some(false), None)
        .await
        .expect("disable");
    assert_eq!(disabled.status(), pb::SubscriptionStatus::Disabled);
    assert!(disabled.paused_until.is_none());
    assert_status(
        pause(now + DAY_MICROS).await,
        Code::FailedPrecondition,
        "enable the automation first",
    );
    let enabled = update(&alice, &agent.id, "pulse", Some(true), None)
        .await
        .expect("enable");
    assert_eq!(enabled.status(), pb::SubscriptionStatus::Active);
    suite.stop().await;
}

/// The scheduler's outbox rows for `user_id`: (channel, address, status,
/// attempts).
async fn outbox(suite: &Suite, user_id: &str) -> Vec<(String, String, String, i64)> {
    let db = suite.db(ServiceName::Scheduler).await;
    let rows = sqlx::query(
        "SELECT channel, address, status, attempt_count FROM notification_outbox \
         WHERE user_id = $1 ORDER BY channel",
    )
    .bind(user_id)
    .fetch_all(&db.pool)
    .await
    .expect("outbox");
    db.pool.close().await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn redeploys_keep_subscriptions_while_the_key_exists_and_stop_them_with_the_reason() {
    let suite = Suite::start().await;
    let (alice, bob, bob_id) = org_with_bob(&suite).await;
    let morning = |h| {
        automation(
            "morning",
            "Morning report",
            daily(h, 0),
            "Europe/Berlin",
            &[],
        )
    };
    let evening = automation(
        "evening",
        "Evening wrap-up",
        daily(18, 0),
        "Europe/Berlin",
        &[],
    );
    let agent = agent_with(
        &alice,
        "Reporter",
        Vec::new(),
        vec![morning(8), evening.clone()],
    )
    .await;
    let kept = subscribe(&bob, &agent.id, "morning", true, &[Web])
        .await
        .expect("morning");
    let removed = subscribe(&bob, &agent.id, "evening", true, &[Web, Email, Push])
        .await
        .expect("evening");

    // Version 2 moves the morning report to 07:00 and drops the evening one.
    redeploy_with(&alice, &agent.id, vec![morning(7)]).await;
    let rows = eventually("the evening subscription stopping", || async {
        let rows = mine(&bob, &[]).await;
        rows.iter()
            .any(|r| r.status() == pb::SubscriptionStatus::Inactive)
            .then_some(rows)
    })
    .await;
    let morning_row = rows.iter().find(|r| r.id == kept.id).expect("kept");
    assert_eq!(morning_row.status(), pb::SubscriptionStatus::Active);
    assert!(morning_row.enabled);
    assert_eq!(morning_row.channels, [Web as i32]);
    assert_eq!(
        morning_row.schedule_description,
        "Daily at 07:00 Europe/Berlin"
    );
    let evening_row = rows.iter().find(|r| r.id == removed.id).expect("removed");
    assert_eq!(
        evening_row.status_reason(),
        pb::SubscriptionStatusReason::AutomationRemoved
    );
    assert_eq!(
        evening_row.status_message,
        "automation removed in version 2"
    );
    assert!(evening_row.next_run_time.is_none());
    assert_eq!(
        mine(&bob, &[pb::SubscriptionStatus::Inactive]).await.len(),
        1
    );
    assert_status(
        update(&bob, &agent.id, "evening", Some(true), None).await,
        Code::FailedPrecondition,
        "automation removed in version 2",
    );
    // ListAutomations shows what version 2 defines.
    let listed = list(&bob, &agent.id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].agent_version_number, 2);

    // The stop reached Bob's inbox, and his email and push went out.
    let inbox = automations(&bob)
        .list_inbox(pb::ListInboxRequest::default())
        .await
        .expect("inbox")
        .into_inner();
    assert_eq!(inbox.unread_count, 1);
    assert_eq!(inbox.items.len(), 1);
    let item = &inbox.items[0];
    assert_eq!(item.kind(), pb::InboxItemKind::SubscriptionStopped);
    assert_eq!(item.title, "Evening wrap-up stopped");
    assert!(item.body.contains("automation removed in version 2"));
    assert_eq!(item.automation_key, "evening");
    assert!(item.read_time.is_none());
    let delivered = eventually("email and push delivered", || async {
        let rows = outbox(&suite, &bob_id).await;
        (rows.len() == 2 && rows.iter().all(|r| r.2 == "delivered")).then_some(rows)
    })
    .await;
    assert_eq!(
        delivered,
        [
            (
                "email".into(),
                "bob@example.com".into(),
                "delivered".into(),
                1
            ),
            ("push".into(), bob_id.clone(), "delivered".into(), 1),
        ]
    );
    // Nobody else was told anything.
    assert_eq!(
        automations(&alice)
            .get_inbox_unread_count(pb::GetInboxUnreadCountRequest {})
            .await
            .expect("count")
            .into_inner()
            .unread_count,
        0
    );

    // Marking read: named items, or all; never someone else's.
    let mark = |ids: Vec<String>, all: bool| {
        let mut client = automations(&bob);
        let request = pb::MarkInboxReadRequest { item_ids: ids, all };
        async move { client.mark_inbox_read(request).await }
    };
    assert_status(
        mark(Vec::new(), false).await,
        Code::InvalidArgument,
        "item_ids",
    );
    assert_status(
        mark(vec![item.id.clone()], true).await,
        Code::InvalidArgument,
        "not both",
    );
    assert_status(
        automations(&alice)
            .mark_inbox_read(pb::MarkInboxReadRequest {
                item_ids: vec![item.id.clone()],
                all: false,
            })
            .await,
        Code::NotFound,
        "nothing was marked",
    );
    let marked = mark(vec![item.id.clone()], false)
        .await
        .expect("mark")
        .into_inner();
    assert_eq!((marked.marked_count, marked.unread_count), (1, 0));
    let first_read = automations(&bob)
        .list_inbox(pb::ListInboxRequest::default())
        .await
        .expect("inbox")
        .into_inner()
        .items[0]
        .read_time;
    assert!(first_read.is_some());
    suite.clock.advance(Duration::from_secs(60));
    let again = mark(vec![item.id.clone()], false)
        .await
        .expect("mark again")
        .into_inner();
    assert_eq!(again.marked_count, 0);
    let after = automations(&bob)
        .list_inbox(pb::ListInboxRequest {
            unread_only: false,
            ..Default::default()
        })
        .await
        .expect("inbox")
        .into_inner();
    assert_eq!(
        after.items[0].read_time, first_read,
        "keeps the first read time"
    );
    assert!(
        automations(&bob)
            .list_inbox(pb::ListInboxRequest {
                unread_only: true,
                ..Default::default()
            })
            .await
            .expect("unread")
            .into_inner()
            .items
            .is_empty()
    );

    // Version 3 restores the key: the subscription is back, DISABLED.
    redeploy_with(&alice, &agent.id, vec![morning(7), evening]).await;
    let restored = eventually("the evening subscription returning", || async {
        mine(&bob, &[pb::SubscriptionStatus::Disabled])
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(restored.id, removed.id);
    assert!(!restored.enabled);
    let enabled = update(&bob, &agent.id, "evening", Some(true), None)
        .await
        .expect("enable again");
    assert_eq!(enabled.status(), pb::SubscriptionStatus::Active);

    // Deleting the agent stops every subscription, and says so.
    alice
        .registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("delete");
    let stopped = eventually("subscriptions of the deleted agent stopping", || async {
        let rows = mine(&bob, &[pb::SubscriptionStatus::Inactive]).await;
        (rows.len() == 2
            && rows
                .iter()
                .all(|r| r.status_reason() == pb::SubscriptionStatusReason::AgentDeleted))
        .then_some(rows)
    })
    .await;
    assert_eq!(stopped[0].status_message, "agent deleted");
    assert_eq!(stopped[0].agent_name, "Reporter", "kept after delete");
    suite.stop().await;
}

#[tokio::test]
async fn a_workspace_cap_limits_enabled_automations_and_names_who_may_raise_it() {
    let suite = Suite::start().await;
    let (alice, bob, _) = org_with_bob(&suite).await;
    let agent = agent_with(
        &alice,
        "Reporter",
        Vec::new(),
        vec![
            automation("a", "A", hourly(5), "UTC", &[]),
            automation("b", "B", hourly(10), "UTC", &[]),
        ],
    )
    .await;
    let workspace_id = alice
        .tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("workspaces")
        .into_inner()
        .workspaces[0]
        .workspace
        .as_ref()
        .expect("workspace")
        .id
        .clone();
    let set = |user: &UserClient, cap: Option<i32>| {
        let mut client = automations(user);
        let request = pb::SetWorkspaceAutomationCapRequest {
            workspace_id: workspace_id.clone(),
            max_active_automations: cap,
        };
        async move { client.set_workspace_automation_cap(request).await }
    };
    let get = |user: &UserClient| {
        let mut client = automations(user);
        let request = pb::GetWorkspaceAutomationCapRequest {
            workspace_id: workspace_id.clone(),
        };
        async move { client.get_workspace_automation_cap(request).await }
    };
    assert_status(
        set(&bob, Some(1)).await,
        Code::PermissionDenied,
        "owner or admin",
    );
    assert_status(set(&alice, Some(-1)).await, Code::InvalidArgument, "0 to");
    let cap = set(&alice, Some(1))
        .await
        .expect("set")
        .into_inner()
        .cap
        .expect("cap");
    assert_eq!(cap.max_active_automations, Some(1));
    assert_eq!(cap.active_count, 0);
    assert_eq!(cap.update_user_id, alice.user_id().await);
    let seen = get(&bob)
        .await
        .expect("member reads")
        .into_inner()
        .cap
        .expect("cap");
    assert_eq!(seen.max_active_automations, Some(1));
    assert_status(
        automations(&bob)
            .get_workspace_automation_cap(pb::GetWorkspaceAutomationCapRequest {
                workspace_id: uuid::Uuid::now_v7().to_string(),
            })
            .await,
        Code::NotFound,
        "not found",
    );

    subscribe(&bob, &agent.id, "a", true, &[])
        .await
        .expect("first fits");
    let status = assert_status(
        subscribe(&bob, &agent.id, "b", true, &[]).await,
        Code::ResourceExhausted,
        "workspace cap of 1 active automations reached",
    );
    assert!(status.message().contains("workspace owner or admin"));
    let quota = status.get_details_quota_failure().expect("quota failure");
    assert_eq!(
        quota.violations[0].subject,
        format!("workspace/{workspace_id}")
    );
    // Disabled subscriptions do not count; enabling one does.
    subscribe(&bob, &agent.id, "b", false, &[])
        .await
        .expect("disabled fits");
    assert_status(
        update(&bob, &agent.id, "b", Some(true), None).await,
        Code::ResourceExhausted,
        "cap of 1",
    );
    let listed = list(&bob, &agent.id).await;
    assert!(!listed[1].can_enable);
    assert!(listed[1].cannot_enable_reason.contains("cap of 1"));
    // A paused subscription still counts.
    automations(&bob)
        .pause_subscription(pb::PauseSubscriptionRequest {
            agent_id: agent.id.clone(),
            automation_key: "a".into(),
            paused_until: Some(timestamp(suite.clock.now_micros() + DAY_MICROS)),
        })
        .await
        .expect("pause");
    assert_status(
        update(&bob, &agent.id, "b", Some(true), None).await,
        Code::ResourceExhausted,
        "cap of 1",
    );
    update(&bob, &agent.id, "a", Some(false), None)
        .await
        .expect("disable a");
    update(&bob, &agent.id, "b", Some(true), None)
        .await
        .expect("b fits now");
    // Lowering the cap stops nothing; removing it frees everything.
    set(&alice, Some(0)).await.expect("lower");
    assert_eq!(mine(&bob, &[pb::SubscriptionStatus::Active]).await.len(), 1);
    let removed = set(&alice, None)
        .await
        .expect("remove")
        .into_inner()
        .cap
        .expect("cap");
    assert_eq!(removed.max_active_automations, None);
    update(&bob, &agent.id, "a", Some(true), None)
        .await
        .expect("no cap");
    let counted = get(&alice)
        .await
        .expect("get")
        .into_inner()
        .cap
        .expect("cap");
    assert_eq!(counted.active_count, 2);
    suite.stop().await;
}

#[tokio::test]
async fn the_unshare_dry_run_names_the_automations_that_would_stop() {
    let suite = Suite::start().await;
    let (alice, bob, bob_id) = org_with_bob(&suite).await;
    let agent = agent_with(
        &alice,
        "Daily digest",
        Vec::new(),
        vec![automation(
            "morning",
            "Morning digest",
            daily(8, 0),
            "Europe/Berlin",
            &[],
        )],
    )
    .await;
    subscribe(&bob, &agent.id, "morning", true, &[])
        .await
        .expect("bob enables it");
    // The owner's own subscription survives an unshare, so it is not named.
    subscribe(&alice, &agent.id, "morning", true, &[])
        .await
        .expect("alice enables it");
    let preview = alice
        .sharing()
        .preview_unshare_agent(sharing::PreviewUnshareAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("preview")
        .into_inner();
    assert_eq!(preview.automations_disabled_total, 1);
    let stopping = &preview.automations_disabled[0];
    assert_eq!(
        (stopping.user_id.as_str(), stopping.automation_key.as_str()),
        (bob_id.as_str(), "morning")
    );
    // A dry run changes nothing.
    let still = mine(&bob, &[]).await;
    assert_eq!(still.len(), 1);
    assert!(still[0].enabled);
    suite.stop().await;
}
