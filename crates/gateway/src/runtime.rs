//! The agent runtime, as the run path sees it: something that takes a
//! `RunRequest` and streams `RunResponse` events. The external runtime is a
//! gRPC server at `AGENTSHARE_RUNTIME_URL`; without one, the gateway runs the
//! built-in echo runtime ([`crate::echo`]).

use std::time::Duration;

use agentshare_kit::config::BadSetting;
use agentshare_proto::runtime::v1 as pb;
use futures::StreamExt;
use futures::stream::BoxStream;
use pb::agent_runtime_service_client::AgentRuntimeServiceClient;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// The events of one run, as the runtime produces them.
pub type RunEvents = BoxStream<'static, Result<pb::RunResponse, Status>>;

#[tonic::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Starts one run; `deadline` bounds the whole call.
    async fn run(&self, request: pb::RunRequest, deadline: Duration) -> Result<RunEvents, Status>;
}

/// A runtime reached over gRPC.
pub struct Remote {
    client: AgentRuntimeServiceClient<Channel>,
}

impl Remote {
    pub fn new(url: &str) -> Result<Self, BadSetting> {
        // TLS to the runtime is the mesh's (a sidecar or a service mesh on
        // the private network): the gateway speaks plain HTTP/2 to it.
        if !url.starts_with("http://") {
            return Err(BadSetting::new(
                "runtime_url",
                "must be an http:// URL; terminate TLS to the runtime in the service mesh",
            ));
        }
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|e| BadSetting::new("runtime_url", format!("{url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            client: AgentRuntimeServiceClient::new(channel),
        })
    }
}

#[tonic::async_trait]
impl Runtime for Remote {
    async fn run(&self, request: pb::RunRequest, deadline: Duration) -> Result<RunEvents, Status> {
        let mut request = tonic::Request::new(request);
        request.set_timeout(deadline);
        // The runtime continues the run's trace, as every service does.
        agentshare_kit::telemetry::inject_context(request.metadata_mut());
        let stream = self
            .client
            .clone()
            .run(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::DeadlineExceeded => status,
                _ => Status::unavailable(format!(
                    "the agent runtime could not be reached: {}",
                    status.message()
                )),
            })?
            .into_inner();
        Ok(stream.boxed())
    }
}
