//! The message limits of the edge, the same for every gRPC call through the
//! gateway, forwarded or served here:
//!
//! - a request message over `max_message_bytes` is RESOURCE_EXHAUSTED,
//!   naming the size, the limit and the setting. It is refused from its
//!   5-byte gRPC prefix, before its body is read.
//! - a request nested deeper than `max_nesting_depth` messages is
//!   INVALID_ARGUMENT with a `BadRequest` naming the field and the depth
//!   allowed, where it would otherwise reach a decoder's recursion limit
//!   (INTERNAL). Only methods whose input can nest without bound
//!   (`google.protobuf.Struct`, `Value`, `ListValue` or a recursive message)
//!   are scanned; which ones is worked out once, from the contract's
//!   descriptors, so every other call pays nothing.
//!
//! Both checks wrap the request body, so an error reaches the call as the
//! client stream's error: tonic answers it as the call's status.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use agentshare_kit::Error;
use agentshare_kit::config::Config;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use tonic::Status;
use tonic::body::Body;

/// The gRPC length prefix: a compression flag and a big-endian u32.
const PREFIX_BYTES: usize = 5;

/// The edge's limits, with the methods whose requests are scanned for depth.
pub struct Limits {
    max_message_bytes: usize,
    max_nesting_depth: usize,
    /// Each method whose input can nest without bound, by gRPC path
    /// (`/package.Service/Method`), with that input.
    nestable: HashMap<String, MessageDescriptor>,
}

impl Limits {
    /// The limits of `config`, for every method of the contract in `pool`.
    pub fn new(config: &Config, pool: &DescriptorPool) -> Self {
        Self::of_pool(
            pool,
            config.max_message_size(),
            usize::try_from(config.max_nesting_depth).unwrap_or(usize::MAX),
        )
    }

    fn of_pool(pool: &DescriptorPool, max_message_bytes: usize, max_nesting_depth: usize) -> Self {
        let nestable = pool
            .services()
            .flat_map(|service| {
                let name = service.full_name().to_string();
                service
                    .methods()
                    .map(|method| (name.clone(), method))
                    .collect::<Vec<_>>()
            })
            .filter(|(_, method)| can_nest(&method.input()))
            .map(|(service, method)| (format!("/{service}/{}", method.name()), method.input()))
            .collect();
        Self {
            max_message_bytes,
            max_nesting_depth,
            nestable,
        }
    }

    /// Wraps a gRPC request's body so that each message is checked as it
    /// arrives. Other requests (HTTP/JSON, gRPC-Web before its translation)
    /// pass untouched.
    pub fn guard(&self, request: http::Request<Body>) -> http::Request<Body> {
        if !is_grpc(&request) {
            return request;
        }
        let scan = self
            .nestable
            .get(request.uri().path())
            .map(|input| (input.clone(), self.max_nesting_depth));
        let (parts, body) = request.into_parts();
        let guarded = Guarded {
            inner: body,
            max_message_bytes: self.max_message_bytes,
            scan,
            framing: Framing::Prefix {
                got: [0; PREFIX_BYTES],
                have: 0,
            },
            frame: BytesMut::new(),
            ready: VecDeque::new(),
            done: false,
        };
        http::Request::from_parts(parts, Body::new(guarded))
    }
}

fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t == "application/grpc" || t.starts_with("application/grpc+"))
}

/// Whether a message can nest without bound: some message reachable from it
/// reaches itself again (`Struct` → `Value` → `Struct` is such a loop).
fn can_nest(input: &MessageDescriptor) -> bool {
    fn visit(
        message: &MessageDescriptor,
        on_path: &mut Vec<String>,
        done: &mut HashSet<String>,
    ) -> bool {
        let name = message.full_name().to_string();
        if on_path.contains(&name) {
            return true;
        }
        if done.contains(&name) {
            return false;
        }
        on_path.push(name.clone());
        let loops = message.fields().any(|field| match field.kind() {
            Kind::Message(child) => visit(&child, on_path, done),
            _ => false,
        });
        on_path.pop();
        done.insert(name);
        loops
    }
    visit(input, &mut Vec::new(), &mut HashSet::new())
}

/// The well-known types that hold free-form JSON; inside them, field names
/// mean nothing to a client, so a violation names the field that holds one.
fn is_free_form(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Struct" | "google.protobuf.Value" | "google.protobuf.ListValue"
    )
}

/// Where a request nests too deep: the field to name.
#[derive(Debug, PartialEq, Eq)]
struct TooDeep {
    field: String,
}

/// Scans one encoded message of type `message` and says where it first
/// nests deeper than `limit` (the message itself is level 1). Bytes that do
/// not parse end the scan without a verdict: the decoder behind reports
/// them.
fn too_deep(message: &MessageDescriptor, bytes: &[u8], limit: usize) -> Option<TooDeep> {
    let mut path = Vec::new();
    match walk(message, bytes, 1, limit, &mut path, false) {
        Walk::TooDeep => Some(TooDeep {
            field: if path.is_empty() {
                "request".to_string()
            } else {
                path.join(".")
            },
        }),
        Walk::Fine | Walk::Malformed => None,
    }
}

enum Walk {
    Fine,
    TooDeep,
    Malformed,
}

/// Walks the fields of one message at `depth`. `named` is set once the path
/// holds the field to report: deeper names are left out.
fn walk(
    message: &MessageDescriptor,
    mut bytes: &[u8],
    depth: usize,
    limit: usize,
    path: &mut Vec<String>,
    named: bool,
) -> Walk {
    while bytes.has_remaining() {
        let Some(key) = varint(&mut bytes) else {
            return Walk::Malformed;
        };
        let (number, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                if varint(&mut bytes).is_none() {
                    return Walk::Malformed;
                }
            }
            1 | 5 => {
                let width = if wire_type == 1 { 8 } else { 4 };
                if bytes.remaining() < width {
                    return Walk::Malformed;
                }
                bytes.advance(width);
            }
            2 => {
                let Some(len) = varint(&mut bytes).and_then(|l| usize::try_from(l).ok()) else {
                    return Walk::Malformed;
                };
                if bytes.remaining() < len {
                    return Walk::Malformed;
                }
                let (value, rest) = bytes.split_at(len);
                bytes = rest;
                let field = u32::try_from(number)
                    .ok()
                    .and_then(|n| message.get_field(n));
                // Unknown fields and strings are skipped whole; decoders do
                // not look inside them either.
                let Some(Kind::Message(child)) = field.as_ref().map(|f| f.kind()) else {
                    continue;
                };
                let names_it = !named;
                if names_it && let Some(field) = &field {
                    path.push(field.name().to_string());
                }
                let named_below = named || is_free_form(&child) || path_repeats(path);
                if depth + 1 > limit {
                    return Walk::TooDeep;
                }
                match walk(&child, value, depth + 1, limit, path, named_below) {
                    Walk::Fine => {}
                    other => return other,
                }
                if names_it {
                    path.pop();
                }
            }
            3 => {
                // A group (proto2, never in this contract) nests like a
                // message, and decoders recurse into unknown ones too.
                if depth + 1 > limit {
                    return Walk::TooDeep;
                }
                match skip_group(&mut bytes, number, depth + 1, limit) {
                    Walk::Fine => {}
                    other => return other,
                }
            }
            _ => return Walk::Malformed,
        }
    }
    Walk::Fine
}

/// Whether the last field name already appears before it: a recursive
/// message, reported where its recursion starts.
fn path_repeats(path: &[String]) -> bool {
    path.split_last()
        .is_some_and(|(last, before)| before.contains(last))
}

/// Skips an unknown group up to its end tag, counting its nesting.
fn skip_group(bytes: &mut &[u8], number: u64, depth: usize, limit: usize) -> Walk {
    loop {
        let Some(key) = varint(bytes) else {
            return Walk::Malformed;
        };
        match key & 7 {
            0 => {
                if varint(bytes).is_none() {
                    return Walk::Malformed;
                }
            }
            1 | 5 => {
                let width = if key & 7 == 1 { 8 } else { 4 };
                if bytes.remaining() < width {
                    return Walk::Malformed;
                }
                bytes.advance(width);
            }
            2 => {
                let Some(len) = varint(bytes).and_then(|l| usize::try_from(l).ok()) else {
                    return Walk::Malformed;
                };
                if bytes.remaining() < len {
                    return Walk::Malformed;
                }
                bytes.advance(len);
            }
            3 => {
                if depth + 1 > limit {
                    return Walk::TooDeep;
                }
                match skip_group(bytes, key >> 3, depth + 1, limit) {
                    Walk::Fine => {}
                    other => return other,
                }
            }
            4 if key >> 3 == number => return Walk::Fine,
            _ => return Walk::Malformed,
        }
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    prost::encoding::decode_varint(bytes).ok()
}

/// Where the guard is in the stream of length-prefixed messages.
#[derive(Clone, Copy)]
enum Framing {
    /// Reading a prefix; `have` of its bytes are in `got`.
    Prefix {
        got: [u8; PREFIX_BYTES],
        have: usize,
    },
    /// Inside a message, with this many bytes still to come.
    Message { remaining: usize },
}

/// A request body whose messages are checked as they arrive.
struct Guarded {
    inner: Body,
    max_message_bytes: usize,
    /// The input type and depth limit, for a method that is scanned.
    scan: Option<(MessageDescriptor, usize)>,
    framing: Framing,
    /// The message being collected, prefix included, when scanning.
    frame: BytesMut,
    /// Checked bytes, ready to pass on.
    ready: VecDeque<Bytes>,
    /// An error was returned; the stream is over.
    done: bool,
}

impl Guarded {
    /// Takes in one chunk of the body: passes it on once every prefix in
    /// it is checked, or, when scanning, once each message in it is whole
    /// and scanned.
    fn take_in(&mut self, mut chunk: Bytes) -> Result<(), Status> {
        let whole = chunk.clone();
        while chunk.has_remaining() {
            match &mut self.framing {
                Framing::Prefix { got, have } => {
                    let n = (PREFIX_BYTES - *have).min(chunk.remaining());
                    got[*have..*have + n].copy_from_slice(&chunk[..n]);
                    *have += n;
                    if self.scan.is_some() {
                        self.frame.extend_from_slice(&chunk[..n]);
                    }
                    chunk.advance(n);
                    if *have == PREFIX_BYTES {
                        let prefix = *got;
                        let len = self.check_prefix(prefix)?;
                        self.framing = Framing::Message { remaining: len };
                        self.finish_message()?;
                    }
                }
                Framing::Message { remaining } => {
                    let n = (*remaining).min(chunk.remaining());
                    *remaining -= n;
                    if self.scan.is_some() {
                        self.frame.extend_from_slice(&chunk[..n]);
                    }
                    chunk.advance(n);
                    self.finish_message()?;
                }
            }
        }
        if self.scan.is_none() {
            self.ready.push_back(whole);
        }
        Ok(())
    }

    /// The length a prefix announces, if it is within the limits.
    fn check_prefix(&self, prefix: [u8; PREFIX_BYTES]) -> Result<usize, Status> {
        if prefix[0] != 0 {
            return Err(Status::from(Error::invalid(
                "grpc-encoding",
                "compressed messages are not accepted: send them uncompressed",
            )));
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max_message_bytes {
            return Err(Status::from(Error::ResourceExhausted(format!(
                "the request message is {len} bytes; the limit is {} bytes (max_message_bytes): send less, or split it across calls",
                self.max_message_bytes
            ))));
        }
        Ok(len)
    }

    /// Once the current message is whole, scans it (when asked to) and
    /// makes it ready.
    fn finish_message(&mut self) -> Result<(), Status> {
        if !matches!(self.framing, Framing::Message { remaining: 0 }) {
            return Ok(());
        }
        self.framing = Framing::Prefix {
            got: [0; PREFIX_BYTES],
            have: 0,
        };
        let Some((input, limit)) = &self.scan else {
            return Ok(());
        };
        let frame = self.frame.split().freeze();
        if let Some(deep) = too_deep(input, &frame[PREFIX_BYTES..], *limit) {
            return Err(Status::from(Error::invalid(
                deep.field,
                format!(
                    "nests deeper than {limit} levels (max_nesting_depth): flatten it; \
                     each level of a JSON object inside it counts as 3"
                ),
            )));
        }
        self.ready.push_back(frame);
        Ok(())
    }

    fn mid_message(&self) -> bool {
        match self.framing {
            Framing::Prefix { have, .. } => have > 0,
            Framing::Message { .. } => true,
        }
    }
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            if let Some(ready) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(ready))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => {
                        if let Err(status) = this.take_in(chunk) {
                            this.done = true;
                            this.ready.clear();
                            return Poll::Ready(Some(Err(status)));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                None => {
                    this.done = true;
                    if this.mid_message() {
                        // tonic would call this INTERNAL; it is the
                        // client's mistake.
                        return Poll::Ready(Some(Err(Status::from(Error::invalid(
                            "request",
                            "the request ended inside a message: send whole gRPC messages",
                        )))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && (self.done || (self.inner.is_end_stream() && !self.mid_message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentshare_proto::registry::v1 as registry;
    use futures::StreamExt;
    use http_body_util::BodyExt;
    use prost::Message;
    use prost_types::{Struct, Value, value::Kind as ValueKind};
    use tonic::Code;

    fn pool() -> DescriptorPool {
        crate::http::contract_pool().expect("the contract")
    }

    const CREATE_AGENT: &str = "/agentshare.registry.v1.AgentRegistryService/CreateAgent";

    /// `parameters` holding `levels` JSON objects, one inside the other.
    fn nested_parameters(levels: usize) -> Struct {
        let mut inner = Struct::default();
        for _ in 1..levels {
            let mut outer = Struct::default();
            outer.fields.insert(
                "a".into(),
                Value {
                    kind: Some(ValueKind::StructValue(inner)),
                },
            );
            inner = outer;
        }
        inner
    }

    fn create_agent(levels: usize) -> Vec<u8> {
        registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Deep".into(),
                model: Some(registry::ModelConfig {
                    provider: "openai".into(),
                    model: "gpt".into(),
                    parameters: Some(nested_parameters(levels)),
                }),
                ..Default::default()
            }),
            is_managed: false,
        }
        .encode_to_vec()
    }

    /// CreateAgentRequest, whose draft holds free-form JSON.
    fn create_agent_input() -> MessageDescriptor {
        pool()
            .get_message_by_name("agentshare.registry.v1.CreateAgentRequest")
            .expect("input")
    }

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for message in messages {
            body.push(0);
            body.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
            body.extend_from_slice(message);
        }
        body
    }

    fn request(path: &str, chunks: Vec<Vec<u8>>) -> http::Request<Body> {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Status>(Frame::data(Bytes::from(c)))),
        );
        http::Request::builder()
            .uri(path)
            .header("content-type", "application/grpc")
            .body(Body::new(http_body_util::StreamBody::new(stream)))
            .expect("request")
    }

    /// The bytes the guarded body passes on, or its error.
    async fn through(limits: &Limits, request: http::Request<Body>) -> Result<Vec<u8>, Status> {
        let mut body = limits.guard(request).into_body().into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[test]
    fn only_methods_whose_input_can_nest_are_scanned() {
        let limits = Limits::of_pool(&pool(), 1024, 32);
        assert!(limits.nestable.contains_key(CREATE_AGENT));
        assert!(
            limits
                .nestable
                .contains_key("/agentshare.registry.v1.AgentRegistryService/UpdateDraft")
        );
        for plain in [
            "/agentshare.registry.v1.AgentRegistryService/GetAgent",
            "/agentshare.gateway.v1.InvokeService/Invoke",
            "/agentshare.sharing.v1.TenancyService/GetMe",
            "/agentshare.store.v1.WorkspaceStoreService/WorkspaceWrite",
        ] {
            assert!(!limits.nestable.contains_key(plain), "{plain}");
        }
    }

    #[test]
    fn the_contracts_own_messages_fit_the_smallest_depth_allowed() {
        /// The deepest a message nests before any loop starts.
        fn fixed_depth(message: &MessageDescriptor, on_path: &mut Vec<String>) -> usize {
            let name = message.full_name().to_string();
            if on_path.contains(&name) || is_free_form(message) {
                return 0;
            }
            on_path.push(name);
            let below = message
                .fields()
                .filter_map(|f| match f.kind() {
                    Kind::Message(child) => Some(fixed_depth(&child, on_path)),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            on_path.pop();
            1 + below
        }
        let pool = pool();
        let deepest = pool
            .services()
            .flat_map(|s| s.methods().collect::<Vec<_>>())
            .map(|m| fixed_depth(&m.input(), &mut Vec::new()))
            .max()
            .expect("methods");
        // config.rs bounds max_nesting_depth below by 8, which must hold the
        // contract's own messages with room to spare.
        assert!(deepest <= 6, "the contract nests {deepest} levels deep");
    }

    #[test]
    fn a_deep_struct_names_the_field_that_holds_it() {
        let input = create_agent_input();
        // Request, draft, model, parameters: 4 levels, then 3 per JSON level.
        assert_eq!(too_deep(&input, &create_agent(1), 4), None);
        assert_eq!(too_deep(&input, &create_agent(10), 31), None);
        let parameters = Some(TooDeep {
            field: "draft.model.parameters".into(),
        });
        assert_eq!(too_deep(&input, &create_agent(11), 32), parameters);
        assert_eq!(too_deep(&input, &create_agent(90), 32), parameters);
        // What does not parse is left to the decoder.
        assert_eq!(too_deep(&input, &[0x0a, 0xff], 32), None);
    }

    #[test]
    fn deep_unknown_groups_count_too() {
        let input = create_agent_input();
        // Field 99, a start-group tag, 40 deep, then the matching ends.
        let mut bytes = Vec::new();
        for _ in 0..40 {
            prost::encoding::encode_varint((99 << 3) | 3, &mut bytes);
        }
        for _ in 0..40 {
            prost::encoding::encode_varint((99 << 3) | 4, &mut bytes);
        }
        assert_eq!(
            too_deep(&input, &bytes, 32),
            Some(TooDeep {
                field: "request".into()
            })
        );
        assert_eq!(too_deep(&input, &bytes, 64), None);
    }

    #[tokio::test]
    async fn messages_pass_whole_in_any_chunking_and_deep_ones_are_refused() {
        let limits = Limits::of_pool(&pool(), 1024 * 1024, 32);
        let fine = create_agent(3);
        let body = framed(&[&fine, &fine]);
        // Byte by byte, and all at once.
        for chunks in [
            body.iter().map(|b| vec![*b]).collect::<Vec<_>>(),
            vec![body.clone()],
        ] {
            let passed = through(&limits, request(CREATE_AGENT, chunks))
                .await
                .expect("passes");
            assert_eq!(passed, body);
        }
        let deep = create_agent(90);
        let refused = through(&limits, request(CREATE_AGENT, vec![framed(&[&deep])]))
            .await
            .expect_err("too deep");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().contains(
                "draft.model.parameters: nests deeper than 32 levels (max_nesting_depth)"
            ),
            "{}",
            refused.message()
        );
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_from_its_prefix() {
        let limits = Limits::of_pool(&pool(), 1024, 32);
        let big = vec![0x0a; 2000];
        // Only the prefix arrives: the refusal does not wait for the body.
        let prefix = framed(&[&big])[..PREFIX_BYTES].to_vec();
        let refused = through(
            &limits,
            request(
                "/agentshare.registry.v1.AgentRegistryService/GetAgent",
                vec![prefix],
            ),
        )
        .await
        .expect_err("too big");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "the request message is 2000 bytes; the limit is 1024 bytes (max_message_bytes): send less, or split it across calls"
        );
        let exact = vec![0x0a; 1024];
        assert!(
            through(
                &limits,
                request(
                    "/agentshare.registry.v1.AgentRegistryService/GetAgent",
                    vec![framed(&[&exact])]
                ),
            )
            .await
            .is_ok()
        );
    }

    #[tokio::test]
    async fn a_truncated_or_compressed_message_is_the_clients_mistake() {
        let limits = Limits::of_pool(&pool(), 1024, 32);
        let path = "/agentshare.registry.v1.AgentRegistryService/GetAgent";
        let whole = framed(&[b"\x0a\x03abc"]);
        let cut = through(&limits, request(path, vec![whole[..6].to_vec()]))
            .await
            .expect_err("truncated");
        assert_eq!(cut.code(), Code::InvalidArgument);
        let mut compressed = whole.clone();
        compressed[0] = 1;
        let refused = through(&limits, request(path, vec![compressed]))
            .await
            .expect_err("compressed");
        assert_eq!(refused.code(), Code::InvalidArgument);
        // Not gRPC: untouched.
        let plain = http::Request::builder()
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::new(http_body_util::Full::new(Bytes::from_static(
                b"{}",
            ))))
            .expect("request");
        assert_eq!(through(&limits, plain).await.expect("passes"), b"{}");
    }
}
