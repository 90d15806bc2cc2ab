//! Forwards public calls to their backend, byte for byte, with the caller's
//! Principal attached. Messages are not decoded: the gateway needs no change
//! when an RPC is added, and unary and streaming calls take the same path.
//! Every gRPC request, forwarded or served here, first passes the edge's
//! message limits ([`crate::limits`]); a client stream that fails, on a
//! limit or otherwise, ends the forwarded call with its error.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use agentshare_kit::identity::{self, Identity, PRINCIPAL_HEADER, SERVICE_HEADER, ServiceName};
use agentshare_kit::server::ServiceChannel;
use bytes::{Buf, BufMut, Bytes};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::limits::Limits;
use crate::routes::RouteTable;

/// The answer of a forwarded call: the backend's messages, cut short by the
/// client stream's error if it fails mid-call.
type Answer = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// Passes encoded messages through untouched.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Field 1 of every workspace tool's request: the agent it acts for.
#[derive(Clone, PartialEq, prost::Message)]
struct AgentNamed {
    #[prost(string, tag = "1")]
    agent_id: String,
}

/// Everything a forwarded call needs.
pub struct Forwarder {
    pub routes: RouteTable,
    pub backends: HashMap<ServiceName, ServiceChannel>,
    pub auth: Authenticator,
    pub identity: Identity,
    pub limits: Limits,
    /// `max_message_bytes`, for tonic's own codecs on both legs.
    pub max_message_size: usize,
}

/// Headers a client must never be able to set on an internal call.
const STRIPPED: &[&str] = &[
    "authorization",
    crate::auth::GRANT_HEADER,
    PRINCIPAL_HEADER,
    SERVICE_HEADER,
];

impl Forwarder {
    async fn forward(
        self: Arc<Self>,
        backend: ServiceName,
        path: String,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<Answer>, Status> {
        let channel =
            self.backends.get(&backend).cloned().ok_or_else(|| {
                Status::unavailable(format!("no endpoint configured for {backend}"))
            })?;
        let (metadata, _extensions, mut inbound) = request.into_parts();
        let principal = self.auth.authenticate(&metadata, &path).await?;
        // A run token reaches its own agent only. Every workspace tool names
        // the agent in field 1 of its request, so the first message says.
        let mut first = None;
        if let Some(run) = &principal.run {
            let message = inbound.message().await?.unwrap_or_default();
            let named = AgentNamed::decode(message.clone())
                .map_err(|_| Status::invalid_argument("malformed request message"))?;
            if named.agent_id != run.agent_id {
                return Err(Status::permission_denied(
                    "this run token is for another agent",
                ));
            }
            first = Some(message);
        }
        let signed = self.identity.sign_principal(&principal)?;
        let mut outbound_metadata = MetadataMap::new();
        for entry in metadata.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
                if !STRIPPED.contains(&key.as_str()) {
                    outbound_metadata.insert(key.clone(), value.clone());
                }
            } else if let tonic::metadata::KeyAndValueRef::Binary(key, value) = entry {
                outbound_metadata.insert_bin(key.clone(), value.clone());
            }
        }
        outbound_metadata.insert(
            PRINCIPAL_HEADER,
            signed
                .parse()
                .map_err(|_| Status::internal("principal is not a valid header"))?,
        );
        // A client stream that fails ends the outbound stream there and
        // records why, so the call answers the client's error rather than
        // whatever the backend makes of a cut-short stream.
        let (failed_tx, failed) = tokio::sync::watch::channel(None::<Status>);
        let rest = futures::stream::unfold(
            (inbound, failed_tx),
            |(mut inbound, failed_tx)| async move {
                match inbound.message().await {
                    Ok(Some(message)) => Some((message, (inbound, failed_tx))),
                    Ok(None) => None,
                    Err(status) => {
                        failed_tx.send_replace(Some(status));
                        None
                    }
                }
            },
        );
        let messages = futures::stream::iter(first).chain(rest);
        let outbound =
            Request::from_parts(outbound_metadata, tonic::Extensions::default(), messages);
        let mut client = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        client
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("{backend} is unavailable: {e}")))?;
        let path = path
            .parse()
            .map_err(|_| Status::invalid_argument("malformed method path"))?;
        let answered = tokio::select! {
            biased;
            Ok(status) = client_failure(failed.clone()) => return Err(status),
            answered = client.streaming(outbound, path, RawCodec) => answered,
        };
        if let Some(status) = failed.borrow().clone() {
            return Err(status);
        }
        Ok(answered?.map(|answer| cut_short_by(answer, failed)))
    }
}

/// The client stream's error, once it fails; `Err` once the stream has
/// ended without one.
async fn client_failure(
    mut failed: tokio::sync::watch::Receiver<Option<Status>>,
) -> Result<Status, tokio::sync::watch::error::RecvError> {
    let failure = failed.wait_for(Option::is_some).await?;
    // `wait_for` returned, so the failure is set.
    Ok(failure.clone().unwrap_or_else(|| Status::unknown("")))
}

/// The backend's answer, ended with the client stream's error if that
/// fails first (a backend that answers while the client still streams).
fn cut_short_by(
    answer: Streaming<Bytes>,
    failed: tokio::sync::watch::Receiver<Option<Status>>,
) -> Answer {
    struct Cut {
        answer: Streaming<Bytes>,
        failed: Option<tokio::sync::watch::Receiver<Option<Status>>>,
        over: bool,
    }
    enum Next {
        Failed(Status),
        ClientDone,
        Answer(Option<Result<Bytes, Status>>),
    }
    let cut = Cut {
        answer,
        failed: Some(failed),
        over: false,
    };
    Box::pin(futures::stream::unfold(cut, |mut cut| async move {
        loop {
            if cut.over {
                return None;
            }
            let next = match cut.failed.clone() {
                Some(failed) => tokio::select! {
                    biased;
                    failure = client_failure(failed) => match failure {
                        Ok(status) => Next::Failed(status),
                        Err(_) => Next::ClientDone,
                    },
                    item = cut.answer.next() => Next::Answer(item),
                },
                None => Next::Answer(cut.answer.next().await),
            };
            match next {
                Next::Failed(status) => {
                    cut.over = true;
                    return Some((Err(status), cut));
                }
                Next::ClientDone => cut.failed = None,
                Next::Answer(Some(item)) => {
                    return Some((item, cut));
                }
                Next::Answer(None) => return None,
            }
        }
    }))
}

/// Routes public services through the [`Forwarder`] and everything else
/// (health, reflection, the gateway's own services) to the inner router.
#[derive(Clone)]
pub struct GatewayService<S> {
    inner: S,
    forwarder: Arc<Forwarder>,
}

impl<S> GatewayService<S> {
    pub fn new(inner: S, forwarder: Arc<Forwarder>) -> Self {
        Self { inner, forwarder }
    }
}

type HttpRequest = http::Request<Body>;
type HttpResponse = http::Response<Body>;

/// The HTTP service the gateway's layers wrap: tonic's router, or another
/// layer around it.
pub trait HttpService:
    tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            HttpRequest,
            Response = HttpResponse,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

impl<S: HttpService> tower::Service<http::Request<Body>> for GatewayService<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let request = self.forwarder.limits.guard(request);
        let path = request.uri().path().to_string();
        let Some(backend) = self
            .forwarder
            .routes
            .backend_of(identity::grpc_service_of(&path))
        else {
            return Box::pin(self.inner.call(request));
        };
        let forwarder = self.forwarder.clone();
        let limit = forwarder.max_message_size;
        Box::pin(async move {
            let method = tower::service_fn(move |call: Request<Streaming<Bytes>>| {
                forwarder.clone().forward(backend, path.clone(), call)
            });
            Ok(tonic::server::Grpc::new(RawCodec)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit)
                .streaming(method, request)
                .await)
        })
    }
}
