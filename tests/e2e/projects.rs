//! Projects (DESIGN.md, "Access model (sharing)"): a home workspace, shared
//! into more by the same rules as agents, with revision-checked updates.

use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::sharing::v1 as sharing;
use tonic::Code;

use crate::assert_status;

async fn workspace(strong: &UserClient, name: &str) -> sharing::Workspace {
    strong
        .tenancy()
        .create_workspace(sharing::CreateWorkspaceRequest { name: name.into() })
        .await
        .expect("workspace")
        .into_inner()
        .workspace
        .expect("workspace")
}

#[tokio::test]
async fn projects_live_in_workspaces_and_share_like_agents() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let _ = bob.tenancy().get_me(sharing::GetMeRequest {}).await;
    let org = alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong
        .tenancy()
        .update_org(sharing::UpdateOrgRequest {
            workspaces_enabled: Some(true),
            ..Default::default()
        })
        .await
        .expect("enable");
    let sales = workspace(&strong, "Sales").await;
    let ops = workspace(&strong, "Ops").await;
    strong
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::Email(
                "bob@example.com".into(),
            )),
            role: sharing::OrgRole::Admin as i32,
        })
        .await
        .expect("bob joins as admin");

    let project = alice
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Launch".into(),
            description: "Q3 launch".into(),
        })
        .await
        .expect("create")
        .into_inner()
        .project
        .expect("project");
    assert_eq!(project.home_workspace_id, org.default_workspace_id);
    assert_eq!(project.revision, 1);

    // Revision-checked updates.
    let update = |revision: i64, name: &str| sharing::UpdateProjectRequest {
        project_id: project.id.clone(),
        name: Some(name.into()),
        expected_revision: Some(revision),
        ..Default::default()
    };
    let updated = alice
        .tenancy()
        .update_project(update(1, "Launch v2"))
        .await
        .expect("update")
        .into_inner()
        .project
        .expect("p");
    assert_eq!((updated.name.as_str(), updated.revision), ("Launch v2", 2));
    assert_status(
        alice.tenancy().update_project(update(1, "Stale")).await,
        Code::Aborted,
        "read it again",
    );

    // Sharing into Sales needs step-up and membership of Sales.
    let set = |ids: &[&str]| sharing::SetProjectWorkspacesRequest {
        project_id: project.id.clone(),
        workspace_ids: ids.iter().map(|s| (*s).to_string()).collect(),
    };
    assert_status(
        alice
            .tenancy()
            .set_project_workspaces(set(&[&sales.id]))
            .await,
        Code::PermissionDenied,
        "step-up required",
    );
    let changed = strong
        .tenancy()
        .set_project_workspaces(set(&[&sales.id]))
        .await
        .expect("share")
        .into_inner();
    assert_eq!(changed.added_workspace_ids, std::slice::from_ref(&sales.id));
    let in_sales = alice
        .in_workspace(&sales.id)
        .tenancy()
        .list_projects(sharing::ListProjectsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .projects;
    assert_eq!(in_sales.len(), 1, "listed in Sales too");

    // Bob, an org admin outside Sales, sees only what he can access; his
    // replacement list keeps Sales, which he cannot see.
    let bob_strong = bob.with_token(&suite.token_with("bob", true, 7200));
    let seen = bob
        .tenancy()
        .get_project_workspaces(sharing::GetProjectWorkspacesRequest {
            project_id: project.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let names: Vec<String> = seen.workspaces.iter().map(|w| w.name.clone()).collect();
    assert_eq!(names, ["Default"]);
    let kept = bob_strong
        .tenancy()
        .set_project_workspaces(set(&[]))
        .await
        .expect("bob's set")
        .into_inner();
    assert!(kept.removed_workspace_ids.is_empty(), "{kept:?}");
    assert_status(
        bob_strong
            .tenancy()
            .set_project_workspaces(set(&[&ops.id]))
            .await,
        Code::PermissionDenied,
        "not a member of workspace",
    );
    assert_status(
        strong
            .tenancy()
            .set_project_workspaces(set(&["01900000-0000-7000-8000-000000000000"]))
            .await,
        Code::NotFound,
        "workspace",
    );
    let all = alice
        .tenancy()
        .get_project_workspaces(sharing::GetProjectWorkspacesRequest {
            project_id: project.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let names: Vec<String> = all.workspaces.iter().map(|w| w.name.clone()).collect();
    assert_eq!(names, ["Default", "Sales"]);

    // Bob may delete it as an org admin; then it is gone for everyone.
    bob.tenancy()
        .delete_project(sharing::DeleteProjectRequest {
            project_id: project.id.clone(),
        })
        .await
        .expect("delete");
    assert_status(
        alice
            .tenancy()
            .get_project(sharing::GetProjectRequest {
                project_id: project.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

#[tokio::test]
async fn projects_stay_inside_their_org() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Acme").await;
    bob.new_org("Bobco").await;
    let project = alice
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Secret".into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .project
        .expect("project");
    let get = |id: &str| sharing::GetProjectRequest {
        project_id: id.into(),
    };
    let foreign = assert_status(
        bob.tenancy().get_project(get(&project.id)).await,
        Code::NotFound,
        "not found",
    );
    let never = "01900000-0000-7000-8000-000000000000";
    let missing = assert_status(
        bob.tenancy().get_project(get(never)).await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(
        foreign.message().replace(&project.id, "ID"),
        missing.message().replace(never, "ID")
    );
    assert_status(
        bob.tenancy()
            .delete_project(sharing::DeleteProjectRequest {
                project_id: project.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    let theirs = bob
        .tenancy()
        .list_projects(sharing::ListProjectsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(theirs.projects.is_empty());
    suite.stop().await;
}
