//! Existence: every id-taking RPC, given another org's id (and, for the
//! things a teammate cannot see, a teammate's), answers NOT_FOUND exactly
//! as it answers an id that never existed: the same code and, once the id
//! is taken out, the same message byte for byte, over gRPC and over
//! HTTP/JSON.

use agentshare_e2e::{Authed, Suite, UserClient};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as scheduler;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use scheduler::automations_service_client::AutomationsServiceClient;
use serde_json::json;
use sharing::connections_service_client::ConnectionsServiceClient;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::{Code, Status};

use super::{Attack, Boxed, Caller, HttpCall, Row, never, row, run_table, send_http, stepped_up};

/// Acme's ids (the victim's), and the attacker's own.
#[derive(Clone)]
pub struct Ids {
    org: String,
    workspace: String,
    project: String,
    api_key: String,
    agent: String,
    template: String,
    grant: String,
    connection: String,
    session: String,
    /// The attacker's own agent and workspace, for RPCs that take two ids.
    own_agent: String,
    own_workspace: String,
}

pub struct World {
    gateway: String,
    /// Bob, owner of Bobco, with a fresh second factor.
    stranger: Caller,
    /// Carol, a member of Acme who sees none of Alice's private things.
    teammate: Caller,
    ids: Ids,
}

type Call = fn(UserClient, String, Ids) -> Boxed<Result<(), Status>>;

fn registry_of(
    c: &UserClient,
) -> registry::agent_registry_service_client::AgentRegistryServiceClient<Authed> {
    c.registry()
}

fn connections(c: &UserClient) -> ConnectionsServiceClient<Authed> {
    ConnectionsServiceClient::new(c.channel())
}

fn tools(c: &UserClient) -> WorkspaceStoreServiceClient<Authed> {
    WorkspaceStoreServiceClient::new(c.channel())
}

fn automations(c: &UserClient) -> AutomationsServiceClient<Authed> {
    AutomationsServiceClient::new(c.channel())
}

/// Which of Acme's ids a probe names.
#[derive(Clone, Copy)]
enum Kind {
    Org,
    Workspace,
    Project,
    ApiKey,
    Agent,
    Template,
    Grant,
    Connection,
    Session,
}

impl Kind {
    fn of(self, ids: &Ids) -> String {
        match self {
            Kind::Org => ids.org.clone(),
            Kind::Workspace => ids.workspace.clone(),
            Kind::Project => ids.project.clone(),
            Kind::ApiKey => ids.api_key.clone(),
            Kind::Agent => ids.agent.clone(),
            Kind::Template => ids.template.clone(),
            Kind::Grant => ids.grant.clone(),
            Kind::Connection => ids.connection.clone(),
            Kind::Session => ids.session.clone(),
        }
    }
}

/// An HTTP form of a probe: method, path with `{id}`, and JSON body.
type Http = Option<(reqwest::Method, &'static str, Option<serde_json::Value>)>;

fn http_of(http: &Http, id: &str, ids: &Ids) -> Option<HttpCall> {
    http.as_ref().map(|(method, template, body)| HttpCall {
        method: method.clone(),
        path: template
            .replace("{id}", id)
            .replace("{own_agent}", &ids.own_agent),
        body: body.as_ref().map(|b| {
            b.to_string()
                .replace("{id}", id)
                .replace("{own_agent}", &ids.own_agent)
        }),
    })
}

/// Calls the probe with the real id and with a fresh one; answers the
/// real call's status when both are NOT_FOUND and read the same with the
/// id taken out, over gRPC and HTTP alike; otherwise an UNKNOWN naming
/// the difference.
async fn alike(
    client: UserClient,
    caller: Caller,
    gateway: String,
    ids: Ids,
    kind: Kind,
    call: Call,
    http: Http,
) -> Result<(), Status> {
    let real = kind.of(&ids);
    let fresh = never();
    let real_answer = call(client.clone(), real.clone(), ids.clone()).await;
    let fresh_answer = call(client, fresh.clone(), ids.clone()).await;
    let ok = Status::new(Code::Ok, "");
    let real_status = real_answer.err().unwrap_or_else(|| ok.clone());
    let fresh_status = fresh_answer.err().unwrap_or(ok);
    let seen = |s: &Status, id: &str| {
        (
            s.code(),
            s.message().replace(id, "ID"),
            String::from_utf8_lossy(s.details()).replace(id, "ID"),
        )
    };
    if seen(&real_status, &real) != seen(&fresh_status, &fresh) {
        return Err(Status::unknown(format!(
            "gRPC answers differ: {:?} vs {:?}",
            seen(&real_status, &real),
            seen(&fresh_status, &fresh)
        )));
    }
    if let (Some(real_http), Some(fresh_http)) =
        (http_of(&http, &real, &ids), http_of(&http, &fresh, &ids))
    {
        let a = send_http(&gateway, &caller, &real_http).await;
        let b = send_http(&gateway, &caller, &fresh_http).await;
        if a.code != real_status.code() {
            return Err(Status::unknown(format!(
                "HTTP answered {:?} where gRPC answered {:?}: {}",
                a.code,
                real_status.code(),
                a.raw
            )));
        }
        if a.raw.replace(&real, "ID") != b.raw.replace(&fresh, "ID") {
            return Err(Status::unknown(format!(
                "HTTP bodies differ: {} vs {}",
                a.raw, b.raw
            )));
        }
    }
    if real_status.code() == Code::Ok {
        Ok(())
    } else {
        Err(real_status)
    }
}

fn probe(name: &'static str, teammate: bool, kind: Kind, call: Call, http: Http) -> Row<World> {
    probe_expecting(name, teammate, kind, call, http, Code::NotFound)
}

/// A probe whose answer to both ids is `expect`: a list filtered by an id
/// answers OK, empty, for an id that is not the caller's as for a missing one.
fn probe_expecting(
    name: &'static str,
    teammate: bool,
    kind: Kind,
    call: Call,
    http: Http,
    expect: Code,
) -> Row<World> {
    let who = if teammate {
        "a teammate"
    } else {
        "another org"
    };
    row(
        format!("{name} with {who}'s id answers as a missing one"),
        expect,
        move |w: &World| {
            let caller = if teammate { &w.teammate } else { &w.stranger };
            let (caller2, gateway, ids, http) = (
                caller.clone(),
                w.gateway.clone(),
                w.ids.clone(),
                http.clone(),
            );
            Attack::by(caller).grpc(move |c| alike(c, caller2, gateway, ids, kind, call, http))
        },
    )
}

use reqwest::Method as M;

pub fn table() -> Vec<Row<World>> {
    let mut rows = Vec::new();
    for teammate in [false, true] {
        rows.extend([
            probe(
                "GetAgent",
                teammate,
                Kind::Agent,
                |c, id, _| {
                    Box::pin(async move {
                        registry_of(&c)
                            .get_agent(registry::GetAgentRequest { agent_id: id })
                            .await
                            .map(drop)
                    })
                },
                Some((M::GET, "/api/v1/agents/{id}", None)),
            ),
            probe(
                "Invoke",
                teammate,
                Kind::Agent,
                |c, id, _| {
                    Box::pin(async move {
                        c.invoke()
                            .invoke(gateway::InvokeRequest {
                                agent_id: id,
                                input: "hi".into(),
                                ..Default::default()
                            })
                            .await
                            .map(drop)
                    })
                },
                Some((
                    M::POST,
                    "/api/v1/agents/{id}:invoke",
                    Some(json!({ "input": "hi" })),
                )),
            ),
            probe(
                "WorkspaceRead",
                teammate,
                Kind::Agent,
                |c, id, _| {
                    Box::pin(async move {
                        tools(&c)
                            .workspace_read(store::WorkspaceReadRequest {
                                agent_id: id,
                                key: "secret".into(),
                            })
                            .await
                            .map(drop)
                    })
                },
                Some((M::GET, "/api/v1/agents/{id}/store:read?key=secret", None)),
            ),
            probe(
                "GetConnection",
                teammate,
                Kind::Connection,
                |c, id, _| {
                    Box::pin(async move {
                        connections(&c)
                            .get_connection(sharing::GetConnectionRequest { connection_id: id })
                            .await
                            .map(drop)
                    })
                },
                Some((M::GET, "/api/v1/connections/{id}", None)),
            ),
            probe(
                "GetSession",
                teammate,
                Kind::Session,
                |c, id, _| {
                    Box::pin(async move {
                        c.sessions()
                            .get_session(store::GetSessionRequest {
                                session_id: id,
                                ..Default::default()
                            })
                            .await
                            .map(drop)
                    })
                },
                Some((M::GET, "/api/v1/sessions/{id}", None)),
            ),
            probe(
                "PinVersion",
                teammate,
                Kind::Agent,
                |c, id, _| {
                    Box::pin(async move {
                        c.access()
                            .pin_version(sharing::PinVersionRequest {
                                agent_id: id,
                                version: 1,
                            })
                            .await
                            .map(drop)
                    })
                },
                Some((
                    M::POST,
                    "/api/v1/agents/{id}:pin",
                    Some(json!({ "version": 1 })),
                )),
            ),
        ]);
    }
    rows.extend([
        probe("GetOrg", false, Kind::Org, |c, id, _| Box::pin(async move {
            c.tenancy().get_org(sharing::GetOrgRequest { org_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/orgs/{id}", None))),
        probe("UpdateOrg", false, Kind::Org, |c, id, _| Box::pin(async move {
            c.tenancy().update_org(sharing::UpdateOrgRequest { org_id: id, name: Some("Taken".into()), ..Default::default() }).await.map(drop)
        }), Some((M::PATCH, "/api/v1/orgs/{id}", Some(json!({ "name": "Taken" }))))),
        probe("GetWorkspace", false, Kind::Workspace, |c, id, _| Box::pin(async move {
            c.tenancy().get_workspace(sharing::GetWorkspaceRequest { workspace_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/workspaces/{id}", None))),
        probe("UpdateWorkspace", false, Kind::Workspace, |c, id, _| Box::pin(async move {
            c.tenancy().update_workspace(sharing::UpdateWorkspaceRequest { workspace_id: id, name: Some("Taken".into()) }).await.map(drop)
        }), Some((M::PATCH, "/api/v1/workspaces/{id}", Some(json!({ "name": "Taken" }))))),
        probe("DeleteWorkspace", false, Kind::Workspace, |c, id, _| Box::pin(async move {
            c.tenancy().delete_workspace(sharing::DeleteWorkspaceRequest { workspace_id: id }).await.map(drop)
        }), Some((M::DELETE, "/api/v1/workspaces/{id}", None))),
        probe("ListWorkspaceMembers", false, Kind::Workspace, |c, id, _| Box::pin(async move {
            c.tenancy().list_workspace_members(sharing::ListWorkspaceMembersRequest { workspace_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/workspaces/{id}/members", None))),
        probe("SwitchWorkspace", false, Kind::Workspace, |c, id, _| Box::pin(async move {
            c.tenancy().switch_workspace(sharing::SwitchWorkspaceRequest { workspace_id: id }).await.map(drop)
        }), Some((M::POST, "/api/v1/workspaces/switch", Some(json!({ "workspace_id": "{id}" }))))),
        probe("the workspace header", false, Kind::Workspace, |c, id, _| Box::pin(async move {
            c.in_workspace(&id).tenancy().list_projects(sharing::ListProjectsRequest::default()).await.map(drop)
        }), None),
        probe("the org header", false, Kind::Org, |c, id, _| Box::pin(async move {
            c.in_org(&id).tenancy().get_me(sharing::GetMeRequest {}).await.map(drop)
        }), None),
        probe("GetWorkspaceAutomationCap", false, Kind::Workspace, |c, id, _| Box::pin(async move {
            automations(&c).get_workspace_automation_cap(scheduler::GetWorkspaceAutomationCapRequest { workspace_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/workspaces/{id}/automationCap", None))),
        probe("SetWorkspaceAutomationCap", false, Kind::Workspace, |c, id, _| Box::pin(async move {
            automations(&c).set_workspace_automation_cap(scheduler::SetWorkspaceAutomationCapRequest { workspace_id: id, max_active_automations: Some(1) }).await.map(drop)
        }), Some((M::PATCH, "/api/v1/workspaces/{id}/automationCap", Some(json!({ "max_active_automations": 1 }))))),
        probe("GetProject", false, Kind::Project, |c, id, _| Box::pin(async move {
            c.tenancy().get_project(sharing::GetProjectRequest { project_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/projects/{id}", None))),
        probe("UpdateProject", false, Kind::Project, |c, id, _| Box::pin(async move {
            c.tenancy().update_project(sharing::UpdateProjectRequest { project_id: id, name: Some("Taken".into()), ..Default::default() }).await.map(drop)
        }), Some((M::PATCH, "/api/v1/projects/{id}", Some(json!({ "name": "Taken" }))))),
        probe("DeleteProject", false, Kind::Project, |c, id, _| Box::pin(async move {
            c.tenancy().delete_project(sharing::DeleteProjectRequest { project_id: id }).await.map(drop)
        }), Some((M::DELETE, "/api/v1/projects/{id}", None))),
        probe("GetProjectWorkspaces", false, Kind::Project, |c, id, _| Box::pin(async move {
            c.tenancy().get_project_workspaces(sharing::GetProjectWorkspacesRequest { project_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/projects/{id}/workspaces", None))),
        probe("Invoke in a project", false, Kind::Project, |c, id, ids| Box::pin(async move {
            c.invoke().invoke(gateway::InvokeRequest { agent_id: ids.own_agent, input: "hi".into(), project_id: Some(id), ..Default::default() }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{own_agent}:invoke", Some(json!({ "input": "hi", "project_id": "{id}" }))))),
        probe("RevokeApiKey", false, Kind::ApiKey, |c, id, _| Box::pin(async move {
            c.tenancy().revoke_api_key(sharing::RevokeApiKeyRequest { api_key_id: id }).await.map(drop)
        }), Some((M::POST, "/api/v1/apiKeys/{id}:revoke", Some(json!({}))))),
        probe("UpdateDraft", false, Kind::Agent, |c, id, _| Box::pin(async move {
            registry_of(&c).update_draft(registry::UpdateDraftRequest { agent_id: id, draft: Some(registry::AgentDraft { name: "Taken".into(), ..Default::default() }), update_mask: Some(prost_types::FieldMask { paths: vec!["name".into()] }), expected_draft_revision: 1 }).await.map(drop)
        }), None),
        probe("DeployAgent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            registry_of(&c).deploy_agent(registry::DeployAgentRequest { agent_id: id, expected_draft_revision: 1, notes: String::new() }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}:deploy", Some(json!({ "expected_draft_revision": 1 }))))),
        probe("ListVersions", false, Kind::Agent, |c, id, _| Box::pin(async move {
            registry_of(&c).list_versions(registry::ListVersionsRequest { agent_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/versions", None))),
        probe("GetVersion", false, Kind::Agent, |c, id, _| Box::pin(async move {
            registry_of(&c).get_version(registry::GetVersionRequest { agent_id: id, version_number: 1 }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/versions/1", None))),
        probe("RollbackAgent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            registry_of(&c).rollback_agent(registry::RollbackAgentRequest { agent_id: id, version_number: 1, ..Default::default() }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}:rollback", Some(json!({ "version_number": 1 }))))),
        probe("DeleteAgent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            registry_of(&c).delete_agent(registry::DeleteAgentRequest { agent_id: id }).await.map(drop)
        }), Some((M::DELETE, "/api/v1/agents/{id}", None))),
        probe("CreateTemplateFromAgent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            registry_of(&c).create_template_from_agent(registry::CreateTemplateFromAgentRequest { agent_id: id, version_number: 1, name: "Taken".into(), description: String::new() }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}:createTemplate", Some(json!({ "version_number": 1, "name": "Taken" }))))),
        probe("GetTemplate", false, Kind::Template, |c, id, _| Box::pin(async move {
            registry_of(&c).get_template(registry::GetTemplateRequest { template_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/templates/{id}", None))),
        probe("CreateAgentFromTemplate", false, Kind::Template, |c, id, _| Box::pin(async move {
            registry_of(&c).create_agent_from_template(registry::CreateAgentFromTemplateRequest { template_id: id, name: "Copied".into() }).await.map(drop)
        }), Some((M::POST, "/api/v1/templates/{id}:createAgent", Some(json!({ "name": "Copied" }))))),
        probe("ShareAgent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sharing().share_agent(sharing::ShareAgentRequest { agent_id: id }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}:share", Some(json!({}))))),
        probe("UnshareAgent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sharing().unshare_agent(sharing::UnshareAgentRequest { agent_id: id }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}:unshare", Some(json!({}))))),
        probe("PreviewUnshareAgent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sharing().preview_unshare_agent(sharing::PreviewUnshareAgentRequest { agent_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}:previewUnshare", None))),
        probe("GetAgentWorkspaces", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sharing().get_agent_workspaces(sharing::GetAgentWorkspacesRequest { agent_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/workspaces", None))),
        probe("SetAgentWorkspaces", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sharing().set_agent_workspaces(sharing::SetAgentWorkspacesRequest { agent_id: id, workspace_ids: vec![] }).await.map(drop)
        }), Some((M::PATCH, "/api/v1/agents/{id}/workspaces", Some(json!({ "workspace_ids": [] }))))),
        probe("SetAgentWorkspaces naming a workspace", false, Kind::Workspace, |c, id, ids| Box::pin(async move {
            c.sharing().set_agent_workspaces(sharing::SetAgentWorkspacesRequest { agent_id: ids.own_agent, workspace_ids: vec![ids.own_workspace, id] }).await.map(drop)
        }), None),
        probe("CreateGrant", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sharing().create_grant(sharing::CreateGrantRequest { agent_id: id, kind: sharing::GrantKind::Delegate as i32, label: "x".into(), ..Default::default() }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}/grants", Some(json!({ "kind": "GRANT_KIND_DELEGATE", "label": "x" }))))),
        probe("ListGrants", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sharing().list_grants(sharing::ListGrantsRequest { agent_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/grants", None))),
        probe("RevokeGrant", false, Kind::Grant, |c, id, _| Box::pin(async move {
            c.sharing().revoke_grant(sharing::RevokeGrantRequest { grant_id: id }).await.map(drop)
        }), Some((M::POST, "/api/v1/grants/{id}:revoke", Some(json!({}))))),
        probe("GetAgentReach", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sharing().get_agent_reach(sharing::GetAgentReachRequest { agent_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/reach", None))),
        probe("Check", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.access().check(sharing::CheckRequest { principal: None, agent_id: id, action: sharing::Action::Run as i32 }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}:check?action=ACTION_RUN", None))),
        probe("ResolveInvocation", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.access().resolve_invocation(sharing::ResolveInvocationRequest { agent_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}:resolveInvocation", None))),
        probe("UnpinVersion", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.access().unpin_version(sharing::UnpinVersionRequest { agent_id: id }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}:unpin", Some(json!({}))))),
        probe("GetPin", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.access().get_pin(sharing::GetPinRequest { agent_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/pin", None))),
        probe("DeleteConnection", false, Kind::Connection, |c, id, _| Box::pin(async move {
            connections(&c).delete_connection(sharing::DeleteConnectionRequest { connection_id: id }).await.map(drop)
        }), Some((M::DELETE, "/api/v1/connections/{id}", None))),
        probe("TestConnection", false, Kind::Connection, |c, id, _| Box::pin(async move {
            connections(&c).test_connection(sharing::TestConnectionRequest { connection_id: id }).await.map(drop)
        }), Some((M::POST, "/api/v1/connections/{id}:test", Some(json!({}))))),
        probe("ReconnectConnection", false, Kind::Connection, |c, id, _| Box::pin(async move {
            connections(&c).reconnect_connection(sharing::ReconnectConnectionRequest { connection_id: id, api_key: "crm-x-0001".into() }).await.map(drop)
        }), Some((M::POST, "/api/v1/connections/{id}:reconnect", Some(json!({ "api_key": "crm-x-0001" }))))),
        probe("GetAgentSetup", false, Kind::Agent, |c, id, _| Box::pin(async move {
            connections(&c).get_agent_setup(sharing::GetAgentSetupRequest { agent_id: id }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/setup", None))),
        probe("BindIntegration", false, Kind::Agent, |c, id, _| Box::pin(async move {
            connections(&c).bind_integration(sharing::BindIntegrationRequest { agent_id: id, integration_key: "crm".into(), connection_id: uuid::Uuid::nil().to_string() }).await.map(drop)
        }), None),
        probe("UnbindIntegration", false, Kind::Agent, |c, id, _| Box::pin(async move {
            connections(&c).unbind_integration(sharing::UnbindIntegrationRequest { agent_id: id, integration_key: "crm".into() }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}/integrations/crm:unbind", Some(json!({}))))),
        probe("CompleteAgentSetup", false, Kind::Agent, |c, id, _| Box::pin(async move {
            connections(&c).complete_agent_setup(sharing::CompleteAgentSetupRequest { agent_id: id }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}/setup:complete", Some(json!({}))))),
        probe("WorkspaceList", false, Kind::Agent, |c, id, _| Box::pin(async move {
            tools(&c).workspace_list(store::WorkspaceListRequest { agent_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/store:list", None))),
        probe("WorkspaceWrite", false, Kind::Agent, |c, id, _| Box::pin(async move {
            tools(&c).workspace_write(store::WorkspaceWriteRequest { agent_id: id, key: "k".into(), value: "v".into(), content_type: store::ItemContentType::Text as i32, expected_revision: None }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}/store:write", Some(json!({ "key": "k", "value": "v", "content_type": "ITEM_CONTENT_TYPE_TEXT" }))))),
        probe("WorkspaceDelete", false, Kind::Agent, |c, id, _| Box::pin(async move {
            tools(&c).workspace_delete(store::WorkspaceDeleteRequest { agent_id: id, key: "secret".into(), expected_revision: None }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}/store:delete", Some(json!({ "key": "secret" }))))),
        probe("WorkspacePublish into it", false, Kind::Agent, |c, id, ids| Box::pin(async move {
            tools(&c).workspace_publish(store::WorkspacePublishRequest { agent_id: ids.own_agent, key: "mine".into(), target_agent_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{own_agent}/store:publish", Some(json!({ "key": "mine", "target_agent_id": "{id}" }))))),
        probe("Watch", false, Kind::Agent, |c, id, _| Box::pin(async move {
            tools(&c).watch(store::WatchRequest { agent_id: id, key_prefix: String::new(), after_revision: None, omit_values: false }).await.map(drop)
        }), None),
        probe_expecting("ListSessions", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.sessions().list_sessions(store::ListSessionsRequest { agent_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/sessions?agent_id={id}", None)), Code::Ok),
        probe("Invoke continuing a session", false, Kind::Session, |c, id, ids| Box::pin(async move {
            c.invoke().invoke(gateway::InvokeRequest { agent_id: ids.own_agent, input: "hi".into(), session_id: Some(id), ..Default::default() }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{own_agent}:invoke", Some(json!({ "input": "hi", "session_id": "{id}" }))))),
        probe("ListInvocations of an agent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.usage().list_invocations(store::ListInvocationsRequest { scope: store::UsageScope::Agent as i32, agent_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/invocations?scope=USAGE_SCOPE_AGENT&agent_id={id}", None))),
        probe("SummarizeUsage of an agent", false, Kind::Agent, |c, id, _| Box::pin(async move {
            c.usage().summarize_usage(store::SummarizeUsageRequest { scope: store::UsageScope::Agent as i32, agent_id: id, group_by: store::UsageGroupBy::Agent as i32, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/invocations:summarize?scope=USAGE_SCOPE_AGENT&group_by=USAGE_GROUP_BY_AGENT&agent_id={id}", None))),
        probe("ListAutomations", false, Kind::Agent, |c, id, _| Box::pin(async move {
            automations(&c).list_automations(scheduler::ListAutomationsRequest { agent_id: id, ..Default::default() }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/automations", None))),
        probe("Subscribe", false, Kind::Agent, |c, id, _| Box::pin(async move {
            automations(&c).subscribe(scheduler::SubscribeRequest { agent_id: id, automation_key: "daily".into(), enabled: true, channels: vec![] }).await.map(drop)
        }), Some((M::POST, "/api/v1/agents/{id}/automations/daily:subscribe", Some(json!({ "enabled": true }))))),
        probe("NextRuns", false, Kind::Agent, |c, id, _| Box::pin(async move {
            automations(&c).next_runs(scheduler::NextRunsRequest { agent_id: id, automation_key: "daily".into(), count: 3, after_time: None }).await.map(drop)
        }), Some((M::GET, "/api/v1/agents/{id}/automations/daily:nextRuns?count=3", None))),
    ]);
    rows
}

/// Acme as Alice reads it.
async fn snapshot(alice: &UserClient, ids: &Ids) -> String {
    let agent = alice
        .registry()
        .get_agent(registry::GetAgentRequest {
            agent_id: ids.agent.clone(),
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let workspaces = alice
        .tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("workspaces")
        .into_inner()
        .workspaces
        .into_iter()
        .map(|w| w.workspace.map(|w| w.name).unwrap_or_default())
        .collect::<Vec<_>>();
    let project = alice
        .tenancy()
        .get_project(sharing::GetProjectRequest {
            project_id: ids.project.clone(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project");
    let grants = alice
        .sharing()
        .list_grants(sharing::ListGrantsRequest {
            agent_id: ids.agent.clone(),
            include_inactive: true,
            ..Default::default()
        })
        .await
        .expect("grants")
        .into_inner()
        .grants
        .into_iter()
        .map(|g| g.state)
        .collect::<Vec<_>>();
    let keys = alice
        .tenancy()
        .list_api_keys(sharing::ListApiKeysRequest::default())
        .await
        .expect("keys")
        .into_inner()
        .api_keys
        .into_iter()
        .map(|k| k.revoke_time.is_some())
        .collect::<Vec<_>>();
    let connection = connections(alice)
        .get_connection(sharing::GetConnectionRequest {
            connection_id: ids.connection.clone(),
        })
        .await
        .expect("connection")
        .into_inner()
        .connection
        .expect("connection");
    let page = tools(alice)
        .workspace_list(store::WorkspaceListRequest {
            agent_id: ids.agent.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    format!(
        "agent {} {} {} | workspaces {workspaces:?} | project {} {} | grants {grants:?} | \
         keys {keys:?} | connection {} | store {}",
        agent.state,
        agent.draft_revision,
        agent.latest_version_number,
        project.name,
        project.revision,
        connection.status,
        page.revision
    )
}

#[tokio::test]
async fn another_tenants_ids_answer_exactly_as_missing_ones() {
    let suite = Suite::start().await;
    let acme = suite
        .org("Acme Existence")
        .member("carol", sharing::OrgRole::Member)
        .build()
        .await;
    let alice = acme.owner.with_token(&stepped_up(&suite, "alice"));
    alice.enable_workspaces().await;
    let workspace = alice.create_workspace("Secret lab").await;
    let project = alice
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Secret project".into(),
            description: String::new(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project")
        .id;
    let api_key = alice
        .tenancy()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "ci".into(),
            ..Default::default()
        })
        .await
        .expect("key")
        .into_inner()
        .api_key
        .expect("key")
        .id;
    // Alice's private agent: unshared, so her teammates do not see it either.
    let agent = alice.deployed_agent("Secret agent").await;
    tools(&alice)
        .workspace_write(store::WorkspaceWriteRequest {
            agent_id: agent.id.clone(),
            key: "secret".into(),
            value: "the launch date".into(),
            content_type: store::ItemContentType::Text as i32,
            expected_revision: None,
        })
        .await
        .expect("write");
    let template = alice
        .registry()
        .create_template_from_agent(registry::CreateTemplateFromAgentRequest {
            agent_id: agent.id.clone(),
            version_number: 1,
            name: "Secret template".into(),
            description: String::new(),
        })
        .await
        .expect("template")
        .into_inner()
        .template
        .expect("template")
        .id;
    let grant = alice.grant(&agent.id, sharing::GrantKind::Delegate).await.0;
    let connection = alice
        .api_key_connection("crm", "crm-alice-secret-0001")
        .await;
    let session = alice
        .run(&agent.id, "the secret question")
        .await
        .expect("run")
        .session_id;

    let bob = suite
        .anonymous()
        .await
        .with_token(&stepped_up(&suite, "bob"));
    let bobco = bob.new_org("Bobco").await;
    // Workspaces on, so a workspace id reaches its lookup.
    bob.enable_workspaces().await;
    let own_agent = bob.shared_agent("Bob's own").await.id;
    tools(&bob)
        .workspace_write(store::WorkspaceWriteRequest {
            agent_id: own_agent.clone(),
            key: "mine".into(),
            value: "bob's".into(),
            content_type: store::ItemContentType::Text as i32,
            expected_revision: None,
        })
        .await
        .expect("bob writes");
    let ids = Ids {
        org: acme.org.id.clone(),
        workspace,
        project,
        api_key,
        agent: agent.id.clone(),
        template,
        grant,
        connection,
        session,
        own_agent,
        own_workspace: bobco.default_workspace_id,
    };
    let w = World {
        gateway: suite.gateway_addr().to_string(),
        stranger: Caller::bearer(&stepped_up(&suite, "bob")),
        teammate: Caller::bearer(&stepped_up(&suite, "carol")),
        ids: ids.clone(),
    };
    let private = vec![
        "Acme Existence".to_string(),
        "Secret".to_string(),
        "the launch date".to_string(),
        "crm-alice-secret-0001".to_string(),
    ];
    run_table(&suite, &w, table(), &private, || snapshot(&alice, &ids)).await;
    suite.stop().await;
}
