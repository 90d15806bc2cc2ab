//! MCP, the Model Context Protocol over Streamable HTTP, on the gateway's
//! one port (DESIGN.md, "The edge"), served by the official SDK (rmcp):
//! - `/mcp/run`: an agent runtime with its run token reaches the five
//!   workspace tools ([`run_tools`]);
//! - `/mcp`: a person with a session, an API key or a share token reaches
//!   the agents they may run, as tools ([`agent_tools`]).
//!
//! Neither has rules of its own: every tool call is the gRPC call it stands
//! for, made in this process through the gateway's stack ([`calls`]).
//! Authorization is as the MCP specification asks: Protected Resource
//! Metadata (RFC 9728) at `/.well-known/oauth-protected-resource`, every
//! request authenticated before the SDK sees it, and a 401 whose
//! `WWW-Authenticate` points at the metadata ([`metadata`]). A client's
//! token goes nowhere but this gateway's own services; runtimes get run
//! tokens minted per run.

mod agent_tools;
mod calls;
mod changes;
mod metadata;
mod run_tools;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use agentshare_kit::bootstrap::Context;
use agentshare_kit::config::BadSetting;
use agentshare_kit::identity::{Principal, RUN_TOKEN_PREFIX};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use prost_reflect::DescriptorPool;
use rmcp::model::ErrorData;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tonic::Status;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tower::{Service, ServiceExt};

use self::agent_tools::AgentTools;
use self::calls::{Calls, Grpc};
use self::changes::AccessChanges;
use self::metadata::{Resource, WELL_KNOWN};
use self::run_tools::RunTools;
use crate::auth::{Authenticator, GRANT_HEADER};
use crate::proxy::HttpService;

/// People's endpoint: the agents they may run.
pub const AGENTS_PATH: &str = "/mcp";
/// Runtimes' endpoint: the five workspace tools of one run.
pub const RUN_PATH: &str = "/mcp/run";

/// Share tokens start with this; an MCP client that can send only
/// `Authorization: Bearer` may send one there.
const SHARE_TOKEN_PREFIX: &str = "asg_";

/// What every copy of the edge shares: MCP sessions outlive the connection
/// that opened them.
pub struct Mcp {
    auth: Authenticator,
    resource: Resource,
    changes: AccessChanges,
    pool: DescriptorPool,
    run_sessions: Arc<LocalSessionManager>,
    agent_sessions: Arc<LocalSessionManager>,
    config: StreamableHttpServerConfig,
    max_body_bytes: usize,
}

impl Mcp {
    pub fn new(
        context: &Context,
        auth: Authenticator,
        pool: DescriptorPool,
        base_url: &str,
        max_body_bytes: usize,
    ) -> Result<Self, BadSetting> {
        let mut config = StreamableHttpServerConfig::default()
            // Every request carries a bearer credential, which a page that
            // rebinds a name to this address cannot supply, and the gateway
            // is reached by names the SDK cannot know: no Host allow-list.
            .disable_allowed_hosts()
            .with_max_request_body_bytes(max_body_bytes);
        if !context.config.http.allowed_origins.is_empty() {
            config = config.with_allowed_origins(context.config.http.allowed_origins.clone());
        }
        // Open streams end with the server, so a drain is not held up.
        let streams = config.cancellation_token.clone();
        let mut shutdown = context.shutdown.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            streams.cancel();
        });
        Ok(Self {
            auth,
            resource: Resource::new(base_url, &context.config.auth.issuer),
            changes: AccessChanges::follow(context)?,
            pool,
            run_sessions: Arc::default(),
            agent_sessions: Arc::default(),
            config,
            max_body_bytes,
        })
    }

    /// MCP in front of `inner` (the rest of the edge); tool calls go to
    /// `grpc`, the gateway's gRPC side.
    pub fn layer<S>(self: &Arc<Self>, inner: S, grpc: Grpc) -> McpEdge<S> {
        let calls = Calls::new(grpc, self.pool.clone());
        let run_calls = calls.clone();
        let agents = AgentTools::new(calls, self.auth.clone(), self.changes.clone());
        McpEdge {
            inner,
            mcp: self.clone(),
            run: StreamableHttpService::new(
                move || Ok(RunTools::new(run_calls.clone())),
                self.run_sessions.clone(),
                self.config.clone(),
            ),
            agents: StreamableHttpService::new(
                move || Ok(agents.clone()),
                self.agent_sessions.clone(),
                self.config.clone(),
            ),
        }
    }
}

/// The MCP paths, in front of the rest of the edge.
#[derive(Clone)]
pub struct McpEdge<S> {
    inner: S,
    mcp: Arc<Mcp>,
    run: StreamableHttpService<RunTools, LocalSessionManager>,
    agents: StreamableHttpService<AgentTools, LocalSessionManager>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Run,
    Agents,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Run => RUN_PATH,
            Endpoint::Agents => AGENTS_PATH,
        }
    }

    /// The gRPC method whose rules a credential must pass to use the
    /// endpoint at all; each tool call then passes its own.
    fn probe(self) -> &'static str {
        match self {
            Endpoint::Run => "/agentshare.store.v1.WorkspaceStoreService/WorkspaceList",
            Endpoint::Agents => "/agentshare.gateway.v1.InvokeService/Invoke",
        }
    }
}

impl<S: HttpService> Service<http::Request<Body>> for McpEdge<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with(WELL_KNOWN)
            && let Some(document) = self.mcp.resource.document(path)
        {
            let response = if matches!(*request.method(), Method::GET | Method::HEAD) {
                crate::http::plain(StatusCode::OK, "application/json", document)
            } else {
                let mut refused = crate::http::plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    Bytes::from_static(b"the metadata is read with GET\n"),
                );
                refused
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                refused
            };
            return Box::pin(async move { Ok(response) });
        }
        let endpoint = match path {
            RUN_PATH => Endpoint::Run,
            AGENTS_PATH => Endpoint::Agents,
            _ => return Box::pin(self.inner.call(request)),
        };
        let mcp = self.mcp.clone();
        let run = self.run.clone();
        let agents = self.agents.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            share_token_as_grant(&mut parts.headers);
            let principal = match mcp.admit(endpoint, &parts.headers).await {
                Ok(principal) => principal,
                Err(refusal) => {
                    // The message is read before it is refused: hyper closes
                    // a connection whose request body was left unread, and
                    // a client that sends its next request on it (the SDKs
                    // do, falling back from one protocol version to the
                    // next) meets a disconnect instead of this answer.
                    let _ = Limited::new(body, mcp.max_body_bytes).collect().await;
                    return Ok(refusal);
                }
            };
            if let Some(run) = principal.run {
                parts.extensions.insert(RunAgent(run.agent_id));
            }
            parts.extensions.insert(mcp.changes.mark());
            let ends_session = parts.method == Method::DELETE;
            let request = http::Request::from_parts(parts, body);
            let response = match endpoint {
                Endpoint::Run => run.oneshot(request).await,
                Endpoint::Agents => agents.oneshot(request).await,
            };
            let mut response = response.unwrap_or_else(|e| match e {}).map(Body::new);
            // The SDK answers a session's end with 202, which the Python
            // SDK reports to its user as a failure on every close; the
            // session has ended, which 200 says to every client.
            if ends_session && response.status() == StatusCode::ACCEPTED {
                *response.status_mut() = StatusCode::OK;
            }
            Ok(response)
        })
    }
}

impl Mcp {
    /// Lets a request through to the SDK only with a credential that the
    /// endpoint takes and that works now; otherwise the answer to send.
    async fn admit(
        &self,
        endpoint: Endpoint,
        headers: &HeaderMap,
    ) -> Result<Principal, http::Response<Body>> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        if bearer.is_none() && !headers.contains_key(GRANT_HEADER) {
            return Err(self.unauthorized(
                endpoint,
                None,
                "missing credential: send `Authorization: Bearer <token>`",
            ));
        }
        let run_token = bearer.is_some_and(|b| {
            b.get(7..)
                .is_some_and(|token| token.trim().starts_with(RUN_TOKEN_PREFIX))
        });
        match (endpoint, run_token) {
            (Endpoint::Run, false) => {
                return Err(self.unauthorized(
                    endpoint,
                    Some("/mcp/run takes the run token (asr_…) a run was given; people's clients use /mcp"),
                    "",
                ));
            }
            (Endpoint::Agents, true) => {
                return Err(self.unauthorized(
                    endpoint,
                    Some("a run token is for /mcp/run; /mcp takes a session token, an API key or a share token"),
                    "",
                ));
            }
            _ => {}
        }
        let metadata = MetadataMap::from_headers(headers.clone());
        match self.auth.authenticate(&metadata, endpoint.probe()).await {
            Ok(principal) => Ok(principal),
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                Err(self.unauthorized(endpoint, Some(status.message()), ""))
            }
            Err(status) => {
                let mut response = self.refusal(&status);
                if status.code() == tonic::Code::PermissionDenied {
                    let challenge = format!(
                        "Bearer error=\"insufficient_scope\", resource_metadata=\"{}\"",
                        self.resource.metadata_url(endpoint.path())
                    );
                    if let Ok(value) = HeaderValue::from_str(&challenge) {
                        response
                            .headers_mut()
                            .insert(header::WWW_AUTHENTICATE, value);
                    }
                }
                Err(response)
            }
        }
    }

    /// A 401 with the challenge that points at the metadata; `refused` says
    /// why a credential that was sent did not pass.
    fn unauthorized(
        &self,
        endpoint: Endpoint,
        refused: Option<&str>,
        missing: &str,
    ) -> http::Response<Body> {
        let message = refused.unwrap_or(missing);
        let mut response = self.refusal(&Status::unauthenticated(message));
        let challenge = self.resource.challenge(endpoint.path(), refused);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// A refusal as HTTP/JSON answers one.
    fn refusal(&self, status: &Status) -> http::Response<Body> {
        crate::http::error_response(&self.pool, status)
    }
}

/// A share token sent as `Authorization: Bearer asg_…`, as MCP clients
/// configured with one bearer token send it, is moved to the share-token
/// header the rest of the gateway reads. A DELEGATE token needs nothing
/// more; an INVOKE token needs the user's own credential as well, so its
/// holder sends the share token in `x-agentshare-grant-token` and their
/// session or API key as the bearer.
fn share_token_as_grant(headers: &mut HeaderMap) {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| t.starts_with(SHARE_TOKEN_PREFIX))
        .and_then(|t| HeaderValue::from_str(t).ok());
    if let Some(token) = token
        && !headers.contains_key(GRANT_HEADER)
    {
        headers.remove(header::AUTHORIZATION);
        headers.insert(GRANT_HEADER, token);
    }
}

/// The agent a run token is bound to, which the workspace tools' calls
/// name: the tools' input schemas leave it out, as the run has one agent.
#[derive(Clone)]
struct RunAgent(String);

/// The caller's credentials, as the request that carried this MCP message
/// sent them (the SDK hands the request's parts to every handler).
fn credentials_of(extensions: &rmcp::model::Extensions) -> Result<&HeaderMap, ErrorData> {
    request_of(extensions).map(|parts| &parts.headers)
}

fn request_of(extensions: &rmcp::model::Extensions) -> Result<&http::request::Parts, ErrorData> {
    extensions.get::<http::request::Parts>().ok_or_else(|| {
        ErrorData::internal_error("the request's headers did not reach the tool", None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_share_token_becomes_the_grant_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer asg_abc"),
        );
        share_token_as_grant(&mut headers);
        assert_eq!(headers.get(GRANT_HEADER).unwrap(), "asg_abc");
        assert!(headers.get(header::AUTHORIZATION).is_none());

        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer ask_key"),
        );
        headers.insert(GRANT_HEADER, HeaderValue::from_static("asg_invoke"));
        share_token_as_grant(&mut headers);
        assert_eq!(
            headers.get(header::AUTHORIZATION).unwrap(),
            "Bearer ask_key"
        );
    }
}
