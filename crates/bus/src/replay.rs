//! Reading a stream from an offset: replay.

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures::StreamExt;

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    Sequence(u64),
    /// Unix milliseconds.
    Time(i64),
    /// From the start, but only the newest message of each subject (JetStream's
    /// `LastPerSubject`): what a replay of state needs, since an older state of a subject
    /// is superseded by its newest.
    NewestPerSubject,
}

/// One stored message, as replay sees it.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub sequence: u64,
    pub subject: String,
    pub payload: bytes::Bytes,
    pub headers: Option<async_nats::HeaderMap>,
    /// Messages of the filter still to come after this one.
    pub pending: u64,
    /// When the stream stored it (the server's clock), Unix milliseconds.
    pub stored_at_ms: i64,
}

/// Every message of a stream matching a filter from a start, up to what the stream
/// held when the replay began, through an ephemeral ordered consumer (no acks, no
/// effect on the services' durable consumers).
pub struct Replay {
    messages: Option<async_nats::jetstream::consumer::pull::Ordered>,
    done: bool,
    filter: String,
    stream_last_sequence: u64,
}

impl Replay {
    pub async fn open(
        js: &async_nats::jetstream::Context,
        stream: &str,
        filter: &str,
        start: Start,
    ) -> Result<Replay, crate::BusError> {
        let err = |e: String| crate::BusError::Read { subject: filter.to_string(), reason: e };
        let mut handle = js.get_stream(stream).await.map_err(|e| err(e.to_string()))?;
        let stream_last_sequence = handle.info().await.map_err(|e| err(e.to_string()))?.state.last_sequence;
        let deliver_policy = match start {
            Start::Sequence(s) => DeliverPolicy::ByStartSequence { start_sequence: s.max(1) },
            Start::Time(ms) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
                    .map_err(|e| err(e.to_string()))?,
            },
            Start::NewestPerSubject => DeliverPolicy::LastPerSubject,
        };
        let mut consumer = handle
            .create_consumer(OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| err(e.to_string()))?;
        let pending = consumer.info().await.map_err(|e| err(e.to_string()))?.num_pending;
        if pending == 0 {
            return Ok(Replay {
                messages: None,
                done: true,
                filter: filter.to_string(),
                stream_last_sequence,
            });
        }
        let messages = consumer.messages().await.map_err(|e| err(e.to_string()))?;
        Ok(Replay { messages: Some(messages), done: false, filter: filter.to_string(), stream_last_sequence })
    }

    /// Up to `max` next messages, in stream order; empty once the replay has caught up.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Vec<Replayed>, crate::BusError> {
        let mut chunk = Vec::with_capacity(max.min(4096));
        while chunk.len() < max {
            match self.next().await.transpose()? {
                Some(m) => chunk.push(m),
                None => break,
            }
        }
        Ok(chunk)
    }

    /// The stream's last sequence when the replay began (a later message is newer than
    /// anything the replay delivers).
    pub fn stream_last_sequence(&self) -> u64 {
        self.stream_last_sequence
    }

    /// The next message, in stream order; `None` once the replay has caught up.
    pub async fn next(&mut self) -> Option<Result<Replayed, crate::BusError>> {
        if self.done {
            return None;
        }
        let messages = self.messages.as_mut()?;
        let m = match messages.next().await? {
            Ok(m) => m,
            Err(e) => {
                return Some(Err(crate::BusError::Read {
                    subject: self.filter.clone(),
                    reason: e.to_string(),
                }))
            }
        };
        let info = match m.info() {
            Ok(i) => i,
            Err(e) => {
                return Some(Err(crate::BusError::Read {
                    subject: self.filter.clone(),
                    reason: e.to_string(),
                }))
            }
        };
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let stored_at_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
        self.done = pending == 0;
        Some(Ok(Replayed {
            sequence,
            subject: m.subject.to_string(),
            payload: m.payload.clone(),
            headers: m.headers.clone(),
            pending,
            stored_at_ms,
        }))
    }
}
