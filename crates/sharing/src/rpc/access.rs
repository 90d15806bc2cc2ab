//! AccessService: checks, My Agents, plans and version pins.

use agentshare_kit::Error;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::Principal;
use agentshare_proto::sharing::v1 as pb;
use pb::access_service_server::AccessService;
use tonic::{Request, Response, Status};

use crate::access;
use crate::agent_access::AgentRow;
use crate::domain;
use crate::pins::PinRow;
use crate::storage::Storage;

#[derive(Clone)]
pub struct Access {
    pub storage: Storage,
}

fn pin_to_proto(pin: PinRow) -> pb::Pin {
    pb::Pin {
        agent_id: pin.agent_id,
        user_id: pin.user_id,
        version: pin.version,
        create_time: Some(timestamp(pin.created_at)),
    }
}

impl Access {
    /// The agent named by a request, if the caller may run it.
    async fn runnable(&self, principal: &Principal, agent_id: &str) -> Result<AgentRow, Error> {
        let agent_id = domain::uuid("agent_id", agent_id)?;
        let agent = self.storage.agent(&agent_id).await?;
        access::require_run(agent, &agent_id, principal)
    }
}

#[tonic::async_trait]
impl AccessService for Access {
    async fn pin_version(
        &self,
        request: Request<pb::PinVersionRequest>,
    ) -> Result<Response<pb::PinVersionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let request = request.get_ref();
        let agent = self.runnable(principal, &request.agent_id).await?;
        if request.version < 1 {
            return Err(Error::invalid("version", "must be a deployed version, 1 or more").into());
        }
        if request.version > agent.latest_version {
            return Err(Error::not_found(format!(
                "version {} of agent {} (the latest is {})",
                request.version, agent.agent_id, agent.latest_version
            ))
            .into());
        }
        let pin = self
            .storage
            .pin(&agent.agent_id, user, request.version)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::PinVersionResponse {
            pin: Some(pin_to_proto(pin)),
        }))
    }

    async fn unpin_version(
        &self,
        request: Request<pb::UnpinVersionRequest>,
    ) -> Result<Response<pb::UnpinVersionResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let agent = self
            .runnable(principal, &request.get_ref().agent_id)
            .await?;
        let removed = self
            .storage
            .unpin(&agent.agent_id, user)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::UnpinVersionResponse { removed }))
    }

    async fn get_pin(
        &self,
        request: Request<pb::GetPinRequest>,
    ) -> Result<Response<pb::GetPinResponse>, Status> {
        let principal = Principal::of(&request)?;
        let user = principal.require_user()?;
        let agent = self
            .runnable(principal, &request.get_ref().agent_id)
            .await?;
        let pin = self
            .storage
            .pin_of(&agent.agent_id, user)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetPinResponse {
            pin: pin.map(pin_to_proto),
        }))
    }
}
