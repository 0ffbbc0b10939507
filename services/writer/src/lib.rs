//! The writer: Visma commands from `VISMA_COMMANDS` applied to Visma.net ERP, idempotently,
//! with every decision recorded in `SYNC_OUTCOMES` and the audit log.
//!
//! Per command (subject `visma.commands.<company>.<employee>`), in this order:
//!
//! 1. **Superseded**: a newer command for the same employee is already stored, so this one
//!    is a replay or an overtaken retry. Each command carries the employee's *whole* target
//!    state, so only the newest matters: outcome SUPERSEDED, no Visma call.
//! 2. **Parked**: the projector could not map the employee. Outcome PARKED plus a dead
//!    letter with the reason; replaying `EMPLOYEE_STATE` after fixing the mapping retries it.
//! 3. **Company**: unknown is a dead letter; paused waits (NAK 30 s); a company whose
//!    first-connect review is not applied gets no *new* Visma employees (NAK 10 s) until it is.
//! 4. **Apply**: the link's last applied hash equal to the command's means nothing to do.
//!    Otherwise read the linked employee from Visma and write only the fields that differ
//!    (PUT with `If-Match`); an unlinked one is created first (a taken number means "read,
//!    then update"), so a restarted writer never repeats a failing GET.
//!    The link is stored with the new hash and the command's snapshot seq *before* the
//!    ack, and "already applied" needs both to match, so a crash anywhere between the
//!    Visma call and the ack is harmless: the redelivery either stops at the link or reads
//!    Visma, finds no difference and records UNCHANGED. No path creates a second employee,
//!    and nothing unchanged is rewritten. Each stage's time is in `mlc_writer_step_seconds`.
//! 5. **Errors**: retryable ones (429, 5xx, timeouts, connections) NAK with `Retry-After` or
//!    an exponential delay and dead-letter after 12 failed attempts; permanent ones
//!    (validation, 404, auth) dead-letter at once with Visma's message. A failing request is
//!    never repeated immediately: Visma throttles the same failing request after two tries
//!    in five minutes. A store that does not answer or refuses a write is an outage, not
//!    the command's failure: the command waits 2 s and comes back, spending no attempt;
//!    one created in Visma whose link could not be stored is read next time, not created
//!    again.
//! 6. **Record**: audit row, dead letter (if any), outcome on `SYNC_OUTCOMES`, then the ack.
//!
//! Work is serial per employee (every command of one employee goes to the same worker task)
//! and parallel across employees and companies. Each Visma tenant has its own client, its
//! own pacing (calls wait for the rate window to reset when under 5 % of the limit remains)
//! and its own memory of employees known to be absent or present.

//!
//! # Layout
//! - `settings`: [`WriterSettings`], [`RetryTuning`], the crash hook.
//! - `decide`: steps 1 to 4, as a decision; `apply`: the Visma side of step 4 and the
//!   tenants' pacing; `record`: step 6; `fields`: Visma DTOs against the target fields.
//! - Here: the run loop (feed, worker pool, one worker per employee) and [`Writer::handle`],
//!   which reads as decide, then wait/retry (the error budget counts failures only), then
//!   record.

mod apply;
mod decide;
mod fields;
mod metrics;
mod record;
mod settings;

pub use fields::fields_from_dto;
pub use metrics::{router, serve as serve_metrics, Step, WriterMetrics};
pub use settings::{CrashPoint, RetryTuning, WriterSettings};

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use apply::Tenant;
use async_nats::jetstream::{self, Message};
use decide::{Decision, Report};
use mlc_bus::dead_letter::DeadLetters;
use mlc_bus::delivery::{nak, Disposition, Retried, Settle, Settled};
use mlc_bus::partitions::Partitions;
use mlc_bus::{BusError, ConsumerSpec, Publisher, StreamKind, Topology};
use mlc_proto::v1::{Outcome, VismaCommand};
use mlc_store::Store;
use settings::CRASH_REDELIVERY;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Why the writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the VISMA_COMMANDS consumer stream ended")]
    ConsumerClosed,
    #[error("a writer worker stopped unexpectedly: {0}")]
    WorkerStopped(String),
    #[error("simulated crash (test hook)")]
    SimulatedCrash,
}

/// Worker queue length: small, because a queued message's ack-wait clock is already running.
const QUEUE_PER_WORKER: usize = 8;

/// Consumes `ConsumerSpec::WRITER` until `shutdown` resolves (then finishes the commands in
/// hand, hands queued ones back to JetStream and returns `Ok`), or until something fatal
/// happens. Creates the topology if it is missing.
pub async fn run(
    client: async_nats::Client,
    store: Arc<Store>,
    settings: WriterSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WriterError> {
    let js = jetstream::new(client.clone());
    mlc_bus::ensure_topology(&js, &settings.topology).await?;
    let workers = settings.workers.max(1);
    let metrics = settings.metrics.clone();
    let partitions = Partitions::start(&js, &settings.topology, settings.leases.clone()).await?;
    let held = partitions.held();
    let mut messages = mlc_bus::feed::Feed::start(
        js.clone(),
        settings.topology.clone(),
        ConsumerSpec::WRITER,
        held,
        workers * QUEUE_PER_WORKER,
        mlc_bus::consume::Linger::fixed(Duration::ZERO),
    );

    let lag = tokio::spawn(watch_lag(js.clone(), settings.topology.clone(), metrics.clone()));
    let publisher = Publisher::new(client.clone(), settings.publish_timeout);
    let writer = Arc::new(Writer {
        settle: Settle::new(
            "writer",
            DeadLetters::new(publisher.clone(), settings.topology.clone()),
            settings.retry.backoff(),
            settings.retry.max_error_attempts,
        ),
        publisher,
        commands_stream: settings.topology.stream(StreamKind::VismaCommands),
        js,
        store,
        topology: settings.topology,
        tenants: settings.tenants.into_iter().map(|(name, client)| (name, Tenant::new(client))).collect(),
        metrics: metrics.clone(),
        retry: settings.retry,
        crash_point: settings.crash_point,
    });

    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut pool = JoinSet::new();
    let mut queues = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = mpsc::channel(QUEUE_PER_WORKER);
        queues.push(tx);
        pool.spawn(worker(writer.clone(), rx, stopping_rx.clone()));
    }
    // Ready while NATS is connected, VISMA_COMMANDS exists and the store answers and takes
    // writes (the consumer is open by now).
    let readiness = tokio::spawn({
        let store = writer.store.clone();
        mlc_bus::watch_ready(
            client,
            Some(writer.commands_stream.clone()),
            move || {
                let store = store.clone();
                async move { store.answers().await }
            },
            metrics.ready_flag(),
        )
    });

    tracing::info!(workers, "writer consuming VISMA_COMMANDS");
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            Some(ended) = pool.join_next() => break Err(worker_ended(ended)),
            next = messages.next_batch() => {
                let Some((_, batch)) = next else { break Err(WriterError::ConsumerClosed) };
                let mut lost_worker = false;
                for msg in batch {
                    let shard = shard_of(&writer.topology, msg.subject.as_str(), workers);
                    if let Err(mpsc::error::SendError(msg)) = queues[shard].send(msg).await {
                        hand_back(&msg).await;
                        lost_worker = true;
                    }
                }
                if lost_worker {
                    break match pool.join_next().await {
                        Some(ended) => Err(worker_ended(ended)),
                        None => Err(WriterError::WorkerStopped("no workers left".into())),
                    };
                }
            }
        }
    };

    // Stop pulling first: a message handed back while our pull requests are still open
    // would be delivered straight back into them and then wait out its ack wait. Then
    // finish what is in hand, hand the queues back, and wait for the workers. What is in
    // hand keeps its progress until then, so it is not redelivered while it is finished.
    let keepalive = messages.keepalive();
    drop(messages);
    metrics.set_ready(false);
    readiness.abort();
    lag.abort();
    let _ = stopping_tx.send(true);
    drop(queues);
    let mut result = result;
    while let Some(ended) = pool.join_next().await {
        if result.is_ok() {
            if let Err(e) = flatten(ended) {
                result = Err(e);
            }
        }
    }
    drop(keepalive);
    partitions.release().await;
    tracing::info!(ok = result.is_ok(), "writer stopped");
    result
}

fn flatten(ended: Result<Result<(), WriterError>, tokio::task::JoinError>) -> Result<(), WriterError> {
    match ended {
        Ok(r) => r,
        Err(e) => Err(WriterError::WorkerStopped(e.to_string())),
    }
}

/// A worker that ends while the writer runs is always an error, even if it returned `Ok`.
fn worker_ended(ended: Result<Result<(), WriterError>, tokio::task::JoinError>) -> WriterError {
    match flatten(ended) {
        Err(e) => e,
        Ok(()) => WriterError::WorkerStopped("worker returned".into()),
    }
}

/// Every command of one employee goes to the same worker, which keeps them in order.
fn shard_of(topology: &Topology, subject: &str, workers: usize) -> usize {
    let mut h = DefaultHasher::new();
    match topology.split_subject(StreamKind::VismaCommands, subject) {
        Some(key) => key.hash(&mut h),
        None => subject.hash(&mut h),
    }
    (h.finish() % workers as u64) as usize
}

/// Keeps `consumer_pending` (the writer consumer's lag) current.
async fn watch_lag(js: jetstream::Context, topology: Topology, metrics: Arc<WriterMetrics>) {
    loop {
        for (durable, pending) in
            mlc_bus::consume::pending(&js, &topology, &ConsumerSpec::WRITER).await.unwrap_or_default()
        {
            metrics.set_consumer_pending(&durable, pending);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Returns a message for immediate redelivery (to this or another writer).
async fn hand_back(msg: &Message) {
    nak(msg, Duration::ZERO).await;
}

async fn worker(
    writer: Arc<Writer>,
    mut queue: mpsc::Receiver<Message>,
    stopping: watch::Receiver<bool>,
) -> Result<(), WriterError> {
    while let Some(msg) = queue.recv().await {
        if *stopping.borrow() {
            hand_back(&msg).await;
            continue;
        }
        writer.handle(msg).await?;
    }
    Ok(())
}

/// Shared state of the workers.
struct Writer {
    js: jetstream::Context,
    publisher: Publisher,
    /// Acts on waits and retries; its error budget counts failures, never the waits of a
    /// paused company or a first connect (deliveries would count both).
    settle: Settle,
    store: Arc<Store>,
    topology: Topology,
    commands_stream: String,
    tenants: HashMap<String, Tenant>,
    metrics: Arc<WriterMetrics>,
    retry: RetryTuning,
    crash_point: Option<CrashPoint>,
}

/// The delivery being handled.
pub(crate) struct Delivery<'a> {
    pub(crate) msg: &'a Message,
    pub(crate) subject: &'a str,
    pub(crate) seq: u64,
    pub(crate) delivered: i64,
}

impl Writer {
    /// `fut`, its time counted under `step` in `mlc_writer_step_seconds`.
    async fn timed<T>(&self, step: Step, fut: impl Future<Output = T>) -> T {
        let began = std::time::Instant::now();
        let out = fut.await;
        self.metrics.step(step, began.elapsed());
        out
    }

    async fn handle(&self, msg: Message) -> Result<(), WriterError> {
        let (seq, delivered) = match msg.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(e) => {
                tracing::warn!(error = %e, "not a JetStream delivery; ignored");
                return Ok(());
            }
        };
        let subject = msg.subject.as_str().to_string();
        let d = Delivery { msg: &msg, subject: &subject, seq, delivered };
        let command: VismaCommand = match mlc_bus::decode(&subject, &msg.payload) {
            Ok(c) => c,
            Err(e) => {
                self.undecodable(&d, &e.to_string()).await;
                return Ok(());
            }
        };

        let span = tracing::info_span!(
            "visma.command",
            otel.kind = "consumer",
            command_id = %command.command_id,
            company = %command.company_uuid,
            employee = %command.employee_uuid,
            stream_seq = seq,
            delivered,
            outcome = tracing::field::Empty,
        );
        mlc_bus::extract_trace_context(msg.headers.as_ref(), &span);
        async {
            let mut calls = Vec::new();
            let decision = self.decide(&d, &command, &mut calls).await?;
            let report = match decision {
                Decision::Done(report) => report,
                Decision::Later(Disposition::Wait { delay, reason }) => {
                    self.nak(&d, delay, reason).await;
                    return Ok(());
                }
                Decision::Later(Disposition::Retry { after, reason, cause }) => {
                    match self.settle.retry(&msg, after, reason, &cause).await {
                        Retried::Later(settled) => {
                            if let Settled::Nacked { reason, .. } = settled {
                                self.metrics.nak(reason);
                            }
                            return Ok(());
                        }
                        Retried::Exhausted { attempts } => {
                            let mut r = Report::failed(
                                &command.fields.as_ref().map(|f| f.employee_cd.clone()).unwrap_or_default(),
                                "retries_exhausted",
                                format!("gave up after {attempts} failed attempts: {cause}"),
                            );
                            r.detail = format!("gave up after {attempts} failed attempts");
                            r
                        }
                    }
                }
                // `decide` says these as a `Report`; recorded the same way if said here.
                Decision::Later(Disposition::Dead { cause, reason }) => Report::failed(
                    &command.fields.as_ref().map(|f| f.employee_cd.clone()).unwrap_or_default(),
                    cause,
                    reason,
                ),
                Decision::Later(Disposition::Ack) => Report::new(Outcome::Unchanged, "", "nothing to do"),
            };
            match self.record(&d, &command, &report, &calls).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record the outcome; the command will be retried");
                    self.nak(&d, self.retry.base_backoff, "record").await;
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_per_employee() {
        let t = Topology::new("", 1).expect("topology");
        let a = shard_of(&t, "visma.commands.c1.e1", 8);
        assert_eq!(a, shard_of(&t, "visma.commands.c1.e1", 8));
        assert!(a < 8);
    }
}
