//! Partition leases in NATS KV, so replicas of a service share the partitions of the
//! work streams and never work one partition at the same time.
//!
//! A bucket `<PREFIX>_LEASES` whose entries expire (`max_age` = the lease TTL) holds
//! `member.<role>.<replica>` (a heartbeat) and `lease.<role>.<partition>` (the holder).
//! Every TTL/4 each replica renews its heartbeat and its leases with compare-and-set on
//! the revision it holds (`update`), takes free partitions up to its fair share
//! (⌈partitions / live replicas⌉) with `create` (which fails if another holds the key),
//! and gives back what is above its share. A replica that cannot renew stops working a
//! partition at TTL/2 after its last successful renewal, while the key lives until TTL:
//! the gap keeps two holders apart even when a process stalls.

use crate::{BusError, Topology};
use async_nats::jetstream::{self, kv};

use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Who asks, for which role, how long a lease lives.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// `projector` or `writer`: replicas of one role share its partitions.
    pub role: String,
    /// Unique per process (e.g. pod name plus pid).
    pub replica: String,
    pub ttl: Duration,
}

/// The partitions this replica holds right now, kept current by a background task.
/// Dropping it (or calling [`Leases::release`]) gives the partitions back.
pub struct Leases {
    rx: watch::Receiver<BTreeSet<u32>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Leases {
    pub fn watch(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.rx.clone()
    }

    /// Gives every held partition back now, so another replica takes it without waiting
    /// for expiry (graceful shutdown).
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Leases {
    /// Stops renewing without giving anything back, as a process that dies would: the
    /// partitions pass to others only when the leases expire. For fault tests.
    pub fn abandon(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A set of all partitions that never changes: for a single replica without leases.
pub fn all_partitions(topo: &Topology) -> watch::Receiver<BTreeSet<u32>> {
    let (tx, rx) = watch::channel((0..topo.partitions()).collect());
    // Keep the sender alive for the life of the program: the set never changes.
    std::mem::forget(tx);
    rx
}

fn bucket_name(topo: &Topology) -> String {
    if topo.prefix().is_empty() {
        "MLC_LEASES".to_string()
    } else {
        format!("{}_LEASES", topo.prefix().to_ascii_uppercase().replace('-', "_"))
    }
}

/// Starts taking and renewing leases; the first set is decided before this returns.
pub async fn start(js: &jetstream::Context, topo: &Topology, cfg: LeaseConfig) -> Result<Leases, BusError> {
    let err = |e: String| BusError::Topology(format!("lease bucket: {e}"));
    let bucket = bucket_name(topo);
    // The KV bucket's stream is created by hand: async-nats' `create_key_value` first
    // queries the account, whose answer on nats-server 2.9 it cannot parse.
    let config = async_nats::jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: cfg.ttl,
        storage: async_nats::jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        num_replicas: topo.stream_config(crate::StreamKind::DeadLetters).num_replicas,
        ..Default::default()
    };
    let c = &config;
    crate::topology::while_electing(move || js.create_or_update_stream(c.clone())).await.map_err(err)?;
    let store = js.get_key_value(&bucket).await.map_err(|e| err(e.to_string()))?;
    let mut state =
        State { store, cfg, partitions: topo.partitions(), held: BTreeMap::new(), last_ok: Instant::now() };
    state.round().await;
    let (tx, rx) = watch::channel(state.held_set());
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let every = state.cfg.ttl / 4;
        loop {
            tokio::select! {
                _ = &mut stop_rx => {
                    state.release_all().await;
                    let _ = tx.send(BTreeSet::new());
                    return;
                }
                _ = tokio::time::sleep(every) => {}
            }
            state.round().await;
            let now = state.held_set();
            if *tx.borrow() != now {
                tracing::info!(role = %state.cfg.role, partitions = ?now, "leases changed");
                let _ = tx.send(now);
            }
        }
    });
    Ok(Leases { rx, stop: Some(stop_tx), task: Some(task) })
}

struct State {
    store: kv::Store,
    cfg: LeaseConfig,
    partitions: u32,
    /// Partition -> revision of our lease entry.
    held: BTreeMap<u32, u64>,
    last_ok: Instant,
}

impl State {
    fn lease_key(&self, p: u32) -> String {
        format!("lease.{}.{p}", self.cfg.role)
    }

    fn held_set(&self) -> BTreeSet<u32> {
        self.held.keys().copied().collect()
    }

    async fn round(&mut self) {
        let me = self.cfg.replica.clone();
        let heartbeat = self.store.put(format!("member.{}.{me}", self.cfg.role), me.clone().into()).await;
        let mut ok = heartbeat.is_ok();
        // Renew what we hold; a failed compare-and-set means it is someone else's now.
        let held: Vec<(u32, u64)> = self.held.iter().map(|(p, r)| (*p, *r)).collect();
        for (p, rev) in held {
            match self.store.update(self.lease_key(p), me.clone().into(), rev).await {
                Ok(new_rev) => {
                    self.held.insert(p, new_rev);
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "lease lost");
                    self.held.remove(&p);
                    ok &= !e.to_string().contains("timed out");
                }
            }
        }
        if ok {
            self.last_ok = Instant::now();
        } else if self.last_ok.elapsed() > self.cfg.ttl / 2 {
            // Cannot tell whether our leases still stand: stop working them before they
            // could expire and be taken.
            if !self.held.is_empty() {
                tracing::warn!("lease renewal failing; giving up every partition");
            }
            self.held.clear();
            return;
        }
        let members = self.members().await.max(1);
        let fair = self.partitions.div_ceil(members) as usize;
        while self.held.len() > fair {
            let Some((&p, &rev)) = self.held.iter().next_back() else { break };
            let _ = self.store.delete_expect_revision(self.lease_key(p), Some(rev)).await;
            self.held.remove(&p);
        }
        if self.held.len() < fair {
            // Start at an offset of our own so replicas do not all race for partition 0.
            let offset =
                self.cfg.replica.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            for i in 0..self.partitions {
                if self.held.len() >= fair {
                    break;
                }
                let p = (offset.wrapping_add(i)) % self.partitions;
                if self.held.contains_key(&p) {
                    continue;
                }
                if let Ok(rev) = self.store.create(self.lease_key(p), me.clone().into()).await {
                    self.held.insert(p, rev);
                }
            }
        }
    }

    async fn members(&self) -> u32 {
        let prefix = format!("member.{}.", self.cfg.role);
        let Ok(mut keys) = self.store.keys().await else { return 1 };
        let mut n = 0;
        while let Some(k) = keys.next().await {
            if k.is_ok_and(|k| k.starts_with(&prefix)) {
                n += 1;
            }
        }
        n
    }

    async fn release_all(&mut self) {
        let held: Vec<(u32, u64)> = self.held.iter().map(|(p, r)| (*p, *r)).collect();
        for (p, rev) in held {
            let _ = self.store.delete_expect_revision(self.lease_key(p), Some(rev)).await;
        }
        self.held.clear();
        let _ = self.store.delete(format!("member.{}.{}", self.cfg.role, self.cfg.replica)).await;
    }
}
