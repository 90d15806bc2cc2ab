//! Forwards public calls to their backend, byte for byte, with the caller's
//! Principal attached. Messages are not decoded: the gateway needs no change
//! when an RPC is added, and unary and streaming calls take the same path.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use agentshare_kit::identity::{self, Identity, PRINCIPAL_HEADER, SERVICE_HEADER, ServiceName};
use agentshare_kit::server::ServiceChannel;
use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use futures::future::BoxFuture;
use prost::Message;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::routes::RouteTable;

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
    ) -> Result<Response<Streaming<Bytes>>, Status> {
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
        // A client stream that fails ends the forwarded stream there.
        let messages = futures::stream::iter(first).chain(
            inbound
                .take_while(|m| futures::future::ready(m.is_ok()))
                .filter_map(|m| futures::future::ready(m.ok())),
        );
        let outbound =
            Request::from_parts(outbound_metadata, tonic::Extensions::default(), messages);
        let mut client = tonic::client::Grpc::new(channel);
        client
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("{backend} is unavailable: {e}")))?;
        let path = path
            .parse()
            .map_err(|_| Status::invalid_argument("malformed method path"))?;
        client.streaming(outbound, path, RawCodec).await
    }
}

/// Routes public services through the [`Forwarder`] and everything else
/// (health, reflection, the gateway's own services) to the inner router.
#[derive(Clone)]
pub struct GatewayLayer {
    pub forwarder: Arc<Forwarder>,
}

impl<S> tower::Layer<S> for GatewayLayer {
    type Service = GatewayService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GatewayService {
            inner,
            forwarder: self.forwarder.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GatewayService<S> {
    inner: S,
    forwarder: Arc<Forwarder>,
}

impl<S> tower::Service<http::Request<Body>> for GatewayService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        let Some(backend) = self
            .forwarder
            .routes
            .backend_of(identity::grpc_service_of(&path))
        else {
            return Box::pin(self.inner.call(request));
        };
        let forwarder = self.forwarder.clone();
        Box::pin(async move {
            let method = tower::service_fn(move |call: Request<Streaming<Bytes>>| {
                forwarder.clone().forward(backend, path.clone(), call)
            });
            Ok(tonic::server::Grpc::new(RawCodec)
                .streaming(method, request)
                .await)
        })
    }
}
