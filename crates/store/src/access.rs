//! Which partition a caller reaches through an agent: sharing decides, on
//! every call. Nothing is cached, so a revocation is seen by the very next
//! call on every replica.

use agentshare_kit::identity::Principal;
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::sharing::v1 as sharing;
use sharing::access_internal_service_client::AccessInternalServiceClient;
use tonic::{Code, Status};

use crate::domain::{Partition, Scope};

#[derive(Clone)]
pub struct Access {
    sharing: ServiceChannel,
}

impl Access {
    pub fn new(sharing: ServiceChannel) -> Self {
        Self { sharing }
    }

    /// The partition `principal` reads and writes through `agent_id`.
    /// Sharing's refusal reaches the client as sharing gave it: NOT_FOUND
    /// for an invisible agent, PERMISSION_DENIED for one it may not RUN.
    pub async fn partition(
        &self,
        principal: &Principal,
        agent_id: &str,
    ) -> Result<Partition, Status> {
        let mut request = tonic::Request::new(sharing::ResolveStoreRequest {
            agent_id: agent_id.to_string(),
        });
        principal.forward(&mut request);
        let answer = AccessInternalServiceClient::new(self.sharing.clone())
            .resolve_store(request)
            .await
            .map_err(|status| passed_on(&status))?
            .into_inner();
        let scope = match sharing::StoreScopeKind::try_from(answer.store_scope) {
            Ok(sharing::StoreScopeKind::UserPrivate) => Scope::Private,
            Ok(sharing::StoreScopeKind::Unspecified) | Err(_) => {
                tracing::error!(
                    scope = answer.store_scope,
                    "sharing answered no store scope"
                );
                return Err(Status::internal(
                    "internal error; it has been logged, please report it",
                ));
            }
            Ok(_) => Scope::Shared,
        };
        if answer.store_workspace.is_empty() {
            tracing::error!(agent_id, "sharing answered an empty store partition");
            return Err(Status::internal(
                "internal error; it has been logged, please report it",
            ));
        }
        Ok(Partition {
            name: answer.store_workspace,
            scope,
        })
    }
}

/// Sharing's answer as our own: the same code, message and details, but
/// none of the upstream response's metadata.
fn passed_on(status: &Status) -> Status {
    let code = status.code();
    if code == Code::Unavailable {
        return Status::unavailable(format!(
            "access checks are unavailable ({}); retry shortly",
            status.message()
        ));
    }
    Status::with_details(code, status.message(), status.details().to_vec().into())
}
