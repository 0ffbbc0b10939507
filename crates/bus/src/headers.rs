//! W3C trace context in NATS headers, so one webhook is one trace across the gateway,
//! the projector and the writer.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const HEADER_TRACEPARENT: &str = "traceparent";
/// The protobuf type of the payload, so tools can decode without knowing the stream.
pub const HEADER_MSG_TYPE: &str = "Mlc-Type";

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the current span's context into `headers` (nothing when tracing is not
/// exporting, since the propagator is then a no-op).
pub fn inject_trace_context(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Inject(headers)));
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub fn extract_trace_context(headers: Option<&HeaderMap>, span: &tracing::Span) {
    if let Some(headers) = headers {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(headers)));
        let _ = span.set_parent(parent);
    }
}
