//! `agentshare me`, `org`, `context`, `completion`, and the conventions
//! every group shares: output formats, errors and exit codes.

use agentshare_e2e::cli::Serve;

#[tokio::test]
async fn an_org_is_created_its_members_managed_and_printed_for_people_and_scripts() {
    let serve = Serve::start().await;
    let created = serve
        .as_user("alice", &["org", "create", "Acme", "-o", "json"])
        .await
        .ok()
        .json();
    let org_id = created["org"]["id"].as_str().expect("org id").to_string();
    assert_eq!(created["org"]["name"], "Acme");

    // Bob signs in once, then Alice adds him by email.
    serve.as_user("bob", &["me"]).await.ok();
    let bob = serve
        .as_user(
            "alice",
            &[
                "org",
                "members",
                "add",
                "bob@example.com",
                "--role",
                "admin",
                "-q",
            ],
        )
        .await
        .ok()
        .id();

    let table = serve
        .as_user("alice", &["org", "members", "list"])
        .await
        .ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("USER") && lines[0].contains("ROLE"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("bob@example.com") && table.stdout.contains("admin"),
        "{}",
        table.stdout
    );

    let yaml = serve
        .as_user("alice", &["org", "members", "list", "-o", "yaml"])
        .await
        .ok();
    assert!(
        yaml.stdout.contains("role: ORG_ROLE_ADMIN"),
        "{}",
        yaml.stdout
    );

    let me = serve
        .as_user("bob", &["me", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(me["orgId"], org_id.as_str());
    assert_eq!(me["orgRole"], "ORG_ROLE_ADMIN");

    serve
        .as_user("alice", &["org", "members", "role", &bob, "member"])
        .await
        .ok();
    serve
        .as_user("alice", &["org", "members", "remove", &bob])
        .await
        .ok();
    let ids = serve
        .as_user("alice", &["org", "members", "list", "-q"])
        .await
        .ok();
    assert_eq!(ids.stdout.lines().count(), 1, "{}", ids.stdout);

    let renamed = serve
        .as_user(
            "alice",
            &["org", "update", "--name", "Acme Corp", "-o", "json"],
        )
        .await
        .ok()
        .json();
    assert_eq!(renamed["org"]["name"], "Acme Corp");
}

#[tokio::test]
async fn a_refused_call_prints_its_code_and_exits_1_and_a_bad_command_line_exits_2() {
    let serve = Serve::start().await;
    serve
        .as_user("alice", &["org", "create", "Acme"])
        .await
        .ok();

    serve
        .as_user("alice", &["org", "show", "not-an-id"])
        .await
        .failed(1, "error: INVALID_ARGUMENT: ");
    serve
        .as_user("alice", &["org", "members", "add", "nobody@example.com"])
        .await
        .failed(1, "error: NOT_FOUND: ");
    serve
        .as_user("carol", &["org", "members", "list"])
        .await
        .failed(1, "error: ");
    serve
        .as_user("alice", &["org", "update"])
        .await
        .failed(2, "nothing to change");
    serve
        .cli()
        .args(&["org", "frobnicate"])
        .run()
        .await
        .failed(2, "frobnicate");
    serve
        .cli()
        .args(&["org", "list"])
        .run()
        .await
        .failed(2, "no credentials");
    serve
        .cli()
        .args(&["org", "list", "--endpoint", "https://gateway.example.com"])
        .env("AGENTSHARE_TOKEN", "x")
        .run()
        .await
        .failed(2, "http://");
}

#[tokio::test]
async fn nothing_listens_at_the_endpoint_and_the_error_says_where_to_look() {
    let serve = Serve::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    serve
        .cli()
        .args(&["--as", "alice", "me", "--endpoint", &endpoint])
        .run()
        .await
        .failed(1, "UNAVAILABLE")
        .failed(1, &format!("endpoint: {endpoint}"))
        .failed(1, "is `agentshare serve` running there?");
}

#[tokio::test]
async fn contexts_name_an_endpoint_and_a_token_file_and_environment_overrides_them() {
    let serve = Serve::start().await;
    serve
        .as_user("alice", &["org", "create", "Acme"])
        .await
        .ok();
    // A token Alice keeps in a file, as a context refers to it.
    let token = serve
        .cli()
        .args(&["token", "--user", "alice", "--email", "alice@example.com"]);
    let token = token
        .args(&["--data-dir", serve.data_dir.path().to_str().expect("path")])
        .run()
        .await
        .ok()
        .stdout;
    let token_file = serve.config_dir.path().join("alice.token");
    std::fs::write(&token_file, token.trim()).expect("write token");

    serve
        .cli()
        .args(&[
            "context",
            "add",
            "local",
            "--endpoint",
            &serve.endpoint,
            "--token-file",
        ])
        .arg(token_file.to_str().expect("path"))
        .env_clear_endpoint()
        .run()
        .await
        .ok();
    let listed = serve.cli().args(&["context", "list"]).run().await.ok();
    assert!(
        listed.stdout.contains("*") && listed.stdout.contains("local"),
        "{}",
        listed.stdout
    );

    // The context alone reaches the server as Alice.
    let me = serve
        .cli()
        .args(&["me", "-o", "json"])
        .env_clear_endpoint()
        .run()
        .await
        .ok()
        .json();
    assert_eq!(me["user"]["email"], "alice@example.com");

    // The contexts file is its owner's only.
    use std::os::unix::fs::PermissionsExt as _;
    let file = serve.config_dir.path().join("contexts.yaml");
    let mode = std::fs::metadata(&file)
        .expect("contexts file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // AGENTSHARE_TOKEN wins over the context's token file.
    serve
        .cli()
        .args(&["me"])
        .env_clear_endpoint()
        .env("AGENTSHARE_TOKEN", "not-a-token")
        .run()
        .await
        .failed(1, "UNAUTHENTICATED");

    serve
        .cli()
        .args(&["context", "use", "staging"])
        .run()
        .await
        .failed(2, "no context named");
    serve
        .cli()
        .args(&["context", "remove", "local"])
        .run()
        .await
        .ok();
    let listed = serve
        .cli()
        .args(&["context", "list", "-q"])
        .run()
        .await
        .ok();
    assert_eq!(listed.stdout, "");
}

#[tokio::test]
async fn completion_scripts_are_generated_for_each_shell() {
    let serve = Serve::start().await;
    for shell in ["bash", "zsh", "fish"] {
        let script = serve.cli().args(&["completion", shell]).run().await.ok();
        assert!(
            script.stdout.contains("agentshare"),
            "{shell}: {}",
            script.stdout
        );
        assert!(
            script.stdout.contains("members"),
            "{shell} completes subcommands"
        );
    }
}
