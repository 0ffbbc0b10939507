//! Partition leases in NATS KV, so replicas of a service share the partitions of the
//! work streams and never work one partition at the same time.
//!
//! A bucket `<PREFIX>_LEASES` whose entries expire (`max_age` = the lease TTL) holds
//! `member.<role>.<replica>` (a heartbeat) and `lease.<role>.<partition>` (the holder).
//!
//! Two tasks per replica, so a slow one never starves the other:
//! - **renewal**, on a fixed schedule every TTL/4 (not TTL/4 after the previous round):
//!   the held leases with compare-and-set on the revision held (`update`), then the
//!   heartbeat; every call bounded by TTL/4. A renewal that failed is tried again after
//!   TTL/16. Only a compare-and-set refused for its revision is checked against the entry
//!   (read from the stream's leader, not a follower that may lag): still ours (an earlier
//!   update went through although its answer was lost) is renewed again at once with that
//!   revision. Any other error (a cluster still electing answers 10008) is a failed
//!   renewal, logged and tried again. The slack (TTL less the time since the lease's last
//!   renewal) is measured at every renewal.
//! - **balance**, every TTL/2: counts live replicas, takes free partitions up to its fair
//!   share (⌈partitions / live replicas⌉) with `create` (which fails if another holds the
//!   key), and gives back what is above its share. It calls the bucket without holding the
//!   state the renewal needs, so a slow `create` never delays a renewal.
//!
//! A replica stops working a partition whose lease it could not renew for TTL/2, while the
//! key lives until TTL: the gap keeps two holders apart even when a process stalls. One
//! failed call loses nothing: a lease is dropped for its age, never for one error.

use crate::{BusError, Topology};
use async_nats::jetstream::{self, kv};

use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};

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
    min_slack: Arc<AtomicU64>,
}

impl Leases {
    pub fn watch(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.rx.clone()
    }

    /// The least slack measured at a renewal so far (TTL less the time since the lease's
    /// previous renewal); `None` before the first renewal.
    pub fn min_slack(&self) -> Option<Duration> {
        let ms = self.min_slack.load(Ordering::Relaxed);
        (ms != u64::MAX).then(|| Duration::from_millis(ms))
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
        // Reads of a lease decide whether we still hold it: they go to the stream's leader.
        // A direct get may be answered by a follower that has not seen our last update, and
        // its older revision would make every renewal after it fail.
        allow_direct: false,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        num_replicas: topo.stream_config(crate::StreamKind::DeadLetters).num_replicas,
        ..Default::default()
    };
    let c = &config;
    crate::topology::while_electing(move || js.create_or_update_stream(c.clone())).await.map_err(err)?;
    let store = js.get_key_value(&bucket).await.map_err(|e| err(e.to_string()))?;
    let ttl = cfg.ttl;
    let state = State {
        store,
        cfg,
        partitions: topo.partitions(),
        held: BTreeMap::new(),
        min_slack: Arc::new(AtomicU64::new(u64::MAX)),
    };
    let min_slack = state.min_slack.clone();
    let (store, role) = (state.store.clone(), state.cfg.role.clone());
    let state = Arc::new(Mutex::new(state));
    state.lock().await.heartbeat().await;
    balance(&state, members(&store, &role, ttl).await).await;
    let (tx, rx) = watch::channel(state.lock().await.held_set());
    let tx = Arc::new(tx);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();

    let balance = {
        let (state, tx) = (state.clone(), tx.clone());
        async move {
            let mut every = tokio::time::interval(ttl / 2);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                // Counted without the lock: listing the bucket may be slow, renewals not.
                let members = members(&store, &role, ttl).await;
                balance(&state, members).await;
                state.lock().await.publish(&tx);
            }
        }
    };
    let task = tokio::spawn(async move {
        // Ends with this task, also when it is aborted ([`Leases::abandon`]).
        let balance = AbortOnDrop(tokio::spawn(balance));
        let every = ttl / 4;
        let mut next = tokio::time::Instant::now() + every;
        let mut stop_rx = stop_rx;
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            let mut s = state.lock().await;
            let ok = s.renew().await;
            s.publish(&tx);
            drop(s);
            // The schedule is kept from the last tick, not from the end of this round;
            // a failure is tried again soon, well inside the lease's life.
            let now = tokio::time::Instant::now();
            next = if ok { (next + every).max(now) } else { now + ttl / 16 };
        }
        drop(balance);
        let mut s = state.lock().await;
        s.release_all().await;
        let _ = tx.send(BTreeSet::new());
    });
    Ok(Leases { rx, stop: Some(stop_tx), task: Some(task), min_slack })
}

/// Live replicas of `role`: heartbeats in the bucket (1 when the bucket cannot be read).
async fn members(store: &kv::Store, role: &str, ttl: Duration) -> u32 {
    let prefix = format!("member.{role}.");
    // Distinct keys: the listing (an ordered consumer) may hand a key out twice when it
    // restarts under load, and a replica counted twice would give back half its share.
    let count = async {
        let mut keys = store.keys().await?;
        let mut seen = BTreeSet::new();
        while let Some(k) = keys.next().await {
            match k {
                Ok(k) if k.starts_with(&prefix) => {
                    seen.insert(k);
                }
                _ => {}
            }
        }
        Ok::<u32, async_nats::Error>(seen.len() as u32)
    };
    match tokio::time::timeout(ttl / 2, count).await {
        Ok(Ok(n)) => n,
        _ => 1,
    }
}

/// `call` bounded by `within`: a stalled answer is an error, not a wait.
async fn bounded<T, E: std::fmt::Display>(
    within: Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(within, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", within.as_millis())),
    }
}

fn lease_key(role: &str, p: u32) -> String {
    format!("lease.{role}.{p}")
}

/// One compare-and-set of a lease entry, bounded by `deadline`. A refusal for the revision
/// reads the entry: still ours means an update of ours went through unanswered.
async fn renew_once(
    store: &kv::Store,
    key: &str,
    me: &str,
    rev: u64,
    deadline: tokio::time::Instant,
) -> Renewal {
    let late = |what: &str| format!("no answer to the {what} in time");
    match tokio::time::timeout_at(deadline, store.update(key, me.to_string().into(), rev)).await {
        Ok(Ok(new_rev)) => Renewal::Renewed(new_rev),
        Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            match tokio::time::timeout_at(deadline, store.entry(key)).await {
                Ok(Ok(Some(entry)))
                    if entry.operation == kv::Operation::Put && entry.value == me.as_bytes() =>
                {
                    Renewal::StillOurs(entry.revision)
                }
                Ok(Ok(_)) => Renewal::Lost(e.to_string()),
                Ok(Err(read)) => Renewal::Failed(format!("{e}; reading the entry: {read}")),
                Err(_) => Renewal::Failed(format!("{e}; {}", late("read of the entry"))),
            }
        }
        Ok(Err(e)) => Renewal::Failed(e.to_string()),
        Err(_) => Renewal::Failed(late("update")),
    }
}

/// Takes free partitions up to the fair share among `members` live replicas and gives back
/// what is above it. The state is locked only to read and record: the bucket calls (each
/// bounded by TTL/4, one per partition tried) run without it, so renewals go on meanwhile.
async fn balance(state: &Mutex<State>, members: u32) {
    let (store, me, role, ttl, partitions, held_now) = {
        let s = state.lock().await;
        (s.store.clone(), s.cfg.replica.clone(), s.cfg.role.clone(), s.cfg.ttl, s.partitions, s.held_set())
    };
    let key_of = |p: u32| lease_key(&role, p);
    let fair = partitions.div_ceil(members.max(1)) as usize;
    // Above the share: the highest partitions go back, each dropped from the held set (no
    // longer worked) before its entry is deleted.
    for _ in fair..held_now.len() {
        let gone = {
            let mut s = state.lock().await;
            let Some(&p) = s.held.keys().next_back() else { break };
            s.held.remove(&p).map(|h| (p, h.revision))
        };
        if let Some((p, rev)) = gone {
            let _ = bounded(ttl / 4, store.delete_expect_revision(key_of(p), Some(rev))).await;
        }
    }
    // Start at an offset of our own so replicas do not all race for partition 0.
    let offset = me.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let mut have = held_now.len();
    for i in 0..partitions {
        if have >= fair {
            break;
        }
        let p = offset.wrapping_add(i) % partitions;
        if held_now.contains(&p) {
            continue;
        }
        let taken = Instant::now();
        if let Ok(revision) = bounded(ttl / 4, store.create(key_of(p), me.clone().into())).await {
            state.lock().await.held.insert(p, Held { revision, renewed: taken });
            have += 1;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one renewal came to.
enum Renewal {
    Renewed(u64),
    StillOurs(u64),
    Lost(String),
    Failed(String),
}

/// A lease this replica holds.
struct Held {
    /// The revision of our entry, for the next compare-and-set.
    revision: u64,
    /// When the entry was last written by us (taken or renewed).
    renewed: Instant,
}

struct State {
    store: kv::Store,
    cfg: LeaseConfig,
    partitions: u32,
    held: BTreeMap<u32, Held>,
    /// The least slack measured at a renewal so far, in milliseconds.
    min_slack: Arc<AtomicU64>,
}

impl State {
    fn lease_key(&self, p: u32) -> String {
        lease_key(&self.cfg.role, p)
    }

    fn held_set(&self) -> BTreeSet<u32> {
        self.held.keys().copied().collect()
    }

    fn publish(&self, tx: &watch::Sender<BTreeSet<u32>>) {
        let now = self.held_set();
        if *tx.borrow() != now {
            tracing::info!(role = %self.cfg.role, partitions = ?now, "leases changed");
            let _ = tx.send(now);
        }
    }

    /// One call to the bucket, bounded so a stalled answer cannot hold up the schedule.
    async fn bounded<T, E: std::fmt::Display>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        bounded(self.cfg.ttl / 4, call).await
    }

    async fn heartbeat(&self) {
        let me = self.cfg.replica.clone();
        let key = format!("member.{}.{me}", self.cfg.role);
        if let Err(e) = self.bounded(self.store.put(key, me.into())).await {
            tracing::debug!(error = %e, "heartbeat failed");
        }
    }

    /// Renews every held lease (at once), then the heartbeat; true when every lease was
    /// renewed. A renewal waits for its answer up to the lease's give-up point (TTL/2 after
    /// its last renewal) rather than a fixed timeout: on a starved machine the answer is
    /// late, not lost, and an update given up while still in flight would leave us holding
    /// a stale revision.
    async fn renew(&mut self) -> bool {
        let me = self.cfg.replica.clone();
        let give_up = self.cfg.ttl / 2;
        let attempts = self.held.iter().map(|(&p, h)| {
            let key = self.lease_key(p);
            let (store, me, rev) = (self.store.clone(), me.clone(), h.revision);
            let left = give_up.saturating_sub(h.renewed.elapsed()).max(Duration::from_millis(50));
            async move {
                let attempt = Instant::now();
                let deadline = tokio::time::Instant::now() + left;
                let mut result = renew_once(&store, &key, &me, rev, deadline).await;
                // One retry, with the revision of an entry that is still ours.
                if let Renewal::StillOurs(current) = result {
                    result = renew_once(&store, &key, &me, current, deadline).await;
                }
                (p, attempt, result)
            }
        });
        let results = futures::future::join_all(attempts).await;
        let mut all_ok = true;
        for (p, attempt, result) in results {
            let Some(h) = self.held.get_mut(&p) else { continue };
            match result {
                Renewal::Renewed(new_rev) => {
                    let slack = self.cfg.ttl.saturating_sub(attempt.duration_since(h.renewed));
                    self.min_slack.fetch_min(slack.as_millis() as u64, Ordering::Relaxed);
                    if slack < self.cfg.ttl / 2 {
                        tracing::warn!(
                            partition = p,
                            slack_ms = slack.as_millis() as u64,
                            "lease renewed late"
                        );
                    }
                    h.revision = new_rev;
                    h.renewed = attempt;
                }
                // Still ours after the retry (the entry changed again between the read and
                // the update, which only our own late updates do): take its revision; the
                // next round renews it.
                Renewal::StillOurs(rev) => {
                    all_ok = false;
                    tracing::info!(
                        partition = p,
                        revision = rev,
                        "lease entry still ours but not renewed; trying again"
                    );
                    h.revision = rev;
                }
                Renewal::Lost(why) => {
                    all_ok = false;
                    tracing::warn!(partition = p, error = %why, "lease lost: the entry is someone else's or gone");
                    self.held.remove(&p);
                }
                Renewal::Failed(why) => {
                    all_ok = false;
                    tracing::info!(partition = p, error = %why, "lease renewal failed; trying again");
                }
            }
        }
        // Cannot tell whether these still stand: stop working them before they could
        // expire and be taken.
        let stale: Vec<u32> =
            self.held.iter().filter(|(_, h)| h.renewed.elapsed() >= give_up).map(|(p, _)| *p).collect();
        for p in stale {
            tracing::warn!(partition = p, "lease not renewed for TTL/2; giving the partition up");
            self.held.remove(&p);
        }
        self.heartbeat().await;
        all_ok
    }

    async fn release_all(&mut self) {
        let held: Vec<(u32, u64)> = self.held.iter().map(|(p, h)| (*p, h.revision)).collect();
        for (p, rev) in held {
            let _ = self.bounded(self.store.delete_expect_revision(self.lease_key(p), Some(rev))).await;
        }
        self.held.clear();
        let key = format!("member.{}.{}", self.cfg.role, self.cfg.replica);
        let _ = self.bounded(self.store.delete(key)).await;
    }
}
