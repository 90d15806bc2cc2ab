//! The workspace store (DESIGN.md, "The store's workspaces"), through the
//! gateway: the five agent tools, the privacy boundary, partitions by
//! workspace, one-way publishing, agent deletion, compare-and-set, watch and
//! quotas.

use std::collections::BTreeSet;
use std::time::Duration;

use agentshare_e2e::{Authed, Suite, UserClient, eventually_within};
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use sqlx::Row;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt;

use crate::assert_status;

type Client = WorkspaceStoreServiceClient<Authed>;

fn tools(user: &UserClient) -> Client {
    WorkspaceStoreServiceClient::new(user.channel())
}

fn text(agent: &str, key: &str, value: &str) -> store::WorkspaceWriteRequest {
    store::WorkspaceWriteRequest {
        agent_id: agent.into(),
        key: key.into(),
        value: value.into(),
        content_type: store::ItemContentType::Text as i32,
        expected_revision: None,
    }
}

fn json(agent: &str, key: &str, value: &str) -> store::WorkspaceWriteRequest {
    store::WorkspaceWriteRequest {
        content_type: store::ItemContentType::Json as i32,
        ..text(agent, key, value)
    }
}

fn read(agent: &str, key: &str) -> store::WorkspaceReadRequest {
    store::WorkspaceReadRequest {
        agent_id: agent.into(),
        key: key.into(),
    }
}

fn list(agent: &str) -> store::WorkspaceListRequest {
    store::WorkspaceListRequest {
        agent_id: agent.into(),
        ..Default::default()
    }
}

fn delete(agent: &str, key: &str) -> store::WorkspaceDeleteRequest {
    store::WorkspaceDeleteRequest {
        agent_id: agent.into(),
        key: key.into(),
        expected_revision: None,
    }
}

fn publish(agent: &str, key: &str, target: &str) -> store::WorkspacePublishRequest {
    store::WorkspacePublishRequest {
        agent_id: agent.into(),
        key: key.into(),
        target_agent_id: target.into(),
        target_key: None,
        expected_target_revision: None,
    }
}

fn watch_from(agent: &str, after: Option<i64>) -> store::WatchRequest {
    store::WatchRequest {
        agent_id: agent.into(),
        key_prefix: String::new(),
        after_revision: after,
        omit_values: false,
    }
}

async fn write(client: &mut Client, request: store::WorkspaceWriteRequest) -> store::WorkspaceItem {
    client
        .workspace_write(request)
        .await
        .expect("write")
        .into_inner()
        .item
        .expect("item")
}

async fn value_of(client: &mut Client, agent: &str, key: &str) -> String {
    client
        .workspace_read(read(agent, key))
        .await
        .expect("read")
        .into_inner()
        .item
        .expect("item")
        .value
}

/// Every key of every page of a listing.
async fn all_pages(client: &mut Client, agent: &str, prefix: &str, page_size: i32) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .workspace_list(store::WorkspaceListRequest {
                agent_id: agent.into(),
                key_prefix: prefix.into(),
                page_size,
                page_token: token,
            })
            .await
            .expect("page")
            .into_inner();
        keys.extend(page.items.into_iter().map(|i| i.key));
        if page.next_page_token.is_empty() {
            return keys;
        }
        token = page.next_page_token;
    }
}

/// The current revision named in an ABORTED answer's ErrorInfo.
fn current_revision(status: &Status) -> i64 {
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "REVISION_MISMATCH");
    info.metadata["current_revision"].parse().expect("number")
}

/// The subject and description of a RESOURCE_EXHAUSTED answer's QuotaFailure.
fn quota_violation(status: &Status) -> (String, String) {
    let failure = status.get_details_quota_failure().expect("quota failure");
    let violation = failure.violations.first().expect("violation").clone();
    (violation.subject, violation.description)
}

/// Alice's org, and Bob as a member of it; both signed in.
async fn alice_and_bob(suite: &Suite) -> (UserClient, UserClient, sharing::Org) {
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let org = alice.new_org("Acme").await;
    stepped_up(suite, "alice")
        .await
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::UserId(
                bob.user_id().await,
            )),
            role: sharing::OrgRole::Member as i32,
        })
        .await
        .expect("bob joins");
    (alice, bob, org)
}

/// A user's clients with a token that passed a second factor just now.
async fn stepped_up(suite: &Suite, user: &str) -> UserClient {
    suite
        .user(user)
        .await
        .with_token(&suite.token_with(user, true, 7200))
}

async fn next_change(stream: &mut Streaming<store::WatchResponse>) -> store::WorkspaceChange {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a change within 10 s")
            .expect("stream")
            .expect("open stream");
        if let Some(store::watch_response::Event::Change(change)) = message.event {
            return change;
        }
    }
}

#[tokio::test]
async fn the_five_tools_write_read_list_and_delete_items_with_their_metadata() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let cooking = alice.deployed_agent("Cooking").await;
    let main = alice.deployed_agent("Main").await;
    let mut client = tools(&alice);

    let list_item = write(&mut client, json(&cooking.id, "shopping", r#"{"eggs":12}"#)).await;
    assert_eq!(list_item.content_type, store::ItemContentType::Json as i32);
    assert_eq!(list_item.created_by, cooking.id);
    assert_eq!(list_item.size_bytes, 11);
    let long = "é".repeat(300);
    let note = write(&mut client, text(&cooking.id, "notes", &long)).await;
    assert!(note.revision > list_item.revision);
    assert_status(
        client
            .workspace_write(json(&cooking.id, "bad", "{eggs: 12"))
            .await,
        Code::InvalidArgument,
        "not valid JSON",
    );
    write(
        &mut client,
        text(&cooking.id, "free", "{eggs: 12 — any text"),
    )
    .await;

    // All of a user's private agents share one workspace: Main sees what
    // Cooking wrote, and its rewrite keeps the first writer as creator.
    assert_eq!(
        value_of(&mut client, &main.id, "shopping").await,
        r#"{"eggs":12}"#
    );
    let rewritten = write(&mut client, json(&main.id, "shopping", r#"{"eggs":6}"#)).await;
    assert_eq!(rewritten.created_by, cooking.id);
    assert!(rewritten.revision > note.revision);
    let (created, updated) = (
        rewritten.create_time.expect("create time"),
        rewritten.update_time.expect("update time"),
    );
    assert!((updated.seconds, updated.nanos) >= (created.seconds, created.nanos));

    let page = client
        .workspace_list(list(&main.id))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.partition, format!("user-{}", alice.user_id().await));
    let keys: Vec<_> = page.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["free", "notes", "shopping"]);
    let notes = &page.items[1];
    assert_eq!(notes.preview, "é".repeat(200));
    assert_eq!(notes.size_bytes, 600);
    assert_eq!(notes.created_by, cooking.id);
    assert_eq!(notes.revision, note.revision);
    assert!(notes.update_time.is_some());
    assert_eq!(page.revision, rewritten.revision);
    let usage = page.usage.expect("usage");
    assert_eq!(usage.item_count, 3);
    assert_eq!(usage.value_bytes_limit, 256 * 1024);

    let full = client
        .workspace_read(read(&cooking.id, "notes"))
        .await
        .expect("read")
        .into_inner()
        .item
        .expect("item");
    assert_eq!(full.value, long);
    assert_eq!(full.content_type, store::ItemContentType::Text as i32);

    let deleted = client
        .workspace_delete(delete(&cooking.id, "notes"))
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.deleted_item_revision, note.revision);
    assert_status(
        client.workspace_read(read(&cooking.id, "notes")).await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        client.workspace_delete(delete(&cooking.id, "notes")).await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

#[tokio::test]
async fn bad_keys_are_refused_and_pages_return_each_item_once_under_writes() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.deployed_agent("Notes").await;
    let mut client = tools(&alice);

    for (key, why) in [
        ("", "must not be empty"),
        ("tab\there", "control character"),
        (&"k".repeat(513), "at most 512"),
    ] {
        let status = assert_status(
            client.workspace_write(text(&agent.id, key, "v")).await,
            Code::InvalidArgument,
            why,
        );
        let bad = status.get_details_bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "key");
    }
    write(&mut client, text(&agent.id, &"ü".repeat(256), "512 bytes")).await;

    let mut expected = BTreeSet::new();
    for n in 0..25 {
        let key = format!("notes/{n:02}");
        write(&mut client, text(&agent.id, &key, "x")).await;
        expected.insert(key);
    }
    write(&mut client, text(&agent.id, "other", "x")).await;

    // Writers add and remove other keys between every page.
    let writer = {
        let mut client = client.clone();
        let agent = agent.id.clone();
        tokio::spawn(async move {
            for n in 0..60 {
                let key = format!("notes/{:02}-new", n % 30);
                client
                    .workspace_write(text(&agent, &key, "y"))
                    .await
                    .expect("write");
                let _ = client.workspace_delete(delete(&agent, &key)).await;
            }
        })
    };
    let listed = all_pages(&mut client, &agent.id, "notes/", 3).await;
    writer.await.expect("writer");
    let originals: Vec<_> = listed
        .iter()
        .filter(|k| !k.ends_with("-new"))
        .cloned()
        .collect();
    assert_eq!(originals, expected.iter().cloned().collect::<Vec<_>>());
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, listed, "in key order, each once");

    assert_status(
        client
            .workspace_list(store::WorkspaceListRequest {
                agent_id: agent.id.clone(),
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_shared_agent_never_reads_a_private_workspace_whatever_the_caller_tries() {
    let suite = Suite::start().await;
    let (alice, bob, _) = alice_and_bob(&suite).await;
    let alice_private = alice.deployed_agent("Alice's diary").await;
    let alice_shared = alice.shared_agent("Team helper").await;
    let bob_private = bob.deployed_agent("Bob's diary").await;
    let bob_shared = bob.shared_agent("Bob's helper").await;
    let (mut a, mut b) = (tools(&alice), tools(&bob));

    write(&mut a, text(&alice_private.id, "secret", "alice's secret")).await;
    write(&mut b, text(&bob_private.id, "secret", "bob's secret")).await;
    write(&mut a, text(&alice_shared.id, "team", "for everyone")).await;

    // Through the shared agents, neither private workspace is reachable,
    // whatever key is guessed.
    for (mut client, agent) in [
        (a.clone(), &alice_shared.id),
        (b.clone(), &alice_shared.id),
        (a.clone(), &bob_shared.id),
        (b.clone(), &bob_shared.id),
    ] {
        for key in ["secret", "../secret", "user-secret"] {
            assert_status(
                client.workspace_read(read(agent, key)).await,
                Code::NotFound,
                "not found",
            );
        }
        let page = client
            .workspace_list(list(agent))
            .await
            .expect("list")
            .into_inner();
        assert!(
            page.partition.starts_with(&format!("agent-{agent}/")),
            "{}",
            page.partition
        );
        assert!(page.items.iter().all(|i| i.key != "secret"));
    }
    assert_eq!(
        value_of(&mut b, &alice_shared.id, "team").await,
        "for everyone"
    );

    // Another user's private agent is invisible through every tool.
    let mut watch = b.clone();
    assert_status(
        b.workspace_list(list(&alice_private.id)).await,
        Code::NotFound,
        "",
    );
    assert_status(
        b.workspace_read(read(&alice_private.id, "secret")).await,
        Code::NotFound,
        "",
    );
    assert_status(
        b.workspace_write(text(&alice_private.id, "secret", "overwrite"))
            .await,
        Code::NotFound,
        "",
    );
    assert_status(
        b.workspace_delete(delete(&alice_private.id, "secret"))
            .await,
        Code::NotFound,
        "",
    );
    assert_status(
        b.workspace_publish(publish(&alice_private.id, "secret", &bob_shared.id))
            .await,
        Code::NotFound,
        "",
    );
    assert_status(
        b.workspace_publish(publish(&bob_private.id, "secret", &alice_private.id))
            .await,
        Code::NotFound,
        "",
    );
    assert_status(
        watch.watch(watch_from(&alice_private.id, None)).await,
        Code::NotFound,
        "",
    );
    // Publishing out of a shared store into anything is refused, so a
    // shared agent cannot carry data across either.
    assert_status(
        b.workspace_publish(publish(&alice_shared.id, "team", &bob_shared.id))
            .await,
        Code::FailedPrecondition,
        "one way",
    );

    assert_eq!(
        value_of(&mut a, &alice_private.id, "secret").await,
        "alice's secret"
    );
    assert_eq!(
        value_of(&mut b, &bob_private.id, "secret").await,
        "bob's secret"
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_shared_agents_store_is_split_by_workspace_and_the_default_agents_is_org_wide() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let org = alice.new_org("Acme").await;
    let strong = stepped_up(&suite, "alice").await;
    strong
        .tenancy()
        .update_org(sharing::UpdateOrgRequest {
            workspaces_enabled: Some(true),
            ..Default::default()
        })
        .await
        .expect("enable workspaces");
    let sales = strong
        .tenancy()
        .create_workspace(sharing::CreateWorkspaceRequest {
            name: "Sales".into(),
        })
        .await
        .expect("sales")
        .into_inner()
        .workspace
        .expect("workspace")
        .id;
    let home = alice.in_workspace(&org.default_workspace_id);
    let agent = home.shared_agent("Helper").await;
    strong
        .sharing()
        .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
            agent_id: agent.id.clone(),
            workspace_ids: vec![sales.clone()],
        })
        .await
        .expect("share into sales");
    let (mut in_home, mut in_sales) = (tools(&home), tools(&alice.in_workspace(&sales)));

    write(&mut in_home, text(&agent.id, "pipeline", "home's")).await;
    assert_status(
        in_sales.workspace_read(read(&agent.id, "pipeline")).await,
        Code::NotFound,
        "not found",
    );
    write(&mut in_sales, text(&agent.id, "pipeline", "sales'")).await;
    assert_eq!(
        value_of(&mut in_home, &agent.id, "pipeline").await,
        "home's"
    );
    assert_eq!(
        value_of(&mut in_sales, &agent.id, "pipeline").await,
        "sales'"
    );
    let partition = |page: store::WorkspaceListResponse| page.partition;
    assert_eq!(
        partition(
            in_home
                .workspace_list(list(&agent.id))
                .await
                .expect("list")
                .into_inner()
        ),
        format!("agent-{}/{}", agent.id, org.default_workspace_id)
    );
    assert_eq!(
        partition(
            in_sales
                .workspace_list(list(&agent.id))
                .await
                .expect("list")
                .into_inner()
        ),
        format!("agent-{}/{sales}", agent.id)
    );

    let ala = home
        .registry()
        .get_default_agent(registry::GetDefaultAgentRequest {})
        .await
        .expect("default agent")
        .into_inner()
        .agent
        .expect("agent");
    write(&mut in_home, text(&ala.id, "memory", "shared by all")).await;
    assert_eq!(
        value_of(&mut in_sales, &ala.id, "memory").await,
        "shared by all"
    );
    assert_eq!(
        partition(
            in_sales
                .workspace_list(list(&ala.id))
                .await
                .expect("list")
                .into_inner()
        ),
        format!("agent-{}", ala.id)
    );
    suite.stop().await;
}

#[tokio::test]
async fn publish_copies_one_way_from_private_into_a_shared_agents_partition() {
    let suite = Suite::start().await;
    let (alice, bob, _) = alice_and_bob(&suite).await;
    let private = alice.deployed_agent("Cooking").await;
    let shared = alice.shared_agent("Family").await;
    let other_shared = alice.shared_agent("Team").await;
    let unshared = alice.deployed_agent("Drafts").await;
    let bobs = bob.deployed_agent("Bob's own").await;
    let mut a = tools(&alice);
    write(&mut a, json(&private.id, "list", r#"["eggs"]"#)).await;

    let copy = a
        .workspace_publish(publish(&private.id, "list", &shared.id))
        .await
        .expect("publish")
        .into_inner();
    assert!(copy.created);
    let summary = copy.item.expect("item");
    assert_eq!(summary.key, "list");
    assert_eq!(summary.content_type, store::ItemContentType::Json as i32);
    assert_eq!(
        value_of(&mut tools(&bob), &shared.id, "list").await,
        r#"["eggs"]"#
    );
    let renamed = store::WorkspacePublishRequest {
        target_key: Some("groceries".into()),
        ..publish(&private.id, "list", &shared.id)
    };
    a.workspace_publish(renamed.clone())
        .await
        .expect("publish as");
    assert_status(
        a.workspace_publish(store::WorkspacePublishRequest {
            expected_target_revision: Some(0),
            ..renamed
        })
        .await,
        Code::Aborted,
        "already exists",
    );

    // Later changes to either copy leave the other alone.
    write(&mut a, json(&private.id, "list", r#"["milk"]"#)).await;
    assert_eq!(value_of(&mut a, &shared.id, "list").await, r#"["eggs"]"#);

    assert_status(
        a.workspace_publish(publish(&private.id, "list", &unshared.id))
            .await,
        Code::FailedPrecondition,
        "not shared",
    );
    assert_status(
        a.workspace_publish(publish(&private.id, "list", &bobs.id))
            .await,
        Code::NotFound,
        "",
    );
    assert_status(
        a.workspace_publish(publish(
            &private.id,
            "list",
            &uuid::Uuid::now_v7().to_string(),
        ))
        .await,
        Code::NotFound,
        "",
    );
    assert_status(
        a.workspace_publish(publish(&private.id, "missing", &shared.id))
            .await,
        Code::NotFound,
        "missing",
    );
    assert_status(
        a.workspace_publish(publish(&shared.id, "list", &private.id))
            .await,
        Code::FailedPrecondition,
        "one way",
    );
    assert_status(
        a.workspace_publish(publish(&shared.id, "list", &other_shared.id))
            .await,
        Code::FailedPrecondition,
        "one way",
    );
    assert_status(
        a.workspace_publish(publish(&private.id, "list", &private.id))
            .await,
        Code::FailedPrecondition,
        "its own store",
    );
    suite.stop().await;
}

/// Partitions of the store's database that belong to `agent`.
async fn stored_partitions(suite: &Suite, prefix: &str) -> Vec<String> {
    let db = suite.db(ServiceName::Store).await;
    let rows = sqlx::query("SELECT partition FROM workspace_items")
        .fetch_all(&db.pool)
        .await
        .expect("items");
    let mut partitions: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>(0).expect("partition"))
        .filter(|p| p.starts_with(prefix))
        .collect();
    partitions.dedup();
    partitions
}

#[tokio::test]
async fn deleting_an_agent_removes_its_store_and_private_workspaces_stay() {
    let suite = Suite::start().await;
    let (alice, bob, _) = alice_and_bob(&suite).await;
    let shared = alice.shared_agent("Team").await;
    let private = alice.deployed_agent("Diary").await;
    let (mut a, mut b) = (tools(&alice), tools(&bob));
    write(&mut a, text(&shared.id, "plan", "alice's")).await;
    write(&mut b, text(&shared.id, "plan", "bob's")).await;
    write(&mut a, text(&private.id, "diary", "dear diary")).await;
    assert_eq!(
        stored_partitions(&suite, &format!("agent-{}", shared.id))
            .await
            .len(),
        1
    );

    for agent in [&shared.id, &private.id] {
        alice
            .registry()
            .delete_agent(registry::DeleteAgentRequest {
                agent_id: agent.clone(),
            })
            .await
            .expect("delete");
    }
    assert_status(
        b.workspace_read(read(&shared.id, "plan")).await,
        Code::NotFound,
        "",
    );
    eventually_within(
        Duration::from_secs(10),
        "the store removed with its agent",
        || async {
            let left = stored_partitions(&suite, &format!("agent-{}", shared.id)).await;
            if left.is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await;
    // The private workspace is the user's, not the deleted agent's.
    let diary = alice.deployed_agent("New diary").await;
    assert_eq!(value_of(&mut a, &diary.id, "diary").await, "dear diary");
    suite.stop().await;
}

#[tokio::test]
async fn fifty_parallel_incrementers_end_at_exactly_fifty() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.shared_agent("Counter").await;
    let client = tools(&alice);
    let mut workers = Vec::new();
    for _ in 0..50 {
        let (mut client, agent) = (client.clone(), agent.id.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let current = match client.workspace_read(read(&agent, "counter")).await {
                    Ok(item) => item.into_inner().item.expect("item"),
                    Err(status) if status.code() == Code::NotFound => {
                        store::WorkspaceItem::default()
                    }
                    Err(status) => panic!("read: {status:?}"),
                };
                let count: i64 = if current.value.is_empty() {
                    0
                } else {
                    current.value.parse().expect("n")
                };
                let attempt = store::WorkspaceWriteRequest {
                    expected_revision: Some(current.revision),
                    ..json(&agent, "counter", &(count + 1).to_string())
                };
                match client.workspace_write(attempt).await {
                    Ok(_) => return,
                    Err(status) if status.code() == Code::Aborted => {
                        current_revision(&status);
                    }
                    Err(status) => panic!("write: {status:?}"),
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("incrementer");
    }
    assert_eq!(
        value_of(&mut client.clone(), &agent.id, "counter").await,
        "50"
    );
    suite.stop().await;
}

#[tokio::test]
async fn compare_and_set_refuses_stale_revisions_and_names_the_current_one() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.deployed_agent("Notes").await;
    let mut client = tools(&alice);
    let create = store::WorkspaceWriteRequest {
        expected_revision: Some(0),
        ..text(&agent.id, "doc", "v1")
    };
    let first = client
        .workspace_write(create.clone())
        .await
        .expect("create")
        .into_inner();
    assert!(first.created);
    let revision = first.item.expect("item").revision;
    let status = assert_status(
        client.workspace_write(create).await,
        Code::Aborted,
        "already exists",
    );
    assert_eq!(current_revision(&status), revision);
    let second = client
        .workspace_write(store::WorkspaceWriteRequest {
            expected_revision: Some(revision),
            ..text(&agent.id, "doc", "v2")
        })
        .await
        .expect("matching revision")
        .into_inner();
    assert!(!second.created);
    let now = second.item.expect("item").revision;
    let stale = store::WorkspaceWriteRequest {
        expected_revision: Some(revision),
        ..text(&agent.id, "doc", "v3")
    };
    assert_eq!(
        current_revision(&assert_status(
            client.workspace_write(stale).await,
            Code::Aborted,
            ""
        )),
        now
    );
    let absent = store::WorkspaceWriteRequest {
        expected_revision: Some(7),
        ..text(&agent.id, "nothing", "v")
    };
    assert_eq!(
        current_revision(&assert_status(
            client.workspace_write(absent).await,
            Code::Aborted,
            "does not exist"
        )),
        0
    );

    let guarded = |expected| store::WorkspaceDeleteRequest {
        expected_revision: Some(expected),
        ..delete(&agent.id, "doc")
    };
    assert_status(
        client.workspace_delete(guarded(0)).await,
        Code::InvalidArgument,
        "expected_revision",
    );
    assert_eq!(
        current_revision(&assert_status(
            client.workspace_delete(guarded(revision)).await,
            Code::Aborted,
            ""
        )),
        now
    );
    client
        .workspace_delete(guarded(now))
        .await
        .expect("delete at its revision");
    assert_eq!(
        current_revision(&assert_status(
            client.workspace_delete(guarded(now)).await,
            Code::Aborted,
            ""
        )),
        0
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_killed_watch_resumes_with_no_change_missed_or_repeated() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.shared_agent("Feed").await;
    let mut client = tools(&alice);
    let first = write(&mut client, text(&agent.id, "seed", "0"))
        .await
        .revision;

    let mut stream = client
        .watch(watch_from(&agent.id, Some(first - 1)))
        .await
        .expect("watch")
        .into_inner();
    let writer = {
        let (mut client, agent) = (client.clone(), agent.id.clone());
        tokio::spawn(async move {
            for n in 0..60 {
                let key = format!("k{}", n % 7);
                client
                    .workspace_write(text(&agent, &key, &n.to_string()))
                    .await
                    .expect("write");
                if n % 5 == 4 {
                    client
                        .workspace_delete(delete(&agent, &key))
                        .await
                        .expect("delete");
                }
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 25 {
        let change = next_change(&mut stream).await;
        if change.kind == store::WorkspaceChangeKind::Put as i32 {
            let item = change.item.as_ref().expect("item");
            assert_eq!(item.revision, change.revision);
            assert_eq!(item.key, change.key);
        }
        seen.push(change.revision);
    }
    drop(stream);
    let resume_from = *seen.last().expect("seen");
    let mut resumed = client
        .watch(watch_from(&agent.id, Some(resume_from)))
        .await
        .expect("resume")
        .into_inner();
    writer.await.expect("writer");
    let last = client
        .workspace_list(list(&agent.id))
        .await
        .expect("list")
        .into_inner()
        .revision;
    while *seen.last().expect("seen") < last {
        seen.push(next_change(&mut resumed).await.revision);
    }
    let expected: Vec<i64> = (first..=last).collect();
    assert_eq!(seen, expected, "every change once, in order");

    // A prefix narrows the stream; values can be left out.
    let mut narrow = client
        .watch(store::WatchRequest {
            agent_id: agent.id.clone(),
            key_prefix: "k3".into(),
            after_revision: Some(first),
            omit_values: true,
        })
        .await
        .expect("watch by prefix")
        .into_inner();
    let change = next_change(&mut narrow).await;
    assert_eq!(change.key, "k3");
    if let Some(item) = change.item {
        assert!(item.value.is_empty() && item.size_bytes > 0);
    }
    suite.stop().await;
}

#[tokio::test]
async fn a_resume_from_before_the_retention_window_is_out_of_range() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.deployed_agent("Old").await;
    let mut client = tools(&alice);
    for n in 0..3 {
        write(&mut client, text(&agent.id, &format!("k{n}"), "v")).await;
    }
    // A day later (the default window) the old changes are pruned by the
    // next write.
    suite.clock.advance(Duration::from_secs(24 * 3600 + 1));
    let mut client = tools(&suite.user("alice").await);
    let fourth = write(&mut client, text(&agent.id, "k3", "v"))
        .await
        .revision;
    assert_status(
        client.watch(watch_from(&agent.id, Some(0))).await,
        Code::OutOfRange,
        "WorkspaceList",
    );
    assert_status(
        client.watch(watch_from(&agent.id, Some(fourth + 10))).await,
        Code::OutOfRange,
        "ahead",
    );
    let mut stream = client
        .watch(watch_from(&agent.id, Some(fourth - 1)))
        .await
        .expect("inside the window")
        .into_inner();
    assert_eq!(next_change(&mut stream).await.revision, fourth);
    suite.stop().await;
}

#[tokio::test]
async fn open_watches_are_capped_per_principal_and_end_when_access_ends() {
    let suite = Suite::start().await;
    let (alice, bob, _) = alice_and_bob(&suite).await;
    let agent = alice.shared_agent("Watched").await;
    let mut b = tools(&bob);
    let mut open = Vec::new();
    for _ in 0..32 {
        let mut stream = b
            .watch(watch_from(&agent.id, None))
            .await
            .expect("watch")
            .into_inner();
        stream.message().await.expect("progress").expect("message");
        open.push(stream);
    }
    let status = assert_status(
        b.watch(watch_from(&agent.id, None)).await,
        Code::ResourceExhausted,
        "close one",
    );
    assert_eq!(quota_violation(&status).0, "open_watches");
    // Alice's cap is her own.
    let mut mine = tools(&alice)
        .watch(watch_from(&agent.id, None))
        .await
        .expect("alice")
        .into_inner();
    mine.message().await.expect("progress");

    drop(open.pop());
    let mut reopened = eventually_within(
        Duration::from_secs(5),
        "the closed watch no longer counting",
        || {
            let mut b = b.clone();
            let request = watch_from(&agent.id, None);
            async move {
                match b.watch(request).await {
                    Ok(stream) => Ok(stream.into_inner()),
                    Err(status) if status.code() == Code::ResourceExhausted => Err(status),
                    Err(status) => panic!("reopen: {status:?}"),
                }
            }
        },
    )
    .await;

    // Unsharing ends Bob's access, and his open stream with it.
    alice
        .sharing()
        .unshare_agent(sharing::UnshareAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("unshare");
    let ended = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match reopened.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ends within the access check period");
    assert_eq!(ended.code(), Code::NotFound, "{ended:?}");
    suite.stop().await;
}

#[tokio::test]
async fn values_and_stores_over_their_quota_are_refused_naming_the_limit_and_use() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.deployed_agent("Big").await;
    let mut client = tools(&alice);
    let limit = 256 * 1024;
    let status = assert_status(
        client
            .workspace_write(text(&agent.id, "huge", &"x".repeat(limit + 1)))
            .await,
        Code::ResourceExhausted,
        "262145 bytes",
    );
    assert_eq!(quota_violation(&status).0, "value_bytes");

    // 64 values of 256 KiB fill the 16 MiB a partition holds by default.
    let full = "x".repeat(limit);
    for n in 0..64 {
        write(&mut client, text(&agent.id, &format!("blob{n:02}"), &full)).await;
    }
    let status = assert_status(
        client
            .workspace_write(text(&agent.id, "one-more", "x"))
            .await,
        Code::ResourceExhausted,
        "delete items",
    );
    assert_eq!(
        quota_violation(&status),
        (
            "total_bytes".to_string(),
            "16777216 of 16777216 bytes used".to_string()
        )
    );
    // Replacing with a smaller value makes room.
    write(&mut client, text(&agent.id, "blob00", "small")).await;
    write(&mut client, text(&agent.id, "one-more", "x")).await;
    suite.stop().await;
}

#[tokio::test]
async fn a_store_holds_at_most_its_item_count() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.deployed_agent("Many").await;
    let client = tools(&alice);
    let mut workers = Vec::new();
    for worker in 0..16 {
        let (mut client, agent) = (client.clone(), agent.id.clone());
        workers.push(tokio::spawn(async move {
            for n in (worker..1000).step_by(16) {
                client
                    .workspace_write(text(&agent, &format!("i{n:04}"), "v"))
                    .await
                    .expect("write");
            }
        }));
    }
    for worker in workers {
        worker.await.expect("writer");
    }
    let mut client = client.clone();
    let status = assert_status(
        client.workspace_write(text(&agent.id, "i1000", "v")).await,
        Code::ResourceExhausted,
        "1000 of 1000 items used",
    );
    assert_eq!(
        quota_violation(&status),
        ("items".to_string(), "1000 of 1000 items used".to_string())
    );
    // Existing items can still change.
    write(&mut client, text(&agent.id, "i0000", "changed")).await;
    assert_eq!(
        all_pages(&mut client, &agent.id, "", 1000).await.len(),
        1000
    );
    suite.stop().await;
}
