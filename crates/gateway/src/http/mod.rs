//! HTTP/JSON and gRPC-Web on the gateway's one port (DESIGN.md, "The edge").
//!
//! Neither has rules of its own. A gRPC-Web call is translated to gRPC by
//! tonic-web; an HTTP/JSON call is transcoded from its `google.api.http`
//! route into the gRPC call it stands for, which then takes the same path
//! as any gRPC call in this process: authentication, the Principal, the
//! owning service. Only the encoding differs on the way out:
//! - a unary answer is its message in proto3 JSON; an error is JSON
//!   `google.rpc.Status` with its details, under the HTTP status Google's
//!   mapping gives its code;
//! - a server stream is newline-delimited JSON (`application/x-ndjson`):
//!   one `{"result": …}` line per message and, if the stream fails after it
//!   started, a last `{"error": …}` line. A stream that fails before its
//!   first message answers like a unary error.
//!
//! The OpenAPI document of the same routes is served at
//! `/api/v1/openapi.json`.

pub mod json;
mod openapi;
pub mod routes;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic_types::StatusExt as _;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use prost_reflect::DescriptorPool;
use tonic::Status;
use tonic::body::Body;
use tower::{Service, ServiceExt};

use self::routes::{Found, Route, Router};
use crate::proxy::HttpService;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Headers of an HTTP call that travel into its gRPC call as metadata: the
/// same credentials and scope headers gRPC clients send, and trace context.
const FORWARDED: &[&str] = &[
    "authorization",
    crate::auth::ORG_HEADER,
    crate::auth::WORKSPACE_HEADER,
    crate::auth::GRANT_HEADER,
    "traceparent",
    "tracestate",
];

/// Headers a browser may send across origins besides those that are
/// forwarded.
const CORS_REQUEST_HEADERS: &[&str] =
    &["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout"];
/// Headers a browser may read across origins.
const CORS_EXPOSED_HEADERS: &[&str] = &["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// The contract's descriptors, for routes and the JSON mapping.
pub fn contract_pool() -> Result<DescriptorPool, String> {
    DescriptorPool::decode(agentshare_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("the contract's descriptor set does not decode: {e}"))
}

/// Whether clients may call `service` (a full gRPC service name) from
/// outside: the services the gateway routes or serves itself.
pub fn is_public(service: &str) -> bool {
    crate::routes::is_public(service)
}

/// What the HTTP side needs: the routes, the descriptors, the document.
pub struct Api {
    router: Router,
    pool: DescriptorPool,
    openapi: Bytes,
    max_body_bytes: usize,
}

impl Api {
    pub fn from_contract(pool: DescriptorPool, max_body_bytes: usize) -> Result<Self, String> {
        let router = Router::from_contract(&pool, is_public)?;
        let document = openapi::document(&pool, &router);
        let openapi = serde_json::to_vec_pretty(&document)
            .map_err(|e| format!("cannot render the OpenAPI document: {e}"))?;
        Ok(Self {
            router,
            pool,
            openapi: Bytes::from(openapi),
            max_body_bytes,
        })
    }
}

/// The CORS policy for `allowed_origins` (`http.allowed_origins`): none by
/// default, so only same-origin pages call the gateway from a browser.
pub fn cors(allowed_origins: &[String]) -> tower_http::cors::CorsLayer {
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(
            FORWARDED
                .iter()
                .chain(CORS_REQUEST_HEADERS)
                .map(|h| HeaderName::from_static(h))
                .collect::<Vec<_>>(),
        )
        .expose_headers(
            CORS_EXPOSED_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect::<Vec<_>>(),
        )
        .max_age(std::time::Duration::from_secs(600))
}

/// Serves HTTP/JSON calls by transcoding them into the gRPC service `grpc`,
/// and passes gRPC and gRPC-Web calls straight on (tonic-web, inside,
/// translates the latter).
#[derive(Clone)]
pub struct Transcoding<S> {
    pub grpc: S,
    pub api: Arc<Api>,
}

fn is_grpc<B>(request: &http::Request<B>) -> bool {
    is_grpc_content(request.headers())
}

/// gRPC, or gRPC-Web, which tonic-web translates inside.
fn is_grpc_content(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

impl<S: HttpService> Service<http::Request<Body>> for Transcoding<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.grpc.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // gRPC over HTTP/2 goes straight on: an answer sent before its
        // request is read resets only that stream.
        if is_grpc(&request) && request.version() >= http::Version::HTTP_2 {
            return Box::pin(self.grpc.call(request));
        }
        // The ready clone answers this call; a fresh one waits for the next.
        let clone = self.grpc.clone();
        let grpc = std::mem::replace(&mut self.grpc, clone);
        let api = self.api.clone();
        Box::pin(async move {
            // On HTTP/1.1 an answer sent before the request body is read
            // costs the connection, and a client that sent its body after
            // the headers then fails its next call on it. So the body is read
            // first, for gRPC-Web (unary or server-streaming: one request
            // message) as for HTTP/JSON.
            let (parts, body) = request.into_parts();
            let grpc_web = is_grpc_content(&parts.headers);
            // gRPC-Web text is base64: a third larger than the message.
            let limit = if grpc_web {
                api.max_body_bytes / 3 * 4 + 64
            } else {
                api.max_body_bytes
            };
            let body = match read_body(body, limit).await {
                Ok(body) => body,
                Err(status) => {
                    let mut response = if grpc_web {
                        grpc_web_error(&status)
                    } else {
                        error_response(&api.pool, &status)
                    };
                    // The rest of the body is still on the wire.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return Ok(response);
                }
            };
            if grpc_web {
                let request =
                    http::Request::from_parts(parts, Body::new(http_body_util::Full::new(body)));
                return Ok(grpc.oneshot(request).await.unwrap_or_else(|e| match e {}));
            }
            Ok(serve_http(api, grpc, parts, body).await)
        })
    }
}

/// Reads a whole request body of at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Status> {
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Status::resource_exhausted(format!(
                    "the request body is larger than the limit of {limit} bytes (max_message_bytes)"
                ))
            } else {
                Status::cancelled("the request body could not be read to its end")
            }
        })
}

/// A trailers-only gRPC-Web answer carrying `status`.
fn grpc_web_error(status: &Status) -> http::Response<Body> {
    let mut response = http::Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc-web+proto"),
    );
    let _ = status.add_header(headers);
    response
}

async fn serve_http<S>(
    api: Arc<Api>,
    grpc: S,
    request: http::request::Parts,
    body: Bytes,
) -> http::Response<Body>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let path = request.uri.path().to_string();
    if path == OPENAPI_PATH && request.method == Method::GET {
        return plain(StatusCode::OK, "application/json", api.openapi.clone());
    }
    let route = match api.router.find(&request.method, &path) {
        Found::Route { route, variables } => {
            let variables: Vec<_> = variables
                .into_iter()
                .map(|(fields, raw)| (fields.to_vec(), raw.to_string()))
                .collect();
            (route.clone(), variables)
        }
        Found::WrongMethod(allowed) => {
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            // Not a stub: the path exists for other methods. UNIMPLEMENTED is
            // the gRPC code for a method a resource does not serve (as
            // grpc-gateway answers it), under HTTP 405 with `Allow`. The
            // message repeats neither the path nor the method the client sent.
            let mut response = error_response(
                &api.pool,
                &Status::unimplemented(format!("this path takes {allow} only")),
            );
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
        Found::Nothing => {
            return error_response(
                &api.pool,
                &Status::not_found(format!(
                    "no route for this method and path; the routes are listed in {OPENAPI_PATH}"
                )),
            );
        }
    };
    let (route, variables) = route;
    match transcode(&api, grpc, route.clone(), variables, request, body).await {
        Ok(response) => response,
        Err(status) => error_response(&api.pool, &status),
    }
}

async fn transcode<S>(
    api: &Api,
    grpc: S,
    route: Route,
    variables: Vec<(Vec<prost_reflect::FieldDescriptor>, String)>,
    parts: http::request::Parts,
    body: Bytes,
) -> Result<http::Response<Body>, Status>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let has_body = !matches!(route.body, routes::BodyRule::None);
    if has_body {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        if !content_type.starts_with("application/json") {
            return Err(Status::invalid_argument(format!(
                "{} {} takes a JSON body; send Content-Type: application/json",
                route.http_method, route.template
            )));
        }
    }
    let bound: Vec<(&[prost_reflect::FieldDescriptor], &str)> = variables
        .iter()
        .map(|(fields, raw)| (fields.as_slice(), raw.as_str()))
        .collect();
    let message =
        json::request_message(&route, &bound, parts.uri.query(), &body).map_err(Status::from)?;
    let call = grpc_request(&route.grpc_path, &parts.headers, message)?;
    let answer = grpc.oneshot(call).await.unwrap_or_else(|e| match e {});
    let mut reader = GrpcReader::new(answer);
    let output = route.method.output();
    if route.method.is_server_streaming() {
        // Answer like a unary error if the stream fails before it starts.
        let first = reader.next().await?;
        let stream = futures::stream::unfold(
            (reader, first, output, api.pool.clone(), false),
            |(mut reader, pending, output, pool, done)| async move {
                if done {
                    return None;
                }
                let next = match pending {
                    Some(message) => Ok(Some(message)),
                    None => reader.next().await,
                };
                let (line, done, pending) = match next {
                    Ok(Some(message)) => match json::answer_json(&output, &message) {
                        Ok(json) => (serde_json::json!({ "result": json }), false, None),
                        Err(status) => (
                            serde_json::json!({ "error": json::status_json(&pool, &status) }),
                            true,
                            None,
                        ),
                    },
                    Ok(None) => return None,
                    Err(status) => (
                        serde_json::json!({ "error": json::status_json(&pool, &status) }),
                        true,
                        None,
                    ),
                };
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                Some((
                    Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(bytes))),
                    (reader, pending, output, pool, done),
                ))
            },
        );
        let mut response = http::Response::new(Body::new(http_body_util::StreamBody::new(stream)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return Ok(response);
    }
    let message = reader
        .next()
        .await?
        .ok_or_else(|| Status::internal("the call answered no message"))?;
    let json = json::answer_json(&output, &message)?;
    Ok(json_response(StatusCode::OK, &json))
}

/// Makes the unary gRPC call `grpc_path` in this process through `grpc`,
/// carrying the credentials and scope among `headers`, and answers the
/// encoded response message. MCP's tool calls take this path, so they meet
/// the same authentication, limits and owning service as any other call.
pub async fn call_unary<S: HttpService>(
    grpc: S,
    grpc_path: &str,
    headers: &HeaderMap,
    message: Bytes,
) -> Result<Bytes, Status> {
    let call = grpc_request(grpc_path, headers, message)?;
    let answer = grpc.oneshot(call).await.unwrap_or_else(|e| match e {});
    GrpcReader::new(answer)
        .next()
        .await?
        .ok_or_else(|| Status::internal(format!("{grpc_path} answered no message")))
}

/// The gRPC call an HTTP call stands for.
fn grpc_request(
    grpc_path: &str,
    headers: &HeaderMap,
    message: Bytes,
) -> Result<http::Request<Body>, Status> {
    let length = u32::try_from(message.len())
        .map_err(|_| Status::resource_exhausted("the request message is too large"))?;
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.put_u8(0);
    framed.put_u32(length);
    framed.put(message);
    let mut request = http::Request::new(Body::new(http_body_util::Full::new(framed.freeze())));
    *request.method_mut() = Method::POST;
    *request.version_mut() = http::Version::HTTP_2;
    *request.uri_mut() = grpc_path
        .parse()
        .map_err(|_| Status::internal(format!("the gRPC path {grpc_path} is malformed")))?;
    let out = request.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    out.insert(header::TE, HeaderValue::from_static("trailers"));
    for name in FORWARDED {
        if let Some(value) = headers.get(*name) {
            out.insert(HeaderName::from_static(name), value.clone());
        }
    }
    Ok(request)
}

/// Reads length-prefixed messages and the final status of a gRPC answer.
struct GrpcReader {
    body: Option<Body>,
    buffer: BytesMut,
    status: Option<Status>,
}

impl GrpcReader {
    fn new(answer: http::Response<Body>) -> Self {
        let (parts, body) = answer.into_parts();
        // A trailers-only answer carries its status in the headers.
        let status = Status::from_header_map(&parts.headers);
        Self {
            body: if status.is_some() { None } else { Some(body) },
            buffer: BytesMut::new(),
            status,
        }
    }

    /// The next message; `Ok(None)` once the call ended well.
    async fn next(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if self.buffer.len() >= 5 {
                let length = u32::from_be_bytes([
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                    self.buffer[4],
                ]) as usize;
                if self.buffer.len() >= 5 + length {
                    self.buffer.advance(5);
                    return Ok(Some(self.buffer.split_to(length).freeze()));
                }
            }
            let Some(body) = self.body.as_mut() else {
                return match self.status.take() {
                    Some(status) if status.code() != tonic::Code::Ok => Err(status),
                    _ => Ok(None),
                };
            };
            match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.put(data),
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            self.status = Status::from_header_map(trailers);
                        }
                    }
                },
                Some(Err(status)) => {
                    self.body = None;
                    self.status = Some(status);
                }
                None => {
                    self.body = None;
                    if self.status.is_none() {
                        self.status = Some(Status::internal("the call ended without a status"));
                    }
                }
            }
        }
    }
}

pub(crate) fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: StatusCode, json: &serde_json::Value) -> http::Response<Body> {
    let body = serde_json::to_vec(json).unwrap_or_default();
    plain(status, "application/json", Bytes::from(body))
}

/// A refusal as HTTP/JSON answers one: JSON `google.rpc.Status` under the
/// HTTP status Google's mapping gives its code.
pub(crate) fn error_response(pool: &DescriptorPool, status: &Status) -> http::Response<Body> {
    let mut response = json_response(
        json::http_status(status.code()),
        &json::status_json(pool, status),
    );
    if status.code() == tonic::Code::Unauthenticated {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"agentshare\""),
        );
    }
    // A limit on how often says when to come back, as HTTP clients read it.
    if let Some(delay) = status
        .get_details_retry_info()
        .and_then(|retry| retry.retry_delay)
    {
        let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}
