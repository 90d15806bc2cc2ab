//! `agentshare agent`, `workspace` and `apikey`: the builder's agent from a
//! definition file through deploys, diffs, rollbacks, templates and
//! workspaces, the org's workspaces and members, and API keys shown once.

use agentshare_e2e::cli::Serve;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::sharing::v1::connections_service_client::ConnectionsServiceClient;

/// The README's research agent as the repository ships it.
const EXAMPLE: &str = include_str!("../../../examples/research-agent.yaml");

/// A `search` connection of `user`'s, made over gRPC (the connection
/// commands are not what these tests are about).
async fn search_connection(serve: &Serve, user: &str) -> String {
    let token = serve
        .cli()
        .args(&["token", "--user", user, "--email"])
        .arg(format!("{user}@example.com"))
        .args(&["--data-dir", serve.data_dir.path().to_str().expect("path")])
        .run()
        .await
        .ok()
        .stdout;
    let channel = tonic::transport::Endpoint::from_shared(serve.endpoint.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut request = tonic::Request::new(sharing::CreateApiKeyConnectionRequest {
        provider: "search".into(),
        api_key: "srch-team-0001".into(),
        label: "Team search".into(),
        expire_time: None,
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().expect("header"),
    );
    ConnectionsServiceClient::new(channel)
        .create_api_key_connection(request)
        .await
        .expect("create the search connection")
        .into_inner()
        .connection
        .expect("connection")
        .id
}

/// Writes `text` to a file in the test's config dir and returns its path.
fn file(serve: &Serve, name: &str, text: &str) -> String {
    let path = serve.config_dir.path().join(name);
    std::fs::write(&path, text).expect("write the definition");
    path.to_str().expect("path").to_string()
}

#[tokio::test]
async fn the_research_agent_is_defined_in_a_file_deployed_compared_rolled_back_and_deleted() {
    let serve = Serve::start().await;
    serve
        .as_user("alice", &["org", "create", "Acme"])
        .await
        .ok();
    let search = search_connection(&serve, "alice").await;
    assert!(
        EXAMPLE.contains("SEARCH_CONNECTION_ID"),
        "the documented placeholder"
    );
    let definition = file(
        &serve,
        "research-agent.yaml",
        &EXAMPLE.replace("SEARCH_CONNECTION_ID", &search),
    );

    let created = serve
        .as_user(
            "alice",
            &["agent", "create", "-f", &definition, "-o", "json"],
        )
        .await
        .ok()
        .json();
    let agent = created["agent"]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    let draft = &created["agent"]["draft"];
    assert_eq!(created["agent"]["state"], "AGENT_STATE_DRAFT");
    assert_eq!(draft["name"], "Research agent");
    assert_eq!(draft["tools"][0]["scope"], "INTEGRATION_SCOPE_SHARED");
    assert_eq!(draft["tools"][0]["connectionId"], search.as_str());
    assert_eq!(
        draft["tools"][1]["scope"],
        "INTEGRATION_SCOPE_USER_CONFIGURED"
    );
    assert_eq!(draft["automations"][0]["key"], "monday_brief");
    assert_eq!(draft["model"]["parameters"]["temperature"], 0.2);

    // For people: the tools with their scope; by name as well as by id.
    let shown = serve
        .as_user("alice", &["agent", "show", "Research agent"])
        .await
        .ok();
    assert!(
        shown.stdout.contains("web_search (search, shared")
            && shown.stdout.contains("crm (crm, user configured)"),
        "{}",
        shown.stdout
    );

    let deployed = serve
        .as_user(
            "alice",
            &[
                "agent",
                "deploy",
                &agent,
                "--notes",
                "first cut",
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(deployed["version"]["number"], "1");
    assert_eq!(deployed["created"], true);
    assert_eq!(deployed["agent"]["state"], "AGENT_STATE_ACTIVE");

    // An update names only what changes; the rest of the draft stays.
    let updated = serve
        .cli()
        .args(&[
            "--as", "alice", "agent", "update", &agent, "-f", "-", "-o", "json",
        ])
        .stdin(
            r#"{"instructions": "You research companies before sales calls.\nCite every source."}"#,
        )
        .run()
        .await
        .ok()
        .json();
    assert_eq!(updated["agent"]["draftRevision"], "2");
    assert_eq!(updated["agent"]["draft"]["name"], "Research agent");
    assert_eq!(
        updated["agent"]["draft"]["tools"][0]["connectionId"],
        search.as_str()
    );

    // By default the diff is what deploying the draft would change.
    let pending = serve
        .as_user("alice", &["agent", "diff", &agent])
        .await
        .ok();
    assert!(
        pending
            .stdout
            .starts_with("1 change from version 1 to the draft:")
            && pending.stdout.contains("~ instructions:")
            && pending.stdout.contains("    + Cite every source.")
            && pending
                .stdout
                .contains("    - Search the web for recent news"),
        "{}",
        pending.stdout
    );

    serve
        .as_user("alice", &["agent", "deploy", &agent])
        .await
        .ok();
    let again = serve
        .as_user("alice", &["agent", "deploy", &agent])
        .await
        .ok();
    assert!(
        again.stdout.contains("no new version was made"),
        "{}",
        again.stdout
    );

    let versions = serve
        .as_user("alice", &["agent", "versions", &agent, "-o", "json"])
        .await
        .ok()
        .json();
    let numbers: Vec<&str> = versions["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["number"].as_str().expect("number"))
        .collect();
    assert_eq!(numbers, ["2", "1"], "newest first");
    let table = serve
        .as_user("alice", &["agent", "versions", &agent])
        .await
        .ok();
    assert!(
        table.stdout.starts_with("VERSION") && table.stdout.contains("first cut"),
        "{}",
        table.stdout
    );

    let diff = serve
        .as_user(
            "alice",
            &[
                "agent", "diff", &agent, "--from", "1", "--to", "2", "-o", "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(diff["changes"][0]["fieldPath"], "instructions");
    assert_eq!(diff["changes"][0]["kind"], "FIELD_CHANGE_KIND_MODIFIED");

    let rolled = serve
        .as_user(
            "alice",
            &["agent", "rollback", &agent, "--to", "1", "-o", "json"],
        )
        .await
        .ok()
        .json();
    assert_eq!(rolled["version"]["number"], "3");
    assert_eq!(rolled["version"]["origin"], "VERSION_ORIGIN_ROLLBACK");
    assert_eq!(rolled["version"]["rollbackOfVersionNumber"], "1");
    serve
        .as_user(
            "alice",
            &["agent", "rollback", &agent, "--to", "1", "--if-latest", "2"],
        )
        .await
        .failed(1, "error: ABORTED: ");

    // A version printed as a definition reads back as one: the draft
    // returns to version 1's content, so nothing is left to deploy.
    let v1 = serve
        .as_user(
            "alice",
            &["agent", "show", &agent, "--version", "1", "--definition"],
        )
        .await
        .ok()
        .stdout;
    assert!(v1.starts_with("name: Research agent\n"), "name first: {v1}");
    assert!(!v1.contains("Cite every source"), "{v1}");
    serve
        .cli()
        .args(&[
            "--as",
            "alice",
            "agent",
            "update",
            &agent,
            "-f",
            "-",
            "--replace",
        ])
        .stdin(v1)
        .run()
        .await
        .ok();
    let nothing = serve
        .as_user("alice", &["agent", "diff", &agent, "--from", "3"])
        .await
        .ok();
    assert_eq!(
        nothing.stdout,
        "no differences from version 3 to the draft\n"
    );

    // A stale revision is refused, with what to do about it.
    let stale = file(&serve, "stale.yaml", "description: late\n");
    serve
        .as_user(
            "alice",
            &["agent", "update", &agent, "-f", &stale, "--revision", "1"],
        )
        .await
        .failed(1, "error: ABORTED: ")
        .failed(1, "hint: someone changed the draft");
    // A field that does not fit names the file and the field, and nothing
    // reaches the server.
    let wrong = file(
        &serve,
        "wrong.yaml",
        "name: Research agent\ntools:\n  - integrationKey: crm\n    scope: PERSONAL\n",
    );
    serve
        .as_user("alice", &["agent", "update", &agent, "-f", &wrong])
        .await
        .failed(
            2,
            "wrong.yaml: tools[0].scope: unrecognized enum value 'PERSONAL'",
        );
    serve
        .as_user(
            "alice",
            &["agent", "create", "-f", "/nonexistent/agent.yaml"],
        )
        .await
        .failed(2, "cannot read /nonexistent/agent.yaml");
    serve
        .as_user("alice", &["agent", "deploy", "No such agent"])
        .await
        .failed(2, "no agent you can see is named \"No such agent\"");

    let listed = serve
        .as_user("alice", &["agent", "list", "--mine", "-q"])
        .await
        .ok();
    assert_eq!(listed.id(), agent);
    let deleted = serve
        .as_user("alice", &["agent", "delete", &agent, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(deleted["agent"]["state"], "AGENT_STATE_DELETED");
    let listed = serve.as_user("alice", &["agent", "list", "-q"]).await.ok();
    assert!(!listed.stdout.contains(&agent), "{}", listed.stdout);
    serve
        .as_user("alice", &["agent", "deploy", &agent])
        .await
        .failed(1, "error: NOT_FOUND: ");
}

#[tokio::test]
async fn workspaces_are_created_joined_switched_to_and_an_agent_reaches_several() {
    let serve = Serve::start().await;
    let org = serve
        .as_user("alice", &["org", "create", "Acme", "-o", "json"])
        .await
        .ok()
        .json();
    let default = org["defaultWorkspace"]["id"]
        .as_str()
        .expect("default workspace")
        .to_string();
    serve
        .as_user("alice", &["workspace", "create", "Sales"])
        .await
        .failed(1, "error: FAILED_PRECONDITION: ");
    serve
        .as_user("alice", &["org", "update", "--workspaces", "true"])
        .await
        .ok();
    let sales = serve
        .as_user("alice", &["workspace", "create", "Sales", "-q"])
        .await
        .ok()
        .id();
    serve
        .as_user("alice", &["workspace", "create", "Sales"])
        .await
        .failed(1, "error: ALREADY_EXISTS: ");

    let listed = serve.as_user("alice", &["workspace", "list"]).await.ok();
    let current: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|line| line.starts_with('*'))
        .collect();
    assert!(
        current.len() == 1 && current[0].contains(&default) && current[0].contains("Default"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains("Sales"), "{}", listed.stdout);

    // Bob joins the org, then Sales, by email.
    serve.as_user("bob", &["me"]).await.ok();
    let bob = serve
        .as_user("alice", &["org", "members", "add", "bob@example.com", "-q"])
        .await
        .ok()
        .id();
    let added = serve
        .as_user(
            "alice",
            &[
                "workspace",
                "members",
                "add",
                "bob@example.com",
                "--role",
                "admin",
                "--workspace",
                &sales,
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(added["member"]["user"]["id"], bob.as_str());
    assert_eq!(added["member"]["role"], "WORKSPACE_ROLE_ADMIN");
    serve
        .as_user(
            "alice",
            &[
                "workspace",
                "members",
                "role",
                &bob,
                "member",
                "--workspace",
                &sales,
            ],
        )
        .await
        .ok();
    let members = serve
        .as_user(
            "alice",
            &[
                "workspace",
                "members",
                "list",
                "--workspace",
                &sales,
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    let roles: Vec<&str> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["WORKSPACE_ROLE_OWNER", "WORKSPACE_ROLE_MEMBER"]);
    serve
        .as_user(
            "alice",
            &[
                "workspace",
                "members",
                "add",
                "carol@example.com",
                "--workspace",
                &sales,
            ],
        )
        .await
        .failed(2, "no member of the org has the email carol@example.com");

    let renamed = serve
        .as_user(
            "alice",
            &[
                "workspace",
                "rename",
                &sales,
                "--name",
                "Sales EMEA",
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(renamed["workspace"]["name"], "Sales EMEA");
    let shown = serve
        .as_user("alice", &["workspace", "show", &sales])
        .await
        .ok();
    assert!(
        shown.stdout.contains("Sales EMEA") && shown.stdout.contains("your role  owner"),
        "{}",
        shown.stdout
    );

    // Alice's research agent, made at home, reaches Sales too.
    let agent = serve
        .cli()
        .args(&["--as", "alice", "agent", "create", "-f", "-", "-q"])
        .stdin("name: Research agent\ninstructions: Research accounts.\n")
        .run()
        .await
        .ok()
        .id();
    serve
        .as_user("alice", &["agent", "deploy", &agent])
        .await
        .ok();
    let set = serve
        .as_user(
            "alice",
            &[
                "agent",
                "workspaces",
                &agent,
                "set",
                &default,
                &sales,
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(set["addedWorkspaceIds"][0], sales.as_str());
    let reach = serve
        .as_user("alice", &["agent", "workspaces", &agent, "get", "-q"])
        .await
        .ok();
    assert_eq!(
        reach.stdout.lines().collect::<Vec<_>>(),
        [default.as_str(), sales.as_str()],
        "home first"
    );
    let table = serve
        .as_user("alice", &["agent", "workspaces", &agent, "get"])
        .await
        .ok();
    assert!(
        table.stdout.contains("Sales EMEA") && table.stdout.contains("yes"),
        "{}",
        table.stdout
    );
    serve
        .as_user("bob", &["agent", "workspaces", &agent, "set", &sales])
        .await
        .failed(1, "error: NOT_FOUND: ");

    // A switch lasts when saved in the context in use.
    let token = serve
        .cli()
        .args(&["token", "--user", "alice", "--email", "alice@example.com"])
        .args(&["--data-dir", serve.data_dir.path().to_str().expect("path")])
        .run()
        .await
        .ok()
        .stdout;
    let token_file = file(&serve, "alice.token", token.trim());
    serve
        .cli()
        .args(&["context", "add", "local", "--endpoint", &serve.endpoint])
        .args(&["--token-file", &token_file])
        .run()
        .await
        .ok();
    let switched = serve
        .cli()
        .args(&["workspace", "switch", &sales])
        .env_clear_endpoint()
        .run()
        .await
        .ok();
    assert!(
        switched
            .stdout
            .contains("saved as the workspace of context local"),
        "{}",
        switched.stdout
    );
    let me = serve
        .cli()
        .args(&["me", "-o", "json"])
        .env_clear_endpoint()
        .run()
        .await
        .ok()
        .json();
    assert_eq!(me["workspaceId"], sales.as_str());
    serve
        .cli()
        .args(&["context", "remove", "local"])
        .run()
        .await
        .ok();

    // The default workspace is never deleted; Sales is, with its members.
    serve
        .as_user("alice", &["workspace", "delete", &default])
        .await
        .failed(1, "error: FAILED_PRECONDITION: ");
    serve
        .as_user(
            "alice",
            &[
                "workspace",
                "members",
                "remove",
                "bob@example.com",
                "--workspace",
                &sales,
            ],
        )
        .await
        .ok();
    serve
        .as_user("alice", &["workspace", "delete", &sales])
        .await
        .ok();
    let left = serve
        .as_user("alice", &["workspace", "list", "-q"])
        .await
        .ok();
    assert_eq!(left.id(), default);
}

#[tokio::test]
async fn templates_start_new_agents_and_api_keys_are_shown_once_and_revoked() {
    let serve = Serve::start().await;
    serve
        .as_user("alice", &["org", "create", "Acme"])
        .await
        .ok();
    serve.as_user("bob", &["me"]).await.ok();
    serve
        .as_user("alice", &["org", "members", "add", "bob@example.com"])
        .await
        .ok();

    let agent = serve
        .cli()
        .args(&["--as", "alice", "agent", "create", "-f", "-", "-q"])
        .stdin("name: Research agent\ninstructions: Research accounts.\n")
        .run()
        .await
        .ok()
        .id();
    serve
        .as_user("alice", &["agent", "template", "create", &agent])
        .await
        .failed(1, "has no deployed version to publish");
    serve
        .as_user("alice", &["agent", "deploy", &agent])
        .await
        .ok();
    let published = serve
        .as_user(
            "alice",
            &[
                "agent",
                "template",
                "create",
                "Research agent",
                "--name",
                "Research",
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    let template = published["template"]["id"]
        .as_str()
        .expect("template id")
        .to_string();
    assert_eq!(published["template"]["sourceVersionNumber"], "1");

    let listed = serve
        .as_user("bob", &["agent", "template", "list"])
        .await
        .ok();
    assert!(
        listed.stdout.starts_with("ID") && listed.stdout.contains("Research"),
        "{}",
        listed.stdout
    );
    let shown = serve
        .as_user(
            "bob",
            &["agent", "template", "show", &template, "-o", "json"],
        )
        .await
        .ok()
        .json();
    assert_eq!(
        shown["template"]["content"]["instructions"],
        "Research accounts."
    );
    let bobs = serve
        .as_user(
            "bob",
            &[
                "agent",
                "template",
                "use",
                &template,
                "--name",
                "Bob's research",
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(bobs["agent"]["draft"]["name"], "Bob's research");
    assert_eq!(bobs["agent"]["state"], "AGENT_STATE_DRAFT");
    assert_ne!(
        bobs["agent"]["ownerUserId"],
        published["template"]["publisherUserId"]
    );

    // The key is printed once, alone with --quiet, and a warning says so.
    let created = serve
        .as_user(
            "alice",
            &["apikey", "create", "ci", "--expires-in", "30d", "-q"],
        )
        .await
        .ok();
    let secret = created.id();
    assert!(secret.starts_with("ask_"), "{secret}");
    assert!(
        created.stderr.contains("shown only once"),
        "{}",
        created.stderr
    );
    let me = serve
        .cli()
        .args(&["me", "-o", "json"])
        .env("AGENTSHARE_TOKEN", secret.as_str())
        .run()
        .await
        .ok()
        .json();
    assert_eq!(me["credentialKind"], "CREDENTIAL_KIND_API_KEY");

    let for_people = serve
        .as_user("alice", &["apikey", "create", "laptop"])
        .await
        .ok();
    assert!(
        for_people.stdout.contains("key ") && for_people.stdout.contains("ask_"),
        "{}",
        for_people.stdout
    );

    let keys = serve
        .as_user("alice", &["apikey", "list", "-o", "json"])
        .await
        .ok();
    assert!(!keys.stdout.contains(&secret), "never the secret again");
    let keys = keys.json();
    let ci = keys["apiKeys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|key| key["label"] == "ci")
        .expect("the ci key");
    let ci_id = ci["id"].as_str().expect("id").to_string();
    assert!(secret.starts_with(ci["prefix"].as_str().expect("prefix")));
    assert!(ci["expireTime"].is_string());

    serve
        .as_user("alice", &["apikey", "revoke", &ci_id])
        .await
        .ok();
    let table = serve.as_user("alice", &["apikey", "list"]).await.ok();
    let ci_row = table
        .stdout
        .lines()
        .find(|line| line.contains(&ci_id))
        .expect("the ci key's row");
    assert!(ci_row.contains("revoked"), "{}", table.stdout);
    serve
        .cli()
        .args(&["me"])
        .env("AGENTSHARE_TOKEN", secret.as_str())
        .run()
        .await
        .failed(1, "API key revoked");
    serve
        .as_user("alice", &["apikey", "create", "ci", "--expires-in", "0d"])
        .await
        .failed(2, "in the future");
}
