//! The store: publishing the wrong way, guessing a private key through a
//! shared agent, a teammate's private store through every tool, the value
//! and partition quotas, and ten thousand watches from one principal.

use agentshare_e2e::{Authed, Suite, UserClient};
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use futures::StreamExt;
use serde_json::json;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::{Code, Status};

use super::{Attack, Caller, Row, row, run_table};

/// The most watches one principal holds open on a store replica
/// (`store.max_watches_per_principal`).
const WATCH_CAP: usize = 32;
const WATCH_ATTEMPTS: usize = 10_000;
const VALUE_LIMIT: usize = 256 * 1024;

pub struct World {
    alice: Caller,
    bob: Caller,
    /// Alice's own agent: her private store holds `secret`.
    private: String,
    /// Alice's agent shared with the org.
    shared: String,
    other_shared: String,
    /// Shared, and its partition is full.
    full: String,
    /// Bob's own agent.
    bobs: String,
}

fn tools(c: &UserClient) -> WorkspaceStoreServiceClient<Authed> {
    WorkspaceStoreServiceClient::new(c.channel())
}

fn read(by: &Caller, agent: &str, key: &str) -> Attack {
    let (a, k) = (agent.to_string(), key.to_string());
    let query: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    Attack::by(by)
        .grpc(move |c| async move {
            tools(&c)
                .workspace_read(store::WorkspaceReadRequest {
                    agent_id: a,
                    key: k,
                })
                .await
        })
        .get(format!("/api/v1/agents/{agent}/store:read?key={query}"))
}

fn publish(by: &Caller, from: &str, key: &str, to: &str) -> Attack {
    let (f, k, t) = (from.to_string(), key.to_string(), to.to_string());
    Attack::by(by)
        .grpc(move |c| async move {
            tools(&c)
                .workspace_publish(store::WorkspacePublishRequest {
                    agent_id: f,
                    key: k,
                    target_agent_id: t,
                    ..Default::default()
                })
                .await
        })
        .post(
            format!("/api/v1/agents/{from}/store:publish"),
            json!({ "key": key, "target_agent_id": to }),
        )
}

fn write(by: &Caller, agent: &str, key: &str, value: &str) -> Attack {
    let (a, k, v) = (agent.to_string(), key.to_string(), value.to_string());
    Attack::by(by)
        .grpc(move |c| async move {
            tools(&c)
                .workspace_write(store::WorkspaceWriteRequest {
                    agent_id: a,
                    key: k,
                    value: v,
                    content_type: store::ItemContentType::Text as i32,
                    expected_revision: None,
                })
                .await
        })
        .post(
            format!("/api/v1/agents/{agent}/store:write"),
            json!({ "key": key, "value": value, "content_type": "ITEM_CONTENT_TYPE_TEXT" }),
        )
}

fn watch_request(agent: &str) -> store::WatchRequest {
    store::WatchRequest {
        agent_id: agent.into(),
        key_prefix: String::new(),
        after_revision: None,
        omit_values: false,
    }
}

/// Opens the cap's worth of watches, waiting for slots that closed
/// streams are still giving back.
async fn hold_the_cap(
    client: &UserClient,
    agent: &str,
) -> Result<Vec<tonic::Streaming<store::WatchResponse>>, Status> {
    let mut open = Vec::new();
    for _ in 0..WATCH_CAP {
        let stream = agentshare_e2e::eventually_within(
            std::time::Duration::from_secs(10),
            "a watch slot given back",
            || {
                let mut tools = tools(client);
                let request = watch_request(agent);
                async move {
                    match tools.watch(request).await {
                        Ok(stream) => Ok(Ok(stream.into_inner())),
                        Err(status) if status.code() == Code::ResourceExhausted => Err(status),
                        Err(status) => Ok(Err(status)),
                    }
                }
            },
        )
        .await;
        let mut stream = stream?;
        stream.message().await?;
        open.push(stream);
    }
    Ok(open)
}

/// Holds the cap's worth of watches open, then asks for the rest of ten
/// thousand, 64 at a time: every one past the cap must be refused. A watch
/// ends when the Principal it was opened with expires (60 s), so the held
/// ones are opened afresh every 20 s, between batches.
async fn ten_thousand_watches(client: UserClient, agent: String) -> Result<(), Status> {
    let mut open = hold_the_cap(&client, &agent).await?;
    let mut opened_at = std::time::Instant::now();
    let mut refusals: Vec<Result<(), Status>> = Vec::new();
    let mut attempted = WATCH_CAP;
    while attempted < WATCH_ATTEMPTS {
        if opened_at.elapsed() > std::time::Duration::from_secs(20) {
            drop(std::mem::take(&mut open));
            open = hold_the_cap(&client, &agent).await?;
            opened_at = std::time::Instant::now();
        }
        let batch = 500.min(WATCH_ATTEMPTS - attempted);
        attempted += batch;
        let answers: Vec<Result<(), Status>> = futures::stream::iter(0..batch)
            .map(|_| {
                let mut tools = tools(&client);
                let request = watch_request(&agent);
                async move { tools.watch(request).await.map(drop) }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        refusals.extend(answers);
    }
    drop(open);
    let admitted = refusals.iter().filter(|r| r.is_ok()).count();
    if admitted > 0 {
        return Err(Status::unknown(format!(
            "{admitted} watches past the cap of {WATCH_CAP} were admitted"
        )));
    }
    // Every refusal alike; hand back one of them.
    let mut codes = refusals.into_iter().map(|r| r.expect_err("refused"));
    let first = codes.next().expect("a refusal");
    if let Some(other) = codes.find(|s| s.code() != first.code()) {
        return Err(Status::unknown(format!(
            "refusals differ: {:?} and {:?}",
            first.code(),
            other.code()
        )));
    }
    Err(first)
}

pub fn table() -> Vec<Row<World>> {
    vec![
        row(
            "publishing from a shared store into a private one",
            Code::FailedPrecondition,
            |w: &World| publish(&w.alice, &w.shared, "team", &w.private).says("one way"),
        ),
        row(
            "publishing from a shared store into another shared one",
            Code::FailedPrecondition,
            |w: &World| publish(&w.alice, &w.shared, "team", &w.other_shared).says("one way"),
        ),
        row(
            "publishing into a teammate's private store",
            Code::NotFound,
            |w: &World| publish(&w.alice, &w.private, "secret", &w.bobs),
        ),
        row(
            "publishing out of a teammate's private store",
            Code::NotFound,
            |w: &World| publish(&w.bob, &w.private, "secret", &w.shared),
        ),
        row(
            "guessing a private key through a shared agent",
            Code::NotFound,
            |w: &World| read(&w.bob, &w.shared, "secret"),
        ),
        row(
            "a private key through a shared agent, by its owner",
            Code::NotFound,
            |w: &World| read(&w.alice, &w.shared, "secret"),
        ),
        row(
            "climbing out of a shared partition with ../",
            Code::NotFound,
            |w: &World| read(&w.bob, &w.shared, "../secret"),
        ),
        row(
            "naming the private partition in the key",
            Code::NotFound,
            |w: &World| read(&w.bob, &w.shared, "user-alice/secret"),
        ),
        row(
            "reading a teammate's private store",
            Code::NotFound,
            |w: &World| read(&w.bob, &w.private, "secret"),
        ),
        row(
            "writing a teammate's private store",
            Code::NotFound,
            |w: &World| write(&w.bob, &w.private, "secret", "overwritten"),
        ),
        row(
            "watching a teammate's private store",
            Code::NotFound,
            |w: &World| {
                let agent = w.private.clone();
                Attack::by(&w.bob).grpc(move |c| async move {
                    tools(&c).watch(watch_request(&agent)).await.map(drop)
                })
            },
        ),
        row(
            "a value one byte over the limit",
            Code::ResourceExhausted,
            |w: &World| {
                write(&w.alice, &w.private, "huge", &"x".repeat(VALUE_LIMIT + 1))
                    .says("262145 bytes")
            },
        ),
        row(
            "a write into a full partition",
            Code::ResourceExhausted,
            |w: &World| write(&w.alice, &w.full, "one-more", "x").says("delete items"),
        ),
        row(
            "publishing into a full partition",
            Code::ResourceExhausted,
            |w: &World| publish(&w.alice, &w.private, "secret", &w.full).says("delete items"),
        ),
        row(
            "ten thousand watch streams from one principal",
            Code::ResourceExhausted,
            |w: &World| {
                let agent = w.shared.clone();
                Attack::by(&w.bob)
                    .grpc(move |c| ten_thousand_watches(c, agent))
                    .says("close one first")
            },
        ),
    ]
}

async fn snapshot(suite: &Suite, w: &World) -> String {
    let alice = suite
        .anonymous()
        .await
        .with_token(w.alice.token.as_deref().expect("token"));
    let bob = suite
        .anonymous()
        .await
        .with_token(w.bob.token.as_deref().expect("token"));
    let mut out = Vec::new();
    for (reader, agent) in [
        (&alice, &w.private),
        (&alice, &w.shared),
        (&alice, &w.other_shared),
        (&alice, &w.full),
        (&bob, &w.bobs),
        (&bob, &w.shared),
    ] {
        let page = tools(reader)
            .workspace_list(store::WorkspaceListRequest {
                agent_id: agent.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        out.push(format!(
            "{} rev {} items {:?}",
            page.partition,
            page.revision,
            page.items
                .iter()
                .map(|i| (&i.key, i.revision))
                .collect::<Vec<_>>()
        ));
    }
    out.join(" | ")
}

#[tokio::test]
async fn the_store_keeps_private_data_private_and_its_limits() {
    let suite = Suite::start().await;
    let fixture = suite
        .org("Acme Store")
        .member("bob", sharing::OrgRole::Member)
        .build()
        .await;
    let alice = fixture.owner.clone();
    let bob = fixture.members[0].client.clone();
    let private = alice.deployed_agent("Alice's diary").await;
    let shared = alice.shared_agent("Team memory").await;
    let other_shared = alice.shared_agent("Other team memory").await;
    let full = alice.shared_agent("Full memory").await;
    let bobs = bob.deployed_agent("Bob's diary").await;
    let mut a = tools(&alice);
    let text = |agent: &str, key: &str, value: String| store::WorkspaceWriteRequest {
        agent_id: agent.into(),
        key: key.into(),
        value,
        content_type: store::ItemContentType::Text as i32,
        expected_revision: None,
    };
    a.workspace_write(text(&private.id, "secret", "alice's secret plan".into()))
        .await
        .expect("private write");
    a.workspace_write(text(&shared.id, "team", "for everyone".into()))
        .await
        .expect("shared write");
    // 64 values of 256 KiB fill the 16 MiB a partition holds.
    let blob = "x".repeat(VALUE_LIMIT);
    for n in 0..64 {
        a.workspace_write(text(&full.id, &format!("blob{n:02}"), blob.clone()))
            .await
            .expect("fill");
    }
    let w = World {
        alice: Caller::bearer(&suite.token("alice")),
        bob: Caller::bearer(&suite.token("bob")),
        private: private.id,
        shared: shared.id,
        other_shared: other_shared.id,
        full: full.id,
        bobs: bobs.id,
    };
    let private_names = vec![
        "alice's secret plan".to_string(),
        "Alice's diary".to_string(),
        "Bob's diary".to_string(),
    ];
    run_table(&suite, &w, table(), &private_names, || snapshot(&suite, &w)).await;
    suite.stop().await;
}
