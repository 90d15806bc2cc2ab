//! The thin slice through the gateway: an org, a draft agent, reading it back.

use agentshare_e2e::Suite;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use tonic::Code;
use tonic_types::StatusExt;

use crate::assert_status;

fn new_agent(name: &str) -> registry::CreateAgentRequest {
    registry::CreateAgentRequest {
        draft: Some(registry::AgentDraft {
            name: name.into(),
            description: "Answers support tickets".into(),
            instructions: "Be kind.".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_org_then_a_draft_agent_and_read_it_back() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;

    let created = alice
        .tenancy()
        .create_org(sharing::CreateOrgRequest {
            name: "Acme".into(),
        })
        .await
        .expect("create org")
        .into_inner();
    let org = created.org.expect("org");
    let workspace = created.default_workspace.expect("default workspace");
    assert_eq!(org.name, "Acme");
    assert!(workspace.is_default);
    assert_eq!(org.default_workspace_id, workspace.id);
    assert!(!org.workspaces_enabled);

    let fetched = alice
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await
        .expect("get org")
        .into_inner();
    assert_eq!(fetched.org.expect("org").id, org.id);
    assert_eq!(fetched.caller_role, sharing::OrgRole::Owner as i32);

    let agent = alice
        .registry()
        .create_agent(new_agent("Support"))
        .await
        .expect("create agent")
        .into_inner()
        .agent
        .expect("agent");
    assert_eq!(agent.state, registry::AgentState::Draft as i32);
    assert_eq!(agent.org_id, org.id);
    assert_eq!(agent.home_workspace_id, workspace.id);
    assert_eq!(agent.draft_revision, 1);

    let read = alice
        .registry()
        .get_agent(registry::GetAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("get agent")
        .into_inner()
        .agent
        .expect("agent");
    assert_eq!(read, agent);
    assert_eq!(read.draft.expect("draft").instructions, "Be kind.");
    suite.stop().await;
}

#[tokio::test]
async fn another_org_cannot_see_an_org_or_its_agents() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let acme = alice.new_org("Acme").await;
    let agent = alice.new_agent("Secret").await;

    // Bob has no org yet: org-scoped calls tell him to create one.
    assert_status(
        bob.registry()
            .get_agent(registry::GetAgentRequest {
                agent_id: agent.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "CreateOrg",
    );
    // Naming Alice's org looks exactly like naming an org that does not exist.
    let foreign = assert_status(
        bob.in_org(&acme.id)
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await,
        Code::NotFound,
        "not found",
    );
    let missing = assert_status(
        bob.in_org("00000000-0000-0000-0000-000000000000")
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(
        foreign.message().replace(&acme.id, "ID"),
        missing
            .message()
            .replace("00000000-0000-0000-0000-000000000000", "ID")
    );

    bob.tenancy()
        .create_org(sharing::CreateOrgRequest {
            name: "Bobco".into(),
        })
        .await
        .expect("bob's org");
    assert_status(
        bob.registry()
            .get_agent(registry::GetAgentRequest {
                agent_id: agent.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        bob.tenancy()
            .get_org(sharing::GetOrgRequest {
                org_id: acme.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_user_of_several_orgs_must_name_one() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let mut orgs = Vec::new();
    for name in ["One", "Two"] {
        orgs.push(
            alice
                .tenancy()
                .create_org(sharing::CreateOrgRequest { name: name.into() })
                .await
                .expect("org")
                .into_inner()
                .org
                .expect("org"),
        );
    }
    let status = assert_status(
        alice.registry().create_agent(new_agent("A")).await,
        Code::InvalidArgument,
        "x-agentshare-org",
    );
    let violations = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations;
    assert_eq!(violations[0].field, "x-agentshare-org");

    let agent = alice
        .in_org(&orgs[1].id)
        .registry()
        .create_agent(new_agent("A"))
        .await
        .expect("agent in the named org")
        .into_inner()
        .agent
        .expect("agent");
    assert_eq!(agent.org_id, orgs[1].id);
    suite.stop().await;
}

#[tokio::test]
async fn invalid_drafts_and_names_are_rejected_naming_the_field() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let status = assert_status(
        alice
            .tenancy()
            .create_org(sharing::CreateOrgRequest { name: "  ".into() })
            .await,
        Code::InvalidArgument,
        "name",
    );
    assert_eq!(
        status
            .get_details_bad_request()
            .expect("details")
            .field_violations[0]
            .field,
        "name"
    );

    alice
        .tenancy()
        .create_org(sharing::CreateOrgRequest {
            name: "Acme".into(),
        })
        .await
        .expect("org");
    let status = assert_status(
        alice
            .registry()
            .create_agent(registry::CreateAgentRequest {
                draft: Some(registry::AgentDraft {
                    name: String::new(),
                    description: String::new(),
                    instructions: "x".repeat(100 * 1024 + 1),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "draft.name",
    );
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["draft.name", "draft.instructions"]);

    // Each bad input names its field in BadRequest.
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let field_of = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        status
            .get_details_bad_request()
            .expect("details")
            .field_violations[0]
            .field
            .clone()
    };
    for name in ["x".repeat(201), "bell\u{7}".into(), String::new()] {
        let status = strong
            .tenancy()
            .create_workspace(sharing::CreateWorkspaceRequest { name })
            .await
            .expect_err("a bad name");
        assert_eq!(field_of(status), "name");
    }
    let status = strong
        .tenancy()
        .get_org(sharing::GetOrgRequest {
            org_id: "acme".into(),
        })
        .await
        .expect_err("not a UUID");
    assert_eq!(field_of(status), "org_id");
    let status = strong
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::Email(
                "bob@example.com".into(),
            )),
            role: 42,
        })
        .await
        .expect_err("an unknown role");
    assert_eq!(field_of(status), "role");
    suite.stop().await;
}
