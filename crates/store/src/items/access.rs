//! Which partition a caller reaches through an agent, and whether they may
//! write it: sharing decides, on every call. Nothing is cached, so a revocation is seen by the very next
//! call on every replica.

use agentshare_kit::identity::Principal;
use agentshare_kit::server::ServiceChannel;
use agentshare_kit::{Error, Result};
use agentshare_proto::sharing::v1 as sharing;
use sharing::access_internal_service_client::AccessInternalServiceClient;

use super::rules::{Partition, Scope};

#[derive(Clone)]
pub struct Access {
    sharing: ServiceChannel,
}

impl Access {
    pub fn new(sharing: ServiceChannel) -> Self {
        Self { sharing }
    }

    /// The partition `principal` reads and writes through `agent_id`, and
    /// whether the agent's store write policy lets them write it.
    /// Sharing's refusal reaches the client as sharing gave it: NOT_FOUND
    /// for an invisible agent, PERMISSION_DENIED for one it may not RUN.
    pub async fn partition(&self, principal: &Principal, agent_id: &str) -> Result<Partition> {
        let mut request = tonic::Request::new(sharing::ResolveStoreRequest {
            agent_id: agent_id.to_string(),
        });
        principal.forward(&mut request);
        let answer = AccessInternalServiceClient::new(self.sharing.clone())
            .resolve_store(request)
            .await
            .map_err(passed_on)?
            .into_inner();
        let scope = match sharing::StoreScopeKind::try_from(answer.store_scope) {
            Ok(sharing::StoreScopeKind::UserPrivate) => Scope::Private,
            Ok(sharing::StoreScopeKind::Unspecified) | Err(_) => {
                return Err(Error::internal(format!(
                    "sharing answered no store scope ({})",
                    answer.store_scope
                )));
            }
            Ok(_) => Scope::Shared,
        };
        if answer.store_workspace.is_empty() {
            return Err(Error::internal(format!(
                "sharing answered an empty store partition for agent {agent_id}"
            )));
        }
        Ok(Partition {
            name: answer.store_workspace,
            scope,
            write_refusal: Some(answer.write_refusal).filter(|refusal| !refusal.is_empty()),
        })
    }
}

/// Sharing's answer as our own: the same kind, message and details; an
/// outage says what was unavailable.
fn passed_on(status: tonic::Status) -> Error {
    match Error::from(status) {
        Error::Unavailable(message) => Error::Unavailable(format!(
            "access checks are unavailable ({message}); retry shortly"
        )),
        refusal => refusal,
    }
}
