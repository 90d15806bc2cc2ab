//! Who else may see an agent: holders reach a shared agent through
//! sharing's access decision, which registry asks rather than copies, so
//! the two can never disagree.

use agentshare_kit::Error;
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::sharing::v1::access_service_client::AccessServiceClient;
use agentshare_proto::sharing::v1::{Action, CheckRequest};

use crate::domain::Caller;

#[derive(Clone)]
pub struct Holders {
    sharing: AccessServiceClient<ServiceChannel>,
}

impl Holders {
    pub fn new(channel: ServiceChannel) -> Self {
        Self {
            sharing: AccessServiceClient::new(channel),
        }
    }

    /// Whether sharing lets the caller VIEW the agent, asked with the
    /// caller's own Principal. Fails closed: if sharing cannot answer, the
    /// caller gets UNAVAILABLE, never a view they may not have.
    pub async fn may_view(&self, caller: &Caller, agent_id: &str) -> Result<bool, Error> {
        let mut request = tonic::Request::new(CheckRequest {
            principal: None,
            agent_id: agent_id.to_string(),
            action: Action::View as i32,
        });
        caller.principal.forward(&mut request);
        let status = match self.sharing.clone().check(request).await {
            Ok(answer) => return Ok(answer.into_inner().allowed),
            Err(status) => status,
        };
        let message = status.message().to_string();
        match Error::from(status) {
            Error::NotFound(_) => Ok(false),
            _ => Err(Error::Unavailable(format!(
                "cannot check access to agent {agent_id} right now: {message}"
            ))),
        }
    }
}
