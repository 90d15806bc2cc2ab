//! Sharing and access (DESIGN.md, "Access model (sharing)"): share with
//! workspace, unshare, the workspace list, Check, CheckBulk, Explain and My
//! Agents.

use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use sharing::{Action, DecisionReason as Reason};
use tonic::Code;

use crate::assert_status;

fn check(agent_id: &str, action: Action) -> sharing::CheckRequest {
    sharing::CheckRequest {
        principal: None,
        agent_id: agent_id.into(),
        action: action as i32,
    }
}

fn check_for(user_id: &str, agent_id: &str, action: Action) -> sharing::CheckRequest {
    sharing::CheckRequest {
        principal: Some(sharing::PrincipalRef {
            user_id: user_id.into(),
            ..Default::default()
        }),
        agent_id: agent_id.into(),
        action: action as i32,
    }
}

async fn decision(client: &UserClient, request: sharing::CheckRequest) -> (bool, Reason) {
    let answer = client
        .access()
        .check(request)
        .await
        .expect("check")
        .into_inner();
    (answer.allowed, answer.reason())
}

async fn my_agents(client: &UserClient) -> Vec<sharing::MyAgent> {
    client
        .access()
        .list_my_agents(sharing::ListMyAgentsRequest::default())
        .await
        .expect("my agents")
        .into_inner()
        .agents
}

#[tokio::test]
async fn sharing_with_the_workspace_lets_members_see_and_run_until_unshared() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let vera = suite.user("vera").await;
    alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let bob_id = bob.user_id().await;
    let vera_id = vera.user_id().await;
    strong.add_member(&bob_id, sharing::OrgRole::Member).await;
    strong.add_member(&vera_id, sharing::OrgRole::Viewer).await;

    // A draft cannot be shared, and nobody else sees it.
    let draft = alice.new_agent("Triage").await;
    assert_status(
        alice
            .sharing()
            .share_agent(sharing::ShareAgentRequest {
                agent_id: draft.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "deploy the agent before sharing it",
    );
    let agent = alice.deploy(&draft).await;
    assert_status(
        bob.access().check(check(&agent.id, Action::View)).await,
        Code::NotFound,
        "not found",
    );
    assert!(my_agents(&bob).await.iter().all(|a| a.agent_id != agent.id));
    // Only the owner shares.
    assert_status(
        bob.sharing()
            .share_agent(sharing::ShareAgentRequest {
                agent_id: agent.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    let shared = alice
        .sharing()
        .share_agent(sharing::ShareAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("share")
        .into_inner()
        .sharing
        .expect("sharing");
    assert!(shared.shared);

    // Bob sees and runs it; it is not his to change.
    let mine = my_agents(&bob).await;
    let row = mine
        .iter()
        .find(|a| a.agent_id == agent.id)
        .expect("shared with bob");
    assert_eq!(row.relation(), sharing::AgentRelation::SharedWithYou);
    assert!(row.can_run);
    assert_eq!(row.name, "Triage");
    assert_eq!(row.owner_user_id, agent.owner_user_id);
    assert_eq!(
        decision(&bob, check(&agent.id, Action::Run)).await,
        (true, Reason::WorkspaceMember)
    );
    assert_eq!(
        decision(&bob, check(&agent.id, Action::Edit)).await,
        (false, Reason::OwnerOnly)
    );
    assert_status(
        bob.sharing()
            .unshare_agent(sharing::UnshareAgentRequest {
                agent_id: agent.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "owner",
    );
    // A viewer looks but never runs.
    assert_eq!(
        decision(&vera, check(&agent.id, Action::View)).await,
        (true, Reason::WorkspaceMember)
    );
    assert_eq!(
        decision(&vera, check(&agent.id, Action::Run)).await,
        (false, Reason::ViewerRole)
    );
    let vera_row = my_agents(&vera).await;
    assert!(
        !vera_row
            .iter()
            .find(|a| a.agent_id == agent.id)
            .expect("listed")
            .can_run
    );

    // The dry-run names who would lose it and changes nothing.
    let preview = alice
        .sharing()
        .preview_unshare_agent(sharing::PreviewUnshareAgentRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("preview")
        .into_inner();
    let mut losing: Vec<&str> = preview
        .users_losing_access
        .iter()
        .map(|u| u.user_id.as_str())
        .collect();
    losing.sort_unstable();
    let mut expected = vec![bob_id.as_str(), vera_id.as_str()];
    expected.sort_unstable();
    assert_eq!(losing, expected);
    assert_eq!(preview.users_losing_access_total, 2);
    assert!(decision(&bob, check(&agent.id, Action::Run)).await.0);

    // Unshare: gone for everyone but the owner, at once.
    alice.unshare(&agent.id).await;
    assert_status(
        bob.access().check(check(&agent.id, Action::Run)).await,
        Code::NotFound,
        "not found",
    );
    assert!(my_agents(&bob).await.iter().all(|a| a.agent_id != agent.id));
    assert_eq!(
        decision(&alice, check_for(&bob_id, &agent.id, Action::Run)).await,
        (false, Reason::NotShared)
    );
    assert_eq!(
        decision(&alice, check(&agent.id, Action::Run)).await,
        (true, Reason::Owner)
    );
    let kinds: Vec<String> = suite
        .events_about(agentshare_kit::identity::ServiceName::Sharing, &agent.id)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["agent.shared", "agent.unshared"]);
    // Sharing again restores the same reach.
    alice.share(&agent.id).await;
    assert!(decision(&bob, check(&agent.id, Action::Run)).await.0);
    suite.stop().await;
}

#[tokio::test]
async fn the_workspace_list_is_set_with_step_up_by_members_and_keeps_what_the_caller_cannot_see() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    let acme = alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let bob_strong = bob.with_token(&suite.token_with("bob", true, 7200));
    let bob_id = bob.user_id().await;
    let carol_id = carol.user_id().await;
    strong.add_member(&bob_id, sharing::OrgRole::Member).await;
    strong.add_member(&carol_id, sharing::OrgRole::Member).await;
    strong.enable_workspaces().await;
    let mut ids = Vec::new();
    for name in ["Sales", "Ops", "Legal"] {
        ids.push(
            strong
                .tenancy()
                .create_workspace(sharing::CreateWorkspaceRequest { name: name.into() })
                .await
                .expect("workspace")
                .into_inner()
                .workspace
                .expect("workspace")
                .id,
        );
    }
    let (sales, ops, legal) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    for (workspace, user) in [(&sales, &bob_id), (&ops, &bob_id), (&sales, &carol_id)] {
        strong
            .add_to_workspace(workspace, user, sharing::WorkspaceRole::Member)
            .await;
    }
    // Carol works in Sales only.
    strong
        .remove_from_workspace(&acme.default_workspace_id, &carol_id)
        .await;

    let agent = bob.shared_agent("Pipeline").await;
    assert_eq!(agent.home_workspace_id, acme.default_workspace_id);
    let set = |ids: Vec<String>| sharing::SetAgentWorkspacesRequest {
        agent_id: agent.id.clone(),
        workspace_ids: ids,
    };
    assert_status(
        bob.sharing()
            .set_agent_workspaces(set(vec![sales.clone()]))
            .await,
        Code::PermissionDenied,
        "step-up required",
    );
    assert_status(
        bob_strong
            .sharing()
            .set_agent_workspaces(set(vec![legal.clone()]))
            .await,
        Code::PermissionDenied,
        "not a member of workspace",
    );
    assert_status(
        bob_strong
            .sharing()
            .set_agent_workspaces(set(vec![sales.clone(), sales.clone()]))
            .await,
        Code::InvalidArgument,
        "twice",
    );
    assert_status(
        bob_strong
            .sharing()
            .set_agent_workspaces(set(vec!["01900000-0000-7000-8000-000000000000".into()]))
            .await,
        Code::NotFound,
        "workspace",
    );
    let carol_in_sales = carol.in_workspace(&sales);
    assert_status(
        carol_in_sales
            .access()
            .check(check(&agent.id, Action::Run))
            .await,
        Code::NotFound,
        "not found",
    );
    let changed = bob_strong
        .sharing()
        .set_agent_workspaces(set(vec![sales.clone(), ops.clone()]))
        .await
        .expect("set")
        .into_inner();
    assert_eq!(changed.added_workspace_ids, [sales.clone(), ops.clone()]);
    assert!(changed.removed_workspace_ids.is_empty());
    // Carol, in Sales, now runs it; in the home workspace's list it is for
    // its members only.
    assert_eq!(
        decision(&carol_in_sales, check(&agent.id, Action::Run)).await,
        (true, Reason::WorkspaceMember)
    );
    let listed = my_agents(&carol_in_sales).await;
    assert!(listed.iter().any(|a| a.agent_id == agent.id));

    // Carol sees only the workspaces she can access.
    let seen = carol_in_sales
        .sharing()
        .get_agent_workspaces(sharing::GetAgentWorkspacesRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .sharing
        .expect("sharing");
    let seen: Vec<&str> = seen.workspaces.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(seen, [sales.as_str()]);

    // Bob leaves Ops: his next set cannot take away what he cannot see.
    strong.remove_from_workspace(&ops, &bob_id).await;
    let changed = bob_strong
        .sharing()
        .set_agent_workspaces(set(Vec::new()))
        .await
        .expect("set")
        .into_inner();
    assert_eq!(changed.removed_workspace_ids, [sales.as_str()]);
    // Alice, an org owner, can access every workspace and sees them all.
    let all = strong
        .sharing()
        .get_agent_workspaces(sharing::GetAgentWorkspacesRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("alice's view")
        .into_inner()
        .sharing
        .expect("sharing");
    let all: Vec<&str> = all.workspaces.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(all, [acme.default_workspace_id.as_str(), ops.as_str()]);
    let kept = bob_strong
        .sharing()
        .get_agent_workspaces(sharing::GetAgentWorkspacesRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("bob's view")
        .into_inner()
        .sharing
        .expect("sharing");
    assert_eq!(kept.home_workspace_id, acme.default_workspace_id);
    let kept: Vec<&str> = kept.workspaces.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        kept,
        [acme.default_workspace_id.as_str()],
        "Ops is kept but not shown"
    );
    // Carol lost it with Sales, on her very next call.
    assert_status(
        carol_in_sales
            .access()
            .check(check(&agent.id, Action::Run))
            .await,
        Code::NotFound,
        "not found",
    );
    let trail = strong
        .tenancy()
        .list_audit_events(sharing::ListAuditEventsRequest {
            target_id: agent.id.clone(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert_eq!(trail[0].action, "agent.workspaces_changed");
    assert!(
        trail[0]
            .after_json
            .contains(&format!("\"removed_workspace_ids\":[\"{sales}\"]"))
    );

    // The default agent and managed agents keep their workspaces.
    let default = strong
        .registry()
        .get_default_agent(registry::GetDefaultAgentRequest {})
        .await
        .expect("default agent")
        .into_inner()
        .agent
        .expect("agent");
    assert_status(
        strong
            .sharing()
            .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                agent_id: default.id.clone(),
                workspace_ids: vec![sales.clone()],
            })
            .await,
        Code::PermissionDenied,
        "",
    );
    let managed = strong
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Compliance".into(),
                ..Default::default()
            }),
            is_managed: true,
        })
        .await
        .expect("managed")
        .into_inner()
        .agent
        .expect("agent");
    assert_status(
        strong
            .sharing()
            .set_agent_workspaces(sharing::SetAgentWorkspacesRequest {
                agent_id: managed.id.clone(),
                workspace_ids: vec![sales.clone()],
            })
            .await,
        Code::PermissionDenied,
        "managed",
    );
    suite.stop().await;
}

#[tokio::test]
async fn only_the_user_the_owner_or_an_admin_may_ask_and_explain_names_the_path() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    let carol = suite.user("carol").await;
    alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    let bob_id = bob.user_id().await;
    let carol_id = carol.user_id().await;
    strong.add_member(&bob_id, sharing::OrgRole::Member).await;
    strong.add_member(&carol_id, sharing::OrgRole::Member).await;
    let agent = bob.shared_agent("Research").await;

    // Carol sees the agent, but may not ask about Bob's access to it.
    assert_status(
        carol
            .access()
            .check(check_for(&bob_id, &agent.id, Action::Run))
            .await,
        Code::PermissionDenied,
        "may ask",
    );
    // The owner and an org owner may.
    assert_eq!(
        decision(&bob, check_for(&carol_id, &agent.id, Action::Run)).await,
        (true, Reason::WorkspaceMember)
    );
    assert_eq!(
        decision(&alice, check_for(&carol_id, &agent.id, Action::Delete)).await,
        (false, Reason::OwnerOnly)
    );
    assert_status(
        carol
            .access()
            .check(sharing::CheckRequest {
                action: Action::Unspecified as i32,
                ..check(&agent.id, Action::Run)
            })
            .await,
        Code::InvalidArgument,
        "action",
    );

    let explained = bob
        .access()
        .explain(sharing::ExplainRequest {
            principal: None,
            agent_id: agent.id.clone(),
            action: Action::Run as i32,
        })
        .await
        .expect("explain")
        .into_inner();
    assert!(explained.allowed);
    let kinds: Vec<_> = explained.paths.iter().map(|p| p.kind()).collect();
    assert_eq!(
        kinds,
        [
            sharing::AccessPathKind::Owner,
            sharing::AccessPathKind::WorkspaceShare
        ]
    );
    assert!(
        explained
            .facts
            .iter()
            .any(|f| f.code == "agent.shared" && f.value == "true")
    );
    assert_eq!(
        decision(&carol, check(&agent.id, Action::ConfigureOwn)).await,
        (true, Reason::WorkspaceMember)
    );
    assert_eq!(
        decision(&carol, check(&agent.id, Action::ManageGrants)).await,
        (false, Reason::OwnerOnly)
    );
    assert_eq!(
        decision(&bob, check(&agent.id, Action::ManageGrants)).await,
        (true, Reason::Owner)
    );

    bob.unshare(&agent.id).await;
    let why_not = alice
        .access()
        .explain(sharing::ExplainRequest {
            principal: Some(sharing::PrincipalRef {
                user_id: carol_id.clone(),
                ..Default::default()
            }),
            agent_id: agent.id.clone(),
            action: Action::Run as i32,
        })
        .await
        .expect("explain")
        .into_inner();
    assert!(!why_not.allowed && why_not.paths.is_empty());
    assert_eq!(why_not.reason(), Reason::NotShared);
    assert_eq!(why_not.denial_reasons, [Reason::NotShared as i32]);

    // An admin learns why: no workspace to act in, or a deleted agent.
    strong.enable_workspaces().await;
    let acme_default = strong
        .tenancy()
        .get_org(sharing::GetOrgRequest::default())
        .await
        .expect("org")
        .into_inner()
        .org
        .expect("org")
        .default_workspace_id;
    bob.share(&agent.id).await;
    strong.remove_from_workspace(&acme_default, &carol_id).await;
    assert_eq!(
        decision(&alice, check_for(&carol_id, &agent.id, Action::View)).await,
        (false, Reason::NoActiveWorkspace)
    );
    let legal = strong
        .tenancy()
        .create_workspace(sharing::CreateWorkspaceRequest {
            name: "Legal".into(),
        })
        .await
        .expect("legal")
        .into_inner()
        .workspace
        .expect("workspace")
        .id;
    strong
        .add_to_workspace(&legal, &carol_id, sharing::WorkspaceRole::Member)
        .await;
    let in_legal = sharing::CheckRequest {
        principal: Some(sharing::PrincipalRef {
            user_id: carol_id.clone(),
            workspace_id: legal.clone(),
            ..Default::default()
        }),
        agent_id: agent.id.clone(),
        action: Action::View as i32,
    };
    assert_eq!(
        decision(&alice, in_legal).await,
        (false, Reason::NotWorkspaceMember)
    );
    strong
        .add_to_workspace(&acme_default, &carol_id, sharing::WorkspaceRole::Member)
        .await;
    let doomed = bob.shared_agent("Doomed").await;
    bob.registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: doomed.id.clone(),
        })
        .await
        .expect("delete");
    let gone = alice
        .access()
        .explain(sharing::ExplainRequest {
            principal: Some(sharing::PrincipalRef {
                user_id: carol_id.clone(),
                ..Default::default()
            }),
            agent_id: doomed.id.clone(),
            action: Action::Run as i32,
        })
        .await
        .expect("explain")
        .into_inner();
    assert_eq!(gone.reason(), Reason::AgentDeleted);
    assert_status(
        carol.access().check(check(&doomed.id, Action::View)).await,
        Code::NotFound,
        "not found",
    );

    // The org default agent: every member runs it; it is never shared.
    let default = carol
        .registry()
        .get_default_agent(registry::GetDefaultAgentRequest {})
        .await
        .expect("default agent")
        .into_inner()
        .agent
        .expect("agent");
    assert_eq!(
        decision(&carol, check(&default.id, Action::Run)).await,
        (true, Reason::OrgDefaultAgent)
    );
    assert_eq!(
        decision(&alice, check(&default.id, Action::Deploy)).await,
        (true, Reason::OrgAdmin)
    );
    assert_eq!(
        decision(&alice, check(&default.id, Action::Share)).await,
        (false, Reason::DefaultAgentProtected)
    );
    assert_status(
        alice
            .sharing()
            .share_agent(sharing::ShareAgentRequest {
                agent_id: default.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "default agent",
    );

    // CheckBulk: one answer per id, in order; what the caller cannot see
    // reads NOT_FOUND, like what never existed.
    let mine = carol.deployed_agent("Carol's").await;
    let never = "01900000-0000-7000-8000-000000000000";
    let bulk = carol
        .access()
        .check_bulk(sharing::CheckBulkRequest {
            principal: None,
            agent_ids: vec![
                mine.id.clone(),
                agent.id.clone(),
                never.into(),
                default.id.clone(),
                mine.id.clone(),
                doomed.id.clone(),
            ],
            action: Action::Run as i32,
        })
        .await
        .expect("bulk")
        .into_inner()
        .decisions;
    let answers: Vec<(bool, i32)> = bulk.iter().map(|d| (d.allowed, d.reason)).collect();
    assert_eq!(
        answers,
        [
            (true, Reason::Owner as i32),
            (true, Reason::WorkspaceMember as i32),
            (false, Reason::NotFound as i32),
            (true, Reason::OrgDefaultAgent as i32),
            (true, Reason::Owner as i32),
            (false, Reason::NotFound as i32),
        ]
    );
    assert_status(
        carol
            .access()
            .check_bulk(sharing::CheckBulkRequest {
                principal: None,
                agent_ids: vec![mine.id.clone(); 1001],
                action: Action::Run as i32,
            })
            .await,
        Code::InvalidArgument,
        "agent_ids",
    );
    suite.stop().await;
}

#[tokio::test]
async fn my_agents_pages_by_id_filters_by_relation_and_shows_setup_and_pins() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong
        .add_member(&bob.user_id().await, sharing::OrgRole::Member)
        .await;

    let mut shared_ids = Vec::new();
    for name in ["One", "Two", "Three"] {
        shared_ids.push(alice.shared_agent(name).await.id);
    }
    // One needs Bob's own inbox before he can run it.
    let inbox = alice
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Inbox".into(),
                tools: vec![registry::Tool {
                    integration_key: "mail".into(),
                    provider: "gmail".into(),
                    scope: registry::IntegrationScope::UserConfigured as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            is_managed: false,
        })
        .await
        .expect("inbox agent")
        .into_inner()
        .agent
        .expect("agent");
    let inbox = alice.deploy(&inbox).await;
    alice.share(&inbox.id).await;
    shared_ids.push(inbox.id.clone());
    let own = bob.new_agent("Bob's draft").await;
    // Bob's first call of the default agent creates it.
    let default = bob
        .registry()
        .get_default_agent(registry::GetDefaultAgentRequest {})
        .await
        .expect("default")
        .into_inner()
        .agent
        .expect("agent");

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = bob
            .access()
            .list_my_agents(sharing::ListMyAgentsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.agents.len() <= 2);
        seen.extend(page.agents);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<&str> = seen.iter().map(|a| a.agent_id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "ordered by id");
    assert_eq!(ids.len(), 6, "{ids:?}");
    let row = |id: &str| seen.iter().find(|a| a.agent_id == id).expect("listed");
    assert_eq!(row(&own.id).relation(), sharing::AgentRelation::Owned);
    assert_eq!(row(&own.id).state(), sharing::AgentAccessState::Draft);
    assert!(!row(&own.id).can_run, "a draft runs only in test mode");
    assert_eq!(
        row(&default.id).relation(),
        sharing::AgentRelation::OrgDefault
    );
    assert_eq!(
        row(&inbox.id).setup_status(),
        sharing::SetupStatus::SetupRequired
    );
    assert_eq!(
        row(&shared_ids[0]).setup_status(),
        sharing::SetupStatus::Ready
    );
    assert_eq!(row(&shared_ids[0]).pinned_version, None);

    let only_shared = bob
        .access()
        .list_my_agents(sharing::ListMyAgentsRequest {
            relation: sharing::AgentRelation::SharedWithYou as i32,
            ..Default::default()
        })
        .await
        .expect("shared only")
        .into_inner()
        .agents;
    let mut only: Vec<String> = only_shared.into_iter().map(|a| a.agent_id).collect();
    only.sort_unstable();
    shared_ids.sort_unstable();
    assert_eq!(only, shared_ids);

    // A pin shows in the list, and a version that does not exist is
    // NOT_FOUND.
    bob.access()
        .pin_version(sharing::PinVersionRequest {
            agent_id: shared_ids[0].clone(),
            version: 1,
        })
        .await
        .expect("pin");
    assert_status(
        bob.access()
            .pin_version(sharing::PinVersionRequest {
                agent_id: shared_ids[0].clone(),
                version: 2,
            })
            .await,
        Code::NotFound,
        "version 2",
    );
    let pinned = my_agents(&bob).await;
    assert_eq!(
        pinned
            .iter()
            .find(|a| a.agent_id == shared_ids[0])
            .expect("listed")
            .pinned_version,
        Some(1)
    );
    let unpinned = bob
        .access()
        .unpin_version(sharing::UnpinVersionRequest {
            agent_id: shared_ids[0].clone(),
        })
        .await
        .expect("unpin")
        .into_inner();
    assert!(unpinned.removed);
    let pin = bob
        .access()
        .get_pin(sharing::GetPinRequest {
            agent_id: shared_ids[0].clone(),
        })
        .await
        .expect("get pin")
        .into_inner();
    assert!(pin.pin.is_none());
    // Paging stays stable while agents come and go: nothing twice, nothing
    // that stayed visible skipped.
    let before: Vec<String> = my_agents(&bob)
        .await
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    let first = bob
        .access()
        .list_my_agents(sharing::ListMyAgentsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    let later: Vec<&String> = before
        .iter()
        .filter(|id| first.agents.iter().all(|a| &a.agent_id != *id))
        .filter(|id| shared_ids.contains(id))
        .collect();
    let dropped = later
        .first()
        .copied()
        .expect("a shared agent on a later page")
        .clone();
    alice.unshare(&dropped).await;
    let late = alice.shared_agent("Late").await;
    let mut walked: Vec<String> = first.agents.into_iter().map(|a| a.agent_id).collect();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = bob
            .access()
            .list_my_agents(sharing::ListMyAgentsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        walked.extend(page.agents.into_iter().map(|a| a.agent_id));
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = before.into_iter().filter(|id| *id != dropped).collect();
    expected.push(late.id.clone());
    expected.sort_unstable();
    assert_eq!(walked, expected);

    assert_status(
        bob.access()
            .list_my_agents(sharing::ListMyAgentsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    suite.stop().await;
}

#[tokio::test]
async fn every_change_is_seen_by_the_next_call_on_every_replica() {
    use agentshare_kit::identity::ServiceName;
    let suite = Suite::builder()
        .replicas(ServiceName::Sharing, 2)
        .replicas(ServiceName::Gateway, 2)
        .start()
        .await;
    let gateways = suite.addrs(ServiceName::Gateway);
    let through = |addr, user: &str| {
        let token = suite.token_with(user, true, 7200);
        async move { UserClient::new(agentshare_e2e::connect(addr).await, Some(token)) }
    };
    let alice = through(gateways[0], "alice").await;
    let bob = through(gateways[1], "bob").await;
    let acme = alice.new_org("Acme").await;
    let bob_id = bob.user_id().await;
    alice.add_member(&bob_id, sharing::OrgRole::Member).await;
    alice.enable_workspaces().await;
    // Bob works in Sales only, so Sales is his one way to the agent.
    alice
        .remove_from_workspace(&acme.default_workspace_id, &bob_id)
        .await;
    let sales = alice
        .tenancy()
        .create_workspace(sharing::CreateWorkspaceRequest {
            name: "Sales".into(),
        })
        .await
        .expect("sales")
        .into_inner()
        .workspace
        .expect("workspace")
        .id;
    let add_bob = || sharing::AddWorkspaceMemberRequest {
        workspace_id: sales.clone(),
        user_id: bob_id.clone(),
        role: sharing::WorkspaceRole::Member as i32,
    };
    alice
        .tenancy()
        .add_workspace_member(add_bob())
        .await
        .expect("bob in sales");
    let agent = alice.shared_agent("Forecast").await;
    let set = |ids: Vec<String>| sharing::SetAgentWorkspacesRequest {
        agent_id: agent.id.clone(),
        workspace_ids: ids,
    };
    alice
        .sharing()
        .set_agent_workspaces(set(vec![sales.clone()]))
        .await
        .expect("into sales");
    let bob_in_sales = bob.in_workspace(&sales);
    let runs = |client: UserClient| {
        let id = agent.id.clone();
        async move {
            match client.access().check(check(&id, Action::Run)).await {
                Ok(answer) => answer.into_inner().allowed,
                Err(status) if status.code() == Code::NotFound => false,
                Err(status) => panic!("check failed: {status}"),
            }
        }
    };
    for round in 0..6 {
        alice.unshare(&agent.id).await;
        assert!(!runs(bob_in_sales.clone()).await, "round {round}: unshare");
        alice.share(&agent.id).await;
        assert!(runs(bob_in_sales.clone()).await, "round {round}: share");

        alice.remove_from_workspace(&sales, &bob_id).await;
        // He no longer acts in any workspace: nothing is listed for him.
        assert!(!runs(bob.clone()).await, "round {round}: removed member");
        assert!(
            my_agents(&bob).await.iter().all(|a| a.agent_id != agent.id),
            "round {round}: gone from his list"
        );
        alice
            .tenancy()
            .add_workspace_member(add_bob())
            .await
            .expect("bob back");
        assert!(runs(bob_in_sales.clone()).await, "round {round}: back");

        alice
            .sharing()
            .set_agent_workspaces(set(Vec::new()))
            .await
            .expect("drop sales");
        assert!(!runs(bob_in_sales.clone()).await, "round {round}: dropped");
        alice
            .sharing()
            .set_agent_workspaces(set(vec![sales.clone()]))
            .await
            .expect("sales again");
        assert!(runs(bob_in_sales.clone()).await, "round {round}: listed");
    }
    suite.stop().await;
}

#[tokio::test]
async fn a_holder_reads_the_holder_view_and_changes_nothing() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let bob = suite.user("bob").await;
    alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong
        .add_member(&bob.user_id().await, sharing::OrgRole::Member)
        .await;
    let draft = alice
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Support".into(),
                description: "Answers tickets".into(),
                instructions: "Never reveal the escalation phone number 555-0100.".into(),
                tools: vec![registry::Tool {
                    integration_key: "crm".into(),
                    provider: "hubspot".into(),
                    scope: registry::IntegrationScope::UserConfigured as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            is_managed: false,
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let agent = alice.deploy(&draft).await;
    let get = || registry::GetAgentRequest {
        agent_id: agent.id.clone(),
    };
    assert_status(
        bob.registry().get_agent(get()).await,
        Code::NotFound,
        "not found",
    );
    alice.share(&agent.id).await;

    let seen = bob
        .registry()
        .get_agent(get())
        .await
        .expect("a holder reads it")
        .into_inner()
        .agent
        .expect("agent");
    assert!(!seen.caller_can_edit);
    let design = seen.draft.expect("the holder view");
    assert_eq!(design.name, "Support");
    assert_eq!(design.description, "Answers tickets");
    assert!(design.instructions.is_empty(), "never the instructions");
    assert_eq!(design.tools.len(), 1);
    assert!(design.tools[0].connection_id.is_empty());
    let version = bob
        .registry()
        .get_version(registry::GetVersionRequest {
            agent_id: agent.id.clone(),
            version_number: 1,
        })
        .await
        .expect("a holder reads a version")
        .into_inner();
    assert!(
        !format!("{version:?}").contains("555-0100"),
        "no instructions in the holder's version view"
    );

    assert_status(
        bob.registry()
            .update_draft(registry::UpdateDraftRequest {
                agent_id: agent.id.clone(),
                draft: Some(registry::AgentDraft {
                    name: "Mine now".into(),
                    ..Default::default()
                }),
                update_mask: None,
                expected_draft_revision: agent.draft_revision,
            })
            .await,
        Code::PermissionDenied,
        "owner",
    );
    assert_status(
        bob.registry()
            .deploy_agent(registry::DeployAgentRequest {
                agent_id: agent.id.clone(),
                expected_draft_revision: agent.draft_revision,
                notes: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "owner",
    );
    assert_status(
        bob.registry()
            .rollback_agent(registry::RollbackAgentRequest {
                agent_id: agent.id.clone(),
                version_number: 1,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "owner",
    );
    assert_status(
        bob.registry()
            .delete_agent(registry::DeleteAgentRequest {
                agent_id: agent.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "",
    );

    alice.unshare(&agent.id).await;
    assert_status(
        bob.registry().get_agent(get()).await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

/// A member lists a thousand agents shared with the org in one page of
/// 1,000, the most a page holds, each with its setup status.
#[tokio::test]
async fn a_page_of_a_thousand_agents_lists_every_one() {
    use futures::{StreamExt as _, TryStreamExt as _};
    const AGENTS: usize = 1000;
    let suite = Suite::start().await;
    let fixture = suite
        .org("Acme")
        .member("bob", sharing::OrgRole::Member)
        .build()
        .await;
    let (alice, bob) = (fixture.owner, fixture.members[0].client.clone());
    let shared: Vec<String> = futures::stream::iter(0..AGENTS)
        .map(|n| {
            let alice = alice.clone();
            async move { Ok::<_, ()>(alice.shared_agent(&format!("Agent {n}")).await.id) }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .expect("shared");
    let page = bob
        .access()
        .list_my_agents(sharing::ListMyAgentsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("a page of 1,000")
        .into_inner();
    assert_eq!(page.agents.len(), 1000, "a full page");
    // The org's default agent is visible too, so one more page holds the
    // rest.
    let rest = bob
        .access()
        .list_my_agents(sharing::ListMyAgentsRequest {
            page_size: 1000,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .expect("the next page")
        .into_inner();
    let mut listed: Vec<String> = page
        .agents
        .into_iter()
        .chain(rest.agents)
        .map(|a| a.agent_id)
        .collect();
    listed.retain(|id| shared.contains(id));
    assert_eq!(listed.len(), AGENTS);
    suite.stop().await;
}
