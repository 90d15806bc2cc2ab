//! Grants and run tokens: revoked, expired and misdirected share tokens,
//! INVOKE without a user, DELEGATE reaching for the owner's private store,
//! run tokens after their run, on another agent, on another partition and
//! on RPCs other than the store's, and a grant holder calling every RPC a
//! run does not need.

use std::time::Duration;

use agentshare_e2e::runtime::RecordingRuntime;
use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use futures::StreamExt;
use serde_json::json;
use sharing::GrantKind;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::Code;

use super::{Attack, Caller, Row, call_raw, fill, public_rpcs, row, run_table};

pub struct World {
    /// Shared with the org; every grant is on it.
    agent: String,
    /// Another shared agent of Alice's.
    other: String,
    /// Alice's own unshared agent, whose store is `user-<alice>`.
    private: String,
    carol: String,
    revoked: String,
    expired: String,
    delegate: String,
    invoke: String,
    invoke_id: String,
    /// Bob's run of `agent`, held open; its token is live.
    live_run_token: String,
    finished_run_token: String,
    other_workspace: String,
    live_partition: String,
    routes: std::collections::HashMap<String, (reqwest::Method, String)>,
}

async fn grant_with(alice: &UserClient, request: sharing::CreateGrantRequest) -> (String, String) {
    let created = alice
        .sharing()
        .create_grant(request)
        .await
        .expect("grant")
        .into_inner();
    (created.grant.expect("grant").id, created.token)
}

fn grant_on(agent: &str, kind: GrantKind) -> sharing::CreateGrantRequest {
    sharing::CreateGrantRequest {
        agent_id: agent.into(),
        kind: kind as i32,
        label: "matrix".into(),
        expire_time: None,
        pinned_version: None,
        limits: None,
    }
}

/// The run token with its partition claim rewritten and its signature kept.
fn tampered(token: &str, partition: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = token.strip_prefix("asr_").expect("a run token");
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(parts[1]).expect("base64")).expect("claims");
    claims["partition"] = json!(partition);
    format!(
        "asr_{}.{}.{}",
        parts[0],
        engine.encode(claims.to_string()),
        parts[2]
    )
}

fn store_client(client: &UserClient) -> WorkspaceStoreServiceClient<agentshare_e2e::Authed> {
    WorkspaceStoreServiceClient::new(client.channel())
}

async fn invoke(c: UserClient, agent: String) -> Result<gateway::InvokeResponse, tonic::Status> {
    {
        c.invoke()
            .invoke(gateway::InvokeRequest {
                agent_id: agent,
                input: "hi".into(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// The RPCs a grant's principal may call: running its agent and no more.
const RUN_RPCS: &[&str] = &[
    "/agentshare.gateway.v1.InvokeService/",
    "/agentshare.store.v1.SessionsService/",
    "/agentshare.store.v1.WorkspaceStoreService/",
    "/agentshare.sharing.v1.AccessService/ResolveInvocation",
    "/agentshare.sharing.v1.ConnectionsService/GetAgentSetup",
    "/agentshare.sharing.v1.ConnectionsService/BindIntegration",
    "/agentshare.sharing.v1.ConnectionsService/UnbindIntegration",
    "/agentshare.sharing.v1.ConnectionsService/CompleteAgentSetup",
];

pub fn table() -> Vec<Row<World>> {
    let mut rows = vec![
        row(
            "a revoked DELEGATE token",
            Code::Unauthenticated,
            |w: &World| {
                let agent = w.agent.clone();
                Attack::by(&Caller::nobody().with_grant(&w.revoked))
                    .grpc(move |c| invoke(c, agent))
                    .post(
                        format!("/api/v1/agents/{}:invoke", w.agent),
                        json!({ "input": "hi" }),
                    )
                    .says("token revoked")
            },
        ),
        row(
            "an expired DELEGATE token",
            Code::Unauthenticated,
            |w: &World| {
                let agent = w.agent.clone();
                Attack::by(&Caller::nobody().with_grant(&w.expired))
                    .grpc(move |c| invoke(c, agent))
                    .post(
                        format!("/api/v1/agents/{}:invoke", w.agent),
                        json!({ "input": "hi" }),
                    )
                    .says("token expired")
            },
        ),
        row(
            "a token for another agent",
            Code::PermissionDenied,
            |w: &World| {
                let agent = w.other.clone();
                Attack::by(&Caller::nobody().with_grant(&w.delegate))
                    .grpc(move |c| invoke(c, agent))
                    .post(
                        format!("/api/v1/agents/{}:invoke", w.other),
                        json!({ "input": "hi" }),
                    )
                    .says("another agent")
            },
        ),
        row(
            "an INVOKE token without a user",
            Code::Unauthenticated,
            |w: &World| {
                let agent = w.agent.clone();
                Attack::by(&Caller::nobody().with_grant(&w.invoke))
                    .grpc(move |c| invoke(c, agent))
                    .post(
                        format!("/api/v1/agents/{}:invoke", w.agent),
                        json!({ "input": "hi" }),
                    )
                    .says("signed-in user")
            },
        ),
        row(
            "DELEGATE reading the owner's private key through the shared agent",
            Code::NotFound,
            |w: &World| {
                let agent = w.agent.clone();
                Attack::by(&Caller::nobody().with_grant(&w.delegate))
                    .grpc(move |c| async move {
                        store_client(&c)
                            .workspace_read(store::WorkspaceReadRequest {
                                agent_id: agent,
                                key: "diary".into(),
                            })
                            .await
                    })
                    .get(format!("/api/v1/agents/{}/store:read?key=diary", w.agent))
            },
        ),
        row(
            "DELEGATE reading the owner's private agent's store",
            Code::PermissionDenied,
            |w: &World| {
                let agent = w.private.clone();
                Attack::by(&Caller::nobody().with_grant(&w.delegate))
                    .grpc(move |c| async move {
                        store_client(&c)
                            .workspace_read(store::WorkspaceReadRequest {
                                agent_id: agent,
                                key: "diary".into(),
                            })
                            .await
                    })
                    .get(format!("/api/v1/agents/{}/store:read?key=diary", w.private))
                    .says("another agent")
            },
        ),
        row(
            "DELEGATE publishing into the shared agent from the owner's private store",
            Code::PermissionDenied,
            |w: &World| {
                let (from, to) = (w.private.clone(), w.agent.clone());
                Attack::by(&Caller::nobody().with_grant(&w.delegate))
                    .grpc(move |c| async move {
                        store_client(&c)
                            .workspace_publish(store::WorkspacePublishRequest {
                                agent_id: from,
                                key: "diary".into(),
                                target_agent_id: to,
                                ..Default::default()
                            })
                            .await
                    })
                    .post(
                        format!("/api/v1/agents/{}/store:publish", w.private),
                        json!({ "key": "diary", "target_agent_id": w.agent }),
                    )
            },
        ),
        row(
            "a run token after its run",
            Code::Unauthenticated,
            |w: &World| {
                let agent = w.agent.clone();
                Attack::by(&Caller::bearer(&w.finished_run_token))
                    .grpc(move |c| async move {
                        store_client(&c)
                            .workspace_list(store::WorkspaceListRequest {
                                agent_id: agent,
                                ..Default::default()
                            })
                            .await
                    })
                    .get(format!("/api/v1/agents/{}/store:list", w.agent))
                    .says("the run has ended")
            },
        ),
        row(
            "a live run token on another agent",
            Code::PermissionDenied,
            |w: &World| {
                let agent = w.other.clone();
                Attack::by(&Caller::bearer(&w.live_run_token))
                    .grpc(move |c| async move {
                        store_client(&c)
                            .workspace_list(store::WorkspaceListRequest {
                                agent_id: agent,
                                ..Default::default()
                            })
                            .await
                    })
                    .get(format!("/api/v1/agents/{}/store:list", w.other))
                    .says("another agent")
            },
        ),
        row(
            "a live run token with its partition rewritten",
            Code::Unauthenticated,
            |w: &World| {
                let agent = w.agent.clone();
                let token = tampered(&w.live_run_token, "user-someone-else");
                Attack::by(&Caller::bearer(&token))
                    .grpc(move |c| async move {
                        store_client(&c)
                            .workspace_list(store::WorkspaceListRequest {
                                agent_id: agent,
                                ..Default::default()
                            })
                            .await
                    })
                    .get(format!("/api/v1/agents/{}/store:list", w.agent))
                    .says("run token rejected")
            },
        ),
        row(
            "a live run token naming another workspace stays in its partition",
            Code::Ok,
            |w: &World| {
                let agent = w.agent.clone();
                let partition = w.live_partition.clone();
                Attack::by(&Caller::bearer(&w.live_run_token).in_workspace(&w.other_workspace))
                    .grpc_ok(
                        move |c| async move {
                            store_client(&c)
                                .workspace_list(store::WorkspaceListRequest {
                                    agent_id: agent,
                                    ..Default::default()
                                })
                                .await
                                .map(tonic::Response::into_inner)
                        },
                        move |page: &store::WorkspaceListResponse| {
                            if page.partition == partition {
                                Ok(())
                            } else {
                                Err(format!(
                                    "the run token reached {} instead of {partition}",
                                    page.partition
                                ))
                            }
                        },
                    )
            },
        ),
        row(
            "a live run token on GetMe",
            Code::PermissionDenied,
            |w: &World| {
                Attack::by(&Caller::bearer(&w.live_run_token))
                    .grpc(|c| async move { c.tenancy().get_me(sharing::GetMeRequest {}).await })
                    .get("/api/v1/me")
                    .says("five workspace tools")
            },
        ),
        row(
            "a live run token on Invoke",
            Code::PermissionDenied,
            |w: &World| {
                let agent = w.agent.clone();
                Attack::by(&Caller::bearer(&w.live_run_token))
                    .grpc(move |c| invoke(c, agent))
                    .post(
                        format!("/api/v1/agents/{}:invoke", w.agent),
                        json!({ "input": "hi" }),
                    )
                    .says("five workspace tools")
            },
        ),
        row(
            "a live run token as a share token",
            Code::Unauthenticated,
            |w: &World| {
                let agent = w.agent.clone();
                Attack::by(&Caller::nobody().with_grant(&w.live_run_token))
                    .grpc(move |c| invoke(c, agent))
                    .post(
                        format!("/api/v1/agents/{}:invoke", w.agent),
                        json!({ "input": "hi" }),
                    )
                    .says("share token rejected")
            },
        ),
        row(
            "an INVOKE holder revoking their own grant",
            Code::PermissionDenied,
            |w: &World| {
                let id = w.invoke_id.clone();
                Attack::by(&Caller::bearer(&w.carol).with_grant(&w.invoke))
                    .grpc(move |c| async move {
                        c.sharing()
                            .revoke_grant(sharing::RevokeGrantRequest { grant_id: id })
                            .await
                    })
                    .post(format!("/api/v1/grants/{}:revoke", w.invoke_id), json!({}))
                    .says("share token")
            },
        ),
    ];
    // Every RPC a run does not need, called by an INVOKE holder signed in
    // as themselves: refused before it reaches its service.
    for rpc in public_rpcs() {
        if RUN_RPCS.iter().any(|allowed| rpc.path.starts_with(allowed)) {
            continue;
        }
        rows.push(row(
            format!("a grant holder calling {}", rpc.path),
            Code::PermissionDenied,
            move |w: &World| {
                let rpc = rpc.clone();
                let mut attack = Attack::by(&Caller::bearer(&w.carol).with_grant(&w.invoke));
                if let Some((method, template)) = w.routes.get(&rpc.operation) {
                    let path = fill(template, &w.agent);
                    attack = if method == reqwest::Method::GET || method == reqwest::Method::DELETE
                    {
                        attack.http(method.clone(), path)
                    } else {
                        attack.http(method.clone(), path).json_body(json!({}))
                    };
                }
                attack
                    .grpc(move |c| call_raw(c, rpc, bytes::Bytes::new()))
                    .says("share token")
            },
        ));
    }
    rows
}

/// The grants, the agents and both stores, as Alice reads them.
async fn snapshot(alice: &UserClient, w: &World) -> String {
    let grants: Vec<(String, i32)> = alice
        .sharing()
        .list_grants(sharing::ListGrantsRequest {
            agent_id: w.agent.clone(),
            include_inactive: true,
            ..Default::default()
        })
        .await
        .expect("grants")
        .into_inner()
        .grants
        .into_iter()
        .map(|g| (g.id, g.state))
        .collect();
    let mut items = Vec::new();
    for agent in [&w.agent, &w.private, &w.other] {
        let page = store_client(alice)
            .workspace_list(store::WorkspaceListRequest {
                agent_id: agent.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        items.push((page.partition, page.revision, page.items.len()));
    }
    let agents: Vec<(String, i64, i64)> = alice
        .registry()
        .list_agents(agentshare_proto::registry::v1::ListAgentsRequest::default())
        .await
        .expect("agents")
        .into_inner()
        .agents
        .into_iter()
        .map(|a| (a.id, a.draft_revision, a.latest_version_number))
        .collect();
    format!("grants {grants:?} | stores {items:?} | agents {agents:?}")
}

#[tokio::test]
async fn share_and_run_tokens_reach_their_run_and_nothing_else() {
    let runtime = RecordingRuntime::start().await;
    let suite = Suite::builder().runtime(&runtime).start().await;
    let fixture = suite
        .org("Acme Grants")
        .member("bob", sharing::OrgRole::Member)
        .build()
        .await;
    let alice = fixture.owner.clone();
    let bob = fixture.members[0].client.clone();
    let carol_token = suite.token_with("carol", false, 7200);
    let carol = suite.anonymous().await.with_token(&carol_token);
    carol.user_id().await;
    let strong = alice.with_token(&super::stepped_up(&suite, "alice"));
    strong.enable_workspaces().await;
    let other_workspace = strong.create_workspace("Elsewhere").await;
    let agent = alice.shared_agent("Concierge").await;
    let other = alice.shared_agent("Bookkeeper").await;
    let private = alice.deployed_agent("Diary").await;
    store_client(&alice)
        .workspace_write(store::WorkspaceWriteRequest {
            agent_id: private.id.clone(),
            key: "diary".into(),
            value: "alice's private diary".into(),
            content_type: store::ItemContentType::Text as i32,
            expected_revision: None,
        })
        .await
        .expect("private write");

    let (revoked_id, revoked) = grant_with(&alice, grant_on(&agent.id, GrantKind::Delegate)).await;
    alice
        .sharing()
        .revoke_grant(sharing::RevokeGrantRequest {
            grant_id: revoked_id,
        })
        .await
        .expect("revoke");
    let (_, expired) = grant_with(
        &alice,
        sharing::CreateGrantRequest {
            expire_time: Some(agentshare_kit::clock::timestamp(
                suite.clock.now_micros() + 60_000_000,
            )),
            ..grant_on(&agent.id, GrantKind::Delegate)
        },
    )
    .await;
    suite.clock.advance(Duration::from_secs(120));
    let (_, delegate) = grant_with(&alice, grant_on(&agent.id, GrantKind::Delegate)).await;
    let (invoke_id, invoke_token) =
        grant_with(&alice, grant_on(&agent.id, GrantKind::Invoke)).await;

    bob.run(&agent.id, "a finished run").await.expect("run");
    let finished_run_token = runtime.run_with_input("a finished run").request.run_token;
    let mut held = bob
        .invoke()
        .invoke_stream(gateway::InvokeStreamRequest {
            agent_id: agent.id.clone(),
            input: "/hold the run open".into(),
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner();
    held.next().await.expect("an event").expect("started");
    let live_run_token = runtime
        .run_with_input("/hold the run open")
        .request
        .run_token;
    let live_partition = format!("agent-{}/{}", agent.id, fixture.org.default_workspace_id);

    let w = World {
        agent: agent.id.clone(),
        other: other.id.clone(),
        private: private.id.clone(),
        carol: carol_token,
        revoked,
        expired,
        delegate,
        invoke: invoke_token,
        invoke_id,
        live_run_token,
        finished_run_token,
        other_workspace,
        live_partition,
        routes: super::http_routes(&suite).await,
    };
    let private_names = vec![
        "alice's private diary".to_string(),
        "Acme Grants".to_string(),
        "Diary".to_string(),
        "Bookkeeper".to_string(),
    ];
    run_table(&suite, &w, table(), &private_names, || snapshot(&alice, &w)).await;
    runtime.release();
    while held.next().await.is_some() {}
    suite.stop().await;
}
