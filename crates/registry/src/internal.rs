//! AgentRegistryInternalService: the full design of the version a run uses,
//! for the gateway and the scheduler only.

use agentshare_kit::rpc;
use agentshare_proto::registry::v1 as pb;
use pb::agent_registry_internal_service_server::AgentRegistryInternalService;
use tonic::{Request, Response, Status};

use crate::agents::Agents;

#[derive(Clone)]
pub struct RegistryInternal {
    pub agents: Agents,
}

#[tonic::async_trait]
impl AgentRegistryInternalService for RegistryInternal {
    async fn get_run_content(
        &self,
        request: Request<pb::GetRunContentRequest>,
    ) -> Result<Response<pb::GetRunContentResponse>, Status> {
        let request = request.into_inner();
        let run = self
            .agents
            .run_content(&request.agent_id, request.version_number)
            .await;
        rpc::answer(run.map(|(content, agent)| pb::GetRunContentResponse {
            content: Some(content),
            version_number: request.version_number,
            org_id: agent.org_id,
        }))
    }
}
