//! The agent registry (DESIGN.md, "Who owns what"): drafts, deploys into
//! immutable versions, rollback, delete, templates, the org default agent and
//! managed agents, each rule as its builder or a colleague meets it.

use std::collections::BTreeSet;
use std::time::Duration;

use agentshare_e2e::{Suite, UserClient, eventually, eventually_within};
use agentshare_kit::identity::{OrgRole, ServiceName};
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use registry::schedule::Kind;
use sharing::add_org_member_request::User;
use sqlx::Row;
use tonic::Code;
use tonic_types::StatusExt;

use crate::assert_status;

fn user_tool(key: &str, provider: &str) -> registry::Tool {
    registry::Tool {
        integration_key: key.into(),
        provider: provider.into(),
        scope: registry::IntegrationScope::UserConfigured as i32,
        ..Default::default()
    }
}

fn shared_tool(key: &str, connection: &str) -> registry::Tool {
    registry::Tool {
        integration_key: key.into(),
        provider: "brave".into(),
        scope: registry::IntegrationScope::Shared as i32,
        connection_id: connection.into(),
        display_name: "Web search".into(),
    }
}

fn automation(key: &str, kind: Kind, zone: &str) -> registry::Automation {
    registry::Automation {
        key: key.into(),
        display_name: "Daily report".into(),
        schedule: Some(registry::Schedule { kind: Some(kind) }),
        time_zone: zone.into(),
        task: "Summarise yesterday's tickets".into(),
        suggested_channels: vec![registry::NotificationChannel::Email as i32],
        ..Default::default()
    }
}

fn cron(expression: &str) -> Kind {
    Kind::Cron(registry::CronSchedule {
        expression: expression.into(),
    })
}

/// A design with every kind of field.
fn full_design(name: &str) -> registry::AgentDraft {
    registry::AgentDraft {
        name: name.into(),
        description: "Answers support tickets".into(),
        instructions: "Be kind and brief.".into(),
        model: Some(registry::ModelConfig {
            provider: "anthropic".into(),
            model: "claude-sonnet-4".into(),
            parameters: None,
        }),
        tools: vec![user_tool("crm", "hubspot"), user_tool("mail", "gmail")],
        files: vec![registry::LinkedFile {
            name: "pricing.pdf".into(),
            content_hash: "sha256:9f86d081".into(),
            size_bytes: 1024,
            uri: "s3://docs/pricing.pdf".into(),
        }],
        automations: vec![automation(
            "daily_report",
            cron("0 8 * * 1-5"),
            "Europe/Berlin",
        )],
    }
}

fn create(draft: registry::AgentDraft) -> registry::CreateAgentRequest {
    registry::CreateAgentRequest {
        draft: Some(draft),
        is_managed: false,
    }
}

fn get(agent_id: &str) -> registry::GetAgentRequest {
    registry::GetAgentRequest {
        agent_id: agent_id.into(),
    }
}

async fn new_agent(client: &UserClient, draft: registry::AgentDraft) -> registry::Agent {
    client
        .registry()
        .create_agent(create(draft))
        .await
        .expect("create agent")
        .into_inner()
        .agent
        .expect("agent")
}

async fn read(client: &UserClient, agent_id: &str) -> registry::Agent {
    client
        .registry()
        .get_agent(get(agent_id))
        .await
        .expect("get agent")
        .into_inner()
        .agent
        .expect("agent")
}

async fn edit(
    client: &UserClient,
    agent: &registry::Agent,
    draft: registry::AgentDraft,
    paths: &[&str],
) -> Result<registry::Agent, tonic::Status> {
    let mut request = registry::UpdateDraftRequest {
        agent_id: agent.id.clone(),
        draft: Some(draft),
        update_mask: Some(Default::default()),
        expected_draft_revision: agent.draft_revision,
    };
    if let Some(mask) = request.update_mask.as_mut() {
        mask.paths = paths.iter().map(|p| (*p).to_string()).collect();
    }
    Ok(client
        .registry()
        .update_draft(request)
        .await?
        .into_inner()
        .agent
        .expect("agent"))
}

async fn deploy(
    client: &UserClient,
    agent: &registry::Agent,
) -> Result<registry::DeployAgentResponse, tonic::Status> {
    Ok(client
        .registry()
        .deploy_agent(registry::DeployAgentRequest {
            agent_id: agent.id.clone(),
            expected_draft_revision: agent.draft_revision,
            notes: String::new(),
        })
        .await?
        .into_inner())
}

async fn version(
    client: &UserClient,
    agent_id: &str,
    number: i64,
) -> Result<registry::AgentVersion, tonic::Status> {
    Ok(client
        .registry()
        .get_version(registry::GetVersionRequest {
            agent_id: agent_id.into(),
            version_number: number,
        })
        .await?
        .into_inner()
        .version
        .expect("version"))
}

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// Alice's org with one more member per `(name, role)`, each signed in.
async fn org_with(
    suite: &Suite,
    others: &[(&str, sharing::OrgRole)],
) -> (UserClient, sharing::Org, Vec<UserClient>) {
    let alice = suite.user("alice").await;
    let org = alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let mut clients = Vec::new();
    for (name, role) in others {
        let client = suite.user(name).await;
        // Signing in once makes the user known.
        let _ = client
            .tenancy()
            .get_org(sharing::GetOrgRequest::default())
            .await;
        strong
            .tenancy()
            .add_org_member(sharing::AddOrgMemberRequest {
                user: Some(User::Email(format!("{name}@example.com"))),
                role: *role as i32,
            })
            .await
            .expect("add member");
        clients.push(client.in_org(&org.id));
    }
    (alice, org, clients)
}

async fn default_agent(client: &UserClient) -> Result<registry::Agent, tonic::Status> {
    Ok(client
        .registry()
        .get_default_agent(registry::GetDefaultAgentRequest {})
        .await?
        .into_inner()
        .agent
        .expect("agent"))
}

/// Registry's events about one subject, oldest first, as (kind, payload).
async fn events_of(suite: &Suite, subject: &str) -> Vec<(String, serde_json::Value)> {
    let db = suite.db(ServiceName::Registry).await;
    sqlx::query("SELECT kind, payload FROM events WHERE subject_id = $1 ORDER BY seq")
        .bind(subject)
        .fetch_all(&db.pool)
        .await
        .expect("events")
        .iter()
        .map(|row| {
            let payload: String = row.try_get("payload").expect("payload");
            (
                row.try_get("kind").expect("kind"),
                serde_json::from_str(&payload).expect("json"),
            )
        })
        .collect()
}

/// Sharing's access row for an agent: (state, latest_version, is_managed).
async fn access_row(suite: &Suite, agent_id: &str) -> Option<(String, i64, bool)> {
    let db = suite.db(ServiceName::Sharing).await;
    sqlx::query("SELECT state, latest_version, is_managed FROM agent_access WHERE agent_id = $1")
        .bind(agent_id)
        .fetch_optional(&db.pool)
        .await
        .expect("agent_access")
        .map(|row| {
            (
                row.try_get("state").expect("state"),
                row.try_get("latest_version").expect("version"),
                row.try_get::<i64, _>("is_managed").expect("managed") != 0,
            )
        })
}

#[tokio::test]
async fn a_draft_holds_the_whole_design_and_every_edit_raises_its_revision() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = new_agent(&alice, full_design("Support")).await;
    assert_eq!(agent.draft_revision, 1);
    assert_eq!(agent.state, registry::AgentState::Draft as i32);
    assert!(agent.caller_can_edit && agent.has_undeployed_changes);
    assert_eq!(agent.draft.as_ref(), Some(&full_design("Support")));

    let renamed = edit(
        &alice,
        &agent,
        registry::AgentDraft {
            name: "Helpdesk".into(),
            instructions: "ignored: not in the mask".into(),
            ..Default::default()
        },
        &["name"],
    )
    .await
    .expect("rename");
    assert_eq!(renamed.draft_revision, 2);
    let draft = renamed.draft.clone().expect("draft");
    assert_eq!(draft.name, "Helpdesk");
    assert_eq!(draft.instructions, "Be kind and brief.");
    assert_eq!(draft.tools.len(), 2);
    assert_eq!(read(&alice, &agent.id).await, renamed);

    // The revision read before the rename is stale now.
    assert_status(
        edit(&alice, &agent, full_design("Late"), &["*"]).await,
        Code::Aborted,
        "revision 2",
    );
    let status = assert_status(
        edit(&alice, &renamed, full_design("X"), &["colour"]).await,
        Code::InvalidArgument,
        "is not a field of the draft",
    );
    assert_eq!(fields(&status), ["update_mask.paths[0]"]);
    assert!(!status.message().contains("colour"), "no echo of the input");
    assert_status(
        edit(&alice, &renamed, full_design("X"), &[]).await,
        Code::InvalidArgument,
        "update_mask",
    );
    suite.stop().await;
}

#[tokio::test]
async fn every_draft_edit_is_validated_naming_each_bad_field() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;

    let mut bad = full_design("   ");
    bad.instructions = "x".repeat(100 * 1024 + 1);
    bad.tools.push(user_tool("crm", "salesforce"));
    bad.automations = vec![
        automation("daily", cron("0 8 * * 1-5"), "Europe/Berlin"),
        automation("daily", cron("every morning"), "Europe/Berlim"),
    ];
    let status = assert_status(
        alice.registry().create_agent(create(bad)).await,
        Code::InvalidArgument,
        "draft.name",
    );
    assert_eq!(
        fields(&status),
        [
            "draft.name",
            "draft.instructions",
            "draft.tools[2].integration_key",
            "draft.automations[1].key",
            "draft.automations[1].schedule.cron.expression",
            "draft.automations[1].time_zone",
        ]
    );

    // The same rules hold on every edit.
    let agent = new_agent(&alice, full_design("Support")).await;
    let too_many = registry::AgentDraft {
        tools: (0..129)
            .map(|i| user_tool(&format!("tool{i}"), "http"))
            .collect(),
        ..Default::default()
    };
    let status = assert_status(
        edit(&alice, &agent, too_many, &["tools"]).await,
        Code::InvalidArgument,
        "128",
    );
    assert_eq!(fields(&status), ["draft.tools"]);
    let status = assert_status(
        edit(
            &alice,
            &agent,
            registry::AgentDraft {
                automations: vec![automation("weekly", cron("0 8 * *"), "UTC")],
                ..Default::default()
            },
            &["automations"],
        )
        .await,
        Code::InvalidArgument,
        "cron",
    );
    assert_eq!(
        fields(&status),
        ["draft.automations[0].schedule.cron.expression"]
    );
    assert_status(
        edit(&alice, &agent, registry::AgentDraft::default(), &["name"]).await,
        Code::InvalidArgument,
        "draft.name",
    );
    // Nothing was stored by the refused edits.
    assert_eq!(read(&alice, &agent.id).await.draft_revision, 1);
    suite.stop().await;
}

#[tokio::test]
async fn deploy_snapshots_immutable_versions_and_an_unchanged_draft_makes_none() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = new_agent(&alice, full_design("Support")).await;

    let stale = registry::Agent {
        draft_revision: 7,
        ..agent.clone()
    };
    assert_status(deploy(&alice, &stale).await, Code::Aborted, "revision 1");

    let first = deploy(&alice, &agent).await.expect("deploy");
    assert!(first.created);
    let v1 = first.version.expect("version");
    assert_eq!(v1.number, 1);
    assert_eq!(v1.origin, registry::VersionOrigin::Deploy as i32);
    let active = first.agent.expect("agent");
    assert_eq!(active.state, registry::AgentState::Active as i32);
    assert_eq!(active.latest_version_number, 1);
    assert!(!active.has_undeployed_changes);

    let again = deploy(&alice, &active).await.expect("redeploy");
    assert!(!again.created, "an unchanged draft makes no version");
    assert_eq!(again.version.expect("version").number, 1);

    let edited = edit(
        &alice,
        &active,
        registry::AgentDraft {
            instructions: "Be formal.".into(),
            ..Default::default()
        },
        &["instructions"],
    )
    .await
    .expect("edit");
    assert_eq!(
        edited.latest_version_number, 1,
        "editing changes no version"
    );
    assert!(edited.has_undeployed_changes);
    assert_eq!(
        version(&alice, &agent.id, 1)
            .await
            .expect("v1")
            .content
            .expect("content")
            .instructions,
        "Be kind and brief."
    );

    let second = deploy(&alice, &edited).await.expect("deploy");
    assert_eq!(second.version.expect("version").number, 2);
    let listed: Vec<i64> = alice
        .registry()
        .list_versions(registry::ListVersionsRequest {
            agent_id: agent.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .versions
        .iter()
        .map(|v| {
            assert!(v.content.is_none(), "lists omit content");
            v.number
        })
        .collect();
    assert_eq!(listed, [2, 1]);
    assert_status(
        version(&alice, &agent.id, 3).await,
        Code::NotFound,
        "version 3",
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_shared_tool_needs_a_builder_connection_before_deploy() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let mut design = full_design("Research");
    design.tools.push(shared_tool("search", ""));
    // A draft may be incomplete...
    let agent = new_agent(&alice, design).await;
    // ...a version may not.
    let status = assert_status(
        deploy(&alice, &agent).await,
        Code::FailedPrecondition,
        "search",
    );
    let violations = status
        .get_details_precondition_failure()
        .expect("PreconditionFailure details")
        .violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].r#type, "SHARED_TOOL_WITHOUT_CONNECTION");
    assert_eq!(violations[0].subject, "tools[search]");

    let mut tools = agent.draft.clone().expect("draft").tools;
    tools[2].connection_id = "conn-brave-1".into();
    let fixed = edit(
        &alice,
        &agent,
        registry::AgentDraft {
            tools,
            ..Default::default()
        },
        &["tools"],
    )
    .await
    .expect("point at a connection");
    assert!(deploy(&alice, &fixed).await.expect("deploy").created);
    suite.stop().await;
}

#[tokio::test]
async fn diff_names_changed_fields_and_rollback_keeps_history_linear() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = new_agent(&alice, full_design("Support")).await;
    assert_status(
        alice
            .registry()
            .rollback_agent(registry::RollbackAgentRequest {
                agent_id: agent.id.clone(),
                version_number: 1,
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "no deployed version",
    );
    let v1 = deploy(&alice, &agent)
        .await
        .expect("v1")
        .agent
        .expect("agent");
    let mut changed = full_design("Support");
    changed.description = "Answers sales questions".into();
    changed.tools = vec![
        user_tool("crm", "salesforce"),
        user_tool("calendar", "gcal"),
    ];
    let edited = edit(&alice, &v1, changed, &["*"]).await.expect("edit");
    deploy(&alice, &edited).await.expect("v2");

    let selector = |number| registry::VersionSelector {
        selector: Some(registry::version_selector::Selector::VersionNumber(number)),
    };
    let diff = |base, target| registry::DiffVersionsRequest {
        agent_id: agent.id.clone(),
        base: Some(base),
        target: Some(target),
    };
    let changes = alice
        .registry()
        .diff_versions(diff(selector(1), selector(2)))
        .await
        .expect("diff")
        .into_inner()
        .changes;
    let paths: Vec<(String, i32)> = changes
        .iter()
        .map(|c| (c.field_path.clone(), c.kind))
        .collect();
    assert_eq!(
        paths,
        [
            (
                "description".to_string(),
                registry::FieldChangeKind::Modified as i32
            ),
            (
                "tools[calendar]".to_string(),
                registry::FieldChangeKind::Added as i32
            ),
            (
                "tools[crm].provider".to_string(),
                registry::FieldChangeKind::Modified as i32
            ),
            (
                "tools[mail]".to_string(),
                registry::FieldChangeKind::Removed as i32
            ),
        ]
    );

    // Another deploy landed since the caller looked: refused.
    assert_status(
        alice
            .registry()
            .rollback_agent(registry::RollbackAgentRequest {
                agent_id: agent.id.clone(),
                version_number: 1,
                expected_latest_version_number: Some(1),
                notes: String::new(),
            })
            .await,
        Code::Aborted,
        "version 2",
    );
    let rolled = alice
        .registry()
        .rollback_agent(registry::RollbackAgentRequest {
            agent_id: agent.id.clone(),
            version_number: 1,
            expected_latest_version_number: Some(2),
            notes: "sales wording was wrong".into(),
        })
        .await
        .expect("rollback")
        .into_inner();
    assert!(rolled.created);
    let v3 = rolled.version.expect("version");
    assert_eq!(v3.number, 3);
    assert_eq!(v3.origin, registry::VersionOrigin::Rollback as i32);
    assert_eq!(v3.rollback_of_version_number, 1);
    assert_eq!(v3.content.as_ref(), Some(&full_design("Support")));
    let after = rolled.agent.expect("agent");
    assert_eq!(after.latest_version_number, 3);
    assert_eq!(
        after.draft.expect("draft").description,
        "Answers sales questions",
        "rollback leaves the draft alone"
    );
    assert!(
        alice
            .registry()
            .diff_versions(diff(selector(1), selector(3)))
            .await
            .expect("diff")
            .into_inner()
            .changes
            .is_empty()
    );
    assert_status(
        alice
            .registry()
            .diff_versions(diff(selector(1), selector(9)))
            .await,
        Code::NotFound,
        "version 9",
    );
    suite.stop().await;
}

#[tokio::test]
async fn an_agent_is_its_owners_alone_and_others_cannot_tell_it_exists() {
    let suite = Suite::start().await;
    let (alice, _org, others) = org_with(&suite, &[("bob", sharing::OrgRole::Admin)]).await;
    let bob = &others[0];
    let agent = new_agent(&alice, full_design("Secret")).await;
    deploy(&alice, &agent).await.expect("deploy");
    let missing = uuid::Uuid::now_v7().to_string();

    let seen = assert_status(
        bob.registry().get_agent(get(&agent.id)).await,
        Code::NotFound,
        "not found",
    );
    let unknown = assert_status(
        bob.registry().get_agent(get(&missing)).await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(
        seen.message().replace(&agent.id, "ID"),
        unknown.message().replace(&missing, "ID")
    );
    let as_bob = registry::Agent {
        draft_revision: 1,
        ..agent.clone()
    };
    assert_status(
        edit(bob, &as_bob, full_design("Mine"), &["name"]).await,
        Code::NotFound,
        "not found",
    );
    assert_status(deploy(bob, &as_bob).await, Code::NotFound, "not found");
    assert_status(
        bob.registry()
            .delete_agent(registry::DeleteAgentRequest {
                agent_id: agent.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    let listed = bob
        .registry()
        .list_agents(registry::ListAgentsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .agents;
    assert!(listed.iter().all(|a| a.id != agent.id));

    // Someone in another org cannot see it either.
    let carol = suite.user("carol").await;
    carol.new_org("Other").await;
    assert_status(
        carol.registry().get_agent(get(&agent.id)).await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

#[tokio::test]
async fn every_member_sees_the_default_agent_and_only_owners_and_admins_change_it() {
    let suite = Suite::start().await;
    let (alice, org, others) = org_with(
        &suite,
        &[
            ("bob", sharing::OrgRole::Member),
            ("carol", sharing::OrgRole::Admin),
        ],
    )
    .await;
    let (bob, carol) = (&others[0], &others[1]);

    let seen_by_bob = default_agent(bob).await.expect("default agent");
    assert!(seen_by_bob.is_default);
    assert_eq!(seen_by_bob.org_id, org.id);
    assert_eq!(seen_by_bob.state, registry::AgentState::Active as i32);
    assert_eq!(seen_by_bob.latest_version_number, 1);
    assert_eq!(seen_by_bob.home_workspace_id, "");
    assert!(!seen_by_bob.caller_can_edit);
    assert_eq!(seen_by_bob.draft_revision, 0);
    let holder_view = seen_by_bob.draft.clone().expect("draft");
    assert!(!holder_view.name.is_empty());
    assert!(
        holder_view.instructions.is_empty(),
        "holders never see instructions"
    );
    assert!(
        bob.registry()
            .list_agents(registry::ListAgentsRequest::default())
            .await
            .expect("list")
            .into_inner()
            .agents
            .iter()
            .any(|a| a.id == seen_by_bob.id)
    );
    let v1 = version(bob, &seen_by_bob.id, 1).await.expect("v1");
    assert_eq!(v1.origin, registry::VersionOrigin::Initial as i32);

    // A member sees it but may not change it.
    let as_member = registry::Agent {
        draft_revision: 1,
        ..seen_by_bob.clone()
    };
    assert_status(
        edit(bob, &as_member, full_design("Bob's"), &["name"]).await,
        Code::PermissionDenied,
        "owner",
    );
    assert_status(
        deploy(bob, &as_member).await,
        Code::PermissionDenied,
        "owner",
    );

    // An admin edits and deploys it.
    let for_carol = default_agent(carol).await.expect("default agent");
    assert_eq!(for_carol.id, seen_by_bob.id);
    assert!(for_carol.caller_can_edit);
    let edited = edit(
        carol,
        &for_carol,
        registry::AgentDraft {
            instructions: "Answer in the company's voice.".into(),
            ..Default::default()
        },
        &["instructions"],
    )
    .await
    .expect("admin edits");
    let v2 = deploy(carol, &edited).await.expect("admin deploys");
    assert_eq!(v2.version.expect("version").number, 2);

    // Nobody deletes it, not even the org owner.
    assert_status(
        alice
            .registry()
            .delete_agent(registry::DeleteAgentRequest {
                agent_id: seen_by_bob.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "cannot be deleted",
    );
    assert_eq!(
        default_agent(&alice)
            .await
            .expect("still there")
            .latest_version_number,
        2
    );
    suite.stop().await;
}

#[tokio::test]
async fn viewers_read_agents_but_never_change_them() {
    let suite = Suite::start().await;
    let (alice, _org, others) = org_with(&suite, &[("vera", sharing::OrgRole::Viewer)]).await;
    let vera = &others[0];
    let agent = new_agent(&alice, full_design("Support")).await;
    deploy(&alice, &agent).await.expect("deploy");
    let template = alice
        .registry()
        .create_template_from_agent(registry::CreateTemplateFromAgentRequest {
            agent_id: agent.id.clone(),
            version_number: 1,
            ..Default::default()
        })
        .await
        .expect("publish")
        .into_inner()
        .template
        .expect("template");

    let default = default_agent(vera)
        .await
        .expect("viewers read the default agent");
    assert!(!default.caller_can_edit);
    vera.registry()
        .list_versions(registry::ListVersionsRequest {
            agent_id: default.id.clone(),
            ..Default::default()
        })
        .await
        .expect("viewers list versions");
    vera.registry()
        .list_templates(registry::ListTemplatesRequest::default())
        .await
        .expect("viewers list templates");

    assert_status(
        vera.registry()
            .create_agent(create(full_design("Mine")))
            .await,
        Code::PermissionDenied,
        "viewer",
    );
    assert_status(
        vera.registry()
            .create_agent_from_template(registry::CreateAgentFromTemplateRequest {
                template_id: template.id.clone(),
                name: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "viewer",
    );
    let as_viewer = registry::Agent {
        draft_revision: 1,
        ..default.clone()
    };
    assert_status(
        edit(vera, &as_viewer, full_design("Vera's"), &["name"]).await,
        Code::PermissionDenied,
        "owner",
    );
    assert_status(
        deploy(vera, &as_viewer).await,
        Code::PermissionDenied,
        "owner",
    );
    suite.stop().await;
}

#[tokio::test]
async fn racing_first_calls_create_exactly_one_default_agent() {
    let suite = Suite::start().await;
    let (_alice, org, others) = org_with(
        &suite,
        &[
            ("m0", sharing::OrgRole::Member),
            ("m1", sharing::OrgRole::Member),
            ("m2", sharing::OrgRole::Admin),
        ],
    )
    .await;
    // Ten first calls at once, racing each other and registry's follower of
    // `org.created`.
    let mut calls = Vec::new();
    for i in 0..10 {
        let client = others[i % others.len()].clone();
        calls.push(tokio::spawn(async move {
            default_agent(&client).await.expect("default agent").id
        }));
    }
    let mut ids = BTreeSet::new();
    for call in calls {
        ids.insert(call.await.expect("task"));
    }
    assert_eq!(ids.len(), 1, "every caller got the same agent");
    let db = suite.db(ServiceName::Registry).await;
    let count: i64 =
        sqlx::query("SELECT COUNT(*) FROM agents WHERE org_id = $1 AND is_default = 1")
            .bind(&org.id)
            .fetch_one(&db.pool)
            .await
            .expect("count")
            .try_get(0)
            .expect("count");
    assert_eq!(count, 1);
    suite.stop().await;
}

#[tokio::test]
async fn a_new_org_gets_its_default_agent_without_anyone_asking() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let org = alice.new_org("Acme").await;
    let db = suite.db(ServiceName::Registry).await;
    let created = eventually("the default agent created after org.created", || async {
        sqlx::query("SELECT id FROM agents WHERE org_id = $1 AND is_default = 1")
            .bind(&org.id)
            .fetch_optional(&db.pool)
            .await
            .expect("query")
            .map(|row| row.try_get::<String, _>("id").expect("id"))
    })
    .await;
    assert_eq!(default_agent(&alice).await.expect("default").id, created);
    let kinds: Vec<String> = events_of(&suite, &created)
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["agent.created"]);
    suite.stop().await;
}

#[tokio::test]
async fn managed_agents_are_flagged_by_org_admins_synced_and_never_deleted() {
    let suite = Suite::start().await;
    let (alice, _org, others) = org_with(&suite, &[("bob", sharing::OrgRole::Member)]).await;
    let bob = &others[0];
    let managed = |name: &str| registry::CreateAgentRequest {
        draft: Some(full_design(name)),
        is_managed: true,
    };
    assert_status(
        bob.registry().create_agent(managed("Bob's")).await,
        Code::PermissionDenied,
        "admins",
    );
    let agent = alice
        .registry()
        .create_agent(managed("Compliance"))
        .await
        .expect("owner flags it")
        .into_inner()
        .agent
        .expect("agent");
    assert!(agent.is_managed);
    assert!(read(&alice, &agent.id).await.is_managed);
    assert_eq!(
        access_row(&suite, &agent.id).await,
        Some(("draft".into(), 0, true)),
        "sharing holds the flag"
    );
    assert_status(
        alice
            .registry()
            .delete_agent(registry::DeleteAgentRequest {
                agent_id: agent.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "managed",
    );
    suite.stop().await;
}

#[tokio::test]
async fn templates_copy_a_version_without_connections_and_never_follow_either_side() {
    let suite = Suite::start().await;
    let (alice, _org, others) = org_with(&suite, &[("bob", sharing::OrgRole::Member)]).await;
    let bob = &others[0];
    let mut design = full_design("Research");
    design.tools.push(shared_tool("search", "conn-alice-brave"));
    let agent = new_agent(&alice, design).await;
    let publish = |number| registry::CreateTemplateFromAgentRequest {
        agent_id: agent.id.clone(),
        version_number: number,
        ..Default::default()
    };
    assert_status(
        alice
            .registry()
            .create_template_from_agent(publish(1))
            .await,
        Code::FailedPrecondition,
        "no deployed version",
    );
    let active = deploy(&alice, &agent)
        .await
        .expect("v1")
        .agent
        .expect("agent");
    let template = alice
        .registry()
        .create_template_from_agent(publish(1))
        .await
        .expect("publish")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(template.name, "Research");
    assert_eq!(template.source_version_number, 1);
    let content = template.content.clone().expect("content");
    assert!(content.tools.iter().all(|t| t.connection_id.is_empty()));
    assert_eq!(content.instructions, "Be kind and brief.");

    let listed = bob
        .registry()
        .list_templates(registry::ListTemplatesRequest::default())
        .await
        .expect("members list templates")
        .into_inner()
        .templates;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].content.is_none());

    let copy = bob
        .registry()
        .create_agent_from_template(registry::CreateAgentFromTemplateRequest {
            template_id: template.id.clone(),
            name: "Bob's research".into(),
        })
        .await
        .expect("from template")
        .into_inner()
        .agent
        .expect("agent");
    assert_eq!(copy.state, registry::AgentState::Draft as i32);
    assert_eq!(copy.draft.as_ref().expect("draft").name, "Bob's research");
    assert_ne!(copy.owner_user_id, agent.owner_user_id);
    // Bob must point the SHARED tool at a connection of his own.
    assert_status(deploy(bob, &copy).await, Code::FailedPrecondition, "search");

    // Alice's later edits reach neither the template nor Bob's agent...
    let edited = edit(
        &alice,
        &active,
        registry::AgentDraft {
            instructions: "Only cite primary sources.".into(),
            ..Default::default()
        },
        &["instructions"],
    )
    .await
    .expect("alice edits");
    deploy(&alice, &edited).await.expect("v2");
    let get_template = || registry::GetTemplateRequest {
        template_id: template.id.clone(),
    };
    let stored = bob
        .registry()
        .get_template(get_template())
        .await
        .expect("get template")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(stored.content, template.content);
    assert_eq!(
        read(bob, &copy.id).await.draft.expect("draft").instructions,
        "Be kind and brief."
    );
    // ...and Bob's edits reach neither the template nor Alice's agent.
    edit(
        bob,
        &copy,
        registry::AgentDraft {
            instructions: "Be funny.".into(),
            ..Default::default()
        },
        &["instructions"],
    )
    .await
    .expect("bob edits");
    assert_eq!(
        read(&alice, &agent.id)
            .await
            .draft
            .expect("draft")
            .instructions,
        "Only cite primary sources."
    );
    let stored = alice
        .registry()
        .get_template(get_template())
        .await
        .expect("get template")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(stored.content, template.content);

    // Another org never sees it.
    let carol = suite.user("carol").await;
    carol.new_org("Other").await;
    assert_status(
        carol.registry().get_template(get_template()).await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

#[tokio::test]
async fn delete_ends_access_first_and_the_agent_leaves_every_list() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = new_agent(&alice, full_design("Old")).await;
    let active = deploy(&alice, &agent)
        .await
        .expect("deploy")
        .agent
        .expect("agent");
    assert_eq!(
        access_row(&suite, &agent.id).await,
        Some(("active".into(), 1, false))
    );
    let delete = || registry::DeleteAgentRequest {
        agent_id: agent.id.clone(),
    };
    let deleted = alice
        .registry()
        .delete_agent(delete())
        .await
        .expect("delete")
        .into_inner()
        .agent
        .expect("agent");
    assert_eq!(deleted.state, registry::AgentState::Deleted as i32);
    assert!(deleted.delete_time.is_some());
    assert_eq!(
        access_row(&suite, &agent.id).await,
        Some(("deleted".into(), 1, false)),
        "sharing knows"
    );
    let listed = alice
        .registry()
        .list_agents(registry::ListAgentsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .agents;
    assert!(listed.iter().all(|a| a.id != agent.id));
    // The owner can still read it, for history; nobody can change it.
    assert_eq!(
        read(&alice, &agent.id).await.state,
        registry::AgentState::Deleted as i32
    );
    assert_status(
        edit(&alice, &active, full_design("Back"), &["name"]).await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        alice.registry().delete_agent(delete()).await,
        Code::NotFound,
        "not found",
    );
    let kinds: Vec<String> = events_of(&suite, &agent.id)
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["agent.created", "agent.deployed", "agent.deleted"]);
    suite.stop().await;
}

#[tokio::test]
async fn events_carry_versions_integrations_and_the_access_facts() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let mut design = full_design("Support");
    design.tools.push(shared_tool("search", "conn-1"));
    let agent = new_agent(&alice, design).await;
    let active = deploy(&alice, &agent)
        .await
        .expect("deploy")
        .agent
        .expect("agent");
    let renamed = edit(
        &alice,
        &active,
        registry::AgentDraft {
            tools: vec![user_tool("crm", "hubspot")],
            ..Default::default()
        },
        &["tools"],
    )
    .await
    .expect("edit tools");
    let template = alice
        .registry()
        .create_template_from_agent(registry::CreateTemplateFromAgentRequest {
            agent_id: agent.id.clone(),
            version_number: 1,
            ..Default::default()
        })
        .await
        .expect("publish")
        .into_inner()
        .template
        .expect("template");
    let events = events_of(&suite, &agent.id).await;
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["agent.created", "agent.deployed", "agent.draft_updated"]
    );
    let deployed = &events[1].1;
    assert_eq!(deployed["version"], 1);
    let keys: Vec<&str> = deployed["integrations"]
        .as_array()
        .expect("integrations")
        .iter()
        .map(|i| i["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["crm", "mail", "search"]);
    let revisions: Vec<i64> = events
        .iter()
        .map(|(_, payload)| {
            agentshare_proto::access_facts::from_json(&payload["facts"])
                .expect("facts decode")
                .revision
        })
        .collect();
    assert_eq!(revisions, [1, 2, 3], "one revision per synced change");
    let facts = agentshare_proto::access_facts::from_json(&events[2].1["facts"]).expect("facts");
    assert_eq!(facts.latest_version, 1);
    assert_eq!(facts.draft_integrations.len(), 1);
    assert_eq!(facts.versions[0].integrations.len(), 3);
    assert!(renamed.has_undeployed_changes);
    let published = events_of(&suite, &template.id).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0, "template.published");
    assert_eq!(published[0].1["source_agent_id"], agent.id.as_str());
    suite.stop().await;
}

#[tokio::test]
async fn agents_list_newest_first_in_pages_that_refuse_foreign_tokens() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let mut created = Vec::new();
    for name in ["One", "Two", "Three"] {
        created.push(new_agent(&alice, full_design(name)).await.id);
    }
    let list = |token: &str, state: registry::AgentState| registry::ListAgentsRequest {
        page_size: 2,
        page_token: token.into(),
        owned_by_caller: true,
        state: state as i32,
    };
    let first = alice
        .registry()
        .list_agents(list("", registry::AgentState::Unspecified))
        .await
        .expect("page 1")
        .into_inner();
    let second = alice
        .registry()
        .list_agents(list(
            &first.next_page_token,
            registry::AgentState::Unspecified,
        ))
        .await
        .expect("page 2")
        .into_inner();
    assert!(second.next_page_token.is_empty());
    let ids: Vec<String> = first
        .agents
        .iter()
        .chain(&second.agents)
        .map(|a| a.id.clone())
        .collect();
    created.reverse();
    assert_eq!(ids, created);
    assert_status(
        alice
            .registry()
            .list_agents(list(&first.next_page_token, registry::AgentState::Draft))
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_status(
        alice
            .registry()
            .list_agents(list("", registry::AgentState::Deleted))
            .await,
        Code::InvalidArgument,
        "state",
    );
    suite.stop().await;
}

#[tokio::test]
async fn concurrent_deploys_number_versions_uniquely_and_without_gaps() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = new_agent(&alice, full_design("Busy")).await;
    let (clients, deploys_each) = (20, 2);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let alice = alice.clone();
        let agent_id = agent.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            let mut attempts = 0;
            while made.len() < deploys_each {
                attempts += 1;
                assert!(attempts < 500, "client {i} never got through");
                let current = read(&alice, &agent_id).await;
                let description = format!("client {i}, change {}", made.len());
                let edited = match edit(
                    &alice,
                    &current,
                    registry::AgentDraft {
                        description,
                        ..Default::default()
                    },
                    &["description"],
                )
                .await
                {
                    Ok(edited) => edited,
                    Err(status) if status.code() == Code::Aborted => continue,
                    Err(status) => panic!("edit: {status:?}"),
                };
                match deploy(&alice, &edited).await {
                    Ok(deployed) if deployed.created => {
                        made.push(deployed.version.expect("version").number);
                    }
                    Ok(_) => {}
                    Err(status) if status.code() == Code::Aborted => {}
                    Err(status) => panic!("deploy: {status:?}"),
                }
            }
            made
        }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.extend(task.await.expect("client"));
    }
    numbers.sort_unstable();
    let expected: Vec<i64> = (1..=(clients * deploys_each) as i64).collect();
    assert_eq!(numbers, expected, "unique and gapless");
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = alice
            .registry()
            .list_versions(registry::ListVersionsRequest {
                agent_id: agent.id.clone(),
                page_size: 15,
                page_token: token.clone(),
            })
            .await
            .expect("list")
            .into_inner();
        listed.extend(page.versions.iter().map(|v| v.number));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    listed.reverse();
    assert_eq!(listed, expected);
    suite.stop().await;
}

#[tokio::test]
async fn a_workspace_that_is_an_agents_home_is_deleted_only_after_the_agent() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong
        .tenancy()
        .update_org(sharing::UpdateOrgRequest {
            workspaces_enabled: Some(true),
            ..Default::default()
        })
        .await
        .expect("enable workspaces");
    let sales = strong
        .tenancy()
        .create_workspace(sharing::CreateWorkspaceRequest {
            name: "Sales".into(),
        })
        .await
        .expect("workspace")
        .into_inner()
        .workspace
        .expect("workspace");
    let agent = new_agent(&alice.in_workspace(&sales.id), full_design("Pipeline")).await;
    assert_eq!(agent.home_workspace_id, sales.id);
    let delete_sales = || sharing::DeleteWorkspaceRequest {
        workspace_id: sales.id.clone(),
    };
    assert_status(
        strong.tenancy().delete_workspace(delete_sales()).await,
        Code::Aborted,
        &agent.id,
    );
    alice
        .registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("delete agent");
    strong
        .tenancy()
        .delete_workspace(delete_sales())
        .await
        .expect("an empty workspace can go");
    suite.stop().await;
}

/// Requests to registry straight on its port, signed as the gateway would
/// sign them for the owner of `who`.
fn as_gateway<T>(suite: &Suite, who: &registry::Agent, message: T) -> tonic::Request<T> {
    use agentshare_kit::identity::{Identity, KeyRing, PRINCIPAL_HEADER, Principal};
    let gateway = Identity::new(
        KeyRing::load(suite.keys_dir(), ServiceName::Gateway).expect("gateway keys"),
        suite.clock.clone(),
    );
    let mut principal = Principal::user(who.owner_user_id.clone());
    principal.org_id = Some(who.org_id.clone());
    principal.org_role = Some(OrgRole::Owner);
    principal.workspace_id = Some(who.home_workspace_id.clone());
    let token = gateway.sign_principal(&principal).expect("sign");
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(PRINCIPAL_HEADER, token.parse().expect("header"));
    request
}

#[tokio::test]
async fn access_catches_up_through_registry_events_after_sharing_was_down() {
    let mut suite = Suite::builder().processes().start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = new_agent(&alice, full_design("Durable")).await;
    let active = deploy(&alice, &agent)
        .await
        .expect("v1")
        .agent
        .expect("agent");
    assert_eq!(
        access_row(&suite, &agent.id).await,
        Some(("active".into(), 1, false))
    );

    suite.kill_replica(ServiceName::Sharing, 0).await;
    // The gateway needs sharing to sign anyone in, so this client plays the
    // gateway and calls registry directly.
    let mut direct = registry::agent_registry_service_client::AgentRegistryServiceClient::new(
        suite
            .service_channel(ServiceName::Gateway, ServiceName::Registry, 0)
            .await,
    );
    let mut request = registry::UpdateDraftRequest {
        agent_id: agent.id.clone(),
        draft: Some(registry::AgentDraft {
            tools: vec![user_tool("crm", "hubspot")],
            ..Default::default()
        }),
        update_mask: Some(Default::default()),
        expected_draft_revision: active.draft_revision,
    };
    if let Some(mask) = request.update_mask.as_mut() {
        mask.paths = vec!["tools".into()];
    }
    // Both are saved; the sync after each fails cleanly or succeeds.
    match direct
        .update_draft(as_gateway(&suite, &active, request))
        .await
    {
        Ok(_) => {}
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
    }
    let edited = direct
        .get_agent(as_gateway(&suite, &active, get(&agent.id)))
        .await
        .expect("read")
        .into_inner()
        .agent
        .expect("agent");
    assert_eq!(edited.draft_revision, active.draft_revision + 1);
    let deployed = direct
        .deploy_agent(as_gateway(
            &suite,
            &active,
            registry::DeployAgentRequest {
                agent_id: agent.id.clone(),
                expected_draft_revision: edited.draft_revision,
                notes: "while sharing was down".into(),
            },
        ))
        .await;
    if let Err(status) = &deployed {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("saved"), "{}", status.message());
    }
    suite.restart_replica(ServiceName::Sharing, 0).await;

    // No manual step: sharing's follower of registry's events repairs it.
    eventually_within(
        Duration::from_secs(30),
        "sharing repairing the agent's access row after it came back",
        || async {
            match access_row(&suite, &agent.id).await {
                Some(row) if row == ("active".into(), 2, false) => Ok(()),
                held => Err(held),
            }
        },
    )
    .await;
    suite.stop().await;
}
