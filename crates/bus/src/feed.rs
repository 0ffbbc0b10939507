//! Consuming the partitions a replica holds as one feed of batches.

use crate::delivery::{self, Keepalive};
use crate::{consume, ConsumerSpec, Topology};
use async_nats::jetstream::{self, AckKind, Message};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Batches from the durable consumers of every partition in `held`, following its
/// changes: a partition taken starts a reader, a partition lost stops its reader.
/// A batch never mixes partitions. Every message handed out gets progress until it is
/// answered through [`delivery::answer`] (or the feed is dropped).
pub struct Feed {
    rx: mpsc::Receiver<(u32, Vec<Message>)>,
    held: watch::Receiver<BTreeSet<u32>>,
    keepalive: Arc<Keepalive>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    pub fn start(
        js: jetstream::Context,
        topology: Topology,
        spec: ConsumerSpec,
        held: watch::Receiver<BTreeSet<u32>>,
        batch: usize,
        linger: consume::Linger,
    ) -> Feed {
        // Small, as a queued batch is held (and kept alive) but not worked; but one slot per
        // partition and one more: a reader takes its slot before its pull and keeps it while
        // its partition is idle, so with fewer slots than partitions the idle readers would
        // hold them all and a busy partition would never be read (partitions = 4 stalled).
        let (tx, rx) = mpsc::channel(topology.partitions().max(1) as usize + 1);
        let keepalive = Arc::new(Keepalive::start(topology.consumer_config(&spec, 0).ack_wait));
        let task =
            tokio::spawn(supervise(js, topology, spec, held.clone(), tx, batch, linger, keepalive.clone()));
        Feed { rx, held, keepalive, task }
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
                let _ = delivery::answer(m, AckKind::Nak(None)).await;
            }
        }
    }

    /// The progress of the messages handed out: hold it past the feed's end to finish
    /// them without their being redelivered meanwhile.
    pub fn keepalive(&self) -> Arc<Keepalive> {
        self.keepalive.clone()
    }

    /// Messages handed out (or queued) and not answered yet.
    pub fn unanswered(&self) -> usize {
        self.keepalive.held()
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

#[allow(clippy::too_many_arguments)]
async fn supervise(
    js: jetstream::Context,
    topology: Topology,
    spec: ConsumerSpec,
    mut held: watch::Receiver<BTreeSet<u32>>,
    tx: mpsc::Sender<(u32, Vec<Message>)>,
    batch: usize,
    linger: consume::Linger,
    keepalive: Arc<Keepalive>,
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
                    keepalive.clone(),
                )))
            });
        }
        tokio::select! {
            changed = held.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn read(
    js: jetstream::Context,
    topology: Topology,
    spec: ConsumerSpec,
    partition: u32,
    tx: mpsc::Sender<(u32, Vec<Message>)>,
    batch: usize,
    linger: consume::Linger,
    keepalive: Arc<Keepalive>,
) {
    let consumer = loop {
        match consume::open_partition(&js, &topology, &spec, partition).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot open consumer; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        // Room first, then the pull: nothing is taken from the server that would wait here.
        let Ok(permit) = tx.reserve().await else { return };
        let subjects = consume::Subjects { topology: &topology, kind: spec.stream };
        let b = consume::next_batch(&consumer, batch, linger, subjects).await;
        keepalive.hold(&b);
        permit.send((partition, b));
    }
}
