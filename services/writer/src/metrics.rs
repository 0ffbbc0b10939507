//! Prometheus series of the writer (prefix `mlc_writer`), its readiness flag, and the
//! HTTP routes that expose them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use mlc_telemetry::ReadyFlag;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabel {
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: &'static str,
}

/// The stages of one command, as `mlc_writer_step_seconds` names them: where a slow writer
/// spends its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Step 1: the newest command of the employee, read from `VISMA_COMMANDS`.
    Newest,
    /// Step 3: the company and the link, read from the store.
    StoreRead,
    /// Step 4: the Visma read and write.
    Visma,
    /// Step 4: the link with its new hash, written to the store.
    Link,
    /// Step 6: the audit row.
    Audit,
    /// Step 6: the outcome published on `SYNC_OUTCOMES`.
    Outcome,
    /// Step 6: the ack.
    Ack,
}

impl Step {
    pub const ALL: [Step; 7] =
        [Step::Newest, Step::StoreRead, Step::Visma, Step::Link, Step::Audit, Step::Outcome, Step::Ack];

    pub fn name(self) -> &'static str {
        match self {
            Step::Newest => "newest",
            Step::StoreRead => "store_read",
            Step::Visma => "visma",
            Step::Link => "link",
            Step::Audit => "audit",
            Step::Outcome => "outcome",
            Step::Ack => "ack",
        }
    }
}

/// Everything the writer counts, plus whether it is ready. Shared (`Arc`) between
/// [`crate::run`] and the HTTP routes of [`router`].
pub struct WriterMetrics {
    registry: Registry,
    commands: Family<OutcomeLabel, Counter>,
    visma_calls: Family<CallLabel, Counter>,
    e2e_latency: Histogram,
    dead_letters: Family<ReasonLabel, Counter>,
    naks: Family<ReasonLabel, Counter>,
    waiting_first_connect: Gauge,
    pacing_waits: Counter,
    consumer_pending: Family<ConsumerLabel, Gauge>,
    steps: Family<StepLabel, Histogram>,
    /// Seconds and count per step, for [`WriterMetrics::step_totals`]: the histogram's sum
    /// and count are readable only with prometheus-client's `test-util` feature.
    step_totals: Mutex<[(f64, u64); Step::ALL.len()]>,
    /// The employees behind `waiting_first_connect`: a set, so one employee waiting through
    /// many redeliveries counts once.
    waiting: Mutex<HashSet<(String, String)>>,
    ready: ReadyFlag,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WriterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterMetrics").field("ready", &self.ready.is_ready()).finish_non_exhaustive()
    }
}

impl WriterMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mlc_writer");
        let commands = Family::<OutcomeLabel, Counter>::default();
        let visma_calls = Family::<CallLabel, Counter>::default();
        // 50 ms .. ~30 min: a webhook normally lands in Visma within seconds, but a paused
        // company or a first-connect review can hold it for much longer.
        let e2e_latency = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        let dead_letters = Family::<ReasonLabel, Counter>::default();
        let naks = Family::<ReasonLabel, Counter>::default();
        let waiting_first_connect = Gauge::default();
        let pacing_waits = Counter::default();
        let consumer_pending = Family::<ConsumerLabel, Gauge>::default();
        // 100 us .. ~3 s: one store read or Visma call, not a whole command.
        let steps = Family::<StepLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 15))
        });
        registry.register("commands", "Visma commands decided, by outcome", commands.clone());
        registry.register(
            "visma_calls",
            "Visma API calls, by method and HTTP status (or transport failure)",
            visma_calls.clone(),
        );
        registry.register(
            "e2e_latency_seconds",
            "Webhook received by the gateway to outcome decided by the writer",
            e2e_latency.clone(),
        );
        registry.register("dead_letters", "Commands sent to DEAD_LETTERS, by cause", dead_letters.clone());
        registry.register(
            "naks",
            "Commands handed back to JetStream for a later attempt, by reason",
            naks.clone(),
        );
        registry.register(
            "waiting_first_connect",
            "Employees held back because their company's first-connect review is not applied",
            waiting_first_connect.clone(),
        );
        registry.register(
            "pacing_waits",
            "Visma calls held until the tenant's rate window reset (under 5 % left)",
            pacing_waits.clone(),
        );
        registry.register(
            "consumer_pending",
            "Commands not yet delivered or not yet acked on the writer's consumer (lag)",
            consumer_pending.clone(),
        );
        registry.register(
            "step_seconds",
            "Time of one stage of a command (newest, store_read, visma, link, audit, outcome, ack)",
            steps.clone(),
        );
        Self {
            registry,
            commands,
            visma_calls,
            e2e_latency,
            dead_letters,
            naks,
            waiting_first_connect,
            pacing_waits,
            consumer_pending,
            steps,
            step_totals: Mutex::new([(0.0, 0); Step::ALL.len()]),
            waiting: Mutex::new(HashSet::new()),
            ready: ReadyFlag::new(
                "not consuming VISMA_COMMANDS, NATS not connected, or the store not answering or refusing writes",
            ),
        }
    }

    pub(crate) fn outcome(&self, outcome: &str) {
        self.commands.get_or_create(&OutcomeLabel { outcome: outcome.to_string() }).inc();
    }

    pub(crate) fn visma_call(&self, method: &str, status: &str) {
        self.visma_calls
            .get_or_create(&CallLabel { method: method.to_string(), status: status.to_string() })
            .inc();
    }

    pub(crate) fn observe_latency(&self, latency: Duration) {
        self.e2e_latency.observe(latency.as_secs_f64());
    }

    pub(crate) fn dead_lettered(&self, cause: &str) {
        self.dead_letters.get_or_create(&ReasonLabel { reason: cause.to_string() }).inc();
    }

    pub(crate) fn nak(&self, reason: &str) {
        self.naks.get_or_create(&ReasonLabel { reason: reason.to_string() }).inc();
    }

    pub(crate) fn set_consumer_pending(&self, consumer: &str, pending: u64) {
        self.consumer_pending
            .get_or_create(&ConsumerLabel { consumer: consumer.to_string() })
            .set(pending as i64);
    }

    pub(crate) fn step(&self, step: Step, took: Duration) {
        self.steps.get_or_create(&StepLabel { step: step.name() }).observe(took.as_secs_f64());
        let mut totals = self.step_totals.lock().unwrap_or_else(|e| e.into_inner());
        let t = &mut totals[step as usize];
        t.0 += took.as_secs_f64();
        t.1 += 1;
    }

    /// Seconds spent in `step` and how many times it ran, so far.
    pub fn step_totals(&self, step: Step) -> (f64, u64) {
        self.step_totals.lock().unwrap_or_else(|e| e.into_inner())[step as usize]
    }

    pub(crate) fn paced(&self) {
        self.pacing_waits.inc();
    }

    /// Visma calls that waited for a rate window to reset.
    pub fn pacing_waits_total(&self) -> u64 {
        self.pacing_waits.get()
    }

    /// Marks an employee as waiting for (or no longer waiting for) the first-connect review.
    pub(crate) fn set_waiting_first_connect(&self, company: &str, employee: &str, waiting: bool) {
        let mut set = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let key = (company.to_string(), employee.to_string());
        let changed = if waiting { set.insert(key) } else { set.remove(&key) };
        if changed {
            self.waiting_first_connect.set(set.len() as i64);
        }
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.set(ready);
    }

    /// The flag behind `/readyz`, for the readiness watcher.
    pub(crate) fn ready_flag(&self) -> ReadyFlag {
        self.ready.clone()
    }

    /// Whether the writer is consuming with a connected NATS client.
    pub fn is_ready(&self) -> bool {
        self.ready.is_ready()
    }

    /// Commands decided with `outcome` (`applied`, `unchanged`, `failed`, `parked`,
    /// `superseded`) so far.
    pub fn commands_total(&self, outcome: &str) -> u64 {
        self.commands.get_or_create(&OutcomeLabel { outcome: outcome.to_string() }).get()
    }

    /// Employees currently held back by a missing first-connect review.
    pub fn waiting_first_connect(&self) -> i64 {
        self.waiting_first_connect.get()
    }

    /// NAKs so far for `reason`.
    pub fn naks_total(&self, reason: &str) -> u64 {
        self.naks.get_or_create(&ReasonLabel { reason: reason.to_string() }).get()
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        mlc_telemetry::encode_metrics(&self.registry)
    }
}

/// `/healthz` (the process is up), `/readyz` (consuming, NATS connected, the store
/// answering) and `/metrics`, for the binary to serve on `writer.metrics_listen`.
pub fn router(metrics: Arc<WriterMetrics>) -> Router {
    let ready = metrics.ready.clone();
    mlc_telemetry::ops_router(move || metrics.encode(), ready)
}

/// Serves [`router`] until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<WriterMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics)).with_graceful_shutdown(shutdown).await
}
