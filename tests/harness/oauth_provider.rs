//! A fake OAuth 2.0 provider on loopback: a real HTTP server speaking the
//! authorization-code flow with PKCE (RFC 6749, RFC 7636), strict enough that
//! a client mistake fails a test, with knobs a test turns to make it refuse.
//!
//! ```ignore
//! let provider = FakeOAuth::start().await;
//! // point the suite's config at provider.authorize_url(), token_url(), ...
//! let (code, state) = provider.consent(&url_from_start_connection).await;
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const CLIENT_ID: &str = "agentshare-test-client";
const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(3600);

/// The provider; it stops when dropped.
pub struct FakeOAuth {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

/// One `GET /authorize` as the provider received it; absent parameters are
/// empty.
#[derive(Clone, Debug)]
pub struct AuthorizeRequest {
    pub response_type: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub scope: String,
    pub code_challenge: String,
    pub code_challenge_method: String,
}

/// What a code was issued for, checked again when it is exchanged.
struct Grant {
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    used: bool,
}

struct RefreshGrant {
    scope: String,
    revoked: bool,
}

struct State {
    client_secret: String,
    access_ttl: Duration,
    refuse_next_code: bool,
    rotate_refresh_tokens: bool,
    authorize_requests: Vec<AuthorizeRequest>,
    codes: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    issued_access_tokens: Vec<String>,
    issued_refresh_tokens: Vec<String>,
    token_calls: usize,
    refresh_calls: usize,
}

impl FakeOAuth {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub async fn start() -> FakeOAuth {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake OAuth provider");
        let addr = listener.local_addr().expect("fake OAuth provider address");
        let state = Arc::new(Mutex::new(State {
            client_secret: fresh("fake-oauth-client-secret"),
            access_ttl: DEFAULT_ACCESS_TTL,
            refuse_next_code: false,
            rotate_refresh_tokens: false,
            authorize_requests: Vec::new(),
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            issued_access_tokens: Vec::new(),
            issued_refresh_tokens: Vec::new(),
            token_calls: 0,
            refresh_calls: 0,
        }));
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        FakeOAuth {
            addr,
            state,
            server,
        }
    }

    pub fn authorize_url(&self) -> String {
        format!("http://{}/authorize", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn client_id(&self) -> String {
        CLIENT_ID.to_owned()
    }

    /// Fresh per provider, so a test can search for it like any other secret.
    pub fn client_secret(&self) -> String {
        self.lock().client_secret.clone()
    }

    /// The user consents: performs the GET a browser would and reads the
    /// redirect back to the client. Returns `(code, state)`; panics if the
    /// provider refused the request, with its reason.
    pub async fn consent(&self, authorize_url: &str) -> (String, String) {
        let response = get(authorize_url).await;
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|location| location.to_str().expect("ASCII Location").to_owned());
        let body = response
            .into_body()
            .collect()
            .await
            .expect("authorize body");
        let Some(location) = location.filter(|_| status == StatusCode::FOUND) else {
            panic!(
                "the fake provider refused {authorize_url}: {status} {}",
                String::from_utf8_lossy(&body.to_bytes())
            );
        };
        let query = location.split_once('?').map_or("", |(_, query)| query);
        let params = form(query.as_bytes());
        if let Some(error) = params.get("error") {
            panic!(
                "the fake provider redirected with {error}: {}",
                params.get("error_description").map_or("", String::as_str)
            );
        }
        let code = params.get("code").cloned().expect("code in the redirect");
        let state = params.get("state").cloned().unwrap_or_default();
        (code, state)
    }

    /// Every `GET /authorize` so far, oldest first.
    pub fn authorize_requests(&self) -> Vec<AuthorizeRequest> {
        self.lock().authorize_requests.clone()
    }

    /// The next code exchange answers invalid_grant, whatever the code.
    pub fn refuse_next_code(&self) {
        self.lock().refuse_next_code = true;
    }

    /// Every refresh token issued so far now answers invalid_grant "revoked",
    /// as when the user revokes access at the provider. Tokens issued later,
    /// by a reconnection, work.
    pub fn revoke_refresh_tokens(&self) {
        for grant in self.lock().refresh_tokens.values_mut() {
            grant.revoked = true;
        }
    }

    /// Refreshes answer a new refresh token and retire the old one. By
    /// default they answer none and the old one stays good, as Google does.
    pub fn rotate_refresh_tokens(&self) {
        self.lock().rotate_refresh_tokens = true;
    }

    /// The `expires_in` of access tokens issued from now on.
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.lock().access_ttl = ttl;
    }

    /// Every `POST /token`, granted or refused.
    pub fn token_calls(&self) -> usize {
        self.lock().token_calls
    }

    /// Every `POST /token` with grant_type=refresh_token, granted or refused.
    pub fn refresh_calls(&self) -> usize {
        self.lock().refresh_calls
    }

    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.lock().issued_access_tokens.clone()
    }

    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.lock().issued_refresh_tokens.clone()
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

impl Drop for FakeOAuth {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // open connection with it.
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&state, request).await) }
            });
            // A client hanging up mid-request is its business, not the test's.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(state: &Mutex<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/authorize") => {
            let query = request.uri().query().unwrap_or("").to_owned();
            authorize(&mut state.lock().unwrap(), &form(query.as_bytes()))
        }
        (&Method::POST, "/token") => {
            let (parts, body) = request.into_parts();
            let Ok(body) = body.collect().await else {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "unreadable body",
                );
            };
            let params = form(&body.to_bytes());
            token(&mut state.lock().unwrap(), &parts.headers, &params)
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn authorize(state: &mut State, params: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let request = AuthorizeRequest {
        response_type: param("response_type"),
        client_id: param("client_id"),
        redirect_uri: param("redirect_uri"),
        state: param("state"),
        scope: param("scope"),
        code_challenge: param("code_challenge"),
        code_challenge_method: param("code_challenge_method"),
    };
    state.authorize_requests.push(request.clone());

    // RFC 6749 4.1.2.1: with an unknown client or no redirect URI, tell the
    // user instead of redirecting anywhere.
    if request.client_id != CLIENT_ID {
        return text(StatusCode::BAD_REQUEST, "unknown client_id");
    }
    if request.redirect_uri.is_empty() {
        return text(StatusCode::BAD_REQUEST, "redirect_uri is required");
    }
    let mut back = form_urlencoded::Serializer::new(String::new());
    if request.response_type != "code" {
        back.append_pair("error", "unsupported_response_type");
    } else if request.code_challenge.is_empty() || request.code_challenge_method != "S256" {
        back.append_pair("error", "invalid_request");
        back.append_pair("error_description", "PKCE with S256 is required");
    } else {
        let code = fresh("fake-oauth-code");
        back.append_pair("code", &code);
        state.codes.insert(
            code,
            Grant {
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                scope: request.scope.clone(),
                used: false,
            },
        );
    }
    if !request.state.is_empty() {
        back.append_pair("state", &request.state);
    }
    let separator = if request.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!("{}{separator}{}", request.redirect_uri, back.finish());
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .body(Full::default())
        .unwrap()
}

fn token(
    state: &mut State,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Response<Full<Bytes>> {
    state.token_calls += 1;
    let client = match client_credentials(headers, params) {
        Ok(client) => client,
        Err(Refusal(status, error, description)) => return refusal(status, error, description),
    };
    if client != (CLIENT_ID.to_owned(), state.client_secret.clone()) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(state, params),
        Some("refresh_token") => {
            state.refresh_calls += 1;
            refresh_grant(state, params)
        }
        _ => refusal(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code and refresh_token",
        ),
    }
}

/// A refusal not yet rendered, small enough to travel in a `Result`.
struct Refusal(StatusCode, &'static str, &'static str);

/// RFC 6749 2.3.1: HTTP Basic over form-encoded parts, or both in the body;
/// never both at once.
fn client_credentials(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<(String, String), Refusal> {
    let invalid = |description| Refusal(StatusCode::UNAUTHORIZED, "invalid_client", description);
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "));
    match (basic, params.get("client_secret")) {
        (Some(_), Some(_)) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "more than one client authentication method",
        )),
        (Some(encoded), None) => {
            let decoded = STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| invalid("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid("malformed Basic credentials"))?;
            Ok((form_decode(id), form_decode(secret)))
        }
        (None, Some(secret)) => Ok((
            params.get("client_id").cloned().unwrap_or_default(),
            secret.clone(),
        )),
        (None, None) => Err(invalid("client authentication is required")),
    }
}

fn code_grant(state: &mut State, params: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let param = |name: &str| params.get(name).map_or("", String::as_str);
    if std::mem::take(&mut state.refuse_next_code) {
        return invalid_grant("the code was refused");
    }
    let Some(grant) = state.codes.get_mut(param("code")) else {
        return invalid_grant("unknown code");
    };
    if std::mem::replace(&mut grant.used, true) {
        return invalid_grant("the code was already used");
    }
    if grant.redirect_uri != param("redirect_uri") {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(param("code_verifier")));
    if grant.code_challenge != challenge {
        return invalid_grant("PKCE verification failed");
    }
    let scope = grant.scope.clone();
    let refresh_token = issue_refresh_token(state, &scope);
    tokens(state, &scope, Some(&refresh_token))
}

fn refresh_grant(state: &mut State, params: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let presented = params.get("refresh_token").map_or("", String::as_str);
    let Some(grant) = state.refresh_tokens.get(presented) else {
        return invalid_grant("unknown refresh token");
    };
    if grant.revoked {
        return invalid_grant("revoked");
    }
    let scope = grant.scope.clone();
    if state.rotate_refresh_tokens {
        state.refresh_tokens.remove(presented);
        let refresh_token = issue_refresh_token(state, &scope);
        tokens(state, &scope, Some(&refresh_token))
    } else {
        tokens(state, &scope, None)
    }
}

fn issue_refresh_token(state: &mut State, scope: &str) -> String {
    let token = fresh("fake-oauth-refresh");
    state.refresh_tokens.insert(
        token.clone(),
        RefreshGrant {
            scope: scope.to_owned(),
            revoked: false,
        },
    );
    state.issued_refresh_tokens.push(token.clone());
    token
}

fn tokens(state: &mut State, scope: &str, refresh_token: Option<&str>) -> Response<Full<Bytes>> {
    let access_token = fresh("fake-oauth-access");
    state.issued_access_tokens.push(access_token.clone());
    let mut body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": state.access_ttl.as_secs(),
        "scope": scope,
    });
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    json_response(StatusCode::OK, &body)
}

fn invalid_grant(description: &str) -> Response<Full<Bytes>> {
    refusal(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// RFC 6749 5.2.
fn refusal(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

fn form(bytes: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn form_decode(part: &str) -> String {
    form_urlencoded::parse(part.as_bytes())
        .next()
        .map(|(decoded, _)| decoded.into_owned())
        .unwrap_or_default()
}

/// Distinct and greppable, so a test can search databases and logs for it.
fn fresh(kind: &str) -> String {
    format!("{kind}-{}", uuid::Uuid::now_v7().simple())
}

/// A one-request HTTP/1 client: the browser that follows the user to the
/// provider, without following the provider's redirect.
async fn get(url: &str) -> Response<Incoming> {
    let uri: Uri = url.parse().expect("an absolute authorize URL");
    let host = uri.host().expect("a host in the authorize URL").to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .expect("connect to the fake OAuth provider");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake with the fake OAuth provider");
    let connection = tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let request = Request::get(path)
        .header(header::HOST, format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .expect("GET the authorize URL");
    drop(sender);
    // The body is still to be read, so the connection must outlive this call;
    // it ends by itself once the body is read and the sender is gone.
    drop(connection);
    response
}
