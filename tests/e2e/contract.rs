//! The v1 contract as a client in any language meets it: discoverable by
//! reflection alone, every public service mounted behind the gateway,
//! internal services out of reach.

use std::collections::BTreeSet;

use agentshare_e2e::{Suite, UserClient};
use agentshare_kit::identity::ServiceName;
use tonic::Code;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::assert_status;

const PUBLIC: [&str; 10] = [
    "agentshare.gateway.v1.InvokeService",
    "agentshare.registry.v1.AgentRegistryService",
    "agentshare.scheduler.v1.AutomationsService",
    "agentshare.sharing.v1.AccessService",
    "agentshare.sharing.v1.ConnectionsService",
    "agentshare.sharing.v1.SharingService",
    "agentshare.sharing.v1.TenancyService",
    "agentshare.store.v1.SessionsService",
    "agentshare.store.v1.UsageService",
    "agentshare.store.v1.WorkspaceStoreService",
];

/// Calls `path` with an empty message, as a client that knows only the
/// method's name (an empty message is every request's default).
async fn call_empty(channel: agentshare_e2e::Authed, path: &str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(tonic::Request::new(()), path.parse().expect("path"), codec)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn reflection_alone_lists_every_public_service_and_no_internal_one() {
    let suite = Suite::start().await;
    let mut reflection = ServerReflectionClient::new(suite.gateway_channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("response")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    let listed: BTreeSet<String> = list
        .service
        .into_iter()
        .map(|s| s.name)
        .filter(|n| n.starts_with("agentshare."))
        .collect();
    let expected: BTreeSet<String> = PUBLIC.iter().map(|s| (*s).to_string()).collect();
    assert_eq!(listed, expected);
    suite.stop().await;
}

#[tokio::test]
async fn internal_services_are_unreachable_through_the_gateway_and_need_a_service_identity() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    let internal = [
        (
            "/agentshare.sharing.v1.AccessInternalService/SyncAgent",
            ServiceName::Sharing,
        ),
        (
            "/agentshare.sharing.v1.AccessInternalService/ResolveCaller",
            ServiceName::Sharing,
        ),
        (
            "/agentshare.registry.v1.AgentRegistryInternalService/GetRunContent",
            ServiceName::Registry,
        ),
        (
            "/agentshare.store.v1.StoreInternalService/RecordInvocation",
            ServiceName::Store,
        ),
        (
            "/agentshare.events.v1.EventLogService/Watch",
            ServiceName::Registry,
        ),
        (
            "/agentshare.events.v1.EventLogService/Watch",
            ServiceName::Scheduler,
        ),
        (
            "/agentshare.runtime.v1.AgentRuntimeService/Run",
            ServiceName::Gateway,
        ),
    ];
    for (path, service) in internal {
        let through_gateway = call_empty(alice.channel(), path).await;
        let status = through_gateway.expect_err(path);
        assert!(
            matches!(status.code(), Code::Unimplemented | Code::NotFound),
            "{path} through the gateway: {status:?}"
        );
        if service == ServiceName::Gateway {
            continue;
        }
        // Straight at the service's port, with a user's token but no
        // service identity.
        let port = agentshare_e2e::connect(suite.addrs(service)[0]).await;
        let direct = UserClient::new(port, Some(suite.token("alice")));
        assert_status(
            call_empty(direct.channel(), path).await,
            Code::Unauthenticated,
            "x-agentshare-service",
        );
    }
    suite.stop().await;
}
