//! Invoke through the gateway on the built-in echo runtime, at concurrency
//! 16: the whole run path (plan, run content, usage record, session turns,
//! run token, runtime, completion) as a member of the org calls it.
//! Run with `cargo bench -p agentshare-e2e --bench invoke` (SQLite), and
//! with `AGENTSHARE_TEST_POSTGRES_URL` set for PostgreSQL. The README keeps
//! the figures.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use agentshare_e2e::bench::measure;
use agentshare_e2e::{Suite, UserClient, tool};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1::IntegrationScope;
use agentshare_proto::sharing::v1 as sharing;

/// Runs per workload, split over the workers.
const CALLS: usize = 1024;
const CONCURRENCY: usize = 16;

/// Alice shares a research agent (her search key SHARED, a CRM each user
/// brings); Bob, a member, has bound his CRM. Returns Bob and the agent.
async fn setup(suite: &Suite) -> (UserClient, String) {
    let alice = suite
        .user("alice")
        .await
        .with_token(&suite.token_with("alice", true, 7200));
    let bob = suite
        .user("bob")
        .await
        .with_token(&suite.token_with("bob", false, 7200));
    alice.new_org("Bench").await;
    alice
        .add_member(&bob.user_id().await, sharing::OrgRole::Member)
        .await;
    let search = alice.api_key_connection("search", "srch-bench-0001").await;
    let agent = alice
        .shared_agent_with(
            "Research",
            "Answer from search and the CRM.",
            vec![
                tool("web_search", "search", IntegrationScope::Shared, &search),
                tool("crm", "crm", IntegrationScope::UserConfigured, ""),
            ],
        )
        .await;
    let crm = bob.api_key_connection("crm", "crm-bench-bob").await;
    bob.bind(&agent.id, "crm", &crm).await;
    (bob, agent.id)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let suite = Suite::start().await;
        let backend = if std::env::var("AGENTSHARE_TEST_POSTGRES_URL").is_ok() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        println!("invoke benches on {backend}, echo runtime, {CALLS} runs per line");
        let (bob, agent_id) = setup(&suite).await;

        let (client, id) = (bob.clone(), agent_id.clone());
        measure("Invoke, new session", CALLS, CONCURRENCY, move |n| {
            let (client, id) = (client.clone(), id.clone());
            async move {
                let answer = client
                    .run(&id, &format!("question {n}"))
                    .await
                    .expect("run");
                assert!(answer.output_text.starts_with("echo: question"));
            }
        })
        .await;

        // One session per worker, so turns of a session never race.
        let mut sessions = Vec::new();
        for worker in 0..CONCURRENCY {
            let opened = bob
                .run(&agent_id, &format!("session {worker}"))
                .await
                .expect("run");
            sessions.push(opened.session_id);
        }
        let (client, id) = (bob.clone(), agent_id.clone());
        measure(
            "Invoke, continuing a session",
            CALLS,
            CONCURRENCY,
            move |n| {
                let (client, id) = (client.clone(), id.clone());
                let session = sessions[n / (CALLS / CONCURRENCY)].clone();
                async move {
                    client
                        .invoke()
                        .invoke(gateway::InvokeRequest {
                            agent_id: id,
                            input: format!("follow-up {n}"),
                            session_id: Some(session),
                            ..Default::default()
                        })
                        .await
                        .expect("continue");
                }
            },
        )
        .await;

        let (client, id) = (bob.clone(), agent_id.clone());
        measure(
            "Invoke, one workspace_write (500 keys)",
            CALLS,
            CONCURRENCY,
            move |n| {
                let (client, id) = (client.clone(), id.clone());
                async move {
                    let input = format!(
                        "/workspace_write {{\"key\":\"note-{}\",\"value\":\"v\"}}",
                        n % 500
                    );
                    let answer = client.run(&id, &input).await.expect("run");
                    for call in &answer.tool_calls {
                        assert!(call.succeeded, "{}: {}", call.tool_name, call.error_message);
                    }
                }
            },
        )
        .await;
        suite.stop().await;
    });
}
