//! The JetStream side of ml-connector.
//!
//! # Layout
//! - `topology`: stream, subject and durable names under a prefix ([`Topology`]), and
//!   creating or checking them.
//! - `connection`: connecting with the configured credentials.
//! - `publish`: [`Publisher`] (a `Nats-Msg-Id` and the trace context, awaiting the
//!   stream's ack), [`last_on_subject`], [`decode`].
//! - [`consume`], [`feed`]: pull consumers batched for coalescing; one feed over the
//!   partitions a replica holds ([`partitions`], [`lease`]).
//! - [`delivery`], [`dead_letter`]: the one vocabulary for what happens to a consumed
//!   message, and the one dead-letter writer.
//! - [`trace`]: W3C trace context in headers and messages.
//! - [`replay`]: reading a stream from an offset. [`ratelimit`]: a request window shared
//!   through JetStream. `ready`: readiness from the real dependencies.
//!
//! Every name passes through [`Topology`], whose prefix lets tests and tenants share one
//! server without touching each other's streams.

mod connection;
pub mod consume;
pub mod dead_letter;
pub mod delivery;
pub mod feed;
pub mod lease;
pub mod partitions;
mod publish;
pub mod ratelimit;
mod ready;
pub mod replay;
mod topology;
pub mod trace;

pub use connection::{connect, connect_now, connect_options, redact_url};
pub use consume::backlog;
pub use mlc_config::NatsConfig;
pub use publish::{decode, last_on_subject, last_sequence, Published, Publisher, Stored};
pub use ready::watch_ready;
pub use topology::{apply_topology, ensure_topology, verify_topology, ConsumerSpec, StreamKind, Topology};
pub use trace::{extract_trace_context, inject_trace_context, HEADER_MSG_TYPE, HEADER_TRACEPARENT};

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

/// Milliseconds since the Unix epoch, the unit of every `*_ms` field in the protos.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
