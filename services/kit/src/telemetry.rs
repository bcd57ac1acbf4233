//! Telemetry: tracing to stdout (pretty or JSON), spans exported by OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (connecting lazily, so a missing collector neither fails
//! nor stalls start-up, and with short timeouts so it cannot stall shutdown either), W3C trace
//! context carried in gRPC metadata and in events, and the Prometheus registry behind `/metrics`.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// Keeps the span exporter alive; flushes it (briefly) when dropped.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Bounded: an endpoint that accepts and never answers must not hold the exit.
            let _ = provider.shutdown_with_timeout(Duration::from_secs(2));
        }
    }
}

/// Installs the global subscriber: the filter, the stdout layer and, when an OTLP endpoint is
/// configured, the span exporter. A second call (tests start many servers in one process) keeps
/// the first subscriber and returns an empty guard.
pub fn init(settings: &LogSettings, service_name: &str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().flatten_event(true).boxed(),
        LogFormat::Pretty => {
            use std::io::IsTerminal;
            tracing_subscriber::fmt::layer().compact().with_ansi(std::io::stdout().is_terminal()).boxed()
        }
    };
    // Spans always carry OpenTelemetry context, so trace context flows through requests and
    // events whether or not this process exports; the exporter is added only when configured.
    let provider = tracer_provider(service_name);
    // The log filter applies to the log only: trace context must not depend on the log level.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("civic"))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let installed = tracing_subscriber::registry().with(stdout.with_filter(filter)).with(otel).try_init().is_ok();
    if installed {
        opentelemetry::global::set_tracer_provider(provider.clone());
        TelemetryGuard { provider: Some(provider) }
    } else {
        TelemetryGuard::default()
    }
}

fn tracer_provider(service_name: &str) -> SdkTracerProvider {
    use opentelemetry_otlp::WithExportConfig;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(format!("civic-{service_name}")).build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty()) else {
        return builder.build();
    };
    match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(2))
        .build()
    {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(e) => {
            eprintln!("otlp span export disabled: {e}");
            builder.build()
        }
    }
}

/// The process-wide Prometheus registry (installed on first use).
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Another recorder may be installed already (an embedding program); then ours only
            // renders what it records itself, which is still a valid exposition.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

struct HeaderExtract<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInject<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInject<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(key), http::HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the W3C trace context in `headers` (`traceparent`, `tracestate`),
/// when there is one.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&HeaderExtract(headers));
        let _ = span.set_parent(cx);
    }
}

/// Writes the current span's trace context into outgoing headers (gRPC metadata is headers).
pub fn inject_current(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInject(headers));
}

/// The current span's `traceparent`, for events; `None` outside a sampled trace.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of an event's stored `traceparent`.
pub fn adopt_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_adopts_the_callers_trace_and_passes_it_on() {
        let _guard = init(&LogSettings { level: "warn".into(), ..Default::default() }, "test");
        let mut headers = http::HeaderMap::new();
        headers
            .insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().expect("header"));
        let span = tracing::info_span!("rpc");
        adopt_parent(&span, &headers);
        let inner = span.in_scope(|| {
            let child = tracing::info_span!("enqueue");
            child.in_scope(current_traceparent)
        });
        let traceparent = inner.expect("trace context inside the span");
        assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
        assert!(!traceparent.contains("00f067aa0ba902b7"), "a span of its own, child of the caller's");
    }
}
