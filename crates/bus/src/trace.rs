//! W3C trace context in NATS headers and in the messages' `TraceContext` field, so one
//! webhook is one trace across the gateway, the projector and the writer.

use async_nats::HeaderMap;
use mlc_proto::v1::TraceContext;
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
    inject_current(&mut Inject(headers));
}

/// The current span's context, through the global propagator, into `to`.
fn inject_current(to: &mut dyn Injector) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, to));
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub fn extract_trace_context(headers: Option<&HeaderMap>, span: &tracing::Span) {
    if let Some(headers) = headers {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extract(headers)));
        let _ = span.set_parent(parent);
    }
}

/// The current span's W3C context as messages carry it; `None` when tracing is not
/// exporting (nothing to continue). Only the traceparent is kept, so no header map is
/// built for it.
pub fn current() -> Option<TraceContext> {
    struct Capture(Option<String>);
    impl Injector for Capture {
        fn set(&mut self, key: &str, value: String) {
            if key == HEADER_TRACEPARENT {
                self.0 = Some(value);
            }
        }
    }
    let mut captured = Capture(None);
    inject_current(&mut captured);
    captured
        .0
        .filter(|t| !t.is_empty())
        .map(|traceparent| TraceContext { traceparent, tracestate: String::new() })
}

/// The trace id (32 hex digits, the second field of `00-<trace id>-<span id>-<flags>`) of a
/// carried context, for audit rows, logs and `mlc dlq show`; `None` for the all-zero id,
/// which W3C reserves for "no trace".
pub fn trace_id(t: &Option<TraceContext>) -> Option<String> {
    let tp = &t.as_ref()?.traceparent;
    tp.split('-').nth(1).filter(|s| s.len() == 32 && s.bytes().any(|b| b != b'0')).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_the_second_field_of_a_traceparent() {
        let t = Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: String::new(),
        });
        assert_eq!(trace_id(&t).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id(&None), None);
        assert_eq!(trace_id(&Some(TraceContext::default())), None);
        let zero = TraceContext {
            traceparent: format!("00-{}-00f067aa0ba902b7-00", "0".repeat(32)),
            tracestate: String::new(),
        };
        assert_eq!(trace_id(&Some(zero)), None);
    }
}
