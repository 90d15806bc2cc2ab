//! Resource limits: a message over the limit on every public RPC (and on
//! every HTTP route with a body), deep nesting, long strings in every name
//! field, huge and negative page sizes and malformed page tokens on every
//! list.

use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as scheduler;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use prost_types::{Struct, Value as ProtoValue, value::Kind};
use serde_json::{Value, json};
use tonic::{Code, Status};

use super::{Attack, Caller, Row, call_raw, fill, public_rpcs, row, run_table, stepped_up};

/// One byte past `max_message_bytes` (4 MiB by default).
const OVER_LIMIT: usize = 4 * 1024 * 1024 + 1;
/// Far past any name a person would type.
const LONG: usize = 64 * 1024;

pub struct World {
    alice: Caller,
    agent: String,
    agent_revision: i64,
    project: String,
    sales: String,
    org: String,
    routes: std::collections::HashMap<String, (reqwest::Method, String)>,
}

fn nested(levels: usize) -> Struct {
    let mut inner = Struct::default();
    for _ in 1..levels {
        let mut outer = Struct::default();
        outer.fields.insert(
            "deeper".into(),
            ProtoValue {
                kind: Some(Kind::StructValue(inner)),
            },
        );
        inner = outer;
    }
    inner
}

fn nested_json(levels: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..levels {
        value = json!({ "deeper": value });
    }
    value
}

fn long() -> String {
    "n".repeat(LONG)
}

type ListCall = fn(UserClient, &World, i32, String) -> super::Boxed<Result<(), Status>>;

/// Every list RPC, with the page size and token to send.
fn lists() -> Vec<(&'static str, &'static str, ListCall)> {
    vec![
        ("ListAgents", "/api/v1/agents", |c, _, size, token| {
            Box::pin(async move {
                c.registry()
                    .list_agents(registry::ListAgentsRequest {
                        page_size: size,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            })
        }),
        (
            "ListVersions",
            "/api/v1/agents/{agent}/versions",
            |c, w, size, token| {
                let agent = w.agent.clone();
                Box::pin(async move {
                    c.registry()
                        .list_versions(registry::ListVersionsRequest {
                            agent_id: agent,
                            page_size: size,
                            page_token: token,
                        })
                        .await
                        .map(drop)
                })
            },
        ),
        ("ListTemplates", "/api/v1/templates", |c, _, size, token| {
            Box::pin(async move {
                c.registry()
                    .list_templates(registry::ListTemplatesRequest {
                        page_size: size,
                        page_token: token,
                    })
                    .await
                    .map(drop)
            })
        }),
        ("ListMyOrgs", "/api/v1/orgs", |c, _, size, token| {
            Box::pin(async move {
                c.tenancy()
                    .list_my_orgs(sharing::ListMyOrgsRequest {
                        page_size: size,
                        page_token: token,
                    })
                    .await
                    .map(drop)
            })
        }),
        ("ListOrgMembers", "/api/v1/members", |c, _, size, token| {
            Box::pin(async move {
                c.tenancy()
                    .list_org_members(sharing::ListOrgMembersRequest {
                        page_size: size,
                        page_token: token,
                    })
                    .await
                    .map(drop)
            })
        }),
        (
            "ListWorkspaces",
            "/api/v1/workspaces",
            |c, _, size, token| {
                Box::pin(async move {
                    c.tenancy()
                        .list_workspaces(sharing::ListWorkspacesRequest {
                            page_size: size,
                            page_token: token,
                        })
                        .await
                        .map(drop)
                })
            },
        ),
        (
            "ListWorkspaceMembers",
            "/api/v1/workspaces/{sales}/members",
            |c, w, size, token| {
                let ws = w.sales.clone();
                Box::pin(async move {
                    c.tenancy()
                        .list_workspace_members(sharing::ListWorkspaceMembersRequest {
                            workspace_id: ws,
                            page_size: size,
                            page_token: token,
                        })
                        .await
                        .map(drop)
                })
            },
        ),
        ("ListProjects", "/api/v1/projects", |c, _, size, token| {
            Box::pin(async move {
                c.tenancy()
                    .list_projects(sharing::ListProjectsRequest {
                        page_size: size,
                        page_token: token,
                    })
                    .await
                    .map(drop)
            })
        }),
        ("ListApiKeys", "/api/v1/apiKeys", |c, _, size, token| {
            Box::pin(async move {
                c.tenancy()
                    .list_api_keys(sharing::ListApiKeysRequest {
                        page_size: size,
                        page_token: token,
                    })
                    .await
                    .map(drop)
            })
        }),
        (
            "ListAuditEvents",
            "/api/v1/auditEvents",
            |c, _, size, token| {
                Box::pin(async move {
                    c.tenancy()
                        .list_audit_events(sharing::ListAuditEventsRequest {
                            page_size: size,
                            page_token: token,
                            ..Default::default()
                        })
                        .await
                        .map(drop)
                })
            },
        ),
        (
            "ListGrants",
            "/api/v1/agents/{agent}/grants",
            |c, w, size, token| {
                let agent = w.agent.clone();
                Box::pin(async move {
                    c.sharing()
                        .list_grants(sharing::ListGrantsRequest {
                            agent_id: agent,
                            page_size: size,
                            page_token: token,
                            ..Default::default()
                        })
                        .await
                        .map(drop)
                })
            },
        ),
        ("ListMyAgents", "/api/v1/me/agents", |c, _, size, token| {
            Box::pin(async move {
                c.access()
                    .list_my_agents(sharing::ListMyAgentsRequest {
                        page_size: size,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            })
        }),
        (
            "ListConnections",
            "/api/v1/connections",
            |c, _, size, token| {
                Box::pin(async move {
                    sharing::connections_service_client::ConnectionsServiceClient::new(c.channel())
                        .list_connections(sharing::ListConnectionsRequest {
                            page_size: size,
                            page_token: token,
                            ..Default::default()
                        })
                        .await
                        .map(drop)
                })
            },
        ),
        ("ListSessions", "/api/v1/sessions", |c, _, size, token| {
            Box::pin(async move {
                c.sessions()
                    .list_sessions(store::ListSessionsRequest {
                        page_size: size,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            })
        }),
        (
            "ListInvocations",
            "/api/v1/invocations?scope=USAGE_SCOPE_BILLED_TO_CALLER",
            |c, _, size, token| {
                Box::pin(async move {
                    c.usage()
                        .list_invocations(store::ListInvocationsRequest {
                            scope: store::UsageScope::BilledToCaller as i32,
                            page_size: size,
                            page_token: token,
                            ..Default::default()
                        })
                        .await
                        .map(drop)
                })
            },
        ),
        (
            "WorkspaceList",
            "/api/v1/agents/{agent}/store:list",
            |c, w, size, token| {
                let agent = w.agent.clone();
                Box::pin(async move {
                    store::workspace_store_service_client::WorkspaceStoreServiceClient::new(
                        c.channel(),
                    )
                    .workspace_list(store::WorkspaceListRequest {
                        agent_id: agent,
                        page_size: size,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
                })
            },
        ),
        ("ListInbox", "/api/v1/inbox", |c, _, size, token| {
            Box::pin(async move {
                scheduler::automations_service_client::AutomationsServiceClient::new(c.channel())
                    .list_inbox(scheduler::ListInboxRequest {
                        page_size: size,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            })
        }),
        (
            "ListMySubscriptions",
            "/api/v1/me/subscriptions",
            |c, _, size, token| {
                Box::pin(async move {
                    scheduler::automations_service_client::AutomationsServiceClient::new(
                        c.channel(),
                    )
                    .list_my_subscriptions(scheduler::ListMySubscriptionsRequest {
                        page_size: size,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
                })
            },
        ),
    ]
}

fn list_path(w: &World, path: &str, size: i32, token: &str) -> String {
    let path = path
        .replace("{agent}", &w.agent)
        .replace("{sales}", &w.sales);
    let separator = if path.contains('?') { '&' } else { '?' };
    let token: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    format!("{path}{separator}page_size={size}&page_token={token}")
}

/// A name field far too long, for one RPC.
fn long_name(
    rpc: &'static str,
    field: &'static str,
    attack: fn(&World, String) -> Attack,
) -> Row<World> {
    row(
        format!("a {LONG}-character {field} on {rpc}"),
        Code::InvalidArgument,
        move |w: &World| attack(w, long()).says(field),
    )
}

pub fn table() -> Vec<Row<World>> {
    let mut rows = Vec::new();
    for rpc in public_rpcs() {
        rows.push(row(
            format!("a message one byte over the limit to {}", rpc.path),
            Code::ResourceExhausted,
            move |w: &World| {
                let rpc = rpc.clone();
                let mut attack = Attack::by(&w.alice);
                if let Some((method, template)) = w.routes.get(&rpc.operation)
                    && (method == reqwest::Method::POST || method == reqwest::Method::PATCH)
                {
                    attack = attack
                        .http(method.clone(), fill(template, &w.agent))
                        .json_body(json!({ "padding": "x".repeat(OVER_LIMIT) }));
                }
                attack
                    .grpc(move |c| call_raw(c, rpc, bytes::Bytes::from(vec![0u8; OVER_LIMIT])))
                    .says("max_message_bytes")
            },
        ));
    }
    rows.push(row(
        "parameters nested 90 levels on CreateAgent",
        Code::InvalidArgument,
        |w: &World| {
            Attack::by(&w.alice)
                .grpc(|c| async move {
                    c.registry()
                        .create_agent(registry::CreateAgentRequest {
                            draft: Some(registry::AgentDraft {
                                name: "Deep".into(),
                                model: Some(registry::ModelConfig {
                                    provider: "openai".into(),
                                    model: "gpt-4o".into(),
                                    parameters: Some(nested(90)),
                                }),
                                ..Default::default()
                            }),
                            is_managed: false,
                        })
                        .await
                })
                .post(
                    "/api/v1/agents",
                    json!({ "draft": { "name": "Deep", "model": { "parameters": nested_json(90) } } }),
                )
                .says("max_nesting_depth")
        },
    ));
    rows.push(row(
        "parameters nested 90 levels on UpdateDraft",
        Code::InvalidArgument,
        |w: &World| {
            let (agent, revision) = (w.agent.clone(), w.agent_revision);
            Attack::by(&w.alice)
                .grpc(move |c| async move {
                    c.registry()
                        .update_draft(registry::UpdateDraftRequest {
                            agent_id: agent,
                            draft: Some(registry::AgentDraft {
                                model: Some(registry::ModelConfig {
                                    provider: "openai".into(),
                                    model: "gpt-4o".into(),
                                    parameters: Some(nested(90)),
                                }),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["model".into()],
                            }),
                            expected_draft_revision: revision,
                        })
                        .await
                })
                .says("max_nesting_depth")
        },
    ));
    rows.push(row(
        "JSON arrays nested 200 deep over HTTP",
        Code::InvalidArgument,
        |w: &World| {
            Attack::by(&w.alice)
                .http(reqwest::Method::POST, "/api/v1/agents")
                .raw_body(format!("{}{}", "[".repeat(200), "]".repeat(200)))
                .says("at most 100")
        },
    ));

    rows.push(long_name("CreateOrg", "name", |w, name| {
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.tenancy()
                        .create_org(sharing::CreateOrgRequest { name })
                        .await
                }
            })
            .post("/api/v1/orgs", json!({ "name": name }))
    }));
    rows.push(long_name("UpdateOrg", "name", |w, name| {
        let org = w.org.clone();
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.tenancy()
                        .update_org(sharing::UpdateOrgRequest {
                            org_id: org,
                            name: Some(name),
                            ..Default::default()
                        })
                        .await
                }
            })
            .patch(format!("/api/v1/orgs/{}", w.org), json!({ "name": name }))
    }));
    rows.push(long_name("CreateWorkspace", "name", |w, name| {
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.tenancy()
                        .create_workspace(sharing::CreateWorkspaceRequest { name })
                        .await
                }
            })
            .post("/api/v1/workspaces", json!({ "name": name }))
    }));
    rows.push(long_name("UpdateWorkspace", "name", |w, name| {
        let ws = w.sales.clone();
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.tenancy()
                        .update_workspace(sharing::UpdateWorkspaceRequest {
                            workspace_id: ws,
                            name: Some(name),
                        })
                        .await
                }
            })
            .patch(
                format!("/api/v1/workspaces/{}", w.sales),
                json!({ "name": name }),
            )
    }));
    rows.push(long_name("CreateProject", "name", |w, name| {
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.tenancy()
                        .create_project(sharing::CreateProjectRequest {
                            name,
                            description: String::new(),
                        })
                        .await
                }
            })
            .post("/api/v1/projects", json!({ "name": name }))
    }));
    rows.push(long_name("UpdateProject", "name", |w, name| {
        let project = w.project.clone();
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.tenancy()
                        .update_project(sharing::UpdateProjectRequest {
                            project_id: project,
                            name: Some(name),
                            ..Default::default()
                        })
                        .await
                }
            })
            .patch(
                format!("/api/v1/projects/{}", w.project),
                json!({ "name": name }),
            )
    }));
    rows.push(long_name("CreateAgent", "draft.name", |w, name| {
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move { c.new_agent_result(&name).await }
            })
            .post("/api/v1/agents", json!({ "draft": { "name": name } }))
    }));
    rows.push(long_name("UpdateDraft", "draft.name", |w, name| {
        let (agent, revision) = (w.agent.clone(), w.agent_revision);
        Attack::by(&w.alice).grpc(move |c| async move {
            c.registry()
                .update_draft(registry::UpdateDraftRequest {
                    agent_id: agent,
                    draft: Some(registry::AgentDraft {
                        name,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["name".into()],
                    }),
                    expected_draft_revision: revision,
                })
                .await
        })
    }));
    rows.push(long_name("CreateTemplateFromAgent", "name", |w, name| {
        let agent = w.agent.clone();
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.registry()
                        .create_template_from_agent(registry::CreateTemplateFromAgentRequest {
                            agent_id: agent,
                            version_number: 1,
                            name,
                            description: String::new(),
                        })
                        .await
                }
            })
            .post(
                format!("/api/v1/agents/{}:createTemplate", w.agent),
                json!({ "version_number": 1, "name": name }),
            )
    }));
    rows.push(long_name("CreateApiKey", "label", |w, name| {
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.tenancy()
                        .create_api_key(sharing::CreateApiKeyRequest {
                            label: name,
                            ..Default::default()
                        })
                        .await
                }
            })
            .post("/api/v1/apiKeys", json!({ "label": name }))
    }));
    rows.push(long_name("CreateGrant", "label", |w, name| {
        let agent = w.agent.clone();
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    c.sharing()
                        .create_grant(sharing::CreateGrantRequest {
                            agent_id: agent,
                            kind: sharing::GrantKind::Invoke as i32,
                            label: name,
                            ..Default::default()
                        })
                        .await
                }
            })
            .post(
                format!("/api/v1/agents/{}/grants", w.agent),
                json!({ "kind": "GRANT_KIND_INVOKE", "label": name }),
            )
    }));
    rows.push(long_name("CreateApiKeyConnection", "label", |w, name| {
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    sharing::connections_service_client::ConnectionsServiceClient::new(c.channel())
                        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
                            provider: "crm".into(),
                            api_key: "crm-long-0001".into(),
                            label: name,
                            expire_time: None,
                        })
                        .await
                }
            })
            .post(
                "/api/v1/connections:createApiKey",
                json!({ "provider": "crm", "api_key": "crm-long-0001", "label": name }),
            )
    }));
    rows.push(long_name("WorkspaceWrite", "key", |w, name| {
        let agent = w.agent.clone();
        Attack::by(&w.alice)
            .grpc({
                let name = name.clone();
                move |c| async move {
                    store::workspace_store_service_client::WorkspaceStoreServiceClient::new(
                        c.channel(),
                    )
                    .workspace_write(store::WorkspaceWriteRequest {
                        agent_id: agent,
                        key: name,
                        value: "v".into(),
                        content_type: store::ItemContentType::Text as i32,
                        expected_revision: None,
                    })
                    .await
                }
            })
            .post(
                format!("/api/v1/agents/{}/store:write", w.agent),
                json!({ "key": name, "value": "v", "content_type": "ITEM_CONTENT_TYPE_TEXT" }),
            )
    }));

    for (rpc, path, call) in lists() {
        rows.push(row(
            format!("a page size of 2^31-1 on {rpc}"),
            Code::Ok,
            move |w: &World| {
                let world_path = list_path(w, path, i32::MAX, "");
                let call_world = w.copy();
                Attack::by(&w.alice)
                    .grpc(move |c| call(c, &call_world, i32::MAX, String::new()))
                    .get(world_path)
            },
        ));
        rows.push(row(
            format!("a negative page size on {rpc}"),
            Code::InvalidArgument,
            move |w: &World| {
                let world_path = list_path(w, path, -1, "");
                let call_world = w.copy();
                Attack::by(&w.alice)
                    .grpc(move |c| call(c, &call_world, -1, String::new()))
                    .get(world_path)
                    .says("page_size")
            },
        ));
        rows.push(row(
            format!("a malformed page token on {rpc}"),
            Code::InvalidArgument,
            move |w: &World| {
                let token = "!!not-a-token'; DROP TABLE agents;--";
                let world_path = list_path(w, path, 10, token);
                let call_world = w.copy();
                Attack::by(&w.alice)
                    .grpc(move |c| call(c, &call_world, 10, token.to_string()))
                    .get(world_path)
                    .says("page_token")
            },
        ));
    }
    rows
}

impl World {
    /// The ids a list call needs, without the routes.
    fn copy(&self) -> World {
        World {
            alice: self.alice.clone(),
            agent: self.agent.clone(),
            agent_revision: self.agent_revision,
            project: self.project.clone(),
            sales: self.sales.clone(),
            org: self.org.clone(),
            routes: Default::default(),
        }
    }
}

async fn snapshot(suite: &Suite, w: &World) -> String {
    let alice = suite
        .anonymous()
        .await
        .with_token(w.alice.token.as_deref().expect("token"));
    let orgs = alice
        .tenancy()
        .list_my_orgs(sharing::ListMyOrgsRequest::default())
        .await
        .expect("orgs")
        .into_inner()
        .orgs
        .into_iter()
        .map(|o| o.org.map(|o| o.name).unwrap_or_default())
        .collect::<Vec<_>>();
    let agents = alice
        .registry()
        .list_agents(registry::ListAgentsRequest::default())
        .await
        .expect("agents")
        .into_inner()
        .agents
        .into_iter()
        .map(|a| {
            (
                a.draft.map(|d| d.name).unwrap_or_default(),
                a.draft_revision,
            )
        })
        .collect::<Vec<_>>();
    let workspaces = alice
        .tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("workspaces")
        .into_inner()
        .workspaces
        .len();
    let projects = alice
        .tenancy()
        .list_projects(sharing::ListProjectsRequest::default())
        .await
        .expect("projects")
        .into_inner()
        .projects
        .into_iter()
        .map(|p| p.name)
        .collect::<Vec<_>>();
    let keys = alice
        .tenancy()
        .list_api_keys(sharing::ListApiKeysRequest::default())
        .await
        .expect("keys")
        .into_inner()
        .api_keys
        .len();
    format!(
        "orgs {orgs:?} | agents {agents:?} | workspaces {workspaces} | projects {projects:?} | keys {keys}"
    )
}

#[tokio::test]
async fn oversized_deep_long_and_malformed_input_is_refused_by_name() {
    let suite = Suite::start().await;
    let alice = suite
        .anonymous()
        .await
        .with_token(&stepped_up(&suite, "alice"));
    let org = alice.new_org("Acme Limits").await;
    alice.enable_workspaces().await;
    let sales = alice.create_workspace("Sales").await;
    let agent = alice.deployed_agent("Sized").await;
    let project = alice
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Sized project".into(),
            description: String::new(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project")
        .id;
    let w = World {
        alice: Caller::bearer(&stepped_up(&suite, "alice")),
        agent_revision: agent.draft_revision,
        agent: agent.id,
        project,
        sales,
        org: org.id,
        routes: super::http_routes(&suite).await,
    };
    run_table(&suite, &w, table(), &[], || snapshot(&suite, &w)).await;
    suite.stop().await;
}
