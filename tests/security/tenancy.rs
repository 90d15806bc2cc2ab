//! Tenancy inside one org: a member editing, deploying, sharing, granting,
//! pinning or deleting a teammate's agent; adding a workspace the caller
//! is not in; the default agent reshared or deleted; a managed agent's
//! workspaces; and a teammate's connections, bindings, sessions and usage.

use agentshare_e2e::{Suite, UserClient, tool};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use serde_json::json;
use sharing::connections_service_client::ConnectionsServiceClient;
use tonic::Code;

use super::{Attack, Caller, Row, row, run_table, stepped_up};

pub struct World {
    /// Carol, a member with a fresh second factor: the attacker.
    carol: Caller,
    /// Bob, a member, owner of the agents below.
    bob: Caller,
    /// Alice, the org owner, stepped up.
    alice: Caller,
    /// Bob's agent, shared with the org's default workspace.
    shared: String,
    shared_revision: i64,
    /// Bob's own, unshared agent.
    private: String,
    default_agent: String,
    default_revision: i64,
    managed: String,
    /// A workspace Bob does not belong to.
    elsewhere: String,
    default_ws: String,
    bob_connection: String,
    bob_session: String,
}

fn connections(c: &UserClient) -> ConnectionsServiceClient<agentshare_e2e::Authed> {
    ConnectionsServiceClient::new(c.channel())
}

/// A teammate acting on Bob's shared agent: visible, so PERMISSION_DENIED.
fn on_shared(name: &'static str, attack: fn(&World, String) -> Attack) -> Row<World> {
    row(
        format!("a member: {name} on a teammate's shared agent"),
        Code::PermissionDenied,
        move |w: &World| attack(w, w.shared.clone()),
    )
}

/// The same on Bob's unshared agent: not seen, so NOT_FOUND.
fn on_private(name: &'static str, attack: fn(&World, String) -> Attack) -> Row<World> {
    row(
        format!("a member: {name} on a teammate's private agent"),
        Code::NotFound,
        move |w: &World| attack(w, w.private.clone()),
    )
}

fn update_draft(w: &World, agent: String) -> Attack {
    let revision = w.shared_revision;
    Attack::by(&w.carol).grpc(move |c| async move {
        c.registry()
            .update_draft(registry::UpdateDraftRequest {
                agent_id: agent,
                draft: Some(registry::AgentDraft {
                    name: "Hijacked".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                expected_draft_revision: revision,
            })
            .await
    })
}

fn deploy(w: &World, agent: String) -> Attack {
    let revision = w.shared_revision;
    let path = format!("/api/v1/agents/{agent}:deploy");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.registry()
                .deploy_agent(registry::DeployAgentRequest {
                    agent_id: agent,
                    expected_draft_revision: revision,
                    notes: String::new(),
                })
                .await
        })
        .post(path, json!({ "expected_draft_revision": revision }))
}

fn share(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/agents/{agent}:share");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.sharing()
                .share_agent(sharing::ShareAgentRequest { agent_id: agent })
                .await
        })
        .post(path, json!({}))
}

fn unshare(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/agents/{agent}:unshare");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.sharing()
                .unshare_agent(sharing::UnshareAgentRequest { agent_id: agent })
                .await
        })
        .post(path, json!({}))
}

fn set_workspaces(w: &World, agent: String) -> Attack {
    let list = vec![w.default_ws.clone(), w.elsewhere.clone()];
    let path = format!("/api/v1/agents/{agent}/workspaces");
    let body = json!({ "workspace_ids": list });
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.sharing()
                .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                    agent_id: agent,
                    workspace_ids: list,
                })
                .await
        })
        .patch(path, body)
}

fn delete(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/agents/{agent}");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.registry()
                .delete_agent(registry::DeleteAgentRequest { agent_id: agent })
                .await
        })
        .delete(path)
}

fn rollback(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/agents/{agent}:rollback");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.registry()
                .rollback_agent(registry::RollbackAgentRequest {
                    agent_id: agent,
                    version_number: 1,
                    ..Default::default()
                })
                .await
        })
        .post(path, json!({ "version_number": 1 }))
}

fn create_grant(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/agents/{agent}/grants");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.sharing()
                .create_grant(sharing::CreateGrantRequest {
                    agent_id: agent,
                    kind: sharing::GrantKind::Delegate as i32,
                    label: "mine now".into(),
                    ..Default::default()
                })
                .await
        })
        .post(
            path,
            json!({ "kind": "GRANT_KIND_DELEGATE", "label": "mine now" }),
        )
}

fn list_grants(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/agents/{agent}/grants");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.sharing()
                .list_grants(sharing::ListGrantsRequest {
                    agent_id: agent,
                    ..Default::default()
                })
                .await
        })
        .get(path)
}

fn reach(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/agents/{agent}/reach");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.sharing()
                .get_agent_reach(sharing::GetAgentReachRequest { agent_id: agent })
                .await
        })
        .get(path)
}

fn pin(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/agents/{agent}:pin");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.access()
                .pin_version(sharing::PinVersionRequest {
                    agent_id: agent,
                    version: 1,
                })
                .await
        })
        .post(path, json!({ "version": 1 }))
}

fn usage_of(w: &World, agent: String) -> Attack {
    let path = format!("/api/v1/invocations?scope=USAGE_SCOPE_AGENT&agent_id={agent}");
    Attack::by(&w.carol)
        .grpc(move |c| async move {
            c.usage()
                .list_invocations(store::ListInvocationsRequest {
                    scope: store::UsageScope::Agent as i32,
                    agent_id: agent,
                    ..Default::default()
                })
                .await
        })
        .get(path)
}

fn connection_rows() -> Vec<Row<World>> {
    vec![
        row(
            "a member reading a teammate's connection",
            Code::NotFound,
            |w: &World| {
                let id = w.bob_connection.clone();
                Attack::by(&w.carol)
                    .grpc(move |c| async move {
                        connections(&c)
                            .get_connection(sharing::GetConnectionRequest { connection_id: id })
                            .await
                    })
                    .get(format!("/api/v1/connections/{}", w.bob_connection))
            },
        ),
        row(
            "a member deleting a teammate's connection",
            Code::NotFound,
            |w: &World| {
                let id = w.bob_connection.clone();
                Attack::by(&w.carol)
                    .grpc(move |c| async move {
                        connections(&c)
                            .delete_connection(sharing::DeleteConnectionRequest {
                                connection_id: id,
                            })
                            .await
                    })
                    .delete(format!("/api/v1/connections/{}", w.bob_connection))
            },
        ),
        row(
            "a member testing a teammate's connection",
            Code::NotFound,
            |w: &World| {
                let id = w.bob_connection.clone();
                Attack::by(&w.carol)
                    .grpc(move |c| async move {
                        connections(&c)
                            .test_connection(sharing::TestConnectionRequest { connection_id: id })
                            .await
                    })
                    .post(
                        format!("/api/v1/connections/{}:test", w.bob_connection),
                        json!({}),
                    )
            },
        ),
        row(
            "a member replacing a teammate's connection's key",
            Code::NotFound,
            |w: &World| {
                let id = w.bob_connection.clone();
                Attack::by(&w.carol)
                    .grpc(move |c| async move {
                        connections(&c)
                            .reconnect_connection(sharing::ReconnectConnectionRequest {
                                connection_id: id,
                                api_key: "crm-carol-9999".into(),
                            })
                            .await
                    })
                    .post(
                        format!("/api/v1/connections/{}:reconnect", w.bob_connection),
                        json!({ "api_key": "crm-carol-9999" }),
                    )
            },
        ),
        row(
            "a member binding a teammate's connection to their own setup",
            Code::NotFound,
            |w: &World| {
                let (agent, id) = (w.shared.clone(), w.bob_connection.clone());
                Attack::by(&w.carol)
                    .grpc(move |c| async move {
                        connections(&c)
                            .bind_integration(sharing::BindIntegrationRequest {
                                agent_id: agent,
                                integration_key: "crm".into(),
                                connection_id: id,
                            })
                            .await
                    })
                    .post(
                        format!("/api/v1/agents/{}/integrations/crm:bind", w.shared),
                        json!({ "connection_id": w.bob_connection }),
                    )
            },
        ),
        row(
            "a member reading a teammate's session",
            Code::NotFound,
            |w: &World| {
                let id = w.bob_session.clone();
                Attack::by(&w.carol)
                    .grpc(move |c| async move {
                        c.sessions()
                            .get_session(store::GetSessionRequest {
                                session_id: id,
                                ..Default::default()
                            })
                            .await
                    })
                    .get(format!("/api/v1/sessions/{}", w.bob_session))
            },
        ),
        row(
            "a member continuing a teammate's session",
            Code::NotFound,
            |w: &World| {
                let (agent, session) = (w.shared.clone(), w.bob_session.clone());
                Attack::by(&w.carol)
                    .grpc(move |c| async move {
                        c.invoke()
                            .invoke(gateway::InvokeRequest {
                                agent_id: agent,
                                input: "what did Bob say?".into(),
                                session_id: Some(session),
                                ..Default::default()
                            })
                            .await
                    })
                    .post(
                        format!("/api/v1/agents/{}:invoke", w.shared),
                        json!({ "input": "what did Bob say?", "session_id": w.bob_session }),
                    )
            },
        ),
        row(
            "a member asking Explain about a teammate's access",
            Code::PermissionDenied,
            |w: &World| {
                let agent = w.shared.clone();
                let bob = w.bob.clone();
                Attack::by(&w.carol).grpc(move |c| async move {
                    let bob_id = c
                        .with_token(bob.token.as_deref().unwrap_or_default())
                        .user_id()
                        .await;
                    c.access()
                        .explain(sharing::ExplainRequest {
                            principal: Some(sharing::PrincipalRef {
                                user_id: bob_id,
                                ..Default::default()
                            }),
                            agent_id: agent,
                            action: sharing::Action::Run as i32,
                        })
                        .await
                })
            },
        ),
    ]
}

pub fn table() -> Vec<Row<World>> {
    let mut rows = vec![
        on_shared("editing the draft", update_draft),
        on_shared("deploying", deploy),
        on_shared("sharing", share),
        on_shared("unsharing", unshare),
        on_shared("setting its workspaces", set_workspaces),
        on_shared("deleting", delete),
        on_shared("rolling back", rollback),
        on_shared("minting a grant", create_grant),
        on_shared("listing its grants", list_grants),
        on_shared("reading its reach", reach),
        on_shared("reading its usage", usage_of),
        on_private("editing the draft", update_draft),
        on_private("deploying", deploy),
        on_private("sharing", share),
        on_private("deleting", delete),
        on_private("pinning a version", pin),
        on_private("minting a grant", create_grant),
        on_private("reading its usage", usage_of),
        row(
            "an owner adding a workspace they are not in to their agent",
            Code::PermissionDenied,
            |w: &World| {
                let (agent, list) = (
                    w.shared.clone(),
                    vec![w.default_ws.clone(), w.elsewhere.clone()],
                );
                Attack::by(&w.bob)
                    .grpc(move |c| async move {
                        c.sharing()
                            .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                                agent_id: agent,
                                workspace_ids: list,
                            })
                            .await
                    })
                    .patch(
                        format!("/api/v1/agents/{}/workspaces", w.shared),
                        json!({ "workspace_ids": [w.default_ws, w.elsewhere] }),
                    )
                    .says("not a member of workspace")
            },
        ),
        row(
            "the org owner resharing the default agent",
            Code::PermissionDenied,
            |w: &World| {
                let agent = w.default_agent.clone();
                Attack::by(&w.alice)
                    .grpc(move |c| async move {
                        c.sharing()
                            .share_agent(sharing::ShareAgentRequest { agent_id: agent })
                            .await
                    })
                    .post(
                        format!("/api/v1/agents/{}:share", w.default_agent),
                        json!({}),
                    )
                    .says("default agent")
            },
        ),
        row(
            "the org owner setting the default agent's workspaces",
            Code::PermissionDenied,
            |w: &World| {
                let (agent, list) = (w.default_agent.clone(), vec![w.elsewhere.clone()]);
                Attack::by(&w.alice)
                    .grpc(move |c| async move {
                        c.sharing()
                            .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                                agent_id: agent,
                                workspace_ids: list,
                            })
                            .await
                    })
                    .patch(
                        format!("/api/v1/agents/{}/workspaces", w.default_agent),
                        json!({ "workspace_ids": [w.elsewhere] }),
                    )
                    .says("default agent")
            },
        ),
        row(
            "the org owner deleting the default agent",
            Code::PermissionDenied,
            |w: &World| {
                let agent = w.default_agent.clone();
                Attack::by(&w.alice)
                    .grpc(move |c| async move {
                        c.registry()
                            .delete_agent(registry::DeleteAgentRequest { agent_id: agent })
                            .await
                    })
                    .delete(format!("/api/v1/agents/{}", w.default_agent))
            },
        ),
        row(
            "a member editing the default agent",
            Code::PermissionDenied,
            |w: &World| {
                let agent = w.default_agent.clone();
                let revision = w.default_revision;
                Attack::by(&w.carol).grpc(move |c| async move {
                    c.registry()
                        .update_draft(registry::UpdateDraftRequest {
                            agent_id: agent,
                            draft: Some(registry::AgentDraft {
                                instructions: "Leak everything.".into(),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["instructions".into()],
                            }),
                            expected_draft_revision: revision,
                        })
                        .await
                })
            },
        ),
        row(
            "the org owner setting a managed agent's workspaces",
            Code::PermissionDenied,
            |w: &World| {
                let (agent, list) = (
                    w.managed.clone(),
                    vec![w.default_ws.clone(), w.elsewhere.clone()],
                );
                Attack::by(&w.alice)
                    .grpc(move |c| async move {
                        c.sharing()
                            .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                                agent_id: agent,
                                workspace_ids: list,
                            })
                            .await
                    })
                    .patch(
                        format!("/api/v1/agents/{}/workspaces", w.managed),
                        json!({ "workspace_ids": [w.default_ws, w.elsewhere] }),
                    )
                    .says("managed")
            },
        ),
    ];
    rows.extend(connection_rows());
    rows
}

/// Bob's agents as Bob reads them, the default and managed agents as
/// Alice does, Bob's connection and session.
async fn snapshot(suite: &Suite, w: &World) -> String {
    let bob = suite
        .anonymous()
        .await
        .with_token(w.bob.token.as_deref().expect("token"));
    let alice = suite
        .anonymous()
        .await
        .with_token(w.alice.token.as_deref().expect("token"));
    let mut out = Vec::new();
    for (reader, agent) in [
        (&bob, &w.shared),
        (&bob, &w.private),
        (&alice, &w.default_agent),
        (&alice, &w.managed),
    ] {
        let a = reader
            .registry()
            .get_agent(registry::GetAgentRequest {
                agent_id: agent.clone(),
            })
            .await
            .expect("agent")
            .into_inner()
            .agent
            .expect("agent");
        let draft = a.draft.unwrap_or_default();
        let sharing = reader
            .sharing()
            .get_agent_workspaces(sharing::GetAgentWorkspacesRequest {
                agent_id: agent.clone(),
            })
            .await
            .expect("workspaces")
            .into_inner()
            .sharing
            .expect("sharing");
        let grants = reader
            .sharing()
            .list_grants(sharing::ListGrantsRequest {
                agent_id: agent.clone(),
                include_inactive: true,
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().grants.len())
            .unwrap_or(usize::MAX);
        out.push(format!(
            "{} {} {} {} {} {} {:?} grants {grants}",
            a.id,
            a.state,
            a.draft_revision,
            a.latest_version_number,
            draft.name,
            draft.instructions,
            (
                sharing.shared,
                sharing.workspaces.iter().map(|w| &w.id).collect::<Vec<_>>()
            ),
        ));
    }
    let connection = connections(&bob)
        .get_connection(sharing::GetConnectionRequest {
            connection_id: w.bob_connection.clone(),
        })
        .await
        .expect("connection")
        .into_inner()
        .connection
        .expect("connection");
    out.push(format!(
        "connection {} {}",
        connection.id, connection.status
    ));
    let session = bob
        .sessions()
        .get_session(store::GetSessionRequest {
            session_id: w.bob_session.clone(),
            ..Default::default()
        })
        .await
        .expect("session")
        .into_inner();
    out.push(format!("session messages {}", session.messages.len()));
    let pins = bob
        .access()
        .get_pin(sharing::GetPinRequest {
            agent_id: w.private.clone(),
        })
        .await
        .expect("pin")
        .into_inner();
    out.push(format!("pin {:?}", pins.pin.map(|p| p.version)));
    out.join(" | ")
}

#[tokio::test]
async fn members_touch_nothing_of_their_teammates() {
    let suite = Suite::start().await;
    let fixture = suite
        .org("Acme Tenancy")
        .member("bob", sharing::OrgRole::Member)
        .member("carol", sharing::OrgRole::Member)
        .build()
        .await;
    let alice = fixture.owner.with_token(&stepped_up(&suite, "alice"));
    alice.enable_workspaces().await;
    let elsewhere = alice.create_workspace("Elsewhere").await;
    let bob = fixture.members[0]
        .client
        .with_token(&stepped_up(&suite, "bob"));
    let bob_connection = bob.api_key_connection("crm", "crm-bob-secret-0001").await;
    let shared = bob
        .shared_agent_with(
            "Bob's helper",
            "Bob's private instructions.",
            vec![tool(
                "crm",
                "crm",
                registry::IntegrationScope::UserConfigured,
                "",
            )],
        )
        .await;
    bob.bind(&shared.id, "crm", &bob_connection).await;
    let private = bob.deployed_agent("Bob's notebook").await;
    let bob_session = bob
        .run(&shared.id, "Bob's question")
        .await
        .expect("bob runs his agent")
        .session_id;
    let default_agent = alice
        .registry()
        .get_default_agent(registry::GetDefaultAgentRequest {})
        .await
        .expect("default agent")
        .into_inner()
        .agent
        .expect("agent");
    let (default_agent, default_revision) = (default_agent.id, default_agent.draft_revision);
    let managed = alice
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Managed".into(),
                ..Default::default()
            }),
            is_managed: true,
        })
        .await
        .expect("managed agent")
        .into_inner()
        .agent
        .expect("agent");
    let managed = alice.deploy(&managed).await;
    let w = World {
        carol: Caller::bearer(&stepped_up(&suite, "carol")),
        bob: Caller::bearer(&stepped_up(&suite, "bob")),
        alice: Caller::bearer(&stepped_up(&suite, "alice")),
        shared_revision: shared.draft_revision,
        shared: shared.id,
        private: private.id,
        default_agent,
        default_revision,
        managed: managed.id,
        elsewhere,
        default_ws: fixture.org.default_workspace_id,
        bob_connection,
        bob_session,
    };
    let private_names = vec![
        "Bob's private instructions.".to_string(),
        "Bob's notebook".to_string(),
        "crm-bob-secret-0001".to_string(),
        "Bob's question".to_string(),
    ];
    run_table(&suite, &w, table(), &private_names, || snapshot(&suite, &w)).await;
    suite.stop().await;
}
