//! Serving one gRPC service: bind, health, reflection, identity, and a
//! graceful stop in which readiness goes NOT_SERVING first and in-flight calls
//! drain. Also the balanced clients services use to call each other.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

use crate::colocated::{Colocated, DeadlineExpired};
use crate::config::BadSetting;
use crate::identity::{Identity, Outbound, ServiceName};

/// A stop signal shared by a server and its long-lived streams.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx, rx }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the stop is triggered.
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|stopped| *stopped).await;
    }

    /// Triggers on SIGTERM or Ctrl-C.
    pub fn trigger_on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = ctrl_c => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
            tracing::info!("stop requested; draining in-flight calls");
            this.trigger();
        });
    }
}

/// Work in flight that calls back into its own server (a gateway's runs call
/// their workspace tools through the gateway). A stopping server refuses new
/// such work once its drain delay is over, then keeps accepting calls until
/// the work in flight has ended (within the grace), and only then stops
/// accepting: otherwise the work's own calls back would be refused.
#[derive(Clone, Debug)]
pub struct InFlight {
    state: Arc<watch::Sender<Work>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Work {
    running: usize,
    closed: bool,
}

/// One piece of work in flight; it ends when dropped.
#[derive(Debug)]
pub struct Entered {
    state: Arc<watch::Sender<Work>>,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(Work::default())),
        }
    }
}

impl InFlight {
    /// Starts a piece of work, or `None` once the server is stopping.
    pub fn enter(&self) -> Option<Entered> {
        let entered = self.state.send_if_modified(|work| {
            if work.closed {
                return false;
            }
            work.running += 1;
            true
        });
        entered.then(|| Entered {
            state: self.state.clone(),
        })
    }

    /// Refuses new work from now on.
    fn close(&self) {
        self.state.send_modify(|work| work.closed = true);
    }

    /// Resolves once no work is in flight.
    async fn idle(&self) {
        let mut work = self.state.subscribe();
        let _ = work.wait_for(|work| work.running == 0).await;
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.state.send_modify(|work| work.running -= 1);
    }
}

/// Binds `addr`, naming the setting when the port is taken.
pub async fn bind(setting: &str, addr: SocketAddr) -> Result<TcpListener, BadSetting> {
    TcpListener::bind(addr).await.map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("{addr} is already in use; pick another port")
        } else {
            format!("cannot listen on {addr}: {e}")
        };
        BadSetting::new(setting, why)
    })
}

/// What one server serves.
pub struct ServerSpec {
    pub listener: TcpListener,
    pub routes: Routes,
    /// gRPC service names reported by health, SERVING once started.
    pub health_names: Vec<String>,
    pub health: HealthReporter,
    /// How long in-flight calls may drain after the stop.
    pub grace: Duration,
    /// How long to keep accepting calls after reporting NOT_SERVING, so
    /// balancers take this replica out of rotation first.
    pub drain_delay: Duration,
    /// Work that calls back into this server, which it lets finish before
    /// it stops accepting (the grace bounds the wait).
    pub in_flight: InFlight,
    pub shutdown: Shutdown,
    /// Where this server also answers its process's other services, without
    /// a socket, under `service`'s name.
    pub colocated: Colocated,
    pub service: ServiceName,
}

/// Completed passes of a polling loop that runs beside a server, counted
/// so that whoever hosts the server can wait for the loop to come round
/// (the end-to-end tests wait for the scheduler's firing loop before they
/// assert that nothing fired), instead of sleeping and hoping it did.
#[derive(Clone, Debug)]
pub struct Passes(Arc<watch::Sender<u64>>);

impl Default for Passes {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl Passes {
    /// The loop finished one more pass.
    pub fn completed(&self) {
        self.0.send_modify(|count| *count = count.saturating_add(1));
    }

    /// Passes finished so far.
    pub fn count(&self) -> u64 {
        *self.0.borrow()
    }

    /// Resolves once `count` passes have finished.
    pub async fn reached(&self, count: u64) {
        let mut seen = self.0.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = seen.wait_for(|done| *done >= count).await;
    }
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    /// Calls this server has received, for operators and the replica tests.
    pub calls: Arc<AtomicU64>,
    /// Passes of the service's polling loop, where it has one its hosts
    /// wait on (the scheduler's firing loop); never moves elsewhere.
    pub loop_passes: Passes,
    pub health: HealthReporter,
    pub shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Triggers the stop and waits for the drain.
    pub async fn stop(self) -> Result<(), String> {
        self.shutdown.trigger();
        self.join().await
    }

    /// Waits until the server has stopped.
    pub async fn join(self) -> Result<(), String> {
        self.task
            .await
            .map_err(|e| format!("server task failed: {e}"))?
    }
}

/// Health and its reporter, with the reflection services for `names`.
pub fn health_and_reflection(names: &[String]) -> (HealthReporter, Routes) {
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(agentshare_proto::FILE_DESCRIPTOR_SET);
    let mut v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(agentshare_proto::FILE_DESCRIPTOR_SET);
    for name in names {
        v1 = v1.with_service_name(name.clone());
        v1alpha = v1alpha.with_service_name(name.clone());
    }
    let mut routes = Routes::new(health);
    if let Ok(v1) = v1.build_v1() {
        routes = routes.add_service(v1);
    }
    if let Ok(v1alpha) = v1alpha.build_v1alpha() {
        routes = routes.add_service(v1alpha);
    }
    (reporter, routes)
}

/// Serves `spec` behind `layer` until its shutdown triggers; then reports
/// NOT_SERVING, stops accepting and drains for at most the grace period.
pub async fn serve<L>(spec: ServerSpec, layer: L) -> Running
where
    L: tower::Layer<Routes> + Clone + Send + 'static,
    L::Service: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<http::Request<Body>>>::Future: Send + 'static,
{
    let addr = spec
        .listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    for name in spec
        .health_names
        .iter()
        .chain(std::iter::once(&String::new()))
    {
        spec.health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let health = spec.health.clone();
    let names = spec.health_names.clone();
    let mut stop = spec.shutdown.clone();
    let grace = spec.grace;
    let drain_delay = spec.drain_delay;
    let in_flight = spec.in_flight;
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let local_counter = calls.clone();
    // HTTP/1.1 as well as HTTP/2: the gateway's HTTP/JSON and gRPC-Web
    // clients (browsers, curl) often speak 1.1. gRPC itself stays on 2.
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .trace_fn(crate::telemetry::server_span)
        .layer(RpcMetricsLayer::new())
        .layer(tower::util::MapRequestLayer::new(
            move |request: http::Request<Body>| {
                counter.fetch_add(1, Ordering::Relaxed);
                request
            },
        ))
        .layer(layer.clone())
        .add_routes(spec.routes.clone());
    // The same stack, for the services of this process.
    let local = tower::ServiceBuilder::new()
        .layer(RpcMetricsLayer::new())
        .map_request(move |request: http::Request<Body>| {
            local_counter.fetch_add(1, Ordering::Relaxed);
            request
        })
        .layer(layer)
        .service(spec.routes.prepare());
    let local = Traced { inner: local };
    let colocated = spec.colocated;
    let service = spec.service;
    colocated.register(service, crate::colocated::LocalServer::new(local));
    // Without TCP_NODELAY a reply can wait on the peer's delayed ACK (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(spec.listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let reporter = health.clone();
    let task = tokio::spawn(async move {
        let signal = async move {
            stop.wait().await;
            for name in names.iter().chain(std::iter::once(&String::new())) {
                reporter
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            tokio::time::sleep(drain_delay).await;
            in_flight.close();
            let lingered = std::time::Instant::now();
            if tokio::time::timeout(grace, in_flight.idle()).await.is_err() {
                tracing::warn!(
                    ?grace,
                    "work still in flight after the grace period; stopping anyway"
                );
            }
            // Its port closes now, and so does its door in this process.
            colocated.withdraw(service);
            // Ends every health watch stream, which would otherwise keep
            // its connection, and so the drain, open until the grace ran out.
            let mut reporter = reporter;
            for name in names.iter().chain(std::iter::once(&String::new())) {
                reporter.clear_service_status(name).await;
            }
            lingered.elapsed()
        };
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<Duration>();
        let serving = router.serve_with_incoming_shutdown(incoming, async move {
            let lingered = signal.await;
            let _ = drained_tx.send(lingered);
        });
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => result.map_err(|e| e.to_string()),
            Ok(lingered) = drained_rx => {
                // The wait for work in flight came out of the same grace.
                match tokio::time::timeout(grace.saturating_sub(lingered), serving).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => {
                        tracing::warn!(?grace, "calls still in flight after the grace period; closing them");
                        Ok(())
                    }
                }
            }
        }
    });
    Running {
        addr,
        calls,
        loop_passes: Passes::default(),
        health,
        shutdown: spec.shutdown,
        task,
    }
}

/// A server stack called in-process, each call in the span tonic's server
/// opens for a call that arrives on its port.
#[derive(Clone)]
struct Traced<S> {
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for Traced<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        use tracing::Instrument;
        let span = crate::telemetry::call_span(request.uri().path(), request.headers());
        let answer = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        answer.instrument(span)
    }
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
pub fn rpc_names(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.rsplit_once('/').unwrap_or((path, ""))
}

/// Records OpenTelemetry's `rpc.server.call.duration` (seconds) of every
/// gRPC call a server answers, with `rpc.system`, `rpc.service`,
/// `rpc.method` and `rpc.grpc.status_code`.
///
/// The status is in the response headers of a trailers-only answer (every
/// refusal) and otherwise in the trailers, so a call is measured when its
/// last frame is sent: a stream's duration is its whole life. A call whose
/// body is dropped before its status (the client went away) counts as
/// CANCELLED. An unknown method would let any client mint new series, so
/// UNIMPLEMENTED calls are recorded under `_OTHER`. Only `application/grpc`
/// is measured: HTTP/JSON and gRPC-Web answer in other shapes.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    duration: opentelemetry::metrics::Histogram<f64>,
}

impl Default for RpcMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcMetricsLayer {
    /// Makes the instrument from the global meter: call after telemetry's
    /// `init`, or it records nowhere.
    pub fn new() -> Self {
        let duration = crate::telemetry::meter()
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Duration of the gRPC calls this server answered")
            // The boundaries the RPC semantic conventions recommend.
            .with_boundaries(vec![
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            ])
            .build();
        Self { duration }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            duration: self.duration.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    duration: opentelemetry::metrics::Histogram<f64>,
}

impl<S, B> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "application/grpc" || v.starts_with("application/grpc+"));
        let call = is_grpc.then(|| CallRecord {
            started: std::time::Instant::now(),
            path: request.uri().path().to_string(),
            duration: self.duration.clone(),
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let Some(call) = call else {
                return Ok(response);
            };
            if let Some(code) = grpc_status(response.headers()) {
                call.record(code);
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = MeasuredBody {
                inner: body,
                call: Some(call),
            };
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i64> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// One call being measured, recorded once.
struct CallRecord {
    started: std::time::Instant,
    path: String,
    duration: opentelemetry::metrics::Histogram<f64>,
}

impl CallRecord {
    fn record(self, code: i64) {
        use opentelemetry::KeyValue;
        let (service, method) = if code == tonic::Code::Unimplemented as i64 {
            ("_OTHER", "_OTHER")
        } else {
            rpc_names(&self.path)
        };
        self.duration.record(
            self.started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service.to_string()),
                KeyValue::new("rpc.method", method.to_string()),
                KeyValue::new("rpc.grpc.status_code", code),
            ],
        );
    }
}

/// A response body that records its call when the trailers pass.
struct MeasuredBody {
    inner: Body,
    call: Option<CallRecord>,
}

impl http_body::Body for MeasuredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(call) = self.call.take()
                {
                    call.record(code);
                }
            }
            // A body that fails is a call the server could not finish.
            std::task::Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.record(tonic::Code::Internal as i64);
                }
            }
            // Ended without trailers: tonic always sends them, so only a
            // body another layer built can get here; it answered OK.
            std::task::Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.record(tonic::Code::Ok as i64);
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeasuredBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.record(tonic::Code::Cancelled as i64);
        }
    }
}

/// A channel to another service as this service.
pub type ServiceChannel = Unbroken<InterceptedService<Transport, Outbound>>;

/// The way to a peer: its server in this process while it has one there,
/// otherwise its endpoints.
#[derive(Clone, Debug)]
pub struct Transport {
    remote: Channel,
    colocated: Colocated,
    target: ServiceName,
}

impl tower::Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Which way the call goes is known only when it is made; the remote
        // channel is readied then.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        use tower::ServiceExt;
        if let Some(server) = self.colocated.server(self.target) {
            return Box::pin(async move {
                crate::colocated::call(server, request)
                    .await
                    .map_err(|expired| Box::new(expired) as BoxError)
            });
        }
        let remote = self.remote.clone();
        Box::pin(async move { remote.oneshot(request).await.map_err(Into::into) })
    }
}

/// A channel on which a call that breaks in transport answers UNAVAILABLE.
///
/// A peer's replica that dies mid-call, or a connection that resets, reaches
/// tonic as an error rather than as a status the peer sent, and tonic turns
/// it into UNKNOWN "transport error" or CANCELLED. The call may well succeed
/// on another replica, and a service passing that UNKNOWN on would tell its
/// own caller something it cannot act on, so every call one service makes to
/// another answers UNAVAILABLE (which clients retry) instead. Statuses a peer
/// sends arrive in its trailers and pass through untouched.
#[derive(Clone, Debug)]
pub struct Unbroken<S> {
    inner: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<Body>> for Unbroken<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|error| Box::new(broken(&*error.into())) as BoxError)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            match answer.await {
                Ok(response) => Ok(response.map(|body| {
                    Body::new(http_body_util::BodyExt::map_err(body, |error| {
                        broken(&*error.into())
                    }))
                })),
                Err(error) => Err(Box::new(broken(&*error.into())) as BoxError),
            }
        })
    }
}

/// The status a call that broke in transport answers with.
fn broken(error: &(dyn std::error::Error + 'static)) -> tonic::Status {
    // A deadline the caller set is the caller's, not a broken peer.
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<tonic::TimeoutExpired>() || error.is::<DeadlineExpired>() {
            return tonic::Status::deadline_exceeded(error.to_string());
        }
        cause = error.source();
    }
    tracing::warn!(%error, "a call to another service broke in transport");
    tonic::Status::unavailable("a service went away during the call; retry it")
}

/// A client channel to `target` that balances over all its `endpoints` and
/// names us with every call; while `target` answers in this process
/// (`colocated`), calls go to it there. It connects lazily, so services may start in any
/// order, and follows each replica's health, so a replica that stops or dies
/// leaves the rotation as soon as its health stream says so or breaks.
pub fn channel(
    identity: &Identity,
    target: ServiceName,
    endpoints: &[String],
    colocated: &Colocated,
) -> Result<ServiceChannel, BadSetting> {
    if endpoints.is_empty() {
        return Err(BadSetting::new(
            format!("peers.{target}"),
            "no endpoint configured",
        ));
    }
    let mut parsed = Vec::with_capacity(endpoints.len());
    for url in endpoints {
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| BadSetting::new(format!("peers.{target}"), format!("{url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        parsed.push(endpoint);
    }
    let channel = if parsed.len() == 1 {
        parsed.remove(0).connect_lazy()
    } else {
        balanced(parsed)
    };
    let transport = Transport {
        remote: channel,
        colocated: colocated.clone(),
        target,
    };
    Ok(Unbroken {
        inner: InterceptedService::new(transport, Outbound::new(identity.clone(), target)),
    })
}

/// Balances over the replicas that report SERVING. When none does, all stay
/// in the rotation, so calls fail fast with UNAVAILABLE instead of waiting.
fn balanced(endpoints: Vec<Endpoint>) -> Channel {
    let count = endpoints.len();
    let (channel, changes) = Channel::balance_channel::<usize>(count * 2 + 1);
    let (health_tx, mut health_rx) = tokio::sync::mpsc::channel::<(usize, bool)>(count * 4);
    for (index, endpoint) in endpoints.iter().enumerate() {
        tokio::spawn(follow_health(index, endpoint.clone(), health_tx.clone()));
    }
    drop(health_tx);
    tokio::spawn(async move {
        let mut serving = vec![true; count];
        let mut member = vec![false; count];
        // Members inserted while their replica was not known to serve: their
        // connection may hold a stale connect error, so they are replaced
        // once the replica serves.
        let mut stale = vec![false; count];
        loop {
            let any_serving = serving.iter().any(|s| *s);
            for index in 0..count {
                let wanted = serving[index] || !any_serving;
                let refresh = wanted && member[index] && stale[index] && serving[index];
                if wanted == member[index] && !refresh {
                    continue;
                }
                if member[index] && changes.send(Change::Remove(index)).await.is_err() {
                    return;
                }
                member[index] = false;
                if wanted {
                    if changes
                        .send(Change::Insert(index, endpoints[index].clone()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    member[index] = true;
                    stale[index] = !serving[index];
                }
            }
            tokio::select! {
                update = health_rx.recv() => match update {
                    Some((index, is_serving)) => {
                        if !is_serving && member[index] {
                            stale[index] = true;
                        }
                        serving[index] = is_serving;
                    }
                    None => return,
                },
                // The channel was dropped: nobody balances over these any more.
                () = changes.closed() => return,
            }
        }
    });
    channel
}

/// Streams one replica's health into the balancer until it is dropped.
async fn follow_health(
    index: usize,
    endpoint: Endpoint,
    updates: tokio::sync::mpsc::Sender<(usize, bool)>,
) {
    let probe = endpoint.connect_lazy();
    loop {
        let mut client = HealthClient::new(probe.clone());
        let request = HealthCheckRequest {
            service: String::new(),
        };
        if let Ok(response) = client.watch(request).await {
            let mut stream = response.into_inner();
            while let Ok(Some(update)) = stream.message().await {
                let is_serving = update.status == WireStatus::Serving as i32;
                if updates.send((index, is_serving)).await.is_err() {
                    return;
                }
            }
        }
        if updates.send((index, false)).await.is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = updates.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::identity::{KeyRing, generate_missing_keys};

    /// A peer whose answer breaks off mid-body (its replica died, its
    /// connection reset) resets the HTTP/2 stream; tonic alone would call
    /// that INTERNAL, which would tell the caller there is a bug.
    #[tokio::test]
    async fn a_call_that_breaks_mid_answer_is_unavailable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let breaks_off = tower::util::MapResponseLayer::new(|response: http::Response<Body>| {
            response.map(|_| {
                let failing = futures::stream::iter([Err::<http_body::Frame<bytes::Bytes>, _>(
                    tonic::Status::internal("the replica died"),
                )]);
                Body::new(http_body_util::StreamBody::new(failing))
            })
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .layer(breaks_off)
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        let keys = tempfile::tempdir().unwrap();
        generate_missing_keys(keys.path()).unwrap();
        let me = KeyRing::load(keys.path(), ServiceName::Gateway).unwrap();
        let identity = Identity::new(me, Clock::system());
        let channel = channel(
            &identity,
            ServiceName::Store,
            &[format!("http://{address}")],
            &Colocated::default(),
        )
        .unwrap();

        let request = HealthCheckRequest {
            service: String::new(),
        };
        let status = HealthClient::new(channel).check(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
}
