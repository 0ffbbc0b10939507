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
//!    Otherwise read the employee from Visma, write only the fields that differ (PUT with
//!    `If-Match`), or create it when absent (a taken number means "read, then update").
//!    The link is stored with the new hash *before* the ack, so a crash anywhere between the
//!    Visma call and the ack is harmless: the redelivery reads Visma, finds no difference and
//!    records UNCHANGED. No path creates a second employee, and nothing unchanged is rewritten.
//! 5. **Errors**: retryable ones (429, 5xx, timeouts, connections) NAK with `Retry-After` or
//!    an exponential delay and dead-letter after 12 failed attempts; permanent ones
//!    (validation, 404, auth) dead-letter at once with Visma's message. A failing request is
//!    never repeated immediately: Visma throttles the same failing request after two tries
//!    in five minutes.
//! 6. **Record**: audit row, dead letter (if any), outcome on `SYNC_OUTCOMES`, then the ack.
//!
//! Work is serial per employee (every command of one employee goes to the same worker task)
//! and parallel across employees and companies. Each Visma tenant has its own client, its
//! own pacing (calls wait for the rate window to reset when under 5 % of the limit remains)
//! and its own memory of employees known to be absent.

mod metrics;

pub use metrics::{router, serve as serve_metrics, WriterMetrics};

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, Message};
use mlc_bus::dead_letter::{DeadLetters, Letter};
use mlc_bus::delivery::{Attempts, Backoff, Disposition};
use mlc_bus::partitions::Partitions;
use mlc_bus::{BusError, ConsumerSpec, Publisher, StreamKind, Topology};
use mlc_domain::{diff_fields, FieldChange};
use mlc_proto::v1::{CommandKind, Outcome, SyncOutcome, VismaCommand, VismaEmployeeFields, VismaStatus};
use mlc_store::{AuditEntry, EmployeeLink, Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;
use visma::dto::{v, AddressWrite, EmployeeContactWrite, Value};
use visma::{
    EmployeeCreateDto, EmployeeDto, EmployeeStatus, EmployeeUpdateDto, EmployeeWriteStatus, VismaClient,
    VismaError,
};

// ------------------------------------------------------------------------------ settings

/// How the writer runs. [`WriterSettings::new`] has production defaults; tests shorten the
/// delays.
#[derive(Debug)]
pub struct WriterSettings {
    pub topology: Topology,
    /// Worker tasks; each employee is always handled by the same one.
    pub workers: usize,
    /// One client per Visma tenant, by the tenant's configuration name (`Company.visma_tenant`).
    pub tenants: HashMap<String, Arc<VismaClient>>,
    /// Shared with [`router`], so the binary can serve `/metrics` and `/readyz`.
    pub metrics: Arc<WriterMetrics>,
    /// How long to wait for JetStream to acknowledge an outcome or dead letter.
    pub publish_timeout: Duration,
    pub retry: RetryTuning,
    /// Test hook: stop as if the process died at this point.
    pub crash_point: Option<CrashPoint>,
    /// Share the partitions with other replicas through leases; `None` works them all.
    pub leases: Option<mlc_bus::lease::LeaseConfig>,
}

/// Delays and bounds of the retry and wait paths.
#[derive(Debug, Clone)]
pub struct RetryTuning {
    /// Failed attempts (retryable errors) after which a command is dead-lettered as FAILED.
    pub max_error_attempts: u32,
    /// First back-off after a retryable error without `Retry-After`; doubles per attempt.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured as given; longer ones are cut to this.
    pub max_retry_after: Duration,
    /// NAK delay while the company is paused.
    pub paused_delay: Duration,
    /// NAK delay while the company's first-connect review is not applied.
    pub first_connect_delay: Duration,
    /// PUTs per delivery when `If-Match` keeps failing (412); then the delivery is retried.
    pub max_puts: u32,
    /// Pacing waits up to this long in the worker; longer waits hand the command back.
    pub max_pacing_sleep: Duration,
    /// Pace when fewer than this share of the tenant's rate limit remains.
    pub pacing_floor: f64,
    /// How long a 404 on `GET /employee/{cd}` is remembered, so the same failing GET is not
    /// repeated (Visma punishes a third identical failing request within 5 minutes).
    pub absent_ttl: Duration,
}

impl Default for RetryTuning {
    fn default() -> Self {
        Self {
            max_error_attempts: 12,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
            paused_delay: Duration::from_secs(30),
            first_connect_delay: Duration::from_secs(10),
            max_puts: 2,
            max_pacing_sleep: Duration::from_secs(5),
            pacing_floor: 0.05,
            absent_ttl: Duration::from_secs(300),
        }
    }
}

impl RetryTuning {
    /// The back-off after retryable errors: `base_backoff` doubling up to `max_backoff`,
    /// `Retry-After` up to `max_retry_after`.
    fn backoff(&self) -> Backoff {
        Backoff { base: self.base_backoff, max: self.max_backoff, max_retry_after: self.max_retry_after }
    }
}

/// How soon a command interrupted by [`CrashPoint`] is redelivered.
const CRASH_REDELIVERY: Duration = Duration::from_secs(1);

/// Where a test may make the writer stop as if its process had died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after a successful Visma create or update, before the link is stored and before
    /// the ack. The message is NAKed with a 1 s delay, standing in for the ack-wait expiry a
    /// real crash would wait for; then [`run`] returns [`WriterError::SimulatedCrash`].
    AfterVismaWrite,
}

impl WriterSettings {
    /// Production defaults for `tenants`.
    pub fn new(topology: Topology, tenants: HashMap<String, Arc<VismaClient>>) -> Self {
        Self {
            topology,
            workers: 8,
            tenants,
            metrics: Arc::new(WriterMetrics::new()),
            publish_timeout: Duration::from_secs(5),
            retry: RetryTuning::default(),
            crash_point: None,
            leases: None,
        }
    }

    /// Settings from the connector's configuration (pure): `writer.workers`, the stream
    /// prefix, replicas, partitions and publish timeout of `nats`, and `tenants`, the Visma
    /// clients built from `visma.tenants` (`mlc_runtime::clients::visma_clients`).
    pub fn from_config(
        cfg: &mlc_config::Config,
        tenants: HashMap<String, Arc<VismaClient>>,
    ) -> Result<Self, WriterError> {
        let topology = Topology::new(&cfg.nats.stream_prefix, cfg.nats.replicas)?
            .with_partitions(cfg.nats.partitions)?;
        let mut settings = Self::new(topology, tenants);
        settings.workers = cfg.writer.workers.max(1);
        if cfg.nats.partitions > 1 {
            settings.leases = Some(mlc_bus::lease::LeaseConfig {
                role: "writer".into(),
                replica: cfg.replica_id(),
                ttl: Duration::from_millis(cfg.nats.lease_ttl_ms),
            });
        }
        settings.publish_timeout = Duration::from_millis(cfg.nats.publish_timeout_ms.max(1));
        Ok(settings)
    }
}

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

// ------------------------------------------------------------------------------ run loop

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
        Duration::ZERO,
    );

    let lag = tokio::spawn(watch_lag(js.clone(), settings.topology.clone(), metrics.clone()));
    let publisher = Publisher::new(client.clone(), settings.publish_timeout);
    let writer = Arc::new(Writer {
        dead_letters: DeadLetters::new(publisher.clone(), settings.topology.clone()),
        backoff: settings.retry.backoff(),
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
    // Ready while NATS is connected, VISMA_COMMANDS exists and the store answers (the
    // consumer is open by now).
    let readiness = tokio::spawn({
        let store = writer.store.clone();
        mlc_bus::watch_ready(
            client,
            Some(writer.commands_stream.clone()),
            move || {
                let store = store.clone();
                async move { store.company("readiness-probe").await.is_ok() }
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
    // finish what is in hand, hand the queues back, and wait for the workers.
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
    if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(error = %e, "cannot NAK; the message comes back after its ack wait");
    }
}

async fn worker(
    writer: Arc<Writer>,
    mut queue: mpsc::Receiver<Message>,
    stopping: watch::Receiver<bool>,
) -> Result<(), WriterError> {
    // Failed attempts per stream sequence. Deliveries also count waits (paused company,
    // first connect), so the error budget is kept here. A restart resets it, which only
    // grants a stubborn command another round of capped back-offs.
    let failures = Attempts::new();
    while let Some(msg) = queue.recv().await {
        if *stopping.borrow() {
            hand_back(&msg).await;
            continue;
        }
        writer.handle(msg, &failures).await?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------ one command

/// Shared state of the workers.
struct Writer {
    js: jetstream::Context,
    publisher: Publisher,
    dead_letters: DeadLetters,
    backoff: Backoff,
    store: Arc<Store>,
    topology: Topology,
    commands_stream: String,
    tenants: HashMap<String, Tenant>,
    metrics: Arc<WriterMetrics>,
    retry: RetryTuning,
    crash_point: Option<CrashPoint>,
}

/// One Visma tenant: its client and what the writer remembers about it.
struct Tenant {
    client: Arc<VismaClient>,
    /// Employee numbers whose GET answered 404, and when. Within the TTL the writer goes
    /// straight to the create (itself idempotent) instead of repeating a failing GET.
    absent: Mutex<HashMap<String, Instant>>,
}

impl Tenant {
    fn new(client: Arc<VismaClient>) -> Self {
        Self { client, absent: Mutex::new(HashMap::new()) }
    }

    fn known_absent(&self, cd: &str, ttl: Duration) -> bool {
        let mut absent = self.absent.lock().unwrap_or_else(|e| e.into_inner());
        absent.retain(|_, at| at.elapsed() < ttl);
        absent.contains_key(cd)
    }

    fn set_absent(&self, cd: &str, is_absent: bool) {
        let mut absent = self.absent.lock().unwrap_or_else(|e| e.into_inner());
        if is_absent {
            absent.insert(cd.to_string(), Instant::now());
        } else {
            absent.remove(cd);
        }
    }

    /// Path prefix for call summaries, as the client sends it.
    fn api_prefix(&self) -> &'static str {
        if self.client.config().legacy.is_some() {
            "/API/controller/api/v1"
        } else {
            "/v1"
        }
    }
}

/// What to do with a delivery.
enum Decision {
    /// Decided: record it, then ack.
    Done(Report),
    /// Not now: NAK with a delay.
    /// Not now: a wait, or a failure that spends the error budget (never `Ack` or
    /// `Dead`: a decided command is recorded first).
    Later(Disposition),
}

/// A decided command.
struct Report {
    outcome: Outcome,
    employee_cd: String,
    /// Operator-facing, no personal data.
    detail: String,
    /// Names of the fields written, never their values.
    changed: Vec<&'static str>,
    dead_letter: Option<DeadLetterCause>,
}

struct DeadLetterCause {
    /// Label of `mlc_writer_dead_letters`.
    cause: &'static str,
    /// Visma's message or the park reason.
    reason: String,
}

impl Report {
    fn new(outcome: Outcome, employee_cd: &str, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            employee_cd: employee_cd.to_string(),
            detail: detail.into(),
            changed: Vec::new(),
            dead_letter: None,
        }
    }

    fn failed(employee_cd: &str, cause: &'static str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            dead_letter: Some(DeadLetterCause { cause, reason: reason.clone() }),
            ..Self::new(Outcome::Failed, employee_cd, reason)
        }
    }
}

/// The delivery being handled.
struct Delivery<'a> {
    msg: &'a Message,
    subject: &'a str,
    seq: u64,
    delivered: i64,
}

impl Writer {
    async fn handle(&self, msg: Message, failures: &Attempts) -> Result<(), WriterError> {
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
                    let attempts = failures.fail(seq);
                    if attempts < self.retry.max_error_attempts {
                        let delay = self.backoff.next(attempts, after);
                        tracing::warn!(
                            attempt = attempts,
                            delay_ms = delay.as_millis() as u64,
                            %cause,
                            "command will be retried"
                        );
                        self.nak(&d, delay, reason).await;
                        return Ok(());
                    }
                    let mut r = Report::failed(
                        &command.fields.as_ref().map(|f| f.employee_cd.clone()).unwrap_or_default(),
                        "retries_exhausted",
                        format!("gave up after {attempts} failed attempts: {cause}"),
                    );
                    r.detail = format!("gave up after {attempts} failed attempts");
                    r
                }
                // `decide` says these as a `Report`; recorded the same way if said here.
                Decision::Later(Disposition::Dead { cause, reason }) => Report::failed(
                    &command.fields.as_ref().map(|f| f.employee_cd.clone()).unwrap_or_default(),
                    cause,
                    reason,
                ),
                Decision::Later(Disposition::Ack) => Report::new(Outcome::Unchanged, "", "nothing to do"),
            };
            let attempts = failures.count(seq);
            match self.record(&d, &command, &report, &calls, attempts).await {
                Ok(()) => {
                    failures.forget(seq);
                }
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

    /// Steps 1 to 4 of the module docs. Visma calls are summarised into `calls`.
    async fn decide(
        &self,
        d: &Delivery<'_>,
        command: &VismaCommand,
        calls: &mut Vec<String>,
    ) -> Result<Decision, WriterError> {
        let retry_store = |e: StoreError| {
            Decision::Later(Disposition::Retry { after: None, reason: "store", cause: format!("store: {e}") })
        };

        // 1. Superseded by a newer command for the same employee.
        match mlc_bus::last_on_subject::<VismaCommand>(&self.js, &self.commands_stream, d.subject).await {
            Ok(Some(last)) if last.sequence > d.seq => {
                return Ok(Decision::Done(Report::new(
                    Outcome::Superseded,
                    "",
                    format!("a newer command (stream seq {}) exists", last.sequence),
                )));
            }
            // An undecodable newest message cannot supersede anything.
            Ok(_) | Err(BusError::Decode { .. }) => {}
            Err(e) => {
                return Ok(Decision::Later(Disposition::Retry {
                    after: None,
                    reason: "nats",
                    cause: e.to_string(),
                }))
            }
        }

        // 2. Parked by the projector.
        if !command.parked_reason.is_empty() {
            let mut r = Report::new(Outcome::Parked, "", command.parked_reason.clone());
            r.dead_letter = Some(DeadLetterCause { cause: "parked", reason: command.parked_reason.clone() });
            return Ok(Decision::Done(r));
        }
        let kind = command.kind();
        let (Some(fields), CommandKind::Upsert | CommandKind::Deactivate) = (command.fields.as_ref(), kind)
        else {
            return Ok(Decision::Done(Report::failed(
                "",
                "malformed",
                "command has no kind or no target fields",
            )));
        };

        // 3. The company: known, not paused, first connect applied (or employee linked).
        let company = match self.store.company(&command.company_uuid).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Ok(Decision::Done(Report::failed(
                    &fields.employee_cd,
                    "unknown_company",
                    "company is not configured in the connector",
                )))
            }
            Err(e) => return Ok(retry_store(e)),
        };
        if company.paused {
            return Ok(Decision::Later(Disposition::Wait {
                delay: self.retry.paused_delay,
                reason: "paused",
            }));
        }
        let link = match self.store.link(&command.company_uuid, &command.employee_uuid).await {
            Ok(l) => l,
            Err(e) => return Ok(retry_store(e)),
        };
        let waiting = !company.first_connect_applied && link.is_none();
        self.metrics.set_waiting_first_connect(&command.company_uuid, &command.employee_uuid, waiting);
        if waiting {
            return Ok(Decision::Later(Disposition::Wait {
                delay: self.retry.first_connect_delay,
                reason: "first_connect",
            }));
        }
        let tenant_name = if company.visma_tenant.is_empty() {
            command.visma_tenant.as_str()
        } else {
            company.visma_tenant.as_str()
        };
        let Some(tenant) = self.tenants.get(tenant_name) else {
            return Ok(Decision::Done(Report::failed(
                &fields.employee_cd,
                "unknown_tenant",
                format!("Visma tenant {tenant_name:?} is not configured (visma.tenants)"),
            )));
        };

        // 4. Idempotent apply.
        if let Some(l) = link.as_ref().filter(|l| {
            !command.content_hash.is_empty()
                && l.last_command_hash.as_deref() == Some(command.content_hash.as_str())
        }) {
            return Ok(Decision::Done(Report::new(
                Outcome::Unchanged,
                &l.employee_cd,
                "already applied (same content hash)",
            )));
        }
        let cd = link.as_ref().map(|l| l.employee_cd.clone()).unwrap_or_else(|| fields.employee_cd.clone());
        if cd.is_empty() {
            return Ok(Decision::Done(Report::failed("", "malformed", "command has no employee number")));
        }
        let target = target_fields(kind, fields, &cd);

        let applied = match self.apply(tenant, &cd, &target, calls).await {
            Ok(a) => a,
            Err(ApplyError::Paced(wait)) => {
                return Ok(Decision::Later(Disposition::Wait { delay: wait, reason: "paced" }))
            }
            Err(ApplyError::Visma(e)) if e.is_retryable() || matches!(e, VismaError::Conflict { .. }) => {
                let throttled = matches!(e, VismaError::RateLimited { .. });
                return Ok(Decision::Later(Disposition::Retry {
                    after: e
                        .retry_after()
                        .map(|ra| ra.clamp(Duration::from_secs(1), self.retry.max_retry_after)),
                    reason: if throttled { "visma_throttled" } else { "visma_retryable" },
                    cause: e.to_string(),
                }));
            }
            Err(ApplyError::Visma(e)) => {
                return Ok(Decision::Done(Report::failed(&cd, "visma_rejected", e.to_string())))
            }
            Err(ApplyError::Inconsistent(why)) => {
                return Ok(Decision::Later(Disposition::Retry {
                    after: None,
                    reason: "visma_inconsistent",
                    cause: why,
                }))
            }
        };

        if applied.wrote && self.crash_point == Some(CrashPoint::AfterVismaWrite) {
            tracing::warn!("simulated crash after the Visma write, before link and ack");
            // Delayed, so the redelivery goes to the next writer, not to this one's pulls.
            if let Err(e) = d.msg.ack_with(AckKind::Nak(Some(CRASH_REDELIVERY))).await {
                tracing::debug!(error = %e, "cannot NAK the crashed command");
            }
            return Err(WriterError::SimulatedCrash);
        }

        // The link with the new hash, before the ack: a redelivery then stops at step 4.
        let new_link = EmployeeLink {
            company: command.company_uuid.clone(),
            employee_uuid: command.employee_uuid.clone(),
            visma_tenant: tenant_name.to_string(),
            employee_cd: cd.clone(),
            origin: link.as_ref().map(|l| l.origin.clone()).unwrap_or_else(|| applied.origin.to_string()),
            last_command_hash: Some(command.content_hash.clone()),
            last_command_seq: i64::try_from(command.source_snapshot_seq).ok(),
            updated_at: mlc_bus::now_ms(),
        };
        if let Err(e) = self.store.put_link(&new_link).await {
            return Ok(retry_store(e));
        }
        let report = if applied.changed.is_empty() && !applied.created {
            Report::new(Outcome::Unchanged, &cd, "Visma already holds the target state")
        } else {
            let detail = if applied.created {
                "created".to_string()
            } else {
                format!("updated: {}", applied.changed.join(", "))
            };
            Report { changed: applied.changed, ..Report::new(Outcome::Applied, &cd, detail) }
        };
        Ok(Decision::Done(report))
    }

    /// Reads the employee and writes what differs: update, create, or nothing.
    async fn apply(
        &self,
        tenant: &Tenant,
        cd: &str,
        target: &VismaEmployeeFields,
        calls: &mut Vec<String>,
    ) -> Result<Applied, ApplyError> {
        let mut origin = "found";
        let mut current = if tenant.known_absent(cd, self.retry.absent_ttl) {
            None
        } else {
            self.get(tenant, cd, calls).await?
        };
        if current.is_none() {
            let body = create_dto(target);
            match self
                .visma_call(
                    tenant,
                    calls,
                    "POST",
                    "/employee".into(),
                    // Spec 2026 answers 201 with an ETag, Spec 2025 200 without.
                    |c: &visma::Created| if c.etag.is_some() { "201" } else { "200" }.into(),
                    tenant.client.create_employee(&body),
                )
                .await
            {
                Ok(_) => {
                    tenant.set_absent(cd, false);
                    return Ok(Applied {
                        created: true,
                        wrote: true,
                        changed: Vec::new(),
                        origin: "created",
                    });
                }
                // Someone (we, before a crash) created it: read it and update it instead.
                Err(ApplyError::Visma(VismaError::DuplicateEmployee { .. })) => {
                    tenant.set_absent(cd, false);
                    current = self.get(tenant, cd, calls).await?;
                    if current.is_none() {
                        return Err(ApplyError::Inconsistent(
                            "Visma refused the create as a duplicate but the employee cannot be read".into(),
                        ));
                    }
                    origin = "found";
                }
                Err(e) => return Err(e),
            }
        }

        let mut puts = 0;
        while let Some(dto) = current {
            let now = fields_from_dto(&dto, cd);
            let mut want = target.clone();
            if want.status() == VismaStatus::Unspecified {
                want.status = now.status;
            }
            let changes: Vec<FieldChange> =
                diff_fields(&now, &want).into_iter().filter(|c| c.field != "employee_cd").collect();
            if changes.is_empty() {
                return Ok(Applied { created: false, wrote: puts > 0, changed: Vec::new(), origin });
            }
            let body = update_dto(&want, &changes);
            let etag = dto.etag();
            let path = format!("/employee/{cd}");
            puts += 1;
            match self
                .visma_call(
                    tenant,
                    calls,
                    "PUT",
                    path,
                    |_| "204".into(),
                    tenant.client.update_employee(cd, &body, etag.as_deref()),
                )
                .await
            {
                Ok(_) => {
                    return Ok(Applied {
                        created: false,
                        wrote: true,
                        changed: changes.iter().map(|c| c.field).collect(),
                        origin,
                    })
                }
                // Changed under us: read the new version and diff again, a bounded number
                // of times (each 412 is a failing request in Visma's throttling book).
                Err(ApplyError::Visma(VismaError::Conflict { .. })) if puts < self.retry.max_puts => {
                    current = self.get(tenant, cd, calls).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApplyError::Inconsistent("the employee disappeared from Visma during the update".into()))
    }

    async fn get(
        &self,
        tenant: &Tenant,
        cd: &str,
        calls: &mut Vec<String>,
    ) -> Result<Option<EmployeeDto>, ApplyError> {
        let found = self
            .visma_call(
                tenant,
                calls,
                "GET",
                format!("/employee/{cd}"),
                |r: &Option<EmployeeDto>| if r.is_some() { "200" } else { "404" }.into(),
                tenant.client.get_employee(cd),
            )
            .await?;
        tenant.set_absent(cd, found.is_none());
        Ok(found)
    }

    /// One Visma call: paced, in a client span, counted, and summarised as
    /// `"GET /v1/employee/X 200"` (never bodies or tokens).
    async fn visma_call<T>(
        &self,
        tenant: &Tenant,
        calls: &mut Vec<String>,
        method: &'static str,
        path: String,
        ok_status: impl FnOnce(&T) -> String,
        call: impl Future<Output = Result<T, VismaError>>,
    ) -> Result<T, ApplyError> {
        self.pace(tenant).await?;
        let path = format!("{}{path}", tenant.api_prefix());
        let span = tracing::info_span!(
            "visma.request",
            otel.kind = "client",
            http.request.method = method,
            url.path = %path,
            http.response.status_code = tracing::field::Empty,
        );
        let result = call.instrument(span.clone()).await;
        let status = match &result {
            Ok(v) => ok_status(v),
            Err(e) => error_status(e),
        };
        span.record("http.response.status_code", status.as_str());
        self.metrics.visma_call(method, &status);
        calls.push(format!("{method} {path} {status}"));
        result.map_err(ApplyError::Visma)
    }

    /// Waits for the tenant's rate window to reset when less than `pacing_floor` of it is
    /// left, so our own scheduling never runs into a 429. A long wait is handed back to
    /// JetStream rather than holding the worker (and the other employees behind it).
    async fn pace(&self, tenant: &Tenant) -> Result<(), ApplyError> {
        let Some(rate) = tenant.client.rate_limit() else {
            return Ok(());
        };
        let (Some(limit), Some(remaining)) = (rate.limit, rate.remaining) else {
            return Ok(());
        };
        if (remaining as f64) >= (limit as f64) * self.retry.pacing_floor {
            return Ok(());
        }
        let wait = rate.reset_in().unwrap_or_default();
        if wait.is_zero() {
            return Ok(());
        }
        if wait > self.retry.max_pacing_sleep {
            return Err(ApplyError::Paced(wait));
        }
        tracing::debug!(wait_ms = wait.as_millis() as u64, remaining, limit, "pacing Visma calls");
        self.metrics.paced();
        tokio::time::sleep(wait).await;
        Ok(())
    }

    // -------------------------------------------------------------------------- recording

    /// Step 6: audit, dead letter, outcome, ack. Any failure leaves the message unacked.
    async fn record(
        &self,
        d: &Delivery<'_>,
        command: &VismaCommand,
        report: &Report,
        calls: &[String],
        attempts: u32,
    ) -> Result<(), RecordError> {
        let name = outcome_name(report.outcome);
        tracing::Span::current().record("outcome", name);
        // The projector always sets a command id; a hand-made command without one still
        // gets ids that cannot collide with another employee's.
        let key =
            if command.command_id.is_empty() { format!("seq-{}", d.seq) } else { command.command_id.clone() };
        let now = mlc_bus::now_ms();
        let latency_ms =
            (command.webhook_received_at_ms > 0).then(|| (now - command.webhook_received_at_ms).max(0));
        let trace = mlc_bus::trace::current();

        let mut detail = serde_json::json!({
            "command_id": command.command_id,
            "stream_seq": d.seq,
            "delivered": d.delivered,
            "employee_cd": report.employee_cd,
            "calls": calls,
            "changed": report.changed,
        });
        if report.outcome == Outcome::Parked {
            // Park reasons are written to name Gusto values, never personal data.
            detail["reason"] = serde_json::Value::from(report.detail.clone());
        }
        if let Some(dl) = &report.dead_letter {
            detail["dead_letter"] = serde_json::Value::from(dl.cause);
        }
        let trace_id = mlc_bus::trace::trace_id(&trace).or_else(|| mlc_bus::trace::trace_id(&command.trace));
        self.store
            .append_audit(&AuditEntry {
                event_id: format!("outcome:{key}:{name}"),
                kind: format!("visma.{}", name.to_ascii_lowercase()),
                company: Some(command.company_uuid.clone()),
                employee: Some(command.employee_uuid.clone()),
                detail,
                trace_id,
            })
            .await?;

        if let Some(dl) = &report.dead_letter {
            let mut letter = Letter::of("writer", d.msg, dl.reason.clone());
            letter.original_id = key.clone();
            letter.company = command.company_uuid.clone();
            letter.attempts = attempts.max(1);
            letter.trace = trace.clone();
            self.dead_letters.send(&letter).await?;
            self.metrics.dead_lettered(dl.cause);
        }

        let outcome = SyncOutcome {
            command_id: command.command_id.clone(),
            company_uuid: command.company_uuid.clone(),
            employee_uuid: command.employee_uuid.clone(),
            outcome: report.outcome as i32,
            visma_employee_cd: report.employee_cd.clone(),
            detail: report.detail.clone(),
            latency_ms: latency_ms.unwrap_or_default(),
            visma_calls: calls.to_vec(),
            trace,
            decided_at_ms: now,
        };
        let subject = self.topology.sync_outcome(&command.company_uuid, &command.employee_uuid);
        let id = format!("{key}:{name}");
        self.publisher.publish(&subject, &id, &outcome).await?;

        self.metrics.outcome(&name.to_ascii_lowercase());
        if let Some(ms) = latency_ms {
            self.metrics.observe_latency(Duration::from_millis(ms.unsigned_abs()));
        }
        let ack = if report.outcome == Outcome::Failed { AckKind::Term } else { AckKind::Ack };
        if let Err(e) = d.msg.ack_with(ack).await {
            // Recorded already; a redelivery finds the link and records UNCHANGED.
            tracing::warn!(error = %e, "cannot ack a decided command");
        }
        tracing::info!(outcome = name, employee_cd = %report.employee_cd, calls = calls.len(), "command decided");
        Ok(())
    }

    async fn nak(&self, d: &Delivery<'_>, delay: Duration, reason: &'static str) {
        self.metrics.nak(reason);
        if let Err(e) = d.msg.ack_with(AckKind::Nak(Some(delay))).await {
            tracing::debug!(error = %e, "cannot NAK; the message comes back after its ack wait");
        }
    }

    /// A payload that is not a `VismaCommand` can never succeed: keep it and stop
    /// redelivering it.
    async fn undecodable(&self, d: &Delivery<'_>, reason: &str) {
        let mut letter = Letter::of("writer", d.msg, reason);
        letter.company = self
            .topology
            .split_subject(StreamKind::VismaCommands, d.subject)
            .map_or("", |(c, _)| c)
            .to_string();
        letter.attempts = 1;
        match self.dead_letters.send(&letter).await {
            Ok(_) => {
                self.metrics.dead_lettered("undecodable");
                let _ = d.msg.ack_with(AckKind::Term).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot dead-letter an undecodable command");
                self.nak(d, self.retry.base_backoff, "nats").await;
            }
        }
    }
}

/// What [`Writer::apply`] did.
struct Applied {
    created: bool,
    /// A create or update reached Visma in this delivery.
    wrote: bool,
    changed: Vec<&'static str>,
    /// Link origin when the employee had none: `created` or `found`.
    origin: &'static str,
}

enum ApplyError {
    Visma(VismaError),
    /// The tenant's rate budget is nearly spent until this long from now.
    Paced(Duration),
    /// Visma contradicted itself (e.g. "exists" then 404); worth another try later.
    Inconsistent(String),
}

#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

// ------------------------------------------------------------------------------ mapping

/// `OUTCOME_APPLIED` -> `APPLIED`: the suffix of `Nats-Msg-Id`s and audit kinds.
fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Unspecified => "UNSPECIFIED",
        Outcome::Applied => "APPLIED",
        Outcome::Unchanged => "UNCHANGED",
        Outcome::Failed => "FAILED",
        Outcome::Parked => "PARKED",
        Outcome::Superseded => "SUPERSEDED",
    }
}

fn error_status(e: &VismaError) -> String {
    match e {
        VismaError::Timeout => "timeout".into(),
        VismaError::Connection(_) => "connection".into(),
        VismaError::Decode(_) => "unreadable".into(),
        VismaError::Config(_) => "config".into(),
        other => other.status().map_or_else(|| "error".to_string(), |s| s.to_string()),
    }
}

/// The command's target under the employee number actually used; a deactivation is always
/// `Inactive`, whatever the fields say.
fn target_fields(kind: CommandKind, fields: &VismaEmployeeFields, cd: &str) -> VismaEmployeeFields {
    let mut t = fields.clone();
    t.employee_cd = cd.to_string();
    if kind == CommandKind::Deactivate {
        t.status = VismaStatus::Inactive as i32;
    }
    t
}

/// What Visma holds, in the shape of the command's target. Read names differ from write
/// names (`midName`, `calendarID`, `country.id`, `branch.number`); absent and `null` read
/// as empty, which is also how the target says "nothing". A status the connector does not
/// own (on hold, one-time) reads as unspecified, so the target status is written over it.
pub fn fields_from_dto(dto: &EmployeeDto, cd: &str) -> VismaEmployeeFields {
    let s = |o: Option<&String>| o.cloned().unwrap_or_default();
    let contact = dto.contact.clone().unwrap_or_default();
    let address = dto.address.clone().unwrap_or_default();
    let status = match dto.status {
        Some(EmployeeStatus::Active) => VismaStatus::Active,
        Some(EmployeeStatus::Inactive) => VismaStatus::Inactive,
        _ => VismaStatus::Unspecified,
    };
    VismaEmployeeFields {
        employee_cd: cd.to_string(),
        first_name: s(contact.first_name.as_ref()),
        middle_name: s(contact.mid_name.as_ref()),
        last_name: s(contact.last_name.as_ref()),
        email: s(contact.email.as_ref()),
        phone: s(contact.phone1.as_ref()),
        department_id: s(dto.department.as_ref()),
        employee_class: s(dto.employee_class.as_ref().and_then(|c| c.id.as_ref())),
        branch: s(dto.branch.as_ref().and_then(|b| b.number.as_ref())),
        calendar: s(dto.calendar_id.as_ref()),
        status: status as i32,
        address_line1: s(address.address_line1.as_ref()),
        postal_code: s(address.postal_code.as_ref()),
        city: s(address.city.as_ref()),
        country_id: s(address.country.as_ref().and_then(|c| c.id.as_ref())),
    }
}

fn write_status(status: VismaStatus) -> Option<Value<EmployeeWriteStatus>> {
    match status {
        VismaStatus::Active => Some(Value::new(EmployeeWriteStatus::Active)),
        VismaStatus::Inactive => Some(Value::new(EmployeeWriteStatus::Inactive)),
        VismaStatus::Unspecified => None,
    }
}

/// A create body with every field of the target; empty optional fields are left out.
fn create_dto(t: &VismaEmployeeFields) -> EmployeeCreateDto {
    let opt = |s: &str| (!s.is_empty()).then(|| v(s));
    let mut dto = EmployeeCreateDto::new(
        &t.employee_cd,
        &t.department_id,
        &t.employee_class,
        &t.branch,
        &t.calendar,
        &t.last_name,
        &t.email,
    );
    dto.contact.first_name = opt(&t.first_name);
    dto.contact.middle_name = opt(&t.middle_name);
    dto.contact.phone1 = opt(&t.phone);
    let address = AddressWrite {
        address_line1: opt(&t.address_line1),
        postal_code: opt(&t.postal_code),
        city: opt(&t.city),
        country_id: opt(&t.country_id),
        ..AddressWrite::default()
    };
    if address != AddressWrite::default() {
        dto.address = Some(address);
    }
    dto.status = write_status(t.status());
    dto
}

/// An update body with exactly the changed fields (Visma leaves omitted fields alone). A
/// field emptied in Gusto is sent as `{"value": ""}` so Visma clears it too.
fn update_dto(t: &VismaEmployeeFields, changes: &[FieldChange]) -> EmployeeUpdateDto {
    let mut dto =
        EmployeeUpdateDto { contact: EmployeeContactWrite::default(), ..EmployeeUpdateDto::default() };
    for c in changes {
        let to = Some(v(c.to.clone()));
        match c.field {
            "first_name" => dto.contact.first_name = to,
            "middle_name" => dto.contact.middle_name = to,
            "last_name" => dto.contact.last_name = to,
            "email" => dto.contact.email = to,
            "phone" => dto.contact.phone1 = to,
            "department_id" => dto.department = to,
            "employee_class" => dto.employee_class = to,
            "branch" => dto.branch = to,
            "calendar" => dto.calendar = to,
            "status" => dto.status = write_status(t.status()),
            "address_line1" => dto.address.get_or_insert_with(AddressWrite::default).address_line1 = to,
            "postal_code" => dto.address.get_or_insert_with(AddressWrite::default).postal_code = to,
            "city" => dto.address.get_or_insert_with(AddressWrite::default).city = to,
            "country_id" => dto.address.get_or_insert_with(AddressWrite::default).country_id = to,
            // The number is only in the path; renaming is `changeEmployeeCd`, not a PUT.
            _ => {}
        }
    }
    dto
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> VismaEmployeeFields {
        VismaEmployeeFields {
            employee_cd: "G1".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            department_id: "ENG".into(),
            employee_class: "EMPSTD".into(),
            branch: "1".into(),
            calendar: "MAIN".into(),
            status: VismaStatus::Active as i32,
            city: "Oslo".into(),
            country_id: "NO".into(),
            ..VismaEmployeeFields::default()
        }
    }

    /// The read DTO of an employee created from `create_dto(target())`, as Visma renders it.
    fn read_back() -> EmployeeDto {
        serde_json::from_value(serde_json::json!({
            "employeeNumber": "G1",
            "status": "Active",
            "department": "ENG",
            "contact": {"firstName": "Ada", "midName": null, "lastName": "Lovelace",
                        "email": "ada@example.com", "phone1": null},
            "address": {"addressLine1": null, "city": "Oslo", "country": {"id": "NO", "name": "Norway"}},
            "employeeClass": {"id": "EMPSTD"},
            "branch": {"number": "1", "name": "Main"},
            "calendarID": "MAIN",
            "timeStamp": "AAAAAAAHAAE="
        }))
        .expect("read dto")
    }

    #[test]
    fn read_dto_maps_onto_the_target_despite_name_asymmetries() {
        assert_eq!(fields_from_dto(&read_back(), "G1"), target());
    }

    #[test]
    fn update_sends_only_changed_fields_and_clears_with_empty_values() {
        let mut want = target();
        want.department_id = "SALES".into();
        want.city = String::new();
        want.status = VismaStatus::Inactive as i32;
        let changes = diff_fields(&target(), &want);
        let body = serde_json::to_value(update_dto(&want, &changes)).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "department": {"value": "SALES"},
                "status": {"value": "Inactive"},
                "contact": {},
                "address": {"city": {"value": ""}},
            })
        );
    }

    #[test]
    fn create_carries_every_field_and_the_status() {
        let mut t = target();
        t.status = VismaStatus::Inactive as i32;
        let body = serde_json::to_value(create_dto(&t)).expect("json");
        assert_eq!(body["status"]["value"], "Inactive");
        assert_eq!(body["contact"]["firstName"]["value"], "Ada");
        assert_eq!(body["address"]["countryId"]["value"], "NO");
        assert!(body["contact"].get("middleName").is_none());
    }

    #[test]
    fn deactivation_forces_inactive() {
        let t = target_fields(CommandKind::Deactivate, &target(), "X9");
        assert_eq!(t.status(), VismaStatus::Inactive);
        assert_eq!(t.employee_cd, "X9");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryTuning::default();
        assert_eq!(r.backoff().delay(1), Duration::from_secs(1));
        assert_eq!(r.backoff().delay(3), Duration::from_secs(4));
        assert_eq!(r.backoff().delay(12), Duration::from_secs(60));
    }

    #[test]
    fn settings_from_config_take_the_workers_and_the_tenants() {
        let cfg = mlc_config::Config::default();
        let s = WriterSettings::from_config(&cfg, HashMap::new()).expect("settings");
        assert_eq!(s.workers, cfg.writer.workers.max(1));
        assert!(s.tenants.is_empty());
    }

    #[test]
    fn shards_are_stable_per_employee() {
        let t = Topology::new("", 1).expect("topology");
        let a = shard_of(&t, "visma.commands.c1.e1", 8);
        assert_eq!(a, shard_of(&t, "visma.commands.c1.e1", 8));
        assert!(a < 8);
    }
}
