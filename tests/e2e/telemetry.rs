//! Telemetry as an operator sees it: the suite's processes export spans and
//! metrics over OTLP to a collector the test runs, and write JSON log lines
//! that carry trace ids and no secret. Child processes, because the tracer
//! and meter providers are process-global.

use std::collections::{BTreeMap, BTreeSet};

use agentshare_e2e::collector::{Collector, PointSeen, SpanSeen};
use agentshare_e2e::runtime::RecordingRuntime;
use agentshare_e2e::{Suite, SuiteBuilder, eventually};
use agentshare_kit::identity::ServiceName;
use agentshare_proto::gateway::v1::InvokeRequest;
use agentshare_proto::scheduler::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;

use crate::automations::{agent_with, automation, hourly, subscribe};
use crate::firing::fast;

const HOUR_MICROS: i64 = 3_600_000_000;

/// A suite of child processes that export to `collector` quickly.
fn exporting_to(collector: &Collector) -> SuiteBuilder {
    Suite::builder()
        .processes()
        .scheduler(fast())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
}

fn service(name: ServiceName) -> String {
    format!("agentshare-{name}")
}

/// Whether `span` descends from `ancestor` through spans of its trace.
fn descends(span: &SpanSeen, ancestor: &str, by_id: &BTreeMap<&str, &SpanSeen>) -> bool {
    let mut parent = span.parent_span_id.as_str();
    for _ in 0..by_id.len() {
        if parent == ancestor {
            return true;
        }
        match by_id.get(parent) {
            Some(next) => parent = next.parent_span_id.as_str(),
            None => return false,
        }
    }
    false
}

fn point<'a>(
    points: &'a [PointSeen],
    from: ServiceName,
    metric: &str,
    attributes: &[(&str, &str)],
) -> Option<&'a PointSeen> {
    points.iter().find(|p| {
        p.service == service(from)
            && p.metric == metric
            && attributes
                .iter()
                .all(|(k, v)| p.attributes.get(*k).map(String::as_str) == Some(*v))
    })
}

#[tokio::test]
async fn an_invoke_is_one_trace_across_the_services_and_each_exports_its_metrics() {
    let collector = Collector::start().await;
    let suite = exporting_to(&collector).start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = agent_with(
        &alice,
        "Digest",
        Vec::new(),
        vec![automation("digest", "Digest", hourly(0), "UTC", &[])],
    )
    .await;

    // The caller's own trace continues through every hop.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(InvokeRequest {
        agent_id: agent.id.clone(),
        input: "hello".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01")
            .parse()
            .expect("header"),
    );
    alice.invoke().invoke(request).await.expect("invoke");
    // A refusal answers trailers-only: its status is in the headers.
    let refused = suite.anonymous().await.run(&agent.id, "no").await;
    assert_eq!(
        refused.expect_err("refused").code(),
        tonic::Code::Unauthenticated
    );

    let backends = [
        ServiceName::Sharing,
        ServiceName::Registry,
        ServiceName::Store,
    ];
    let trace = eventually("the invoke's spans from every service", || async {
        let trace: Vec<SpanSeen> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
        eprintln!(
            "DEBUG {} spans total, trace services {services:?}; {:?}",
            collector.spans().len(),
            collector
                .spans()
                .iter()
                .map(|s| (s.service.clone(), s.name.clone(), s.trace_id.clone()))
                .take(8)
                .collect::<Vec<_>>()
        );
        let all = std::iter::once(ServiceName::Gateway)
            .chain(backends)
            .all(|s| services.contains(service(s).as_str()));
        all.then_some(trace)
    })
    .await;
    let invoke = trace
        .iter()
        .find(|s| s.name == "agentshare.gateway.v1.InvokeService/Invoke")
        .unwrap_or_else(|| panic!("no Invoke span in {trace:#?}"));
    assert_eq!(invoke.service, service(ServiceName::Gateway));
    assert_eq!(invoke.parent_span_id, caller_span, "the caller's span");
    assert_eq!(
        invoke.attributes.get("rpc.system").map(String::as_str),
        Some("grpc")
    );
    assert_eq!(
        invoke.attributes.get("rpc.method").map(String::as_str),
        Some("Invoke")
    );
    let by_id: BTreeMap<&str, &SpanSeen> = trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for backend in backends {
        let spans: Vec<&SpanSeen> = trace
            .iter()
            .filter(|s| s.service == service(backend))
            .collect();
        for span in &spans {
            assert!(
                descends(span, &invoke.span_id, &by_id),
                "{backend}'s span {} does not descend from the Invoke span: {trace:#?}",
                span.name
            );
        }
    }

    // An automation run is a trace of its own, rooted at the scheduler's
    // span. Due three hours ago: the latest time runs (late), the earlier
    // ones count as missed.
    subscribe(
        &alice,
        &agent.id,
        "digest",
        true,
        &[pb::NotificationChannel::Web],
    )
    .await
    .expect("subscribe");
    let db = suite.db(ServiceName::Scheduler).await;
    let now = suite.clock.now_micros();
    let due = (now / HOUR_MICROS - 2) * HOUR_MICROS;
    agentshare_e2e::fire::all_due_at(&db, due).await;
    let (fire, run) = eventually("the run's spans", || async {
        let spans = collector.spans();
        let run = spans.iter().find(|s| {
            s.name == "agentshare.gateway.v1.InvokeInternalService/RunAutomation"
                && s.service == service(ServiceName::Gateway)
        })?;
        let fire = spans
            .iter()
            .find(|s| s.span_id == run.parent_span_id && s.trace_id == run.trace_id)?;
        Some((fire.clone(), run.clone()))
    })
    .await;
    assert_eq!(fire.service, service(ServiceName::Scheduler));
    assert_eq!(run.parent_span_id, fire.span_id);
    assert_eq!(fire.name, "fire automation run");

    let points = eventually("every metric", || async {
        let points = collector.points();
        let wanted = [
            point(
                &points,
                ServiceName::Gateway,
                "rpc.server.call.duration",
                &[
                    ("rpc.system", "grpc"),
                    ("rpc.service", "agentshare.gateway.v1.InvokeService"),
                    ("rpc.method", "Invoke"),
                    ("rpc.grpc.status_code", "0"),
                ],
            ),
            point(
                &points,
                ServiceName::Gateway,
                "rpc.server.call.duration",
                &[("rpc.method", "Invoke"), ("rpc.grpc.status_code", "16")],
            ),
            point(
                &points,
                ServiceName::Sharing,
                "rpc.server.call.duration",
                &[("rpc.system", "grpc"), ("rpc.grpc.status_code", "0")],
            ),
            point(
                &points,
                ServiceName::Store,
                "db.client.connection.count",
                &[
                    ("db.client.connection.state", "idle"),
                    ("db.client.connection.pool.name", "store"),
                ],
            ),
            point(
                &points,
                ServiceName::Store,
                "db.client.connection.count",
                &[("db.client.connection.state", "used")],
            ),
            point(
                &points,
                ServiceName::Registry,
                "db.client.connection.max",
                &[("db.client.connection.pool.name", "registry")],
            ),
            point(
                &points,
                ServiceName::Scheduler,
                "agentshare.scheduler.runs",
                &[("outcome", "succeeded")],
            ),
            point(
                &points,
                ServiceName::Scheduler,
                "agentshare.scheduler.runs",
                &[("outcome", "missed")],
            ),
            point(
                &points,
                ServiceName::Scheduler,
                "agentshare.scheduler.fire_lateness",
                &[],
            ),
        ];
        wanted
            .iter()
            .all(Option::is_some)
            .then(|| wanted.map(|p| p.cloned()))
    })
    .await;
    let [duration, _, _, _, _, _, runs, _, lateness] = points.map(Option::unwrap);
    assert_eq!((duration.kind, duration.unit.as_str()), ("histogram", "s"));
    assert_eq!(runs.kind, "sum");
    assert_eq!((lateness.kind, lateness.unit.as_str()), ("histogram", "s"));
    suite.stop().await;
}

#[tokio::test]
async fn json_log_lines_carry_trace_ids_and_no_secret() {
    let runtime = RecordingRuntime::start().await;
    // A configured sealing key: the connection below is sealed under it.
    let sealing_key = "cGxhbnRlZC1zZWFsaW5nLWtleS0zMi1ieXRlcy1vayE=";
    let suite = Suite::builder()
        .processes()
        .log_files()
        .runtime(&runtime)
        .env("AGENTSHARE_LOG__FORMAT", "json")
        .env("AGENTSHARE_CONNECTIONS__SECRET_KEYS__PLANTED", sealing_key)
        .env("AGENTSHARE_CONNECTIONS__ACTIVE_SECRET_KEY", "planted")
        .start()
        .await;
    let session = suite.token("alice");
    let alice = suite.user("alice").await.with_token(&session);
    alice.new_org("Acme").await;
    let connection_key = "srch-JSONLOG-6f1d2a9c04be";
    let connection = alice.api_key_connection("search", connection_key).await;
    let api_key = alice
        .tenancy()
        .create_api_key(sharing::CreateApiKeyRequest {
            label: "ci".into(),
            ..Default::default()
        })
        .await
        .expect("api key")
        .into_inner()
        .secret;
    alice.with_token(&api_key).user_id().await;
    let agent = agent_with(
        &alice,
        "Searcher",
        vec![agentshare_e2e::tool(
            "web_search",
            "search",
            agentshare_proto::registry::v1::IntegrationScope::Shared,
            &connection,
        )],
        Vec::new(),
    )
    .await;
    alice.run(&agent.id, "as alice").await.expect("run");
    let (_, share_token) = alice.grant(&agent.id, sharing::GrantKind::Delegate).await;
    suite
        .anonymous()
        .await
        .with_grant(&share_token)
        .run(&agent.id, "as a grant")
        .await
        .expect("run with grant");
    let run_token = runtime.run_with_input("as alice").request.run_token;
    assert!(!run_token.is_empty(), "the runtime got a run token");

    let logs = suite.logs();
    let mut traced = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            entry["level"].is_string() && entry["target"].is_string(),
            "{line}"
        );
        if let (Some(trace), Some(span)) = (entry["trace_id"].as_str(), entry["span_id"].as_str()) {
            assert!(trace.len() == 32 && span.len() == 16, "{line}");
            traced += 1;
        }
    }
    assert!(traced > 0, "no line carried a trace id");
    assert!(
        logs.contains("ConnectionsService"),
        "the services logged the calls at trace level"
    );
    for (what, secret) in [
        ("connection API key", connection_key),
        ("session JWT", session.as_str()),
        ("API key", api_key.as_str()),
        ("share token", share_token.as_str()),
        ("run token", run_token.as_str()),
        ("sealing key", sealing_key),
    ] {
        assert!(!logs.contains(secret), "the {what} reached the logs");
    }
    suite.stop().await;
}
