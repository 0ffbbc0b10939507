//! The status model: what `mlc status` shows and the console's overview renders.
//!
//! [`gather`] reads (and never creates or changes) the streams, the services' durable
//! consumers, the shared Gusto rate window, the store's companies and grants, the dead
//! letters and the sync outcomes, and the services' readiness endpoints. `mlc status`
//! connects read-only: a missing stream is an error naming the prefix, with the prefixes
//! that do exist ([`known_prefixes`]), so a mistyped `nats.stream_prefix` cannot look like
//! an empty, healthy pipeline.
//!
//! The JSON shape (`mlc status --json`, `schema` 1) is documented in docs/CLI.md and kept
//! stable: fields may be added, none renamed or removed without a new `schema`.

use mlc_bus::replay::{Replay, Start};
use mlc_bus::{ConsumerSpec, StreamKind, Topology};
use mlc_config::Config;
use mlc_proto::v1::{DeadLetter, Outcome, SyncOutcome};
use mlc_store::{GrantRecord, Store};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Version of the JSON shape.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: u32,
    /// When this was read (RFC 3339, UTC).
    pub generated_at: String,
    /// `nats.stream_prefix`.
    pub prefix: String,
    pub services: Vec<ServiceStatus>,
    pub streams: Vec<StreamStatus>,
    pub consumers: Vec<ConsumerStatus>,
    pub companies: Vec<CompanyStatus>,
    /// Dead letters in the stream (all companies); `mlc dlq list`.
    pub dead_letters: u64,
    /// Outcome totals over the SYNC_OUTCOMES stream's retention: applied, unchanged,
    /// failed, parked, superseded.
    pub outcomes: BTreeMap<String, u64>,
    /// The newest outcomes, oldest first (at most 10).
    pub last_outcomes: Vec<OutcomeStatus>,
}

/// A service's readiness endpoint, as this host reaches it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// gateway, projector or writer.
    pub service: String,
    pub url: String,
    /// `ready`, `not_ready` (answered, but a dependency is missing) or `unreachable`.
    pub state: String,
    /// The service's own words (its /readyz body) or the connection error.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub stream: String,
    /// gusto-events, employee-state, visma-commands, sync-outcomes or dead-letters.
    pub kind: String,
    pub messages: u64,
    pub bytes: u64,
    /// First and last sequence stored (`mlc replay --from-seq` takes one of these).
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    pub consumer: String,
    pub stream: String,
    /// Stream sequence acknowledged through (everything at or below is done).
    pub ack_floor_seq: u64,
    /// Last stream sequence delivered to the service.
    pub delivered_seq: u64,
    /// Not yet delivered.
    pub pending: u64,
    /// Delivered, not yet acknowledged (being worked on, or held back: parked, waiting).
    pub in_flight: u64,
    pub redelivered: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompanyStatus {
    pub company: String,
    pub name: String,
    pub visma_tenant: String,
    pub paused: bool,
    /// `ok`, `needs_reauth` or `missing`.
    pub grant: String,
    pub grant_reason: Option<String>,
    /// `applied`, or `awaiting_review` (writes wait for `mlc match --apply`).
    pub first_connect: String,
    /// Gusto requests of this grant in the current rolling window, over every process.
    pub gusto_budget: Budget,
    /// Why the company's events are held back (paused, re-authorisation, API version), if
    /// they are.
    pub events_parked: Option<String>,
    /// Employees whose newest command was parked, by reason.
    pub parked: Vec<Parked>,
    pub dead_letters: u64,
    pub last_outcome: Option<OutcomeStatus>,
    pub outcomes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub used: u64,
    pub limit: u64,
    pub left: u64,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Parked {
    pub reason: String,
    pub employees: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutcomeStatus {
    pub company: String,
    pub employee: String,
    /// applied, unchanged, failed, parked or superseded.
    pub outcome: String,
    pub visma_employee_cd: String,
    pub detail: String,
    pub latency_ms: i64,
    /// When the writer decided (RFC 3339, UTC); `age_secs` before `generated_at`.
    pub at: Option<String>,
    pub age_secs: Option<i64>,
}

/// The stored grant state in the RUNBOOK's words: `ok`, `needs_reauth`, `missing`.
pub fn grant_state(g: Option<&GrantRecord>) -> &'static str {
    match g.map(|g| g.status.as_str()) {
        None => "missing",
        Some("active") => "ok",
        Some(_) => "needs_reauth",
    }
}

/// What a person reads for a [`grant_state`].
pub fn grant_label(state: &str) -> &str {
    match state {
        "ok" => "ok",
        "needs_reauth" => "needs re-authorisation",
        "missing" => "missing",
        other => other,
    }
}

fn outcome_name(o: Outcome) -> String {
    o.as_str_name().trim_start_matches("OUTCOME_").to_lowercase()
}

/// The stream kind as an operator types it (`mlc replay <stream>`).
pub fn kind_name(kind: StreamKind) -> String {
    kind.base_name().to_lowercase().replace('_', "-")
}

/// The stream prefixes this server holds an installation under, for an error about a
/// prefix that has none: "`ux`, `demo`", or "none".
pub async fn known_prefixes(js: &async_nats::jetstream::Context) -> String {
    use futures::TryStreamExt as _;
    let names: Vec<String> = js.stream_names().try_collect().await.unwrap_or_default();
    let suffix = format!("_{}", StreamKind::GustoEvents.base_name());
    let mut known: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(&suffix))
        .map(|p| format!("`{}`", p.to_lowercase()))
        .collect();
    if names.iter().any(|n| n == StreamKind::GustoEvents.base_name()) {
        known.push("`` (none)".into());
    }
    known.sort();
    if known.is_empty() {
        "none".to_string()
    } else {
        known.join(", ")
    }
}

/// As [`gather`], from a process's dependencies (the console's).
pub async fn gather_deps(deps: &mlc_runtime::Deps) -> anyhow::Result<Status> {
    gather(&deps.cfg, deps.store()?, &deps.js, &deps.topo).await
}

/// Reads everything [`Status`] shows; creates nothing (see the module docs). The caller
/// connected with the access it needs (`mlc status`: [`mlc_runtime::Access::ReadOnly`]).
pub async fn gather(
    cfg: &Config,
    store: &Store,
    js: &async_nats::jetstream::Context,
    topo: &Topology,
) -> anyhow::Result<Status> {
    gather_with(cfg, store, js, topo, &mut Outcomes::default()).await
}

/// SYNC_OUTCOMES folded into what the status shows. [`gather`] folds the whole stream
/// (the CLI runs once); a reader that lives on (the console) keeps one and each
/// [`gather_with`] folds only the outcomes that arrived since: at 10,000 employees the
/// whole stream takes seconds to read, the new part milliseconds.
#[derive(Default)]
pub struct Outcomes {
    /// The next stream sequence to read.
    next_seq: u64,
    totals: BTreeMap<String, u64>,
    per_company: BTreeMap<String, BTreeMap<String, u64>>,
    newest_per_employee: BTreeMap<(String, String), SyncOutcome>,
    last_of_company: BTreeMap<String, SyncOutcome>,
    /// The newest 10, oldest first.
    last: VecDeque<SyncOutcome>,
    /// Every outcome decided in the last [`RECENT_MS`], oldest first (the console's charts).
    pub recent: VecDeque<SyncOutcome>,
}

/// How far back [`Outcomes::recent`] reaches.
pub const RECENT_MS: i64 = 3_600_000;

impl Outcomes {
    /// Reads the outcomes after the last one folded, up to the stream's end.
    async fn catch_up(
        &mut self,
        js: &async_nats::jetstream::Context,
        topo: &Topology,
        last_seq: u64,
        now: i64,
    ) -> anyhow::Result<()> {
        if self.next_seq > last_seq + 1 {
            // The stream is younger than the fold (deleted and made again): start over.
            *self = Outcomes::default();
        }
        if self.next_seq <= last_seq {
            let mut replay = Replay::open(
                js,
                &topo.stream(StreamKind::SyncOutcomes),
                &topo.wildcard(StreamKind::SyncOutcomes),
                Start::Sequence(self.next_seq.max(1)),
            )
            .await?;
            while let Some(m) = replay.next().await {
                let m = m?;
                let o: SyncOutcome = mlc_bus::decode(&m.subject, &m.payload)?;
                self.next_seq = m.sequence + 1;
                self.fold(o);
            }
        }
        while self.recent.front().is_some_and(|o| o.decided_at_ms < now - RECENT_MS) {
            self.recent.pop_front();
        }
        Ok(())
    }

    fn fold(&mut self, o: SyncOutcome) {
        let name = outcome_name(o.outcome());
        *self.totals.entry(name.clone()).or_default() += 1;
        *self.per_company.entry(o.company_uuid.clone()).or_default().entry(name).or_default() += 1;
        self.newest_per_employee.insert((o.company_uuid.clone(), o.employee_uuid.clone()), o.clone());
        self.last_of_company.insert(o.company_uuid.clone(), o.clone());
        if self.last.len() == 10 {
            self.last.pop_front();
        }
        self.last.push_back(o.clone());
        if o.decided_at_ms >= mlc_bus::now_ms() - RECENT_MS {
            self.recent.push_back(o);
        }
    }
}

/// As [`gather`], folding the outcomes into `fold` from where it stopped.
pub async fn gather_with(
    cfg: &Config,
    store: &Store,
    js: &async_nats::jetstream::Context,
    topo: &Topology,
    fold: &mut Outcomes,
) -> anyhow::Result<Status> {
    let now = mlc_bus::now_ms();
    // Each part is a few round trips to NATS (or HTTP for the services' probes): side by
    // side, a busy machine's latency is paid once, not once per part.
    let (services, streams, consumers, letters, usage) = tokio::join!(
        services(cfg),
        streams(js, topo),
        consumers(js, topo),
        dead_letters(js, topo),
        mlc_bus::ratelimit::usage(js, topo)
    );
    let (streams, consumers) = (streams?, consumers?);
    let (dead_letters, letters_per_company) = letters?;

    // Outcomes: only what arrived since the fold last read (all of them for the CLI).
    let outcomes_last_seq =
        streams.iter().find(|st| st.kind == kind_name(StreamKind::SyncOutcomes)).map(|st| st.last_seq);
    fold.catch_up(js, topo, outcomes_last_seq.unwrap_or(0), now).await?;
    let Outcomes { totals: outcomes, per_company, newest_per_employee, last_of_company, last, .. } = &*fold;
    let outcome_status = |o: &SyncOutcome| OutcomeStatus {
        company: o.company_uuid.clone(),
        employee: o.employee_uuid.clone(),
        outcome: outcome_name(o.outcome()),
        visma_employee_cd: o.visma_employee_cd.clone(),
        detail: o.detail.clone(),
        latency_ms: o.latency_ms,
        at: (o.decided_at_ms > 0).then(|| crate::output::rfc3339(o.decided_at_ms)).flatten(),
        age_secs: (o.decided_at_ms > 0).then(|| ((now - o.decided_at_ms) / 1000).max(0)),
    };

    let usage = usage?.unwrap_or_default();
    let limit = u64::from(cfg.gusto.rate_limit);
    let mut companies = Vec::new();
    for c in store.companies().await? {
        let grant = store.grant(&c.grant_id).await?;
        let used = usage.get(&c.grant_id.replace(['.', '*', '>', ' '], "_")).copied().unwrap_or(0);
        let mut parked: BTreeMap<String, u64> = BTreeMap::new();
        for ((company, _), o) in newest_per_employee {
            if company == &c.company_uuid && o.outcome() == Outcome::Parked {
                *parked.entry(o.detail.clone()).or_default() += 1;
            }
        }
        companies.push(CompanyStatus {
            grant: grant_state(grant.as_ref()).to_string(),
            grant_reason: grant.and_then(|g| g.status_reason),
            first_connect: if c.first_connect_applied { "applied" } else { "awaiting_review" }.into(),
            gusto_budget: Budget {
                used,
                limit,
                left: limit.saturating_sub(used),
                window_secs: cfg.gusto.rate_window_ms / 1000,
            },
            events_parked: crate::gusto_version::parked_reason(store, &c.company_uuid).await?,
            parked: parked.into_iter().map(|(reason, employees)| Parked { reason, employees }).collect(),
            dead_letters: letters_per_company.get(&c.company_uuid).copied().unwrap_or(0),
            last_outcome: last_of_company.get(&c.company_uuid).map(outcome_status),
            outcomes: per_company.get(&c.company_uuid).cloned().unwrap_or_default(),
            company: c.company_uuid,
            name: c.name,
            visma_tenant: c.visma_tenant,
            paused: c.paused,
        });
    }

    Ok(Status {
        schema: SCHEMA,
        generated_at: crate::output::rfc3339(now).unwrap_or_default(),
        prefix: topo.prefix().to_string(),
        services,
        streams,
        consumers,
        companies,
        dead_letters,
        outcomes: outcomes.clone(),
        last_outcomes: last.iter().map(outcome_status).collect(),
    })
}

/// The services' durable consumers that exist (one appears when its service first starts).
async fn consumers(
    js: &async_nats::jetstream::Context,
    topo: &Topology,
) -> anyhow::Result<Vec<ConsumerStatus>> {
    let mut consumers = Vec::new();
    for spec in ConsumerSpec::ALL {
        let name = topo.stream(spec.stream);
        let stream = js.get_stream_no_info(&name).await.map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?;
        for durable in topo.durables(&spec) {
            // A consumer appears when its service first starts; until then there is none.
            let Ok(mut c) =
                stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(&durable).await
            else {
                continue;
            };
            let info = c.info().await.map_err(|e| anyhow::anyhow!("consumer {durable}: {e}"))?;
            consumers.push(ConsumerStatus {
                consumer: durable.clone(),
                stream: name.clone(),
                ack_floor_seq: info.ack_floor.stream_sequence,
                delivered_seq: info.delivered.stream_sequence,
                pending: info.num_pending,
                in_flight: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
            });
        }
    }
    Ok(consumers)
}

/// The dead letters: how many, and per company.
async fn dead_letters(
    js: &async_nats::jetstream::Context,
    topo: &Topology,
) -> anyhow::Result<(u64, BTreeMap<String, u64>)> {
    let mut letters_per_company: BTreeMap<String, u64> = BTreeMap::new();
    let mut dead_letters = 0;
    let mut replay = Replay::open(
        js,
        &topo.stream(StreamKind::DeadLetters),
        &topo.wildcard(StreamKind::DeadLetters),
        Start::Sequence(1),
    )
    .await?;
    while let Some(m) = replay.next().await {
        let m = m?;
        let l: DeadLetter = mlc_bus::decode(&m.subject, &m.payload)?;
        dead_letters += 1;
        *letters_per_company.entry(l.company_uuid).or_default() += 1;
    }
    Ok((dead_letters, letters_per_company))
}

/// Every work stream's size and sequences.
async fn streams(js: &async_nats::jetstream::Context, topo: &Topology) -> anyhow::Result<Vec<StreamStatus>> {
    let mut streams = Vec::new();
    for kind in StreamKind::ALL {
        let name = topo.stream(kind);
        let mut s = js.get_stream(&name).await.map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?;
        let info = s.info().await.map_err(|e| anyhow::anyhow!("stream {name}: {e}"))?;
        let st = &info.state;
        streams.push(StreamStatus {
            stream: name,
            kind: kind_name(kind),
            messages: st.messages,
            bytes: st.bytes,
            first_seq: st.first_sequence,
            last_seq: st.last_sequence,
            last_at: (st.messages > 0)
                .then(|| {
                    let ms = (st.last_timestamp.unix_timestamp_nanos() / 1_000_000) as i64;
                    crate::output::rfc3339(ms)
                })
                .flatten(),
        });
    }
    Ok(streams)
}

/// Each service's /readyz on its ops listener, as configured here (1 s each, in parallel).
async fn services(cfg: &Config) -> Vec<ServiceStatus> {
    let targets = [
        ("gateway", cfg.gateway.ops_listen.clone()),
        ("projector", cfg.projector.metrics_listen.clone()),
        ("writer", cfg.writer.metrics_listen.clone()),
    ];
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().ok();
    let probes = targets.into_iter().map(|(service, addr)| {
        let http = http.clone();
        async move {
            let url = format!("http://{addr}/readyz");
            let (state, detail) = match http {
                None => ("unreachable", "no HTTP client".to_string()),
                Some(h) => match h.get(&url).send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let body = r.text().await.unwrap_or_default();
                        (if ok { "ready" } else { "not_ready" }, body.trim().chars().take(200).collect())
                    }
                    Err(e) => ("unreachable", e.without_url().to_string()),
                },
            };
            ServiceStatus { service: service.into(), url, state: state.into(), detail }
        }
    });
    futures::future::join_all(probes).await
}
