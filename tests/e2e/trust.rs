//! Trust between services: a port of a backend admits only verified
//! agentshare services, internal services only their listed callers, and the
//! gateway exposes public services alone.

use agentshare_e2e::Suite;
use agentshare_kit::identity::{KeyRing, PRINCIPAL_HEADER, SERVICE_HEADER, ServiceName};
use agentshare_proto::events::v1 as events;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::registry::v1::agent_registry_internal_service_client::AgentRegistryInternalServiceClient;
use agentshare_proto::sharing::v1 as sharing;
use events::event_log_service_client::EventLogServiceClient;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sharing::access_internal_service_client::AccessInternalServiceClient;
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::assert_status;

/// Signs `claims` with `service`'s real private key.
fn sign_as(suite: &Suite, service: ServiceName, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(suite.keys_dir().join(format!("{service}.key"))).expect("key");
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &EncodingKey::from_ed_pem(&pem).expect("pem"),
    )
    .expect("sign")
}

fn principal_claims(suite: &Suite, iss: &str) -> serde_json::Value {
    let now = suite.clock.now_secs();
    serde_json::json!({
        "iss": iss, "aud": "agentshare-internal", "iat": now, "exp": now + 60,
        "kind": "user", "user_id": "someone", "org_id": "any-org", "org_role": "owner", "workspace_id": "any"
    })
}

#[tokio::test]
async fn a_backend_port_rejects_callers_it_cannot_verify() {
    let suite = Suite::start().await;
    let registry_addr = suite.addrs(ServiceName::Registry)[0];
    let direct = agentshare_e2e::connect(registry_addr).await;
    let get = || {
        let mut request = tonic::Request::new(registry::GetAgentRequest {
            agent_id: "x".into(),
        });
        request.metadata_mut().insert(
            PRINCIPAL_HEADER,
            MetadataValue::try_from(sign_as(
                &suite,
                ServiceName::Gateway,
                &principal_claims(&suite, "gateway"),
            ))
            .expect("header"),
        );
        request
    };
    let mut client =
        registry::agent_registry_service_client::AgentRegistryServiceClient::new(direct.clone());

    // A well-signed Principal alone is not enough: the caller must be a service.
    assert_status(
        client.get_agent(get()).await,
        Code::Unauthenticated,
        SERVICE_HEADER,
    );

    // A service identity signed with a key the suite does not trust.
    let stranger_dir = tempfile::tempdir().expect("dir");
    agentshare_kit::identity::generate_missing_keys(stranger_dir.path()).expect("keys");
    let stranger = KeyRing::load(stranger_dir.path(), ServiceName::Gateway).expect("keys");
    let stranger = agentshare_kit::identity::Identity::new(stranger, suite.clock.clone());
    let token = stranger
        .service_token(ServiceName::Registry)
        .expect("token");
    let mut request = get();
    request.metadata_mut().insert(
        SERVICE_HEADER,
        MetadataValue::try_from(token).expect("header"),
    );
    assert_status(
        client.get_agent(request).await,
        Code::Unauthenticated,
        "signature does not verify",
    );

    // A real service, but the Principal was forged: signed by the stranger.
    let mut store = registry::agent_registry_service_client::AgentRegistryServiceClient::new(
        suite
            .service_channel(ServiceName::Store, ServiceName::Registry, 0)
            .await,
    );
    let mut request = tonic::Request::new(registry::GetAgentRequest {
        agent_id: "x".into(),
    });
    let forged = stranger
        .sign_principal(&agentshare_kit::identity::Principal::user("mallory"))
        .expect("sign");
    request.metadata_mut().insert(
        PRINCIPAL_HEADER,
        MetadataValue::try_from(forged).expect("header"),
    );
    assert_status(
        store.get_agent(request).await,
        Code::Unauthenticated,
        "principal rejected",
    );

    // A real service signing a Principal itself: only the gateway and the
    // scheduler may.
    let mut request = tonic::Request::new(registry::GetAgentRequest {
        agent_id: "x".into(),
    });
    let self_signed = sign_as(
        &suite,
        ServiceName::Store,
        &principal_claims(&suite, "store"),
    );
    request.metadata_mut().insert(
        PRINCIPAL_HEADER,
        MetadataValue::try_from(self_signed).expect("header"),
    );
    assert_status(
        store.get_agent(request).await,
        Code::Unauthenticated,
        "store may not sign principals",
    );

    // An expired Principal from the real gateway key.
    let mut claims = principal_claims(&suite, "gateway");
    claims["iat"] = serde_json::json!(suite.clock.now_secs() - 300);
    claims["exp"] = serde_json::json!(suite.clock.now_secs() - 240);
    let mut request = tonic::Request::new(registry::GetAgentRequest {
        agent_id: "x".into(),
    });
    request.metadata_mut().insert(
        PRINCIPAL_HEADER,
        MetadataValue::try_from(sign_as(&suite, ServiceName::Gateway, &claims)).expect("header"),
    );
    assert_status(
        store.get_agent(request).await,
        Code::Unauthenticated,
        "expired",
    );
    suite.stop().await;
}

#[tokio::test]
async fn internal_services_accept_only_their_listed_callers() {
    let suite = Suite::start().await;
    let resolve = || sharing::ResolveCallerRequest {
        subject: "alice".into(),
        ..Default::default()
    };
    // The store is not a listed caller of AccessInternal; the gateway is.
    let mut as_store = AccessInternalServiceClient::new(
        suite
            .service_channel(ServiceName::Store, ServiceName::Sharing, 0)
            .await,
    );
    assert_status(
        as_store.resolve_caller(resolve()).await,
        Code::PermissionDenied,
        "store may not call",
    );
    // It is listed for the one method it needs, and that one only.
    let store_call = as_store
        .resolve_store(sharing::ResolveStoreRequest {
            agent_id: "01900000-0000-7000-8000-000000000000".into(),
        })
        .await
        .expect_err("no Principal was sent");
    assert!(
        !store_call.message().contains("may not call"),
        "{}",
        store_call.message()
    );
    let mut as_gateway = AccessInternalServiceClient::new(
        suite
            .service_channel(ServiceName::Gateway, ServiceName::Sharing, 0)
            .await,
    );
    let resolved = as_gateway
        .resolve_caller(resolve())
        .await
        .expect("gateway is listed")
        .into_inner();
    assert!(!resolved.user_id.is_empty());

    // A run's full design goes to the gateway and the scheduler only:
    // holders never read the instructions, but the runtime needs them.
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let created = alice
        .registry()
        .create_agent(registry::CreateAgentRequest {
            draft: Some(registry::AgentDraft {
                name: "Secretive".into(),
                instructions: "Answer in haiku.".into(),
                ..Default::default()
            }),
            is_managed: false,
        })
        .await
        .expect("agent")
        .into_inner()
        .agent
        .expect("agent");
    let agent = alice.deploy(&created).await;
    let content = |version_number| registry::GetRunContentRequest {
        agent_id: agent.id.clone(),
        version_number,
    };
    let mut run_as_gateway = AgentRegistryInternalServiceClient::new(
        suite
            .service_channel(ServiceName::Gateway, ServiceName::Registry, 0)
            .await,
    );
    let version = run_as_gateway
        .get_run_content(content(1))
        .await
        .expect("the gateway reads a run's design")
        .into_inner();
    assert_eq!(
        version.content.expect("content").instructions,
        "Answer in haiku."
    );
    assert_status(
        run_as_gateway.get_run_content(content(2)).await,
        Code::NotFound,
        "version 2",
    );
    let mut run_as_store = AgentRegistryInternalServiceClient::new(
        suite
            .service_channel(ServiceName::Store, ServiceName::Registry, 0)
            .await,
    );
    assert_status(
        run_as_store.get_run_content(content(1)).await,
        Code::PermissionDenied,
        "store may not call",
    );

    // The store's event log is for the scheduler only (registry's and
    // sharing's also serve the gateway, whose MCP sessions hear of access
    // changes).
    let watch = events::WatchRequest {
        after_seq: 0,
        ..Default::default()
    };
    let mut as_gateway = EventLogServiceClient::new(
        suite
            .service_channel(ServiceName::Gateway, ServiceName::Store, 0)
            .await,
    );
    assert_status(
        as_gateway.watch(watch).await,
        Code::PermissionDenied,
        "gateway may not call",
    );
    let mut as_scheduler = EventLogServiceClient::new(
        suite
            .service_channel(ServiceName::Scheduler, ServiceName::Store, 0)
            .await,
    );
    as_scheduler
        .watch(watch)
        .await
        .expect("the scheduler is listed");
    suite.stop().await;
}
