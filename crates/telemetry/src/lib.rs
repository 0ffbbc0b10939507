//! Logs, traces and metrics for every ml-connector process.
//!
//! - Logs: JSON lines (or pretty for people) through `tracing`, filtered by `MLC_LOG` /
//!   `telemetry.log_filter`, and passed through [`redact`] on the way out so a token that
//!   slips into a message is masked.
//! - Traces: OTLP/HTTP export when an endpoint is configured, W3C trace context as the
//!   global propagator (the bus carries it in NATS headers); spans pass through the same
//!   [`redact`] on the way out (`span_redaction`).
//! - Metrics: a Prometheus registry per process, encoded by [`encode_metrics`] and
//!   served with health and readiness by [`ops_router`].

mod ops;
mod redact;
mod span_redaction;

pub use ops::{ops_router, ReadyFlag};
pub use redact::redact;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log filter {0:?} is not valid: {1}")]
    Filter(String, String),
    #[error("OTLP exporter: {0}")]
    Otlp(String),
    #[error("a global subscriber is already installed")]
    AlreadyInstalled,
}

/// What [`init`] needs; mirrors `telemetry.*` of the configuration.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub service_name: String,
    pub log_format: String,
    pub log_filter: String,
    pub otlp_endpoint: Option<String>,
}

/// Keeps the trace exporter alive; dropping it flushes the spans still in the batch.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    pub fn shutdown(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Installs the global subscriber and propagator. Call once, first thing in `main`.
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let filter = EnvFilter::try_new(&settings.log_filter)
        .map_err(|e| TelemetryError::Filter(settings.log_filter.clone(), e.to_string()))?;

    let fmt_layer = if settings.log_format == "pretty" {
        tracing_subscriber::fmt::layer().with_writer(RedactingStderr).with_target(false).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(RedactingStderr)
            .boxed()
    };

    let (otel_layer, provider) = match &settings.otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
            let endpoint = if endpoint.ends_with("/v1/traces") {
                endpoint.clone()
            } else {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            };
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .with_timeout(std::time::Duration::from_secs(5))
                .with_headers(Default::default())
                .build()
                .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(span_redaction::Redacting(exporter))
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(settings.service_name.clone())
                        .build(),
                )
                .build();
            let tracer = provider.tracer(settings.service_name.clone());
            opentelemetry::global::set_tracer_provider(provider.clone());
            // Spans are filtered on their own: a quieter log filter (`warn`) must not cut
            // the traces short.
            let spans = tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
            (Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans)), Some(provider))
        }
    };

    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// Writes log lines to stderr after masking anything that looks like a secret.
#[derive(Clone, Copy)]
struct RedactingStderr;

struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().write_all(redact(&text).as_bytes());
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::with_capacity(256))
    }
}

/// Encodes a registry in the Prometheus text format.
pub fn encode_metrics(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
