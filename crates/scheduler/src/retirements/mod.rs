//! Versions that retire on a schedule (DESIGN.md, "Access model
//! (sharing)", Versions). When the owner deprecates a version, registry's
//! `version.deprecated` carries the sunset, the note and the changes to the
//! latest version; the scheduler tells everyone pinned to it at once, and
//! records the sunset. Its firing loop then tells those still pinned once
//! the sunset has passed. Sharing decides runs by the clock alone, so a
//! notice late by a loop's pace changes no run.
//!
//! Each notice goes out at most once per user, stage and sunset, whatever
//! the replicas and redeliveries; a sunset row is claimed under a lease, so
//! a crash between claim and notices loses nothing.

pub mod rules;
pub mod storage;

use std::time::Duration;

use agentshare_kit::Error;
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::events::v1::Event;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::sharing::v1::access_internal_service_client::AccessInternalServiceClient;

use crate::subscriptions::storage::Storage;
use rules::{Deprecation, Stage};

/// A call to sharing waits no longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Retirements one pass takes at most.
const PASS_BATCH: i64 = 20;

#[derive(Clone)]
pub struct Retirements {
    pub storage: Storage,
    sharing: AccessInternalServiceClient<ServiceChannel>,
}

fn payload_error(event: &Event, what: &str) -> Error {
    Error::internal(format!("{} {} carries no {what}", event.kind, event.seq))
}

impl Retirements {
    pub fn new(storage: Storage, sharing: ServiceChannel) -> Self {
        Self {
            storage,
            sharing: AccessInternalServiceClient::new(sharing),
        }
    }

    /// Who pins the version now, with the agent's name and latest version.
    async fn holders(
        &self,
        agent_id: &str,
        version: i64,
    ) -> Result<sharing::ListVersionHoldersResponse, Error> {
        let mut request = tonic::Request::new(sharing::ListVersionHoldersRequest {
            agent_id: agent_id.to_string(),
            version,
        });
        request.set_timeout(CALL_TIMEOUT);
        let answer = self
            .sharing
            .clone()
            .list_version_holders(request)
            .await
            .map_err(|status| {
                Error::Unavailable(format!(
                    "sharing could not say who pins version {version} of agent {agent_id}: {}",
                    status.message()
                ))
            })?;
        Ok(answer.into_inner())
    }

    /// Tells everyone pinned to the version now about `stage`.
    async fn tell(&self, stage: Stage, mut deprecation: Deprecation) -> Result<usize, Error> {
        let holders = self
            .holders(&deprecation.agent_id, deprecation.version)
            .await?;
        let Some(pins) = holders.pins else {
            return Ok(0);
        };
        if holders.latest_version > 0 {
            deprecation.latest_version = holders.latest_version;
        }
        let notices: Vec<_> = rules::recipients(&pins)
            .iter()
            .map(|recipient| rules::notice(stage, &deprecation, recipient))
            .collect();
        self.storage
            .version_notices(stage, &deprecation, &notices)
            .await
    }

    /// `version.deprecated`: records the sunset and tells the pinned users.
    pub async fn deprecated(&self, event: &Event) -> Result<(), Error> {
        let payload: serde_json::Value = serde_json::from_str(&event.payload_json)
            .map_err(|e| Error::internal(format!("{} {}: {e}", event.kind, event.seq)))?;
        let number = |key: &str| {
            payload
                .get(key)
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| payload_error(event, key))
        };
        let text = |key: &str| {
            payload
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let deprecation = Deprecation {
            agent_id: event.subject_id.clone(),
            org_id: event.org_id.clone(),
            agent_name: text("agent_name"),
            version: number("version")?,
            sunset_at: number("sunset_at")?,
            note: text("note"),
            latest_version: number("latest_version")?,
            changes: text("changes"),
        };
        self.storage.version_deprecated(&deprecation).await?;
        let now = self.storage.clock.now_micros();
        if deprecation.sunset_at <= now {
            // Retiring at once: the retirement notice says it all.
            return Ok(());
        }
        let sent = self.tell(Stage::Deprecated, deprecation).await?;
        tracing::info!(agent = %event.subject_id, sent, "version deprecated: pinned users told");
        Ok(())
    }

    /// `version.undeprecated`: the sunset no longer comes.
    pub async fn undeprecated(&self, event: &Event) -> Result<(), Error> {
        let payload: serde_json::Value = serde_json::from_str(&event.payload_json)
            .map_err(|e| Error::internal(format!("{} {}: {e}", event.kind, event.seq)))?;
        let version = payload
            .get("version")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| payload_error(event, "version"))?;
        self.storage
            .version_undeprecated(&event.subject_id, version)
            .await?;
        Ok(())
    }

    /// One pass of the firing loop: tells the users still pinned to each
    /// version whose sunset has passed; how many retirements it finished.
    pub async fn pass(&self, owner: &str, lease: Duration) -> Result<usize, Error> {
        let lease = agentshare_kit::clock::duration_micros(lease);
        let due = self
            .storage
            .claim_due_retirements(owner, lease, PASS_BATCH)
            .await?;
        let mut finished = 0;
        for retirement in due {
            let deprecation = Deprecation {
                agent_id: retirement.agent_id.clone(),
                org_id: retirement.org_id.clone(),
                agent_name: retirement.agent_name.clone(),
                version: retirement.version,
                sunset_at: retirement.sunset_at,
                note: String::new(),
                latest_version: 0,
                changes: String::new(),
            };
            let sent = self.tell(Stage::Retired, deprecation).await?;
            if self.storage.retirement_notified(&retirement, owner).await? {
                finished += 1;
                tracing::info!(agent = %retirement.agent_id, version = retirement.version, sent, "version retired: pinned users told");
            }
        }
        Ok(finished)
    }
}
