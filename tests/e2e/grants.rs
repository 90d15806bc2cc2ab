//! Share grants and ResolveInvocation (DESIGN.md, "Access model (sharing)",
//! Grants): INVOKE and DELEGATE tokens shown once, owner only, revoked on the
//! very next call everywhere; and the plan of every run, row by row of
//! DESIGN.md's table.

use std::time::Duration;

use agentshare_e2e::{Suite, UserClient};
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use sharing::connections_service_client::ConnectionsServiceClient;
use tonic::Code;
use tonic_types::StatusExt;

use crate::assert_status;

const MONTH: i64 = 30 * 86_400;

fn connections(user: &UserClient) -> ConnectionsServiceClient<agentshare_e2e::Authed> {
    ConnectionsServiceClient::new(user.channel())
}

async fn api_key(user: &UserClient, provider: &str, key: &str) -> String {
    connections(user)
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: provider.into(),
            api_key: key.into(),
            label: format!("{provider} key"),
            expire_time: None,
        })
        .await
        .expect("connection")
        .into_inner()
        .connection
        .expect("connection")
        .id
}

fn grant(agent_id: &str, kind: sharing::GrantKind) -> sharing::CreateGrantRequest {
    sharing::CreateGrantRequest {
        agent_id: agent_id.into(),
        kind: kind as i32,
        label: "widget".into(),
        expire_time: None,
        pinned_version: None,
        limits: None,
    }
}

async fn mint(
    owner: &UserClient,
    request: sharing::CreateGrantRequest,
) -> (sharing::Grant, String) {
    let created = owner
        .sharing()
        .create_grant(request)
        .await
        .expect("grant")
        .into_inner();
    (created.grant.expect("grant"), created.token)
}

async fn plan(
    client: &UserClient,
    agent_id: &str,
    draft: bool,
) -> Result<sharing::InvocationPlan, tonic::Status> {
    client
        .access()
        .resolve_invocation(sharing::ResolveInvocationRequest {
            agent_id: agent_id.into(),
            draft,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().plan.expect("plan"))
}

/// The org of the table test: Alice builds a research agent with a SHARED
/// search integration (her key) and a USER_CONFIGURED CRM one; Bob is a
/// member; Carol is in no org at all.
struct World {
    suite: Suite,
    alice: UserClient,
    bob: UserClient,
    carol: UserClient,
    agent: registry::Agent,
    alice_id: String,
    bob_id: String,
    carol_id: String,
    home: String,
}

async fn world() -> World {
    let suite = Suite::start().await;
    let client = |name: &'static str| {
        let suite = &suite;
        async move {
            suite
                .user(name)
                .await
                .with_token(&suite.token_with(name, false, MONTH))
        }
    };
    let alice = client("alice").await;
    let bob = client("bob").await;
    let carol = client("carol").await;
    let org = alice.new_org("Acme").await;
    let bob_id = bob.user_id().await;
    alice
        .with_token(&suite.token_with("alice", true, MONTH))
        .tenancy()
        .add_org_member(sharing::AddOrgMemberRequest {
            user: Some(sharing::add_org_member_request::User::UserId(
                bob_id.clone(),
            )),
            role: sharing::OrgRole::Member as i32,
        })
        .await
        .expect("bob joins");
    let search = api_key(&alice, "search", "srch-alice-0001").await;
    let agent = alice
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Research".into(),
                tools: vec![
                    registry::Tool {
                        integration_key: "web_search".into(),
                        provider: "search".into(),
                        scope: registry::IntegrationScope::Shared as i32,
                        connection_id: search.clone(),
                        ..Default::default()
                    },
                    registry::Tool {
                        integration_key: "crm".into(),
                        provider: "crm".into(),
                        scope: registry::IntegrationScope::UserConfigured as i32,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            is_managed: false,
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let agent = alice.deploy(&agent).await;
    alice.share(&agent.id).await;
    let alice_id = alice.user_id().await;
    let carol_id = carol.user_id().await;
    World {
        home: org.default_workspace_id,
        suite,
        alice,
        bob,
        carol,
        agent,
        alice_id,
        bob_id,
        carol_id,
    }
}

async fn bind(user: &UserClient, agent_id: &str, key: &str, connection_id: &str) {
    connections(user)
        .bind_integration(sharing::BindIntegrationRequest {
            agent_id: agent_id.into(),
            integration_key: key.into(),
            connection_id: connection_id.into(),
        })
        .await
        .expect("bind");
}

fn owners(plan: &sharing::InvocationPlan) -> Vec<(String, sharing::ConnectionOwnerKind)> {
    plan.integrations
        .iter()
        .map(|i| (i.integration_key.clone(), i.connection_owner()))
        .collect()
}

#[tokio::test]
async fn every_row_of_the_table_plans_version_connections_identity_billing_and_store() {
    use sharing::ConnectionOwnerKind::{Builder, Caller, Holder, Owner};
    let w = world().await;
    let id = &w.agent.id;

    // Owner runs own shared agent: own connections, own bill, the agent's
    // store in their workspace. Setup first: Alice binds her CRM.
    let alice_crm = api_key(&w.alice, "crm", "crm-alice-0001").await;
    bind(&w.alice, id, "crm", &alice_crm).await;
    let owner = plan(&w.alice, id, false).await.expect("owner plan");
    assert_eq!(owner.version, 1);
    assert_eq!(owner.version_source(), sharing::VersionSource::Latest);
    assert_eq!(
        owners(&owner),
        [("web_search".into(), Owner), ("crm".into(), Owner)]
    );
    assert_eq!(
        (
            owner.executes_as_user_id.as_str(),
            owner.billed_to_user_id.as_str()
        ),
        (w.alice_id.as_str(), w.alice_id.as_str())
    );
    assert_eq!(owner.store_workspace, format!("agent-{id}/{}", w.home));
    assert_eq!(owner.store_scope(), sharing::StoreScopeKind::AgentWorkspace);

    // Workspace member: the builder's search, their own CRM, their bill.
    let incomplete = assert_status(
        plan(&w.bob, id, false).await,
        Code::FailedPrecondition,
        "crm",
    );
    let details = incomplete
        .get_details_precondition_failure()
        .expect("precondition details");
    assert_eq!(details.violations[0].r#type, "SETUP_REQUIRED");
    assert_eq!(details.violations[0].subject, "integration/crm");
    let bob_crm = api_key(&w.bob, "crm", "crm-bob-00001").await;
    bind(&w.bob, id, "crm", &bob_crm).await;
    let member = plan(&w.bob, id, false).await.expect("member plan");
    assert_eq!(
        owners(&member),
        [("web_search".into(), Builder), ("crm".into(), Caller)]
    );
    assert_eq!(
        member.integrations[1].connection_id, bob_crm,
        "his own connection is named"
    );
    assert!(
        member.integrations[0].connection_id.is_empty(),
        "the builder's never is"
    );
    assert_eq!(
        (
            member.executes_as_user_id.as_str(),
            member.billed_to_user_id.as_str()
        ),
        (w.bob_id.as_str(), w.bob_id.as_str())
    );
    assert_eq!(member.store_workspace, format!("agent-{id}/{}", w.home));

    // INVOKE: Carol, outside the org, brings every connection herself.
    let (invoke, token) = mint(&w.alice, grant(id, sharing::GrantKind::Invoke)).await;
    let holder = w.carol.with_grant(&token);
    assert_status(
        plan(&holder, id, false).await,
        Code::FailedPrecondition,
        "web_search",
    );
    let setup = connections(&holder)
        .get_agent_setup(sharing::GetAgentSetupRequest {
            agent_id: id.clone(),
        })
        .await
        .expect("holder setup")
        .into_inner()
        .setup
        .expect("setup");
    assert!(
        setup.integrations.iter().all(|i| i.binding_required),
        "a holder binds everything"
    );
    let carol_search = api_key(&w.carol, "search", "srch-carol-0001").await;
    let carol_crm = api_key(&w.carol, "crm", "crm-carol-0001").await;
    bind(&holder, id, "web_search", &carol_search).await;
    bind(&holder, id, "crm", &carol_crm).await;
    let invoked = plan(&holder, id, false).await.expect("invoke plan");
    assert_eq!(
        owners(&invoked),
        [("web_search".into(), Holder), ("crm".into(), Holder)]
    );
    assert_eq!(
        (
            invoked.executes_as_user_id.as_str(),
            invoked.billed_to_user_id.as_str()
        ),
        (w.carol_id.as_str(), w.carol_id.as_str())
    );
    assert_eq!(
        invoked.store_workspace,
        format!("agent-{id}/grant-{}/{}", invoke.id, w.carol_id)
    );
    assert_eq!(
        invoked.store_scope(),
        sharing::StoreScopeKind::AgentGrantHolder
    );
    assert_eq!(invoked.grant_id, invoke.id);

    // DELEGATE: anyone, as if Alice called: her connections, her bill, the
    // home partition (never user-<alice>).
    let (_, delegate_token) = mint(&w.alice, grant(id, sharing::GrantKind::Delegate)).await;
    let visitor = w.suite.anonymous().await.with_grant(&delegate_token);
    let delegated = plan(&visitor, id, false).await.expect("delegate plan");
    assert_eq!(
        owners(&delegated),
        [("web_search".into(), Owner), ("crm".into(), Owner)]
    );
    assert!(
        delegated
            .integrations
            .iter()
            .all(|i| i.connection_id.is_empty()),
        "the owner's ids stay hidden"
    );
    assert_eq!(
        (
            delegated.executes_as_user_id.as_str(),
            delegated.billed_to_user_id.as_str()
        ),
        (w.alice_id.as_str(), w.alice_id.as_str())
    );
    assert_eq!(delegated.store_workspace, format!("agent-{id}/{}", w.home));
    assert_eq!(delegated.store_scope(), sharing::StoreScopeKind::AgentHome);
    assert!(delegated.caller_user_id.is_empty());

    // An automation runs as its user: the member row again, for Bob.
    let automation = plan(&w.bob, id, false)
        .await
        .expect("automation-style plan");
    assert_eq!(owners(&automation), owners(&member));
    assert_eq!(automation.billed_to_user_id, w.bob_id);

    // The owner's unshared agent uses their private store.
    w.alice.unshare(id).await;
    let private = plan(&w.alice, id, false).await.expect("private plan");
    assert_eq!(private.store_workspace, format!("user-{}", w.alice_id));
    assert_eq!(private.store_scope(), sharing::StoreScopeKind::UserPrivate);
    // Grants survive unshare.
    plan(&holder, id, false)
        .await
        .expect("a grant outlives unshare");
    w.suite.stop().await;
}

#[tokio::test]
async fn pins_hold_their_version_while_the_unpinned_move_and_only_the_owner_tests_the_draft() {
    let w = world().await;
    let id = &w.agent.id;
    let alice_crm = api_key(&w.alice, "crm", "crm-alice-0001").await;
    bind(&w.alice, id, "crm", &alice_crm).await;
    let bob_crm = api_key(&w.bob, "crm", "crm-bob-00001").await;
    bind(&w.bob, id, "crm", &bob_crm).await;
    let (_, pinned_token) = mint(
        &w.alice,
        sharing::CreateGrantRequest {
            pinned_version: Some(1),
            ..grant(id, sharing::GrantKind::Delegate)
        },
    )
    .await;
    let (_, loose_token) = mint(&w.alice, grant(id, sharing::GrantKind::Delegate)).await;
    w.bob
        .access()
        .pin_version(sharing::PinVersionRequest {
            agent_id: id.clone(),
            version: 1,
        })
        .await
        .expect("bob pins 1");
    let agent = w
        .alice
        .registry()
        .get_agent(registry::GetAgentRequest {
            agent_id: id.clone(),
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let mut edit = registry::UpdateDraftRequest {
        agent_id: id.clone(),
        draft: Some(registry::AgentDraft {
            description: "Now with citations".into(),
            ..Default::default()
        }),
        update_mask: Some(Default::default()),
        expected_draft_revision: agent.draft_revision,
    };
    if let Some(mask) = edit.update_mask.as_mut() {
        mask.paths = vec!["description".into()];
    }
    let edited = w
        .alice
        .registry()
        .update_draft(edit)
        .await
        .expect("edit")
        .into_inner()
        .agent
        .expect("agent");
    w.alice.deploy(&edited).await;

    let anonymous = w.suite.anonymous().await;
    let pinned = plan(&anonymous.with_grant(&pinned_token), id, false)
        .await
        .expect("pinned grant");
    assert_eq!(
        (pinned.version, pinned.version_source()),
        (1, sharing::VersionSource::GrantPin)
    );
    let loose = plan(&anonymous.with_grant(&loose_token), id, false)
        .await
        .expect("loose grant");
    assert_eq!(
        (loose.version, loose.version_source()),
        (2, sharing::VersionSource::Latest)
    );
    let bob = plan(&w.bob, id, false).await.expect("bob");
    assert_eq!(
        (bob.version, bob.version_source()),
        (1, sharing::VersionSource::UserPin)
    );
    let alice = plan(&w.alice, id, false).await.expect("alice");
    assert_eq!(alice.version, 2);

    let draft = plan(&w.alice, id, true).await.expect("test mode");
    assert_eq!(
        (draft.version, draft.version_source()),
        (0, sharing::VersionSource::Draft)
    );
    assert_status(
        plan(&w.bob, id, true).await,
        Code::PermissionDenied,
        "draft",
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn grants_are_the_owners_shown_once_and_end_with_a_reason() {
    let w = world().await;
    let id = &w.agent.id;
    // DELEGATE runs use Alice's own connections: she binds her CRM.
    let alice_crm = api_key(&w.alice, "crm", "crm-alice-0001").await;
    bind(&w.alice, id, "crm", &alice_crm).await;
    // Only the owner mints, and never for a draft.
    let draft = w.alice.new_agent("Draft").await;
    assert_status(
        w.alice
            .sharing()
            .create_grant(grant(&draft.id, sharing::GrantKind::Invoke))
            .await,
        Code::FailedPrecondition,
        "deploy",
    );
    assert_status(
        w.bob
            .sharing()
            .create_grant(grant(id, sharing::GrantKind::Invoke))
            .await,
        Code::PermissionDenied,
        "owner",
    );
    for (request, field) in [
        (
            sharing::CreateGrantRequest {
                kind: 0,
                ..grant(id, sharing::GrantKind::Invoke)
            },
            "kind",
        ),
        (
            sharing::CreateGrantRequest {
                expire_time: Some(timestamp(w.suite.clock.now_micros() - 1)),
                ..grant(id, sharing::GrantKind::Invoke)
            },
            "expire_time",
        ),
    ] {
        assert_status(
            w.alice.sharing().create_grant(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    assert_status(
        w.alice
            .sharing()
            .create_grant(sharing::CreateGrantRequest {
                pinned_version: Some(9),
                ..grant(id, sharing::GrantKind::Invoke)
            })
            .await,
        Code::NotFound,
        "version 9",
    );

    let (created, token) = mint(
        &w.alice,
        sharing::CreateGrantRequest {
            expire_time: Some(timestamp(w.suite.clock.now_micros() + 3_600_000_000)),
            ..grant(id, sharing::GrantKind::Delegate)
        },
    )
    .await;
    assert!(token.starts_with("asg_") && token.starts_with(&created.token_prefix));
    assert!(created.last_use_time.is_none());
    let visitor = w.suite.anonymous().await.with_grant(&token);
    plan(&visitor, id, false).await.expect("the token works");
    let listed = w
        .alice
        .sharing()
        .list_grants(sharing::ListGrantsRequest {
            agent_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.grants.len(), 1);
    assert!(
        listed.grants[0].last_use_time.is_some(),
        "last use is recorded"
    );
    assert!(
        !format!("{listed:?}").contains(&token),
        "never the token again"
    );
    assert!(
        !String::from_utf8_lossy(&w.suite.stored_bytes().await).contains(&token),
        "only the token's digest is stored"
    );

    // A grant's principal calls nothing but the run's own RPCs.
    let invoke_token = mint(&w.alice, grant(id, sharing::GrantKind::Invoke))
        .await
        .1;
    let holder = w.carol.with_grant(&invoke_token);
    assert_status(
        holder.tenancy().get_me(sharing::GetMeRequest {}).await,
        Code::PermissionDenied,
        "share token",
    );
    assert_status(
        holder
            .registry()
            .get_agent(registry::GetAgentRequest {
                agent_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "share token",
    );
    assert_status(
        holder
            .access()
            .check(sharing::CheckRequest {
                principal: None,
                agent_id: id.clone(),
                action: sharing::Action::Run as i32,
            })
            .await,
        Code::PermissionDenied,
        "share token",
    );
    assert_status(
        holder
            .sharing()
            .list_grants(sharing::ListGrantsRequest {
                agent_id: id.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "share token",
    );
    // INVOKE needs a user; a grant works for its own agent only.
    assert_status(
        plan(
            &w.suite.anonymous().await.with_grant(&invoke_token),
            id,
            false,
        )
        .await,
        Code::Unauthenticated,
        "signed-in user",
    );
    let other = w.alice.shared_agent("Other").await;
    assert_status(
        plan(&visitor, &other.id, false).await,
        Code::PermissionDenied,
        "",
    );

    // Explain names the grant path.
    let explained = w
        .alice
        .access()
        .explain(sharing::ExplainRequest {
            principal: Some(sharing::PrincipalRef {
                grant_id: created.id.clone(),
                ..Default::default()
            }),
            agent_id: id.clone(),
            action: sharing::Action::Run as i32,
        })
        .await
        .expect("explain")
        .into_inner();
    assert!(explained.allowed);
    assert_eq!(explained.paths[0].kind(), sharing::AccessPathKind::Grant);
    assert_eq!(explained.paths[0].grant_id, created.id);

    // Reach: shares, grants and pins in one answer; the dry-run names the
    // grants that survive an unshare.
    w.bob
        .access()
        .pin_version(sharing::PinVersionRequest {
            agent_id: id.clone(),
            version: 1,
        })
        .await
        .expect("pin");
    let reach = w
        .alice
        .sharing()
        .get_agent_reach(sharing::GetAgentReachRequest {
            agent_id: id.clone(),
        })
        .await
        .expect("reach")
        .into_inner();
    assert!(reach.sharing.expect("sharing").shared);
    assert_eq!(reach.grants_total, 2);
    assert_eq!(reach.pins.len(), 1);
    let preview = w
        .alice
        .sharing()
        .preview_unshare_agent(sharing::PreviewUnshareAgentRequest {
            agent_id: id.clone(),
        })
        .await
        .expect("preview")
        .into_inner();
    assert_eq!(preview.surviving_grants_total, 2);

    // Expired, revoked and ended: UNAUTHENTICATED, naming which.
    w.suite.clock.advance(Duration::from_secs(3601));
    assert_status(
        plan(&visitor, id, false).await,
        Code::Unauthenticated,
        "token expired",
    );
    w.alice
        .sharing()
        .revoke_grant(sharing::RevokeGrantRequest {
            grant_id: created.id.clone(),
        })
        .await
        .expect("revoke");
    assert_status(
        plan(&visitor, id, false).await,
        Code::Unauthenticated,
        "token revoked",
    );
    w.alice
        .registry()
        .delete_agent(registry::DeleteAgentRequest {
            agent_id: id.clone(),
        })
        .await
        .expect("delete");
    assert_status(
        plan(&holder, id, false).await,
        Code::Unauthenticated,
        "grant ended",
    );
    w.suite.stop().await;
}

#[tokio::test]
async fn a_revoked_token_fails_its_very_next_call_on_every_replica() {
    let suite = Suite::builder()
        .replicas(ServiceName::Sharing, 2)
        .replicas(ServiceName::Gateway, 2)
        .start()
        .await;
    let gateways = suite.addrs(ServiceName::Gateway);
    let alice = UserClient::new(
        agentshare_e2e::connect(gateways[0]).await,
        Some(suite.token("alice")),
    );
    alice.new_org("Acme").await;
    let agent = alice.shared_agent("Widget").await;
    for round in 0..4 {
        let (created, token) = mint(&alice, grant(&agent.id, sharing::GrantKind::Delegate)).await;
        let visitor = UserClient::new(agentshare_e2e::connect(gateways[round % 2]).await, None)
            .with_grant(&token);
        for _ in 0..3 {
            plan(&visitor, &agent.id, false)
                .await
                .expect("works before the revoke");
        }
        alice
            .sharing()
            .revoke_grant(sharing::RevokeGrantRequest {
                grant_id: created.id.clone(),
            })
            .await
            .expect("revoke");
        for _ in 0..4 {
            assert_status(
                plan(&visitor, &agent.id, false).await,
                Code::Unauthenticated,
                "token revoked",
            );
        }
    }
    suite.stop().await;
}
