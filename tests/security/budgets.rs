//! Limits on what a shared agent may spend, and the org's policy
//! (DESIGN.md, Grants): a grant's runs per minute, per day, at once and per
//! anonymous session, with safe defaults for DELEGATE; the org's runs per
//! minute per user and API key; each refusal RESOURCE_EXHAUSTED with
//! QuotaFailure and RetryInfo (HTTP 429 with Retry-After) and counted for the
//! owner; limits exact across replicas; and policies that take effect on the
//! very next call.

use std::time::Duration;

use agentshare_e2e::runtime::RecordingRuntime;
use agentshare_e2e::{Suite, UserClient, tool};
use agentshare_kit::identity::ServiceName;
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use futures::StreamExt;
use sharing::GrantKind;
use tonic::Code;
use tonic_types::StatusExt;

use crate::assert_status;

const MONTH: i64 = 30 * 86_400;

/// Acme: Alice owns the org and its agent (stepped up), Bob is a member,
/// Carol belongs to no org.
struct Acme {
    suite: Suite,
    alice: UserClient,
    bob: UserClient,
    carol: UserClient,
    bob_id: String,
    agent: registry::Agent,
}

async fn acme_on(suite: Suite) -> Acme {
    let user = |name: &str, step_up: bool| {
        let token = suite.token_with(name, step_up, MONTH);
        let suite = &suite;
        let name = name.to_string();
        async move { suite.user(&name).await.with_token(&token) }
    };
    let alice = user("alice", true).await;
    let bob = user("bob", false).await;
    let carol = user("carol", false).await;
    alice.new_org("Acme").await;
    let bob_id = bob.user_id().await;
    alice.add_member(&bob_id, sharing::OrgRole::Member).await;
    let agent = alice.shared_agent("Support").await;
    Acme {
        suite,
        alice,
        bob,
        carol,
        bob_id,
        agent,
    }
}

async fn acme() -> Acme {
    acme_on(Suite::start().await).await
}

fn limits(minute: i32, day: i32, concurrent: i32, session: i32) -> sharing::GrantLimits {
    sharing::GrantLimits {
        runs_per_minute: Some(minute),
        runs_per_day: Some(day),
        concurrent_runs: Some(concurrent),
        session_runs_per_minute: Some(session),
    }
}

/// The grant as its owner lists it now.
async fn listed(owner: &UserClient, agent_id: &str, grant_id: &str) -> sharing::Grant {
    owner
        .sharing()
        .list_grants(sharing::ListGrantsRequest {
            agent_id: agent_id.into(),
            ..Default::default()
        })
        .await
        .expect("owner lists grants")
        .into_inner()
        .grants
        .into_iter()
        .find(|g| g.id == grant_id)
        .unwrap_or_else(|| panic!("grant {grant_id} is listed"))
}

/// Asserts a throttled run: RESOURCE_EXHAUSTED, a QuotaFailure on
/// `subject`, and a RetryInfo within `within`.
#[track_caller]
fn assert_throttled<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    subject: &str,
    within: Duration,
) -> Duration {
    let status = assert_status(result, Code::ResourceExhausted, "retry in");
    let quota = status
        .get_details_quota_failure()
        .expect("a QuotaFailure names the limit");
    let subjects: Vec<&str> = quota
        .violations
        .iter()
        .map(|v| v.subject.as_str())
        .collect();
    assert_eq!(subjects, [subject], "{}", status.message());
    let retry = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo says when to retry");
    assert!(
        retry > Duration::ZERO && retry <= within,
        "retry in {retry:?}"
    );
    retry
}

async fn set_policy(owner: &UserClient, policy: sharing::OrgPolicy) -> sharing::Org {
    owner
        .tenancy()
        .update_org(sharing::UpdateOrgRequest {
            policy: Some(policy),
            ..Default::default()
        })
        .await
        .expect("the owner sets the policy")
        .into_inner()
        .org
        .expect("org")
}

#[tokio::test]
async fn a_delegate_grant_gets_safe_defaults_and_only_its_owner_changes_them() {
    let w = acme().await;
    let (delegate, _) = w.alice.grant(&w.agent.id, GrantKind::Delegate).await;
    let (invoke, _) = w.alice.grant(&w.agent.id, GrantKind::Invoke).await;
    let shown = listed(&w.alice, &w.agent.id, &delegate).await;
    assert_eq!(shown.limits, Some(limits(30, 1_000, 4, 10)));
    let shown = listed(&w.alice, &w.agent.id, &invoke).await;
    assert_eq!(shown.limits, Some(limits(0, 0, 0, 0)), "INVOKE holders pay");

    let update = |grant_id: &str, limits: sharing::GrantLimits| sharing::UpdateGrantRequest {
        grant_id: grant_id.into(),
        limits: Some(limits),
    };
    let lifted = sharing::GrantLimits {
        runs_per_minute: Some(5),
        concurrent_runs: Some(0),
        ..Default::default()
    };
    let updated = w
        .alice
        .sharing()
        .update_grant(update(&delegate, lifted))
        .await
        .expect("the owner changes limits")
        .into_inner()
        .grant
        .expect("grant");
    assert_eq!(updated.limits, Some(limits(5, 1_000, 0, 10)));

    let bob = w
        .bob
        .sharing()
        .update_grant(update(&delegate, lifted))
        .await;
    assert_status(bob, Code::PermissionDenied, "owner");
    let bad = sharing::GrantLimits {
        runs_per_minute: Some(-1),
        runs_per_day: Some(2_000_000),
        ..Default::default()
    };
    let status = assert_status(
        w.alice.sharing().update_grant(update(&delegate, bad)).await,
        Code::InvalidArgument,
        "limits.runs_per_minute",
    );
    assert!(
        status.message().contains("limits.runs_per_day"),
        "{status:?}"
    );
    let missing = sharing::UpdateGrantRequest {
        grant_id: delegate.clone(),
        limits: None,
    };
    assert_status(
        w.alice.sharing().update_grant(missing).await,
        Code::InvalidArgument,
        "limits",
    );
    let unchanged = listed(&w.alice, &w.agent.id, &delegate).await;
    assert_eq!(unchanged.limits, Some(limits(5, 1_000, 0, 10)));
    w.suite.stop().await;
}

#[tokio::test]
async fn a_grant_over_its_minute_is_refused_with_when_to_retry_and_its_owner_sees_it() {
    let w = acme().await;
    let (grant_id, token) = w
        .alice
        .grant_limited(&w.agent.id, GrantKind::Delegate, Some(limits(2, 0, 0, 0)))
        .await;
    let visitor = w.suite.anonymous().await.with_grant(&token);
    visitor.run(&w.agent.id, "one").await.expect("first run");
    visitor.run(&w.agent.id, "two").await.expect("second run");
    let subject = format!("grant/{grant_id}/runs_per_minute");
    assert_throttled(
        visitor.run(&w.agent.id, "three").await,
        &subject,
        Duration::from_secs(60),
    );

    // Over HTTP/JSON: 429, the same details, and Retry-After.
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/agents/{}:invoke",
            w.suite.gateway_addr(),
            w.agent.id
        ))
        .header("x-agentshare-grant-token", &token)
        .header("content-type", "application/json")
        .body(r#"{"input":"four"}"#)
        .send()
        .await
        .expect("the gateway answers HTTP");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = response.bytes().await.expect("body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON status");
    assert_eq!(body["code"], 8, "{body}");
    assert!(body.to_string().contains(&subject), "{body}");

    let shown = listed(&w.alice, &w.agent.id, &grant_id).await;
    let usage = shown.usage.expect("usage");
    assert_eq!((usage.runs, usage.refusals), (2, 2));
    assert!(usage.last_refusal_time.is_some());
    assert!(shown.last_use_time.is_some());

    w.suite.clock.advance(Duration::from_secs(61));
    visitor
        .run(&w.agent.id, "next minute")
        .await
        .expect("a new minute has room");
    w.suite.stop().await;
}

#[tokio::test]
async fn the_day_limit_holds_until_the_next_utc_day() {
    let w = acme().await;
    let (grant_id, token) = w
        .alice
        .grant_limited(&w.agent.id, GrantKind::Delegate, Some(limits(0, 2, 0, 0)))
        .await;
    let visitor = w.suite.anonymous().await.with_grant(&token);
    for input in ["one", "two"] {
        visitor
            .run(&w.agent.id, input)
            .await
            .expect("within the day");
    }
    let subject = format!("grant/{grant_id}/runs_per_day");
    assert_throttled(
        visitor.run(&w.agent.id, "three").await,
        &subject,
        Duration::from_secs(86_400),
    );
    w.suite.clock.advance(Duration::from_secs(61));
    assert_throttled(
        visitor.run(&w.agent.id, "a minute later").await,
        &subject,
        Duration::from_secs(86_400),
    );
    w.suite.clock.advance(Duration::from_secs(86_400));
    visitor
        .run(&w.agent.id, "tomorrow")
        .await
        .expect("a new day has room");
    w.suite.stop().await;
}

#[tokio::test]
async fn concurrent_runs_are_capped_and_a_slot_frees_when_its_run_ends() {
    let runtime = RecordingRuntime::start().await;
    let w = acme_on(Suite::builder().runtime(&runtime).start().await).await;
    let (grant_id, token) = w
        .alice
        .grant_limited(&w.agent.id, GrantKind::Delegate, Some(limits(0, 0, 1, 0)))
        .await;
    let visitor = w.suite.anonymous().await.with_grant(&token);
    let mut held = visitor
        .invoke()
        .invoke_stream(gateway::InvokeStreamRequest {
            agent_id: w.agent.id.clone(),
            input: "please /hold".into(),
            ..Default::default()
        })
        .await
        .expect("the first run starts")
        .into_inner();
    // The run is admitted and in progress once it has started.
    let first = held.next().await.expect("an event").expect("started");
    assert!(matches!(
        first.event,
        Some(gateway::invoke_stream_response::Event::Started(_))
    ));
    let second = w.suite.anonymous().await.with_grant(&token);
    assert_throttled(
        second.run(&w.agent.id, "meanwhile").await,
        &format!("grant/{grant_id}/concurrent_runs"),
        Duration::from_secs(5),
    );
    runtime.release();
    while let Some(event) = held.next().await {
        event.expect("the held run completes");
    }
    second
        .run(&w.agent.id, "after")
        .await
        .expect("the slot is free once the first run ended");
    w.suite.stop().await;
}

#[tokio::test]
async fn each_anonymous_session_has_its_own_limit() {
    let w = acme().await;
    let (_, token) = w
        .alice
        .grant_limited(&w.agent.id, GrantKind::Delegate, Some(limits(0, 0, 0, 1)))
        .await;
    let continue_in = |client: &UserClient, started: &gateway::InvokeResponse, input: &str| {
        let mut invoke = client.invoke();
        let request = gateway::InvokeRequest {
            agent_id: w.agent.id.clone(),
            input: input.into(),
            session_id: Some(started.session_id.clone()),
            session_secret: Some(started.session_secret.clone()),
            ..Default::default()
        };
        async move {
            invoke
                .invoke(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let one = w.suite.anonymous().await.with_grant(&token);
    let two = w.suite.anonymous().await.with_grant(&token);
    let first = one.run(&w.agent.id, "hello").await.expect("a new session");
    continue_in(&one, &first, "again")
        .await
        .expect("one run in the session this minute");
    assert_throttled(
        continue_in(&one, &first, "and again").await,
        &format!("session/{}/runs_per_minute", first.session_id),
        Duration::from_secs(60),
    );
    let other = two.run(&w.agent.id, "hi").await.expect("another visitor");
    continue_in(&two, &other, "more")
        .await
        .expect("another visitor's session has its own count");
    w.suite.stop().await;
}

#[tokio::test]
async fn the_orgs_limit_counts_each_user_and_is_the_owners_to_set_with_step_up() {
    let w = acme().await;
    let policy = sharing::OrgPolicy {
        runs_per_minute_per_principal: 1,
        ..Default::default()
    };
    let request = sharing::UpdateOrgRequest {
        policy: Some(policy),
        ..Default::default()
    };
    assert_status(
        w.bob.tenancy().update_org(request.clone()).await,
        Code::PermissionDenied,
        "",
    );
    let not_stepped_up = w
        .alice
        .with_token(&w.suite.token_with("alice", false, MONTH));
    assert_status(
        not_stepped_up.tenancy().update_org(request).await,
        Code::PermissionDenied,
        "step-up required",
    );
    let org = set_policy(&w.alice, policy).await;
    assert_eq!(org.policy, Some(policy));
    let audit = w
        .alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert!(
        audit
            .iter()
            .any(|e| e.action == "org.updated"
                && e.after_json.contains("runs_per_minute_per_principal")),
        "the policy change is audited: {audit:?}"
    );

    w.bob
        .run(&w.agent.id, "one")
        .await
        .expect("Bob's first run");
    assert_throttled(
        w.bob.run(&w.agent.id, "two").await,
        &format!("principal/{}/runs_per_minute", w.bob_id),
        Duration::from_secs(60),
    );
    w.alice
        .run(&w.agent.id, "mine")
        .await
        .expect("Alice has a count of her own");
    set_policy(&w.alice, sharing::OrgPolicy::default()).await;
    w.bob
        .run(&w.agent.id, "lifted")
        .await
        .expect("no limit on the very next call");
    w.suite.stop().await;
}

#[tokio::test]
async fn forbidding_delegate_grants_stops_existing_ones_on_the_very_next_call() {
    let w = acme().await;
    let (_, delegate) = w.alice.grant(&w.agent.id, GrantKind::Delegate).await;
    let (_, invoke) = w.alice.grant(&w.agent.id, GrantKind::Invoke).await;
    let visitor = w.suite.anonymous().await.with_grant(&delegate);
    visitor.run(&w.agent.id, "before").await.expect("works");
    set_policy(
        &w.alice,
        sharing::OrgPolicy {
            forbid_delegate_grants: true,
            ..Default::default()
        },
    )
    .await;
    assert_status(
        visitor.run(&w.agent.id, "after").await,
        Code::PermissionDenied,
        "org policy forbid_delegate_grants",
    );
    let created = w
        .alice
        .sharing()
        .create_grant(sharing::CreateGrantRequest {
            agent_id: w.agent.id.clone(),
            kind: GrantKind::Delegate as i32,
            label: "new widget".into(),
            ..Default::default()
        })
        .await;
    assert_status(
        created,
        Code::PermissionDenied,
        "org policy forbid_delegate_grants",
    );
    w.carol
        .with_grant(&invoke)
        .run(&w.agent.id, "invoke")
        .await
        .expect("INVOKE grants still work");
    set_policy(&w.alice, sharing::OrgPolicy::default()).await;
    visitor
        .run(&w.agent.id, "allowed again")
        .await
        .expect("works again once allowed");
    w.suite.stop().await;
}

#[tokio::test]
async fn forbidding_external_grants_refuses_outsiders_and_anonymous_visitors() {
    let w = acme().await;
    let (_, invoke) = w.alice.grant(&w.agent.id, GrantKind::Invoke).await;
    let (_, delegate) = w.alice.grant(&w.agent.id, GrantKind::Delegate).await;
    let outsider = w.carol.with_grant(&invoke);
    outsider.run(&w.agent.id, "before").await.expect("works");
    set_policy(
        &w.alice,
        sharing::OrgPolicy {
            forbid_external_grants: true,
            ..Default::default()
        },
    )
    .await;
    assert_status(
        outsider.run(&w.agent.id, "after").await,
        Code::PermissionDenied,
        "org policy forbid_external_grants",
    );
    assert_status(
        w.suite
            .anonymous()
            .await
            .with_grant(&delegate)
            .run(&w.agent.id, "visitor")
            .await,
        Code::PermissionDenied,
        "org policy forbid_external_grants",
    );
    w.bob
        .with_grant(&invoke)
        .run(&w.agent.id, "member")
        .await
        .expect("a member's grant still works");
    w.suite.stop().await;
}

#[tokio::test]
async fn forbidding_shared_integrations_refuses_everyone_but_the_owner() {
    let w = acme().await;
    let key = w.alice.api_key_connection("drive", "kb-alice").await;
    let agent = w
        .alice
        .shared_agent_with(
            "Knowledge",
            "Answer from the knowledge base.",
            vec![tool(
                "knowledge",
                "drive",
                registry::IntegrationScope::Shared,
                &key,
            )],
        )
        .await;
    w.bob.run(&agent.id, "before").await.expect("works");
    set_policy(
        &w.alice,
        sharing::OrgPolicy {
            forbid_shared_integrations: true,
            ..Default::default()
        },
    )
    .await;
    assert_status(
        w.bob.run(&agent.id, "after").await,
        Code::PermissionDenied,
        "org policy forbid_shared_integrations",
    );
    w.bob
        .run(&w.agent.id, "no shared integration")
        .await
        .expect("an agent without SHARED integrations still runs");
    w.alice
        .run(&agent.id, "owner")
        .await
        .expect("the owner runs with her own credentials");
    w.suite.stop().await;
}

/// Runs `count` at once, alternating between `clients`; how many were
/// admitted, after checking every refusal is RESOURCE_EXHAUSTED.
async fn admitted_of<F, Fut>(clients: &[UserClient], count: usize, run: F) -> usize
where
    F: Fn(UserClient, usize) -> Fut,
    Fut: std::future::Future<Output = Result<gateway::InvokeResponse, tonic::Status>>,
{
    let runs = (0..count).map(|i| run(clients[i % clients.len()].clone(), i));
    let answers = futures::future::join_all(runs).await;
    let refused: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        refused.iter().all(|s| s.code() == Code::ResourceExhausted),
        "{refused:?}"
    );
    count - refused.len()
}

/// Each caller's client on each gateway replica.
async fn on_every_gateway(suite: &Suite, client: &UserClient) -> Vec<UserClient> {
    let mut clients = Vec::new();
    for addr in suite.addrs(ServiceName::Gateway) {
        clients.push(client.on_channel(agentshare_e2e::connect(addr).await));
    }
    assert_eq!(clients.len(), 2);
    clients
}

#[tokio::test]
async fn every_limit_holds_exactly_across_replicas() {
    let runtime = RecordingRuntime::start().await;
    let suite = Suite::builder()
        .runtime(&runtime)
        .replicas(ServiceName::Gateway, 2)
        .replicas(ServiceName::Sharing, 2)
        .start()
        .await;
    let w = acme_on(suite).await;
    let grant = |limits: sharing::GrantLimits| {
        let w = &w;
        async move {
            w.alice
                .grant_limited(&w.agent.id, GrantKind::Delegate, Some(limits))
                .await
        }
    };
    let anonymous = w.suite.anonymous().await;
    let run = |input: &'static str| {
        let agent_id = w.agent.id.clone();
        move |client: UserClient, i: usize| {
            let agent_id = agent_id.clone();
            async move { client.run(&agent_id, &format!("{input} {i}")).await }
        }
    };

    // Per minute and per day: exactly the limit of ten runs at once.
    let (minute_id, minute) = grant(limits(4, 0, 0, 0)).await;
    let visitors = on_every_gateway(&w.suite, &anonymous.with_grant(&minute)).await;
    assert_eq!(admitted_of(&visitors, 10, run("minute")).await, 4);
    let (_, day) = grant(limits(0, 3, 0, 0)).await;
    let visitors = on_every_gateway(&w.suite, &anonymous.with_grant(&day)).await;
    assert_eq!(admitted_of(&visitors, 10, run("day")).await, 3);
    let usage = listed(&w.alice, &w.agent.id, &minute_id)
        .await
        .usage
        .expect("usage");
    assert_eq!((usage.runs, usage.refusals), (4, 6));

    // Per anonymous session: its continuations, wherever they land.
    let (_, session) = grant(limits(0, 0, 0, 2)).await;
    let visitors = on_every_gateway(&w.suite, &anonymous.with_grant(&session)).await;
    let started = visitors[0]
        .run(&w.agent.id, "hello")
        .await
        .expect("session");
    let admitted = admitted_of(&visitors, 6, |client: UserClient, i: usize| {
        let request = gateway::InvokeRequest {
            agent_id: w.agent.id.clone(),
            input: format!("again {i}"),
            session_id: Some(started.session_id.clone()),
            session_secret: Some(started.session_secret.clone()),
            ..Default::default()
        };
        async move {
            client
                .invoke()
                .invoke(request)
                .await
                .map(tonic::Response::into_inner)
        }
    })
    .await;
    assert_eq!(admitted, 2);

    // Per user across the org.
    set_policy(
        &w.alice,
        sharing::OrgPolicy {
            runs_per_minute_per_principal: 3,
            ..Default::default()
        },
    )
    .await;
    let bobs = on_every_gateway(&w.suite, &w.bob).await;
    assert_eq!(admitted_of(&bobs, 8, run("bob")).await, 3);
    set_policy(&w.alice, sharing::OrgPolicy::default()).await;

    // At once: two runs held, one on each gateway, fill the slots.
    let (grant_id, concurrent) = grant(limits(0, 0, 2, 0)).await;
    let visitors = on_every_gateway(&w.suite, &anonymous.with_grant(&concurrent)).await;
    let mut held = Vec::new();
    for visitor in &visitors {
        let mut stream = visitor
            .invoke()
            .invoke_stream(gateway::InvokeStreamRequest {
                agent_id: w.agent.id.clone(),
                input: "wait /hold".into(),
                ..Default::default()
            })
            .await
            .expect("a held run starts")
            .into_inner();
        stream.next().await.expect("started").expect("started");
        held.push(stream);
    }
    for visitor in &visitors {
        assert_throttled(
            visitor.run(&w.agent.id, "a third").await,
            &format!("grant/{grant_id}/concurrent_runs"),
            Duration::from_secs(5),
        );
    }
    runtime.release();
    runtime.release();
    for mut stream in held {
        while let Some(event) = stream.next().await {
            event.expect("the held run completes");
        }
    }
    visitors[1]
        .run(&w.agent.id, "slots free")
        .await
        .expect("both slots are free again");
    w.suite.stop().await;
}

#[tokio::test]
async fn windows_that_ended_days_ago_are_swept() {
    let w = acme().await;
    let (_, token) = w
        .alice
        .grant_limited(&w.agent.id, GrantKind::Delegate, Some(limits(5, 0, 0, 5)))
        .await;
    let visitor = w.suite.anonymous().await.with_grant(&token);
    let started = visitor.run(&w.agent.id, "hello").await.expect("a session");
    let again = gateway::InvokeRequest {
        agent_id: w.agent.id.clone(),
        input: "again".into(),
        session_id: Some(started.session_id.clone()),
        session_secret: Some(started.session_secret.clone()),
        ..Default::default()
    };
    visitor
        .invoke()
        .invoke(again)
        .await
        .expect("the session's counted run");
    let db = w.suite.db(ServiceName::Sharing).await;
    let session = format!("session/{}/runs_per_minute", started.session_id);
    let windows_of = |counter: String| {
        let db = &db;
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM run_windows WHERE counter = $1")
                .bind(counter)
                .fetch_one(&db.pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        windows_of(session.clone()).await,
        1,
        "the session is counted"
    );

    // The visitor never comes back; three days on, another run begins a
    // new window, which sweeps the session's.
    w.suite.clock.advance(Duration::from_secs(3 * 86_400));
    let next = w.suite.anonymous().await.with_grant(&token);
    next.run(&w.agent.id, "days later").await.expect("runs");
    assert_eq!(windows_of(session).await, 0, "the old window is swept");
    w.suite.stop().await;
}
