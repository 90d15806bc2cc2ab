//! The edge's message limits over gRPC: a request over `max_message_bytes`
//! (4 MiB by default) is RESOURCE_EXHAUSTED naming the limit, whether the
//! gateway forwards the method or serves it; a request nested deeper than
//! `max_nesting_depth` is INVALID_ARGUMENT naming the field; a client stream
//! that fails mid-call ends the call with its own error.

use agentshare_e2e::{Suite, UserClient};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use bytes::{Buf, BufMut, Bytes};
use prost_types::{Struct, Value, value::Kind};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::assert_status;

const MIB: usize = 1024 * 1024;

async fn member() -> (Suite, UserClient) {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    (suite, alice)
}

fn agent_with_instructions(instructions: String) -> registry::CreateAgentRequest {
    registry::CreateAgentRequest {
        draft: Some(registry::AgentDraft {
            name: "Big".into(),
            instructions,
            ..Default::default()
        }),
        is_managed: false,
    }
}

#[track_caller]
fn assert_too_big<T: std::fmt::Debug>(result: Result<T, Status>, at_least: usize) {
    let status = assert_status(
        result,
        Code::ResourceExhausted,
        "; the limit is 4194304 bytes (max_message_bytes)",
    );
    let size: usize = status
        .message()
        .strip_prefix("the request message is ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {:?}", status.message()));
    assert!(size >= at_least, "{size} < {at_least}");
}

#[tokio::test]
async fn a_request_over_the_limit_is_resource_exhausted_forwarded_or_served_here() {
    let (suite, alice) = member().await;
    for size in [5 * MIB, 10 * MIB] {
        // Forwarded to the registry.
        assert_too_big(
            alice
                .registry()
                .create_agent(agent_with_instructions("x".repeat(size)))
                .await,
            size,
        );
        // Served by the gateway itself, unary and streaming.
        assert_too_big(
            alice
                .invoke()
                .invoke(gateway::InvokeRequest {
                    agent_id: uuid::Uuid::now_v7().to_string(),
                    input: "x".repeat(size),
                    ..Default::default()
                })
                .await,
            size,
        );
        assert_too_big(
            alice
                .invoke()
                .invoke_stream(gateway::InvokeStreamRequest {
                    agent_id: uuid::Uuid::now_v7().to_string(),
                    input: "x".repeat(size),
                    ..Default::default()
                })
                .await,
            size,
        );
    }
    // Under the limit, the request reaches the backend whole, which applies
    // its own rule (instructions of at most 100 KiB).
    let status = assert_status(
        alice
            .registry()
            .create_agent(agent_with_instructions("x".repeat(3 * MIB)))
            .await,
        Code::InvalidArgument,
        "instructions",
    );
    assert!(status.get_details_bad_request().is_some());
    suite.stop().await;
}

/// `levels` JSON objects, one inside the other.
fn nested(levels: usize) -> Struct {
    let mut inner = Struct::default();
    for _ in 1..levels {
        let mut outer = Struct::default();
        outer.fields.insert(
            "deeper".into(),
            Value {
                kind: Some(Kind::StructValue(inner)),
            },
        );
        inner = outer;
    }
    inner
}

fn agent_with_parameters(levels: usize) -> registry::AgentDraft {
    registry::AgentDraft {
        name: "Nested".into(),
        model: Some(registry::ModelConfig {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            parameters: Some(nested(levels)),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_deeply_nested_struct_is_invalid_argument_naming_the_field() {
    let (suite, alice) = member().await;
    let status = assert_status(
        alice
            .registry()
            .create_agent(registry::CreateAgentRequest {
                draft: Some(agent_with_parameters(90)),
                is_managed: false,
            })
            .await,
        Code::InvalidArgument,
        "nests deeper than 32 levels (max_nesting_depth)",
    );
    let violations = status
        .get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "draft.model.parameters");
    assert!(violations[0].description.contains("32"));

    // A shallower one is stored as sent.
    let agent = alice
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(agent_with_parameters(5)),
            is_managed: false,
        })
        .await
        .expect("five levels are fine")
        .into_inner()
        .agent
        .expect("agent");
    let stored = agent.draft.and_then(|d| d.model).and_then(|m| m.parameters);
    assert_eq!(stored, Some(nested(5)));

    // The same holds for every method whose input can nest.
    let status = assert_status(
        alice
            .registry()
            .update_draft(registry::UpdateDraftRequest {
                agent_id: agent.id.clone(),
                draft: Some(agent_with_parameters(90)),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["model".into()],
                }),
                expected_draft_revision: agent.draft_revision,
            })
            .await,
        Code::InvalidArgument,
        "max_nesting_depth",
    );
    assert_eq!(
        status
            .get_details_bad_request()
            .expect("a BadRequest detail")
            .field_violations[0]
            .field,
        "draft.model.parameters"
    );
    suite.stop().await;
}

/// Sends encoded messages as they are.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        *self
    }

    fn decoder(&mut self) -> Raw {
        *self
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tokio::test]
async fn a_client_stream_that_fails_mid_call_ends_the_forwarded_call_with_its_error() {
    let (suite, alice) = member().await;
    let mut client = tonic::client::Grpc::new(alice.channel());
    client.ready().await.expect("ready");
    // A well-formed first message, then one over the limit: the backend
    // must not answer the cut-short stream as if it were whole.
    let messages = futures::stream::iter([Bytes::new(), Bytes::from(vec![b'x'; 5 * MIB])]);
    let answer = client
        .client_streaming::<_, Bytes, Bytes, _>(
            tonic::Request::new(messages),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/agentshare.sharing.v1.TenancyService/GetMe",
            ),
            Raw,
        )
        .await;
    assert_status(answer, Code::ResourceExhausted, "(max_message_bytes)");
    suite.stop().await;
}

#[tokio::test]
async fn bytes_that_are_not_the_request_are_invalid_argument_not_internal() {
    let (suite, alice) = member().await;
    // Field 1 claims 127 bytes and carries one: no protobuf decoder takes it.
    let garbage = Bytes::from_static(&[0x0a, 0x7f, 0x01]);
    for path in [
        "/agentshare.registry.v1.AgentRegistryService/GetAgent",
        "/agentshare.sharing.v1.TenancyService/GetMe",
        "/agentshare.gateway.v1.InvokeService/Invoke",
    ] {
        let mut client = tonic::client::Grpc::new(alice.channel());
        client.ready().await.expect("ready");
        let answer = client
            .unary::<Bytes, Bytes, _>(
                tonic::Request::new(garbage.clone()),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                Raw,
            )
            .await;
        assert_status(
            answer,
            Code::InvalidArgument,
            "not a valid protobuf encoding",
        );
    }
    suite.stop().await;
}
