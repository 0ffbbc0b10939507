//! The JetStream side of ml-connector: stream and consumer topology, publishing with a
//! `Nats-Msg-Id` and W3C trace headers (awaiting the server's ack), and reading a
//! subject's last message.
//!
//! Every name passes through [`Topology`], whose prefix lets tests and tenants share one
//! server without touching each other's streams.

mod connection;
mod headers;
pub mod lease;
pub mod ratelimit;
mod ready;
mod topology;

pub use connection::{connect, connect_now, connect_options, redact_url};
pub use headers::{extract_trace_context, inject_trace_context, HEADER_MSG_TYPE, HEADER_TRACEPARENT};
pub use mlc_config::NatsConfig;
pub use ready::watch_ready;
pub use topology::{apply_topology, ensure_topology, verify_topology, ConsumerSpec, StreamKind, Topology};

use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::HeaderMap;
use bytes::Bytes;
use std::time::Duration;

/// What can go wrong talking to JetStream. Every variant says whether a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("JetStream topology: {0}")]
    Topology(String),
    #[error("publish to {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
    #[error("publish to {subject} was not acknowledged within {timeout:?}")]
    AckTimeout { subject: String, timeout: Duration },
    #[error("{subject} changed since it was read: {reason}")]
    Conflict { subject: String, reason: String },
    #[error("reading {subject}: {reason}")]
    Read { subject: String, reason: String },
    #[error("decoding a {type_name} from {subject}: {reason}")]
    Decode { type_name: &'static str, subject: String, reason: String },
}

impl BusError {
    /// Decode errors are the message's fault; everything else is the broker's and may pass.
    pub fn is_transient(&self) -> bool {
        !matches!(self, BusError::Decode { .. })
    }
}

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
        match tokio::time::timeout(self.ack_timeout, fut).await {
            Err(_) => Err(BusError::AckTimeout { subject: subject.to_string(), timeout: self.ack_timeout }),
            Ok(Err(e)) => Err(BusError::Publish { subject: subject.to_string(), reason: e.to_string() }),
            Ok(Ok(ack)) => Ok(Published { sequence: ack.sequence, duplicate: ack.duplicate }),
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

/// Decodes a consumed message's payload, naming the subject on failure.
pub fn decode<M: prost::Message + Default>(subject: &str, payload: &[u8]) -> Result<M, BusError> {
    M::decode(payload).map_err(|e| BusError::Decode {
        type_name: std::any::type_name::<M>(),
        subject: subject.to_string(),
        reason: e.to_string(),
    })
}

/// Messages not yet delivered plus those delivered and not acknowledged, over every
/// durable consumer of the services: zero means the pipeline is idle.
pub async fn backlog(js: &jetstream::Context, topo: &Topology) -> Result<u64, BusError> {
    let err = |e: String| BusError::Topology(e);
    let mut n = 0;
    for spec in ConsumerSpec::ALL {
        let stream = js.get_stream(topo.stream(spec.stream)).await.map_err(|e| err(e.to_string()))?;
        for durable in topo.durables(&spec) {
            let mut c = stream
                .get_consumer::<jetstream::consumer::pull::Config>(&durable)
                .await
                .map_err(|e| err(format!("consumer {durable}: {e}")))?;
            let info = c.info().await.map_err(|e| err(format!("consumer {durable}: {e}")))?;
            n += info.num_pending + info.num_ack_pending as u64;
        }
    }
    Ok(n)
}

/// Milliseconds since the Unix epoch, the unit of every `*_ms` field in the protos.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Pull consumers, batched for coalescing.
pub mod consume {
    use async_nats::jetstream::consumer::pull::Stream as PullStream;
    use async_nats::jetstream::Message;
    use futures::StreamExt;
    use std::time::Duration;

    /// Waits for at least one message, then takes whatever else arrives within
    /// `linger` (up to `max`). One message waits no longer than `linger` for company,
    /// and a burst is handed over as one batch, so work on it can be coalesced.
    /// Transient pull errors (missed heartbeats, reconnects) are logged and skipped;
    /// `None` means the stream ended.
    pub async fn next_batch(stream: &mut PullStream, max: usize, linger: Duration) -> Option<Vec<Message>> {
        let mut batch = Vec::new();
        loop {
            match stream.next().await? {
                Ok(m) => {
                    batch.push(m);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pull error; continuing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // While the server says more is pending, keep taking it (a backlog or a burst
        // becomes one batch); otherwise wait at most `linger` for company.
        let mut deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            let pending = batch.last().and_then(|m| m.info().ok()).map_or(0, |i| i.pending);
            if pending > 0 {
                deadline = deadline.max(tokio::time::Instant::now() + linger.max(Duration::from_millis(50)));
            }
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(m))) => batch.push(m),
                Ok(Some(Err(e))) => tracing::warn!(error = %e, "pull error; continuing"),
                Ok(None) | Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Opens the durable consumer `spec` of `topology` as a continuous message stream
    /// (partition 0: the only one of an unpartitioned topology).
    pub async fn open(
        js: &async_nats::jetstream::Context,
        topology: &crate::Topology,
        spec: &crate::ConsumerSpec,
        batch: usize,
    ) -> Result<PullStream, crate::BusError> {
        open_partition(js, topology, spec, 0, batch).await
    }

    /// Opens the durable consumer of `spec` for one partition.
    pub async fn open_partition(
        js: &async_nats::jetstream::Context,
        topology: &crate::Topology,
        spec: &crate::ConsumerSpec,
        partition: u32,
        batch: usize,
    ) -> Result<PullStream, crate::BusError> {
        let name = topology.stream(spec.stream);
        let durable = topology.durable(spec, partition);
        let stream =
            js.get_stream(&name).await.map_err(|e| crate::BusError::Topology(format!("{name}: {e}")))?;
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(&durable)
            .await
            .map_err(|e| crate::BusError::Topology(format!("consumer {durable}: {e}")))?;
        consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| crate::BusError::Topology(format!("consumer {durable}: {e}")))
    }
}

/// Consuming the partitions a replica holds as one feed of batches.
pub mod feed {
    use crate::{consume, ConsumerSpec, Topology};
    use async_nats::jetstream::{self, Message};
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;
    use tokio::sync::{mpsc, watch};

    /// Batches from the durable consumers of every partition in `held`, following its
    /// changes: a partition taken starts a reader, a partition lost stops its reader.
    /// A batch never mixes partitions.
    pub struct Feed {
        rx: mpsc::Receiver<(u32, Vec<Message>)>,
        held: watch::Receiver<BTreeSet<u32>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Feed {
        pub fn start(
            js: jetstream::Context,
            topology: Topology,
            spec: ConsumerSpec,
            held: watch::Receiver<BTreeSet<u32>>,
            batch: usize,
            linger: Duration,
        ) -> Feed {
            let (tx, rx) = mpsc::channel(4);
            let task = tokio::spawn(supervise(js, topology, spec, held.clone(), tx, batch, linger));
            Feed { rx, held, task }
        }

        /// The next batch of a partition this replica still holds, and the partition;
        /// `None` when the feed ended. A batch whose partition moved to another replica
        /// while it waited is handed back (NAK) for its new holder.
        pub async fn next_batch(&mut self) -> Option<(u32, Vec<Message>)> {
            loop {
                let (partition, batch) = self.rx.recv().await?;
                if self.holds(partition) {
                    return Some((partition, batch));
                }
                for m in &batch {
                    let _ = m.ack_with(async_nats::jetstream::AckKind::Nak(None)).await;
                }
            }
        }

        /// Whether this replica still holds `partition` (check before working a message
        /// taken from a batch that waited).
        pub fn holds(&self, partition: u32) -> bool {
            self.held.borrow().contains(&partition)
        }

        /// A handle workers can use to ask the same question.
        pub fn held(&self) -> watch::Receiver<BTreeSet<u32>> {
            self.held.clone()
        }
    }

    impl Drop for Feed {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Aborts the reader when the supervisor goes (dropped with the feed).
    struct Reader(tokio::task::JoinHandle<()>);

    impl Drop for Reader {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    async fn supervise(
        js: jetstream::Context,
        topology: Topology,
        spec: ConsumerSpec,
        mut held: watch::Receiver<BTreeSet<u32>>,
        tx: mpsc::Sender<(u32, Vec<Message>)>,
        batch: usize,
        linger: Duration,
    ) {
        let mut readers: BTreeMap<u32, Reader> = BTreeMap::new();
        loop {
            let want = held.borrow_and_update().clone();
            readers.retain(|p, r| want.contains(p) && !r.0.is_finished());
            for p in want {
                readers.entry(p).or_insert_with(|| {
                    Reader(tokio::spawn(read(
                        js.clone(),
                        topology.clone(),
                        spec.clone(),
                        p,
                        tx.clone(),
                        batch,
                        linger,
                    )))
                });
            }
            tokio::select! {
                changed = held.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn read(
        js: jetstream::Context,
        topology: Topology,
        spec: ConsumerSpec,
        partition: u32,
        tx: mpsc::Sender<(u32, Vec<Message>)>,
        batch: usize,
        linger: Duration,
    ) {
        loop {
            let mut messages = match consume::open_partition(&js, &topology, &spec, partition, batch).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(partition, error = %e, "cannot open consumer; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(b) = consume::next_batch(&mut messages, batch, linger).await {
                if let Err(mpsc::error::SendError((_, unsent))) = tx.send((partition, b)).await {
                    // The feed is gone: hand these back now rather than after the ack wait.
                    for m in unsent {
                        let _ = m.ack_with(async_nats::jetstream::AckKind::Nak(None)).await;
                    }
                    return;
                }
            }
        }
    }
}

/// Reading a stream from an offset: replay.
pub mod replay {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    use futures::StreamExt;

    /// Where a replay starts.
    #[derive(Debug, Clone, Copy)]
    pub enum Start {
        Sequence(u64),
        /// Unix milliseconds.
        Time(i64),
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
    }

    /// Every message of a stream matching a filter from a start, up to what the stream
    /// held when the replay began, through an ephemeral ordered consumer (no acks, no
    /// effect on the services' durable consumers).
    pub struct Replay {
        messages: Option<async_nats::jetstream::consumer::pull::Ordered>,
        done: bool,
        filter: String,
    }

    impl Replay {
        pub async fn open(
            js: &async_nats::jetstream::Context,
            stream: &str,
            filter: &str,
            start: Start,
        ) -> Result<Replay, crate::BusError> {
            let err = |e: String| crate::BusError::Read { subject: filter.to_string(), reason: e };
            let handle = js.get_stream(stream).await.map_err(|e| err(e.to_string()))?;
            let deliver_policy = match start {
                Start::Sequence(s) => DeliverPolicy::ByStartSequence { start_sequence: s.max(1) },
                Start::Time(ms) => DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
                        .map_err(|e| err(e.to_string()))?,
                },
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
                return Ok(Replay { messages: None, done: true, filter: filter.to_string() });
            }
            let messages = consumer.messages().await.map_err(|e| err(e.to_string()))?;
            Ok(Replay { messages: Some(messages), done: false, filter: filter.to_string() })
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
            self.done = pending == 0;
            Some(Ok(Replayed {
                sequence,
                subject: m.subject.to_string(),
                payload: m.payload.clone(),
                headers: m.headers.clone(),
                pending,
            }))
        }
    }
}
