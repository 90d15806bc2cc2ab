//! Telemetry for every binary: logs to stderr as text or JSON lines, and,
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans and metrics exported over
//! OTLP/gRPC. W3C trace context is carried in gRPC metadata into and out of
//! every call. Export is configured by the standard `OTEL_*` variables only
//! (`OTEL_SERVICE_NAME`, `OTEL_METRIC_EXPORT_INTERVAL`, …), as collectors and
//! operators expect.

use std::io::Write as _;
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{BadSetting, LogFormat};

static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

fn propagator() -> &'static TraceContextPropagator {
    PROPAGATOR.get_or_init(TraceContextPropagator::new)
}

/// The instrumentation scope of every agentshare instrument.
pub const METER: &str = "agentshare";

/// The meter every instrument of ours is made from: the exporting one once
/// [`init`] ran, a no-op before (and in tests that export nothing).
pub fn meter() -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter(METER)
}

/// Flushes exported spans and metrics when dropped at exit.
pub struct Telemetry {
    tracer: SdkTracerProvider,
    meter: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.tracer.shutdown();
        if let Some(meter) = &self.meter {
            let _ = meter.shutdown();
        }
    }
}

/// Installs the global subscriber and, when exporting, the global meter
/// provider. `RUST_LOG` filters the logs (default `info`). An export the
/// `OTEL_*` variables ask for and this build cannot do stops the start,
/// rather than leaving the operator without the telemetry they set up.
pub fn init(service: &str, format: LogFormat) -> Result<Telemetry, BadSetting> {
    use std::io::IsTerminal;
    check_export_protocol()?;
    init_with(
        service,
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        format,
        std::io::stderr().is_terminal(),
    )
}

/// This build exports OTLP over gRPC only (the HTTP exporters would add an
/// HTTP client to every binary).
fn check_export_protocol() -> Result<(), BadSetting> {
    for name in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ] {
        match std::env::var(name) {
            Ok(protocol) if !protocol.is_empty() && protocol != "grpc" => {
                return Err(BadSetting::new(
                    name,
                    format!(
                        "{protocol:?} is not supported: agentshare exports OTLP over gRPC only; \
                         set it to grpc (or unset it) and point OTEL_EXPORTER_OTLP_ENDPOINT at \
                         the collector's OTLP/gRPC port (usually 4317)"
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
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
        match init_with("agentshare-tests", filter, LogFormat::Text, false) {
            Ok(telemetry) => std::mem::forget(telemetry),
            Err(e) => eprintln!("test telemetry is off: {e}"),
        }
    });
}

/// `OTEL_SERVICE_NAME` when set, else ours; with `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(service: &str) -> opentelemetry_sdk::Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.is_empty());
    let mut builder = opentelemetry_sdk::Resource::builder();
    if !named {
        builder = builder.with_service_name(service.to_string());
    }
    builder.build()
}

fn init_with(
    service: &str,
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
) -> Result<Telemetry, BadSetting> {
    let resource = resource(service);
    let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let exporting = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    let mut meter = None;
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| BadSetting::new("OTEL_EXPORTER_OTLP_ENDPOINT", e))?;
        builder = builder.with_batch_exporter(exporter);
        // Cumulative, the OTLP default, so a lost export loses no counts;
        // the reader's interval is `OTEL_METRIC_EXPORT_INTERVAL` (60 s).
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| BadSetting::new("OTEL_EXPORTER_OTLP_ENDPOINT", e))?;
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_periodic_exporter(exporter)
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        meter = Some(provider);
    }
    let provider = builder.build();
    let tracer = provider.tracer("agentshare");
    let logs: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = match format {
        LogFormat::Text => Box::new(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi),
        ),
        LogFormat::Json => Box::new(JsonLines::default()),
    };
    // The filter quiets the logs only: spans still reach OpenTelemetry, so
    // trace context flows through a process whose logs are off.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(LevelFilter::INFO),
        )
        .try_init();
    Ok(Telemetry {
        tracer: provider,
        meter,
    })
}

/// Writes each event as one JSON object on stderr: time, level, target,
/// message, the event's fields, the spans it is in (with their fields) and
/// the OpenTelemetry trace and span ids of the innermost exported span.
#[derive(Default)]
struct JsonLines {
    /// The subscriber, to ask the OpenTelemetry layer for a span's context.
    dispatch: OnceLock<WeakDispatch>,
}

/// A span's fields as JSON, kept in the span's extensions.
struct SpanFields(serde_json::Map<String, serde_json::Value>);

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = serde_json::Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = serde_json::Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let mut line = serde_json::Map::new();
        let mut timestamp = String::new();
        let _ =
            tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut timestamp));
        line.insert("timestamp".into(), timestamp.into());
        let metadata = event.metadata();
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        if let Some(message) = fields.remove("message") {
            line.insert("message".into(), message);
        }
        line.insert("fields".into(), fields.into());
        let mut spans = Vec::new();
        let mut ids = None;
        let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let mut entry = span
                    .extensions()
                    .get::<SpanFields>()
                    .map(|f| f.0.clone())
                    .unwrap_or_default();
                entry.insert("name".into(), span.name().into());
                spans.push(serde_json::Value::Object(entry));
                // The innermost span the OpenTelemetry layer knows: spans
                // below its level have no context of their own.
                if ids.is_none()
                    && let Some(dispatch) = &dispatch
                    && let Some(context) =
                        tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
                {
                    let span_ref = context.span();
                    let span_context = span_ref.span_context();
                    if span_context.is_valid() {
                        ids = Some((
                            span_context.trace_id().to_string(),
                            span_context.span_id().to_string(),
                        ));
                    }
                }
            }
        }
        // Outermost first, as the text format prints them.
        spans.reverse();
        if let Some((trace_id, span_id)) = ids {
            line.insert("trace_id".into(), trace_id.into());
            line.insert("span_id".into(), span_id.into());
        }
        line.insert("spans".into(), spans.into());
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        // One write per line, so lines of concurrent events never interleave.
        let _ = std::io::stderr().lock().write_all(&bytes);
    }
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
/// one, named and attributed as OpenTelemetry's RPC conventions ask
/// (`package.Service/Method`, kind server).
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    call_span(request.uri().path(), request.headers())
}

/// The span of one call a server answers at `path`, continuing the trace
/// its caller sent in `headers`.
pub fn call_span(path: &str, headers: &http::HeaderMap) -> tracing::Span {
    let (service, method) = crate::server::rpc_names(path);
    let span = tracing::info_span!(
        "grpc",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        path = %path,
    );
    let parent = propagator().extract(&HeaderExtractor(headers));
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
