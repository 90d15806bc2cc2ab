//! Replicas: clients balance across every replica of a service and carry on
//! when one stops.

use agentshare_e2e::Suite;
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;

#[tokio::test]
async fn calls_spread_across_three_replicas_and_survive_one_stopping() {
    let mut suite = Suite::builder()
        .replicas(ServiceName::Registry, 3)
        .replicas(ServiceName::Sharing, 3)
        .start()
        .await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.new_agent("Spread").await;
    let get = || registry::GetAgentRequest {
        agent_id: agent.id.clone(),
    };

    let before = suite.calls_served(ServiceName::Registry);
    for _ in 0..60 {
        alice.registry().get_agent(get()).await.expect("get");
    }
    let after = suite.calls_served(ServiceName::Registry);
    for (replica, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a > b,
            "registry replica {replica} served no call: {before:?} -> {after:?}"
        );
    }
    let sharing_calls = suite.calls_served(ServiceName::Sharing);
    assert!(
        sharing_calls.iter().all(|c| *c > 0),
        "sharing replicas: {sharing_calls:?}"
    );

    suite.stop_replica(ServiceName::Registry, 1).await;
    suite.stop_replica(ServiceName::Sharing, 0).await;
    for _ in 0..60 {
        alice
            .registry()
            .get_agent(get())
            .await
            .expect("get after a replica stopped");
    }
    suite.stop().await;
}
