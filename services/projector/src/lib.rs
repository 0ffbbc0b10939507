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

pub mod catch_up;
mod jobs;
mod metrics;
mod normalize;

pub use metrics::ProjectorMetrics;
pub use normalize::normalize;

use async_nats::jetstream::{self, AckKind, Message};
use futures::future::join_all;
use gusto::{GrantId, GustoClient, GustoError};
use mlc_bus::{ConsumerSpec, Publisher, StreamKind, Topology};
use mlc_domain::Mapping;
use mlc_proto::v1::{
    DeadLetter, EmployeeContent, EmployeeSnapshot, EmploymentStatus, GustoEvent, TraceContext, VismaCommand,
};
use mlc_store::{AuditEntry, Company, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Bus(#[from] mlc_bus::BusError),
    #[error(transparent)]
    Store(#[from] mlc_store::StoreError),
}

/// The partitions this replica works, as the leases (or a fixed set) say.
type Held = tokio::sync::watch::Receiver<std::collections::BTreeSet<u32>>;

/// Snapshots read ahead and mapped concurrently during a replay.
const REPLAY_CHUNK: usize = 1024;

/// How the projector runs; built from `projector.*` of the configuration.
#[derive(Debug, Clone)]
pub struct ProjectorSettings {
    pub topology: Topology,
    /// Gusto fetches in flight at once (across companies).
    pub fetch_concurrency: usize,
    /// Distinct employees of one company in a batch above which the list is read.
    pub burst_threshold: usize,
    /// Page size of the employee list (Gusto allows up to 100 here).
    pub list_page_size: u32,
    /// Where relative mapping paths of companies are resolved.
    pub mappings_dir: PathBuf,
    pub max_batch: usize,
    /// How long a batch waits for more messages after the first.
    pub linger: Duration,
    /// Redelivery delay of events of a paused or de-authorised company.
    pub park_delay: Duration,
    /// Deliveries with errors after which a message is dead-lettered.
    pub max_attempts: u64,
    /// How often `GET /v1/events` is read for events the webhooks missed; `None` turns
    /// catch-up off.
    pub catch_up_every: Option<Duration>,
    /// Share the partitions with other replicas through leases; `None` works them all.
    pub leases: Option<mlc_bus::lease::LeaseConfig>,
}

impl ProjectorSettings {
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            fetch_concurrency: 8,
            burst_threshold: 20,
            list_page_size: 100,
            mappings_dir: PathBuf::from("."),
            max_batch: 1000,
            linger: Duration::from_millis(5),
            park_delay: Duration::from_secs(30),
            max_attempts: 12,
            catch_up_every: None,
            leases: None,
        }
    }

    /// Settings from the connector's configuration (pure): the topology of `nats`,
    /// `projector.*`, and leases when the topology is partitioned.
    pub fn from_config(cfg: &mlc_config::Config) -> Result<Self, ProjectorError> {
        let topology = Topology::new(&cfg.nats.stream_prefix, cfg.nats.replicas)?
            .with_partitions(cfg.nats.partitions)?;
        let mut settings = Self::new(topology);
        settings.fetch_concurrency = cfg.projector.workers.clamp(1, 64);
        settings.burst_threshold = cfg.projector.burst_threshold;
        settings.mappings_dir = cfg.projector.mappings_dir.clone();
        if cfg.nats.partitions > 1 {
            settings.leases = Some(mlc_bus::lease::LeaseConfig {
                role: "projector".into(),
                replica: cfg.replica_id(),
                ttl: Duration::from_millis(cfg.nats.lease_ttl_ms),
            });
        }
        settings.catch_up_every =
            (cfg.projector.catch_up_secs > 0).then(|| Duration::from_secs(cfg.projector.catch_up_secs));
        Ok(settings)
    }
}

/// The running projector; cheap to share.
pub struct Projector {
    js: jetstream::Context,
    publisher: Publisher,
    store: Arc<Store>,
    gusto: Arc<GustoClient>,
    settings: ProjectorSettings,
    metrics: ProjectorMetrics,
    locations: Mutex<HashMap<String, Arc<HashMap<String, gusto::Location>>>>,
    mappings: Mutex<HashMap<PathBuf, (SystemTime, Arc<Mapping>)>>,
    /// Grant id -> company uuid, for the per-company Gusto series.
    grant_companies: metrics::GrantCompanies,
    companies: Mutex<HashMap<String, (std::time::Instant, Company)>>,
    /// Job and compensation uuid -> employee uuid, per company, learnt from every
    /// employee read: a job event then costs one employee read, not a list read.
    jobs: jobs::JobIndex,
    /// The last full list read per company (when, what): a later batch whose events were
    /// all received before that read is served from it (a backfill or a burst arriving
    /// in several batches costs one list read, not one per batch).
    recent_lists: Mutex<HashMap<String, (i64, Listed)>>,
}

/// How long a list read serves later batches, and the clock margin an event's receipt
/// must precede it by (Gusto sends a webhook after the change is committed; the
/// gateway's clock may differ a little from this process's).
/// A company's employees by uuid, from one list read.
type Listed = Arc<HashMap<String, gusto::Employee>>;

const RECENT_LIST_TTL_MS: i64 = 30_000;
const RECENT_LIST_MARGIN_MS: i64 = 2_000;

/// One employee to hydrate and the events that asked for it.
struct Wanted<'a> {
    employee: String,
    messages: Vec<(&'a Message, GustoEvent)>,
}

/// What a batch holds for one company.
#[derive(Default)]
struct CompanyWork<'a> {
    employees: BTreeMap<String, Vec<(&'a Message, GustoEvent)>>,
    /// Events that need the whole company re-read (location edits, job or address
    /// events that do not name their employee).
    refresh: Vec<(&'a Message, GustoEvent)>,
    /// Events with nothing to hydrate (company events, unknown families).
    ignore: Vec<(&'a Message, GustoEvent)>,
    invalidate_locations: bool,
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
        Arc::new(Self {
            js,
            publisher,
            store,
            gusto,
            settings,
            metrics,
            locations: Mutex::new(HashMap::new()),
            mappings: Mutex::new(HashMap::new()),
            companies: Mutex::new(HashMap::new()),
            grant_companies,
            jobs: Default::default(),
            recent_lists: Mutex::new(HashMap::new()),
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
        // The partitions this replica works: all of them, or those its leases hold.
        let leases = match &self.settings.leases {
            Some(cfg) => Some(mlc_bus::lease::start(&self.js, &self.settings.topology, cfg.clone()).await?),
            None => None,
        };
        let held = match &leases {
            Some(l) => l.watch(),
            None => mlc_bus::lease::all_partitions(&self.settings.topology),
        };
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
        if let Some(l) = leases {
            l.release().await;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ hydrate

    /// Batches from the partitions of `spec` this replica holds.
    fn feed(&self, spec: ConsumerSpec, held: Held) -> mlc_bus::feed::Feed {
        mlc_bus::feed::Feed::start(
            self.js.clone(),
            self.settings.topology.clone(),
            spec,
            held,
            500,
            self.settings.linger,
        )
    }

    async fn hydrate_loop(
        self: Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        held: Held,
    ) -> Result<(), ProjectorError> {
        let mut feed = self.feed(ConsumerSpec::HYDRATOR, held);
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return Ok(()),
                b = feed.next_batch() => b,
            };
            let Some((_, batch)) = next else { return Ok(()) };
            self.hydrate_batch(&batch).await;
        }
    }

    /// Coalesces a batch per company and employee, then hydrates companies in parallel.
    pub async fn hydrate_batch(&self, batch: &[Message]) {
        let mut companies: BTreeMap<String, CompanyWork<'_>> = BTreeMap::new();
        for msg in batch {
            let event: GustoEvent = match mlc_bus::decode(&msg.subject, &msg.payload) {
                Ok(e) => e,
                Err(e) => {
                    self.dead_letter("projector", "", msg, &e.to_string()).await;
                    continue;
                }
            };
            let work = companies.entry(event.company_uuid.clone()).or_default();
            match classify(&event) {
                Target::Employee(id) => work.employees.entry(id).or_default().push((msg, event)),
                Target::Job(job) => match self.jobs.employee_of(&event.company_uuid, &job) {
                    Some(id) => work.employees.entry(id).or_default().push((msg, event)),
                    None => work.refresh.push((msg, event)),
                },
                Target::Company { locations_changed } => {
                    work.invalidate_locations |= locations_changed;
                    work.refresh.push((msg, event));
                }
                Target::Nothing => work.ignore.push((msg, event)),
            }
        }
        let sem = Arc::new(Semaphore::new(self.settings.fetch_concurrency.max(1)));
        join_all(
            companies.into_iter().map(|(company, work)| self.hydrate_company(company, work, sem.clone())),
        )
        .await;
    }

    async fn hydrate_company(&self, company_uuid: String, work: CompanyWork<'_>, sem: Arc<Semaphore>) {
        for (msg, ev) in &work.ignore {
            self.audit_event(ev, "event.ignored").await;
            ProjectorMetrics::inc(&self.metrics.events, "ignored");
            let _ = msg.ack().await;
        }
        let all: Vec<&(&Message, GustoEvent)> =
            work.employees.values().flatten().chain(work.refresh.iter()).collect();
        if all.is_empty() {
            return;
        }
        let company = match self.store.company(&company_uuid).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                for (msg, _) in &all {
                    self.dead_letter(
                        "projector",
                        &company_uuid,
                        msg,
                        "unknown company: add it with `mlc company add`",
                    )
                    .await;
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "store unavailable; retrying the batch later");
                for (msg, _) in &all {
                    let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await;
                }
                return;
            }
        };
        self.note_grant(&company);
        let _budget = BudgetOnDrop(self);
        if company.paused {
            self.park(&company, &all, "company is paused").await;
            return;
        }
        if work.invalidate_locations {
            self.locations.lock().unwrap_or_else(|p| p.into_inner()).remove(&company_uuid);
        }
        let grant = GrantId(company.grant_id.clone());

        // Read the list when the whole company must be refreshed or the batch is a burst.
        let use_list = !work.refresh.is_empty() || work.employees.len() > self.settings.burst_threshold;
        let mut listed: Option<Listed> = None;
        let newest_receipt = all.iter().map(|(_, e)| e.received_at_ms).max().unwrap_or(0);
        if let Some(recent) = self.recent_list(&company_uuid, newest_receipt) {
            listed = Some(recent);
        } else if use_list {
            let _permit = sem.acquire().await;
            match self.gusto.list_all_employees(&grant, &company_uuid, self.settings.list_page_size).await {
                Ok(list) => {
                    let pages = list.len().div_ceil(self.settings.list_page_size as usize).max(1);
                    for _ in 0..pages {
                        self.metrics.call(&company_uuid, "list_employees");
                    }
                    let map: Arc<HashMap<_, _>> =
                        Arc::new(list.into_iter().map(|e| (e.uuid.clone(), e)).collect());
                    self.recent_lists
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(company_uuid.clone(), (mlc_bus::now_ms(), map.clone()));
                    listed = Some(map);
                }
                Err(e) => {
                    self.gusto_failed(&company, &all, &e).await;
                    return;
                }
            }
        }
        let locations = match self.locations_of(&company_uuid, &grant, &sem).await {
            Ok(l) => l,
            Err(e) => {
                self.gusto_failed(&company, &all, &e).await;
                return;
            }
        };

        // Who to hydrate: the named employees, plus everyone on a refresh.
        let mut wanted: BTreeMap<String, Wanted<'_>> = BTreeMap::new();
        for (id, msgs) in &work.employees {
            wanted.insert(
                id.clone(),
                Wanted {
                    employee: id.clone(),
                    messages: msgs.iter().map(|(m, e)| (*m, e.clone())).collect(),
                },
            );
        }
        if !work.refresh.is_empty() {
            if let Some(list) = &listed {
                for id in list.keys() {
                    wanted
                        .entry(id.clone())
                        .or_insert_with(|| Wanted { employee: id.clone(), messages: Vec::new() });
                }
            }
        }
        let refresh_msgs: Vec<(&Message, GustoEvent)> =
            work.refresh.iter().map(|(m, e)| (*m, e.clone())).collect();

        let results = join_all(wanted.into_values().map(|w| {
            let sem = sem.clone();
            let listed = listed.as_ref();
            let locations = locations.clone();
            let company = &company;
            let grant = &grant;
            let refresh_msgs = &refresh_msgs;
            async move {
                let from_list = listed.and_then(|l| l.get(&w.employee)).cloned();
                let outcome =
                    self.hydrate_employee(company, grant, &w, from_list, &locations, refresh_msgs, sem).await;
                (w, outcome)
            }
        }))
        .await;

        let mut refresh_ok = true;
        for (w, outcome) in results {
            match outcome {
                Ok(()) => {
                    for (msg, ev) in &w.messages {
                        self.audit_event(ev, "event.hydrated").await;
                        ProjectorMetrics::inc(&self.metrics.events, "hydrated");
                        let _ = msg.ack().await;
                    }
                }
                Err(e) => {
                    refresh_ok = false;
                    let msgs: Vec<&(&Message, GustoEvent)> = w.messages.iter().collect();
                    self.gusto_failed(&company, &msgs, &e).await;
                }
            }
        }
        for (msg, ev) in &work.refresh {
            if refresh_ok {
                self.audit_event(ev, "event.hydrated").await;
                ProjectorMetrics::inc(&self.metrics.events, "hydrated");
                let _ = msg.ack().await;
            } else {
                let _ = msg.ack_with(AckKind::Nak(Some(self.retry_delay(msg)))).await;
            }
        }
    }

    /// Fetches (unless the list already brought it) and appends one employee's snapshot.
    #[allow(clippy::too_many_arguments)]
    async fn hydrate_employee(
        &self,
        company: &Company,
        grant: &GrantId,
        w: &Wanted<'_>,
        from_list: Option<gusto::Employee>,
        locations: &HashMap<String, gusto::Location>,
        refresh_msgs: &[(&Message, GustoEvent)],
        sem: Arc<Semaphore>,
    ) -> Result<(), GustoError> {
        // One fetch serves every event of the employee in this batch; the span continues
        // the first event's trace (the others' traces end at the gateway; the snapshot's
        // `causing_event_ids` ties them). It contains the Gusto call and the snapshot's
        // publish, whose headers carry it on to `map`.
        let first = w.messages.first().or(refresh_msgs.first());
        let span = tracing::info_span!("hydrate", otel.kind = "consumer", company = %company.company_uuid, employee = %w.employee);
        if let Some((msg, _)) = first {
            mlc_bus::extract_trace_context(msg.headers.as_ref(), &span);
        }
        async {
            let employee = match from_list {
                Some(e) => Some(e),
                None => {
                    let _permit = sem.acquire().await;
                    self.metrics.call(&company.company_uuid, "get_employee");
                    match self.gusto.get_employee(grant, &w.employee).await {
                        Ok(e) => Some(e),
                        // Only onboarding employees can be deleted in Gusto.
                        Err(GustoError::NotFound { .. }) => None,
                        Err(e) => return Err(e),
                    }
                }
            };
            if let Some(e) = &employee {
                self.jobs.learn(&company.company_uuid, e);
            }
            let causing: Vec<&GustoEvent> =
                w.messages.iter().map(|(_, e)| e).chain(refresh_msgs.iter().map(|(_, e)| e)).collect();
            self.append_snapshot(company, &w.employee, employee.as_ref(), locations, &causing)
                .await
                .map_err(|e| GustoError::Store(gusto::StoreError(e.to_string())))
        }
        .instrument(span)
        .await
    }

    /// Appends a snapshot when the content changed; a vanished employee becomes a
    /// `DELETED` snapshot of its last known content.
    async fn append_snapshot(
        &self,
        company: &Company,
        employee_uuid: &str,
        employee: Option<&gusto::Employee>,
        locations: &HashMap<String, gusto::Location>,
        causing: &[&GustoEvent],
    ) -> Result<(), mlc_bus::BusError> {
        let topo = &self.settings.topology;
        let subject = topo.employee_state(&company.company_uuid, employee_uuid);
        let stream = topo.stream(StreamKind::EmployeeState);
        let last = mlc_bus::last_on_subject::<EmployeeSnapshot>(&self.js, &stream, &subject).await?;
        let content: EmployeeContent = match employee {
            Some(e) => normalize(e, locations),
            None => match &last {
                Some(l) => EmployeeContent {
                    status: EmploymentStatus::Deleted as i32,
                    ..l.message.content.clone().unwrap_or_default()
                },
                None => return Ok(()),
            },
        };
        let hash = mlc_domain::content_hash(&content);
        if last.as_ref().is_some_and(|l| l.message.content_hash == hash) {
            ProjectorMetrics::inc(&self.metrics.snapshots, "unchanged");
            return Ok(());
        }
        let mut headers = async_nats::HeaderMap::new();
        mlc_bus::inject_trace_context(&mut headers);
        let snapshot = EmployeeSnapshot {
            company_uuid: company.company_uuid.clone(),
            employee_uuid: employee_uuid.to_string(),
            content: Some(content),
            gusto_version: employee.and_then(|e| e.version.clone()).unwrap_or_default(),
            causing_event_ids: causing
                .iter()
                .map(|e| e.event_uuid.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            fetched_at_ms: mlc_bus::now_ms(),
            trace: Some(TraceContext {
                traceparent: headers.get("traceparent").map(|v| v.as_str().to_string()).unwrap_or_default(),
                tracestate: String::new(),
            }),
            content_hash: hash.clone(),
            webhook_received_at_ms: causing
                .iter()
                .map(|e| e.received_at_ms)
                .filter(|t| *t > 0)
                .min()
                .unwrap_or(0),
        };
        // The previous sequence is part of the id: a retry of this very append dedupes,
        // while a state that legitimately returns later (A, B, A) is stored again.
        let prev = last.as_ref().map_or(0, |l| l.sequence);
        let msg_id = format!("{}:{}:{}", employee_uuid, prev, &hash[..16]);
        // Guarded by the sequence read above: if another replica appended meanwhile (a
        // takeover), this append fails and the employee is fetched again, so snapshots
        // are never stored out of order.
        let published = self.publisher.publish_if_last(&subject, &msg_id, &snapshot, prev).await?;
        ProjectorMetrics::inc(&self.metrics.snapshots, "appended");
        self.audit(AuditEntry {
            event_id: format!("snapshot:{}:{}", topo.stream(StreamKind::EmployeeState), published.sequence),
            kind: "snapshot.appended".into(),
            company: Some(company.company_uuid.clone()),
            employee: Some(employee_uuid.to_string()),
            detail: serde_json::json!({
                "seq": published.sequence,
                "content_hash": hash,
                "causing_events": snapshot.causing_event_ids,
            }),
            trace_id: trace_id(&snapshot.trace),
        })
        .await;
        Ok(())
    }

    /// The company's last list read, if it is recent and was made after every event of
    /// the batch was received (so it already reflects them).
    fn recent_list(
        &self,
        company: &str,
        newest_receipt_ms: i64,
    ) -> Option<Arc<HashMap<String, gusto::Employee>>> {
        let lists = self.recent_lists.lock().unwrap_or_else(|p| p.into_inner());
        let (at, list) = lists.get(company)?;
        let fresh = mlc_bus::now_ms().saturating_sub(*at) < RECENT_LIST_TTL_MS;
        (fresh && newest_receipt_ms > 0 && newest_receipt_ms + RECENT_LIST_MARGIN_MS < *at)
            .then(|| list.clone())
    }

    async fn locations_of(
        &self,
        company: &str,
        grant: &GrantId,
        sem: &Semaphore,
    ) -> Result<Arc<HashMap<String, gusto::Location>>, GustoError> {
        if let Some(l) = self.locations.lock().unwrap_or_else(|p| p.into_inner()).get(company) {
            return Ok(l.clone());
        }
        let _permit = sem.acquire().await;
        self.metrics.call(company, "list_locations");
        let list = self.gusto.list_locations(grant, company).await?;
        let map = Arc::new(list.into_iter().map(|l| (l.uuid.clone(), l)).collect::<HashMap<_, _>>());
        self.locations.lock().unwrap_or_else(|p| p.into_inner()).insert(company.to_string(), map.clone());
        Ok(map)
    }

    /// A Gusto failure for some of a company's events: park, retry later, or give up.
    async fn gusto_failed(&self, company: &Company, msgs: &[&(&Message, GustoEvent)], e: &GustoError) {
        match e {
            GustoError::NeedsReauth { .. } | GustoError::UnknownGrant(_) => {
                self.metrics.error(&company.company_uuid, "needs_reauth");
                self.park(company, msgs, &e.to_string()).await;
            }
            // A configuration error: park (the reason names the version and the key);
            // the client holds further calls off, so there is no retry storm.
            GustoError::InvalidApiVersion { .. } => {
                self.metrics.error(&company.company_uuid, "invalid_api_version");
                self.park(company, msgs, &e.to_string()).await;
            }
            e if e.is_transient() => {
                let kind =
                    if matches!(e, GustoError::RateLimited { .. }) { "rate_limited" } else { "transient" };
                self.metrics.error(&company.company_uuid, kind);
                tracing::warn!(company = %company.company_uuid, error = %e, "Gusto call failed; will retry");
                for (msg, _) in msgs {
                    if self.attempts(msg) >= self.settings.max_attempts {
                        self.dead_letter(
                            "projector",
                            &company.company_uuid,
                            msg,
                            &format!("gave up after retries: {e}"),
                        )
                        .await;
                    } else {
                        let _ = msg.ack_with(AckKind::Nak(Some(self.retry_delay(msg)))).await;
                    }
                }
            }
            e => {
                self.metrics.error(&company.company_uuid, "permanent");
                for (msg, _) in msgs {
                    self.dead_letter("projector", &company.company_uuid, msg, &e.to_string()).await;
                }
            }
        }
    }

    /// Holds a company's events back without losing them: they are redelivered after
    /// `park_delay`, and processed once the company is resumed or re-authorised.
    async fn park(&self, company: &Company, msgs: &[&(&Message, GustoEvent)], reason: &str) {
        tracing::warn!(company = %company.company_uuid, reason, events = msgs.len(), "company parked");
        self.metrics
            .parked
            .get_or_create(&metrics::Company { company: company.company_uuid.clone() })
            .inc_by(msgs.len() as u64);
        for (msg, ev) in msgs {
            if self.attempts(msg) == 1 {
                self.audit(AuditEntry {
                    event_id: format!("parked:{}", ev.event_uuid),
                    kind: "event.parked".into(),
                    company: Some(company.company_uuid.clone()),
                    employee: None,
                    detail: serde_json::json!({ "reason": reason, "event_type": ev.event_type }),
                    trace_id: trace_id(&ev.trace),
                })
                .await;
            }
            let _ = msg.ack_with(AckKind::Nak(Some(self.settings.park_delay))).await;
        }
    }

    fn attempts(&self, msg: &Message) -> u64 {
        msg.info().map(|i| i.delivered as u64).unwrap_or(1)
    }

    /// 1 s, 2 s, 4 s ... capped at a minute, by delivery count.
    fn retry_delay(&self, msg: &Message) -> Duration {
        let n = self.attempts(msg).min(7) as u32;
        Duration::from_secs(1u64 << n.saturating_sub(1)).min(Duration::from_secs(60))
    }

    // ------------------------------------------------------------------ map

    async fn map_loop(
        self: Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        held: Held,
    ) -> Result<(), ProjectorError> {
        let mut feed = self.feed(ConsumerSpec::MAPPER, held);
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return Ok(()),
                b = feed.next_batch() => b,
            };
            let Some((_, batch)) = next else { return Ok(()) };
            // Employees are independent; one employee's snapshots stay in order because
            // only its newest snapshot is ever mapped.
            let mut by_subject: BTreeMap<&str, Vec<&Message>> = BTreeMap::new();
            for m in &batch {
                by_subject.entry(m.subject.as_str()).or_default().push(m);
            }
            let sem = Semaphore::new(32);
            join_all(by_subject.into_values().map(|msgs| async {
                let _p = sem.acquire().await;
                for m in msgs {
                    self.map_message(m).await;
                }
            }))
            .await;
        }
    }

    async fn map_message(&self, msg: &Message) {
        let span = tracing::info_span!("map", otel.kind = "consumer", subject = %msg.subject);
        mlc_bus::extract_trace_context(msg.headers.as_ref(), &span);
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        async {
            match self.map_snapshot(&msg.subject, seq, &msg.payload, false).await {
                Ok(_) => {
                    let _ = msg.ack().await;
                }
                Err(MapError::Retry(reason)) => {
                    tracing::warn!(reason, "mapping deferred");
                    let _ = msg.ack_with(AckKind::Nak(Some(self.retry_delay(msg)))).await;
                }
                Err(MapError::Dead { company, reason }) => {
                    self.dead_letter("mapper", &company, msg, &reason).await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Maps the snapshot stored at `seq` on `subject`: the one code path of the live
    /// consumer, `mlc replay` and its `--dry-run` (which publishes nothing and returns
    /// the command that would have been emitted).
    pub async fn map_snapshot(
        &self,
        subject: &str,
        seq: u64,
        payload: &[u8],
        dry_run: bool,
    ) -> Result<MapOutcome, MapError> {
        let topo = &self.settings.topology;
        let snapshot: EmployeeSnapshot = mlc_bus::decode(subject, payload)
            .map_err(|e| MapError::Dead { company: String::new(), reason: e.to_string() })?;
        let state_stream = topo.stream(StreamKind::EmployeeState);
        let latest = mlc_bus::last_on_subject::<EmployeeSnapshot>(&self.js, &state_stream, subject)
            .await
            .map_err(|e| MapError::Retry(e.to_string()))?;
        if latest.is_some_and(|l| l.sequence > seq) {
            ProjectorMetrics::inc(&self.metrics.commands, "superseded");
            return Ok(MapOutcome::Superseded);
        }
        let company = match self.company_cached(&snapshot.company_uuid).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(MapError::Dead {
                    company: snapshot.company_uuid.clone(),
                    reason: "unknown company".into(),
                })
            }
            Err(e) => return Err(MapError::Retry(e.to_string())),
        };
        let mapping = self
            .mapping(&company)
            .map_err(|reason| MapError::Dead { company: company.company_uuid.clone(), reason })?;
        let mut command = mlc_domain::build_command(&snapshot, seq, &mapping, &company.visma_tenant);
        command.webhook_received_at_ms = snapshot.webhook_received_at_ms;
        let mut headers = async_nats::HeaderMap::new();
        mlc_bus::inject_trace_context(&mut headers);
        command.trace = Some(TraceContext {
            traceparent: headers.get("traceparent").map(|v| v.as_str().to_string()).unwrap_or_default(),
            tracestate: String::new(),
        });

        let subject = topo.visma_command(&company.company_uuid, &snapshot.employee_uuid);
        let last = mlc_bus::last_on_subject::<VismaCommand>(
            &self.js,
            &topo.stream(StreamKind::VismaCommands),
            &subject,
        )
        .await
        .map_err(|e| MapError::Retry(e.to_string()))?;
        if last.as_ref().is_some_and(|l| {
            l.message.content_hash == command.content_hash && l.message.parked_reason == command.parked_reason
        }) {
            ProjectorMetrics::inc(&self.metrics.commands, "unchanged");
            return Ok(MapOutcome::Unchanged);
        }
        if dry_run {
            return Ok(MapOutcome::Emitted(Box::new(command)));
        }
        let published = self
            .publisher
            .publish(&subject, &mlc_domain::command_msg_id(&command), &command)
            .await
            .map_err(|e| MapError::Retry(e.to_string()))?;
        ProjectorMetrics::inc(
            &self.metrics.commands,
            if command.parked_reason.is_empty() { "emitted" } else { "parked" },
        );
        self.audit(AuditEntry {
            event_id: format!("command:{}", command.command_id),
            kind: "command.emitted".into(),
            company: Some(company.company_uuid.clone()),
            employee: Some(snapshot.employee_uuid.clone()),
            detail: serde_json::json!({
                "command_id": command.command_id,
                "seq": published.sequence,
                "kind": command.kind().as_str_name(),
                "mapping_revision": command.mapping_revision,
                "parked_reason": command.parked_reason,
                "employee_cd": command.fields.as_ref().map(|f| f.employee_cd.clone()).unwrap_or_default(),
            }),
            trace_id: trace_id(&command.trace),
        })
        .await;
        Ok(MapOutcome::Emitted(Box::new(command)))
    }

    /// Re-reads `EMPLOYEE_STATE` from `start` through [`Projector::map_snapshot`]:
    /// `mlc replay employee-state`. Returns what each snapshot produced.
    pub async fn replay_state(
        &self,
        start: mlc_bus::replay::Start,
        company: Option<&str>,
        employee: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<(u64, Result<MapOutcome, MapError>)>, ProjectorError> {
        let topo = &self.settings.topology;
        let filter = match (company, employee) {
            (Some(c), Some(e)) => topo.employee_state(c, e),
            (c, _) => topo.company_filter(StreamKind::EmployeeState, c),
        };
        let mut results = Vec::new();
        let mut replay =
            mlc_bus::replay::Replay::open(&self.js, &topo.stream(StreamKind::EmployeeState), &filter, start)
                .await?;
        // Mapping is a few round trips per snapshot; chunks of snapshots are mapped
        // concurrently, one employee's snapshots still one after the other and in order.
        let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
        loop {
            let next = replay.next().await.transpose()?;
            let done = next.is_none();
            if let Some(m) = next {
                chunk.push(m);
            }
            if chunk.len() >= REPLAY_CHUNK || (done && !chunk.is_empty()) {
                let mut by_subject: BTreeMap<String, Vec<mlc_bus::replay::Replayed>> = BTreeMap::new();
                for m in chunk.drain(..) {
                    by_subject.entry(m.subject.clone()).or_default().push(m);
                }
                let sem = Semaphore::new(64);
                let done_chunk = join_all(by_subject.into_values().map(|msgs| async {
                    let _permit = sem.acquire().await;
                    let mut out = Vec::with_capacity(msgs.len());
                    let last = msgs.len() - 1;
                    for (i, m) in msgs.into_iter().enumerate() {
                        // A later snapshot of this employee is in the same chunk: this one
                        // is superseded without asking the stream.
                        if i < last {
                            ProjectorMetrics::inc(&self.metrics.commands, "superseded");
                            out.push((m.sequence, Ok(MapOutcome::Superseded)));
                            continue;
                        }
                        out.push((
                            m.sequence,
                            self.map_snapshot(&m.subject, m.sequence, &m.payload, dry_run).await,
                        ));
                    }
                    out
                }))
                .await;
                results.extend(done_chunk.into_iter().flatten());
            }
            if done {
                break;
            }
        }
        results.sort_by_key(|(seq, _)| *seq);
        Ok(results)
    }

    /// The company record, read from the store at most every two seconds: mapping runs
    /// per snapshot, and a replay maps thousands a second. Pausing or re-mapping a company
    /// therefore takes effect within two seconds.
    async fn company_cached(&self, uuid: &str) -> Result<Option<Company>, mlc_store::StoreError> {
        let now = std::time::Instant::now();
        if let Some((at, c)) = self.companies.lock().unwrap_or_else(|p| p.into_inner()).get(uuid) {
            if now.duration_since(*at) < Duration::from_secs(2) {
                return Ok(Some(c.clone()));
            }
        }
        let found = self.store.company(uuid).await?;
        if let Some(c) = &found {
            self.companies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(uuid.to_string(), (now, c.clone()));
        }
        Ok(found)
    }

    /// The company's mapping, re-read when its file changes.
    fn mapping(&self, company: &Company) -> Result<Arc<Mapping>, String> {
        let path = {
            let p = PathBuf::from(&company.mapping_path);
            if p.is_absolute() {
                p
            } else {
                self.settings.mappings_dir.join(p)
            }
        };
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("mapping file {}: {e}", path.display()))?;
        if let Some((t, m)) = self.mappings.lock().unwrap_or_else(|p| p.into_inner()).get(&path) {
            if *t == mtime {
                return Ok(m.clone());
            }
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("mapping file {}: {e}", path.display()))?;
        let mapping =
            Arc::new(Mapping::from_toml_str(&text, &path.display().to_string()).map_err(|e| e.to_string())?);
        self.mappings.lock().unwrap_or_else(|p| p.into_inner()).insert(path, (mtime, mapping.clone()));
        Ok(mapping)
    }

    // ------------------------------------------------------------------ shared

    async fn dead_letter(&self, stage: &str, company: &str, msg: &Message, reason: &str) {
        let info = msg.info().ok();
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .unwrap_or_else(|| format!("{}:{}", msg.subject, info.as_ref().map_or(0, |i| i.stream_sequence)));
        let letter = DeadLetter {
            stage: stage.to_string(),
            original_id: id.clone(),
            original_subject: msg.subject.to_string(),
            original_payload: msg.payload.to_vec(),
            reason: reason.to_string(),
            attempts: info.as_ref().map_or(1, |i| i.delivered as u32),
            failed_at_ms: mlc_bus::now_ms(),
            trace: None,
            company_uuid: company.to_string(),
        };
        let subject =
            self.settings.topology.dead_letter(stage, if company.is_empty() { "unknown" } else { company });
        match self.publisher.publish(&subject, &format!("dlq:{stage}:{id}"), &letter).await {
            Ok(_) => {
                self.metrics.dead_letters.inc();
                tracing::warn!(stage, reason, "dead-lettered");
                let _ = msg.ack_with(AckKind::Term).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot dead-letter; redelivering later");
                let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await;
            }
        }
    }

    async fn audit_event(&self, ev: &GustoEvent, kind: &str) {
        self.audit(AuditEntry {
            event_id: format!("event:{}", ev.event_uuid),
            kind: kind.to_string(),
            company: Some(ev.company_uuid.clone()),
            employee: (!ev.entity_uuid.is_empty() && ev.entity_type == "Employee")
                .then(|| ev.entity_uuid.clone()),
            detail: serde_json::json!({
                "event_type": ev.event_type,
                "entity_type": ev.entity_type,
                "source": ev.source().as_str_name(),
                "received_at_ms": ev.received_at_ms,
            }),
            trace_id: trace_id(&ev.trace),
        })
        .await;
    }

    async fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::warn!(error = %e, kind = %entry.kind, "audit append failed");
        }
    }

    /// Publishes consumer lag, the depth of DEAD_LETTERS and the rate budgets every few
    /// seconds.
    async fn lag_loop(self: Arc<Self>, _stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let topo = &self.settings.topology;
            for spec in [ConsumerSpec::HYDRATOR, ConsumerSpec::MAPPER] {
                let Ok(stream) = self.js.get_stream(topo.stream(spec.stream)).await else { continue };
                for durable in topo.durables(&spec) {
                    if let Ok(mut c) =
                        stream.get_consumer::<jetstream::consumer::pull::Config>(&durable).await
                    {
                        if let Ok(info) = c.info().await {
                            self.metrics
                                .consumer_pending
                                .get_or_create(&metrics::Consumer { consumer: durable })
                                .set((info.num_pending + info.num_ack_pending as u64) as i64);
                        }
                    }
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

/// Refreshes the rate budget gauges when a company's batch is done, however it ended.
struct BudgetOnDrop<'a>(&'a Projector);

impl Drop for BudgetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.update_rate_budget();
    }
}

/// Why a snapshot could not be mapped now.
#[derive(Debug)]
pub enum MapError {
    /// The broker or the store is unavailable: try again later.
    Retry(String),
    /// The snapshot cannot be mapped until a person acts (unknown company, bad mapping).
    Dead { company: String, reason: String },
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

/// What an event asks the projector to re-read.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Employee(String),
    /// A job or compensation event that does not name its employee: resolved through
    /// the job index, else the company is re-read.
    Job(String),
    Company {
        locations_changed: bool,
    },
    Nothing,
}

/// Employee events name the employee; job, compensation and address events may carry it
/// in `references.employee_uuid`; otherwise the company is re-read.
fn classify(ev: &GustoEvent) -> Target {
    let referenced = || -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&ev.raw_body).ok()?;
        v.get("references")?.get("employee_uuid")?.as_str().map(str::to_string)
    };
    match ev.entity_type.as_str() {
        "Employee" if !ev.entity_uuid.is_empty() => Target::Employee(ev.entity_uuid.clone()),
        "Location" => Target::Company { locations_changed: true },
        "EmployeeJobCompensation" | "Job" | "Compensation" => match referenced() {
            Some(id) => Target::Employee(id),
            None if !ev.entity_uuid.is_empty() => Target::Job(ev.entity_uuid.clone()),
            None => Target::Company { locations_changed: false },
        },
        "WorkAddress" | "HomeAddress" | "Termination" | "Rehire" => match referenced() {
            Some(id) => Target::Employee(id),
            None => Target::Company { locations_changed: false },
        },
        // Employee sub-resources the sync does not map (bank accounts, forms, benefits,
        // payment methods): nothing to re-read.
        "BankAccount" | "Form" | "EmployeeBenefit" | "Garnishment" | "PaymentMethod" => Target::Nothing,
        _ if ev.event_type.starts_with("employee.") => match referenced() {
            Some(id) => Target::Employee(id),
            None if !ev.entity_uuid.is_empty() && ev.entity_type.is_empty() => {
                Target::Employee(ev.entity_uuid.clone())
            }
            None => Target::Company { locations_changed: false },
        },
        _ => Target::Nothing,
    }
}

fn trace_id(t: &Option<TraceContext>) -> Option<String> {
    let tp = &t.as_ref()?.traceparent;
    tp.split('-').nth(1).map(str::to_string).filter(|s| s.len() == 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(entity_type: &str, entity: &str, body: &str) -> GustoEvent {
        GustoEvent {
            event_type: "employee.updated".into(),
            entity_type: entity_type.into(),
            entity_uuid: entity.into(),
            raw_body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn events_are_classified_by_what_they_touch() {
        assert_eq!(classify(&ev("Employee", "e1", "{}")), Target::Employee("e1".into()));
        assert_eq!(classify(&ev("Location", "l1", "{}")), Target::Company { locations_changed: true });
        assert_eq!(
            classify(&ev("WorkAddress", "w1", r#"{"references":{"employee_uuid":"e2"}}"#)),
            Target::Employee("e2".into())
        );
        assert_eq!(classify(&ev("EmployeeJobCompensation", "j1", "{}")), Target::Job("j1".into()));
        assert_eq!(
            classify(&ev("EmployeeJobCompensation", "", "{}")),
            Target::Company { locations_changed: false }
        );
        let mut company = ev("Company", "c1", "{}");
        company.event_type = "company.updated".into();
        assert_eq!(classify(&company), Target::Nothing);
    }

    /// Reference V.2/V.4: both spellings of the effective termination re-read the
    /// employee; event families added after 2025-06-15 are ignored (audited and counted
    /// as `ignored` by `hydrate_company`), never dead-lettered.
    #[test]
    fn new_and_unknown_event_types_are_handled() {
        for t in ["employee.terminated_effective", "employee.termination_effective"] {
            let mut e = ev("Employee", "e1", "{}");
            e.event_type = t.into();
            assert_eq!(classify(&e), Target::Employee("e1".into()), "{t}");
        }
        for (t, entity) in [
            ("company.provisioned", "Company"),
            ("company.suspended_effective", "Company"),
            ("payroll.deleted", "Payroll"),
            ("payroll_sync.completed", "PayrollSync"),
            ("time_sheets_batch.completed", "TimeSheetsBatch"),
            ("employee.bank_account.created", "BankAccount"),
            ("something.never_seen", "NeverSeen"),
        ] {
            let mut e = ev(entity, "x1", "{}");
            e.event_type = t.into();
            assert_eq!(classify(&e), Target::Nothing, "{t}");
        }
    }
}
