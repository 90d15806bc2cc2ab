//! Registry's and sharing's events, as far as users' automations need them.
//!
//! Registry: each deploy announces the agent's latest version, so the next
//! read of a user's subscriptions compares them with the version that user
//! runs; a delete stops every subscription of the agent; a deprecated
//! version's pinned users are told, and its sunset awaited (`retirements`).
//!
//! Sharing: an unshare disables every subscription but the owner's; a
//! member leaving a workspace or the org, an agent leaving a workspace and a
//! workspace being deleted stop only the subscriptions whose user can no
//! longer RUN the agent, asked of sharing user by user. A user who still
//! reaches the agent through another of their workspaces keeps theirs, and
//! it moves to that workspace, since its runs must execute in one the user
//! belongs to.
//!
//! Handlers are idempotent, since delivery is at least once and every
//! replica follows on its own. The access check at fire time (the gateway's)
//! stops what an event missed.

use agentshare_kit::Error;
use agentshare_kit::bootstrap::Context;
use agentshare_kit::config::BadSetting;
use agentshare_kit::events::{self, Feed};
use agentshare_kit::identity::ServiceName;
use agentshare_proto::events::v1::Event;

use crate::peers::{Peers, Reach};
use crate::retirements::Retirements;
use crate::subscriptions::storage::{RunningBy, Storage};

/// Registry's events, as far as the scheduler follows them.
const AGENTS: Feed = Feed::new(ServiceName::Registry, "scheduler.agents");
/// Sharing's events, as far as the scheduler follows them.
const ACCESS: Feed = Feed::new(ServiceName::Sharing, "scheduler.access");

pub fn follow_sharing(context: &Context, storage: Storage, peers: Peers) -> Result<(), BadSetting> {
    let db = storage.db.clone();
    events::follow(context, db, ACCESS, (storage, peers), access_changed)?;
    Ok(())
}

fn payload(event: &Event) -> Result<serde_json::Value, Error> {
    serde_json::from_str(&event.payload_json)
        .map_err(|e| Error::internal(format!("{} {}: {e}", event.kind, event.seq)))
}

async fn access_changed((storage, peers): (Storage, Peers), event: Event) -> Result<(), Error> {
    let (by, subject) = match event.kind.as_str() {
        "agent.unshared" => {
            let payload = payload(&event)?;
            let owner = payload
                .get("owner_user_id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            let stopped = storage.agent_unshared(&event.subject_id, owner).await?;
            tracing::info!(agent = %event.subject_id, stopped, "agent unshared: subscriptions disabled");
            return Ok(());
        }
        "member.removed" => (RunningBy::User, &event.subject_id),
        "agent.workspaces_changed" => (RunningBy::Agent, &event.subject_id),
        "workspace.deleted" => (RunningBy::Workspace, &event.subject_id),
        _ => return Ok(()),
    };
    for subscription in storage.running_where(by, subject, &event.org_id).await? {
        match peers
            .reach(
                &subscription.user_id,
                &subscription.org_id,
                &subscription.workspace_id,
                &subscription.agent_id,
            )
            .await?
        {
            Reach::Runs { workspace_id } if workspace_id == subscription.workspace_id => {}
            Reach::Runs { workspace_id } => {
                storage
                    .move_to_workspace(&subscription.id, &workspace_id)
                    .await?;
            }
            Reach::Lost => {
                storage.access_lost(&subscription.id).await?;
            }
        }
    }
    Ok(())
}

pub fn follow_registry(
    context: &Context,
    storage: Storage,
    retirements: Retirements,
) -> Result<(), BadSetting> {
    let db = storage.db.clone();
    events::follow(context, db, AGENTS, (storage, retirements), agent_changed)?;
    Ok(())
}

async fn agent_changed(
    (storage, retirements): (Storage, Retirements),
    event: Event,
) -> Result<(), Error> {
    match event.kind.as_str() {
        "version.deprecated" => retirements.deprecated(&event).await?,
        "version.undeprecated" => retirements.undeprecated(&event).await?,
        "agent.deployed" => {
            let version = payload(&event)?
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
