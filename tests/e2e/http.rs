//! HTTP/JSON on the gateway's port (DESIGN.md, "The edge"), with a plain HTTP
//! client: the workspace routes under `/api/v1/` and their 400/403/409
//! answers, errors as JSON `google.rpc.Status`, NDJSON streams and the
//! OpenAPI document.

use agentshare_e2e::{Suite, UserClient};
use serde_json::{Value, json};

/// One caller over HTTP/JSON.
struct Http {
    base: String,
    token: Option<String>,
    workspace: Option<String>,
    client: reqwest::Client,
}

/// What an HTTP call answered.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an error answer: HTTP status, gRPC code, and a message part.
    fn assert_error(&self, status: u16, code: i64, message: &str) -> Value {
        let json = self.json();
        assert_eq!(self.status, status, "{json}");
        assert_eq!(json["code"], code, "{json}");
        assert!(
            json["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{json} does not say {message:?}"
        );
        json
    }
}

impl Http {
    fn new(suite: &Suite, token: Option<String>) -> Self {
        Self {
            base: format!("http://{}", suite.gateway_addr()),
            token,
            workspace: None,
            client: reqwest::Client::new(),
        }
    }

    fn in_workspace(&self, workspace: &str) -> Self {
        Self {
            base: self.base.clone(),
            token: self.token.clone(),
            workspace: Some(workspace.to_string()),
            client: self.client.clone(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(workspace) = &self.workspace {
            request = request.header("x-agentshare-workspace", workspace);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the gateway answers HTTP");
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body").to_vec(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// A call that must succeed; its JSON answer.
    async fn ok(&self, answer: Answer) -> Value {
        let json = answer.json();
        assert_eq!(answer.status, 200, "{json}");
        json
    }
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|w| w["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Alice owns an org with workspaces on, and a stepped-up HTTP client.
async fn acme(suite: &Suite) -> (UserClient, Http, String) {
    let alice = suite.user("alice").await;
    let org = alice.new_org("Acme").await;
    let strong = alice.with_token(&suite.token_with("alice", true, 7200));
    strong.enable_workspaces().await;
    let http = Http::new(suite, Some(suite.token_with("alice", true, 7200)));
    (strong, http, org.default_workspace_id)
}

#[tokio::test]
async fn the_seed_workspace_routes_answer_as_written() {
    let suite = Suite::start().await;
    let (alice, http, default_ws) = acme(&suite).await;
    let sales = alice.create_workspace("Sales").await;
    let agent = alice.deployed_agent("Research").await;

    // GET lists the home workspace; PATCH replaces the list and keeps it.
    let listed = http
        .ok(http
            .get(&format!("/api/v1/agents/{}/workspaces", agent.id))
            .await)
        .await;
    assert_eq!(
        ids(&listed["sharing"]["workspaces"]),
        vec![default_ws.clone()]
    );
    let set = http
        .ok(http
            .patch(
                &format!("/api/v1/agents/{}/workspaces", agent.id),
                json!({ "workspace_ids": [sales] }),
            )
            .await)
        .await;
    let mut both = vec![default_ws.clone(), sales.clone()];
    both.sort();
    assert_eq!(ids(&set["sharing"]["workspaces"]), both, "{set}");
    let listed = http
        .ok(http
            .get(&format!("/api/v1/agents/{}/workspaces", agent.id))
            .await)
        .await;
    assert_eq!(ids(&listed["sharing"]["workspaces"]), both);

    // Without step-up, changing the list is refused.
    let weak = Http::new(&suite, Some(suite.token("alice")));
    weak.patch(
        &format!("/api/v1/agents/{}/workspaces", agent.id),
        json!({ "workspace_ids": [] }),
    )
    .await
    .assert_error(403, 7, "step-up required");

    // Switching the session's workspace: a new agent lands in it.
    let switched = http
        .ok(http
            .post(
                "/api/v1/workspaces/switch",
                json!({ "workspace_id": sales }),
            )
            .await)
        .await;
    assert_eq!(switched["workspace"]["id"], sales.as_str(), "{switched}");
    let created = http
        .ok(http
            .post(
                "/api/v1/agents",
                json!({ "draft": { "name": "Sales helper" } }),
            )
            .await)
        .await;
    assert_eq!(
        created["agent"]["homeWorkspaceId"],
        sales.as_str(),
        "{created}"
    );

    // The seed's status codes.
    http.delete(&format!("/api/v1/workspaces/{default_ws}"))
        .await
        .assert_error(400, 9, "default workspace can never be deleted");
    http.delete(&format!("/api/v1/workspaces/{sales}"))
        .await
        .assert_error(409, 10, "Sales helper");
    let default_agent = http.ok(http.get("/api/v1/defaultAgent").await).await;
    let default_id = default_agent["agent"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    http.post(&format!("/api/v1/agents/{default_id}:share"), json!({}))
        .await
        .assert_error(403, 7, "default agent");
    http.patch(
        &format!("/api/v1/agents/{default_id}/workspaces"),
        json!({ "workspace_ids": [sales] }),
    )
    .await
    .assert_error(403, 7, "default agent");

    // Once the agent is gone, the workspace can go.
    let helper = created["agent"]["id"].as_str().expect("id").to_string();
    http.ok(http.delete(&format!("/api/v1/agents/{helper}")).await)
        .await;
    http.post(
        "/api/v1/workspaces/switch",
        json!({ "workspace_id": default_ws }),
    )
    .await;
    http.ok(http.delete(&format!("/api/v1/workspaces/{sales}")).await)
        .await;
    suite.stop().await;
}

#[tokio::test]
async fn errors_are_json_status_with_their_details() {
    let suite = Suite::start().await;
    let (_alice, http, _) = acme(&suite).await;

    let nobody = Http::new(&suite, None);
    let answer = nobody.get("/api/v1/me").await;
    answer.assert_error(401, 16, "missing credential");
    assert!(answer.headers.contains_key("www-authenticate"));

    let bad = http
        .post(
            "/api/v1/workspaces",
            json!({ "name": "Ops", "colour": "red" }),
        )
        .await
        .assert_error(400, 3, "invalid argument");
    assert_eq!(
        bad["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(bad["details"][0]["fieldViolations"][0]["field"], "body");

    let malformed = http
        .get("/api/v1/agents/not-a-uuid")
        .await
        .assert_error(400, 3, "agent_id");
    assert!(!malformed.to_string().contains("not-a-uuid"), "{malformed}");

    http.get("/api/v1/nowhere")
        .await
        .assert_error(404, 5, "no route");
    let wrong = http
        .call(
            reqwest::Method::PUT,
            "/api/v1/workspaces/switch",
            Some(json!({})),
        )
        .await;
    assert_eq!(wrong.status, 405);
    assert_eq!(
        wrong.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );

    // Form bodies are refused with what to send instead.
    let form = http
        .client
        .post(format!("{}/api/v1/orgs", http.base))
        .header("authorization", format!("Bearer {}", suite.token("alice")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Acme")
        .send()
        .await
        .expect("answer");
    assert_eq!(form.status().as_u16(), 400);

    let document = Http::new(&suite, None)
        .ok(Http::new(&suite, None).get("/api/v1/openapi.json").await)
        .await;
    assert_eq!(document["openapi"], "3.0.3");
    for (path, method) in [
        ("/api/v1/agents/{agent_id}/workspaces", "get"),
        ("/api/v1/agents/{agent_id}/workspaces", "patch"),
        ("/api/v1/workspaces/switch", "post"),
        ("/api/v1/workspaces/{workspace_id}", "delete"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    suite.stop().await;
}

#[tokio::test]
async fn streams_answer_newline_delimited_json() {
    let suite = Suite::start().await;
    let (alice, http, default_ws) = acme(&suite).await;
    let agent = alice.deployed_agent("Echo").await;
    let http = http.in_workspace(&default_ws);

    let answer = http
        .post(
            &format!("/api/v1/agents/{}:invokeStream", agent.id),
            json!({ "input": "hello\n/workspace_write {\"key\":\"plan\",\"value\":\"ship\"}" }),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&answer.body)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert!(
        lines[0]["result"]["started"]["sessionId"].is_string(),
        "{lines:?}"
    );
    let last = lines.last().expect("lines");
    assert_eq!(
        last["result"]["completed"]["finishReason"], "FINISH_REASON_COMPLETED",
        "{last}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["result"]["toolCall"]["toolName"] == "workspace_write")
    );
    let read = http
        .ok(http
            .get(&format!("/api/v1/agents/{}/store:read?key=plan", agent.id))
            .await)
        .await;
    assert_eq!(read["item"]["value"], "ship", "{read}");

    // A stream refused before it starts answers like a unary call.
    http.post(
        &format!("/api/v1/agents/{}:invokeStream", uuid::Uuid::now_v7()),
        json!({ "input": "hi" }),
    )
    .await
    .assert_error(404, 5, "not found");
    suite.stop().await;
}

#[tokio::test]
async fn the_message_limits_hold_over_http_too() {
    let suite = Suite::start().await;
    let (_alice, http, _) = acme(&suite).await;

    // A body past max_message_bytes (4 MiB by default) is 429, naming it.
    let huge = json!({ "draft": { "name": "Big", "instructions": "x".repeat(5 * 1024 * 1024) } });
    http.post("/api/v1/agents", huge)
        .await
        .assert_error(429, 8, "max_message_bytes");

    // Parameters nested 40 levels: the protobuf check names the field.
    let mut parameters = json!("leaf");
    for _ in 0..40 {
        parameters = json!({ "deeper": parameters });
    }
    let deep = json!({ "draft": { "name": "Deep", "model": { "parameters": parameters } } });
    let refused = http
        .post("/api/v1/agents", deep)
        .await
        .assert_error(400, 3, "max_nesting_depth");
    assert_eq!(
        refused["details"][0]["fieldViolations"][0]["field"], "draft.model.parameters",
        "{refused}"
    );

    // Past what the JSON reader takes at all: the depth allowed is named.
    let body = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let answer = http
        .client
        .post(format!("{}/api/v1/agents", http.base))
        .header("authorization", format!("Bearer {}", suite.token("alice")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 400);
    let json: Value = serde_json::from_slice(&answer.bytes().await.expect("body")).expect("json");
    assert!(
        json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 100"),
        "{json}"
    );
    suite.stop().await;
}
