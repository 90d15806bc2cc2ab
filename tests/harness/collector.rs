//! An in-process OTLP/gRPC collector: the trace and metrics services of the
//! OpenTelemetry protocol on an ephemeral loopback port, keeping what the
//! suite's processes export so a test can read it back, flattened.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tonic::{Request, Response, Status};

/// One exported span.
#[derive(Clone, Debug)]
pub struct SpanSeen {
    /// The exporting process's `service.name`.
    pub service: String,
    pub name: String,
    /// Lowercase hex, as in `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
}

/// One exported data point of a metric.
#[derive(Clone, Debug)]
pub struct PointSeen {
    pub service: String,
    pub metric: String,
    pub unit: String,
    /// `histogram`, `sum` or `gauge`.
    pub kind: &'static str,
    pub attributes: BTreeMap<String, String>,
    /// A sum's or a gauge's value at export; none for a histogram.
    pub value: Option<f64>,
}

#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<SpanSeen>>>,
    points: Arc<Mutex<Vec<PointSeen>>>,
}

pub struct Collector {
    addr: SocketAddr,
    received: Received,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Collector {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let addr = listener.local_addr().expect("addr");
        let received = Received::default();
        let traces = TraceServiceServer::new(received.clone());
        let metrics = MetricsServiceServer::new(received.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(metrics)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Self {
            addr,
            received,
            server,
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<SpanSeen> {
        self.received.spans.lock().expect("lock").clone()
    }

    pub fn points(&self) -> Vec<PointSeen> {
        self.received.points.lock().expect("lock").clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// A number point's attributes and value, integers as floats.
#[allow(clippy::cast_precision_loss)]
fn number(point: &NumberDataPoint) -> (&[KeyValue], Option<f64>) {
    let value = match point.value {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
        None => None,
    };
    (&point.attributes[..], value)
}

fn service_of(resource: Option<&Resource>) -> String {
    resource
        .map(|r| attributes(&r.attributes))
        .and_then(|mut a| a.remove("service.name"))
        .unwrap_or_default()
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut seen = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = service_of(resource_spans.resource.as_ref());
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    seen.push(SpanSeen {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        self.spans.lock().expect("lock").extend(seen);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut seen = Vec::new();
        for resource_metrics in request.into_inner().resource_metrics {
            let service = service_of(resource_metrics.resource.as_ref());
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    let (kind, points): (_, Vec<(&[KeyValue], Option<f64>)>) = match &metric.data {
                        Some(Data::Histogram(h)) => (
                            "histogram",
                            h.data_points
                                .iter()
                                .map(|p| (&p.attributes[..], None))
                                .collect(),
                        ),
                        Some(Data::Sum(s)) => ("sum", s.data_points.iter().map(number).collect()),
                        Some(Data::Gauge(g)) => {
                            ("gauge", g.data_points.iter().map(number).collect())
                        }
                        _ => ("other", Vec::new()),
                    };
                    for (point, value) in points {
                        seen.push(PointSeen {
                            service: service.clone(),
                            metric: metric.name.clone(),
                            unit: metric.unit.clone(),
                            kind,
                            attributes: attributes(point),
                            value,
                        });
                    }
                }
            }
        }
        self.points.lock().expect("lock").extend(seen);
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}
