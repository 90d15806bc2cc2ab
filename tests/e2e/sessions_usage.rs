//! Sessions, messages and usage records: written as the gateway
//! writes them, through StoreInternal with its service identity, and read
//! through the public gateway as real users, grant holders and anonymous
//! visitors. Only the session's owner reads it; only the billed account
//! and the agent's owner read a record.

use std::time::Duration;

use agentshare_e2e::{Authed, Suite, UserClient, eventually_within};
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::{ServiceName, random_token};
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use store::sessions_service_client::SessionsServiceClient;
use store::store_internal_service_client::StoreInternalServiceClient;
use store::usage_service_client::UsageServiceClient;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::assert_status;

type Internal = StoreInternalServiceClient<ServiceChannel>;

/// An org with its owner Alice (who builds two agents), Bob a member, Dave
/// an admin, and Carol, who belongs to another org.
struct World {
    suite: Suite,
    alice: UserClient,
    bob: UserClient,
    carol: UserClient,
    dave: UserClient,
    alice_id: String,
    bob_id: String,
    carol_id: String,
    dave_id: String,
    org_id: String,
    agent: registry::Agent,
    other_agent: registry::Agent,
    gateway: Internal,
}

async fn world() -> World {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    let dave = suite.user("dave").await;
    let org = alice.new_org("Acme").await;
    carol.new_org("Elsewhere").await;
    let (alice_id, bob_id, carol_id, dave_id) = (
        alice.user_id().await,
        bob.user_id().await,
        carol.user_id().await,
        dave.user_id().await,
    );
    let owner = alice.with_token(&suite.token_with("alice", true, 7200));
    owner.add_member(&bob_id, sharing::OrgRole::Member).await;
    owner.add_member(&dave_id, sharing::OrgRole::Admin).await;
    let agent = alice.shared_agent("Helper").await;
    let other_agent = alice.deployed_agent("Scribe").await;
    let gateway = StoreInternalServiceClient::new(
        suite
            .service_channel(ServiceName::Gateway, ServiceName::Store, 0)
            .await,
    );
    World {
        suite,
        alice,
        bob,
        carol,
        dave,
        alice_id,
        bob_id,
        carol_id,
        dave_id,
        org_id: org.id,
        agent,
        other_agent,
        gateway,
    }
}

fn sessions(user: &UserClient) -> SessionsServiceClient<Authed> {
    SessionsServiceClient::new(user.channel())
}

fn usage(user: &UserClient) -> UsageServiceClient<Authed> {
    UsageServiceClient::new(user.channel())
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl World {
    /// Who a session of `user` with `agent` belongs to, run as a member.
    fn spec(&self, agent: &registry::Agent, user: &str) -> store::SessionSpec {
        store::SessionSpec {
            org_id: self.org_id.clone(),
            agent_id: agent.id.clone(),
            agent_name: agent
                .draft
                .as_ref()
                .map(|d| d.name.clone())
                .unwrap_or_default(),
            user_id: user.into(),
            ..Default::default()
        }
    }

    /// The facts of a run of `agent` by `user`, billed to `billed`.
    fn run(&self, agent: &registry::Agent, user: &str, billed: &str) -> store::InvocationRecord {
        store::InvocationRecord {
            id: new_id(),
            org_id: self.org_id.clone(),
            agent_id: agent.id.clone(),
            agent_owner_user_id: self.alice_id.clone(),
            agent_version_number: 1,
            caller_kind: store::CallerKind::User as i32,
            user_id: user.into(),
            integrations: vec![store::IntegrationUse {
                integration_key: "crm".into(),
                provider: "salesforce".into(),
                connection_owner: store::ConnectionOwner::Builder as i32,
            }],
            executes_as_user_id: user.into(),
            billed_to_user_id: billed.into(),
            store_partition: format!("agent-{}/ws", agent.id),
            ..Default::default()
        }
    }

    async fn record(&self, run: store::InvocationRecord) -> store::InvocationRecord {
        self.gateway
            .clone()
            .record_invocation(store::RecordInvocationRequest {
                invocation: Some(run),
            })
            .await
            .expect("record")
            .into_inner()
            .invocation
            .expect("invocation")
    }

    async fn complete(
        &self,
        id: &str,
        status: store::InvocationStatus,
    ) -> Result<store::InvocationRecord, Status> {
        self.gateway
            .clone()
            .complete_invocation(complete(id, status))
            .await
            .map(|r| r.into_inner().invocation.expect("invocation"))
    }

    /// Appends one user message and one answer to a session of `spec`
    /// (a new one when `session_id` is empty).
    async fn turn(
        &self,
        request_id: &str,
        session_id: &str,
        spec: store::SessionSpec,
        secret: &str,
        text: &str,
    ) -> Result<store::AppendTurnResponse, Status> {
        self.gateway
            .clone()
            .append_turn(store::AppendTurnRequest {
                request_id: request_id.into(),
                session_id: session_id.into(),
                spec: Some(spec),
                session_secret: secret.into(),
                invocation_id: new_id(),
                agent_version_number: 1,
                messages: vec![
                    message(store::MessageRole::User, text),
                    message(store::MessageRole::Assistant, &format!("re: {text}")),
                ],
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// A new session of `user` with the agent, holding one turn.
    async fn session_of(&self, user: &str, text: &str) -> store::Session {
        self.turn(&new_id(), "", self.spec(&self.agent, user), "", text)
            .await
            .expect("turn")
            .session
            .expect("session")
    }
}

fn message(role: store::MessageRole, content: &str) -> store::NewMessage {
    store::NewMessage {
        role: role as i32,
        content: content.into(),
        tool_name: String::new(),
    }
}

fn complete(id: &str, status: store::InvocationStatus) -> store::CompleteInvocationRequest {
    store::CompleteInvocationRequest {
        invocation_id: id.into(),
        status: status as i32,
        ..Default::default()
    }
}

fn get(session_id: &str, secret: &str) -> store::GetSessionRequest {
    store::GetSessionRequest {
        session_id: session_id.into(),
        session_secret: secret.into(),
        ..Default::default()
    }
}

fn bad_field(status: &Status) -> String {
    status
        .get_error_details()
        .bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

async fn list_sessions(
    user: &UserClient,
    request: store::ListSessionsRequest,
) -> Result<Vec<store::Session>, Status> {
    let mut all = Vec::new();
    let mut request = request;
    loop {
        let page = sessions(user)
            .list_sessions(request.clone())
            .await?
            .into_inner();
        all.extend(page.sessions);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        request.page_token = page.next_page_token;
    }
}

async fn list_runs(
    user: &UserClient,
    request: store::ListInvocationsRequest,
) -> Result<Vec<store::InvocationRecord>, Status> {
    let mut all = Vec::new();
    let mut request = request;
    loop {
        let page = usage(user)
            .list_invocations(request.clone())
            .await?
            .into_inner();
        all.extend(page.invocations);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        request.page_token = page.next_page_token;
    }
}

fn billed_to_me() -> store::ListInvocationsRequest {
    store::ListInvocationsRequest {
        scope: store::UsageScope::BilledToCaller as i32,
        ..Default::default()
    }
}

fn of_agent(agent_id: &str) -> store::ListInvocationsRequest {
    store::ListInvocationsRequest {
        scope: store::UsageScope::Agent as i32,
        agent_id: agent_id.into(),
        ..Default::default()
    }
}

fn ids(records: &[store::InvocationRecord]) -> Vec<String> {
    let mut ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn recording_a_run_is_idempotent_and_completes_once() {
    let w = world().await;
    let run = w.run(&w.agent, &w.bob_id, &w.bob_id);
    let first = w.record(run.clone()).await;
    assert_eq!(first.status, store::InvocationStatus::Running as i32);
    assert_eq!(first.billed_to_user_id, w.bob_id);
    assert!(first.start_time.is_some() && first.end_time.is_none());
    assert_eq!(
        w.record(run.clone()).await,
        first,
        "a retry returns the record"
    );

    let mut other = run.clone();
    other.billed_to_user_id = w.alice_id.clone();
    assert_status(
        w.gateway
            .clone()
            .record_invocation(store::RecordInvocationRequest {
                invocation: Some(other),
            })
            .await,
        Code::AlreadyExists,
        "other facts",
    );

    let mut malformed = run.clone();
    malformed.id = "not-a-uuid".into();
    let status = assert_status(
        w.gateway
            .clone()
            .record_invocation(store::RecordInvocationRequest {
                invocation: Some(malformed),
            })
            .await,
        Code::InvalidArgument,
        "",
    );
    assert_eq!(bad_field(&status), "invocation.id");

    let status = assert_status(
        w.complete(&run.id, store::InvocationStatus::Running).await,
        Code::InvalidArgument,
        "",
    );
    assert_eq!(bad_field(&status), "status");
    assert_status(
        w.complete(&new_id(), store::InvocationStatus::Succeeded)
            .await,
        Code::NotFound,
        "invocation",
    );
    let mut done_request = complete(&run.id, store::InvocationStatus::Succeeded);
    done_request.input_tokens = 120;
    done_request.output_tokens = 30;
    let done = w
        .gateway
        .clone()
        .complete_invocation(done_request.clone())
        .await
        .expect("complete")
        .into_inner()
        .invocation
        .expect("record");
    assert_eq!(done.status, store::InvocationStatus::Succeeded as i32);
    assert_eq!((done.input_tokens, done.output_tokens), (120, 30));
    assert!(done.end_time.is_some() && done.duration.is_some());
    let again = w
        .gateway
        .clone()
        .complete_invocation(done_request)
        .await
        .expect("complete again")
        .into_inner()
        .invocation;
    assert_eq!(
        again.as_ref(),
        Some(&done),
        "completing again changes nothing"
    );
    assert_status(
        w.complete(&run.id, store::InvocationStatus::Failed).await,
        Code::FailedPrecondition,
        "SUCCEEDED",
    );
    // A retry of the start after completion still answers the record.
    assert_eq!(w.record(run.clone()).await, done);

    let fetched = w
        .gateway
        .clone()
        .get_invocation(store::GetInvocationRequest {
            invocation_id: run.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .invocation
        .expect("record");
    assert_eq!(fetched, done);
    assert_eq!(
        fetched.integrations, run.integrations,
        "whose connection, never which"
    );
    assert_status(
        w.gateway
            .clone()
            .get_invocation(store::GetInvocationRequest {
                invocation_id: new_id(),
            })
            .await,
        Code::NotFound,
        "invocation",
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn turns_and_sessions_are_idempotent_by_request_id() {
    let w = world().await;
    let spec = w.spec(&w.agent, &w.bob_id);
    let created = w
        .gateway
        .clone()
        .create_session(store::CreateSessionRequest {
            request_id: "inv-1".into(),
            spec: Some(spec.clone()),
            session_secret: String::new(),
        })
        .await
        .expect("create")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(created.state, store::SessionState::Active as i32);
    assert_eq!(created.message_count, 0);
    let retried = w
        .gateway
        .clone()
        .create_session(store::CreateSessionRequest {
            request_id: "inv-1".into(),
            spec: Some(spec.clone()),
            session_secret: String::new(),
        })
        .await
        .expect("create again")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(retried.id, created.id);
    assert_status(
        w.gateway
            .clone()
            .create_session(store::CreateSessionRequest {
                request_id: "inv-2".into(),
                spec: Some(spec.clone()),
                session_secret: random_token().expect("secret"),
            })
            .await,
        Code::InvalidArgument,
        "session_secret",
    );

    let long = format!("{}tail", "x".repeat(80));
    let first = w
        .turn("inv-1/input", &created.id, spec.clone(), "", &long)
        .await
        .expect("turn");
    let sequences: Vec<i64> = first.messages.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, [1, 2]);
    assert!(!first.created);
    let session = first.session.expect("session");
    assert_eq!(session.title, "x".repeat(80), "the first 80 characters");
    let again = w
        .turn("inv-1/input", &created.id, spec.clone(), "", "ignored")
        .await
        .expect("retry");
    assert_eq!(again.messages, first.messages, "a retry appends nothing");
    let mut renamed = spec.clone();
    renamed.agent_name = "Helper v2".into();
    let second = w
        .turn("inv-2/input", &created.id, renamed, "", "second")
        .await
        .expect("turn");
    assert_eq!(second.messages[0].sequence, 3);
    let session = second.session.expect("session");
    assert_eq!(session.agent_name, "Helper v2", "the name refreshes");
    assert_eq!(session.title, "x".repeat(80), "the title stays");

    // Without a session id, the turn starts one; a retry finds it.
    let started = w
        .turn("inv-3/input", "", spec.clone(), "", "hello")
        .await
        .expect("start");
    assert!(started.created);
    let restarted = w
        .turn("inv-3/input", "", spec.clone(), "", "hello")
        .await
        .expect("retry");
    assert!(restarted.created);
    assert_eq!(
        restarted.session.expect("session").id,
        started.session.expect("session").id
    );

    let read = sessions(&w.bob)
        .get_session(get(&created.id, ""))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(read.messages.len(), 4);
    assert_eq!(read.session.expect("session").message_count, 4);

    // Another user, or another agent, is not this session's owner.
    for wrong in [
        w.spec(&w.agent, &w.carol_id),
        w.spec(&w.other_agent, &w.bob_id),
    ] {
        assert_status(
            w.turn(&new_id(), &created.id, wrong, "", "hi").await,
            Code::NotFound,
            "session not found",
        );
    }
    let huge = w
        .gateway
        .clone()
        .append_turn(store::AppendTurnRequest {
            request_id: new_id(),
            session_id: created.id.clone(),
            spec: Some(spec.clone()),
            messages: vec![message(
                store::MessageRole::User,
                &"x".repeat(1024 * 1024 + 1),
            )],
            ..Default::default()
        })
        .await;
    assert_status(huge, Code::ResourceExhausted, "messages[0]");
    let unspecified = w
        .gateway
        .clone()
        .append_turn(store::AppendTurnRequest {
            request_id: new_id(),
            session_id: created.id.clone(),
            spec: Some(spec),
            messages: vec![store::NewMessage::default()],
            ..Default::default()
        })
        .await;
    let status = assert_status(unspecified, Code::InvalidArgument, "");
    assert_eq!(bad_field(&status), "messages[0].role");
    w.suite.stop().await;
}

#[tokio::test]
async fn concurrent_turns_get_gapless_sequences() {
    let w = world().await;
    let session = w.session_of(&w.bob_id, "start").await;
    let turns = (0..12).map(|i| {
        let spec = w.spec(&w.agent, &w.bob_id);
        let id = session.id.clone();
        let w = &w;
        async move {
            w.turn(&format!("turn-{i}"), &id, spec, "", &format!("turn {i}"))
                .await
                .expect("turn")
        }
    });
    let appended = futures::future::join_all(turns).await;
    for turn in &appended {
        assert_eq!(
            turn.messages[1].sequence,
            turn.messages[0].sequence + 1,
            "a turn's messages are adjacent"
        );
    }
    let mut sequences = Vec::new();
    let mut request = store::GetSessionRequest {
        page_size: 5,
        ..get(&session.id, "")
    };
    loop {
        let page = sessions(&w.bob)
            .get_session(request.clone())
            .await
            .expect("page")
            .into_inner();
        sequences.extend(page.messages.iter().map(|m| m.sequence));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(sequences, (1..=26).collect::<Vec<i64>>());
    let since = sessions(&w.bob)
        .get_session(store::GetSessionRequest {
            after_sequence: 24,
            ..get(&session.id, "")
        })
        .await
        .expect("since")
        .into_inner();
    let tail: Vec<i64> = since.messages.iter().map(|m| m.sequence).collect();
    assert_eq!(tail, [25, 26]);
    w.suite.stop().await;
}

#[tokio::test]
async fn a_session_is_read_by_its_owner_only_and_not_found_for_anyone_else() {
    let w = world().await;
    let bobs = w.session_of(&w.bob_id, "bob's question").await;
    let older = w.session_of(&w.bob_id, "older question").await;
    let alices = w.session_of(&w.alice_id, "alice's question").await;
    // Bob's own session with another agent.
    let other = w
        .turn(
            &new_id(),
            "",
            w.spec(&w.other_agent, &w.bob_id),
            "",
            "scribe",
        )
        .await
        .expect("turn")
        .session
        .expect("session");

    let mine = list_sessions(
        &w.bob,
        store::ListSessionsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .expect("list");
    let listed: Vec<&str> = mine.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        listed,
        [other.id.as_str(), older.id.as_str(), bobs.id.as_str()],
        "newest first, one page at a time, only Bob's"
    );
    let with_helper = list_sessions(
        &w.bob,
        store::ListSessionsRequest {
            agent_id: w.agent.id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(with_helper.len(), 2);
    assert_eq!(with_helper[1].title, "bob's question");
    assert!(
        list_sessions(&w.carol, Default::default())
            .await
            .expect("carol's list")
            .is_empty()
    );
    let bad_token = sessions(&w.bob)
        .list_sessions(store::ListSessionsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await;
    let status = assert_status(bad_token, Code::InvalidArgument, "");
    assert_eq!(bad_field(&status), "page_token");

    // The agent's owner, an org admin, another org's user and an unknown id
    // all get the same NOT_FOUND.
    let unknown = sessions(&w.bob)
        .get_session(get(&new_id(), ""))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    for (who, reader) in [("alice", &w.alice), ("dave", &w.dave), ("carol", &w.carol)] {
        let status = sessions(reader)
            .get_session(get(&bobs.id, ""))
            .await
            .expect_err(who);
        assert_eq!(
            (status.code(), status.message()),
            (unknown.code(), unknown.message()),
            "{who}"
        );
    }
    assert_eq!(
        sessions(&w.alice)
            .get_session(get(&alices.id, ""))
            .await
            .expect("alice reads hers")
            .into_inner()
            .messages
            .len(),
        2
    );
    let status = assert_status(
        sessions(&w.bob).get_session(get("nope", "")).await,
        Code::InvalidArgument,
        "",
    );
    assert_eq!(bad_field(&status), "session_id");
    w.suite.stop().await;
}

#[tokio::test]
async fn grant_holders_and_anonymous_visitors_read_only_their_own_sessions() {
    let w = world().await;
    let mint = |kind: sharing::GrantKind| {
        let alice = w.alice.clone();
        let agent_id = w.agent.id.clone();
        async move {
            let created = alice
                .sharing()
                .create_grant(sharing::CreateGrantRequest {
                    agent_id,
                    kind: kind as i32,
                    label: "widget".into(),
                    expire_time: None,
                    pinned_version: None,
                    limits: None,
                })
                .await
                .expect("grant")
                .into_inner();
            (created.grant.expect("grant").id, created.token)
        }
    };
    let (invoke_id, invoke_token) = mint(sharing::GrantKind::Invoke).await;
    let (delegate_id, delegate_token) = mint(sharing::GrantKind::Delegate).await;

    // Carol holds the INVOKE grant; she also has a session of her own.
    let held = w
        .turn(
            &new_id(),
            "",
            store::SessionSpec {
                grant_id: invoke_id.clone(),
                ..w.spec(&w.agent, &w.carol_id)
            },
            "",
            "as holder",
        )
        .await
        .expect("turn")
        .session
        .expect("session");
    w.session_of(&w.carol_id, "outside the grant").await;
    let holder = w.carol.with_grant(&invoke_token);
    let listed = list_sessions(&holder, Default::default())
        .await
        .expect("holder's list");
    let listed: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(listed, [held.id.as_str()], "only the grant's sessions");

    // An anonymous visitor of the DELEGATE grant.
    let secret = random_token().expect("secret");
    let visitor_spec = store::SessionSpec {
        user_id: String::new(),
        anonymous: true,
        grant_id: delegate_id.clone(),
        ..w.spec(&w.agent, "")
    };
    let anonymous = w
        .turn(&new_id(), "", visitor_spec.clone(), &secret, "widget hello")
        .await
        .expect("anonymous turn")
        .session
        .expect("session");
    assert!(anonymous.anonymous && anonymous.user_id.is_empty());
    let visitor = w.suite.anonymous().await.with_grant(&delegate_token);
    assert_status(
        sessions(&visitor)
            .list_sessions(store::ListSessionsRequest::default())
            .await,
        Code::PermissionDenied,
        "GetSession",
    );
    let read = sessions(&visitor)
        .get_session(get(&anonymous.id, &secret))
        .await
        .expect("read with the secret")
        .into_inner();
    assert_eq!(read.messages.len(), 2);
    let unknown = sessions(&visitor)
        .get_session(get(&new_id(), &secret))
        .await
        .expect_err("unknown");
    for (what, secret) in [
        ("wrong secret", "x".repeat(43)),
        ("no secret", String::new()),
    ] {
        let status = sessions(&visitor)
            .get_session(get(&anonymous.id, &secret))
            .await
            .expect_err(what);
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, unknown.message()),
            "{what}"
        );
    }
    // Neither the agent's owner nor the visitor's secret in a user's hands
    // opens it.
    let status = sessions(&w.alice)
        .get_session(get(&anonymous.id, &secret))
        .await
        .expect_err("owner");
    assert_eq!(status.code(), Code::NotFound);

    // Continuing it takes the secret too; sharing may open it to check.
    assert_status(
        w.turn(
            &new_id(),
            &anonymous.id,
            visitor_spec.clone(),
            "wrong",
            "hi",
        )
        .await,
        Code::NotFound,
        "session not found",
    );
    w.turn(&new_id(), &anonymous.id, visitor_spec, &secret, "again")
        .await
        .expect("continue");
    let mut sharing_client = StoreInternalServiceClient::new(
        w.suite
            .service_channel(ServiceName::Sharing, ServiceName::Store, 0)
            .await,
    );
    let opened = sharing_client
        .open_session(store::OpenSessionRequest {
            session_id: anonymous.id.clone(),
            user_id: String::new(),
            session_secret: secret.clone(),
        })
        .await
        .expect("sharing opens")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(opened.message_count, 4);
    assert_status(
        sharing_client
            .open_session(store::OpenSessionRequest {
                session_id: held.id.clone(),
                user_id: w.bob_id.clone(),
                session_secret: String::new(),
            })
            .await,
        Code::NotFound,
        "session not found",
    );
    assert_status(
        sharing_client
            .record_invocation(store::RecordInvocationRequest {
                invocation: Some(w.run(&w.agent, &w.bob_id, &w.bob_id)),
            })
            .await,
        Code::PermissionDenied,
        "sharing may not call",
    );
    let mut registry_client = StoreInternalServiceClient::new(
        w.suite
            .service_channel(ServiceName::Registry, ServiceName::Store, 0)
            .await,
    );
    assert_status(
        registry_client
            .open_session(store::OpenSessionRequest {
                session_id: anonymous.id.clone(),
                user_id: String::new(),
                session_secret: secret,
            })
            .await,
        Code::PermissionDenied,
        "registry may not call",
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn deleting_the_agent_archives_its_sessions_which_stay_readable() {
    let w = world().await;
    let session = w.session_of(&w.bob_id, "before deletion").await;
    w.alice
        .registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: w.agent.id.clone(),
        })
        .await
        .expect("delete");
    let archived = eventually_within(Duration::from_secs(10), "the session archived", || async {
        let read = sessions(&w.bob)
            .get_session(get(&session.id, ""))
            .await
            .expect("still readable")
            .into_inner();
        let current = read.session.expect("session");
        if current.state != store::SessionState::Archived as i32 {
            return None;
        }
        assert_eq!(read.messages.len(), 2, "messages stay");
        Some(current)
    })
    .await;
    assert!(archived.archive_time.is_some());
    assert_eq!(archived.agent_name, "Helper");
    assert_status(
        w.turn(
            &new_id(),
            &session.id,
            w.spec(&w.agent, &w.bob_id),
            "",
            "more",
        )
        .await,
        Code::FailedPrecondition,
        "agent deleted",
    );
    assert_status(
        w.turn(&new_id(), "", w.spec(&w.agent, &w.bob_id), "", "new")
            .await,
        Code::FailedPrecondition,
        "agent deleted",
    );
    let archived_only = list_sessions(
        &w.bob,
        store::ListSessionsRequest {
            state: store::SessionState::Archived as i32,
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(archived_only.len(), 1);
    w.suite.stop().await;
}

#[tokio::test]
async fn usage_is_read_by_the_billed_account_and_the_agents_owner_only() {
    let w = world().await;
    // Bob runs Alice's agent, billed to him; Alice runs it herself; a
    // DELEGATE-style run executes as Dave but is billed to Alice.
    let bobs = w.record(w.run(&w.agent, &w.bob_id, &w.bob_id)).await;
    let alices = w.record(w.run(&w.agent, &w.alice_id, &w.alice_id)).await;
    let mut delegated = w.run(&w.other_agent, &w.dave_id, &w.alice_id);
    delegated.executes_as_user_id = w.dave_id.clone();
    let delegated = w.record(delegated).await;
    w.complete(&bobs.id, store::InvocationStatus::Failed)
        .await
        .expect("complete");

    let seen = list_runs(&w.bob, billed_to_me()).await.expect("bob");
    assert_eq!(ids(&seen), [bobs.id.as_str()]);
    let seen = list_runs(&w.alice, billed_to_me()).await.expect("alice");
    assert_eq!(
        ids(&seen),
        sorted(vec![alices.id.clone(), delegated.id.clone()])
    );
    let seen = list_runs(
        &w.alice,
        store::ListInvocationsRequest {
            page_size: 1,
            ..of_agent(&w.agent.id)
        },
    )
    .await
    .expect("the owner's view");
    assert_eq!(ids(&seen), sorted(vec![bobs.id.clone(), alices.id.clone()]));
    let failed = list_runs(
        &w.alice,
        store::ListInvocationsRequest {
            status: store::InvocationStatus::Failed as i32,
            ..of_agent(&w.agent.id)
        },
    )
    .await
    .expect("failed only");
    assert_eq!(ids(&failed), [bobs.id.as_str()]);
    for (who, user) in [("carol", &w.carol), ("dave", &w.dave)] {
        assert!(
            list_runs(user, billed_to_me()).await.expect(who).is_empty(),
            "{who} is billed for nothing"
        );
    }
    // Bob sees the shared agent but does not own it; Dave is an admin but
    // not the owner; Carol is in another org.
    for (who, user) in [("bob", &w.bob), ("dave", &w.dave), ("carol", &w.carol)] {
        let status = list_runs(user, of_agent(&w.agent.id)).await.expect_err(who);
        assert!(
            matches!(status.code(), Code::PermissionDenied | Code::NotFound),
            "{who}: {status:?}"
        );
    }
    assert_status(
        list_runs(&w.bob, of_agent(&w.agent.id)).await,
        Code::PermissionDenied,
        "owner",
    );
    assert_status(
        list_runs(&w.carol, of_agent(&w.agent.id)).await,
        Code::NotFound,
        "",
    );

    let status = assert_status(
        list_runs(&w.bob, store::ListInvocationsRequest::default()).await,
        Code::InvalidArgument,
        "",
    );
    assert_eq!(bad_field(&status), "scope");
    let status = assert_status(
        list_runs(
            &w.bob,
            store::ListInvocationsRequest {
                page_token: "garbage".into(),
                ..billed_to_me()
            },
        )
        .await,
        Code::InvalidArgument,
        "",
    );
    assert_eq!(bad_field(&status), "page_token");
    let status = assert_status(
        list_runs(
            &w.bob,
            store::ListInvocationsRequest {
                start_time: Some(timestamp(2_000_000)),
                end_time: Some(timestamp(1_000_000)),
                ..billed_to_me()
            },
        )
        .await,
        Code::InvalidArgument,
        "",
    );
    assert_eq!(bad_field(&status), "end_time");

    // A share token reads no usage.
    let (_, token) = {
        let created = w
            .alice
            .sharing()
            .create_grant(sharing::CreateGrantRequest {
                agent_id: w.agent.id.clone(),
                kind: sharing::GrantKind::Invoke as i32,
                label: "t".into(),
                expire_time: None,
                pinned_version: None,
                limits: None,
            })
            .await
            .expect("grant")
            .into_inner();
        (created.grant, created.token)
    };
    assert_status(
        list_runs(&w.bob.with_grant(&token), billed_to_me()).await,
        Code::PermissionDenied,
        "",
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn usage_sums_by_agent_and_account_per_utc_day_and_month() {
    let w = world().await;
    const HOUR: i64 = 3_600_000_000;
    // 2026-01-31T23:00Z, then the next day at 01:00 and 02:00, then 15 Feb.
    let jan31 = 1_769_900_400_000_000;
    let runs = [
        (&w.agent, jan31, store::InvocationStatus::Succeeded, 2),
        (
            &w.agent,
            jan31 + 2 * HOUR,
            store::InvocationStatus::Failed,
            1,
        ),
        (
            &w.other_agent,
            jan31 + 3 * HOUR,
            store::InvocationStatus::Running,
            0,
        ),
        (
            &w.agent,
            jan31 + 15 * 24 * HOUR,
            store::InvocationStatus::Cancelled,
            4,
        ),
    ];
    for (agent, start, status, seconds) in runs {
        let mut run = w.run(agent, &w.bob_id, &w.bob_id);
        run.start_time = Some(timestamp(start));
        let id = w.record(run).await.id;
        if status != store::InvocationStatus::Running {
            w.gateway
                .clone()
                .complete_invocation(store::CompleteInvocationRequest {
                    duration: Some(prost_types::Duration { seconds, nanos: 0 }),
                    end_time: Some(timestamp(start + seconds * 1_000_000)),
                    input_tokens: 10,
                    ..complete(&id, status)
                })
                .await
                .expect("complete");
        }
    }
    // Alice's own run, in range, for the owner's view.
    let mut hers = w.run(&w.agent, &w.alice_id, &w.alice_id);
    hers.start_time = Some(timestamp(jan31 + HOUR));
    w.record(hers).await;

    let summarize = |user: &UserClient, scope, group_by, period, page_size| {
        let mut client = usage(user);
        let agent_id = if scope == store::UsageScope::Agent {
            w.agent.id.clone()
        } else {
            String::new()
        };
        async move {
            let mut request = store::SummarizeUsageRequest {
                scope: scope as i32,
                agent_id,
                start_time: Some(timestamp(jan31 - 40 * 24 * HOUR)),
                end_time: Some(timestamp(jan31 + 60 * 24 * HOUR)),
                group_by: group_by as i32,
                period: period as i32,
                page_size,
                page_token: String::new(),
            };
            let mut rows = Vec::new();
            loop {
                let page = client
                    .summarize_usage(request.clone())
                    .await
                    .expect("summary")
                    .into_inner();
                rows.extend(page.rows);
                if page.next_page_token.is_empty() {
                    return rows;
                }
                request.page_token = page.next_page_token;
            }
        }
    };
    let day = |micros: i64| timestamp(micros.div_euclid(24 * HOUR) * 24 * HOUR);
    let daily = summarize(
        &w.bob,
        store::UsageScope::BilledToCaller,
        store::UsageGroupBy::Agent,
        store::UsagePeriod::Day,
        1,
    )
    .await;
    let shape: Vec<_> = daily
        .iter()
        .map(|r| {
            (
                r.period_start_time.expect("start"),
                r.agent_id.clone(),
                r.invocation_count,
            )
        })
        .collect();
    let mut second_day = vec![
        (day(jan31 + 2 * HOUR), w.agent.id.clone(), 1),
        (day(jan31 + 2 * HOUR), w.other_agent.id.clone(), 1),
    ];
    second_day.sort_by(|a, b| a.1.cmp(&b.1));
    let mut expected = vec![(day(jan31), w.agent.id.clone(), 1)];
    expected.extend(second_day);
    expected.push((day(jan31 + 15 * 24 * HOUR), w.agent.id.clone(), 1));
    assert_eq!(
        shape, expected,
        "by UTC day, then agent id, paged one by one"
    );
    assert_eq!(
        daily[0].period_end_time,
        Some(day(jan31 + 24 * HOUR)),
        "a day ends at the next midnight"
    );

    let monthly = summarize(
        &w.bob,
        store::UsageScope::BilledToCaller,
        store::UsageGroupBy::Agent,
        store::UsagePeriod::Month,
        0,
    )
    .await;
    let january = monthly
        .iter()
        .find(|r| {
            r.agent_id == w.agent.id
                && r.period_start_time == Some(timestamp(1_767_225_600_000_000))
        })
        .expect("January");
    assert_eq!(january.invocation_count, 1);
    assert_eq!(
        january.period_end_time,
        Some(timestamp(1_769_904_000_000_000))
    );
    let february = monthly
        .iter()
        .find(|r| {
            r.agent_id == w.agent.id
                && r.period_start_time == Some(timestamp(1_769_904_000_000_000))
        })
        .expect("February");
    assert_eq!(
        (
            february.invocation_count,
            february.failed_count,
            february.cancelled_count,
            february.succeeded_count
        ),
        (2, 1, 1, 0)
    );
    assert_eq!(february.total_duration.expect("duration").seconds, 5);
    assert_eq!(february.input_tokens, 20);
    assert_eq!(monthly.len(), 3);

    let whole = summarize(
        &w.bob,
        store::UsageScope::BilledToCaller,
        store::UsageGroupBy::BilledAccount,
        store::UsagePeriod::Unspecified,
        0,
    )
    .await;
    assert_eq!(whole.len(), 1);
    let mine = &whole[0];
    assert_eq!(mine.billed_to_user_id, w.bob_id);
    assert_eq!(
        (
            mine.invocation_count,
            mine.succeeded_count,
            mine.failed_count,
            mine.cancelled_count,
            mine.running_count
        ),
        (4, 1, 1, 1, 1)
    );
    assert_eq!(mine.total_duration.expect("duration").seconds, 7);

    // The owner sums every account's use of her agent; the others see none.
    let owners = summarize(
        &w.alice,
        store::UsageScope::Agent,
        store::UsageGroupBy::BilledAccount,
        store::UsagePeriod::Unspecified,
        0,
    )
    .await;
    let mut by_account: Vec<_> = owners
        .iter()
        .map(|r| (r.billed_to_user_id.clone(), r.invocation_count))
        .collect();
    by_account.sort();
    let mut expected = vec![(w.bob_id.clone(), 3), (w.alice_id.clone(), 1)];
    expected.sort();
    assert_eq!(by_account, expected);
    assert!(
        summarize(
            &w.dave,
            store::UsageScope::BilledToCaller,
            store::UsageGroupBy::Agent,
            store::UsagePeriod::Unspecified,
            0,
        )
        .await
        .is_empty()
    );
    let status = assert_status(
        usage(&w.bob)
            .summarize_usage(store::SummarizeUsageRequest {
                scope: store::UsageScope::BilledToCaller as i32,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "",
    );
    assert_eq!(bad_field(&status), "group_by");
    w.suite.stop().await;
}
