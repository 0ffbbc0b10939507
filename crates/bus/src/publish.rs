//! Publishing protobuf messages with a `Nats-Msg-Id` and the trace context, awaiting the
//! stream's ack; reading a subject's last message; decoding what was consumed.

use crate::trace::{inject_trace_context, HEADER_MSG_TYPE};
use crate::BusError;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::HeaderMap;
use bytes::Bytes;
use std::time::Duration;

/// The server's answer to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// The same `Nats-Msg-Id` was already stored inside the duplicate window.
    pub duplicate: bool,
}

/// Publishes protobuf messages to JetStream and waits for the stream's ack.
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    ack_timeout: Duration,
}

impl Publisher {
    pub fn new(client: async_nats::Client, ack_timeout: Duration) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(ack_timeout)
            .backpressure_on_inflight(true)
            .build(client);
        Self { js, ack_timeout }
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes `msg` on `subject` with `Nats-Msg-Id = msg_id`, the current span's trace
    /// context and a type header, and returns only once JetStream has stored it (or
    /// recognised it as a duplicate). A timeout does not mean "not stored": callers retry
    /// with the same id, which is safe.
    pub async fn publish<M: prost::Message + prost::Name>(
        &self,
        subject: &str,
        msg_id: &str,
        msg: &M,
    ) -> Result<Published, BusError> {
        let mut headers = HeaderMap::new();
        inject_trace_context(&mut headers);
        headers.insert(HEADER_MSG_TYPE, M::full_name().as_str());
        self.publish_raw(subject, msg_id, Bytes::from(msg.encode_to_vec()), headers).await
    }

    /// As [`Publisher::publish`], but stored only if `subject`'s last message is still
    /// `expected_last` (0: the subject is empty). The check is the server's
    /// (`Nats-Expected-Last-Subject-Sequence`), so two writers of one subject cannot
    /// interleave: the one that read an older state fails with [`BusError::Conflict`].
    pub async fn publish_if_last<M: prost::Message + prost::Name>(
        &self,
        subject: &str,
        msg_id: &str,
        msg: &M,
        expected_last: u64,
    ) -> Result<Published, BusError> {
        let mut headers = HeaderMap::new();
        inject_trace_context(&mut headers);
        headers.insert(HEADER_MSG_TYPE, M::full_name().as_str());
        headers.insert("Nats-Expected-Last-Subject-Sequence", expected_last.to_string().as_str());
        match self.publish_raw(subject, msg_id, Bytes::from(msg.encode_to_vec()), headers).await {
            Err(BusError::Publish { subject, reason }) if reason.contains("wrong last sequence") => {
                Err(BusError::Conflict { subject, reason })
            }
            other => other,
        }
    }

    /// Publishes bytes as they are, with the given headers plus `Nats-Msg-Id`.
    pub async fn publish_raw(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
        headers: HeaderMap,
    ) -> Result<Published, BusError> {
        // async-nats asserts (panics) on a header value with CR or LF; ids come from
        // webhooks and Gusto's event list, so refuse them here instead (finding 9).
        if msg_id.is_empty() || msg_id.chars().any(char::is_control) {
            return Err(BusError::Publish {
                subject: subject.to_string(),
                reason: "message id is empty or holds a control character".into(),
            });
        }
        let publish = PublishMessage::build().payload(payload).headers(headers).message_id(msg_id);
        let fut = self
            .js
            .send_publish(subject.to_string(), publish)
            .await
            .map_err(|e| BusError::Publish { subject: subject.to_string(), reason: e.to_string() })?;
        // The ack future is bounded by the context's timeout (`ack_timeout`, set above):
        // a second timer here would cost one more per publish for nothing.
        match fut.await {
            Err(e) if e.kind() == PublishErrorKind::TimedOut => {
                Err(BusError::AckTimeout { subject: subject.to_string(), timeout: self.ack_timeout })
            }
            Err(e) => Err(BusError::Publish { subject: subject.to_string(), reason: e.to_string() }),
            Ok(ack) => Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate }),
        }
    }
}

/// A message read straight from a stream (not through a consumer).
#[derive(Debug, Clone)]
pub struct Stored<M> {
    pub sequence: u64,
    pub subject: String,
    pub message: M,
    pub headers: HeaderMap,
}

/// Reads the last message stored on `subject` in `stream`, decoded. `None` when the
/// subject has no message. Goes to the stream leader, so a publish that was acked is
/// always visible (read-your-writes, which "append only on change" relies on).
pub async fn last_on_subject<M: prost::Message + Default>(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Result<Option<Stored<M>>, BusError> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let read_err = |reason: String| BusError::Read { subject: subject.to_string(), reason };
    let handle = js.get_stream_no_info(stream).await.map_err(|e| read_err(e.to_string()))?;
    match handle.get_last_raw_message_by_subject(subject).await {
        Ok(raw) => {
            let message = M::decode(raw.payload.as_ref()).map_err(|e| BusError::Decode {
                type_name: std::any::type_name::<M>(),
                subject: subject.to_string(),
                reason: e.to_string(),
            })?;
            Ok(Some(Stored {
                sequence: raw.sequence,
                subject: raw.subject.to_string(),
                message,
                headers: raw.headers,
            }))
        }
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(read_err(e.to_string())),
    }
}

/// The sequence of the last message `stream` holds (0 when empty): a mark that what was
/// stored at or below it was stored before this call.
pub async fn last_sequence(js: &jetstream::Context, stream: &str) -> Result<u64, BusError> {
    let read_err = |reason: String| BusError::Read { subject: format!("stream {stream}"), reason };
    // `get_stream` asks the stream's leader for its info: one request.
    let handle = js.get_stream(stream).await.map_err(|e| read_err(e.to_string()))?;
    Ok(handle.cached_info().state.last_sequence)
}

/// Decodes a consumed message's payload, naming the subject on failure.
pub fn decode<M: prost::Message + Default>(subject: &str, payload: &[u8]) -> Result<M, BusError> {
    M::decode(payload).map_err(|e| BusError::Decode {
        type_name: std::any::type_name::<M>(),
        subject: subject.to_string(),
        reason: e.to_string(),
    })
}
