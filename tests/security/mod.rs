//! The attack matrix: one table of attacks per area (identity, grants and
//! run tokens, tenancy, the store, resource limits, existence, secrets,
//! budgets and org policy),
//! each row run through the gateway over gRPC and, where the contract
//! gives the RPC an HTTP route, over HTTP/JSON too. Every row asserts the
//! exact code, that the answer names nothing of the victim, and that what
//! the attack could have changed reads back the same afterwards.
//!
//! Each file seeds one suite and runs its whole table against it; the
//! files are separate tests, so they run in parallel.

mod budgets;
mod existence;
mod grants;
mod identity;
mod limits;
mod secrets;
mod store;
mod tenancy;

use std::future::Future;
use std::pin::Pin;

use agentshare_e2e::{Suite, UserClient};
use serde_json::Value;
use tonic::{Code, Status};

pub type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Who makes a call: the same credentials and scope headers over gRPC
/// metadata and HTTP headers.
#[derive(Clone, Default)]
pub struct Caller {
    pub token: Option<String>,
    pub org: Option<String>,
    pub workspace: Option<String>,
    pub grant: Option<String>,
}

impl Caller {
    pub fn bearer(token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..Self::default()
        }
    }

    pub fn nobody() -> Self {
        Self::default()
    }

    pub fn in_workspace(mut self, workspace: &str) -> Self {
        self.workspace = Some(workspace.to_string());
        self
    }

    pub fn with_grant(mut self, token: &str) -> Self {
        self.grant = Some(token.to_string());
        self
    }

    fn client(&self, anonymous: &UserClient) -> UserClient {
        let mut client = anonymous.clone();
        if let Some(token) = &self.token {
            client = client.with_token(token);
        }
        if let Some(org) = &self.org {
            client = client.in_org(org);
        }
        if let Some(workspace) = &self.workspace {
            client = client.in_workspace(workspace);
        }
        if let Some(grant) = &self.grant {
            client = client.with_grant(grant);
        }
        client
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(token) = &self.token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        if let Some(org) = &self.org {
            headers.push(("x-agentshare-org", org.clone()));
        }
        if let Some(workspace) = &self.workspace {
            headers.push(("x-agentshare-workspace", workspace.clone()));
        }
        if let Some(grant) = &self.grant {
            headers.push(("x-agentshare-grant-token", grant.clone()));
        }
        headers
    }
}

/// Whether a successful answer was the right one.
type Accepts = Box<dyn FnOnce() -> Result<(), String> + Send>;

type GrpcCall = Box<dyn FnOnce(UserClient) -> Boxed<Result<(), Status>> + Send>;

/// An HTTP/JSON request: method, path (with query) and body.
pub struct HttpCall {
    pub method: reqwest::Method,
    pub path: String,
    pub body: Option<String>,
}

/// One attack, ready to send.
pub struct Attack {
    caller: Caller,
    grpc: Option<GrpcCall>,
    http: Option<HttpCall>,
    /// Part of the message the answer must carry (gRPC and HTTP alike).
    needle: String,
    /// Checks the successful answer of a row that expects OK.
    accepts: Option<Accepts>,
}

impl Attack {
    pub fn by(caller: &Caller) -> Self {
        Self {
            caller: caller.clone(),
            grpc: None,
            http: None,
            needle: String::new(),
            accepts: None,
        }
    }

    /// The gRPC form of the attack; `call` gets the caller's clients.
    pub fn grpc<F, Fut, T>(mut self, call: F) -> Self
    where
        F: FnOnce(UserClient) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
        T: std::fmt::Debug + Send + 'static,
    {
        self.grpc = Some(Box::new(move |client| {
            let answer = call(client);
            Box::pin(async move { answer.await.map(|ok| drop(format!("{ok:?}"))) })
        }));
        self
    }

    /// The gRPC form, for a row that expects OK: `check` reads the answer.
    pub fn grpc_ok<F, Fut, T>(
        mut self,
        call: F,
        check: impl FnOnce(&T) -> Result<(), String> + Send + 'static,
    ) -> Self
    where
        F: FnOnce(UserClient) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
        T: Send + 'static,
    {
        let (sender, receiver) = std::sync::mpsc::channel::<Result<(), String>>();
        self.grpc = Some(Box::new(move |client| {
            let answer = call(client);
            Box::pin(async move {
                let ok = answer.await?;
                let _ = sender.send(check(&ok));
                Ok(())
            })
        }));
        self.accepts = Some(Box::new(move || {
            receiver
                .try_recv()
                .unwrap_or_else(|_| Err("no answer".into()))
        }));
        self
    }

    pub fn http(mut self, method: reqwest::Method, path: impl Into<String>) -> Self {
        self.http = Some(HttpCall {
            method,
            path: path.into(),
            body: None,
        });
        self
    }

    pub fn get(self, path: impl Into<String>) -> Self {
        self.http(reqwest::Method::GET, path)
    }

    pub fn delete(self, path: impl Into<String>) -> Self {
        self.http(reqwest::Method::DELETE, path)
    }

    #[allow(clippy::needless_pass_by_value)]
    pub fn post(self, path: impl Into<String>, body: Value) -> Self {
        self.http(reqwest::Method::POST, path).json_body(body)
    }

    #[allow(clippy::needless_pass_by_value)]
    pub fn patch(self, path: impl Into<String>, body: Value) -> Self {
        self.http(reqwest::Method::PATCH, path).json_body(body)
    }

    /// The HTTP request's JSON body. Owned, so rows write `json!({..})`.
    #[allow(clippy::needless_pass_by_value)]
    pub fn json_body(self, body: Value) -> Self {
        self.raw_body(body.to_string())
    }

    /// The HTTP request's body, as sent.
    pub fn raw_body(mut self, body: String) -> Self {
        if let Some(http) = &mut self.http {
            http.body = Some(body);
        }
        self
    }

    /// The answer's message must contain `needle`.
    pub fn says(mut self, needle: &str) -> Self {
        self.needle = needle.to_string();
        self
    }
}

/// One row of a table: a named attack and the exact code it must get.
pub struct Row<W> {
    pub name: String,
    pub expect: Code,
    pub attack: Box<dyn Fn(&W) -> Attack + Send + Sync>,
}

pub fn row<W>(
    name: impl Into<String>,
    expect: Code,
    attack: impl Fn(&W) -> Attack + Send + Sync + 'static,
) -> Row<W> {
    Row {
        name: name.into(),
        expect,
        attack: Box::new(attack),
    }
}

/// What one answer was, over one way in.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: Code,
    pub message: String,
    /// The whole HTTP body, or the gRPC message.
    pub raw: String,
}

/// Everything a table run saw, for the secrets scan.
#[derive(Default)]
pub struct Transcript {
    pub answers: Vec<String>,
    pub grpc: usize,
    pub http: usize,
}

/// Sends `request` over HTTP/JSON to the suite's gateway as `caller`.
pub async fn send_http(suite_addr: &str, caller: &Caller, request: &HttpCall) -> Answer {
    let client = reqwest::Client::new();
    let mut builder = client.request(
        request.method.clone(),
        format!("http://{suite_addr}{}", request.path),
    );
    for (name, value) in caller.headers() {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder
            .header("content-type", "application/json")
            .body(body.clone());
    }
    let response = builder.send().await.expect("the gateway answers HTTP");
    let status = response.status().as_u16();
    let raw = String::from_utf8_lossy(&response.bytes().await.expect("body")).to_string();
    if status == 200 {
        return Answer {
            code: Code::Ok,
            message: String::new(),
            raw,
        };
    }
    let json: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let code = json["code"]
        .as_i64()
        .map_or(Code::Unknown, |c| Code::from_i32(c as i32));
    let expected_status = agentshare_kit::error::http_status_of(code);
    let message = json["message"].as_str().unwrap_or_default().to_string();
    Answer {
        code: if expected_status == status {
            code
        } else {
            // The status line and the body disagree: a bug either way.
            Code::Unknown
        },
        message: if expected_status == status {
            message
        } else {
            format!("HTTP {status} with body {raw}")
        },
        raw,
    }
}

/// Runs every row of `table` against `world`: the exact code over each
/// way in, the needle in the message, none of `private` in any answer,
/// and `snapshot` reading back what it read before the table ran.
/// Fails once at the end, listing every row that went wrong.
pub async fn run_table<W, S>(
    suite: &Suite,
    world: &W,
    table: Vec<Row<W>>,
    private: &[String],
    snapshot: impl Fn() -> S,
) -> Transcript
where
    S: Future<Output = String>,
{
    let anonymous = suite.anonymous().await;
    let addr = suite.gateway_addr().to_string();
    let before = snapshot().await;
    let mut failures = Vec::new();
    let mut transcript = Transcript::default();
    for row in table {
        let attack = (row.attack)(world);
        let mut answers = Vec::new();
        if let Some(call) = attack.grpc {
            let result = call(attack.caller.client(&anonymous)).await;
            let answer = match result {
                Ok(()) => Answer {
                    code: Code::Ok,
                    message: String::new(),
                    raw: String::new(),
                },
                Err(status) => Answer {
                    code: status.code(),
                    message: status.message().to_string(),
                    raw: format!("{} {:?}", status.message(), status.details()),
                },
            };
            transcript.grpc += 1;
            answers.push(("gRPC", answer));
        }
        if let Some(http) = &attack.http {
            let answer = send_http(&addr, &attack.caller, http).await;
            transcript.http += 1;
            answers.push(("HTTP", answer));
        }
        if answers.is_empty() {
            failures.push(format!("{}: the row sends nothing", row.name));
        }
        for (way, answer) in &answers {
            if answer.code != row.expect {
                failures.push(format!(
                    "{} over {way}: expected {:?}, got {:?}: {}",
                    row.name, row.expect, answer.code, answer.message
                ));
                continue;
            }
            if !answer.message.contains(&attack.needle) {
                failures.push(format!(
                    "{} over {way}: the message {:?} does not say {:?}",
                    row.name, answer.message, attack.needle
                ));
            }
            if answer.code != Code::Ok
                && let Some(leak) = private.iter().find(|p| answer.raw.contains(p.as_str()))
            {
                failures.push(format!(
                    "{} over {way}: the answer names {leak:?}: {}",
                    row.name, answer.raw
                ));
            }
            transcript.answers.push(answer.raw.clone());
        }
        if let Some(accepts) = attack.accepts
            && let Err(why) = accepts()
        {
            failures.push(format!("{}: {why}", row.name));
        }
        let after = snapshot().await;
        if after != before {
            failures.push(format!(
                "{}: something changed\n  before: {before}\n  after:  {after}",
                row.name
            ));
            // Later rows compare with what is there now, so one change is
            // reported once.
            return fail(&failures);
        }
    }
    if !failures.is_empty() {
        return fail(&failures);
    }
    transcript
}

fn fail(failures: &[String]) -> Transcript {
    panic!(
        "{} row(s) of the attack matrix failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A UUID that never named anything.
pub fn never() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The signed-in user's token with a second factor passed just now.
pub fn stepped_up(suite: &Suite, user: &str) -> String {
    suite.token_with(user, true, 7200)
}

/// One public RPC of the contract.
#[derive(Clone, Debug)]
pub struct Rpc {
    /// `/package.Service/Method`.
    pub path: String,
    /// `Service_Method`, the OpenAPI operation id of its HTTP route.
    pub operation: String,
    pub server_streaming: bool,
}

/// Every RPC the gateway serves to the public, read from the contract.
pub fn public_rpcs() -> Vec<Rpc> {
    use prost::Message;
    let public = agentshare_e2e::public_services();
    let set = prost_types::FileDescriptorSet::decode(agentshare_proto::FILE_DESCRIPTOR_SET)
        .expect("the contract decodes");
    let mut rpcs = Vec::new();
    for file in set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            if !public.contains(&full) {
                continue;
            }
            for method in &service.method {
                rpcs.push(Rpc {
                    path: format!("/{full}/{}", method.name()),
                    operation: format!("{}_{}", service.name(), method.name()),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    rpcs.sort_by(|a, b| a.path.cmp(&b.path));
    rpcs
}

/// The HTTP route of each operation, from the gateway's OpenAPI document:
/// operation id → (method, path template).
pub async fn http_routes(
    suite: &Suite,
) -> std::collections::HashMap<String, (reqwest::Method, String)> {
    let document: Value = reqwest::get(format!(
        "http://{}/api/v1/openapi.json",
        suite.gateway_addr()
    ))
    .await
    .expect("the OpenAPI document")
    .bytes()
    .await
    .map(|body| serde_json::from_slice(&body).expect("JSON"))
    .expect("the body");
    let mut routes = std::collections::HashMap::new();
    for (template, methods) in document["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("methods") {
            if let Some(id) = operation["operationId"].as_str() {
                let method =
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                routes.insert(id.to_string(), (method, template.clone()));
            }
        }
    }
    routes
}

/// A path template with every variable set to `value`.
pub fn fill(template: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        // A version number takes a number; every other variable is an id.
        if rest[open..close].contains("number") {
            out.push('1');
        } else {
            out.push_str(value);
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// Sends encoded bytes as they are.
#[derive(Clone, Copy, Default)]
pub struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        *self
    }

    fn decoder(&mut self) -> Raw {
        *self
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = bytes::Bytes;
    type Error = Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = bytes::Bytes;
    type Error = Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Calls `rpc` with `message` as its encoded request; OK once the answer
/// (or a stream's first message) arrives.
pub async fn call_raw(client: UserClient, rpc: Rpc, message: bytes::Bytes) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(client.channel());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(rpc.path.as_str())
        .expect("a method path");
    if rpc.server_streaming {
        let mut stream = grpc
            .server_streaming::<bytes::Bytes, bytes::Bytes, _>(
                tonic::Request::new(message),
                path,
                Raw,
            )
            .await?
            .into_inner();
        stream.message().await?;
        Ok(())
    } else {
        grpc.unary::<bytes::Bytes, bytes::Bytes, _>(tonic::Request::new(message), path, Raw)
            .await
            .map(drop)
    }
}

#[test]
fn matrix_has_at_least_60_cases() {
    let tables = [
        ("identity", identity::table().len()),
        ("grants", grants::table().len()),
        ("tenancy", tenancy::table().len()),
        ("store", store::table().len()),
        ("limits", limits::table().len()),
        ("existence", existence::table().len()),
        ("secrets", secrets::SCENARIOS),
    ];
    let total: usize = tables.iter().map(|(_, n)| n).sum();
    println!("attack matrix: {tables:?}, {total} distinct attacks");
    assert!(total >= 60, "{total} attacks: {tables:?}");
}
