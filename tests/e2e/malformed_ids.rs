//! A malformed id gets the same answer from every service: INVALID_ARGUMENT
//! before any lookup, a `BadRequest` naming the field, and a message that
//! never repeats what was sent.

use agentshare_e2e::Suite;
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as scheduler;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use scheduler::automations_service_client::AutomationsServiceClient;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const HOSTILE: &str = "not-a-uuid'; DROP TABLE agents;--";

#[track_caller]
fn assert_rejected<T: std::fmt::Debug>(service: &str, result: Result<T, Status>, field: &str) {
    let status = result.expect_err("a malformed id is refused");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{service}: {}",
        status.message()
    );
    assert!(
        status.message().contains("must be a UUID"),
        "{service}: {}",
        status.message()
    );
    for leaked in ["not-a-uuid", "DROP TABLE", "--"] {
        assert!(
            !status.message().contains(leaked),
            "{service} echoes the input: {}",
            status.message()
        );
    }
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("{service}: no BadRequest detail"))
        .field_violations
        .into_iter()
        .map(|v| {
            assert!(!v.description.contains("DROP"), "{service}: {v:?}");
            v.field
        })
        .collect();
    assert_eq!(fields, [field], "{service}");
}

#[tokio::test]
async fn every_service_refuses_a_malformed_id_the_same_way_without_echoing_it() {
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;

    assert_rejected(
        "registry",
        alice
            .registry()
            .get_agent(registry::GetAgentRequest {
                agent_id: HOSTILE.into(),
            })
            .await,
        "agent_id",
    );
    assert_rejected(
        "sharing",
        alice
            .sharing()
            .share_agent(sharing::ShareAgentRequest {
                agent_id: HOSTILE.into(),
            })
            .await,
        "agent_id",
    );
    assert_rejected(
        "store (sessions)",
        alice
            .sessions()
            .get_session(store::GetSessionRequest {
                session_id: HOSTILE.into(),
                ..Default::default()
            })
            .await,
        "session_id",
    );
    assert_rejected(
        "store (workspace tools)",
        WorkspaceStoreServiceClient::new(alice.channel())
            .workspace_read(store::WorkspaceReadRequest {
                agent_id: HOSTILE.into(),
                key: "notes".into(),
            })
            .await,
        "agent_id",
    );
    assert_rejected(
        "scheduler",
        AutomationsServiceClient::new(alice.channel())
            .list_automations(scheduler::ListAutomationsRequest {
                agent_id: HOSTILE.into(),
                ..Default::default()
            })
            .await,
        "agent_id",
    );
    assert_rejected(
        "gateway (invoke)",
        alice
            .invoke()
            .invoke(gateway::InvokeRequest {
                agent_id: HOSTILE.into(),
                input: "hello".into(),
                ..Default::default()
            })
            .await,
        "agent_id",
    );
    suite.stop().await;
}
