//! Connections and personal setup (DESIGN.md, "Access model (sharing)"): API
//! keys and OAuth, sealed at rest, tested, refreshed, expiring on the suite
//! clock; and each user's setup of the agents they run.

use std::time::Duration;

use agentshare_e2e::oauth_provider::FakeOAuth;
use agentshare_e2e::{Suite, UserClient};
use agentshare_kit::clock::timestamp;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use sharing::connections_service_client::ConnectionsServiceClient;
use tonic::Code;

use crate::assert_status;

fn connections(user: &UserClient) -> ConnectionsServiceClient<agentshare_e2e::Authed> {
    ConnectionsServiceClient::new(user.channel())
}

async fn api_key(user: &UserClient, provider: &str, key: &str, label: &str) -> sharing::Connection {
    connections(user)
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: provider.into(),
            api_key: key.into(),
            label: label.into(),
            expire_time: None,
        })
        .await
        .expect("api key connection")
        .into_inner()
        .connection
        .expect("connection")
}

/// Connects `gmail` through the fake provider: start, consent, complete.
async fn gmail(user: &UserClient, fake: &FakeOAuth, label: &str) -> sharing::Connection {
    let started = connections(user)
        .start_o_auth_connection(sharing::StartOAuthConnectionRequest {
            provider: "gmail".into(),
            label: label.into(),
        })
        .await
        .expect("start")
        .into_inner();
    let (code, state) = fake.consent(&started.authorize_url).await;
    assert_eq!(state, started.state);
    connections(user)
        .complete_o_auth_connection(sharing::CompleteOAuthConnectionRequest {
            state,
            code,
            error: String::new(),
        })
        .await
        .expect("complete")
        .into_inner()
        .connection
        .expect("connection")
}

fn tool(
    key: &str,
    provider: &str,
    scope: registry::IntegrationScope,
    connection: &str,
) -> registry::Tool {
    registry::Tool {
        integration_key: key.into(),
        provider: provider.into(),
        scope: scope as i32,
        connection_id: connection.into(),
        ..Default::default()
    }
}

/// Creates, deploys and shares an agent with these tools.
async fn shared_with_tools(
    owner: &UserClient,
    name: &str,
    tools: Vec<registry::Tool>,
) -> registry::Agent {
    let agent = owner
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: name.into(),
                instructions: format!("You are the {name}."),
                tools,
                ..Default::default()
            }),
            is_managed: false,
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let agent = owner.deploy(&agent).await;
    owner.share(&agent.id).await;
    agent
}

async fn setup(user: &UserClient, agent_id: &str) -> sharing::AgentSetup {
    connections(user)
        .get_agent_setup(sharing::GetAgentSetupRequest {
            agent_id: agent_id.into(),
        })
        .await
        .expect("setup")
        .into_inner()
        .setup
        .expect("setup")
}

async fn bind(
    user: &UserClient,
    agent_id: &str,
    key: &str,
    connection_id: &str,
) -> Result<sharing::AgentSetup, tonic::Status> {
    connections(user)
        .bind_integration(sharing::BindIntegrationRequest {
            agent_id: agent_id.into(),
            integration_key: key.into(),
            connection_id: connection_id.into(),
        })
        .await
        .map(|r| r.into_inner().setup.expect("setup"))
}

async fn status_in_my_agents(user: &UserClient, agent_id: &str) -> sharing::SetupStatus {
    user.access()
        .list_my_agents(sharing::ListMyAgentsRequest::default())
        .await
        .expect("my agents")
        .into_inner()
        .agents
        .into_iter()
        .find(|a| a.agent_id == agent_id)
        .expect("listed")
        .setup_status()
}

/// Alice's org with Bob in it; their tokens outlive the weeks these tests
/// move the clock by.
async fn org_with_bob(suite: &Suite) -> (UserClient, UserClient) {
    const MONTH: i64 = 30 * 86_400;
    let acme = suite
        .org("Acme")
        .member("bob", sharing::OrgRole::Member)
        .tokens_for(MONTH)
        .build()
        .await;
    let bob = acme.members[0].client.clone();
    (acme.owner, bob)
}

#[tokio::test]
async fn api_key_connections_are_listed_without_secrets_tested_and_expire_on_the_clock() {
    let suite = Suite::start().await;
    let (alice, bob) = org_with_bob(&suite).await;
    let created = connections(&alice)
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: "search".into(),
            api_key: "srch-7f3a9c2e11".into(),
            label: "Team search".into(),
            expire_time: Some(timestamp(suite.clock.now_micros() + 3_600_000_000)),
        })
        .await
        .expect("create")
        .into_inner()
        .connection
        .expect("connection");
    assert_eq!(created.status(), sharing::ConnectionStatus::Live);
    assert_eq!(created.kind(), sharing::ConnectionKind::ApiKey);
    let listed = connections(&alice)
        .list_connections(sharing::ListConnectionsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.connections.len(), 1);
    assert_eq!(listed.connections[0].label, "Team search");
    assert_eq!(listed.connections[0].provider, "search");
    assert!(
        !format!("{listed:?}").contains("srch-7f3a9c2e11"),
        "never the secret"
    );

    // Another user's connection reads exactly like one that never was.
    let get = |id: &str| sharing::GetConnectionRequest {
        connection_id: id.into(),
    };
    let theirs = assert_status(
        connections(&bob).get_connection(get(&created.id)).await,
        Code::NotFound,
        "not found",
    );
    let never = "01900000-0000-7000-8000-000000000000";
    let missing = assert_status(
        connections(&bob).get_connection(get(never)).await,
        Code::NotFound,
        "not found",
    );
    assert_eq!(
        theirs.message().replace(&created.id, "ID"),
        missing.message().replace(never, "ID")
    );

    // Bad input names the field.
    for (provider, key, field) in [
        ("nope", "srch-123456789", "provider"),
        ("gmail", "srch-123456789", "provider"),
        ("search", "", "api_key"),
        ("search", "srch-12345 6789", "api_key"),
    ] {
        let status = connections(&alice)
            .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
                provider: provider.into(),
                api_key: key.into(),
                label: "x".into(),
                expire_time: None,
            })
            .await
            .expect_err("bad input");
        assert_eq!(status.code(), Code::InvalidArgument, "{provider} {key:?}");
        assert!(status.message().contains(field), "{}", status.message());
    }

    // TestConnection: the static check reads the key's shape.
    let tested = connections(&alice)
        .test_connection(sharing::TestConnectionRequest {
            connection_id: created.id.clone(),
        })
        .await
        .expect("test")
        .into_inner();
    assert!(tested.ok, "{}", tested.message);
    let connection = tested.connection.expect("connection");
    assert!(connection.last_test_time.is_some());
    let wrong = api_key(&alice, "search", "brv-not-a-search-key", "Wrong").await;
    let failed = connections(&alice)
        .test_connection(sharing::TestConnectionRequest {
            connection_id: wrong.id.clone(),
        })
        .await
        .expect("test")
        .into_inner();
    assert!(!failed.ok);
    assert!(failed.message.contains("reconnect"), "{}", failed.message);
    assert_eq!(
        failed.connection.expect("c").status(),
        sharing::ConnectionStatus::Failed
    );
    let fixed = connections(&alice)
        .reconnect_connection(sharing::ReconnectConnectionRequest {
            connection_id: wrong.id.clone(),
            api_key: "srch-the-right-one".into(),
        })
        .await
        .expect("reconnect")
        .into_inner()
        .connection
        .expect("connection");
    assert_eq!(
        (fixed.id.as_str(), fixed.status()),
        (wrong.id.as_str(), sharing::ConnectionStatus::Live)
    );

    // Expiry follows the clock.
    suite.clock.advance(Duration::from_secs(3601));
    let expired = connections(&alice)
        .get_connection(get(&created.id))
        .await
        .expect("get")
        .into_inner()
        .connection
        .expect("connection");
    assert_eq!(expired.status(), sharing::ConnectionStatus::Expired);
    assert!(expired.status_message.contains("reconnect"));

    let deleted = connections(&alice)
        .delete_connection(sharing::DeleteConnectionRequest {
            connection_id: created.id.clone(),
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.removed_binding_count, 0);
    assert_status(
        connections(&alice).get_connection(get(&created.id)).await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

#[tokio::test]
async fn oauth_connects_with_pkce_refreshes_before_use_and_fails_when_the_refresh_is_refused() {
    let fake = FakeOAuth::start().await;
    let suite = Suite::builder().oauth(&fake).start().await;
    let (alice, bob) = org_with_bob(&suite).await;

    let connection = gmail(&alice, &fake, "Work mail").await;
    assert_eq!(connection.kind(), sharing::ConnectionKind::Oauth);
    assert_eq!(connection.status(), sharing::ConnectionStatus::Live);
    assert_eq!(connection.scopes, ["mail.compose", "mail.send"]);
    let asked = &fake.authorize_requests()[0];
    assert_eq!(asked.code_challenge_method, "S256");
    assert!(!asked.code_challenge.is_empty());

    // A wrong state, someone else's state, and a used state all start over.
    let complete = |state: &str, code: &str| sharing::CompleteOAuthConnectionRequest {
        state: state.into(),
        code: code.into(),
        error: String::new(),
    };
    assert_status(
        connections(&alice)
            .complete_o_auth_connection(complete("made-up", "code"))
            .await,
        Code::InvalidArgument,
        "start again",
    );
    let started = connections(&alice)
        .start_o_auth_connection(sharing::StartOAuthConnectionRequest {
            provider: "gmail".into(),
            label: "Second".into(),
        })
        .await
        .expect("start")
        .into_inner();
    let (code, state) = fake.consent(&started.authorize_url).await;
    assert_status(
        connections(&bob)
            .complete_o_auth_connection(complete(&state, &code))
            .await,
        Code::InvalidArgument,
        "unknown OAuth state",
    );
    // The refused code ends the flow with the provider's reason.
    fake.refuse_next_code();
    let started = connections(&alice)
        .start_o_auth_connection(sharing::StartOAuthConnectionRequest {
            provider: "gmail".into(),
            label: "Third".into(),
        })
        .await
        .expect("start")
        .into_inner();
    let (code, state) = fake.consent(&started.authorize_url).await;
    assert_status(
        connections(&alice)
            .complete_o_auth_connection(complete(&state, &code))
            .await,
        Code::FailedPrecondition,
        "invalid_grant",
    );
    assert_status(
        connections(&alice)
            .complete_o_auth_connection(complete(&state, &code))
            .await,
        Code::InvalidArgument,
        "already used",
    );

    // The access token ends after an hour: the next use refreshes it.
    suite.clock.advance(Duration::from_secs(3601));
    let test = || sharing::TestConnectionRequest {
        connection_id: connection.id.clone(),
    };
    let tested = connections(&alice)
        .test_connection(test())
        .await
        .expect("test")
        .into_inner();
    assert!(tested.ok, "{}", tested.message);
    assert_eq!(fake.refresh_calls(), 1);
    let tested = connections(&alice)
        .test_connection(test())
        .await
        .expect("test")
        .into_inner();
    assert!(tested.ok);
    assert_eq!(
        fake.refresh_calls(),
        1,
        "a fresh token is not refreshed again"
    );

    // The provider revokes the refresh token: FAILED, "reconnect".
    fake.revoke_refresh_tokens();
    suite.clock.advance(Duration::from_secs(3601));
    let tested = connections(&alice)
        .test_connection(test())
        .await
        .expect("test")
        .into_inner();
    assert!(!tested.ok);
    assert!(tested.message.contains("reconnect"), "{}", tested.message);
    let failed = tested.connection.expect("connection");
    assert_eq!(failed.status(), sharing::ConnectionStatus::Failed);

    // Reconnecting keeps the id and makes it LIVE again.
    let again = connections(&alice)
        .reconnect_connection(sharing::ReconnectConnectionRequest {
            connection_id: connection.id.clone(),
            api_key: String::new(),
        })
        .await
        .expect("reconnect")
        .into_inner();
    let (code, state) = fake.consent(&again.authorize_url).await;
    let back = connections(&alice)
        .complete_o_auth_connection(complete(&state, &code))
        .await
        .expect("complete")
        .into_inner()
        .connection
        .expect("connection");
    assert_eq!(
        (back.id.as_str(), back.status()),
        (connection.id.as_str(), sharing::ConnectionStatus::Live)
    );
    suite.stop().await;
}

#[tokio::test]
async fn research_agent_shared_search_and_each_users_own_crm() {
    let suite = Suite::start().await;
    let (alice, bob) = org_with_bob(&suite).await;
    let search = api_key(&alice, "search", "srch-team-0001", "Team search").await;
    let agent = shared_with_tools(
        &alice,
        "Research agent",
        vec![
            tool(
                "web_search",
                "search",
                registry::IntegrationScope::Shared,
                &search.id,
            ),
            tool("crm", "crm", registry::IntegrationScope::UserConfigured, ""),
        ],
    )
    .await;

    assert_eq!(
        status_in_my_agents(&bob, &agent.id).await,
        sharing::SetupStatus::SetupRequired
    );
    let before = setup(&bob, &agent.id).await;
    assert_eq!(before.status(), sharing::SetupStatus::SetupRequired);
    assert_eq!(before.version, 1);
    let rows: Vec<(&str, bool)> = before
        .integrations
        .iter()
        .map(|i| (i.integration_key.as_str(), i.binding_required))
        .collect();
    assert_eq!(rows, [("web_search", false), ("crm", true)]);
    assert_eq!(before.missing.len(), 1);
    assert_eq!(
        before.missing[0].reason(),
        sharing::SetupGapReason::NotBound
    );
    assert!(
        !format!("{before:?}").contains(&search.id),
        "never the builder's connection id"
    );

    let crm = api_key(&bob, "crm", "crm-bob-secret-1", "My CRM").await;
    let wrong = api_key(&bob, "slack", "xoxp-bob-000001", "My Slack").await;
    assert_status(
        bind(&bob, &agent.id, "crm", &wrong.id).await,
        Code::InvalidArgument,
        "connection_id",
    );
    assert_status(
        bind(&bob, &agent.id, "web_search", &crm.id).await,
        Code::InvalidArgument,
        "",
    );
    assert_status(
        bind(&bob, &agent.id, "nope", &crm.id).await,
        Code::NotFound,
        "integration",
    );
    // Alice's connection is not Bob's to bind.
    assert_status(
        bind(&bob, &agent.id, "crm", &search.id).await,
        Code::NotFound,
        "connection",
    );
    let after = bind(&bob, &agent.id, "crm", &crm.id).await.expect("bind");
    assert_eq!(after.status(), sharing::SetupStatus::Ready);
    let done = connections(&bob)
        .complete_agent_setup(sharing::CompleteAgentSetupRequest {
            agent_id: agent.id.clone(),
        })
        .await
        .expect("use the agent")
        .into_inner()
        .setup
        .expect("setup");
    assert_eq!(done.status(), sharing::SetupStatus::Ready);
    assert!(done.complete_time.is_some());
    assert_eq!(
        status_in_my_agents(&bob, &agent.id).await,
        sharing::SetupStatus::Ready
    );

    // Bob's binding is his alone: the owner sees nothing of it.
    let owners = setup(&alice, &agent.id).await;
    assert!(!format!("{owners:?}").contains(&crm.id));

    // Deleting the bound connection turns the agent orange again.
    let deleted = connections(&bob)
        .delete_connection(sharing::DeleteConnectionRequest {
            connection_id: crm.id.clone(),
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.removed_binding_count, 1);
    assert_eq!(
        status_in_my_agents(&bob, &agent.id).await,
        sharing::SetupStatus::SetupRequired
    );

    // Connections belong to the user: unshare leaves Bob's intact.
    alice.unshare(&agent.id).await;
    connections(&bob)
        .get_connection(sharing::GetConnectionRequest {
            connection_id: wrong.id.clone(),
        })
        .await
        .expect("kept after unshare");
    assert_status(
        connections(&bob)
            .get_agent_setup(sharing::GetAgentSetupRequest {
                agent_id: agent.id.clone(),
            })
            .await,
        Code::NotFound,
        "not found",
    );
    suite.stop().await;
}

#[tokio::test]
async fn email_drafting_agent_each_user_brings_mail_and_storage() {
    let fake = FakeOAuth::start().await;
    let suite = Suite::builder().oauth(&fake).start().await;
    let (alice, bob) = org_with_bob(&suite).await;
    let agent = shared_with_tools(
        &alice,
        "Email drafting agent",
        vec![
            tool(
                "email",
                "gmail",
                registry::IntegrationScope::UserConfigured,
                "",
            ),
            tool(
                "documents",
                "drive",
                registry::IntegrationScope::UserConfigured,
                "",
            ),
        ],
    )
    .await;
    let mail = gmail(&bob, &fake, "Bob's mail").await;
    let drive = api_key(&bob, "drive", "drv-bob-000001", "Bob's drive").await;
    bind(&bob, &agent.id, "email", &mail.id)
        .await
        .expect("bind mail");
    let ready = bind(&bob, &agent.id, "documents", &drive.id)
        .await
        .expect("bind drive");
    assert_eq!(ready.status(), sharing::SetupStatus::Ready);

    // The provider revokes Bob's grant; the next use finds out.
    fake.revoke_refresh_tokens();
    suite.clock.advance(Duration::from_secs(3601));
    let tested = connections(&bob)
        .test_connection(sharing::TestConnectionRequest {
            connection_id: mail.id.clone(),
        })
        .await
        .expect("test")
        .into_inner();
    assert!(!tested.ok);
    let broken = setup(&bob, &agent.id).await;
    assert_eq!(broken.status(), sharing::SetupStatus::SetupRequired);
    assert_eq!(
        broken.missing[0].reason(),
        sharing::SetupGapReason::ConnectionFailed
    );
    assert_eq!(
        status_in_my_agents(&bob, &agent.id).await,
        sharing::SetupStatus::SetupRequired
    );

    let again = connections(&bob)
        .reconnect_connection(sharing::ReconnectConnectionRequest {
            connection_id: mail.id.clone(),
            api_key: String::new(),
        })
        .await
        .expect("reconnect")
        .into_inner();
    let (code, state) = fake.consent(&again.authorize_url).await;
    connections(&bob)
        .complete_o_auth_connection(sharing::CompleteOAuthConnectionRequest {
            state,
            code,
            error: String::new(),
        })
        .await
        .expect("complete");
    assert_eq!(
        status_in_my_agents(&bob, &agent.id).await,
        sharing::SetupStatus::Ready
    );
    suite.stop().await;
}

#[tokio::test]
async fn daily_reporting_agent_keeps_bindings_across_versions_and_asks_for_new_ones() {
    let suite = Suite::start().await;
    let (alice, bob) = org_with_bob(&suite).await;
    let warehouse = api_key(&alice, "warehouse", "wh-team-000001", "Warehouse").await;
    let daily = registry::Automation {
        key: "morning-report".into(),
        schedule: Some(registry::Schedule {
            kind: Some(registry::schedule::Kind::Daily(registry::DailySchedule {
                time_of_day: Some(registry::TimeOfDay {
                    hours: 8,
                    minutes: 0,
                }),
            })),
        }),
        time_zone: "Europe/Berlin".into(),
        display_name: "Morning report".into(),
        task: "Summarise yesterday's numbers".into(),
        ..Default::default()
    };
    let tools = vec![
        tool(
            "database",
            "warehouse",
            registry::IntegrationScope::Shared,
            &warehouse.id,
        ),
        tool(
            "slack",
            "slack",
            registry::IntegrationScope::UserConfigured,
            "",
        ),
    ];
    let created = alice
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Daily reporting agent".into(),
                tools: tools.clone(),
                automations: vec![daily.clone()],
                ..Default::default()
            }),
            is_managed: false,
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let agent = alice.deploy(&created).await;
    alice.share(&agent.id).await;
    let slack = connections(&bob)
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: "slack".into(),
            api_key: "xoxp-bob-000001".into(),
            label: "Bob's Slack".into(),
            expire_time: Some(timestamp(suite.clock.now_micros() + 7 * 86_400_000_000)),
        })
        .await
        .expect("slack")
        .into_inner()
        .connection
        .expect("connection");
    let ready = bind(&bob, &agent.id, "slack", &slack.id)
        .await
        .expect("bind");
    assert_eq!(ready.status(), sharing::SetupStatus::Ready);

    // Version 2 adds a calendar Bob must bring; Slack stays bound.
    let mut more = tools.clone();
    more.push(tool(
        "calendar",
        "drive",
        registry::IntegrationScope::UserConfigured,
        "",
    ));
    let mut request = registry::UpdateDraftRequest {
        agent_id: agent.id.clone(),
        draft: Some(registry::AgentDraft {
            name: "Daily reporting agent".into(),
            tools: more,
            automations: vec![daily],
            ..Default::default()
        }),
        update_mask: Some(Default::default()),
        expected_draft_revision: agent.draft_revision,
    };
    if let Some(mask) = request.update_mask.as_mut() {
        mask.paths = vec!["tools".into()];
    }
    let edited = alice
        .registry()
        .update_draft(request)
        .await
        .expect("edit")
        .into_inner()
        .agent
        .expect("agent");
    alice.deploy(&edited).await;
    let v2 = setup(&bob, &agent.id).await;
    assert_eq!(v2.version, 2);
    assert_eq!(v2.status(), sharing::SetupStatus::SetupRequired);
    let slack_row = v2
        .integrations
        .iter()
        .find(|i| i.integration_key == "slack")
        .expect("slack");
    assert_eq!(
        slack_row.bound_connection_id, slack.id,
        "bindings outlive versions"
    );
    assert_eq!(v2.missing.len(), 1);
    assert_eq!(v2.missing[0].integration_key, "calendar");
    let calendar = api_key(&bob, "drive", "drv-bob-calendar", "Calendar").await;
    bind(&bob, &agent.id, "calendar", &calendar.id)
        .await
        .expect("bind calendar");
    assert_eq!(
        status_in_my_agents(&bob, &agent.id).await,
        sharing::SetupStatus::Ready
    );

    // A week later Slack's key has expired: orange again, until fixed.
    suite.clock.advance(Duration::from_secs(7 * 86_400 + 1));
    let stale = setup(&bob, &agent.id).await;
    assert_eq!(
        stale.missing[0].reason(),
        sharing::SetupGapReason::ConnectionExpired
    );
    assert_eq!(
        status_in_my_agents(&bob, &agent.id).await,
        sharing::SetupStatus::SetupRequired
    );
    let fresh = api_key(&bob, "slack", "xoxp-bob-000002", "Bob's new Slack").await;
    bind(&bob, &agent.id, "slack", &fresh.id)
        .await
        .expect("rebind");
    assert_eq!(
        status_in_my_agents(&bob, &agent.id).await,
        sharing::SetupStatus::Ready
    );
    suite.stop().await;
}

#[tokio::test]
async fn no_secret_is_stored_in_the_clear() {
    let fake = FakeOAuth::start().await;
    let suite = Suite::builder().oauth(&fake).start().await;
    let (alice, _bob) = org_with_bob(&suite).await;
    let planted = "srch-PLANTED-7c1d3e9a55b0";
    api_key(&alice, "search", planted, "Planted").await;
    gmail(&alice, &fake, "Mail").await;
    // Checkpoint SQLite's write-ahead log? No: the -wal file is read as it
    // is, which is where a fresh write sits.
    let stored = suite.stored_bytes().await;
    assert!(
        contains(&stored, b"Planted"),
        "the scan reads what was stored: the label is there"
    );
    let mut secrets = vec![planted.to_string()];
    secrets.extend(fake.issued_access_tokens());
    secrets.extend(fake.issued_refresh_tokens());
    for secret in &secrets {
        assert!(
            !contains(&stored, secret.as_bytes()),
            "a secret is stored in the clear"
        );
    }
    suite.stop().await;
}

#[tokio::test]
async fn no_secret_reaches_a_log_line() {
    let fake = FakeOAuth::start().await;
    let suite = Suite::builder()
        .processes()
        .log_files()
        .oauth(&fake)
        .start()
        .await;
    let (alice, bob) = org_with_bob(&suite).await;
    let planted = "srch-LOGGED-3b9f0c2d77aa";
    let search = api_key(&alice, "search", planted, "Planted").await;
    let mail = gmail(&bob, &fake, "Mail").await;
    let agent = shared_with_tools(
        &alice,
        "Logged agent",
        vec![
            tool(
                "web_search",
                "search",
                registry::IntegrationScope::Shared,
                &search.id,
            ),
            tool(
                "email",
                "gmail",
                registry::IntegrationScope::UserConfigured,
                "",
            ),
        ],
    )
    .await;
    bind(&bob, &agent.id, "email", &mail.id)
        .await
        .expect("bind");
    for (user, id) in [(&alice, &search.id), (&bob, &mail.id)] {
        connections(user)
            .test_connection(sharing::TestConnectionRequest {
                connection_id: id.clone(),
            })
            .await
            .expect("test");
    }
    // A refused refresh is logged as a failure, still without the token.
    fake.revoke_refresh_tokens();
    let _ = connections(&alice)
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: "search".into(),
            api_key: "srch-REJECTED bad".into(),
            label: "Bad".into(),
            expire_time: None,
        })
        .await;
    let logs = suite.logs();
    assert!(
        logs.contains("ConnectionsService"),
        "the services logged the connection calls at trace level"
    );
    let mut secrets = vec![planted.to_string(), "srch-REJECTED".to_string()];
    secrets.extend(fake.issued_access_tokens());
    secrets.extend(fake.issued_refresh_tokens());
    secrets.push(fake.client_secret());
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
    suite.stop().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
