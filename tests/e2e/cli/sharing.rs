//! `agentshare share|unshare|access|my-agents`, `grant`, `pin`,
//! `connection` and `setup`, run as the built binary against a live
//! `serve`: the README's research agent shared with a teammate who brings his
//! own CRM, a widget's grant whose token is shown once, and connections
//! whose keys never come from a flag.

use agentshare_e2e::cli::Serve;
use serde_json::{Value, json};

/// Drafts and deploys an agent of Alice's over HTTP/JSON (the CLI's own
/// `agent` commands are tested elsewhere); returns its id.
async fn deploy_agent(serve: &Serve, draft: Value) -> String {
    let alice = serve.http("alice").await;
    let created = alice.post("/agents", json!({ "draft": draft })).await;
    let id = created["agent"]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    let revision = created["agent"]["draftRevision"].clone();
    alice
        .post(
            &format!("/agents/{id}:deploy"),
            json!({ "expectedDraftRevision": revision }),
        )
        .await;
    id
}

/// Alice's org with Bob in it; returns Bob's user id.
async fn acme(serve: &Serve) -> String {
    serve
        .as_user("alice", &["org", "create", "Acme"])
        .await
        .ok();
    serve.as_user("bob", &["me"]).await.ok();
    serve
        .as_user("alice", &["org", "members", "add", "bob@example.com", "-q"])
        .await
        .ok()
        .id()
}

#[tokio::test]
async fn a_teammate_sets_up_a_shared_agent_and_a_dry_run_shows_what_unsharing_takes_away() {
    let serve = Serve::start().await;
    let bob = acme(&serve).await;
    let search = serve
        .cli()
        .args(&[
            "--as",
            "alice",
            "connection",
            "create",
            "--provider",
            "search",
        ])
        .args(&["--label", "Team search", "--api-key-stdin", "-q"])
        .stdin("srch-alice-123\n")
        .run()
        .await
        .ok()
        .id();
    let agent = deploy_agent(
        &serve,
        json!({
            "name": "Research",
            "instructions": "Research accounts.",
            "tools": [
                {"integrationKey": "web_search", "provider": "search",
                 "scope": "INTEGRATION_SCOPE_SHARED", "connectionId": search},
                {"integrationKey": "crm", "provider": "crm",
                 "scope": "INTEGRATION_SCOPE_USER_CONFIGURED"}
            ],
            "automations": [
                {"key": "daily_brief", "schedule": {"daily": {"timeOfDay": {"hours": 8}}},
                 "timeZone": "UTC", "task": "Brief me"}
            ]
        }),
    )
    .await;

    // Before sharing, Bob cannot even see it.
    serve
        .as_user("bob", &["setup", "show", &agent])
        .await
        .failed(1, "error: NOT_FOUND");
    let shared = serve.as_user("alice", &["share", &agent]).await.ok();
    assert!(
        shared.stdout.contains("shared") && shared.stdout.contains("yes"),
        "{}",
        shared.stdout
    );
    assert!(
        shared.stdout.contains("now see and run it"),
        "{}",
        shared.stdout
    );

    // Bob sees it with an orange dot (the word, since stdout is a pipe).
    let mine = serve.as_user("bob", &["my-agents"]).await.ok();
    let row = mine
        .stdout
        .lines()
        .find(|line| line.contains(&agent))
        .unwrap_or_else(|| panic!("{}", mine.stdout));
    assert!(
        row.contains("Research")
            && row.contains("shared with you")
            && row.contains("● setup required"),
        "{row}"
    );
    assert!(!mine.stdout.contains('\x1b'), "no colour in a pipe");
    let owned = serve
        .as_user("bob", &["my-agents", "--relation", "owned", "-q"])
        .await
        .ok();
    assert!(owned.stdout.trim().is_empty(), "{}", owned.stdout);

    let setup = serve.as_user("bob", &["setup", "show", &agent]).await.ok();
    assert!(
        setup.stdout.contains("● setup required"),
        "{}",
        setup.stdout
    );
    let crm_row = setup
        .stdout
        .lines()
        .find(|line| line.starts_with("crm"))
        .unwrap_or_else(|| panic!("{}", setup.stdout));
    assert!(
        crm_row.contains("user configured") && crm_row.contains("not bound"),
        "{crm_row}"
    );
    let search_row = setup
        .stdout
        .lines()
        .find(|line| line.starts_with("web_search"))
        .unwrap_or_else(|| panic!("{}", setup.stdout));
    assert!(search_row.contains("the builder's"), "{search_row}");
    assert!(
        setup.stdout.contains("To fix crm") && setup.stdout.contains("setup bind"),
        "{}",
        setup.stdout
    );

    // He connects his own CRM from a key file and binds it: green.
    let key_file = serve.config_dir.path().join("crm.key");
    std::fs::write(&key_file, "bob-crm-key\n").expect("write key");
    let crm = serve
        .as_user(
            "bob",
            &[
                "connection",
                "create",
                "--provider",
                "crm",
                "--label",
                "My CRM",
                "--api-key-file",
                key_file.to_str().expect("path"),
                "-q",
            ],
        )
        .await
        .ok()
        .id();
    let bound = serve
        .as_user("bob", &["setup", "bind", &agent, "crm", &crm, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(bound["setup"]["status"], "SETUP_STATUS_READY");
    let unbound = serve
        .as_user("bob", &["setup", "unbind", &agent, "crm"])
        .await
        .ok();
    assert!(
        unbound.stdout.contains("● setup required"),
        "{}",
        unbound.stdout
    );
    serve
        .as_user("bob", &["setup", "bind", &agent, "crm", &crm])
        .await
        .ok();
    let completed = serve
        .as_user("bob", &["setup", "complete", &agent])
        .await
        .ok();
    assert!(completed.stdout.contains("● ready"), "{}", completed.stdout);
    let mine = serve
        .as_user("bob", &["my-agents", "-o", "json"])
        .await
        .ok()
        .json();
    let row = mine["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|a| a["agentId"] == agent.as_str())
        .expect("listed");
    assert_eq!(row["setupStatus"], "SETUP_STATUS_READY");
    let table = serve.as_user("bob", &["my-agents"]).await.ok();
    assert!(table.stdout.contains("● ready"), "{}", table.stdout);

    // He pins version 1, reads the pin back, and clears it.
    let pinned = serve.as_user("bob", &["pin", &agent, "1"]).await.ok();
    assert!(pinned.stdout.contains("version 1"), "{}", pinned.stdout);
    let pin = serve
        .as_user("bob", &["pin", &agent, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(pin["pin"]["version"], "1");
    serve
        .as_user("bob", &["pin", &agent, "7"])
        .await
        .failed(1, "error: NOT_FOUND");
    let cleared = serve
        .as_user("bob", &["pin", &agent, "--clear", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(cleared["removed"], true);
    let none = serve.as_user("bob", &["pin", &agent]).await.ok();
    assert!(none.stdout.contains("no pin"), "{}", none.stdout);
    serve
        .as_user("bob", &["pin", &agent, "1", "--clear"])
        .await
        .failed(2, "--clear");

    // Who may do what, and why.
    let check = serve
        .as_user(
            "alice",
            &[
                "access", "check", &agent, "--action", "run", "--user", &bob, "-o", "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(check["allowed"], true);
    assert_eq!(check["reason"], "DECISION_REASON_WORKSPACE_MEMBER");
    let explained = serve
        .as_user(
            "alice",
            &[
                "access", "explain", &agent, "--action", "run", "--user", &bob,
            ],
        )
        .await
        .ok();
    assert!(
        explained.stdout.starts_with("Allowed: user ")
            && explained.stdout.contains("member of workspace")
            && explained.stdout.contains("agent.shared"),
        "{}",
        explained.stdout
    );
    let denied = serve
        .as_user("bob", &["access", "explain", &agent, "--action", "edit"])
        .await
        .ok();
    assert!(
        denied.stdout.starts_with("Denied: you may not edit")
            && denied.stdout.contains("Why not:")
            && denied.stdout.contains("only the owner may do it"),
        "{}",
        denied.stdout
    );
    let alice = serve.as_user("alice", &["me", "-q"]).await.ok().id();
    serve
        .as_user(
            "bob",
            &[
                "access", "check", &agent, "--action", "run", "--user", &alice,
            ],
        )
        .await
        .failed(1, "error: PERMISSION_DENIED");
    serve
        .as_user("bob", &["access", "check", &agent])
        .await
        .failed(2, "--action");

    // Bob's daily brief, and a widget's grant, before Alice unshares.
    serve
        .http("bob")
        .await
        .post(
            &format!("/agents/{agent}/automations/daily_brief:subscribe"),
            json!({ "enabled": true }),
        )
        .await;
    serve
        .as_user(
            "alice",
            &[
                "grant", "create", &agent, "--kind", "invoke", "--label", "portal", "-q",
            ],
        )
        .await
        .ok();
    let dry = serve
        .as_user("alice", &["unshare", &agent, "--dry-run"])
        .await
        .ok();
    for said in [
        "take it away from 1 user",
        "bob@example.com",
        "stop 1 automation",
        "daily_brief of bob <bob@example.com>",
        "keep 1 active grant working",
        "\"portal\" (invoke",
        "Nothing was changed",
    ] {
        assert!(dry.stdout.contains(said), "{said:?} in {}", dry.stdout);
    }
    let dry = serve
        .as_user("alice", &["unshare", &agent, "--dry-run", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(dry["shared"], true);
    assert_eq!(dry["usersLosingAccessTotal"], 1);
    assert_eq!(dry["automationsDisabledTotal"], 1);
    assert_eq!(dry["survivingGrantsTotal"], 1);
    // The dry run changed nothing.
    let still = serve.as_user("bob", &["my-agents", "-q"]).await.ok();
    assert!(still.stdout.contains(&agent), "{}", still.stdout);
    serve
        .as_user("bob", &["unshare", &agent, "--dry-run"])
        .await
        .failed(1, "error: PERMISSION_DENIED");

    let unshared = serve.as_user("alice", &["unshare", &agent]).await.ok();
    assert!(
        unshared.stdout.contains("shared") && unshared.stdout.contains("no"),
        "{}",
        unshared.stdout
    );
    let gone = serve.as_user("bob", &["my-agents", "-q"]).await.ok();
    assert!(!gone.stdout.contains(&agent), "{}", gone.stdout);
    serve
        .as_user("bob", &["access", "check", &agent, "--action", "run"])
        .await
        .failed(1, "error: NOT_FOUND");
    let again = serve
        .as_user("alice", &["unshare", &agent, "--dry-run"])
        .await
        .ok();
    assert!(again.stdout.contains("is not shared"), "{}", again.stdout);

    // Bob's connection outlives the unshare; deleting it removes his binding.
    let deleted = serve
        .as_user("bob", &["connection", "delete", &crm, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(deleted["removedBindingCount"], 1);
}

#[tokio::test]
async fn a_grant_token_is_shown_once_works_until_revoked_and_is_never_listed() {
    let serve = Serve::start().await;
    acme(&serve).await;
    let search = serve
        .cli()
        .args(&[
            "--as",
            "alice",
            "connection",
            "create",
            "--provider",
            "search",
        ])
        .args(&["--api-key-stdin", "-q"])
        .stdin("srch-alice-123")
        .run()
        .await
        .ok()
        .id();
    let agent = deploy_agent(
        &serve,
        json!({
            "name": "Widget",
            "tools": [{"integrationKey": "web_search", "provider": "search",
                       "scope": "INTEGRATION_SCOPE_SHARED", "connectionId": search}]
        }),
    )
    .await;

    // For people: the grant and its token on stdout, the warning on stderr.
    let created = serve
        .as_user(
            "alice",
            &[
                "grant",
                "create",
                &agent,
                "--kind",
                "delegate",
                "--label",
                "marketing-site widget",
                "--expires-in",
                "30d",
            ],
        )
        .await
        .ok();
    assert!(
        created.stderr.contains("only time") && created.stderr.contains("store it"),
        "{}",
        created.stderr
    );
    let token_line = created
        .stdout
        .lines()
        .find(|line| line.starts_with("token"))
        .unwrap_or_else(|| panic!("{}", created.stdout));
    let first_token = token_line.split_whitespace().last().expect("token");
    assert!(
        !created.stderr.contains(first_token),
        "the token is on stdout only"
    );

    // For scripts: --quiet prints the token alone; JSON carries the grant.
    let quiet = serve
        .as_user(
            "alice",
            &[
                "grant", "create", &agent, "--kind", "delegate", "--label", "bot", "-q",
            ],
        )
        .await
        .ok();
    let token = quiet.id();
    assert!(quiet.stderr.contains("store it"), "{}", quiet.stderr);
    let json = serve
        .as_user(
            "alice",
            &[
                "grant",
                "create",
                &agent,
                "--kind",
                "invoke",
                "--label",
                "app",
                "--version",
                "1",
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(json["grant"]["kind"], "GRANT_KIND_INVOKE");
    assert_eq!(json["grant"]["pinnedVersion"], "1");
    assert!(json["token"].as_str().is_some_and(|t| !t.is_empty()));

    // Listing shows prefixes, never a token.
    let listed = serve
        .as_user("alice", &["grant", "list", &agent])
        .await
        .ok();
    assert!(listed.stdout.starts_with("ID"), "{}", listed.stdout);
    assert_eq!(listed.stdout.lines().count(), 4, "{}", listed.stdout);
    for shown in [first_token, token.as_str()] {
        assert!(!listed.stdout.contains(shown), "{}", listed.stdout);
    }
    assert!(
        listed.stdout.contains("marketing-site widget") && listed.stdout.contains("delegate"),
        "{}",
        listed.stdout
    );
    let grants = serve
        .as_user("alice", &["grant", "list", &agent, "-o", "json"])
        .await
        .ok();
    assert!(!grants.stdout.contains(&token), "{}", grants.stdout);
    let bot = grants.json()["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .find(|g| g["label"] == "bot")
        .expect("the bot's grant")["id"]
        .as_str()
        .expect("id")
        .to_string();

    // An anonymous visitor runs the agent on the token until it is revoked.
    let visit = || async {
        reqwest::Client::new()
            .post(format!("{}/api/v1/agents/{agent}:invoke", serve.endpoint))
            .header("x-agentshare-grant-token", &token)
            .header("content-type", "application/json")
            .body(json!({ "input": "hello" }).to_string())
            .send()
            .await
            .expect("invoke")
            .status()
    };
    assert!(visit().await.is_success());
    let revoked = serve
        .as_user("alice", &["grant", "revoke", &bot])
        .await
        .ok();
    assert!(
        revoked.stdout.contains("revoked") && revoked.stdout.contains("very next call"),
        "{}",
        revoked.stdout
    );
    assert_eq!(visit().await, reqwest::StatusCode::UNAUTHORIZED);
    let active = serve
        .as_user("alice", &["grant", "list", &agent, "-q"])
        .await
        .ok();
    assert!(!active.stdout.contains(&bot), "{}", active.stdout);
    let all = serve
        .as_user("alice", &["grant", "list", &agent, "--all", "-q"])
        .await
        .ok();
    assert!(all.stdout.contains(&bot), "{}", all.stdout);

    // Mistakes: the command line's exit 2, the server's exit 1.
    serve
        .as_user(
            "alice",
            &[
                "grant",
                "create",
                &agent,
                "--kind",
                "invoke",
                "--label",
                "x",
                "--expires-in",
                "soon",
            ],
        )
        .await
        .failed(2, "--expires-in");
    serve
        .as_user(
            "alice",
            &[
                "grant",
                "create",
                &agent,
                "--kind",
                "invoke",
                "--label",
                "x",
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
        )
        .await
        .failed(1, "error: INVALID_ARGUMENT");
    serve
        .as_user("bob", &["grant", "list", &agent])
        .await
        .failed(1, "error: NOT_FOUND");
}

#[tokio::test]
async fn connection_keys_come_from_a_file_or_stdin_and_are_never_shown() {
    let serve = Serve::start().await;
    serve
        .as_user("alice", &["org", "create", "Acme"])
        .await
        .ok();

    let created = serve
        .cli()
        .args(&[
            "--as",
            "alice",
            "connection",
            "create",
            "--provider",
            "slack",
        ])
        .args(&["--label", "Team Slack", "--api-key-stdin", "-o", "json"])
        .stdin("xoxp-secret-42\n")
        .run()
        .await
        .ok();
    assert!(
        !created.stdout.contains("xoxp-secret-42"),
        "{}",
        created.stdout
    );
    let connection = created.json()["connection"].clone();
    assert_eq!(connection["status"], "CONNECTION_STATUS_LIVE");
    assert_eq!(connection["kind"], "CONNECTION_KIND_API_KEY");
    let id = connection["id"].as_str().expect("id").to_string();

    let key_file = serve.config_dir.path().join("search.key");
    std::fs::write(&key_file, "srch-file-key\n").expect("write key");
    let search = serve
        .as_user(
            "alice",
            &[
                "connection",
                "create",
                "--provider",
                "search",
                "--api-key-file",
                key_file.to_str().expect("path"),
            ],
        )
        .await
        .ok();
    assert!(
        search.stdout.contains("search") && search.stdout.contains("live"),
        "{}",
        search.stdout
    );

    let listed = serve.as_user("alice", &["connection", "list"]).await.ok();
    assert!(listed.stdout.starts_with("ID"), "{}", listed.stdout);
    assert!(listed.stdout.contains("Team Slack"), "{}", listed.stdout);
    let slack_only = serve
        .as_user(
            "alice",
            &["connection", "list", "--provider", "slack", "-q"],
        )
        .await
        .ok()
        .id();
    assert_eq!(slack_only, id);

    let shown = serve
        .as_user("alice", &["connection", "show", &id])
        .await
        .ok();
    assert!(
        shown.stdout.contains("Team Slack") && !shown.stdout.contains("xoxp-secret"),
        "{}",
        shown.stdout
    );
    let tested = serve
        .as_user("alice", &["connection", "test", &id, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(tested["ok"], true);
    assert!(tested["connection"]["lastTestTime"].is_string(), "{tested}");

    // A key the provider refuses is a failed check: said, and exit 1.
    let short = serve
        .cli()
        .args(&[
            "--as",
            "alice",
            "connection",
            "create",
            "--provider",
            "search",
        ])
        .args(&["--api-key-stdin", "-q"])
        .stdin("srch-x")
        .run()
        .await
        .ok()
        .id();
    let refused = serve
        .as_user("alice", &["connection", "test", &short])
        .await
        .failed(1, "the provider refused");
    assert!(
        refused.stdout.contains("failed") && refused.stdout.contains("too short"),
        "{}",
        refused.stdout
    );

    // Someone else's connection does not exist for them.
    serve.as_user("bob", &["me"]).await.ok();
    serve
        .as_user("bob", &["connection", "show", &id])
        .await
        .failed(1, "error: NOT_FOUND");

    let deleted = serve
        .as_user("alice", &["connection", "delete", &id])
        .await
        .ok();
    assert!(
        deleted.stdout.contains("bindings removed"),
        "{}",
        deleted.stdout
    );
    serve
        .as_user("alice", &["connection", "show", &id])
        .await
        .failed(1, "error: NOT_FOUND");

    // A key is never a flag value; a source is required and must hold one.
    serve
        .as_user(
            "alice",
            &[
                "connection",
                "create",
                "--provider",
                "slack",
                "--api-key",
                "xoxp-1",
            ],
        )
        .await
        .failed(2, "--api-key");
    serve
        .as_user("alice", &["connection", "create", "--provider", "slack"])
        .await
        .failed(2, "--api-key-file");
    serve
        .cli()
        .args(&[
            "--as",
            "alice",
            "connection",
            "create",
            "--provider",
            "slack",
        ])
        .arg("--api-key-stdin")
        .stdin("\n")
        .run()
        .await
        .failed(2, "empty");
    serve
        .cli()
        .args(&[
            "--as",
            "alice",
            "connection",
            "create",
            "--provider",
            "telex",
        ])
        .args(&["--api-key-stdin"])
        .stdin("key")
        .run()
        .await
        .failed(1, "error: INVALID_ARGUMENT");
    serve
        .as_user(
            "alice",
            &[
                "connection",
                "create",
                "--provider",
                "slack",
                "--api-key-stdin",
                "--timeout",
                "1m",
            ],
        )
        .await
        .failed(2, "--oauth");

    // The embedded default offers API-key providers only: OAuth is refused
    // before any URL is printed or any wait begins.
    let refused = serve
        .as_user(
            "alice",
            &["connection", "create", "--provider", "outlook", "--oauth"],
        )
        .await
        .failed(1, "error: INVALID_ARGUMENT");
    assert!(
        refused.stderr.contains("outlook takes an API key")
            && refused
                .stderr
                .contains("hint: outlook takes an API key: connect it with --api-key-stdin"),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);
}

/// `serve` with `gmail` over OAuth at `fake`, besides nothing else.
fn oauth_config(fake: &agentshare_e2e::oauth_provider::FakeOAuth) -> String {
    format!(
        r#"
[connections]
oauth_redirect_url = "http://127.0.0.1:9/oauth/callback"

[connections.providers.gmail]
kind = "oauth"
check = "static"
authorize_url = "{}"
token_url = "{}"
client_id = "{}"
client_secret = "{}"
scopes = ["mail.compose"]
"#,
        fake.authorize_url(),
        fake.token_url(),
        fake.client_id(),
        fake.client_secret()
    )
}

#[tokio::test]
async fn an_oauth_connection_prints_where_to_consent_and_ends_when_the_user_comes_back() {
    let fake = agentshare_e2e::oauth_provider::FakeOAuth::start().await;
    let serve = Serve::start_with_config(&oauth_config(&fake)).await;
    serve.as_user("bob", &["org", "create", "Bob's"]).await.ok();

    // With -o json the URL goes to stderr; stdout is the connection alone.
    let mut waiting = serve
        .cli()
        .args(&["--as", "bob", "connection", "create", "--provider", "gmail"])
        .args(&["--oauth", "--label", "Work mail", "-o", "json"])
        .spawn();
    let line = waiting.stderr_line_containing(&fake.authorize_url()).await;
    // The user consents in a browser, and the client's callback page
    // completes the flow with what the provider sent back.
    let (code, state) = fake.consent(line.trim()).await;
    serve
        .http("bob")
        .await
        .post(
            "/connections:completeOAuth",
            json!({ "state": state, "code": code }),
        )
        .await;
    let ran = waiting.finish().await.ok();
    let connection = ran.json()["connection"].clone();
    assert_eq!(connection["kind"], "CONNECTION_KIND_OAUTH", "{connection}");
    assert_eq!(connection["label"], "Work mail", "{connection}");
    assert_eq!(connection["provider"], "gmail", "{connection}");

    // Nobody comes back: the wait ends with a clear error, exit 1.
    serve
        .as_user(
            "bob",
            &[
                "connection",
                "create",
                "--provider",
                "gmail",
                "--oauth",
                "--timeout",
                "1s",
            ],
        )
        .await
        .failed(1, "no gmail connection was completed within 1s");
}

#[tokio::test]
async fn a_builder_limits_a_widget_grant_and_an_owner_sets_the_orgs_policy_from_the_shell() {
    let serve = Serve::start().await;
    acme(&serve).await;
    let agent = deploy_agent(&serve, json!({ "name": "Widget" })).await;
    let token = serve
        .as_user(
            "alice",
            &[
                "grant",
                "create",
                &agent,
                "--kind",
                "delegate",
                "--label",
                "site",
                "--runs-per-minute",
                "1",
                "-q",
            ],
        )
        .await
        .ok()
        .id();
    let visit = || async {
        reqwest::Client::new()
            .post(format!("{}/api/v1/agents/{agent}:invoke", serve.endpoint))
            .header("x-agentshare-grant-token", &token)
            .header("content-type", "application/json")
            .body(json!({ "input": "hello" }).to_string())
            .send()
            .await
            .expect("invoke")
    };
    assert!(visit().await.status().is_success());
    let refused = visit().await;
    assert_eq!(refused.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));

    let listed = serve
        .as_user("alice", &["grant", "list", &agent])
        .await
        .ok();
    assert!(
        listed.stdout.contains("1/min 1000/day 4 at once"),
        "the limit asked and the delegate defaults: {}",
        listed.stdout
    );
    let grant = serve
        .as_user("alice", &["grant", "list", &agent, "-o", "json"])
        .await
        .ok()
        .json()["grants"][0]
        .clone();
    assert_eq!(grant["usage"]["runs"], "1", "{grant}");
    assert_eq!(grant["usage"]["refusals"], "1", "{grant}");
    let grant_id = grant["id"].as_str().expect("id").to_string();

    let lifted = serve
        .as_user(
            "alice",
            &["grant", "limits", &grant_id, "--runs-per-minute", "0"],
        )
        .await
        .ok();
    assert!(
        lifted
            .stdout
            .lines()
            .any(|l| l.starts_with("runs per minute") && l.ends_with("none")),
        "{}",
        lifted.stdout
    );
    assert!(
        visit().await.status().is_success(),
        "no limit per minute now"
    );
    serve
        .as_user("alice", &["grant", "limits", &grant_id])
        .await
        .failed(2, "nothing to change");
    serve
        .as_user(
            "bob",
            &["grant", "limits", &grant_id, "--runs-per-day", "5"],
        )
        .await
        .failed(1, "");

    let shown = serve.as_user("alice", &["org", "policy"]).await.ok();
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.starts_with("forbid delegate grants") && l.ends_with("false")),
        "{}",
        shown.stdout
    );
    let strict = serve
        .as_user(
            "alice",
            &["org", "policy", "--forbid-delegate-grants", "true"],
        )
        .await
        .ok();
    assert!(
        strict
            .stdout
            .lines()
            .any(|l| l.starts_with("forbid delegate grants") && l.ends_with("true")),
        "{}",
        strict.stdout
    );
    let refused = visit().await;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let body = refused.text().await.expect("body");
    assert!(body.contains("org policy forbid_delegate_grants"), "{body}");
    serve
        .as_user(
            "bob",
            &["org", "policy", "--forbid-external-grants", "true"],
        )
        .await
        .failed(1, "owner");
}

#[tokio::test]
async fn an_owner_keeps_a_shared_agents_store_to_themselves_and_items_show_who_wrote_them() {
    let serve = Serve::start().await;
    acme(&serve).await;
    let agent = deploy_agent(&serve, json!({ "name": "Playbook" })).await;
    serve.as_user("alice", &["share", &agent]).await.ok();
    let policy_line = |stdout: &str, field: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(field))
            .map(|l| l[field.len()..].trim().to_string())
            .unwrap_or_default()
    };

    let shown = serve
        .as_user("alice", &["agent", "store-policy", &agent])
        .await
        .ok();
    assert_eq!(
        policy_line(&shown.stdout, "writers"),
        "runners",
        "{}",
        shown.stdout
    );
    assert_eq!(
        policy_line(&shown.stdout, "anonymous writes"),
        "allow",
        "{}",
        shown.stdout
    );

    serve
        .cli()
        .args(&["--as", "bob", "items", "write", &agent, "tip"])
        .stdin("bob's tip")
        .run()
        .await
        .ok();
    let set = serve
        .as_user(
            "alice",
            &[
                "agent",
                "store-policy",
                &agent,
                "--writers",
                "owner",
                "--anonymous-writes",
                "deny",
            ],
        )
        .await
        .ok();
    assert_eq!(
        policy_line(&set.stdout, "writers"),
        "owner only",
        "{}",
        set.stdout
    );
    assert_eq!(
        policy_line(&set.stdout, "anonymous writes"),
        "deny",
        "{}",
        set.stdout
    );
    serve
        .as_user(
            "bob",
            &["agent", "store-policy", &agent, "--writers", "runners"],
        )
        .await
        .failed(1, "PERMISSION_DENIED");

    serve
        .cli()
        .args(&["--as", "bob", "items", "write", &agent, "tip"])
        .stdin("again")
        .run()
        .await
        .failed(1, "store write policy OWNER_ONLY");
    serve
        .cli()
        .args(&["--as", "alice", "items", "write", &agent, "rule"])
        .stdin("alice's rule")
        .run()
        .await
        .ok();

    let bob_id = serve
        .as_user("bob", &["me", "-o", "json"])
        .await
        .ok()
        .json()["user"]["id"]
        .as_str()
        .expect("bob's id")
        .to_string();
    let read = serve
        .as_user("bob", &["items", "read", &agent, "tip"])
        .await
        .ok();
    assert_eq!(
        policy_line(&read.stdout, "written by"),
        format!("user {bob_id}"),
        "bob still reads his item and sees it is his: {}",
        read.stdout
    );
    let listed = serve
        .as_user("bob", &["items", "list", &agent, "-o", "json"])
        .await
        .ok()
        .json();
    let kinds: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["writtenBy"]["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["WRITER_KIND_USER", "WRITER_KIND_USER"], "{listed}");
}

#[tokio::test]
async fn an_owner_retires_a_pinned_version_on_a_schedule_and_sees_who_pins_it() {
    let serve = Serve::start().await;
    acme(&serve).await;
    let agent = deploy_agent(&serve, json!({ "name": "Research" })).await;
    serve.as_user("alice", &["share", &agent]).await.ok();
    let file = serve.config_dir.path().join("v2.yaml");
    std::fs::write(&file, "description: Now with citations\n").expect("write definition");
    let path = file.to_str().expect("path");
    serve
        .as_user("alice", &["agent", "update", &agent, "-f", path])
        .await
        .ok();
    serve
        .as_user("alice", &["agent", "deploy", &agent])
        .await
        .ok();
    serve.as_user("bob", &["pin", &agent, "1"]).await.ok();

    // Only the owner deprecates, never the latest version, at a time she
    // can say.
    serve
        .as_user(
            "bob",
            &["agent", "deprecate", &agent, "1", "--sunset", "7d"],
        )
        .await
        .failed(1, "error: PERMISSION_DENIED");
    serve
        .as_user(
            "alice",
            &["agent", "deprecate", &agent, "2", "--sunset", "7d"],
        )
        .await
        .failed(1, "deploy a newer version first");
    serve
        .as_user(
            "alice",
            &["agent", "deprecate", &agent, "1", "--sunset", "soon"],
        )
        .await
        .failed(2, "--sunset");
    let deprecated = serve
        .as_user(
            "alice",
            &[
                "agent",
                "deprecate",
                &agent,
                "1",
                "--sunset",
                "7d",
                "--note",
                "v2 cites its sources",
            ],
        )
        .await
        .ok();
    assert!(
        deprecated.stdout.contains("retires ")
            && deprecated.stdout.contains("v2 cites its sources"),
        "{}",
        deprecated.stdout
    );

    // Bob sees the sunset in his list; Alice sees who pins v1 and when it
    // retires.
    let mine = serve.as_user("bob", &["my-agents"]).await.ok();
    let row = mine
        .stdout
        .lines()
        .find(|line| line.contains(&agent))
        .unwrap_or_else(|| panic!("{}", mine.stdout));
    assert!(row.contains("1, retires on "), "{row}");
    let pins = serve
        .as_user("alice", &["agent", "pins", &agent])
        .await
        .ok();
    let pinned = pins
        .stdout
        .lines()
        .find(|line| line.contains("bob@example.com"))
        .unwrap_or_else(|| panic!("{}", pins.stdout));
    assert!(
        pinned.starts_with('1') && pinned.contains("retires "),
        "{pinned}"
    );
    let versions = serve
        .as_user("alice", &["agent", "versions", &agent])
        .await
        .ok();
    assert!(versions.stdout.contains("retires "), "{}", versions.stdout);

    // Over HTTP/JSON too: the owner cancels the deprecation.
    let cancelled = serve
        .http("alice")
        .await
        .post(
            &format!("/agents/{agent}/versions/1:undeprecate"),
            json!({}),
        )
        .await;
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    assert!(
        cancelled["version"].get("sunsetTime").is_none(),
        "{cancelled}"
    );

    // Retired at once: Bob's runs use v2, and his pin says so.
    serve
        .as_user(
            "alice",
            &["agent", "deprecate", &agent, "1", "--sunset", "now"],
        )
        .await
        .ok();
    let pin = serve
        .as_user("bob", &["pin", &agent, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(pin["pin"]["retired"], true);
    let mine = serve.as_user("bob", &["my-agents"]).await.ok();
    assert!(
        mine.stdout.contains("1, retired on ") && mine.stdout.contains(": runs v2"),
        "{}",
        mine.stdout
    );
    serve
        .as_user("bob", &["pin", &agent, "1"])
        .await
        .failed(1, "error: FAILED_PRECONDITION");
}
