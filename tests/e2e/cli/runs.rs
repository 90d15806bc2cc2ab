//! `agentshare invoke`, `items`, `automation` and `usage`: running the
//! README's research agent from a shell, its workspace store, a teammate's
//! automation from opt-in to a run in the inbox, and what it all cost.

use std::time::Duration;

use agentshare_e2e::cli::Serve;
use agentshare_e2e::eventually_within;
use serde_json::{Value, json};

/// The README's research agent as Alice builds it (over HTTP/JSON: the
/// `agent` commands are tested on their own): a SHARED search key of hers,
/// a USER_CONFIGURED CRM that Bob binds to his own, a daily automation, all
/// deployed and shared in the org; and Notes, a private agent of hers.
struct Story {
    research: String,
    notes: String,
}

async fn story(serve: &Serve) -> Story {
    let alice = serve.http("alice").await;
    let bob = serve.http("bob").await;
    alice.post("/orgs", json!({"name": "Acme"})).await;
    serve.as_user("bob", &["me"]).await.ok();
    alice
        .post(
            "/members",
            json!({"email": "bob@example.com", "role": "ORG_ROLE_MEMBER"}),
        )
        .await;
    let search = alice
        .post(
            "/connections:createApiKey",
            json!({"provider": "search", "apiKey": "srch-alice-123", "label": "Team search"}),
        )
        .await["connection"]["id"]
        .clone();
    let research = alice
        .post(
            "/agents",
            json!({"draft": {
                "name": "Research",
                "instructions": "Research accounts.",
                "tools": [
                    {"integrationKey": "web_search", "provider": "search",
                     "scope": "INTEGRATION_SCOPE_SHARED", "connectionId": search},
                    {"integrationKey": "crm", "provider": "crm",
                     "scope": "INTEGRATION_SCOPE_USER_CONFIGURED"}
                ],
                "automations": [{
                    "key": "digest",
                    "displayName": "Daily digest",
                    "schedule": {"daily": {"timeOfDay": {"hours": 8, "minutes": 0}}},
                    "timeZone": "UTC",
                    "task": "Summarize the day.",
                    "suggestedChannels": ["NOTIFICATION_CHANNEL_WEB"]
                }]
            }}),
        )
        .await["agent"]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    alice
        .post(
            &format!("/agents/{research}:deploy"),
            json!({"expectedDraftRevision": "1"}),
        )
        .await;
    alice
        .post(&format!("/agents/{research}:share"), json!({}))
        .await;
    let notes = alice
        .post(
            "/agents",
            json!({"draft": {"name": "Notes", "instructions": "Keep notes."}}),
        )
        .await["agent"]["id"]
        .as_str()
        .expect("agent id")
        .to_string();
    alice
        .post(
            &format!("/agents/{notes}:deploy"),
            json!({"expectedDraftRevision": "1"}),
        )
        .await;
    // Alice runs it on her own CRM; Bob binds his.
    let crm = alice
        .post(
            "/connections:createApiKey",
            json!({"provider": "crm", "apiKey": "alice-crm-key", "label": "Her CRM"}),
        )
        .await["connection"]["id"]
        .clone();
    alice
        .post(
            &format!("/agents/{research}/integrations/crm:bind"),
            json!({"connectionId": crm}),
        )
        .await;
    let crm = bob
        .post(
            "/connections:createApiKey",
            json!({"provider": "crm", "apiKey": "bob-crm-key", "label": "My CRM"}),
        )
        .await["connection"]["id"]
        .clone();
    bob.post(
        &format!("/agents/{research}/integrations/crm:bind"),
        json!({"connectionId": crm}),
    )
    .await;
    Story { research, notes }
}

/// The stream events `invoke -o json` printed, one per line.
fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The value of a `name  value` line of the footer.
fn footer<'a>(stderr: &'a str, name: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter(|rest| rest.starts_with("  "))
        .map(str::trim)
        .collect()
}

#[tokio::test]
async fn a_teammate_runs_the_shared_agent_and_sees_whose_connections_ran_and_who_pays() {
    let serve = Serve::start().await;
    let Story { research, .. } = story(&serve).await;

    // A holder names the shared agent as it is called.
    let ran = serve
        .as_user("bob", &["invoke", "Research", "Brief me on Initech"])
        .await
        .ok();
    // Stdout is the answer alone; the footer is on stderr.
    assert!(
        ran.stdout.starts_with("echo: Brief me on Initech\n"),
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("billed"), "{}", ran.stdout);
    assert_eq!(footer(&ran.stderr, "billed to"), ["you"], "{}", ran.stderr);
    assert_eq!(footer(&ran.stderr, "version"), ["1"], "{}", ran.stderr);
    assert_eq!(
        footer(&ran.stderr, "integration"),
        [
            "crm (crm): your connection",
            "web_search (search): the builder's shared connection"
        ],
        "{}",
        ran.stderr
    );
    let session = footer(&ran.stderr, "session")[0].to_string();

    // The session continues from stdin; -o json prints each event as a line.
    let ran = serve
        .cli()
        .args(&["--as", "bob", "invoke", &research, "--session", &session])
        .args(&["-o", "json"])
        .stdin("And Globex?\n/workspace_write {\"key\":\"plan\",\"value\":\"ship\"}\n")
        .run()
        .await
        .ok();
    let events = events(&ran.stdout);
    assert_eq!(events[0]["started"]["sessionId"], session.as_str());
    let completed = &events.last().expect("events")["completed"];
    assert_eq!(completed["sessionId"], session.as_str());
    assert_eq!(completed["billedTo"], "BILLED_PARTY_CALLER");
    let answer: String = events
        .iter()
        .filter_map(|e| e["textDelta"]["text"].as_str())
        .collect();
    assert_eq!(completed["outputText"], answer.as_str());
    assert!(answer.starts_with("echo: And Globex?"), "{answer}");
    assert!(
        events
            .iter()
            .any(|e| e["toolCall"]["toolName"] == "workspace_write"
                && e["toolCall"]["phase"] == "TOOL_CALL_PHASE_FINISHED"
                && e["toolCall"]["succeeded"] == true),
        "{}",
        ran.stdout
    );

    // --quiet prints the session, to continue it from a script.
    let quiet = serve
        .as_user(
            "bob",
            &[
                "invoke",
                &research,
                "Once more",
                "--session",
                &session,
                "-q",
            ],
        )
        .await
        .ok();
    assert_eq!(quiet.id(), session);

    // Alice tries her draft; Bob, who does not edit the agent, may not.
    let draft = serve
        .as_user("alice", &["invoke", &research, "Test the draft", "--draft"])
        .await
        .ok();
    assert_eq!(
        footer(&draft.stderr, "version"),
        ["draft"],
        "{}",
        draft.stderr
    );
    assert_eq!(
        footer(&draft.stderr, "integration"),
        [
            "crm (crm): the agent owner's connection",
            "web_search (search): the agent owner's connection"
        ],
        "{}",
        draft.stderr
    );
    serve
        .as_user("bob", &["invoke", &research, "Let me try", "--draft"])
        .await
        .failed(1, "error: PERMISSION_DENIED");
    // A run that fails exits 1 with its code.
    serve
        .as_user("bob", &["invoke", &research, "/fail MODEL_UNAVAILABLE"])
        .await
        .failed(1, "error: UNAVAILABLE");
    serve
        .cli()
        .args(&["--as", "bob", "invoke", &research])
        .stdin("\n")
        .run()
        .await
        .failed(2, "no input");

    // Bob's usage: his four runs of the agent, one failed.
    let summary = serve
        .as_user("bob", &["usage", "-o", "json"])
        .await
        .ok()
        .json();
    let rows = summary["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{summary}");
    assert_eq!(rows[0]["agentId"], research.as_str());
    assert_eq!(rows[0]["invocationCount"], "4");
    assert_eq!(rows[0]["succeededCount"], "3");
    assert_eq!(rows[0]["failedCount"], "1");
    let by_day = serve
        .as_user("bob", &["usage", "--by", "day", "--from", "2020-01-01"])
        .await
        .ok();
    let lines: Vec<&str> = by_day.stdout.lines().collect();
    assert!(lines[0].starts_with("PERIOD"), "{}", by_day.stdout);
    assert!(
        lines[1].contains(&research) && lines[1].split_whitespace().nth(2) == Some("4"),
        "{}",
        by_day.stdout
    );
    let records = serve
        .as_user("bob", &["usage", "runs", "--agent", &research])
        .await
        .ok();
    assert!(
        records.stdout.contains("crm: your connection"),
        "{}",
        records.stdout
    );
    assert_eq!(records.stdout.lines().count(), 5, "{}", records.stdout);
    // The owner reads every run of her agent, per billed account.
    let accounts = serve
        .as_user(
            "alice",
            &[
                "usage",
                "--agent",
                &research,
                "--everyone",
                "--group",
                "account",
            ],
        )
        .await
        .ok();
    assert_eq!(accounts.stdout.lines().count(), 3, "{}", accounts.stdout);
    serve
        .as_user("bob", &["usage", "--agent", &research, "--everyone"])
        .await
        .failed(1, "error: PERMISSION_DENIED");
    serve
        .as_user("bob", &["usage", "--from", "last week"])
        .await
        .failed(2, "--from");
}

#[tokio::test]
async fn the_workspace_store_is_listed_written_watched_and_a_private_item_published_one_way() {
    let serve = Serve::start().await;
    let Story { research, notes } = story(&serve).await;

    // Bob's run writes to the shared agent's store through a tool call.
    serve
        .as_user(
            "bob",
            &[
                "invoke",
                &research,
                "/workspace_write {\"key\":\"plan\",\"value\":\"ship\"}",
            ],
        )
        .await
        .ok();
    let listed = serve
        .as_user("bob", &["items", "list", &research, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(listed["items"][0]["key"], "plan");
    let partition = listed["partition"].as_str().expect("partition");
    assert!(
        partition.starts_with(&format!("agent-{research}/")),
        "{partition}"
    );
    let revision = listed["revision"].as_str().expect("revision").to_string();
    let table = serve
        .as_user("bob", &["items", "list", &research])
        .await
        .ok();
    assert!(
        table.stdout.contains("plan") && table.stdout.contains(partition),
        "{}",
        table.stdout
    );
    let value = serve
        .as_user("bob", &["items", "read", &research, "plan", "--raw"])
        .await
        .ok();
    assert_eq!(value.stdout, "ship");

    // A watch from the listed revision sees every later change.
    let watch_args = [
        "items", "watch", &research, "--after", &revision, "--count", "2", "-o", "json",
    ];
    let watch = serve.as_user("bob", &watch_args);
    let changes = async {
        let written = serve
            .cli()
            .args(&["--as", "bob", "items", "write", &research, "todo"])
            .args(&["--type", "json", "-o", "json"])
            .stdin("{\"call\": \"Initech\"}")
            .run()
            .await
            .ok()
            .json();
        assert_eq!(written["created"], true);
        serve
            .as_user("bob", &["items", "delete", &research, "todo"])
            .await
            .ok();
    };
    let (watched, ()) = tokio::join!(watch, changes);
    let watched = watched.ok();
    let changes: Vec<Value> = events(&watched.stdout)
        .into_iter()
        .filter_map(|e| e.get("change").cloned())
        .collect();
    assert_eq!(changes.len(), 2, "{}", watched.stdout);
    assert_eq!(changes[0]["kind"], "WORKSPACE_CHANGE_KIND_PUT");
    assert_eq!(changes[0]["item"]["value"], "{\"call\": \"Initech\"}");
    assert_eq!(changes[1]["kind"], "WORKSPACE_CHANGE_KIND_DELETE");
    assert_eq!(changes[1]["key"], "todo");

    // Compare-and-set, a value from a file, and a JSON value that is not.
    let plan = serve
        .as_user("bob", &["items", "read", &research, "plan", "-o", "json"])
        .await
        .ok()
        .json();
    let stale = plan["item"]["revision"]
        .as_str()
        .expect("revision")
        .to_string();
    let file = serve.config_dir.path().join("plan.txt");
    std::fs::write(&file, "ship on Friday").expect("write file");
    let file = file.to_str().expect("path");
    serve
        .as_user(
            "bob",
            &[
                "items",
                "write",
                &research,
                "plan",
                "--file",
                file,
                "--if-revision",
                &stale,
            ],
        )
        .await
        .ok();
    serve
        .as_user(
            "bob",
            &[
                "items",
                "write",
                &research,
                "plan",
                "--file",
                file,
                "--if-revision",
                &stale,
            ],
        )
        .await
        .failed(1, "error: ABORTED");
    serve
        .cli()
        .args(&[
            "--as", "bob", "items", "write", &research, "broken", "--type", "json",
        ])
        .stdin("{not json")
        .run()
        .await
        .failed(1, "error: INVALID_ARGUMENT");
    serve
        .as_user("bob", &["items", "delete", &research, "never-written"])
        .await
        .failed(1, "error: NOT_FOUND");

    // Alice's private note, published one way into the shared agent.
    serve
        .cli()
        .args(&["--as", "alice", "items", "write", &notes, "brief"])
        .stdin("Initech renews in May")
        .run()
        .await
        .ok();
    let published = serve
        .as_user(
            "alice",
            &[
                "items", "publish", &notes, "brief", "--to", &research, "-o", "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(published["created"], true);
    serve
        .cli()
        .args(&["--as", "alice", "items", "write", &notes, "brief"])
        .stdin("Initech renews in June")
        .run()
        .await
        .ok();
    let shared = serve
        .as_user("bob", &["items", "read", &research, "brief", "--raw"])
        .await
        .ok();
    assert_eq!(shared.stdout, "Initech renews in May");
    // Never the other way, and never into someone's private store.
    serve
        .as_user(
            "alice",
            &["items", "publish", &research, "brief", "--to", &notes],
        )
        .await
        .failed(1, "error: FAILED_PRECONDITION");
    serve
        .as_user("bob", &["items", "list", &notes])
        .await
        .failed(1, "error: NOT_FOUND");
}

/// Makes the subscription due now, as the scheduler would find it at its
/// next scheduled time, so a run starts without waiting for 08:00 UTC.
async fn due_now(serve: &Serve, subscription: &str) {
    let path = serve.data_dir.path().join("scheduler.db");
    let db = agentshare_kit::db::Db::connect(&agentshare_kit::config::sqlite_url(&path), 1)
        .await
        .expect("the scheduler's database");
    let now = agentshare_kit::clock::Clock::system().now_micros();
    let updated = sqlx::query("UPDATE subscriptions SET next_run_at = $1 WHERE id = $2")
        .bind(now - 1_000_000)
        .bind(subscription)
        .execute(&db.pool)
        .await
        .expect("make the subscription due");
    assert_eq!(updated.rows_affected(), 1);
}

/// Runs `args` as Bob until `done` holds for its JSON, for at most 30 s.
async fn until(serve: &Serve, args: &[&str], done: impl Fn(&Value) -> bool) -> Value {
    eventually_within(
        Duration::from_secs(30),
        &format!("agentshare {args:?} getting there"),
        || async {
            let answer = serve.as_user("bob", args).await.ok().json();
            if done(&answer) {
                Ok(answer)
            } else {
                Err(answer.to_string())
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_teammate_opts_into_an_automation_and_its_run_lands_in_the_inbox() {
    let serve = Serve::start().await;
    let Story { research, .. } = story(&serve).await;

    let listed = serve
        .as_user("bob", &["automation", "list", &research])
        .await
        .ok();
    assert!(
        listed.stdout.contains("digest") && listed.stdout.contains("not subscribed"),
        "{}",
        listed.stdout
    );
    // Subscribed, it stays off until Bob enables it.
    let subscribed = serve
        .as_user(
            "bob",
            &["automation", "subscribe", &research, "digest", "-o", "json"],
        )
        .await
        .ok()
        .json();
    assert_eq!(
        subscribed["subscription"]["status"],
        "SUBSCRIPTION_STATUS_DISABLED"
    );
    let subscription = subscribed["subscription"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let enabled = serve
        .as_user("bob", &["automation", "enable", &subscription])
        .await
        .ok();
    assert!(enabled.stdout.contains("status"), "{}", enabled.stdout);
    assert!(
        footer(&enabled.stdout, "status") == ["active"],
        "{}",
        enabled.stdout
    );
    let paused = serve
        .as_user(
            "bob",
            &[
                "automation",
                "pause",
                &subscription,
                "--for",
                "2h",
                "-o",
                "json",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(
        paused["subscription"]["status"],
        "SUBSCRIPTION_STATUS_PAUSED"
    );
    assert!(
        paused["subscription"]["pausedUntil"].is_string(),
        "{paused}"
    );
    let resumed = serve
        .as_user(
            "bob",
            &["automation", "resume", &research, "digest", "-o", "json"],
        )
        .await
        .ok()
        .json();
    assert_eq!(
        resumed["subscription"]["status"],
        "SUBSCRIPTION_STATUS_ACTIVE"
    );
    let next = serve
        .as_user("bob", &["automation", "next", &subscription])
        .await
        .ok();
    assert_eq!(
        next.stdout
            .lines()
            .filter(|l| l.contains("08:00:00"))
            .count(),
        3,
        "{}",
        next.stdout
    );
    let mine = serve
        .as_user("bob", &["automation", "mine", "-q"])
        .await
        .ok();
    assert_eq!(mine.id(), subscription);

    // A run: it succeeds as Bob and notifies his inbox.
    due_now(&serve, &subscription).await;
    let runs = until(
        &serve,
        &["automation", "runs", &subscription, "-o", "json"],
        |runs| runs["runs"][0]["status"] == "AUTOMATION_RUN_STATUS_SUCCEEDED",
    )
    .await;
    let run = runs["runs"][0]["id"].as_str().expect("run id").to_string();
    let table = serve
        .as_user("bob", &["automation", "runs", &research, "digest"])
        .await
        .ok();
    assert!(
        table.stdout.contains("succeeded") && table.stdout.contains("echo: Summarize the day."),
        "{}",
        table.stdout
    );
    let inbox = until(&serve, &["automation", "inbox", "-o", "json"], |inbox| {
        inbox["unreadCount"] == 1
    })
    .await;
    let item = inbox["items"][0]["id"]
        .as_str()
        .expect("item id")
        .to_string();
    assert_eq!(inbox["items"][0]["runId"], run.as_str());
    let shown = serve
        .as_user("bob", &["automation", "run", &run])
        .await
        .ok();
    assert_eq!(
        footer(&shown.stdout, "web"),
        ["delivered"],
        "{}",
        shown.stdout
    );
    let unread = serve
        .as_user("bob", &["automation", "inbox", "--unread"])
        .await
        .ok();
    assert!(
        unread.stdout.contains(&item) && unread.stdout.ends_with("1 unread\n"),
        "{}",
        unread.stdout
    );
    let marked = serve
        .as_user("bob", &["automation", "inbox", "read", &item])
        .await
        .ok();
    assert_eq!(
        footer(&marked.stdout, "marked read"),
        ["1"],
        "{}",
        marked.stdout
    );
    assert_eq!(footer(&marked.stdout, "unread"), ["0"], "{}", marked.stdout);

    // Off, then gone; the run stays in the history.
    let disabled = serve
        .as_user(
            "bob",
            &["automation", "disable", &research, "digest", "-o", "json"],
        )
        .await
        .ok()
        .json();
    assert_eq!(
        disabled["subscription"]["status"],
        "SUBSCRIPTION_STATUS_DISABLED"
    );
    let gone = serve
        .as_user("bob", &["automation", "unsubscribe", &subscription, "-q"])
        .await
        .ok();
    assert_eq!(gone.id(), subscription);
    let history = serve
        .as_user("bob", &["automation", "runs", "-q"])
        .await
        .ok();
    assert_eq!(history.id(), run);

    serve
        .as_user("bob", &["automation", "subscribe", &research, "weekly"])
        .await
        .failed(1, "error: NOT_FOUND");
    serve
        .as_user("bob", &["automation", "enable", &subscription])
        .await
        .failed(1, "error: NOT_FOUND");
    serve
        .as_user("bob", &["automation", "pause", &research, "digest"])
        .await
        .failed(2, "--until");
}
