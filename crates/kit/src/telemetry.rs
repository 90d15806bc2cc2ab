//! Tracing for every binary: logs to stderr, an OTLP exporter when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace context carried in gRPC
//! metadata into and out of every call.

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

fn propagator() -> &'static TraceContextPropagator {
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// Flushes exported spans when dropped at exit.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(service: &str) -> Telemetry {
    use std::io::IsTerminal;
    init_with(
        service,
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        std::io::stderr().is_terminal(),
    )
}

/// For test binaries: quiet unless `TEST_LOG` is set, and safe to call often.
pub fn init_for_tests() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = if std::env::var_os("TEST_LOG").is_some() {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
        } else {
            EnvFilter::new("off")
        };
        std::mem::forget(init_with("agentshare-tests", filter, false));
    });
}

fn init_with(service: &str, filter: EnvFilter, ansi: bool) -> Telemetry {
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(service.to_string())
            .build(),
    );
    let exporting = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    if exporting {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => eprintln!("OTLP exporter disabled: {error}"),
        }
    }
    let provider = builder.build();
    let tracer = provider.tracer("agentshare");
    // The filter quiets the logs only: spans still reach OpenTelemetry, so
    // trace context flows through a process whose logs are off.
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_filter(filter),
        )
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(LevelFilter::INFO),
        )
        .try_init();
    Telemetry { provider }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the current span's context as `traceparent` / `tracestate`.
pub fn inject_context(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    propagator().inject_context(&context, &mut MetadataInjector(metadata));
}

/// The span of one incoming call, a child of the caller's trace if it sent
/// one.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!("grpc", path = %request.uri().path());
    let parent = propagator().extract(&HeaderExtractor(request.headers()));
    let _ = span.set_parent(parent);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_trace_continues_in_outgoing_metadata() {
        init_for_tests();
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let request = http::Request::builder()
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .body(())
            .expect("request");
        let span = server_span(&request);
        let _entered = span.enter();
        let mut metadata = tonic::metadata::MetadataMap::new();
        inject_context(&mut metadata);
        let outgoing = metadata
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            outgoing.contains(trace_id),
            "outgoing traceparent {outgoing:?}"
        );
        assert!(
            !outgoing.contains("00f067aa0ba902b7"),
            "a new span id for our hop: {outgoing:?}"
        );
    }
}
