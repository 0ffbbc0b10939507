//! The same last line of defence as the log writer's, for traces: every span leaves
//! the process through [`Redacting`], which masks what [`redact`] masks in span names,
//! attribute values, event names and attributes, link attributes and error texts.
//! Attribute values are redacted together with their key (`password=...`), so a span
//! field named like a secret is masked whatever its value looks like.

use crate::redact;
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::borrow::Cow;
use std::time::Duration;

/// Wraps the OTLP exporter.
#[derive(Debug)]
pub(crate) struct Redacting<E>(pub(crate) E);

impl<E: SpanExporter> SpanExporter for Redacting<E> {
    fn export(&self, mut batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        batch.iter_mut().for_each(redact_span);
        self.0.export(batch)
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource)
    }
}

fn redact_span(span: &mut SpanData) {
    redact_cow(&mut span.name);
    redact_attributes(&mut span.attributes);
    for event in span.events.events.iter_mut() {
        redact_cow(&mut event.name);
        redact_attributes(&mut event.attributes);
    }
    for link in span.links.links.iter_mut() {
        redact_attributes(&mut link.attributes);
    }
    if let opentelemetry::trace::Status::Error { description } = &mut span.status {
        redact_cow(description);
    }
}

fn redact_cow(s: &mut Cow<'static, str>) {
    let r = redact(s);
    if r != **s {
        *s = Cow::Owned(r);
    }
}

fn redact_attributes(attributes: &mut [KeyValue]) {
    for kv in attributes {
        let key = kv.key.as_str().to_string();
        match &mut kv.value {
            Value::String(s) => *s = StringValue::from(redact_value(&key, s.as_str())),
            Value::Array(Array::String(items)) => {
                for s in items.iter_mut() {
                    *s = StringValue::from(redact_value(&key, s.as_str()));
                }
            }
            _ => {}
        }
    }
}

/// `value` as [`redact`] leaves it when written `key=value`.
fn redact_value(key: &str, value: &str) -> String {
    let prefix = format!("{key}=");
    let joined = redact(&format!("{prefix}{value}"));
    joined.strip_prefix(&prefix).map(str::to_string).unwrap_or(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_fields_are_redacted_like_log_lines() {
        let mut attrs = vec![
            KeyValue::new("client_secret", "cs-SECRET"),
            KeyValue::new("url", "nats://u:pw-SECRET@h:4222"),
            KeyValue::new("message", "sent Bearer tok-SECRET"),
            KeyValue::new("employee_code", "fesa3w"),
        ];
        redact_attributes(&mut attrs);
        let text = format!("{attrs:?}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("fesa3w"), "ordinary values stay: {text}");
    }
}
