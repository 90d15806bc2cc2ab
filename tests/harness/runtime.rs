//! A recording agent runtime on loopback: the external runtime the gateway
//! reaches at `AGENTSHARE_RUNTIME_URL`. It keeps every `RunRequest` it
//! receives, so a test asserts exactly what agentshare sent (connections,
//! tool schemas, token, version), and during each run it lists the
//! workspace with the run token, as an agent would, so a test sees which
//! store partition the run reached.
//!
//! An input containing `/hold` keeps its run open after the first text
//! delta until the test calls [`RecordingRuntime::release`], so a test can
//! act (revoke, unshare) while a run is in progress.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use agentshare_proto::runtime::v1 as pb;
use agentshare_proto::store::v1::WorkspaceListRequest;
use agentshare_proto::store::v1::workspace_store_service_client::WorkspaceStoreServiceClient;
use futures::StreamExt;
use futures::stream::BoxStream;
use pb::agent_runtime_service_server::{AgentRuntimeService, AgentRuntimeServiceServer};
use tokio::sync::Semaphore;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

/// What the runtime saw during one run.
#[derive(Clone, Debug)]
pub struct Received {
    pub request: pb::RunRequest,
    /// The partition `workspace_list` with the run token reached, or the
    /// error it got.
    pub listed: Result<String, tonic::Code>,
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    hold: Arc<Semaphore>,
}

pub struct RecordingRuntime {
    addr: SocketAddr,
    shared: Shared,
    _server: tokio::task::JoinHandle<()>,
}

impl RecordingRuntime {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared {
            received: Arc::default(),
            hold: Arc::new(Semaphore::new(0)),
        };
        let service = AgentRuntimeServiceServer::new(Recorder {
            shared: shared.clone(),
        });
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .expect("runtime serves");
        });
        Self {
            addr,
            shared,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every run received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// The run whose input is exactly `input`.
    pub fn run_with_input(&self, input: &str) -> Received {
        self.received()
            .into_iter()
            .find(|r| r.request.input == input)
            .unwrap_or_else(|| panic!("the runtime received no run with input {input:?}"))
    }

    /// Lets one held run finish.
    pub fn release(&self) {
        self.shared.hold.add_permits(1);
    }
}

struct Recorder {
    shared: Shared,
}

fn event(event: pb::run_response::Event) -> Result<pb::RunResponse, Status> {
    Ok(pb::RunResponse { event: Some(event) })
}

/// Lists the run's workspace with its token, as an agent's first tool call.
async fn list_with_token(request: &pb::RunRequest) -> Result<String, tonic::Code> {
    let channel = tonic::transport::Endpoint::from_shared(request.gateway_address.clone())
        .expect("gateway address")
        .connect_lazy();
    let mut call = Request::new(WorkspaceListRequest {
        agent_id: request
            .agent
            .as_ref()
            .map(|a| a.agent_id.clone())
            .unwrap_or_default(),
        ..Default::default()
    });
    call.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {}", request.run_token)).expect("header"),
    );
    WorkspaceStoreServiceClient::new(channel)
        .workspace_list(call)
        .await
        .map(|r| r.into_inner().partition)
        .map_err(|s| s.code())
}

#[tonic::async_trait]
impl AgentRuntimeService for Recorder {
    type RunStream = BoxStream<'static, Result<pb::RunResponse, Status>>;

    async fn run(
        &self,
        request: Request<pb::RunRequest>,
    ) -> Result<Response<Self::RunStream>, Status> {
        let request = request.into_inner();
        let shared = self.shared.clone();
        let (events, received) = tokio::sync::mpsc::channel(8);
        let index = {
            let mut all = shared.received.lock().expect("lock");
            all.push(Received {
                request: request.clone(),
                // Until the run lists its workspace.
                listed: Err(tonic::Code::Unknown),
            });
            all.len() - 1
        };
        tokio::spawn(async move {
            let _ = events
                .send(event(pb::run_response::Event::TextDelta(pb::TextDelta {
                    text: "recorded".into(),
                })))
                .await;
            if request.input.contains("/hold") {
                let permit = shared.hold.acquire().await.expect("hold");
                permit.forget();
            }
            let listed = list_with_token(&request).await;
            shared.received.lock().expect("lock")[index].listed = listed;
            let _ = events
                .send(event(pb::run_response::Event::Result(pb::RunResult {
                    output_text: "recorded".into(),
                    output_summary: String::new(),
                    usage: Some(pb::TokenUsage {
                        input_tokens: 3,
                        output_tokens: 2,
                        ..Default::default()
                    }),
                    status: pb::RunResultStatus::Completed.into(),
                })))
                .await;
        });
        Ok(Response::new(
            tokio_stream::wrappers::ReceiverStream::new(received).boxed(),
        ))
    }
}
