//! Secrets: after connections are made, replaced, tested and used by runs,
//! grants and API keys are minted, used and revoked, and wrong ones are
//! tried, no connection secret, token, session key or sealing key shows in
//! any answer, any log line of any service, or the databases' bytes.

use agentshare_e2e::runtime::RecordingRuntime;
use agentshare_e2e::{Suite, tool};
use agentshare_kit::identity::{CONNECTIONS_KEY_FILE, SESSION_SECRET_FILE};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use serde_json::json;
use sharing::connections_service_client::ConnectionsServiceClient;

use super::{Caller, HttpCall, send_http, stepped_up};

/// The kinds of secret scanned for, each in every answer, every log line
/// and every stored byte: connection keys (first and replaced), API keys,
/// share tokens, run tokens, session tokens and keys, and the sealing key.
pub const SCENARIOS: usize = 8;

#[tokio::test]
async fn no_secret_shows_in_any_answer_log_or_stored_byte() {
    let runtime = RecordingRuntime::start().await;
    let suite = Suite::builder()
        .processes()
        .log_files()
        .runtime(&runtime)
        .start()
        .await;
    let mut answers: Vec<String> = Vec::new();
    let mut seen = |what: String| answers.push(what);
    let fixture = suite
        .org("Acme Secrets")
        .member("bob", sharing::OrgRole::Member)
        .build()
        .await;
    let alice = fixture.owner.with_token(&stepped_up(&suite, "alice"));
    let bob = fixture.members[0].client.clone();
    let connections = |c: &agentshare_e2e::UserClient| ConnectionsServiceClient::new(c.channel());

    // Connections: made, listed, read, tested, replaced.
    let first_key = "srch-FIRST-4f1c9a7e2b8d";
    let second_key = "srch-SECOND-9e2d7c4a1b6f";
    let created = connections(&alice)
        .create_api_key_connection(sharing::CreateApiKeyConnectionRequest {
            provider: "search".into(),
            api_key: first_key.into(),
            label: "search key".into(),
            expire_time: None,
        })
        .await
        .expect("connection")
        .into_inner();
    seen(format!("{created:?}"));
    let connection = created.connection.expect("connection").id;
    seen(format!(
        "{:?}",
        connections(&alice)
            .list_connections(sharing::ListConnectionsRequest::default())
            .await
            .expect("list")
    ));
    seen(format!(
        "{:?}",
        connections(&alice)
            .test_connection(sharing::TestConnectionRequest {
                connection_id: connection.clone()
            })
            .await
    ));
    seen(format!(
        "{:?}",
        connections(&alice)
            .reconnect_connection(sharing::ReconnectConnectionRequest {
                connection_id: connection.clone(),
                api_key: second_key.into(),
            })
            .await
            .expect("reconnect")
    ));
    seen(format!(
        "{:?}",
        connections(&alice)
            .get_connection(sharing::GetConnectionRequest {
                connection_id: connection.clone()
            })
            .await
            .expect("get")
    ));

    // An agent whose SHARED integration uses it, run by a member and by
    // a DELEGATE holder: the runtime gets the secret, nobody else.
    let agent = alice
        .shared_agent_with(
            "Searcher",
            "Search the web.",
            vec![tool(
                "web_search",
                "search",
                registry::IntegrationScope::Shared,
                &connection,
            )],
        )
        .await;
    let run = bob.run(&agent.id, "find it").await.expect("bob runs");
    seen(format!("{run:?}"));
    let received = runtime.run_with_input("find it");
    assert!(
        format!("{:?}", received.request.connections).contains(second_key),
        "the runtime, and only it, receives the secret"
    );
    let run_token = received.request.run_token.clone();
    assert!(run_token.starts_with("asr_"));
    seen(format!(
        "{:?}",
        bob.access()
            .resolve_invocation(sharing::ResolveInvocationRequest {
                agent_id: agent.id.clone(),
                ..Default::default()
            })
            .await
    ));
    seen(format!(
        "{:?}",
        bob.sessions()
            .get_session(store::GetSessionRequest {
                session_id: run.session_id.clone(),
                ..Default::default()
            })
            .await
    ));

    // Share tokens: minted, used, listed, revoked, tried again.
    let (grant_id, grant_token) = alice.grant(&agent.id, sharing::GrantKind::Delegate).await;
    let visitor = suite.anonymous().await.with_grant(&grant_token);
    seen(format!(
        "{:?}",
        visitor.run(&agent.id, "as a visitor").await
    ));
    seen(format!(
        "{:?}",
        alice
            .sharing()
            .list_grants(sharing::ListGrantsRequest {
                agent_id: agent.id.clone(),
                ..Default::default()
            })
            .await
    ));
    alice
        .sharing()
        .revoke_grant(sharing::RevokeGrantRequest { grant_id })
        .await
        .expect("revoke");
    seen(format!(
        "{:?}",
        visitor.run(&agent.id, "after the revoke").await
    ));

    // API keys: minted, used, listed, revoked, tried again.
    let key = alice
        .tenancy()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "ci".into(),
            ..Default::default()
        })
        .await
        .expect("api key")
        .into_inner();
    let api_key = key.secret.clone();
    let with_key = alice.with_token(&api_key);
    seen(format!(
        "{:?}",
        with_key.tenancy().get_me(sharing::GetMeRequest {}).await
    ));
    seen(format!(
        "{:?}",
        alice
            .tenancy()
            .list_api_keys(sharing::ListApiKeysRequest::default())
            .await
    ));
    alice
        .tenancy()
        .revoke_api_key(sharing::RevokeApiKeyRequest {
            api_key_id: key.api_key.expect("key").id,
        })
        .await
        .expect("revoke key");
    seen(format!(
        "{:?}",
        with_key.tenancy().get_me(sharing::GetMeRequest {}).await
    ));

    // Wrong credentials whose refusals must not echo what was sent.
    let session_token = stepped_up(&suite, "alice");
    let forged_key = format!("{}-forged", &api_key);
    let anonymous = suite.anonymous().await;
    for token in [forged_key.as_str(), run_token.as_str()] {
        seen(format!(
            "{:?}",
            anonymous
                .with_token(token)
                .tenancy()
                .get_me(sharing::GetMeRequest {})
                .await
        ));
    }
    seen(format!(
        "{:?}",
        anonymous
            .with_grant(&format!("{grant_token}x"))
            .invoke()
            .invoke(gateway::InvokeRequest {
                agent_id: agent.id.clone(),
                input: "hi".into(),
                ..Default::default()
            })
            .await
    ));
    // The same over HTTP/JSON.
    let gateway_addr = suite.gateway_addr().to_string();
    for (caller, request) in [
        (
            Caller::bearer(&session_token),
            HttpCall {
                method: reqwest::Method::GET,
                path: format!("/api/v1/connections/{connection}"),
                body: None,
            },
        ),
        (
            Caller::bearer(&session_token),
            HttpCall {
                method: reqwest::Method::GET,
                path: "/api/v1/connections".into(),
                body: None,
            },
        ),
        (
            Caller::bearer(&api_key),
            HttpCall {
                method: reqwest::Method::GET,
                path: "/api/v1/me".into(),
                body: None,
            },
        ),
        (
            Caller::nobody().with_grant(&grant_token),
            HttpCall {
                method: reqwest::Method::POST,
                path: format!("/api/v1/agents/{}:invoke", agent.id),
                body: Some(json!({ "input": "hi" }).to_string()),
            },
        ),
        (
            Caller::bearer(&run_token),
            HttpCall {
                method: reqwest::Method::GET,
                path: format!("/api/v1/agents/{}/store:list", agent.id),
                body: None,
            },
        ),
    ] {
        seen(send_http(&gateway_addr, &caller, &request).await.raw);
    }

    let read = |name: &str| {
        std::fs::read_to_string(suite.keys_dir().join(name))
            .expect("key file")
            .trim()
            .to_string()
    };
    let sealing_key = read(CONNECTIONS_KEY_FILE);
    let sealing_bytes = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&sealing_key)
            .expect("base64 key")
    };
    let session_key = read(SESSION_SECRET_FILE);
    let secrets: Vec<(&str, String)> = vec![
        ("the first connection key", first_key.into()),
        ("the replaced connection key", second_key.into()),
        ("an API key", api_key.clone()),
        ("a share token", grant_token.clone()),
        ("a run token", run_token.clone()),
        ("a session token", session_token.clone()),
        ("the session key", session_key),
        ("the sealing key", sealing_key),
        (
            "the sealing key in hex",
            sealing_bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ),
    ];
    let answers = answers.join("\n");
    let logs = suite.logs();
    assert!(
        logs.contains("TenancyService") || logs.len() > 10_000,
        "the services logged their calls; the scan has something to read"
    );
    let stored = suite.stored_bytes().await;
    let mut found = Vec::new();
    for (what, secret) in &secrets {
        if answers.contains(secret.as_str()) {
            found.push(format!("{what} in an answer"));
        }
        if logs.contains(secret.as_str()) {
            let line = logs
                .lines()
                .find(|l| l.contains(secret.as_str()))
                .unwrap_or_default();
            found.push(format!("{what} in a log line: {line}"));
        }
        if stored.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            found.push(format!("{what} in the stored bytes"));
        }
    }
    if stored
        .windows(sealing_bytes.len())
        .any(|w| w == sealing_bytes.as_slice())
    {
        found.push("the raw sealing key in the stored bytes".into());
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    suite.stop().await;
}
