//! Writing an agent's access facts into sharing (`AccessInternal.SyncAgent`).
//! Sharing applies a sync only when its revision is newer than what it
//! holds, so repeating one is always safe.

use std::time::Duration;

use agentshare_kit::Error;
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::sharing::v1::access_internal_service_client::AccessInternalServiceClient;
use agentshare_proto::sharing::v1::{AgentAccessFacts, SyncAgentRequest};

/// A sync waits no longer than this: the caller is waiting on it.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
const SYNC_ATTEMPTS: usize = 3;

#[derive(Clone)]
pub struct AccessSync {
    sharing: AccessInternalServiceClient<ServiceChannel>,
}

/// Why a sync did not reach sharing; the caller words the answer, because
/// only it knows whether its change was saved.
#[derive(Debug)]
pub struct NotSynced(String);

impl AccessSync {
    pub fn new(channel: ServiceChannel) -> Self {
        Self {
            sharing: AccessInternalServiceClient::new(channel),
        }
    }

    pub async fn sync(&self, facts: AgentAccessFacts) -> Result<(), NotSynced> {
        let mut attempt = 1;
        loop {
            let mut request = tonic::Request::new(SyncAgentRequest {
                agent: Some(facts.clone()),
            });
            request.set_timeout(SYNC_TIMEOUT);
            let status = match self.sharing.clone().sync_agent(request).await {
                Ok(_) => return Ok(()),
                Err(status) => status,
            };
            let message = status.message().to_string();
            match Error::from(status) {
                // Sharing's follower of our events may write the same
                // agent's first facts at this very moment; the loser is told
                // to retry.
                Error::Aborted(_) | Error::Conflict { .. } if attempt < SYNC_ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                // An outage; anything else means sharing refused facts we
                // built: a bug on one side, worth an alert.
                Error::Unavailable(_) | Error::DeadlineExceeded(_) | Error::Cancelled(_) => {
                    tracing::warn!(agent_id = %facts.agent_id, revision = facts.revision, %message, "sharing unreachable for SyncAgent");
                }
                error => {
                    tracing::error!(agent_id = %facts.agent_id, revision = facts.revision, %error, "sharing refused SyncAgent");
                }
            }
            return Err(NotSynced(message));
        }
    }
}

impl NotSynced {
    /// For a change already committed: it stands, and access catches up
    /// through registry's events.
    pub fn after_commit(self) -> Error {
        Error::Unavailable(format!(
            "your change is saved, but access in sharing is not updated yet ({}); it will catch up on its own, and retrying is safe",
            self.0
        ))
    }

    /// For a delete, which syncs before it changes anything.
    pub fn before_delete(self) -> Error {
        Error::Unavailable(format!(
            "the agent was not deleted: sharing could not end access to it ({}); retry shortly",
            self.0
        ))
    }
}
