//! MCP on the gateway (DESIGN.md, "The edge"), through the official Rust
//! SDK's client: people reach the agents they may run as tools, runtimes
//! reach the workspace tools with their run token, and every refusal a gRPC
//! caller meets (access, budgets, org policy) an MCP caller meets too.

use std::time::Duration;

use agentshare_e2e::mcp::{Generation, McpSession, call, text_of, tool_names, tools};
use agentshare_e2e::runtime::RecordingRuntime;
use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use rmcp::model::{ServerNotification, SubscriptionFilter};
use serde_json::json;
use sharing::GrantKind;

const MONTH: i64 = 30 * 86_400;

/// Acme: Alice owns the org and shares Research with it; Bob is a member.
/// Alice's Scratchpad is hers alone.
struct Acme {
    suite: Suite,
    alice: UserClient,
    bob: UserClient,
    bob_token: String,
    research: registry::Agent,
    scratchpad: registry::Agent,
}

async fn acme() -> Acme {
    acme_on(Suite::start().await).await
}

async fn acme_on(suite: Suite) -> Acme {
    let alice_token = suite.token_with("alice", true, MONTH);
    let bob_token = suite.token_with("bob", false, MONTH);
    let alice = suite.user("alice").await.with_token(&alice_token);
    let bob = suite.user("bob").await.with_token(&bob_token);
    alice.new_org("Acme").await;
    let bob_id = bob.user_id().await;
    alice.add_member(&bob_id, sharing::OrgRole::Member).await;
    let research = alice.shared_agent("Research").await;
    let scratchpad = alice.deployed_agent("Scratchpad").await;
    Acme {
        suite,
        alice,
        bob,
        bob_token,
        research,
        scratchpad,
    }
}

async fn session(suite: &Suite, bearer: &str, generation: Generation) -> McpSession {
    suite
        .mcp("/mcp", Some(bearer), &[], generation)
        .await
        .expect("the MCP session opens")
}

#[tokio::test]
async fn a_member_runs_the_agents_shared_with_them_as_tools() {
    let w = acme().await;
    for generation in [Generation::Modern, Generation::Legacy] {
        let bob = session(&w.suite, &w.bob_token, generation).await;
        let names = tool_names(&bob).await;
        assert!(
            names.contains(&"research".to_string()),
            "{generation:?}: {names:?}"
        );
        assert!(
            !names.contains(&"scratchpad".to_string()),
            "Alice's unshared agent is not Bob's to run: {names:?}"
        );
        let listed = tools(&bob).await;
        let research = listed.iter().find(|t| t.name == "research").unwrap();
        assert_eq!(research.title.as_deref(), Some("Research"));
        assert_eq!(
            research.input_schema["required"],
            json!(["input"]),
            "the input schema asks for the message"
        );

        let first = call(&bob, "research", json!({ "input": "hello from MCP" })).await;
        assert_ne!(first.is_error, Some(true), "{first:?}");
        assert!(
            text_of(&first).starts_with("echo: hello from MCP"),
            "{first:?}"
        );
        let answer = first.structured_content.clone().expect("structured");
        let session_id = answer["session_id"].as_str().unwrap().to_string();
        assert_eq!(
            answer["billed_to"], "BILLED_PARTY_CALLER",
            "a member's run is on their own bill: {answer}"
        );
        let again = call(
            &bob,
            "research",
            json!({ "input": "and again", "session_id": session_id }),
        )
        .await;
        assert_eq!(
            again.structured_content.unwrap()["session_id"],
            json!(session_id),
            "passing the session back continues it"
        );
        bob.cancel().await.ok();
    }
    // The owner sees her own agents, shared or not.
    let alice = session(
        &w.suite,
        &w.suite.token_with("alice", false, MONTH),
        Generation::Modern,
    )
    .await;
    let names = tool_names(&alice).await;
    assert!(names.contains(&"research".to_string()) && names.contains(&"scratchpad".to_string()));
    let _ = &w.scratchpad;
    w.suite.stop().await;
}

#[tokio::test]
async fn share_tokens_reach_their_one_agent() {
    let w = acme().await;
    let (_, delegate) = w.alice.grant(&w.research.id, GrantKind::Delegate).await;
    let visitor = session(&w.suite, &delegate, Generation::Modern).await;
    assert_eq!(tool_names(&visitor).await, ["research"]);
    let answer = call(&visitor, "research", json!({ "input": "as a visitor" })).await;
    assert!(
        text_of(&answer).starts_with("echo: as a visitor"),
        "{answer:?}"
    );
    assert_eq!(
        answer.structured_content.unwrap()["billed_to"],
        "BILLED_PARTY_AGENT_OWNER",
        "a DELEGATE run is on the owner's bill"
    );

    // An INVOKE token needs its holder signed in as well.
    let (_, invoke) = w.alice.grant(&w.research.id, GrantKind::Invoke).await;
    let refused = w
        .suite
        .mcp("/mcp", Some(&invoke), &[], Generation::Modern)
        .await;
    assert!(refused.is_err(), "an INVOKE token alone is not enough");
    let carol_token = w.suite.token_with("carol", false, MONTH);
    let carol = w
        .suite
        .mcp(
            "/mcp",
            Some(&carol_token),
            &[("x-agentshare-grant-token", &invoke)],
            Generation::Legacy,
        )
        .await
        .expect("an INVOKE holder signed in");
    assert_eq!(tool_names(&carol).await, ["research"]);
    let answer = call(&carol, "research", json!({ "input": "mine" })).await;
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    w.suite.stop().await;
}

#[tokio::test]
async fn an_unshare_takes_the_tool_away_and_tells_listening_sessions() {
    let w = acme().await;
    // A session of each protocol generation, listening.
    let modern = session(&w.suite, &w.bob_token, Generation::Modern).await;
    let mut subscription = modern
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .expect("subscriptions/listen");
    let legacy = session(&w.suite, &w.bob_token, Generation::Legacy).await;
    let heard = legacy.service().tools_changed.clone();
    let legacy_heard = heard.notified();
    tokio::pin!(legacy_heard);
    legacy_heard.as_mut().enable();
    assert!(tool_names(&modern).await.contains(&"research".to_string()));

    w.alice.unshare(&w.research.id).await;

    let notification = tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("the modern session hears of the change")
        .expect("listen stream")
        .expect("a notification");
    assert!(
        matches!(
            notification,
            ServerNotification::ToolListChangedNotification(_)
        ),
        "{notification:?}"
    );
    tokio::time::timeout(Duration::from_secs(20), legacy_heard)
        .await
        .expect("the legacy session hears of the change");
    assert!(!tool_names(&modern).await.contains(&"research".to_string()));
    let refused = call(&legacy, "research", json!({ "input": "still there?" })).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text_of(&refused).starts_with("NOT_FOUND:"), "{refused:?}");

    // Sharing again brings it back, and says so.
    w.alice.share(&w.research.id).await;
    let notification = tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("the session hears the agent came back")
        .expect("listen stream");
    assert!(notification.is_some());
    assert!(tool_names(&modern).await.contains(&"research".to_string()));
    w.suite.stop().await;
}

#[tokio::test]
async fn a_revoked_share_token_ends_its_session_on_the_next_request() {
    let w = acme().await;
    let (grant_id, delegate) = w.alice.grant(&w.research.id, GrantKind::Delegate).await;
    let visitor = session(&w.suite, &delegate, Generation::Legacy).await;
    assert_eq!(tool_names(&visitor).await, ["research"]);
    w.alice
        .sharing()
        .revoke_grant(sharing::RevokeGrantRequest { grant_id })
        .await
        .expect("revoke");
    assert!(
        visitor.list_all_tools().await.is_err(),
        "the very next request is refused"
    );
    let http = reqwest::Client::new();
    let answer = http
        .post(w.suite.url("/mcp"))
        .bearer_auth(&delegate)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let challenge = answer.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("revoked"), "{challenge}");
    w.suite.stop().await;
}

#[tokio::test]
async fn budgets_and_org_policy_hold_over_mcp() {
    let w = acme().await;
    let (_, delegate) = w
        .alice
        .grant_limited(
            &w.research.id,
            GrantKind::Delegate,
            Some(sharing::GrantLimits {
                runs_per_minute: Some(1),
                ..Default::default()
            }),
        )
        .await;
    let visitor = session(&w.suite, &delegate, Generation::Modern).await;
    let first = call(&visitor, "research", json!({ "input": "one" })).await;
    assert_ne!(first.is_error, Some(true), "{first:?}");
    let second = call(&visitor, "research", json!({ "input": "two" })).await;
    assert_eq!(second.is_error, Some(true));
    assert!(
        text_of(&second).starts_with("RESOURCE_EXHAUSTED:"),
        "{second:?}"
    );
    let status = second.structured_content.unwrap();
    assert_eq!(status["status"], "RESOURCE_EXHAUSTED");
    assert!(
        status.to_string().contains("runs_per_minute"),
        "the QuotaFailure names the limit: {status}"
    );

    w.alice
        .tenancy()
        .update_org(sharing::UpdateOrgRequest {
            policy: Some(sharing::OrgPolicy {
                forbid_delegate_grants: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("policy");
    let visitor = session(&w.suite, &delegate, Generation::Modern).await;
    let refused = call(&visitor, "research", json!({ "input": "policy" })).await;
    assert!(
        text_of(&refused).starts_with("PERMISSION_DENIED: org policy forbid_delegate_grants"),
        "{refused:?}"
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn without_a_good_token_mcp_answers_401_pointing_at_its_metadata() {
    let w = acme().await;
    let http = reqwest::Client::new();
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}
    });
    let post = |path: &str, bearer: Option<String>| {
        let mut request = http
            .post(w.suite.url(path))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(initialize.to_string());
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };

    let missing = post("/mcp", None).await.unwrap();
    assert_eq!(missing.status(), 401);
    let challenge = missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let metadata_url = w.suite.url("/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata_url}\"")
    );

    let metadata: serde_json::Value = serde_json::from_slice(
        &http
            .get(&metadata_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(metadata["resource"], json!(w.suite.url("/mcp")));
    assert_eq!(
        metadata["authorization_servers"],
        json!([agentshare_kit::session::DEV_ISSUER])
    );
    assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));

    // A token for another audience is refused for that reason.
    let mut claims =
        agentshare_kit::session::dev_claims("bob", None, false, w.suite.clock.now_secs(), 600);
    claims.aud = "another-service".into();
    let foreign = post("/mcp", Some(w.suite.sign_session(&claims)))
        .await
        .unwrap();
    assert_eq!(foreign.status(), 401);
    let challenge = foreign.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("audience"),
        "{challenge}"
    );

    // Each endpoint takes its own kind of credential.
    let person_at_run = post("/mcp/run", Some(w.bob_token.clone())).await.unwrap();
    assert_eq!(person_at_run.status(), 401);
    assert!(
        person_at_run.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("/.well-known/oauth-protected-resource/mcp/run")
    );
    let fake_run_token = post("/mcp/run", Some("asr_not-a-token".into()))
        .await
        .unwrap();
    assert_eq!(fake_run_token.status(), 401);
    let welcome = post("/mcp", Some(w.bob_token.clone())).await.unwrap();
    assert_eq!(welcome.status(), 200, "Bob's own token opens a session");
    w.suite.stop().await;
}

#[tokio::test]
async fn runtimes_call_the_workspace_tools_over_mcp_as_over_grpc() {
    let w = acme().await;
    let script = |transport: &str, key: &str| {
        format!(
            "/transport {transport}\n\
             /workspace_write {{\"key\":\"{key}\",\"value\":\"v-{key}\"}}\n\
             /workspace_read {{\"key\":\"{key}\"}}\n\
             /workspace_list {{\"key_prefix\":\"{key}\"}}\n\
             /workspace_publish {{\"key\":\"{key}\",\"target_agent_id\":\"0190f5e4-7c1a-7000-8000-000000000001\"}}\n\
             notes"
        )
    };
    let over_mcp = w
        .bob
        .run(&w.research.id, &script("mcp", "by-mcp"))
        .await
        .expect("run")
        .output_text;
    let over_grpc = w
        .bob
        .run(&w.research.id, &script("grpc", "by-grpc"))
        .await
        .expect("run")
        .output_text;
    for (output, key) in [(&over_mcp, "by-mcp"), (&over_grpc, "by-grpc")] {
        assert!(
            output.contains(&format!("workspace_write: wrote {key} at revision ")),
            "{output}"
        );
        assert!(
            output.contains(&format!("workspace_read: {key} = v-{key}")),
            "{output}"
        );
        assert!(output.contains(&format!("holds [{key}]")), "{output}");
    }
    // The same partition, whichever way in: Bob's member partition.
    let partition = |output: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix("workspace_list: partition "))
            .map(|l| l.split(' ').next().unwrap().to_string())
    };
    assert_eq!(partition(&over_mcp), partition(&over_grpc));
    // A refusal comes back with its gRPC code.
    assert!(
        over_mcp.contains("workspace_publish failed: NOT_FOUND:"),
        "{over_mcp}"
    );
    // What the runtime wrote over MCP is in the store as any write is.
    let read = w.bob.on_channel(w.suite.gateway_channel().await);
    let item = agentshare_proto::store::v1::workspace_store_service_client::WorkspaceStoreServiceClient::new(read.channel())
        .workspace_read(agentshare_proto::store::v1::WorkspaceReadRequest {
            agent_id: w.research.id.clone(),
            key: "by-mcp".into(),
        })
        .await
        .expect("read")
        .into_inner()
        .item
        .unwrap();
    assert_eq!(item.value, "v-by-mcp");
    w.suite.stop().await;
}

#[tokio::test]
async fn a_delete_or_a_removal_takes_the_tool_away_at_once() {
    let w = acme().await;
    let bob = session(&w.suite, &w.bob_token, Generation::Modern).await;
    let mut subscription = bob
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .expect("subscriptions/listen");
    let support = w.alice.shared_agent("Support").await;
    tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("a newly shared agent is announced")
        .expect("listen stream");
    let names = tool_names(&bob).await;
    assert!(names.contains(&"support".to_string()) && names.contains(&"research".to_string()));

    w.alice
        .registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: support.id.clone(),
        })
        .await
        .expect("delete");
    // No waiting: the very next list and call no longer find it.
    assert!(!tool_names(&bob).await.contains(&"support".to_string()));
    let refused = call(&bob, "support", json!({ "input": "gone?" })).await;
    assert!(text_of(&refused).starts_with("NOT_FOUND:"), "{refused:?}");
    tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("the delete is announced")
        .expect("listen stream");

    // Removed from the org, Bob runs nothing of Acme's.
    let bob_id = w.bob.user_id().await;
    w.alice
        .tenancy()
        .remove_org_member(sharing::RemoveOrgMemberRequest { user_id: bob_id })
        .await
        .expect("remove");
    let refused = call(&bob, "research", json!({ "input": "still a member?" })).await;
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    w.suite.stop().await;
}

#[tokio::test]
async fn a_callers_token_never_reaches_the_runtime_which_gets_a_run_token_of_its_own() {
    let runtime = RecordingRuntime::start().await;
    let w = acme_on(Suite::builder().runtime(&runtime).start().await).await;
    let bob = session(&w.suite, &w.bob_token, Generation::Modern).await;
    // Held by the runtime until released, so its run token stays alive.
    let held = tokio::spawn(async move {
        let answer = call(&bob, "research", json!({ "input": "through MCP /hold" })).await;
        (bob, answer)
    });
    let received = agentshare_e2e::wait::eventually("the runtime receiving the run", || async {
        runtime
            .received()
            .into_iter()
            .find(|r| r.request.input == "through MCP /hold")
    })
    .await;
    let request = received.request;
    assert!(
        !format!("{request:?}").contains(&w.bob_token),
        "the caller's token must not travel to the runtime"
    );
    assert!(request.run_token.starts_with("asr_"));
    assert_eq!(request.mcp_url, w.suite.url("/mcp/run"));

    // The run token opens the run's tools, and nothing else.
    let tools = w
        .suite
        .mcp(
            "/mcp/run",
            Some(&request.run_token),
            &[],
            Generation::Legacy,
        )
        .await
        .expect("the run token opens /mcp/run");
    assert_eq!(
        tool_names(&tools).await,
        [
            "workspace_delete",
            "workspace_list",
            "workspace_publish",
            "workspace_read",
            "workspace_write"
        ]
    );
    let listed = call(&tools, "workspace_list", json!({})).await;
    assert_ne!(listed.is_error, Some(true), "{listed:?}");
    assert!(
        w.suite
            .mcp("/mcp", Some(&request.run_token), &[], Generation::Modern)
            .await
            .is_err(),
        "a run token is no person's credential"
    );

    runtime.release();
    let (_, answer) = held.await.expect("the held call returns");
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    // The run is over: its token opens nothing.
    let after = tools.list_all_tools().await;
    assert!(after.is_err(), "the run token dies with its run");
    w.suite.stop().await;
}

#[tokio::test]
async fn another_orgs_member_sees_none_of_acmes_agents() {
    let w = acme().await;
    let carol_token = w.suite.token_with("carol", false, MONTH);
    let carol = w.suite.user("carol").await.with_token(&carol_token);
    carol.new_org("Globex").await;
    let session = session(&w.suite, &carol_token, Generation::Modern).await;
    // Her org's default agent arrives once registry has made it.
    let names = agentshare_e2e::wait::eventually("Carol's own default agent", || async {
        let names = tool_names(&session).await;
        (!names.is_empty()).then_some(names)
    })
    .await;
    assert!(
        !names.iter().any(|n| n == "research" || n == "scratchpad"),
        "{names:?}"
    );
    let refused = call(&session, "research", json!({ "input": "let me in" })).await;
    assert!(text_of(&refused).starts_with("NOT_FOUND:"), "{refused:?}");
    w.suite.stop().await;
}

#[tokio::test]
async fn leaving_the_workspace_takes_its_agents_away() {
    let w = acme().await;
    w.alice.enable_workspaces().await;
    let sales = w.alice.create_workspace("Sales").await;
    let bob_id = w.bob.user_id().await;
    w.alice
        .add_to_workspace(&sales, &bob_id, sharing::WorkspaceRole::Member)
        .await;
    let deals = w.alice.in_workspace(&sales).shared_agent("Deals").await;
    // Bob works in Sales: his session's active workspace.
    w.bob
        .tenancy()
        .switch_workspace(sharing::SwitchWorkspaceRequest {
            workspace_id: sales.clone(),
        })
        .await
        .expect("switch");
    let bob = session(&w.suite, &w.bob_token, Generation::Modern).await;
    let mut subscription = bob
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .expect("subscriptions/listen");
    assert!(tool_names(&bob).await.contains(&"deals".to_string()));

    w.alice.remove_from_workspace(&sales, &bob_id).await;
    // The very next list and call no longer reach Sales' agent.
    assert!(!tool_names(&bob).await.contains(&"deals".to_string()));
    let refused = call(&bob, "deals", json!({ "input": "still in Sales?" })).await;
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("the removal is announced")
        .expect("listen stream");
    let _ = deals;
    w.suite.stop().await;
}
