//! A viewer (DESIGN.md, "Access model (sharing)") reads the org and changes
//! nothing: every mutating tenancy RPC refuses them, even with a fresh second
//! factor and even in a workspace they own, and nothing they tried shows up.

use agentshare_e2e::{Suite, draft_agent};
use agentshare_proto::sharing::v1 as sharing;
use sharing::add_org_member_request::User;
use tonic::Code;

use crate::assert_status;

#[tokio::test]
async fn a_viewer_is_refused_every_mutation_of_tenancy() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    let acme = alice.new_org("Acme").await;
    let mut ids = Vec::new();
    for user in [&bob, &carol] {
        ids.push(
            user.tenancy()
                .get_me(sharing::GetMeRequest {})
                .await
                .expect("me")
                .into_inner()
                .user
                .expect("user")
                .id,
        );
    }
    let (bob_id, carol_id) = (ids[0].clone(), ids[1].clone());
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let alice_id = strong
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner()
        .user
        .expect("user")
        .id;
    strong.enable_workspaces().await;
    for (id, role) in [
        (&bob_id, sharing::OrgRole::Viewer),
        (&carol_id, sharing::OrgRole::Member),
    ] {
        strong
            .tenancy()
            .add_org_member(sharing::AddOrgMemberRequest {
                user: Some(User::UserId(id.clone())),
                role: role as i32,
            })
            .await
            .expect("add member");
    }
    let sales = strong
        .tenancy()
        .create_workspace(sharing::CreateWorkspaceRequest {
            name: "Sales".into(),
        })
        .await
        .expect("sales")
        .into_inner()
        .workspace
        .expect("workspace");
    // Even as the owner of a workspace, an org viewer changes nothing in it.
    strong
        .add_to_workspace(&sales.id, &bob_id, sharing::WorkspaceRole::Owner)
        .await;
    let project = strong
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Launch".into(),
            description: String::new(),
        })
        .await
        .expect("project")
        .into_inner()
        .project
        .expect("project");

    let viewer = bob.with_token(&suite.token_with("bob", true, 7200));
    let tenancy = || viewer.tenancy();
    let denied = Code::PermissionDenied;
    assert_status(
        tenancy()
            .update_org(sharing::UpdateOrgRequest {
                name: Some("Mine".into()),
                ..Default::default()
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .create_workspace(sharing::CreateWorkspaceRequest {
                name: "Bob's".into(),
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .update_workspace(sharing::UpdateWorkspaceRequest {
                workspace_id: sales.id.clone(),
                name: Some("Bob's".into()),
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .delete_workspace(sharing::DeleteWorkspaceRequest {
                workspace_id: sales.id.clone(),
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .add_org_member(sharing::AddOrgMemberRequest {
                user: Some(User::Email("dave@example.com".into())),
                role: sharing::OrgRole::Member as i32,
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .update_org_member_role(sharing::UpdateOrgMemberRoleRequest {
                user_id: carol_id.clone(),
                role: sharing::OrgRole::Viewer as i32,
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .remove_org_member(sharing::RemoveOrgMemberRequest {
                user_id: carol_id.clone(),
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .add_workspace_member(sharing::AddWorkspaceMemberRequest {
                workspace_id: sales.id.clone(),
                user_id: carol_id.clone(),
                role: sharing::WorkspaceRole::Member as i32,
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .update_workspace_member_role(sharing::UpdateWorkspaceMemberRoleRequest {
                workspace_id: sales.id.clone(),
                user_id: alice_id.clone(),
                role: sharing::WorkspaceRole::Member as i32,
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .remove_workspace_member(sharing::RemoveWorkspaceMemberRequest {
                workspace_id: sales.id.clone(),
                user_id: alice_id.clone(),
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .create_project(sharing::CreateProjectRequest {
                name: "Bob's".into(),
                description: String::new(),
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .update_project(sharing::UpdateProjectRequest {
                project_id: project.id.clone(),
                name: Some("Bob's".into()),
                ..Default::default()
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .set_project_workspaces(sharing::SetProjectWorkspacesRequest {
                project_id: project.id.clone(),
                workspace_ids: vec![acme.default_workspace_id.clone(), sales.id.clone()],
            })
            .await,
        denied,
        "",
    );
    assert_status(
        tenancy()
            .delete_project(sharing::DeleteProjectRequest {
                project_id: project.id.clone(),
            })
            .await,
        denied,
        "",
    );
    assert_status(
        viewer.registry().create_agent(draft_agent("Bob's")).await,
        denied,
        "",
    );

    // Nothing the viewer tried took effect.
    let org = strong
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await
        .expect("org")
        .into_inner()
        .org
        .expect("org");
    assert_eq!(org.name, "Acme");
    let workspaces = strong
        .tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("workspaces")
        .into_inner()
        .workspaces;
    let mut names: Vec<_> = workspaces
        .iter()
        .filter_map(|w| w.workspace.as_ref())
        .map(|w| w.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"Sales"), "{names:?}");
    let members = strong
        .tenancy()
        .list_org_members(sharing::ListOrgMembersRequest::default())
        .await
        .expect("members")
        .into_inner()
        .members;
    let carol_role = members
        .iter()
        .find(|m| m.user.as_ref().is_some_and(|u| u.id == carol_id))
        .expect("carol still a member")
        .role;
    assert_eq!(carol_role, sharing::OrgRole::Member as i32);
    let sales_members = strong
        .tenancy()
        .list_workspace_members(sharing::ListWorkspaceMembersRequest {
            workspace_id: sales.id.clone(),
            ..Default::default()
        })
        .await
        .expect("sales members")
        .into_inner()
        .members;
    assert_eq!(sales_members.len(), 2, "alice and bob only");
    let kept = strong
        .tenancy()
        .get_project(sharing::GetProjectRequest {
            project_id: project.id.clone(),
        })
        .await
        .expect("project kept")
        .into_inner()
        .project
        .expect("project");
    assert_eq!((kept.name.as_str(), kept.revision), ("Launch", 1));
    let projects = strong
        .tenancy()
        .list_projects(sharing::ListProjectsRequest::default())
        .await
        .expect("projects")
        .into_inner()
        .projects;
    assert_eq!(projects.len(), 1);

    // Reading is what a viewer is for.
    tenancy()
        .get_project(sharing::GetProjectRequest {
            project_id: project.id.clone(),
        })
        .await
        .expect("a viewer reads projects");
    tenancy()
        .list_workspace_members(sharing::ListWorkspaceMembersRequest {
            workspace_id: sales.id.clone(),
            ..Default::default()
        })
        .await
        .expect("a viewer reads the members of their workspace");
}
