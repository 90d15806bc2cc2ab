//! Org members and roles (DESIGN.md, "Access model (sharing)"): owners and
//! admins add members with step-up; a viewer reads and changes nothing.

use agentshare_e2e::Suite;
use agentshare_proto::sharing::v1 as sharing;
use sharing::add_org_member_request::User;
use tonic::Code;
use tonic_types::StatusExt;

use crate::assert_status;

fn add(user: User, role: sharing::OrgRole) -> sharing::AddOrgMemberRequest {
    sharing::AddOrgMemberRequest {
        user: Some(user),
        role: role as i32,
    }
}

#[tokio::test]
async fn owners_add_members_and_viewers_change_nothing() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    let acme = alice.new_org("Acme").await;
    // Bob and Carol sign in once, so agentshare knows them.
    for user in [&bob, &carol] {
        let _ = user
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await;
    }
    let bob_by_email = || {
        add(
            User::Email("bob@example.com".into()),
            sharing::OrgRole::Viewer,
        )
    };

    assert_status(
        alice.tenancy().add_org_member(bob_by_email()).await,
        Code::PermissionDenied,
        "step-up required",
    );
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let bob_member = strong
        .tenancy()
        .add_org_member(bob_by_email())
        .await
        .expect("add bob")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(bob_member.role, sharing::OrgRole::Viewer as i32);
    let bob_id = bob_member.user.expect("user").id;
    assert_status(
        strong.tenancy().add_org_member(bob_by_email()).await,
        Code::AlreadyExists,
        "already a member",
    );
    assert_status(
        strong
            .tenancy()
            .add_org_member(add(
                User::Email("nobody@example.com".into()),
                sharing::OrgRole::Member,
            ))
            .await,
        Code::NotFound,
        "sign in",
    );
    let status = assert_status(
        strong
            .tenancy()
            .add_org_member(add(
                User::Email("carol@example.com".into()),
                sharing::OrgRole::Unspecified,
            ))
            .await,
        Code::InvalidArgument,
        "role",
    );
    assert_eq!(
        status
            .get_details_bad_request()
            .expect("details")
            .field_violations[0]
            .field,
        "role"
    );
    strong
        .tenancy()
        .add_org_member(add(
            User::Email("carol@example.com".into()),
            sharing::OrgRole::Member,
        ))
        .await
        .expect("add carol");

    // Bob, a viewer, reads the org but changes nothing.
    let seen = bob
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await
        .expect("viewer reads")
        .into_inner();
    assert_eq!(seen.org.expect("org").id, acme.id);
    assert_eq!(seen.caller_role, sharing::OrgRole::Viewer as i32);
    let bob_strong = bob.with_token(&suite.token_with("bob", true, 7200));
    assert_status(
        bob_strong.new_agent_result("Nope").await,
        Code::PermissionDenied,
        "viewers cannot build",
    );
    assert_status(
        bob_strong
            .tenancy()
            .update_org(sharing::UpdateOrgRequest {
                name: Some("Bob's now".into()),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "owners and admins",
    );
    assert_status(
        bob_strong
            .tenancy()
            .create_workspace(sharing::CreateWorkspaceRequest {
                name: "Mine".into(),
            })
            .await,
        Code::PermissionDenied,
        "owners and admins",
    );
    assert_status(
        bob_strong
            .tenancy()
            .add_org_member(add(User::UserId(bob_id.clone()), sharing::OrgRole::Owner))
            .await,
        Code::PermissionDenied,
        "owners and admins",
    );
    assert_status(
        bob.tenancy()
            .list_org_members(sharing::ListOrgMembersRequest::default())
            .await,
        Code::PermissionDenied,
        "viewers",
    );
    assert_status(
        bob.tenancy()
            .list_audit_events(sharing::ListAuditEventsRequest::default())
            .await,
        Code::PermissionDenied,
        "owners and admins",
    );

    // Carol, a member, builds and lists the members; the trail has both adds.
    carol.new_agent("Carol's").await;
    let members = carol
        .tenancy()
        .list_org_members(sharing::ListOrgMembersRequest::default())
        .await
        .expect("member lists")
        .into_inner()
        .members;
    let roles: Vec<(String, i32)> = members
        .into_iter()
        .map(|m| (m.user.expect("user").email, m.role))
        .collect();
    assert_eq!(
        roles,
        [
            (
                "alice@example.com".to_string(),
                sharing::OrgRole::Owner as i32
            ),
            (
                "bob@example.com".to_string(),
                sharing::OrgRole::Viewer as i32
            ),
            (
                "carol@example.com".to_string(),
                sharing::OrgRole::Member as i32
            ),
        ]
    );
    let actions: Vec<String> = alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .events
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["member.added", "member.added"]);
    suite.stop().await;
}

#[tokio::test]
async fn roles_change_and_members_leave_but_an_org_keeps_an_owner() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let _ = bob
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await;
    let acme = alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let bob_id = strong
        .tenancy()
        .add_org_member(add(
            User::Email("bob@example.com".into()),
            sharing::OrgRole::Member,
        ))
        .await
        .expect("add")
        .into_inner()
        .member
        .expect("member")
        .user
        .expect("user")
        .id;
    let alice_id = alice
        .tenancy()
        .get_me(sharing::GetMeRequest {})
        .await
        .expect("me")
        .into_inner()
        .user
        .expect("user")
        .id;

    let set_role = |user_id: &str, role: sharing::OrgRole| sharing::UpdateOrgMemberRoleRequest {
        user_id: user_id.into(),
        role: role as i32,
    };
    assert_status(
        alice
            .tenancy()
            .update_org_member_role(set_role(&bob_id, sharing::OrgRole::Admin))
            .await,
        Code::PermissionDenied,
        "step-up required",
    );
    let bob_admin = strong
        .tenancy()
        .update_org_member_role(set_role(&bob_id, sharing::OrgRole::Admin))
        .await
        .expect("promote")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(bob_admin.role, sharing::OrgRole::Admin as i32);

    // Bob, an admin, may not touch the owner; nobody may leave the org
    // without one.
    let bob_strong = bob.with_token(&suite.token_with("bob", true, 7200));
    assert_status(
        bob_strong
            .tenancy()
            .update_org_member_role(set_role(&alice_id, sharing::OrgRole::Member))
            .await,
        Code::PermissionDenied,
        "owner role",
    );
    assert_status(
        strong
            .tenancy()
            .update_org_member_role(set_role(&alice_id, sharing::OrgRole::Admin))
            .await,
        Code::FailedPrecondition,
        "without an owner",
    );
    assert_status(
        strong
            .tenancy()
            .remove_org_member(sharing::RemoveOrgMemberRequest {
                user_id: alice_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "without an owner",
    );

    strong
        .tenancy()
        .remove_org_member(sharing::RemoveOrgMemberRequest {
            user_id: bob_id.clone(),
        })
        .await
        .expect("remove bob");
    // Bob's access ends on his very next call.
    assert_status(
        bob.in_org(&acme.id)
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        strong
            .tenancy()
            .remove_org_member(sharing::RemoveOrgMemberRequest { user_id: bob_id })
            .await,
        Code::NotFound,
        "not found",
    );
    let actions: Vec<String> = alice
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .events
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["member.removed", "member.role_changed", "member.added"]
    );
    suite.stop().await;
}
