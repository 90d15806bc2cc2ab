//! Org isolation: a user of org B, even an owner with a fresh
//! second factor, reaches nothing of org A through any tenancy RPC, and
//! every id of A answers exactly as an id that never existed.

use agentshare_e2e::Suite;
use agentshare_proto::sharing::v1 as sharing;
use tonic::{Code, Status};

const NEVER: &str = "01900000-0000-7000-8000-000000000000";

/// Both calls failed alike: NOT_FOUND, with the same message once the id is
/// taken out, so the answer says nothing about whether A's id exists.
#[track_caller]
fn alike(rpc: &str, real: Result<(), Status>, real_id: &str, never: Result<(), Status>) {
    let real = real.expect_err(&format!("{rpc} with org A's id should fail"));
    let never = never.expect_err(&format!("{rpc} with an unknown id should fail"));
    assert_eq!(real.code(), Code::NotFound, "{rpc}: {}", real.message());
    assert_eq!(never.code(), Code::NotFound, "{rpc}: {}", never.message());
    assert_eq!(
        real.message().replace(real_id, "ID"),
        never.message().replace(NEVER, "ID"),
        "{rpc}"
    );
}

/// Calls `$call` once with A's id and once with one that never existed,
/// binding each to `$id`.
macro_rules! probe {
    ($rpc:literal, $real:expr, |$id:ident| $call:expr) => {{
        let real_id: String = $real.clone();
        let $id: String = real_id.clone();
        let real = $call.await.map(|_| ());
        let $id: String = NEVER.to_string();
        let never = $call.await.map(|_| ());
        alike($rpc, real, &real_id, never);
    }};
}

#[tokio::test]
async fn nothing_of_another_org_is_reachable_or_even_detectable() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let acme = alice.new_org("Acme").await;
    bob.new_org("Bobco").await;
    let alice_strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let bob_strong = bob.with_token(&suite.token_with("bob", true, 7200));
    for owner in [&alice_strong, &bob_strong] {
        owner.enable_workspaces().await;
    }
    let sales = alice_strong
        .tenancy()
        .create_workspace(sharing::CreateWorkspaceRequest {
            name: "Sales".into(),
        })
        .await
        .expect("sales")
        .into_inner()
        .workspace
        .expect("workspace");
    let project = alice
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Secret".into(),
            description: String::new(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project");
    let key = alice
        .tenancy()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "ci".into(),
            ..Default::default()
        })
        .await
        .expect("key")
        .into_inner()
        .api_key
        .expect("key");
    let alice_id = alice
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner()
        .user
        .expect("user")
        .id;
    let bob_project = bob
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Mine".into(),
            description: String::new(),
        })
        .await
        .expect("bob's project")
        .into_inner()
        .project
        .expect("project");

    let b = || bob_strong.tenancy();
    probe!("GetOrg", acme.id, |id| b()
        .get_org(sharing::GetOrgRequest { org_id: id }));
    probe!("UpdateOrg", acme.id, |id| b().update_org(
        sharing::UpdateOrgRequest {
            org_id: id,
            name: Some("Taken".into()),
            ..Default::default()
        }
    ));
    probe!("GetWorkspace", sales.id, |id| b().get_workspace(
        sharing::GetWorkspaceRequest { workspace_id: id }
    ));
    probe!("UpdateWorkspace", sales.id, |id| b().update_workspace(
        sharing::UpdateWorkspaceRequest {
            workspace_id: id,
            name: Some("Taken".into()),
        }
    ));
    probe!("DeleteWorkspace", sales.id, |id| b().delete_workspace(
        sharing::DeleteWorkspaceRequest { workspace_id: id }
    ));
    probe!("AddWorkspaceMember", sales.id, |id| b()
        .add_workspace_member(sharing::AddWorkspaceMemberRequest {
            workspace_id: id,
            user_id: alice_id.clone(),
            role: sharing::WorkspaceRole::Member as i32,
        }));
    probe!("ListWorkspaceMembers", sales.id, |id| b()
        .list_workspace_members(sharing::ListWorkspaceMembersRequest {
            workspace_id: id,
            ..Default::default()
        }));
    probe!("UpdateWorkspaceMemberRole", sales.id, |id| b()
        .update_workspace_member_role(
            sharing::UpdateWorkspaceMemberRoleRequest {
                workspace_id: id,
                user_id: alice_id.clone(),
                role: sharing::WorkspaceRole::Member as i32,
            }
        ));
    probe!("RemoveWorkspaceMember", sales.id, |id| b()
        .remove_workspace_member(
            sharing::RemoveWorkspaceMemberRequest {
                workspace_id: id,
                user_id: alice_id.clone(),
            }
        ));
    probe!("SwitchWorkspace", sales.id, |id| b().switch_workspace(
        sharing::SwitchWorkspaceRequest { workspace_id: id }
    ));
    probe!("UpdateOrgMemberRole", alice_id, |id| b()
        .update_org_member_role(sharing::UpdateOrgMemberRoleRequest {
            user_id: id,
            role: sharing::OrgRole::Member as i32,
        }));
    probe!("RemoveOrgMember", alice_id, |id| b().remove_org_member(
        sharing::RemoveOrgMemberRequest { user_id: id }
    ));
    probe!("GetProject", project.id, |id| b()
        .get_project(sharing::GetProjectRequest { project_id: id }));
    probe!("UpdateProject", project.id, |id| b().update_project(
        sharing::UpdateProjectRequest {
            project_id: id,
            name: Some("Taken".into()),
            ..Default::default()
        }
    ));
    probe!("GetProjectWorkspaces", project.id, |id| b()
        .get_project_workspaces(sharing::GetProjectWorkspacesRequest {
            project_id: id
        }));
    probe!("SetProjectWorkspaces", project.id, |id| b()
        .set_project_workspaces(sharing::SetProjectWorkspacesRequest {
            project_id: id,
            workspace_ids: Vec::new(),
        }));
    probe!("SetProjectWorkspaces (a workspace of A)", sales.id, |id| b(
    )
    .set_project_workspaces(sharing::SetProjectWorkspacesRequest {
        project_id: bob_project.id.clone(),
        workspace_ids: vec![bob_project.home_workspace_id.clone(), id],
    }));
    probe!("DeleteProject", project.id, |id| b().delete_project(
        sharing::DeleteProjectRequest { project_id: id }
    ));
    probe!("RevokeApiKey", key.id, |id| b().revoke_api_key(
        sharing::RevokeApiKeyRequest { api_key_id: id }
    ));
    probe!("CreateApiKey (a workspace of A)", sales.id, |id| b()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "sneaky".into(),
            default_workspace_id: id,
            ..Default::default()
        }));
    probe!("the org header", acme.id, |id| bob_strong
        .in_org(&id)
        .tenancy()
        .get_me(sharing::GetMeRequest {}));
    probe!("the workspace header", sales.id, |id| bob_strong
        .in_workspace(&id)
        .tenancy()
        .list_projects(sharing::ListProjectsRequest::default()));

    // Lists and the audit trail hold nothing of A either.
    let events = b()
        .list_audit_events(sharing::ListAuditEventsRequest {
            target_id: sales.id.clone(),
            ..Default::default()
        })
        .await
        .expect("bob's audit")
        .into_inner()
        .events;
    assert!(events.is_empty(), "{events:?}");
    let events = b()
        .list_audit_events(sharing::ListAuditEventsRequest {
            actor_user_id: alice_id.clone(),
            ..Default::default()
        })
        .await
        .expect("bob's audit")
        .into_inner()
        .events;
    assert!(events.is_empty(), "{events:?}");
    let projects = b()
        .list_projects(sharing::ListProjectsRequest::default())
        .await
        .expect("projects")
        .into_inner()
        .projects;
    assert_eq!(projects.len(), 1, "only Bobco's own project");
    let keys = b()
        .list_api_keys(sharing::ListApiKeysRequest::default())
        .await
        .expect("keys")
        .into_inner()
        .api_keys;
    assert!(keys.is_empty());

    // And A is untouched.
    let kept = alice
        .tenancy()
        .get_workspace(sharing::GetWorkspaceRequest {
            workspace_id: sales.id.clone(),
        })
        .await
        .expect("sales kept")
        .into_inner()
        .workspace
        .expect("workspace");
    assert_eq!(kept.workspace.expect("workspace").name, "Sales");
    suite.stop().await;
}
