//! Invoke (DESIGN.md, "Invoke"): the run path end to end. Each scenario, from
//! a research agent shared in a team to a support widget on a DELEGATE grant,
//! runs a shared agent through the gateway on a recording runtime and
//! asserts, from what the runtime received and from the usage record, whose
//! connection each integration used, who was billed, which version ran and
//! which store partition the run's token reached.

use agentshare_e2e::runtime::{Received, RecordingRuntime};
use agentshare_e2e::{Authed, Suite, UserClient, tool};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::runtime::v1 as runtime;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use futures::StreamExt;
use sharing::GrantKind;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::assert_status;

const SCOPE_SHARED: registry::IntegrationScope = registry::IntegrationScope::Shared;
const SCOPE_USER: registry::IntegrationScope = registry::IntegrationScope::UserConfigured;

/// Acme: Alice builds and owns (with step-up), Bob is a member, Carol is in
/// no org. Agents run on `runtime`, which records what it receives.
struct Acme {
    suite: Suite,
    runtime: RecordingRuntime,
    alice: UserClient,
    bob: UserClient,
    carol: UserClient,
    alice_id: String,
    bob_id: String,
    carol_id: String,
    home: String,
}

async fn acme_on(runtime: Option<RecordingRuntime>) -> (Suite, Option<RecordingRuntime>) {
    let suite = match &runtime {
        Some(rt) => Suite::builder().runtime(rt).start().await,
        None => Suite::start().await,
    };
    (suite, runtime)
}

async fn acme() -> Acme {
    let (suite, runtime) = acme_on(Some(RecordingRuntime::start().await)).await;
    let runtime = runtime.expect("runtime");
    let alice = suite
        .user("alice")
        .await
        .with_token(&suite.token_with("alice", true, 3600));
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    let org = alice.new_org("Acme").await;
    let bob_id = bob.user_id().await;
    alice.add_member(&bob_id, sharing::OrgRole::Member).await;
    Acme {
        alice_id: alice.user_id().await,
        carol_id: carol.user_id().await,
        bob_id,
        home: org.default_workspace_id,
        suite,
        runtime,
        alice,
        bob,
        carol,
    }
}

/// Creates, deploys and shares an agent whose instructions the runtime must
/// never repeat.
async fn shared_agent(
    owner: &UserClient,
    name: &str,
    tools: Vec<registry::Tool>,
) -> registry::Agent {
    let instructions = format!("Secret playbook of the {name}, version one.");
    owner.shared_agent_with(name, &instructions, tools).await
}

/// The run's usage record, as the agent's owner lists it.
async fn record(
    owner: &UserClient,
    agent_id: &str,
    invocation_id: &str,
) -> store::InvocationRecord {
    owner
        .usage()
        .list_invocations(store::ListInvocationsRequest {
            scope: store::UsageScope::Agent as i32,
            agent_id: agent_id.into(),
            ..Default::default()
        })
        .await
        .expect("owner lists the agent's usage")
        .into_inner()
        .invocations
        .into_iter()
        .find(|r| r.id == invocation_id)
        .unwrap_or_else(|| panic!("no usage record {invocation_id}"))
}

/// The invocations billed to the caller.
async fn billed_to_me(user: &UserClient) -> Vec<String> {
    user.usage()
        .list_invocations(store::ListInvocationsRequest {
            scope: store::UsageScope::BilledToCaller as i32,
            ..Default::default()
        })
        .await
        .expect("billed usage")
        .into_inner()
        .invocations
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// (integration, source, secret) of every connection a run received.
fn connections(received: &Received) -> Vec<(String, runtime::ConnectionSource, String)> {
    let mut all: Vec<_> = received
        .request
        .connections
        .iter()
        .map(|c| {
            let secret = match &c.secret {
                Some(runtime::resolved_connection::Secret::ApiKey(k)) => k.clone(),
                Some(runtime::resolved_connection::Secret::AccessToken(t)) => t.clone(),
                None => String::new(),
            };
            (c.integration_key.clone(), c.source(), secret)
        })
        .collect();
    all.sort();
    all
}

/// (integration, whose connection) of a usage record.
fn owners(record: &store::InvocationRecord) -> Vec<(String, store::ConnectionOwner)> {
    let mut all: Vec<_> = record
        .integrations
        .iter()
        .map(|i| (i.integration_key.clone(), i.connection_owner()))
        .collect();
    all.sort();
    all
}

/// Runs `input` with a fresh anonymous session or a signed-in caller.
async fn run(user: &UserClient, agent_id: &str, input: &str) -> gateway::InvokeResponse {
    user.run(agent_id, input).await.expect("invoke")
}

fn partition_of_team(agent: &registry::Agent, home: &str) -> String {
    format!("agent-{}/{home}", agent.id)
}

#[tokio::test]
async fn research_agent_uses_the_builders_search_and_each_users_own_crm() {
    use runtime::ConnectionSource::{AgentOwner, Caller};
    let w = acme().await;
    let search = w
        .alice
        .api_key_connection("search", "srch-alice-0001")
        .await;
    let agent = shared_agent(
        &w.alice,
        "Research",
        vec![
            tool("web_search", "search", SCOPE_SHARED, &search),
            tool("crm", "crm", SCOPE_USER, ""),
        ],
    )
    .await;
    assert_status(
        w.bob.run(&agent.id, "accounts in Lyon").await,
        Code::FailedPrecondition,
        "crm",
    );
    let crm = w.bob.api_key_connection("crm", "crm-bob-0001").await;
    w.bob.bind(&agent.id, "crm", &crm).await;

    let answer = run(&w.bob, &agent.id, "accounts in Lyon").await;
    assert_eq!(answer.version_number, 1);
    assert_eq!(answer.billed_to(), gateway::BilledParty::Caller);
    let seen = w.runtime.run_with_input("accounts in Lyon");
    assert_eq!(
        connections(&seen),
        [
            ("crm".into(), Caller, "crm-bob-0001".into()),
            ("web_search".into(), AgentOwner, "srch-alice-0001".into()),
        ]
    );
    assert_eq!(
        seen.request.caller.as_ref().expect("caller").user_id,
        w.bob_id
    );
    assert_eq!(seen.listed, Ok(partition_of_team(&agent, &w.home)));
    let tools: Vec<_> = seen
        .request
        .workspace_tools
        .iter()
        .map(|t| {
            let schema: serde_json::Value =
                serde_json::from_str(&t.input_schema_json).expect("a JSON schema");
            assert_eq!(schema["type"], "object", "{}", t.name);
            (t.name.as_str(), t.grpc_method.as_str())
        })
        .collect();
    let service = "/agentshare.store.v1.WorkspaceStoreService";
    assert_eq!(
        tools,
        [
            (
                "workspace_list",
                format!("{service}/WorkspaceList").as_str()
            ),
            (
                "workspace_read",
                format!("{service}/WorkspaceRead").as_str()
            ),
            (
                "workspace_write",
                format!("{service}/WorkspaceWrite").as_str()
            ),
            (
                "workspace_delete",
                format!("{service}/WorkspaceDelete").as_str()
            ),
            (
                "workspace_publish",
                format!("{service}/WorkspacePublish").as_str()
            ),
        ]
    );
    let version = seen.request.agent.clone().expect("the version");
    assert_eq!(version.version_number, 1);
    assert_eq!(
        version.instructions,
        "Secret playbook of the Research, version one."
    );
    assert!(seen.request.run_token.starts_with("asr_"));

    let usage = record(&w.alice, &agent.id, &answer.invocation_id).await;
    assert_eq!(
        owners(&usage),
        [
            ("crm".into(), store::ConnectionOwner::Caller),
            ("web_search".into(), store::ConnectionOwner::Builder),
        ]
    );
    assert_eq!(usage.billed_to_user_id, w.bob_id);
    assert_eq!(usage.executes_as_user_id, w.bob_id);
    assert_eq!(usage.agent_version_number, 1);
    assert_eq!(usage.store_partition, partition_of_team(&agent, &w.home));
    assert_eq!(usage.status(), store::InvocationStatus::Succeeded);
    assert_eq!(
        billed_to_me(&w.bob).await,
        std::slice::from_ref(&answer.invocation_id)
    );
    assert!(
        billed_to_me(&w.alice).await.is_empty(),
        "Alice pays nothing"
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn email_drafting_agent_uses_each_users_own_mail_and_drive() {
    use runtime::ConnectionSource::{AgentOwner, Caller};
    let w = acme().await;
    let agent = shared_agent(
        &w.alice,
        "Email drafter",
        vec![
            tool("mail", "outlook", SCOPE_USER, ""),
            tool("files", "drive", SCOPE_USER, ""),
        ],
    )
    .await;
    for (user, name) in [(&w.alice, "alice"), (&w.bob, "bob")] {
        let mail = user
            .api_key_connection("outlook", &format!("mail-{name}"))
            .await;
        let files = user
            .api_key_connection("drive", &format!("drive-{name}"))
            .await;
        user.bind(&agent.id, "mail", &mail).await;
        user.bind(&agent.id, "files", &files).await;
    }
    let by_alice = run(&w.alice, &agent.id, "draft a reply to Lea").await;
    let by_bob = run(&w.bob, &agent.id, "draft a reply to Sam").await;
    // The owner's own connections are the agent owner's; Bob's are his.
    for (input, name, answer, user_id, source) in [
        (
            "draft a reply to Lea",
            "alice",
            &by_alice,
            &w.alice_id,
            AgentOwner,
        ),
        ("draft a reply to Sam", "bob", &by_bob, &w.bob_id, Caller),
    ] {
        let seen = w.runtime.run_with_input(input);
        assert_eq!(
            connections(&seen),
            [
                ("files".into(), source, format!("drive-{name}")),
                ("mail".into(), source, format!("mail-{name}")),
            ],
            "{name} drafts with their own mail and files"
        );
        let usage = record(&w.alice, &agent.id, &answer.invocation_id).await;
        assert_eq!(&usage.billed_to_user_id, user_id);
        assert_eq!(usage.agent_version_number, 1);
        assert_eq!(usage.store_partition, partition_of_team(&agent, &w.home));
        assert_eq!(seen.listed, Ok(partition_of_team(&agent, &w.home)));
    }
    let bob_usage = record(&w.alice, &agent.id, &by_bob.invocation_id).await;
    assert_eq!(
        owners(&bob_usage),
        [
            ("files".into(), store::ConnectionOwner::Caller),
            ("mail".into(), store::ConnectionOwner::Caller),
        ]
    );
    let alice_usage = record(&w.alice, &agent.id, &by_alice.invocation_id).await;
    assert_eq!(
        owners(&alice_usage),
        [
            ("files".into(), store::ConnectionOwner::Owner),
            ("mail".into(), store::ConnectionOwner::Owner),
        ]
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn daily_reporting_agent_shares_the_warehouse_and_posts_to_each_users_slack() {
    use runtime::ConnectionSource::{AgentOwner, Caller};
    let w = acme().await;
    let warehouse = w.alice.api_key_connection("warehouse", "wh-alice-ro").await;
    let agent = shared_agent(
        &w.alice,
        "Daily report",
        vec![
            tool("database", "warehouse", SCOPE_SHARED, &warehouse),
            tool("slack", "slack", SCOPE_USER, ""),
        ],
    )
    .await;
    let slack = w.bob.api_key_connection("slack", "xoxp-bob-1").await;
    w.bob.bind(&agent.id, "slack", &slack).await;
    let answer = run(&w.bob, &agent.id, "yesterday's signups").await;
    let seen = w.runtime.run_with_input("yesterday's signups");
    assert_eq!(
        connections(&seen),
        [
            ("database".into(), AgentOwner, "wh-alice-ro".into()),
            ("slack".into(), Caller, "xoxp-bob-1".into()),
        ]
    );
    let usage = record(&w.alice, &agent.id, &answer.invocation_id).await;
    assert_eq!(
        owners(&usage),
        [
            ("database".into(), store::ConnectionOwner::Builder),
            ("slack".into(), store::ConnectionOwner::Caller),
        ]
    );
    assert_eq!(usage.billed_to_user_id, w.bob_id);
    assert_eq!(usage.agent_version_number, 1);
    assert_eq!(seen.listed, Ok(partition_of_team(&agent, &w.home)));
    w.suite.stop().await;
}

#[tokio::test]
async fn a_teammate_with_an_invoke_grant_runs_the_design_with_their_own_slack_and_crm() {
    use runtime::ConnectionSource::Caller;
    let w = acme().await;
    let slack = w.alice.api_key_connection("slack", "xoxp-alice-1").await;
    let agent = shared_agent(
        &w.alice,
        "Support",
        vec![
            tool("slack", "slack", SCOPE_SHARED, &slack),
            tool("crm", "crm", SCOPE_USER, ""),
        ],
    )
    .await;
    let (grant_id, token) = w.alice.grant(&agent.id, GrantKind::Invoke).await;
    let teammate = w.bob.with_grant(&token);
    let own_slack = w.bob.api_key_connection("slack", "xoxp-bob-2").await;
    let own_crm = w.bob.api_key_connection("crm", "crm-bob-2").await;
    teammate.bind(&agent.id, "slack", &own_slack).await;
    teammate.bind(&agent.id, "crm", &own_crm).await;

    let answer = run(&teammate, &agent.id, "triage ticket 42").await;
    let seen = w.runtime.run_with_input("triage ticket 42");
    assert_eq!(
        connections(&seen),
        [
            ("crm".into(), Caller, "crm-bob-2".into()),
            ("slack".into(), Caller, "xoxp-bob-2".into()),
        ],
        "an INVOKE holder never uses the builder's Slack"
    );
    let caller = seen.request.caller.clone().expect("caller");
    assert_eq!(caller.kind(), runtime::CallerKind::InvokeGrant);
    assert_eq!(caller.grant_id, grant_id);
    let partition = format!("agent-{}/grant-{grant_id}/{}", agent.id, w.bob_id);
    assert_eq!(seen.listed, Ok(partition.clone()));
    let usage = record(&w.alice, &agent.id, &answer.invocation_id).await;
    assert_eq!(
        owners(&usage),
        [
            ("crm".into(), store::ConnectionOwner::Holder),
            ("slack".into(), store::ConnectionOwner::Holder),
        ]
    );
    assert_eq!(usage.grant_id, grant_id);
    assert_eq!(usage.agent_version_number, 1);
    assert_eq!(usage.billed_to_user_id, w.bob_id);
    assert_eq!(usage.executes_as_user_id, w.bob_id);
    assert_eq!(usage.store_partition, partition);
    assert_eq!(billed_to_me(&w.bob).await, [answer.invocation_id]);
    w.suite.stop().await;
}

#[tokio::test]
async fn a_support_widget_delegates_to_the_owner_and_visitors_cannot_read_each_other() {
    use runtime::ConnectionSource::AgentOwner;
    let w = acme().await;
    let kb = w.alice.api_key_connection("drive", "kb-alice").await;
    let agent = shared_agent(
        &w.alice,
        "Support widget",
        vec![tool("knowledge", "drive", SCOPE_SHARED, &kb)],
    )
    .await;
    let (grant_id, token) = w.alice.grant(&agent.id, GrantKind::Delegate).await;
    let first = w.suite.anonymous().await.with_grant(&token);
    let second = w.suite.anonymous().await.with_grant(&token);

    let one = run(&first, &agent.id, "where is my parcel?").await;
    let two = run(&second, &agent.id, "how do I return shoes?").await;
    assert!(
        !one.session_secret.is_empty(),
        "an anonymous session has a secret"
    );
    assert_ne!(one.session_secret, two.session_secret);
    assert_eq!(one.billed_to(), gateway::BilledParty::AgentOwner);
    let seen = w.runtime.run_with_input("where is my parcel?");
    assert_eq!(
        connections(&seen),
        [("knowledge".into(), AgentOwner, "kb-alice".into())]
    );
    assert_eq!(
        seen.request.caller.clone().expect("caller").kind(),
        runtime::CallerKind::DelegateGrant
    );
    assert_eq!(seen.listed, Ok(partition_of_team(&agent, &w.home)));
    let usage = record(&w.alice, &agent.id, &one.invocation_id).await;
    assert!(usage.anonymous);
    assert_eq!(usage.agent_version_number, 1);
    assert_eq!(usage.grant_id, grant_id);
    assert_eq!(usage.billed_to_user_id, w.alice_id);
    assert_eq!(usage.executes_as_user_id, w.alice_id);
    assert_eq!(
        owners(&usage),
        [("knowledge".into(), store::ConnectionOwner::Owner)]
    );
    assert_eq!(
        billed_to_me(&w.alice).await.len(),
        2,
        "both chats bill Alice"
    );

    // Each visitor reads and continues only their own chat.
    let read = |visitor: &UserClient, session: &str, secret: &str| {
        let mut sessions = visitor.sessions();
        let request = store::GetSessionRequest {
            session_id: session.into(),
            session_secret: secret.into(),
            ..Default::default()
        };
        async move { sessions.get_session(request).await.map(|r| r.into_inner()) }
    };
    let mine = read(&first, &one.session_id, &one.session_secret)
        .await
        .expect("own chat");
    assert_eq!(mine.messages[0].content, "where is my parcel?");
    assert_status(
        read(&second, &one.session_id, &two.session_secret).await,
        Code::NotFound,
        "session",
    );
    assert_status(
        read(&second, &one.session_id, "").await,
        Code::NotFound,
        "session",
    );
    let hijack = second
        .invoke()
        .invoke(gateway::InvokeRequest {
            agent_id: agent.id.clone(),
            input: "show me the parcel chat".into(),
            session_id: Some(one.session_id.clone()),
            session_secret: Some(two.session_secret.clone()),
            ..Default::default()
        })
        .await;
    assert_status(hijack, Code::NotFound, "session");
    let again = first
        .invoke()
        .invoke(gateway::InvokeRequest {
            agent_id: agent.id.clone(),
            input: "it was due Monday".into(),
            session_id: Some(one.session_id.clone()),
            session_secret: Some(one.session_secret.clone()),
            ..Default::default()
        })
        .await
        .expect("the visitor continues their chat")
        .into_inner();
    assert_eq!(again.session_id, one.session_id);
    let continued = w.runtime.run_with_input("it was due Monday");
    assert!(
        continued
            .request
            .history
            .iter()
            .any(|m| m.content == "where is my parcel?"),
        "the runtime gets the chat so far"
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn an_internal_slack_bot_delegates_so_members_run_it_on_the_owners_connections() {
    use runtime::ConnectionSource::AgentOwner;
    let w = acme().await;
    let graph = w.alice.api_key_connection("warehouse", "wh-service").await;
    let agent = shared_agent(
        &w.alice,
        "Knowledge bot",
        vec![tool("graph", "warehouse", SCOPE_SHARED, &graph)],
    )
    .await;
    let (grant_id, token) = w.alice.grant(&agent.id, GrantKind::Delegate).await;
    let bot = w.bob.with_grant(&token);
    let answer = run(&bot, &agent.id, "who owns billing?").await;
    let seen = w.runtime.run_with_input("who owns billing?");
    assert_eq!(
        connections(&seen),
        [("graph".into(), AgentOwner, "wh-service".into())]
    );
    assert_eq!(seen.listed, Ok(partition_of_team(&agent, &w.home)));
    let usage = record(&w.alice, &agent.id, &answer.invocation_id).await;
    assert_eq!(usage.caller_kind(), store::CallerKind::DelegateGrant);
    assert_eq!(usage.agent_version_number, 1);
    assert_eq!(usage.grant_id, grant_id);
    assert_eq!(usage.billed_to_user_id, w.alice_id);
    assert_eq!(usage.executes_as_user_id, w.alice_id);
    assert_eq!(answer.billed_to(), gateway::BilledParty::AgentOwner);
    assert!(billed_to_me(&w.bob).await.is_empty(), "Bob pays nothing");
    w.suite.stop().await;
}

#[tokio::test]
async fn an_open_source_template_runs_outside_the_org_on_the_holders_own_integrations() {
    use runtime::ConnectionSource::Caller;
    let w = acme().await;
    let search = w
        .alice
        .api_key_connection("search", "srch-alice-0001")
        .await;
    let agent = shared_agent(
        &w.alice,
        "Triage",
        vec![
            tool("web_search", "search", SCOPE_SHARED, &search),
            tool("crm", "crm", SCOPE_USER, ""),
        ],
    )
    .await;
    let (grant_id, token) = w.alice.grant(&agent.id, GrantKind::Invoke).await;
    let outsider = w.carol.with_grant(&token);
    assert_status(
        outsider.run(&agent.id, "triage my inbox").await,
        Code::FailedPrecondition,
        "web_search",
    );
    let own_search = w
        .carol
        .api_key_connection("search", "srch-carol-0001")
        .await;
    let own_crm = w.carol.api_key_connection("crm", "crm-carol").await;
    outsider.bind(&agent.id, "web_search", &own_search).await;
    outsider.bind(&agent.id, "crm", &own_crm).await;
    let answer = run(&outsider, &agent.id, "triage my inbox").await;
    let seen = w.runtime.run_with_input("triage my inbox");
    assert_eq!(
        connections(&seen),
        [
            ("crm".into(), Caller, "crm-carol".into()),
            ("web_search".into(), Caller, "srch-carol-0001".into()),
        ],
        "even the integration the builder marked SHARED uses Carol's"
    );
    let partition = format!("agent-{}/grant-{grant_id}/{}", agent.id, w.carol_id);
    assert_eq!(seen.listed, Ok(partition.clone()));
    let usage = record(&w.alice, &agent.id, &answer.invocation_id).await;
    assert_eq!(
        owners(&usage),
        [
            ("crm".into(), store::ConnectionOwner::Holder),
            ("web_search".into(), store::ConnectionOwner::Holder),
        ]
    );
    assert_eq!(usage.billed_to_user_id, w.carol_id);
    assert_eq!(usage.agent_version_number, 1);
    assert_eq!(usage.store_partition, partition);
    assert_eq!(billed_to_me(&w.carol).await, [answer.invocation_id]);
    w.suite.stop().await;
}

#[tokio::test]
async fn the_next_call_runs_the_new_version_and_the_holders_bindings_stay() {
    let w = acme().await;
    let agent = shared_agent(
        &w.alice,
        "Research",
        vec![tool("crm", "crm", SCOPE_USER, "")],
    )
    .await;
    let crm = w.bob.api_key_connection("crm", "crm-bob-0001").await;
    w.bob.bind(&agent.id, "crm", &crm).await;
    let first = run(&w.bob, &agent.id, "before the deploy").await;
    assert_eq!(first.version_number, 1);

    let edited = w
        .alice
        .registry()
        .update_draft(registry::UpdateDraftRequest {
            agent_id: agent.id.clone(),
            draft: Some(registry::AgentDraft {
                instructions: "Version two: cite every source.".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["instructions".into()],
            }),
            expected_draft_revision: agent.draft_revision,
        })
        .await
        .expect("edit")
        .into_inner()
        .agent
        .expect("agent");
    w.alice.deploy(&edited).await;

    let second = run(&w.bob, &agent.id, "after the deploy").await;
    assert_eq!(second.version_number, 2);
    assert_eq!(second.version_id, format!("agents/{}/versions/2", agent.id));
    let before = w.runtime.run_with_input("before the deploy");
    let after = w.runtime.run_with_input("after the deploy");
    let instructions = |r: &Received| r.request.agent.clone().expect("agent").instructions;
    assert!(instructions(&before).contains("version one"));
    assert_eq!(instructions(&after), "Version two: cite every source.");
    assert_eq!(
        connections(&after),
        [(
            "crm".into(),
            runtime::ConnectionSource::Caller,
            "crm-bob-0001".into()
        )],
        "Bob's binding carried over untouched"
    );
    let usage = record(&w.alice, &agent.id, &second.invocation_id).await;
    assert_eq!(usage.agent_version_number, 2);
    w.suite.stop().await;
}

/// Calls WorkspaceList with a run token, as a runtime would.
async fn list_with(
    suite: &Suite,
    run_token: &str,
    agent_id: &str,
) -> Result<String, tonic::Status> {
    let mut call = tonic::Request::new(store::WorkspaceListRequest {
        agent_id: agent_id.into(),
        ..Default::default()
    });
    call.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {run_token}")).expect("header"),
    );
    WorkspaceStoreServiceClient::new(suite.gateway_channel().await)
        .workspace_list(call)
        .await
        .map(|r| r.into_inner().partition)
}

/// Starts a run of `input` (which holds it open) and waits for its start.
async fn hold_run(
    user: &UserClient,
    agent_id: &str,
    input: &str,
) -> tonic::Streaming<gateway::InvokeStreamResponse> {
    let mut stream = user
        .invoke()
        .invoke_stream(gateway::InvokeStreamRequest {
            agent_id: agent_id.into(),
            input: input.into(),
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner();
    let _started = stream.next().await.expect("an event").expect("started");
    stream
}

#[tokio::test]
async fn a_run_token_reaches_its_own_run_and_nothing_after_or_beside_it() {
    let w = acme().await;
    let agent = shared_agent(&w.alice, "Notes", vec![]).await;
    let other = shared_agent(&w.alice, "Other", vec![]).await;

    // After the run ends.
    run(&w.bob, &agent.id, "a finished run").await;
    let token = w.runtime.run_with_input("a finished run").request.run_token;
    assert!(token.starts_with("asr_"));
    assert_status(
        list_with(&w.suite, &token, &agent.id).await,
        Code::Unauthenticated,
        "run",
    );

    // For another agent, while the run is open.
    let mut held = hold_run(&w.bob, &agent.id, "/hold still").await;
    let open = w.runtime.run_with_input("/hold still").request.run_token;
    assert_eq!(
        list_with(&w.suite, &open, &agent.id)
            .await
            .expect("its own agent"),
        partition_of_team(&agent, &w.home)
    );
    assert_status(
        list_with(&w.suite, &open, &other.id).await,
        Code::PermissionDenied,
        "agent",
    );
    w.runtime.release();
    while held.next().await.is_some() {}

    // After the grant is revoked mid-run.
    let (grant_id, token) = w.alice.grant(&agent.id, GrantKind::Invoke).await;
    let holder = w.carol.with_grant(&token);
    let mut held = hold_run(&holder, &agent.id, "/hold for the revoke").await;
    w.alice
        .sharing()
        .revoke_grant(sharing::RevokeGrantRequest { grant_id })
        .await
        .expect("revoke");
    w.runtime.release();
    while held.next().await.is_some() {}
    assert_eq!(
        w.runtime.run_with_input("/hold for the revoke").listed,
        Err(Code::NotFound),
        "the token died with the grant: the agent is gone from the holder's view"
    );

    // After the agent is unshared from Bob mid-run.
    let mut held = hold_run(&w.bob, &agent.id, "/hold for the unshare").await;
    w.alice.unshare(&agent.id).await;
    w.runtime.release();
    while held.next().await.is_some() {}
    assert_eq!(
        w.runtime.run_with_input("/hold for the unshare").listed,
        Err(Code::NotFound),
        "the token died with Bob's access: the agent is gone from his view"
    );
    w.suite.stop().await;
}

/// A suite on the built-in echo runtime.
async fn echo_acme() -> (Suite, UserClient, UserClient, String) {
    let (suite, _) = acme_on(None).await;
    let alice = suite
        .user("alice")
        .await
        .with_token(&suite.token_with("alice", true, 3600));
    let bob = suite.user("bob").await;
    let org = alice.new_org("Acme").await;
    alice
        .add_member(&bob.user_id().await, sharing::OrgRole::Member)
        .await;
    (suite, alice, bob, org.default_workspace_id)
}

#[tokio::test]
async fn the_echo_agent_writes_then_reads_its_workspace_through_the_run_token() {
    let (suite, alice, bob, home) = echo_acme().await;
    let key = bob.api_key_connection("crm", "crm-bob-secret-9").await;
    let agent = shared_agent(&alice, "Notes", vec![tool("crm", "crm", SCOPE_USER, "")]).await;
    bob.bind(&agent.id, "crm", &key).await;
    let answer = run(
        &bob,
        &agent.id,
        "remember the plan\n/workspace_write {\"key\":\"plan\",\"value\":\"ship friday\"}\n/workspace_read {\"key\":\"plan\"}\n/workspace_list {}",
    )
    .await;
    let text = &answer.output_text;
    assert!(text.starts_with("echo: remember the plan"), "{text}");
    assert!(
        text.contains("workspace_write: wrote plan at revision"),
        "{text}"
    );
    assert!(
        text.contains("workspace_read: plan = ship friday"),
        "{text}"
    );
    assert!(
        text.contains(&format!("partition agent-{}/{home} holds [plan]", agent.id)),
        "{text}"
    );
    assert!(text.contains("crm (crm) with your connection"), "{text}");
    assert!(
        !text.contains("playbook"),
        "no instructions in the answer: {text}"
    );
    assert!(
        !text.contains("crm-bob-secret-9"),
        "no secret in the answer: {text}"
    );
    assert_eq!(answer.tool_calls.len(), 3);
    assert!(answer.tool_calls.iter().all(|c| c.succeeded));

    // A later run of a teammate reads what the first one wrote.
    let alice_crm = alice.api_key_connection("crm", "crm-alice").await;
    alice.bind(&agent.id, "crm", &alice_crm).await;
    let later = run(&alice, &agent.id, "/workspace_read {\"key\":\"plan\"}").await;
    assert!(
        later.output_text.contains("plan = ship friday"),
        "{}",
        later.output_text
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_delegate_run_never_reads_the_owners_private_store_nor_an_invoke_run_the_team_one() {
    let (suite, alice, bob, home) = echo_acme().await;
    let carol = suite.user("carol").await;
    let agent = alice.deployed_agent("Diary").await;
    // Unshared, Alice's runs keep to her own private partition.
    let private = run(
        &alice,
        &agent.id,
        "/workspace_write {\"key\":\"diary\",\"value\":\"private thoughts\"}\n/workspace_list {}",
    )
    .await;
    let alice_id = alice.user_id().await;
    assert!(
        private
            .output_text
            .contains(&format!("partition user-{alice_id} holds [diary]")),
        "{}",
        private.output_text
    );
    alice.share(&agent.id).await;
    run(
        &bob,
        &agent.id,
        "/workspace_write {\"key\":\"team-note\",\"value\":\"standup at 9\"}",
    )
    .await;

    let (_, delegate) = alice.grant(&agent.id, GrantKind::Delegate).await;
    let visitor = suite.anonymous().await.with_grant(&delegate);
    let delegated = run(
        &visitor,
        &agent.id,
        "/workspace_read {\"key\":\"diary\"}\n/workspace_list {}",
    )
    .await;
    assert!(
        delegated
            .output_text
            .contains("workspace_read failed: NotFound"),
        "{}",
        delegated.output_text
    );
    assert!(
        delegated.output_text.contains(&format!(
            "partition agent-{}/{home} holds [team-note]",
            agent.id
        )),
        "{}",
        delegated.output_text
    );
    assert!(!delegated.output_text.contains("private thoughts"));

    let (grant_id, invoke) = alice.grant(&agent.id, GrantKind::Invoke).await;
    let holder = carol.with_grant(&invoke);
    let invoked = run(
        &holder,
        &agent.id,
        "/workspace_read {\"key\":\"team-note\"}\n/workspace_list {}",
    )
    .await;
    assert!(
        invoked
            .output_text
            .contains("workspace_read failed: NotFound"),
        "{}",
        invoked.output_text
    );
    let carol_id = carol.user_id().await;
    assert!(
        invoked.output_text.contains(&format!(
            "partition agent-{}/grant-{grant_id}/{carol_id} holds []",
            agent.id
        )),
        "{}",
        invoked.output_text
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_stream_starts_streams_text_and_tool_calls_and_completes() {
    let (suite, alice, _bob, _home) = echo_acme().await;
    let agent = alice.deployed_agent("Streamer").await;
    let events: Vec<_> = alice
        .invoke()
        .invoke_stream(gateway::InvokeStreamRequest {
            agent_id: agent.id.clone(),
            input: "first line\n/workspace_write {\"key\":\"k\",\"value\":\"v\"}".into(),
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner()
        .map(|e| e.expect("event").event.expect("an event"))
        .collect()
        .await;
    use gateway::invoke_stream_response::Event;
    let Some(Event::Started(started)) = events.first() else {
        panic!("the stream starts with Started: {events:?}");
    };
    let Some(Event::Completed(completed)) = events.last() else {
        panic!("the stream ends with Completed: {events:?}");
    };
    assert_eq!(started.invocation_id, completed.invocation_id);
    assert_eq!(completed.version_number, 1);
    let phases: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ToolCall(call) => Some((call.tool_name.clone(), call.phase())),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            ("workspace_write".into(), gateway::ToolCallPhase::Started),
            ("workspace_write".into(), gateway::ToolCallPhase::Finished),
        ]
    );
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            Event::TextDelta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, completed.output_text);
    assert!(text.starts_with("echo: first line"));
    suite.stop().await;
}

#[tokio::test]
async fn runtime_failures_are_recorded_and_answered_with_their_code() {
    let (suite, alice, _bob, _home) = echo_acme().await;
    let agent = alice.deployed_agent("Flaky").await;
    let cases = [
        (
            "/fail CONNECTION_FAILED token expired",
            Code::FailedPrecondition,
        ),
        ("/fail MODEL_UNAVAILABLE overloaded", Code::Unavailable),
        (
            "/fail MODEL_RATE_LIMITED slow down",
            Code::ResourceExhausted,
        ),
    ];
    for (input, code) in cases {
        let status = alice.run(&agent.id, input).await.expect_err("fails");
        assert_eq!(status.code(), code, "{input}: {}", status.message());
    }
    let failed = alice
        .usage()
        .list_invocations(store::ListInvocationsRequest {
            scope: store::UsageScope::Agent as i32,
            agent_id: agent.id.clone(),
            status: store::InvocationStatus::Failed as i32,
            ..Default::default()
        })
        .await
        .expect("usage")
        .into_inner()
        .invocations;
    let mut codes: Vec<_> = failed.iter().map(|r| r.error_code.clone()).collect();
    codes.sort();
    assert_eq!(
        codes,
        ["FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "UNAVAILABLE"]
    );
    assert!(failed.iter().all(|r| !r.error_message.is_empty()));
    suite.stop().await;
}

#[tokio::test]
async fn an_unreachable_runtime_answers_unavailable_and_the_run_is_recorded_failed() {
    let suite = Suite::builder()
        .runtime_url(&format!("http://{}", agentshare_e2e::reserve_addr()))
        .start()
        .await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.deployed_agent("Stranded").await;
    assert_status(
        alice.run(&agent.id, "hello").await,
        Code::Unavailable,
        "runtime",
    );
    let records = alice
        .usage()
        .list_invocations(store::ListInvocationsRequest {
            scope: store::UsageScope::BilledToCaller as i32,
            ..Default::default()
        })
        .await
        .expect("usage")
        .into_inner()
        .invocations;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status(), store::InvocationStatus::Failed);
    assert_eq!(records[0].error_code, "UNAVAILABLE");
    suite.stop().await;
}

fn invoke_request(agent_id: &str) -> gateway::InvokeRequest {
    gateway::InvokeRequest {
        agent_id: agent_id.into(),
        input: "hello".into(),
        ..Default::default()
    }
}

async fn invoke_with(
    user: &UserClient,
    request: gateway::InvokeRequest,
) -> Result<gateway::InvokeResponse, tonic::Status> {
    let mut client: gateway::invoke_service_client::InvokeServiceClient<Authed> = user.invoke();
    client
        .invoke(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn bad_requests_name_their_field_and_other_orgs_agents_do_not_exist() {
    let (suite, alice, _bob, _home) = echo_acme().await;
    let agent = alice.deployed_agent("Plain").await;
    assert_status(
        invoke_with(&alice, invoke_request("")).await,
        Code::InvalidArgument,
        "agent_id",
    );
    let mut huge = invoke_request(&agent.id);
    huge.input = "x".repeat(300 * 1024);
    assert_status(
        invoke_with(&alice, huge).await,
        Code::InvalidArgument,
        "input",
    );
    let mut lone_secret = invoke_request(&agent.id);
    lone_secret.session_secret = Some("s".repeat(40));
    assert_status(
        invoke_with(&alice, lone_secret).await,
        Code::InvalidArgument,
        "session_secret",
    );
    let mut unknown_session = invoke_request(&agent.id);
    unknown_session.session_id = Some(uuid::Uuid::now_v7().to_string());
    assert_status(
        invoke_with(&alice, unknown_session).await,
        Code::NotFound,
        "session",
    );

    let eve = suite.user("eve").await;
    eve.new_org("Elsewhere").await;
    let theirs = assert_status(
        invoke_with(&eve, invoke_request(&agent.id)).await,
        Code::NotFound,
        "agent",
    );
    let missing = uuid::Uuid::now_v7().to_string();
    let unknown = assert_status(
        invoke_with(&eve, invoke_request(&missing)).await,
        Code::NotFound,
        "agent",
    );
    assert_eq!(
        theirs.message().replace(&agent.id, "ID"),
        unknown.message().replace(&missing, "ID"),
        "another org's agent reads exactly like a missing one"
    );
    assert_status(
        invoke_with(&suite.anonymous().await, invoke_request(&agent.id)).await,
        Code::Unauthenticated,
        "",
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_session_continues_until_unshare_or_delete_and_stays_readable() {
    let (suite, alice, bob, _home) = echo_acme().await;
    let agent = shared_agent(&alice, "Chat", vec![]).await;
    let first = run(&bob, &agent.id, "my first question").await;
    let continue_with = |input: &str| {
        let mut request = invoke_request(&agent.id);
        request.input = input.into();
        request.session_id = Some(first.session_id.clone());
        request
    };
    let second = invoke_with(&bob, continue_with("a follow-up"))
        .await
        .expect("continue");
    assert_eq!(second.session_id, first.session_id);
    let read = |user: &UserClient| {
        let mut sessions = user.sessions();
        let session_id = first.session_id.clone();
        async move {
            sessions
                .get_session(store::GetSessionRequest {
                    session_id,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let transcript = read(&bob).await.expect("read");
    let users: Vec<_> = transcript
        .messages
        .iter()
        .filter(|m| m.role() == store::MessageRole::User)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(users, ["my first question", "a follow-up"]);
    assert_status(read(&alice).await, Code::NotFound, "session");

    alice.unshare(&agent.id).await;
    assert_status(
        invoke_with(&bob, continue_with("still there?")).await,
        Code::FailedPrecondition,
        "agent no longer shared with you",
    );
    assert_eq!(
        read(&bob).await.expect("still readable").messages.len(),
        transcript.messages.len()
    );

    // Alice's own session ends with the agent.
    let hers = run(&alice, &agent.id, "owner's chat").await;
    alice
        .registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("delete");
    let mut request = invoke_request(&agent.id);
    request.session_id = Some(hers.session_id.clone());
    assert_status(
        invoke_with(&alice, request).await,
        Code::FailedPrecondition,
        "agent deleted",
    );
    // The store archives on registry's agent.deleted event, moments later.
    let archived = agentshare_e2e::eventually("the session archived", || {
        let mut sessions = alice.sessions();
        let session_id = hers.session_id.clone();
        async move {
            let session = sessions
                .get_session(store::GetSessionRequest {
                    session_id,
                    ..Default::default()
                })
                .await
                .expect("an archived session stays readable")
                .into_inner()
                .session
                .expect("session");
            (session.state() == store::SessionState::Archived).then_some(session)
        }
    })
    .await;
    assert_eq!(archived.id, hers.session_id);
    suite.stop().await;
}

#[tokio::test]
async fn the_owner_tests_the_draft_and_a_project_run_keeps_its_session_in_the_project() {
    let w = acme().await;
    let agent = shared_agent(&w.alice, "Planner", vec![]).await;
    w.alice
        .registry()
        .update_draft(registry::UpdateDraftRequest {
            agent_id: agent.id.clone(),
            draft: Some(registry::AgentDraft {
                instructions: "Draft: not deployed yet.".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["instructions".into()],
            }),
            expected_draft_revision: agent.draft_revision,
        })
        .await
        .expect("edit");
    let mut draft = invoke_request(&agent.id);
    draft.input = "try the draft".into();
    draft.draft = true;
    let tried = invoke_with(&w.alice, draft.clone())
        .await
        .expect("owner runs the draft");
    assert!(tried.draft);
    let seen = w.runtime.run_with_input("try the draft");
    let version = seen.request.agent.clone().expect("version");
    assert!(version.draft);
    assert_eq!(version.instructions, "Draft: not deployed yet.");
    let usage = record(&w.alice, &agent.id, &tried.invocation_id).await;
    assert!(usage.draft_run);
    assert_status(
        invoke_with(&w.bob, draft.clone()).await,
        Code::PermissionDenied,
        "draft",
    );
    let (_, token) = w.alice.grant(&agent.id, GrantKind::Delegate).await;
    assert_status(
        invoke_with(&w.alice.with_grant(&token), draft).await,
        Code::PermissionDenied,
        "draft",
    );
    // Members still run the deployed version.
    let deployed = run(&w.bob, &agent.id, "the deployed one").await;
    assert!(!deployed.draft);
    assert_eq!(deployed.version_number, 1);

    let project = w
        .alice
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Launch".into(),
            description: String::new(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project");
    let mut in_project = invoke_request(&agent.id);
    in_project.input = "plan the launch".into();
    in_project.project_id = Some(project.id.clone());
    let answer = invoke_with(&w.alice, in_project.clone())
        .await
        .expect("a project run");
    let session = w
        .alice
        .sessions()
        .get_session(store::GetSessionRequest {
            session_id: answer.session_id.clone(),
            ..Default::default()
        })
        .await
        .expect("session")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(session.project_id, project.id);
    assert_eq!(session.workspace_id, project.home_workspace_id);
    assert_eq!(
        record(&w.alice, &agent.id, &answer.invocation_id)
            .await
            .project_id,
        project.id
    );
    in_project.project_id = Some(uuid::Uuid::now_v7().to_string());
    assert_status(
        invoke_with(&w.alice, in_project).await,
        Code::NotFound,
        "project",
    );
    w.suite.stop().await;
}
