//! Who wrote what in a shared agent's store, and who may write it
//! (WorkspaceItem.written_by, SharingService.SetStoreWritePolicy): every
//! item names its writer on read, list and watch, whether it came from the
//! owner, a member, a grant's holder, an anonymous visitor, an automation
//! run or a publish, through a run token or a direct tool call; and the
//! owner's policy refuses the writers it leaves out, with PERMISSION_DENIED
//! naming it, while everyone still reads.

use std::time::Duration;

use agentshare_e2e::{Authed, Suite, UserClient, eventually};
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as scheduler;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use sharing::{AnonymousStoreWrites, StoreWriters};
use store::WriterKind;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::Code;

use crate::assert_status;

type Tools = WorkspaceStoreServiceClient<Authed>;

fn tools(user: &UserClient) -> Tools {
    WorkspaceStoreServiceClient::new(user.channel())
}

fn write_request(agent: &str, key: &str, value: &str) -> store::WorkspaceWriteRequest {
    store::WorkspaceWriteRequest {
        agent_id: agent.into(),
        key: key.into(),
        value: value.into(),
        content_type: store::ItemContentType::Text as i32,
        expected_revision: None,
    }
}

/// A script line for the echo runtime: the run writes through its token.
fn script_write(key: &str, value: &str) -> String {
    format!("/workspace_write {{\"key\":\"{key}\",\"value\":\"{value}\"}}")
}

async fn write(
    user: &UserClient,
    agent: &str,
    key: &str,
    value: &str,
) -> Result<store::WorkspaceItem, tonic::Status> {
    tools(user)
        .workspace_write(write_request(agent, key, value))
        .await
        .map(|r| r.into_inner().item.expect("item"))
}

async fn read(user: &UserClient, agent: &str, key: &str) -> store::WorkspaceItem {
    tools(user)
        .workspace_read(store::WorkspaceReadRequest {
            agent_id: agent.into(),
            key: key.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("read {key}: {status:?}"))
        .into_inner()
        .item
        .expect("item")
}

/// The writer of `key` as WorkspaceRead and WorkspaceList both show it;
/// they must agree.
async fn writer_of(user: &UserClient, agent: &str, key: &str) -> store::ItemWriter {
    let read = read(user, agent, key)
        .await
        .written_by
        .expect("written_by on read");
    let listed = tools(user)
        .workspace_list(store::WorkspaceListRequest {
            agent_id: agent.into(),
            key_prefix: key.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .items
        .into_iter()
        .find(|item| item.key == key)
        .expect("listed")
        .written_by
        .expect("written_by on list");
    assert_eq!(read, listed, "read and list name the same writer of {key}");
    read
}

/// Alice's org with Bob as a member; tokens outlive the clock moves of the
/// automation test.
async fn acme(suite: &Suite) -> (UserClient, UserClient, String, String) {
    let acme = suite
        .org("Acme")
        .member("bob", sharing::OrgRole::Member)
        .tokens_for(30 * 86_400)
        .build()
        .await;
    let alice_id = acme.owner.user_id().await;
    let bob = acme.members[0].clone();
    (acme.owner, bob.client, alice_id, bob.user_id)
}

async fn set_policy(
    owner: &UserClient,
    agent: &str,
    writers: StoreWriters,
    anonymous: AnonymousStoreWrites,
) -> Result<sharing::StoreWritePolicy, tonic::Status> {
    owner
        .sharing()
        .set_store_write_policy(sharing::SetStoreWritePolicyRequest {
            agent_id: agent.into(),
            writers: writers as i32,
            anonymous_writes: anonymous as i32,
        })
        .await
        .map(|r| r.into_inner().policy.expect("policy"))
}

#[tokio::test]
async fn the_owner_a_member_a_visitor_and_a_publish_each_show_their_writer() {
    let suite = Suite::start().await;
    let (alice, bob, alice_id, bob_id) = acme(&suite).await;
    let notes = alice.shared_agent("Notes").await;

    // The owner through a direct tool call, a member through a run token.
    write(&alice, &notes.id, "by-owner", "from alice")
        .await
        .expect("owner writes");
    let run = bob
        .run(&notes.id, &script_write("by-member", "from bob"))
        .await
        .expect("bob runs");
    assert!(
        run.output_text.contains("wrote by-member"),
        "{}",
        run.output_text
    );

    // An anonymous visitor of a DELEGATE widget, in a run of its own
    // session, and once directly with the token alone.
    let (grant_id, token) = alice.grant(&notes.id, sharing::GrantKind::Delegate).await;
    let visitor = suite.anonymous().await.with_grant(&token);
    let visit = visitor
        .run(&notes.id, &script_write("by-visitor", "from a visitor"))
        .await
        .expect("the visitor runs");
    assert!(!visit.session_id.is_empty());
    write(&visitor, &notes.id, "by-visitor-directly", "hello")
        .await
        .expect("the visitor writes");

    // A publish from Alice's private store into the shared one.
    let diary = alice.deployed_agent("Diary").await;
    write(&alice, &diary.id, "draft", "private first")
        .await
        .expect("private write");
    tools(&alice)
        .workspace_publish(store::WorkspacePublishRequest {
            agent_id: diary.id.clone(),
            key: "draft".into(),
            target_agent_id: notes.id.clone(),
            target_key: Some("published".into()),
            expected_target_revision: None,
        })
        .await
        .expect("publish");

    // Bob, another user, tells each writer apart on read and list.
    let owner = writer_of(&bob, &notes.id, "by-owner").await;
    assert_eq!(owner.kind(), WriterKind::User);
    assert_eq!(
        (owner.user_id.as_str(), owner.grant_id.as_str()),
        (alice_id.as_str(), "")
    );
    assert_eq!(owner.via_agent_id, notes.id);

    let member = writer_of(&alice, &notes.id, "by-member").await;
    assert_eq!(member.kind(), WriterKind::User);
    assert_eq!(member.user_id, bob_id);
    assert_eq!(member.via_agent_id, notes.id);

    let anonymous = writer_of(&bob, &notes.id, "by-visitor").await;
    assert_eq!(anonymous.kind(), WriterKind::AnonymousSession);
    assert_eq!(
        (
            anonymous.user_id.as_str(),
            anonymous.grant_id.as_str(),
            anonymous.session_id.as_str()
        ),
        ("", grant_id.as_str(), visit.session_id.as_str()),
        "the visitor's session, never the owner the grant acts as"
    );
    let direct = writer_of(&bob, &notes.id, "by-visitor-directly").await;
    assert_eq!(direct.kind(), WriterKind::AnonymousSession);
    assert_eq!(
        (direct.grant_id.as_str(), direct.session_id.as_str()),
        (grant_id.as_str(), "")
    );

    let published = writer_of(&bob, &notes.id, "published").await;
    assert_eq!(published.kind(), WriterKind::User);
    assert_eq!(published.user_id, alice_id);
    assert_eq!(published.via_agent_id, notes.id);
    assert_eq!(published.published_from_agent_id, diary.id);

    // The last write wins: Bob replacing Alice's item makes him its writer.
    write(&bob, &notes.id, "by-owner", "bob was here")
        .await
        .expect("bob replaces it");
    assert_eq!(
        writer_of(&alice, &notes.id, "by-owner").await.user_id,
        bob_id
    );
}

#[tokio::test]
async fn grant_holders_writes_name_their_grant_and_watch_carries_the_writer() {
    let suite = Suite::start().await;
    let (alice, bob, _, bob_id) = acme(&suite).await;
    let notes = alice.shared_agent("Notes").await;
    let (invoke_id, invoke_token) = alice.grant(&notes.id, sharing::GrantKind::Invoke).await;
    let (delegate_id, delegate_token) = alice.grant(&notes.id, sharing::GrantKind::Delegate).await;

    // Alice watches the shared partition while a signed-in DELEGATE holder
    // writes into it.
    let mut changes = tools(&alice)
        .watch(store::WatchRequest {
            agent_id: notes.id.clone(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let delegate = bob.with_grant(&delegate_token);
    delegate
        .run(&notes.id, &script_write("by-delegate", "as bob"))
        .await
        .expect("delegate run");
    let writer = writer_of(&alice, &notes.id, "by-delegate").await;
    assert_eq!(writer.kind(), WriterKind::DelegateGrant);
    assert_eq!(
        (writer.user_id.as_str(), writer.grant_id.as_str()),
        (bob_id.as_str(), delegate_id.as_str())
    );
    let change = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), changes.message())
            .await
            .expect("a change within 10 s")
            .expect("stream")
            .expect("open");
        if let Some(store::watch_response::Event::Change(change)) = message.event {
            break change;
        }
    };
    assert_eq!(change.key, "by-delegate");
    assert_eq!(change.item.and_then(|i| i.written_by), Some(writer));

    // An INVOKE holder writes their own partition, through a run and
    // directly.
    let holder = bob.with_grant(&invoke_token);
    holder
        .run(&notes.id, &script_write("mine", "own data"))
        .await
        .expect("invoke run");
    let writer = writer_of(&holder, &notes.id, "mine").await;
    assert_eq!(writer.kind(), WriterKind::InvokeGrant);
    assert_eq!(
        (writer.user_id.as_str(), writer.grant_id.as_str()),
        (bob_id.as_str(), invoke_id.as_str())
    );
    assert_eq!(writer.via_agent_id, notes.id);
}

#[tokio::test]
async fn an_automation_runs_writes_name_the_run_and_its_user() {
    let suite = Suite::builder()
        .scheduler(crate::firing::fast())
        .start()
        .await;
    let (alice, bob, _, bob_id) = acme(&suite).await;
    let nightly = registry::Automation {
        task: script_write("by-automation", "nightly digest"),
        ..crate::automations::automation(
            "digest",
            "Digest",
            crate::automations::hourly(0),
            "UTC",
            &[],
        )
    };
    let agent = crate::automations::agent_with(&alice, "Digest", Vec::new(), vec![nightly]).await;
    crate::automations::subscribe(
        &bob,
        &agent.id,
        "digest",
        true,
        &[scheduler::NotificationChannel::Web],
    )
    .await
    .expect("bob subscribes");

    crate::firing::to_next_hour(&suite, 1);
    let run = eventually("bob's automation run to finish", || async {
        crate::automations::automations(&bob)
            .list_runs(scheduler::ListRunsRequest::default())
            .await
            .ok()?
            .into_inner()
            .runs
            .into_iter()
            .find(|run| run.finish_time.is_some())
    })
    .await;
    assert_eq!(
        run.status(),
        scheduler::AutomationRunStatus::Succeeded,
        "{run:?}"
    );

    let writer = writer_of(&alice, &agent.id, "by-automation").await;
    assert_eq!(writer.kind(), WriterKind::AutomationRun);
    assert_eq!(
        (writer.user_id.as_str(), writer.automation_run_id.as_str()),
        (bob_id.as_str(), run.id.as_str())
    );
    assert_eq!(writer.via_agent_id, agent.id);
}

#[tokio::test]
async fn the_owners_store_write_policy_decides_who_writes_and_everyone_still_reads() {
    let suite = Suite::start().await;
    let (alice, bob, _, _) = acme(&suite).await;
    let notes = alice.shared_agent("Notes").await;
    let (_, delegate_token) = alice.grant(&notes.id, sharing::GrantKind::Delegate).await;
    let (_, invoke_token) = alice.grant(&notes.id, sharing::GrantKind::Invoke).await;
    let visitor = suite.anonymous().await.with_grant(&delegate_token);
    let delegate = bob.with_grant(&delegate_token);
    let holder = bob.with_grant(&invoke_token);
    let diary = bob.deployed_agent("Bob's diary").await;
    write(&bob, &diary.id, "idea", "from bob's private store")
        .await
        .expect("private write");
    let publish = || async {
        tools(&bob)
            .workspace_publish(store::WorkspacePublishRequest {
                agent_id: diary.id.clone(),
                key: "idea".into(),
                target_agent_id: notes.id.clone(),
                target_key: None,
                expected_target_revision: None,
            })
            .await
    };

    // The default is today's behaviour: everyone who runs it writes.
    let reach = alice
        .sharing()
        .get_agent_reach(sharing::GetAgentReachRequest {
            agent_id: notes.id.clone(),
        })
        .await
        .expect("reach")
        .into_inner();
    let policy = reach.store_write_policy.expect("policy");
    assert_eq!(
        (policy.writers(), policy.anonymous_writes()),
        (StoreWriters::Runners, AnonymousStoreWrites::Allow)
    );
    for (who, client) in [
        ("alice", &alice),
        ("bob", &bob),
        ("a visitor", &visitor),
        ("a delegate", &delegate),
    ] {
        write(client, &notes.id, "open", who)
            .await
            .unwrap_or_else(|s| panic!("{who} writes: {s:?}"));
    }
    publish().await.expect("bob publishes");

    // Only the owner sets it: a member who sees the agent is refused, an
    // outsider does not see it.
    assert_status(
        set_policy(
            &bob,
            &notes.id,
            StoreWriters::Members,
            AnonymousStoreWrites::Unspecified,
        )
        .await,
        Code::PermissionDenied,
        "",
    );
    let outsider = suite.user("mallory").await;
    outsider.new_org("Elsewhere").await;
    assert_status(
        set_policy(
            &outsider,
            &notes.id,
            StoreWriters::Members,
            AnonymousStoreWrites::Unspecified,
        )
        .await,
        Code::NotFound,
        "",
    );
    assert_status(
        set_policy(
            &alice,
            &notes.id,
            StoreWriters::Unspecified,
            AnonymousStoreWrites::Unspecified,
        )
        .await,
        Code::InvalidArgument,
        "",
    );

    // OWNER_ONLY: the owner writes, directly and through a run; nobody
    // else does, though everyone reads.
    let policy = set_policy(
        &alice,
        &notes.id,
        StoreWriters::OwnerOnly,
        AnonymousStoreWrites::Unspecified,
    )
    .await
    .expect("owner only");
    assert_eq!(
        (policy.writers(), policy.anonymous_writes()),
        (StoreWriters::OwnerOnly, AnonymousStoreWrites::Allow)
    );
    write(&alice, &notes.id, "owner-only", "alice")
        .await
        .expect("the owner writes");
    let alices = alice
        .run(&notes.id, &script_write("owner-run", "alice"))
        .await
        .expect("run");
    assert!(
        alices.output_text.contains("wrote owner-run"),
        "{}",
        alices.output_text
    );
    for (who, client) in [
        ("bob", &bob),
        ("a visitor", &visitor),
        ("a delegate", &delegate),
    ] {
        let refused = assert_status(
            write(client, &notes.id, "open", who).await,
            Code::PermissionDenied,
            "store write policy OWNER_ONLY",
        );
        assert!(
            refused.message().contains("ask the agent's owner"),
            "{}",
            refused.message()
        );
        assert_eq!(
            read(client, &notes.id, "owner-only").await.value,
            "alice",
            "{who} still reads"
        );
    }
    assert_status(
        tools(&bob)
            .workspace_delete(store::WorkspaceDeleteRequest {
                agent_id: notes.id.clone(),
                key: "open".into(),
                expected_revision: None,
            })
            .await,
        Code::PermissionDenied,
        "store write policy OWNER_ONLY",
    );
    assert_status(
        publish().await,
        Code::PermissionDenied,
        "store write policy OWNER_ONLY",
    );
    let bobs = bob
        .run(&notes.id, &script_write("member-run", "bob"))
        .await
        .expect("bob's run ends");
    assert!(
        bobs.output_text.contains("workspace_write failed")
            && bobs.output_text.contains("OWNER_ONLY"),
        "a run's tool call is refused as well: {}",
        bobs.output_text
    );
    // An INVOKE holder's own partition is theirs whatever the mode.
    write(&holder, &notes.id, "mine", "own")
        .await
        .expect("the holder writes their own data");

    // MEMBERS: the owner and members write; grant holders do not.
    set_policy(
        &alice,
        &notes.id,
        StoreWriters::Members,
        AnonymousStoreWrites::Unspecified,
    )
    .await
    .expect("members");
    write(&bob, &notes.id, "members", "bob")
        .await
        .expect("a member writes");
    publish().await.expect("a member publishes");
    for client in [&visitor, &delegate] {
        assert_status(
            write(client, &notes.id, "members", "x").await,
            Code::PermissionDenied,
            "store write policy MEMBERS",
        );
    }

    // RUNNERS with anonymous writes denied: signed-in DELEGATE holders
    // write again, anonymous visitors only read.
    let policy = set_policy(
        &alice,
        &notes.id,
        StoreWriters::Runners,
        AnonymousStoreWrites::Deny,
    )
    .await
    .expect("no anonymous writes");
    assert_eq!(
        (policy.writers(), policy.anonymous_writes()),
        (StoreWriters::Runners, AnonymousStoreWrites::Deny)
    );
    write(&delegate, &notes.id, "signed-in", "bob")
        .await
        .expect("a signed-in delegate writes");
    assert_status(
        write(&visitor, &notes.id, "anonymous", "x").await,
        Code::PermissionDenied,
        "store write policy anonymous_writes DENY",
    );
    let visit = visitor
        .run(&notes.id, &script_write("anonymous", "x"))
        .await
        .expect("the visit ends");
    assert!(
        visit.output_text.contains("anonymous_writes DENY"),
        "{}",
        visit.output_text
    );
    assert_eq!(read(&visitor, &notes.id, "signed-in").await.value, "bob");

    // The owner reads the policy back where they read the agent's reach.
    let reach = alice
        .sharing()
        .get_agent_reach(sharing::GetAgentReachRequest {
            agent_id: notes.id.clone(),
        })
        .await
        .expect("reach")
        .into_inner();
    assert_eq!(reach.store_write_policy, Some(policy));

    // Each change is on the audit trail, before and after; setting what is
    // already set records nothing.
    set_policy(
        &alice,
        &notes.id,
        StoreWriters::Runners,
        AnonymousStoreWrites::Deny,
    )
    .await
    .expect("unchanged");
    let audited: Vec<sharing::AuditEvent> = alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest {
            target_id: notes.id.clone(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events
        .into_iter()
        .filter(|event| event.action == "agent.store_write_policy_changed")
        .collect();
    assert_eq!(audited.len(), 3, "{audited:?}");
    assert!(
        audited
            .iter()
            .any(|event| event.after_json.contains("\"DENY\"")
                && event.before_json.contains("\"MEMBERS\"")),
        "{audited:?}"
    );
}

#[tokio::test]
async fn org_owners_and_admins_set_the_default_agents_policy_for_its_org_wide_store() {
    let suite = Suite::start().await;
    let acme = suite
        .org("Acme")
        .member("bob", sharing::OrgRole::Member)
        .member("ada", sharing::OrgRole::Admin)
        .build()
        .await;
    let (alice, bob, ada) = (
        &acme.owner,
        &acme.members[0].client,
        &acme.members[1].client,
    );
    let assistant = bob
        .registry()
        .get_default_agent(registry::GetDefaultAgentRequest {})
        .await
        .expect("default agent")
        .into_inner()
        .agent
        .expect("agent");
    write(bob, &assistant.id, "memo", "by bob")
        .await
        .expect("a member writes by default");
    assert_status(
        set_policy(
            bob,
            &assistant.id,
            StoreWriters::OwnerOnly,
            AnonymousStoreWrites::Unspecified,
        )
        .await,
        Code::PermissionDenied,
        "",
    );
    set_policy(
        ada,
        &assistant.id,
        StoreWriters::OwnerOnly,
        AnonymousStoreWrites::Unspecified,
    )
    .await
    .expect("an org admin sets it");
    assert_status(
        write(bob, &assistant.id, "memo", "again").await,
        Code::PermissionDenied,
        "store write policy OWNER_ONLY: only org owners and admins write",
    );
    assert_eq!(read(bob, &assistant.id, "memo").await.value, "by bob");
    write(alice, &assistant.id, "memo", "by the org owner")
        .await
        .expect("the org owner writes");
    write(ada, &assistant.id, "note", "by an admin")
        .await
        .expect("an admin writes");
    let writer = writer_of(bob, &assistant.id, "memo").await;
    assert_eq!(writer.user_id, alice.user_id().await);
}
