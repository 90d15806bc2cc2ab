//! Access checks as clients see them, through the gateway: Check,
//! CheckBulk of 100 agents, and ListMyAgents, at concurrency 1, 16 and 64;
//! and ResolveInvocation, the plan of a run, at concurrency 16.
//! Run with `cargo bench -p agentshare-e2e --bench access` (SQLite), and
//! with `AGENTSHARE_TEST_POSTGRES_URL` set for PostgreSQL. The README keeps
//! the figures.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use agentshare_e2e::bench::measure;
use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::sharing::v1 as sharing;

/// Calls per concurrency level, split over the workers.
const CALLS: usize = 2000;

/// Alice shares 100 agents with the org; Bob, a member, asks about them.
async fn setup(suite: &Suite) -> (UserClient, Vec<String>) {
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Bench").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::UserId(
                bob.user_id().await,
            )),
            role: sharing::OrgRole::Member as i32,
        })
        .await
        .expect("bob joins");
    let mut ids = Vec::new();
    for n in 0..100 {
        ids.push(alice.shared_agent(&format!("Agent {n}")).await.id);
    }
    (bob, ids)
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
        println!("access benches on {backend}, {CALLS} calls per line");
        let (bob, ids) = setup(&suite).await;
        for concurrency in [1, 16, 64] {
            let (client, id) = (bob.clone(), ids[0].clone());
            measure("Check", CALLS, concurrency, move |_| {
                let (client, id) = (client.clone(), id.clone());
                async move {
                    let answer = client
                        .access()
                        .check(sharing::CheckRequest {
                            principal: None,
                            agent_id: id,
                            action: sharing::Action::Run as i32,
                        })
                        .await
                        .expect("check");
                    assert!(answer.into_inner().allowed);
                }
            })
            .await;
            let (client, all) = (bob.clone(), ids.clone());
            measure("CheckBulk(100)", CALLS, concurrency, move |_| {
                let (client, all) = (client.clone(), all.clone());
                async move {
                    let answer = client
                        .access()
                        .check_bulk(sharing::CheckBulkRequest {
                            principal: None,
                            agent_ids: all,
                            action: sharing::Action::Run as i32,
                        })
                        .await
                        .expect("bulk");
                    assert_eq!(answer.into_inner().decisions.len(), 100);
                }
            })
            .await;
            let client = bob.clone();
            measure("ListMyAgents(page of 50)", CALLS, concurrency, move |_| {
                let client = client.clone();
                async move {
                    let page = client
                        .access()
                        .list_my_agents(sharing::ListMyAgentsRequest::default())
                        .await
                        .expect("list");
                    assert_eq!(page.into_inner().agents.len(), 50);
                }
            })
            .await;
        }
        let (client, id) = (bob.clone(), ids[0].clone());
        measure("ResolveInvocation", CALLS, 16, move |_| {
            let (client, id) = (client.clone(), id.clone());
            async move {
                let plan = client
                    .access()
                    .resolve_invocation(sharing::ResolveInvocationRequest {
                        agent_id: id,
                        ..Default::default()
                    })
                    .await
                    .expect("plan");
                assert!(plan.into_inner().plan.is_some());
            }
        })
        .await;
        suite.stop().await;
    });
}
