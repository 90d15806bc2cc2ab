//! AgentRegistryInternalService: the full design of the version a run uses,
//! for the gateway and the scheduler only. Sharing's plan has already
//! decided that the run may happen and which version it runs, so this
//! answers by id alone.

use agentshare_kit::Error;
use agentshare_proto::registry::v1 as pb;
use pb::agent_registry_internal_service_server::AgentRegistryInternalService;
use tonic::{Request, Response, Status};

use crate::domain::AgentState;
use crate::storage::Storage;

#[derive(Clone)]
pub struct RegistryInternal {
    pub storage: Storage,
}

#[tonic::async_trait]
impl AgentRegistryInternalService for RegistryInternal {
    async fn get_run_content(
        &self,
        request: Request<pb::GetRunContentRequest>,
    ) -> Result<Response<pb::GetRunContentResponse>, Status> {
        let request = request.into_inner();
        let agent_id = agentshare_kit::ids::parse("agent_id", &request.agent_id)?;
        if request.version_number < 0 {
            return Err(
                Error::invalid("version_number", "must be 0 (the draft) or a version").into(),
            );
        }
        let not_found = || Error::not_found(format!("agent {agent_id}"));
        let agent = self
            .storage
            .agent_for_run(&agent_id)
            .await
            .map_err(Error::from)?
            .filter(|a| a.state != AgentState::Deleted)
            .ok_or_else(not_found)?;
        let content = if request.version_number == 0 {
            agent.draft
        } else {
            self.storage
                .version(&agent_id, request.version_number)
                .await
                .map_err(Error::from)?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "version {} of agent {agent_id}",
                        request.version_number
                    ))
                })?
                .content
        };
        Ok(Response::new(pb::GetRunContentResponse {
            content: Some(content),
            version_number: request.version_number,
            org_id: agent.org_id,
        }))
    }
}
