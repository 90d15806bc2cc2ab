//! Workspaces and step-up (DESIGN.md, "Identity and trust"): opt-in per org,
//! created only by owners and admins with a fresh second factor, isolated
//! between orgs.

use std::time::Duration;

use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::sharing::v1 as sharing;
use tonic::Code;
use tonic_types::StatusExt;

use crate::assert_status;

fn enable_workspaces() -> sharing::UpdateOrgRequest {
    sharing::UpdateOrgRequest {
        workspaces_enabled: Some(true),
        ..Default::default()
    }
}

fn named(name: &str) -> sharing::CreateWorkspaceRequest {
    sharing::CreateWorkspaceRequest { name: name.into() }
}

/// Turns workspaces on in the caller's org and creates "Sales" in it.
async fn with_sales(strong: &UserClient) -> sharing::Workspace {
    strong
        .tenancy()
        .update_org(enable_workspaces())
        .await
        .expect("enable");
    strong
        .tenancy()
        .create_workspace(named("Sales"))
        .await
        .expect("create")
        .into_inner()
        .workspace
        .expect("workspace")
}

/// Alice's clients with a token that passed a second factor just now.
fn stepped_up(suite: &Suite, alice: &UserClient) -> UserClient {
    alice.with_token(&suite.token_with("alice", true, 7200))
}

#[tokio::test]
async fn privileged_mutations_need_a_fresh_second_factor() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;

    assert_status(
        alice.tenancy().update_org(enable_workspaces()).await,
        Code::PermissionDenied,
        "step-up required",
    );
    let strong = stepped_up(&suite, &alice);
    let org = strong
        .tenancy()
        .update_org(enable_workspaces())
        .await
        .expect("owner with step-up")
        .into_inner();
    assert!(org.org.expect("org").workspaces_enabled);

    // Exactly at the configured age (600 s) it still counts; a second later
    // it does not.
    suite.clock.advance(Duration::from_secs(600));
    strong
        .tenancy()
        .create_workspace(named("Sales"))
        .await
        .expect("at the boundary");
    suite.clock.advance(Duration::from_secs(1));
    assert_status(
        strong.tenancy().create_workspace(named("Late")).await,
        Code::PermissionDenied,
        "step-up required",
    );

    // An API key never passes, even the org owner's.
    let secret = alice
        .tenancy()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "ci".into(),
            ..Default::default()
        })
        .await
        .expect("key")
        .into_inner()
        .secret;
    assert_status(
        alice
            .with_token(&secret)
            .tenancy()
            .create_workspace(named("Keyed"))
            .await,
        Code::PermissionDenied,
        "API keys never pass step-up",
    );
    suite.stop().await;
}

#[tokio::test]
async fn workspaces_are_opt_in_named_uniquely_and_scope_new_agents() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let org = alice.new_org("Acme").await;
    let strong = stepped_up(&suite, &alice);

    assert_status(
        strong.tenancy().create_workspace(named("Sales")).await,
        Code::FailedPrecondition,
        "workspaces_enabled",
    );
    let sales = with_sales(&strong).await;
    assert!(!sales.is_default);
    assert_status(
        strong.tenancy().create_workspace(named("Sales")).await,
        Code::AlreadyExists,
        "Sales",
    );
    let status = assert_status(
        strong
            .tenancy()
            .create_workspace(named("Bad\u{7}name"))
            .await,
        Code::InvalidArgument,
        "control",
    );
    assert_eq!(
        status
            .get_details_bad_request()
            .expect("details")
            .field_violations[0]
            .field,
        "name"
    );

    let listed = alice
        .tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .workspaces;
    let names: Vec<String> = listed
        .iter()
        .map(|m| m.workspace.clone().expect("workspace").name)
        .collect();
    assert_eq!(names, ["Default", "Sales"], "oldest first");
    assert!(
        listed
            .iter()
            .all(|m| m.role == sharing::WorkspaceRole::Owner as i32)
    );

    // The workspace header scopes the request: a new agent lives there.
    let agent = alice.in_workspace(&sales.id).new_agent("Pipeline").await;
    assert_eq!(agent.home_workspace_id, sales.id);
    let default_agent = alice.new_agent("Elsewhere").await;
    assert_eq!(default_agent.home_workspace_id, org.default_workspace_id);

    let events = alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["workspace.created", "org.updated"]);
    suite.stop().await;
}

#[tokio::test]
async fn another_orgs_workspaces_look_like_none_at_all() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Acme").await;
    bob.new_org("Bobco").await;
    let strong = stepped_up(&suite, &alice);
    let sales = with_sales(&strong).await;

    let get = |id: &str| sharing::GetWorkspaceRequest {
        workspace_id: id.into(),
    };
    let foreign = assert_status(
        bob.tenancy().get_workspace(get(&sales.id)).await,
        Code::NotFound,
        "not found",
    );
    let never = "01900000-0000-7000-8000-000000000000";
    let missing = assert_status(
        bob.tenancy().get_workspace(get(never)).await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(
        foreign.message().replace(&sales.id, "ID"),
        missing.message().replace(never, "ID")
    );
    assert_status(
        bob.in_workspace(&sales.id).new_agent_result("Sneaky").await,
        Code::NotFound,
        "workspace",
    );
    let status = assert_status(
        bob.tenancy().get_workspace(get("not-a-uuid")).await,
        Code::InvalidArgument,
        "UUID",
    );
    assert_eq!(
        status
            .get_details_bad_request()
            .expect("details")
            .field_violations[0]
            .field,
        "workspace_id"
    );
    let theirs = bob
        .tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .workspaces;
    assert_eq!(theirs.len(), 1, "only Bobco's default workspace");
    // Bob's org has workspaces off: naming Alice's workspace is refused too.
    assert_status(
        bob.tenancy()
            .update_org(sharing::UpdateOrgRequest {
                org_id: alice_org(&alice).await,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

async fn alice_org(alice: &UserClient) -> String {
    alice
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await
        .expect("org")
        .into_inner()
        .org
        .expect("org")
        .id
}

#[tokio::test]
async fn a_session_switches_its_own_active_workspace() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let org = alice.new_org("Acme").await;
    bob.new_org("Bobco").await;
    let strong = stepped_up(&suite, &alice);
    let sales = with_sales(&strong).await;
    let me = |client: &UserClient| {
        let client = client.clone();
        async move {
            client
                .tenancy()
                .get_me(sharing::GetMeRequest {})
                .await
                .expect("me")
                .into_inner()
        }
    };
    let before = me(&alice).await;
    assert_eq!(before.workspace_id, org.default_workspace_id);
    assert_eq!(
        before.credential_kind,
        sharing::CredentialKind::Session as i32
    );
    assert!(!before.step_up_fresh);
    assert!(me(&strong).await.step_up_fresh);

    alice
        .tenancy()
        .switch_workspace(sharing::SwitchWorkspaceRequest {
            workspace_id: sales.id.clone(),
        })
        .await
        .expect("switch");
    assert_eq!(me(&alice).await.workspace_id, sales.id);
    assert_eq!(
        alice.new_agent("Where am I").await.home_workspace_id,
        sales.id
    );
    // Another session of the same user keeps its own choice.
    assert_eq!(me(&strong).await.workspace_id, org.default_workspace_id);

    assert_status(
        bob.in_org(&org.id)
            .tenancy()
            .switch_workspace(sharing::SwitchWorkspaceRequest {
                workspace_id: sales.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    let secret = alice
        .tenancy()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "ci".into(),
            ..Default::default()
        })
        .await
        .expect("key")
        .into_inner()
        .secret;
    let with_key = alice.with_token(&secret);
    assert_eq!(
        me(&with_key).await.credential_kind,
        sharing::CredentialKind::ApiKey as i32
    );
    assert_status(
        with_key
            .tenancy()
            .switch_workspace(sharing::SwitchWorkspaceRequest {
                workspace_id: sales.id,
            })
            .await,
        Code::FailedPrecondition,
        "x-agentshare-workspace",
    );

    let orgs = alice
        .tenancy()
        .list_my_orgs(sharing::ListMyOrgsRequest::default())
        .await
        .expect("my orgs")
        .into_inner()
        .orgs;
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0].role, sharing::OrgRole::Owner as i32);
    suite.stop().await;
}

#[tokio::test]
async fn workspace_members_are_managed_with_step_up_and_listed_only_inside() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    let dave = suite.user("dave").await;
    for user in [&bob, &carol, &dave] {
        let _ = user.tenancy().get_me(sharing::GetMeRequest {}).await;
    }
    alice.new_org("Acme").await;
    let strong = stepped_up(&suite, &alice);
    let sales = with_sales(&strong).await;
    let id_of = |client: &UserClient| {
        let client = client.clone();
        async move {
            client
                .tenancy()
                .get_me(sharing::GetMeRequest {})
                .await
                .expect("me")
                .into_inner()
                .user
                .expect("user")
                .id
        }
    };
    let (bob_id, carol_id, dave_id) = (id_of(&bob).await, id_of(&carol).await, id_of(&dave).await);
    for user_id in [&bob_id, &carol_id] {
        strong
            .tenancy()
            .add_org_member(sharing::AddOrgMemberRequest {
                user: Some(sharing::add_org_member_request::User::UserId(
                    user_id.clone(),
                )),
                role: sharing::OrgRole::Member as i32,
            })
            .await
            .expect("org member");
    }
    let add = |user_id: &str| sharing::AddWorkspaceMemberRequest {
        workspace_id: sales.id.clone(),
        user_id: user_id.into(),
        role: sharing::WorkspaceRole::Member as i32,
    };
    assert_status(
        alice.tenancy().add_workspace_member(add(&bob_id)).await,
        Code::PermissionDenied,
        "step-up required",
    );
    strong
        .tenancy()
        .add_workspace_member(add(&bob_id))
        .await
        .expect("add bob");
    assert_status(
        strong.tenancy().add_workspace_member(add(&bob_id)).await,
        Code::AlreadyExists,
        "already",
    );
    assert_status(
        strong.tenancy().add_workspace_member(add(&dave_id)).await,
        Code::FailedPrecondition,
        "org first",
    );

    let list = || sharing::ListWorkspaceMembersRequest {
        workspace_id: sales.id.clone(),
        ..Default::default()
    };
    let members = bob
        .tenancy()
        .list_workspace_members(list())
        .await
        .expect("bob is inside")
        .into_inner()
        .members;
    assert_eq!(members.len(), 2, "alice (owner) and bob");
    assert_status(
        carol.tenancy().list_workspace_members(list()).await,
        Code::PermissionDenied,
        "members",
    );
    let bob_strong = bob.with_token(&suite.token_with("bob", true, 7200));
    assert_status(
        bob_strong
            .tenancy()
            .add_workspace_member(add(&carol_id))
            .await,
        Code::PermissionDenied,
        "manage",
    );

    // A workspace admin manages members but not the owner role.
    let set_role =
        |user_id: &str, role: sharing::WorkspaceRole| sharing::UpdateWorkspaceMemberRoleRequest {
            workspace_id: sales.id.clone(),
            user_id: user_id.into(),
            role: role as i32,
        };
    let promoted = strong
        .tenancy()
        .update_workspace_member_role(set_role(&bob_id, sharing::WorkspaceRole::Admin))
        .await
        .expect("promote bob")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(promoted.role, sharing::WorkspaceRole::Admin as i32);
    assert_status(
        bob_strong
            .tenancy()
            .update_workspace_member_role(set_role(&bob_id, sharing::WorkspaceRole::Owner))
            .await,
        Code::PermissionDenied,
        "owner role",
    );
    assert_status(
        bob_strong
            .tenancy()
            .update_workspace_member_role(set_role(&carol_id, sharing::WorkspaceRole::Member))
            .await,
        Code::NotFound,
        "not found",
    );
    strong
        .tenancy()
        .remove_workspace_member(sharing::RemoveWorkspaceMemberRequest {
            workspace_id: sales.id.clone(),
            user_id: bob_id,
        })
        .await
        .expect("remove bob");
    assert_status(
        bob.tenancy().list_workspace_members(list()).await,
        Code::PermissionDenied,
        "members",
    );
    assert_status(
        bob.in_workspace(&sales.id).new_agent_result("Gone").await,
        Code::NotFound,
        "workspace",
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_workspace_is_renamed_with_step_up_to_a_free_name() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Acme").await;
    bob.new_org("Bobco").await;
    let strong = stepped_up(&suite, &alice);
    let sales = with_sales(&strong).await;
    let rename = |name: &str| sharing::UpdateWorkspaceRequest {
        workspace_id: sales.id.clone(),
        name: Some(name.into()),
    };
    assert_status(
        alice.tenancy().update_workspace(rename("Revenue")).await,
        Code::PermissionDenied,
        "step-up required",
    );
    let renamed = strong
        .tenancy()
        .update_workspace(rename("Revenue"))
        .await
        .expect("rename")
        .into_inner()
        .workspace
        .expect("workspace");
    assert_eq!(renamed.name, "Revenue");
    assert_status(
        strong.tenancy().update_workspace(rename("Default")).await,
        Code::AlreadyExists,
        "Default",
    );
    let bob_strong = bob.with_token(&suite.token_with("bob", true, 7200));
    assert_status(
        bob_strong.tenancy().update_workspace(rename("Mine")).await,
        Code::NotFound,
        "not found",
    );
    let events = alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest {
            target_id: sales.id.clone(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert_eq!(events[0].action, "workspace.updated");
    assert!(events[0].before_json.contains("Sales") && events[0].after_json.contains("Revenue"));
    suite.stop().await;
}

#[tokio::test]
async fn a_workspace_is_deleted_only_when_nothing_lives_in_it() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let bob_id = bob
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner()
        .user
        .expect("user")
        .id;
    let acme = alice.new_org("Acme").await;
    let strong = stepped_up(&suite, &alice);
    let sales = with_sales(&strong).await;
    let delete = |id: &str| sharing::DeleteWorkspaceRequest {
        workspace_id: id.into(),
    };
    strong
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::UserId(
                bob_id.clone(),
            )),
            role: sharing::OrgRole::Member as i32,
        })
        .await
        .expect("bob joins");
    strong
        .tenancy()
        .add_workspace_member(sharing::AddWorkspaceMemberRequest {
            workspace_id: sales.id.clone(),
            user_id: bob_id.clone(),
            role: sharing::WorkspaceRole::Admin as i32,
        })
        .await
        .expect("bob administers sales");
    bob.tenancy()
        .switch_workspace(sharing::SwitchWorkspaceRequest {
            workspace_id: sales.id.clone(),
        })
        .await
        .expect("bob works in sales");

    assert_status(
        strong
            .tenancy()
            .delete_workspace(delete(&acme.default_workspace_id))
            .await,
        Code::FailedPrecondition,
        "default workspace",
    );
    let project = alice
        .in_workspace(&sales.id)
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Pipeline".into(),
            description: String::new(),
        })
        .await
        .expect("project in sales")
        .into_inner()
        .project
        .expect("project");
    assert_eq!(project.home_workspace_id, sales.id);
    // Without a fresh second factor, and as a workspace admin who is not its
    // owner, the deletion is refused before anything else is said.
    assert_status(
        alice.tenancy().delete_workspace(delete(&sales.id)).await,
        Code::PermissionDenied,
        "step-up required",
    );
    assert_status(
        bob.with_token(&suite.token_with("bob", true, 7200))
            .tenancy()
            .delete_workspace(delete(&sales.id))
            .await,
        Code::PermissionDenied,
        "owner",
    );
    let blocked = assert_status(
        strong.tenancy().delete_workspace(delete(&sales.id)).await,
        Code::Aborted,
        "Pipeline",
    );
    assert!(
        blocked.message().contains("move or delete"),
        "{}",
        blocked.message()
    );
    alice
        .tenancy()
        .delete_project(sharing::DeleteProjectRequest {
            project_id: project.id.clone(),
        })
        .await
        .expect("delete the project");

    strong
        .tenancy()
        .delete_workspace(delete(&sales.id))
        .await
        .expect("now it goes");
    assert_status(
        strong
            .tenancy()
            .get_workspace(sharing::GetWorkspaceRequest {
                workspace_id: sales.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        strong.tenancy().delete_workspace(delete(&sales.id)).await,
        Code::NotFound,
        "not found",
    );
    // Bob's session was in Sales; he falls back to the default.
    let scope = bob
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner();
    assert_eq!(scope.workspace_id, acme.default_workspace_id);
    let names = strong
        .tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .workspaces
        .into_iter()
        .filter_map(|w| w.workspace)
        .map(|w| w.name)
        .collect::<Vec<_>>();
    assert_eq!(names, ["Default"], "{names:?}");
    let trail = strong
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest {
            target_id: sales.id.clone(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert_eq!(trail[0].action, "workspace.deleted");
    assert!(trail[0].before_json.contains("Sales"));
    suite.stop().await;
}

#[tokio::test]
async fn without_a_workspace_reads_are_empty_and_writes_are_denied() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let bob_id = bob
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner()
        .user
        .expect("user")
        .id;
    let acme = alice.new_org("Acme").await;
    let strong = stepped_up(&suite, &alice);
    strong
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::UserId(
                bob_id.clone(),
            )),
            role: sharing::OrgRole::Member as i32,
        })
        .await
        .expect("bob joins");
    alice
        .tenancy()
        .create_project(sharing::CreateProjectRequest {
            name: "Everyone's".into(),
            description: String::new(),
        })
        .await
        .expect("project");
    // With workspaces off, Bob is in the one workspace the org behaves as.
    let seen = bob
        .tenancy()
        .list_projects(sharing::ListProjectsRequest::default())
        .await
        .expect("projects")
        .into_inner()
        .projects;
    assert_eq!(seen.len(), 1);

    strong
        .tenancy()
        .update_org(enable_workspaces())
        .await
        .expect("enable");
    strong
        .tenancy()
        .remove_workspace_member(sharing::RemoveWorkspaceMemberRequest {
            workspace_id: acme.default_workspace_id.clone(),
            user_id: bob_id.clone(),
        })
        .await
        .expect("bob leaves the default workspace");
    let scope = bob
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner();
    assert!(scope.workspaces_enabled && scope.workspace_id.is_empty());
    let projects = bob
        .tenancy()
        .list_projects(sharing::ListProjectsRequest::default())
        .await
        .expect("an empty read, not an error")
        .into_inner()
        .projects;
    assert!(projects.is_empty(), "{projects:?}");
    let workspaces = bob
        .tenancy()
        .list_workspaces(sharing::ListWorkspacesRequest::default())
        .await
        .expect("an empty read, not an error")
        .into_inner()
        .workspaces;
    assert!(workspaces.is_empty(), "{workspaces:?}");
    assert_status(
        bob.tenancy()
            .create_project(sharing::CreateProjectRequest {
                name: "Mine".into(),
                description: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "workspace",
    );
    assert_status(
        bob.new_agent_result("Mine").await,
        Code::PermissionDenied,
        "workspace",
    );
    suite.stop().await;
}
