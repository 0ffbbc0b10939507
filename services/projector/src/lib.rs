//! The projector: Gusto events in, employee state and Visma commands out.
//!
//! Two consumers run side by side:
//!
//! **Hydrate** (`GUSTO_EVENTS` -> `EMPLOYEE_STATE`). Webhooks are thin, so each event is
//! a hint: fetch the employee from Gusto with the company's grant, normalise, and append
//! a snapshot to `employee.state.<company>.<employee>` only when the content differs from
//! that subject's last message. A batch is coalesced first: several events for one
//! employee cost one fetch, and a company with many employees in the batch is read
//! from its paged employee list instead. Batches are handled one after the other, so
//! an employee is never hydrated by two tasks at once and the newest fetch is always the
//! one appended last; duplicates and reordering therefore change nothing.
//!
//! **Map** (`EMPLOYEE_STATE` -> `VISMA_COMMANDS`). Pure: snapshot plus the company's
//! mapping file gives a command. Only the subject's newest snapshot is mapped (a replay
//! from sequence 1 skips superseded states), and a command is emitted only when its
//! content differs from the last command of that employee: a plain replay emits none, a
//! replay after a mapping change emits one per affected employee.

//!
//! Each stage says what should happen to a message ([`Disposition`]: ack, wait, retry,
//! dead letter) and only the consumer loop acts on it (`mlc_bus::delivery::Settle`):
//! waits (a paused or de-authorised company) never spend the error budget, failures do.
//!
//! # Layout
//! - `settings`: [`ProjectorSettings`], from the configuration.
//! - `hydrate`: the hydrate flow: classify, plan per company, fetch, append.
//! - `map`: the map flow and replay.
//! - `directory`: companies, mapping files, locations and recent lists between messages.
//! - `catch_up`, `normalize`, `jobs`, `metrics`.

pub mod catch_up;
mod directory;
mod hydrate;
mod jobs;
mod map;
mod metrics;
mod normalize;
mod settings;

pub use metrics::ProjectorMetrics;
pub use mlc_bus::delivery::Disposition;
pub use normalize::normalize;
pub use settings::ProjectorSettings;

use async_nats::jetstream::{self, Message};
use gusto::GustoClient;
use mlc_bus::dead_letter::DeadLetters;
use mlc_bus::delivery::{Backoff, Settle};
use mlc_bus::partitions::{Held, Partitions};
use mlc_bus::{ConsumerSpec, Publisher, StreamKind};
use mlc_proto::v1::VismaCommand;
use mlc_store::{AuditEntry, Company, Store};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Bus(#[from] mlc_bus::BusError),
    #[error(transparent)]
    Store(#[from] mlc_store::StoreError),
}

/// Snapshots read ahead and mapped concurrently during a replay.
const REPLAY_CHUNK: usize = 1024;

/// The running projector; cheap to share.
pub struct Projector {
    js: jetstream::Context,
    publisher: Publisher,
    store: Arc<Store>,
    gusto: Arc<GustoClient>,
    settings: ProjectorSettings,
    metrics: ProjectorMetrics,
    /// Companies, mapping files, locations and recent lists, kept between messages.
    directory: directory::CompanyDirectory,
    /// Grant id -> company uuid, for the per-company Gusto series.
    grant_companies: metrics::GrantCompanies,
    /// Job and compensation uuid -> employee uuid, per company, learnt from every
    /// employee read: a job event then costs one employee read, not a list read.
    jobs: jobs::JobIndex,
    /// Acts on what hydrate decided for each event (stage `projector` in dead letters).
    hydrate_settle: Settle,
    /// Acts on what map decided for each snapshot (stage `mapper`).
    map_settle: Settle,
}

impl Projector {
    pub fn new(
        js: jetstream::Context,
        publisher: Publisher,
        store: Arc<Store>,
        gusto: Arc<GustoClient>,
        settings: ProjectorSettings,
    ) -> Arc<Self> {
        let metrics = ProjectorMetrics::new();
        let grant_companies = metrics::GrantCompanies::default();
        gusto.set_observer(Arc::new(metrics::GustoObserver {
            grants: grant_companies.clone(),
            responses: metrics.gusto_responses.clone(),
            rate_limited: metrics.gusto_rate_limited.clone(),
            refreshes: metrics.token_refreshes.clone(),
            version_deprecated: metrics.gusto_api_version_deprecated.clone(),
            version_refused: metrics.gusto_api_version_refused.clone(),
        }));
        let dead_letters = DeadLetters::new(publisher.clone(), settings.topology.clone());
        let settle =
            |stage| Settle::new(stage, dead_letters.clone(), Backoff::default(), settings.max_attempts);
        Arc::new(Self {
            hydrate_settle: settle("projector"),
            map_settle: settle("mapper"),
            js,
            publisher,
            store,
            gusto,
            settings,
            metrics,
            directory: Default::default(),
            grant_companies,
            jobs: Default::default(),
        })
    }

    /// Remembers whose grant `company.grant_id` is, for the per-company Gusto series.
    fn note_grant(&self, company: &Company) {
        self.grant_companies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(company.grant_id.clone(), company.company_uuid.clone());
    }

    /// Sets the rate budget gauges of every known company from the client's limiter.
    fn update_rate_budget(&self) {
        let limit = self.gusto.limiter().config().limit;
        let known: Vec<(String, String)> = self
            .grant_companies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(g, c)| (g.clone(), c.clone()))
            .collect();
        for (grant, company) in known {
            let used = self.gusto.limiter().used(&grant);
            let label = metrics::Company { company };
            self.metrics.rate_budget_used.get_or_create(&label).set(used as i64);
            self.metrics.rate_budget_left.get_or_create(&label).set(limit.saturating_sub(used) as i64);
        }
    }

    pub fn metrics(&self) -> &ProjectorMetrics {
        &self.metrics
    }

    /// Runs both consumers until `shutdown` resolves; the batch in hand is finished first.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), ProjectorError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let partitions =
            Partitions::start(&self.js, &self.settings.topology, self.settings.leases.clone()).await?;
        let held = partitions.held();
        let hydrate = tokio::spawn(self.clone().hydrate_loop(stop_rx.clone(), held.clone()));
        let map = tokio::spawn(self.clone().map_loop(stop_rx.clone(), held));
        let lag = tokio::spawn(self.clone().lag_loop(stop_rx));
        let catch_up = self.settings.catch_up_every.map(|every| {
            tokio::spawn(catch_up::run(
                self.gusto.clone(),
                self.publisher.clone(),
                self.settings.topology.clone(),
                self.store.clone(),
                every,
            ))
        });
        shutdown.await;
        let _ = stop_tx.send(true);
        for task in [hydrate, map] {
            match task.await {
                Ok(r) => r?,
                Err(e) => tracing::error!(error = %e, "projector task panicked"),
            }
        }
        lag.abort();
        if let Some(c) = catch_up {
            c.abort();
        }
        partitions.release().await;
        Ok(())
    }

    /// Hands each batch from the partitions of `spec` this replica holds to `handle`, one
    /// batch after the other, until `stop` (the batch in hand is finished first). The one
    /// consumer loop of both stages; what happens to each message is the stage's
    /// `Disposition`, settled by its `Settle`.
    async fn consume<F: std::future::Future<Output = ()>>(
        &self,
        spec: ConsumerSpec,
        linger: mlc_bus::consume::Linger,
        held: Held,
        mut stop: tokio::sync::watch::Receiver<bool>,
        handle: impl Fn(Vec<Message>) -> F,
    ) -> Result<(), ProjectorError> {
        let mut feed = mlc_bus::feed::Feed::start(
            self.js.clone(),
            self.settings.topology.clone(),
            spec,
            held,
            self.settings.max_batch,
            linger,
        );
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return Ok(()),
                b = feed.next_batch() => b,
            };
            let Some((_, batch)) = next else { return Ok(()) };
            handle(batch).await;
        }
    }

    async fn hydrate_loop(
        self: Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
        held: Held,
    ) -> Result<(), ProjectorError> {
        let this = &self;
        self.consume(ConsumerSpec::HYDRATOR, self.settings.hydrate_linger, held, stop, |batch| async move {
            this.hydrate_batch(&batch).await
        })
        .await
    }

    /// Appends an audit row (in a group write with the rows of concurrent messages);
    /// whether it is stored.
    async fn audit(&self, entry: AuditEntry) -> bool {
        let kind = entry.kind.clone();
        match self.store.record_audit(entry).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, %kind, "audit append failed");
                false
            }
        }
    }

    /// Publishes consumer lag, the depth of DEAD_LETTERS and the rate budgets every few
    /// seconds.
    async fn lag_loop(self: Arc<Self>, _stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let topo = &self.settings.topology;
            for spec in [ConsumerSpec::HYDRATOR, ConsumerSpec::MAPPER] {
                for (durable, pending) in
                    mlc_bus::consume::pending(&self.js, topo, &spec).await.unwrap_or_default()
                {
                    self.metrics
                        .consumer_pending
                        .get_or_create(&metrics::Consumer { consumer: durable })
                        .set(pending as i64);
                }
            }
            let dlq = self.settings.topology.stream(StreamKind::DeadLetters);
            if let Ok(mut stream) = self.js.get_stream(&dlq).await {
                if let Ok(info) = stream.info().await {
                    self.metrics.dead_letter_depth.set(info.state.messages as i64);
                }
            }
            if let Ok(companies) = self.store.companies().await {
                for c in &companies {
                    self.note_grant(c);
                }
            }
            self.update_rate_budget();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// What mapping one snapshot did.
#[derive(Debug)]
pub enum MapOutcome {
    /// A newer snapshot of the employee exists; it will be (or was) mapped instead.
    Superseded,
    /// The command equals the employee's last one: nothing to emit.
    Unchanged,
    /// A new command (emitted, or only returned on a dry run).
    Emitted(Box<VismaCommand>),
}
