//! The org default agent: every member runs it from every workspace, billed
//! to themselves, over one org-wide store partition; org owners and admins
//! test its draft and read its usage; nobody shares it, deletes it or mints
//! share tokens for it.

use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use futures::StreamExt;
use tonic::Code;

use crate::assert_status;

/// Acme with workspaces on: Alice owns the org (with step-up), Bob is a
/// member in the default workspace only, Carol a member in Sales only, Vera
/// a viewer. Runs go to the built-in echo runtime.
struct Acme {
    suite: Suite,
    alice: UserClient,
    bob: UserClient,
    carol: UserClient,
    vera: UserClient,
    ids: Ids,
    assistant: registry::Agent,
}

struct Ids {
    alice: String,
    bob: String,
    carol: String,
}

async fn acme() -> Acme {
    let suite = Suite::start().await;
    let alice = suite
        .user("alice")
        .await
        .with_token(&suite.token_with("alice", true, 3600));
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    let vera = suite.user("vera").await;
    alice.new_org("Acme").await;
    let ids = Ids {
        alice: alice.user_id().await,
        bob: bob.user_id().await,
        carol: carol.user_id().await,
    };
    alice.add_member(&ids.bob, sharing::OrgRole::Member).await;
    alice.add_member(&ids.carol, sharing::OrgRole::Member).await;
    alice
        .add_member(&vera.user_id().await, sharing::OrgRole::Viewer)
        .await;
    alice.enable_workspaces().await;
    let sales = alice.create_workspace("Sales").await;
    alice
        .add_to_workspace(&sales, &ids.carol, sharing::WorkspaceRole::Member)
        .await;
    let carol = carol.in_workspace(&sales);
    let assistant = bob
        .registry()
        .get_default_agent(registry::GetDefaultAgentRequest {})
        .await
        .expect("default agent")
        .into_inner()
        .agent
        .expect("agent");
    Acme {
        suite,
        alice,
        bob,
        carol,
        vera,
        ids,
        assistant,
    }
}

/// Runs `input` through InvokeStream and returns the Started and Completed
/// events.
async fn run_streamed(
    user: &UserClient,
    agent_id: &str,
    input: &str,
) -> (gateway::InvokeStarted, gateway::InvokeCompleted) {
    use gateway::invoke_stream_response::Event;
    let events: Vec<Event> = user
        .invoke()
        .invoke_stream(gateway::InvokeStreamRequest {
            agent_id: agent_id.into(),
            input: input.into(),
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner()
        .map(|e| e.expect("event").event.expect("an event"))
        .collect()
        .await;
    let Some(Event::Started(started)) = events.first().cloned() else {
        panic!("the stream starts with Started: {events:?}");
    };
    let Some(Event::Completed(completed)) = events.last().cloned() else {
        panic!("the stream ends with Completed: {events:?}");
    };
    (started, completed)
}

/// The usage records billed to `user`, by invocation id.
async fn my_bill(user: &UserClient) -> Vec<store::InvocationRecord> {
    user.usage()
        .list_invocations(store::ListInvocationsRequest {
            scope: store::UsageScope::BilledToCaller as i32,
            ..Default::default()
        })
        .await
        .expect("billed usage")
        .into_inner()
        .invocations
}

fn record<'a>(records: &'a [store::InvocationRecord], id: &str) -> &'a store::InvocationRecord {
    records
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no usage record {id} in {records:?}"))
}

#[tokio::test]
async fn members_and_the_owner_run_it_billed_to_themselves_over_one_org_wide_partition() {
    let w = acme().await;
    let id = w.assistant.id.clone();
    let partition = format!("agent-{id}");

    // Bob, in the default workspace, writes a memory through the run token.
    let bobs = w
        .bob
        .run(
            &id,
            "note this\n/workspace_write {\"key\":\"memo\",\"value\":\"offsite in May\"}\n/workspace_list {}",
        )
        .await
        .expect("a member runs the default agent");
    assert_eq!(bobs.version_number, 1);
    assert_eq!(bobs.billed_to(), gateway::BilledParty::Caller);
    assert!(
        bobs.output_text
            .contains(&format!("partition {partition} holds [memo]")),
        "{}",
        bobs.output_text
    );

    // Carol, in Sales only, reads it in a streamed run: one partition for
    // the whole org.
    let (started, carols) = run_streamed(&w.carol, &id, "/workspace_read {\"key\":\"memo\"}").await;
    assert_eq!(started.invocation_id, carols.invocation_id);
    assert_eq!(carols.billed_to(), gateway::BilledParty::Caller);
    assert!(
        carols.output_text.contains("memo = offsite in May"),
        "{}",
        carols.output_text
    );

    // The org owner runs it both ways too.
    let alices = w.alice.run(&id, "hello").await.expect("the owner runs it");
    assert_eq!(alices.billed_to(), gateway::BilledParty::Caller);
    let (_, alices_stream) = run_streamed(&w.alice, &id, "hello again").await;
    assert!(alices_stream.output_text.starts_with("echo: hello again"));

    // Each run is billed to, and executes as, its caller; no user owns it.
    for (user, user_id, invocation) in [
        (&w.bob, &w.ids.bob, &bobs.invocation_id),
        (&w.carol, &w.ids.carol, &carols.invocation_id),
        (&w.alice, &w.ids.alice, &alices.invocation_id),
        (&w.alice, &w.ids.alice, &alices_stream.invocation_id),
    ] {
        let bill = my_bill(user).await;
        let run = record(&bill, invocation);
        assert_eq!(&run.billed_to_user_id, user_id);
        assert_eq!(&run.executes_as_user_id, user_id);
        assert_eq!(&run.user_id, user_id);
        assert_eq!(run.agent_owner_user_id, "");
        assert_eq!(run.store_partition, partition);
        assert_eq!(run.status(), store::InvocationStatus::Succeeded);
    }
    assert!(
        my_bill(&w.bob)
            .await
            .iter()
            .all(|r| r.billed_to_user_id == w.ids.bob),
        "Bob's bill holds his runs only"
    );

    // Org owners and admins read the agent's usage; members do not.
    let all = w
        .alice
        .usage()
        .list_invocations(store::ListInvocationsRequest {
            scope: store::UsageScope::Agent as i32,
            agent_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("the org owner reads the default agent's usage")
        .into_inner()
        .invocations;
    assert_eq!(all.len(), 4);
    assert_status(
        w.bob
            .usage()
            .list_invocations(store::ListInvocationsRequest {
                scope: store::UsageScope::Agent as i32,
                agent_id: id.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "BILLED_TO_CALLER",
    );

    // A session of the default agent lives in the caller's workspace.
    let session = w
        .carol
        .sessions()
        .get_session(store::GetSessionRequest {
            session_id: carols.session_id.clone(),
            ..Default::default()
        })
        .await
        .expect("Carol reads her session")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(session.user_id, w.ids.carol);
    assert!(!session.workspace_id.is_empty());
    w.suite.stop().await;
}

#[tokio::test]
async fn org_admins_test_its_draft_viewers_do_not_run_it_and_nobody_grants_it() {
    let w = acme().await;
    let id = w.assistant.id.clone();
    let draft = |user: &UserClient| {
        let mut invoke = user.invoke();
        let id = id.clone();
        async move {
            invoke
                .invoke(gateway::InvokeRequest {
                    agent_id: id,
                    input: "try the draft".into(),
                    draft: true,
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    // Owners and admins edit and deploy it, so they test its draft too.
    let tried = draft(&w.alice)
        .await
        .expect("the org owner tests the draft");
    assert!(tried.draft);
    assert_eq!(tried.version_number, 0);
    assert_status(
        draft(&w.bob).await,
        Code::PermissionDenied,
        "only the agent's owner",
    );

    // A viewer sees it but never runs it.
    assert_status(
        w.vera.run(&id, "hello").await,
        Code::PermissionDenied,
        "viewers read agents but never run",
    );
    // Another org's member does not see it at all.
    let mallory = w.suite.user("mallory").await;
    mallory.new_org("Elsewhere").await;
    assert_status(mallory.run(&id, "hello").await, Code::NotFound, "not found");

    // Every member already runs it, so it takes no share tokens: minting one
    // would reshare it (and a DELEGATE token would bill an owner it has not).
    for (who, kind) in [
        (&w.alice, sharing::GrantKind::Delegate),
        (&w.alice, sharing::GrantKind::Invoke),
        (&w.bob, sharing::GrantKind::Invoke),
    ] {
        assert_status(
            who.sharing()
                .create_grant(sharing::CreateGrantRequest {
                    agent_id: id.clone(),
                    kind: kind as i32,
                    label: "widget".into(),
                    expire_time: None,
                    pinned_version: None,
                    limits: None,
                })
                .await,
            Code::PermissionDenied,
            "the org default agent cannot be shared",
        );
    }
    assert_status(
        w.alice
            .sharing()
            .share_agent(sharing::ShareAgentRequest {
                agent_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "the org default agent cannot be shared",
    );
    assert_status(
        w.alice
            .registry()
            .delete_agent(registry::DeleteAgentRequest {
                agent_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    w.suite.stop().await;
}
