//! Registry's events, as far as users' automations need them: each deploy
//! announces the agent's latest version, so the next read of a user's
//! subscriptions compares them with the version that user runs; a delete
//! stops every subscription of the agent. Handlers are idempotent, since
//! delivery is at least once and every replica follows on its own.

use agentshare_kit::Error;
use agentshare_kit::bootstrap::Context;
use agentshare_kit::config::BadSetting;
use agentshare_kit::identity::ServiceName;
use agentshare_proto::events::v1::Event;

use crate::storage::Storage;

/// Where the scheduler's cursor over registry's events is stored.
const REGISTRY_FOLLOWER: &str = "scheduler.agents";

pub fn follow_registry(context: &Context, storage: Storage) -> Result<(), BadSetting> {
    agentshare_kit::events::follow(
        context,
        storage.db.clone(),
        ServiceName::Registry,
        REGISTRY_FOLLOWER,
        move |event| {
            let storage = storage.clone();
            Box::pin(async move { handle(&storage, &event).await })
        },
    )?;
    Ok(())
}

async fn handle(storage: &Storage, event: &Event) -> Result<(), Error> {
    match event.kind.as_str() {
        "agent.deployed" => {
            let payload: serde_json::Value = serde_json::from_str(&event.payload_json)
                .map_err(|e| Error::internal(format!("agent.deployed {}: {e}", event.seq)))?;
            let version = payload
                .get("version")
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| {
                    Error::internal(format!("agent.deployed {} carries no version", event.seq))
                })?;
            storage
                .agent_deployed(&event.subject_id, &event.org_id, version)
                .await?;
        }
        "agent.deleted" => {
            storage
                .agent_deleted(&event.subject_id, &event.org_id)
                .await?;
        }
        _ => {}
    }
    Ok(())
}
