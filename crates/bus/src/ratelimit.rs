//! A rolling-window rate limit shared by every process, kept by JetStream itself: a
//! stream whose messages live `window` and hold at most `limit` per subject, rejecting
//! the next one (`discard_new_per_subject`, nats-server 2.9.2+). Taking a slot is a
//! publish; the server serialises them, so the check and the append are one atomic step
//! across all replicas. When full, the oldest slot's timestamp says when one frees up.

use crate::{BusError, Topology};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use std::time::Duration;

#[derive(Clone)]
pub struct SharedWindow {
    js: jetstream::Context,
    stream: String,
    root: String,
    window: Duration,
}

impl SharedWindow {
    /// Creates (or finds) the limiter stream for `limit` requests per `window` per key.
    pub async fn ensure(
        js: &jetstream::Context,
        topo: &Topology,
        limit: u32,
        window: Duration,
    ) -> Result<SharedWindow, BusError> {
        Self::ensure_named(js, topo, "RATELIMIT", "rl", limit, window).await
    }

    /// The CLI's own window of `limit / 2` per key (stream `<PREFIX>_RATELIMIT_CLI`): a CLI
    /// command takes a slot here and then one of [`SharedWindow::ensure`]'s, so long
    /// commands (`reconcile`, `backfill`, `match`) never hold more than half of the
    /// grant's window and the sync keeps at least the other half.
    pub async fn ensure_cli(
        js: &jetstream::Context,
        topo: &Topology,
        limit: u32,
        window: Duration,
    ) -> Result<SharedWindow, BusError> {
        Self::ensure_named(js, topo, "RATELIMIT_CLI", "rlcli", (limit / 2).max(1), window).await
    }

    async fn ensure_named(
        js: &jetstream::Context,
        topo: &Topology,
        suffix: &str,
        root: &str,
        limit: u32,
        window: Duration,
    ) -> Result<SharedWindow, BusError> {
        let (stream, root) = names(topo, suffix, root);
        // A slot is taken just before the request leaves; a slow request may reach Gusto
        // a little later than the next one. Each slot lives longer than the window by that
        // skew: 2 % (1.2 s of Gusto's 60 s), and never less than 1 s, because the skew is
        // scheduling and network time, not a share of the window (a compressed 6 s test
        // window with 2 % = 120 ms saw 42 of 40 requests on a busy machine).
        let window = window + (window / 50).max(Duration::from_secs(1));
        let config = stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{root}.>")],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: window,
            max_messages_per_subject: i64::from(limit),
            discard: stream::DiscardPolicy::New,
            discard_new_per_subject: true,
            num_replicas: topo.stream_config(crate::StreamKind::DeadLetters).num_replicas,
            duplicate_window: Duration::from_millis(window.as_millis().min(120_000) as u64),
            ..Default::default()
        };
        let c = &config;
        crate::topology::while_electing(move || js.create_or_update_stream(c.clone()))
            .await
            .map_err(|e| BusError::Topology(format!("rate-limit stream {stream}: {e}")))?;
        Ok(SharedWindow { js: js.clone(), stream, root, window })
    }

    /// Waits until a slot of `key`'s window is free and takes it.
    pub async fn acquire(&self, key: &str) -> Result<(), BusError> {
        let subject = format!("{}.{}", self.root, key.replace(['.', '*', '>', ' '], "_"));
        loop {
            let ack = self
                .js
                .publish(subject.clone(), Bytes::new())
                .await
                .map_err(|e| BusError::Publish { subject: subject.clone(), reason: e.to_string() })?
                .await;
            match ack {
                Ok(_) => return Ok(()),
                Err(e) if e.to_string().contains("maximum messages per subject") => {
                    let wait = self.until_free(&subject).await;
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(BusError::Publish { subject, reason: e.to_string() }),
            }
        }
    }

    /// How long until the oldest slot of `subject` expires.
    async fn until_free(&self, subject: &str) -> Duration {
        let fallback = self.window / 20;
        let Ok(handle) = self.js.get_stream_no_info(&self.stream).await else { return fallback };
        match handle.raw_message_builder().sequence(1).next_by_subject(subject.to_string()).send().await {
            Ok(oldest) => {
                let age = time::OffsetDateTime::now_utc() - oldest.time;
                let age = Duration::try_from(age).unwrap_or_default();
                self.window.saturating_sub(age).max(Duration::from_millis(5))
            }
            Err(_) => Duration::from_millis(5),
        }
    }
}

/// The limiter stream's name and subject root under `topo`'s prefix.
fn names(topo: &Topology, suffix: &str, root: &str) -> (String, String) {
    let stream = if topo.prefix().is_empty() {
        format!("MLC_{suffix}")
    } else {
        format!("{}_{suffix}", topo.prefix().to_ascii_uppercase().replace('-', "_"))
    };
    let root = if topo.prefix().is_empty() { root.to_string() } else { format!("{}.{root}", topo.prefix()) };
    (stream, root)
}

/// Slots taken per key (a grant id, or `system`) in the shared window right now, read
/// without creating anything: `None` when no process has used the window yet. Each slot
/// lives the window plus a small skew, so this may count a request a second too long.
pub async fn usage(
    js: &jetstream::Context,
    topo: &Topology,
) -> Result<Option<std::collections::BTreeMap<String, u64>>, BusError> {
    use futures::TryStreamExt as _;
    let (stream, root) = names(topo, "RATELIMIT", "rl");
    let handle = match js.get_stream_no_info(&stream).await {
        Ok(h) => h,
        Err(_) => return Ok(None),
    };
    let err = |e: String| BusError::Read { subject: format!("{root}.>"), reason: e };
    let subjects = match handle.info_with_subjects(format!("{root}.>")).await {
        Ok(s) => s,
        // The stream does not exist (yet): nothing used.
        Err(e) if e.to_string().contains("not found") => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    let counts: Vec<(String, usize)> = subjects.try_collect().await.map_err(|e| err(e.to_string()))?;
    let prefix = format!("{root}.");
    Ok(Some(
        counts
            .into_iter()
            .map(|(subject, n)| (subject.strip_prefix(&prefix).unwrap_or(&subject).to_string(), n as u64))
            .collect(),
    ))
}
