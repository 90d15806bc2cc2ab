//! AgentRegistryInternalService: the full design of the version a run uses,
//! for the gateway and the scheduler only.

use agentshare_proto::registry::v1 as pb;
use pb::agent_registry_internal_service_server::AgentRegistryInternalService;

use crate::agents::Agents;

#[derive(Clone)]
pub struct RegistryInternal {
    pub agents: Agents,
}

impl RegistryInternal {
    async fn get_run_content(
        &self,
        request: pb::GetRunContentRequest,
    ) -> agentshare_kit::Result<pb::GetRunContentResponse> {
        let (content, agent) = self
            .agents
            .run_content(&request.agent_id, request.version_number)
            .await?;
        Ok(pb::GetRunContentResponse {
            content: Some(content),
            version_number: request.version_number,
            org_id: agent.org_id,
        })
    }
}

#[tonic::async_trait]
impl AgentRegistryInternalService for RegistryInternal {
    agentshare_kit::internal_handlers! {
        get_run_content(pb::GetRunContentRequest) -> pb::GetRunContentResponse;
    }
}
