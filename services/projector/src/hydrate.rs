//! Hydrate (`GUSTO_EVENTS` -> `EMPLOYEE_STATE`): a batch is planned per company (who is
//! wanted, whether the list is read), the employees are fetched, and a snapshot is
//! appended where the content changed. Every event ends with a [`Disposition`], which
//! the company's task hands to the consumer loop's [`mlc_bus::delivery::Settle`].

use crate::directory::{ListRead, Listed, Locations};
use crate::{normalize, Projector, ProjectorMetrics};
use async_nats::jetstream::Message;
use futures::future::join_all;
use gusto::{GrantId, GustoError};
use mlc_bus::delivery::{Disposition, Settled};
use mlc_bus::{BusError, StreamKind};
use mlc_proto::v1::{EmployeeContent, EmployeeSnapshot, EmploymentStatus, GustoEvent};
use mlc_store::{AuditEntry, AuditKind, Company};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// How long the events of a batch wait when the store does not answer (an outage, not
/// the events' fault: it spends no attempt).
const STORE_WAIT: Duration = Duration::from_secs(2);

/// How long events wait after a 429 that carried no `Retry-After` (Gusto documents one on
/// every 429, reference §4).
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

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

/// What every employee fetch of one company's batch shares.
struct CompanyBatch<'a> {
    company: &'a Company,
    grant: &'a GrantId,
    listed: Option<&'a Listed>,
    locations: &'a Locations,
    /// The company-wide events, whose traces and ids every snapshot of the batch carries.
    refresh_msgs: &'a [(&'a Message, GustoEvent)],
    sem: &'a Semaphore,
}

/// Why one employee could not be hydrated.
#[derive(Debug, thiserror::Error)]
enum HydrateError {
    #[error(transparent)]
    Gusto(#[from] GustoError),
    /// The snapshot append (reading the subject's last snapshot, or a lost append race).
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl Projector {
    /// Coalesces a batch per company and employee, then hydrates companies in parallel;
    /// each company's events are settled as soon as the company is done.
    pub async fn hydrate_batch(&self, batch: &[Message]) {
        let mut companies: BTreeMap<String, CompanyWork<'_>> = BTreeMap::new();
        for msg in batch {
            let event: GustoEvent = match mlc_bus::decode(&msg.subject, &msg.payload) {
                Ok(e) => e,
                Err(e) => {
                    self.settle_hydrate(msg, "", Disposition::dead("undecodable", e.to_string())).await;
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
        join_all(companies.into_iter().map(|(company, work)| {
            let sem = sem.clone();
            async move {
                for (msg, disposition) in self.hydrate_company(&company, work, &sem).await {
                    self.settle_hydrate(msg, &company, disposition).await;
                }
            }
        }))
        .await;
    }

    async fn settle_hydrate(&self, msg: &Message, company: &str, disposition: Disposition) {
        if let Settled::DeadLettered { .. } = self.hydrate_settle.settle(msg, company, disposition).await {
            self.metrics.dead_letters.inc();
        }
    }

    /// One company's part of a batch: what should happen to each of its events. The
    /// events that ended well are acked once their audit rows are stored, all in one
    /// write ([`Projector::audited`]).
    async fn hydrate_company<'m>(
        &self,
        company_uuid: &str,
        work: CompanyWork<'m>,
        sem: &Semaphore,
    ) -> Vec<(&'m Message, Disposition)> {
        let mut done = Done::default();
        let mut out = self.hydrate_company_events(company_uuid, work, sem, &mut done).await;
        out.extend(self.audited(done).await);
        out
    }

    async fn hydrate_company_events<'m>(
        &self,
        company_uuid: &str,
        work: CompanyWork<'m>,
        sem: &Semaphore,
        done: &mut Done<'m>,
    ) -> Vec<(&'m Message, Disposition)> {
        let mut out = Vec::new();
        for (msg, ev) in &work.ignore {
            done.push(msg, ev, AuditKind::EventIgnored, "ignored");
        }
        let all: Vec<&(&Message, GustoEvent)> =
            work.employees.values().flatten().chain(work.refresh.iter()).collect();
        if all.is_empty() {
            return out;
        }
        let every = |d: Disposition| all.iter().map(move |(m, _)| (*m, d.clone())).collect::<Vec<_>>();
        let company = match self.store.company(company_uuid).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                out.extend(every(Disposition::dead(
                    "unknown_company",
                    "unknown company: add it with `mlc company add`",
                )));
                return out;
            }
            Err(e) => {
                tracing::warn!(error = %e, "store unavailable; retrying the batch later");
                out.extend(every(Disposition::Wait { delay: STORE_WAIT, reason: "store" }));
                return out;
            }
        };
        self.note_grant(&company);
        let _budget = BudgetOnDrop(self);
        if company.paused {
            out.extend(self.park(&company, &all, "company is paused").await);
            return out;
        }
        if work.invalidate_locations {
            self.directory.forget_locations(company_uuid);
        }
        let grant = GrantId(company.grant_id.clone());

        // Read the list when the whole company must be refreshed or the batch is a burst.
        let use_list = !work.refresh.is_empty() || work.employees.len() > self.settings.burst_threshold;
        let mut listed: Option<Listed> = None;
        // An event without a stream sequence (never, from a consumer) is never served
        // from a remembered list.
        let newest_seq = all.iter().map(|(m, _)| m.info().map_or(u64::MAX, |i| i.stream_sequence)).max();
        if let Some(recent) = newest_seq.and_then(|s| self.directory.recent_list(company_uuid, s)) {
            listed = Some(recent);
        } else if use_list {
            let _permit = sem.acquire().await;
            match self.list_read(&grant, company_uuid).await {
                Ok(list) => {
                    self.directory.remember_list(company_uuid, list.clone());
                    listed = Some(list);
                }
                Err(e) => {
                    out.extend(self.gusto_failed(&company, &all, e).await);
                    return out;
                }
            }
        }
        let locations = match self
            .directory
            .locations(&self.gusto, &grant, company_uuid, sem, || {
                self.metrics.call(company_uuid, "list_locations")
            })
            .await
        {
            Ok(l) => l,
            Err(e) => {
                out.extend(self.gusto_failed(&company, &all, e.into()).await);
                return out;
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
                for id in list.employees.keys() {
                    wanted
                        .entry(id.clone())
                        .or_insert_with(|| Wanted { employee: id.clone(), messages: Vec::new() });
                }
            }
        }
        let refresh_msgs: Vec<(&Message, GustoEvent)> =
            work.refresh.iter().map(|(m, e)| (*m, e.clone())).collect();
        let batch = CompanyBatch {
            company: &company,
            grant: &grant,
            listed: listed.as_ref(),
            locations: &locations,
            refresh_msgs: &refresh_msgs,
            sem,
        };
        let results = join_all(wanted.into_values().map(|w| {
            let batch = &batch;
            async move {
                let outcome = self.hydrate_employee(batch, &w).await;
                (w, outcome)
            }
        }))
        .await;

        let mut refresh_failure = None;
        for (w, outcome) in results {
            match outcome {
                Ok(()) => {
                    for (msg, ev) in &w.messages {
                        done.push(msg, ev, AuditKind::EventHydrated, "hydrated");
                    }
                }
                Err(e) => {
                    refresh_failure.get_or_insert_with(|| e.to_string());
                    let msgs: Vec<&(&Message, GustoEvent)> = w.messages.iter().collect();
                    out.extend(self.gusto_failed(&company, &msgs, e).await);
                }
            }
        }
        for (msg, ev) in &work.refresh {
            match &refresh_failure {
                None => done.push(msg, ev, AuditKind::EventHydrated, "hydrated"),
                Some(cause) => out.push((
                    *msg,
                    Disposition::retry("refresh", format!("an employee of the company: {cause}")),
                )),
            }
        }
        out
    }

    /// Fetches (unless the list already brought it) and appends one employee's snapshot.
    async fn hydrate_employee(&self, batch: &CompanyBatch<'_>, w: &Wanted<'_>) -> Result<(), HydrateError> {
        let company = batch.company;
        // One fetch serves every event of the employee in this batch; the span continues
        // the first event's trace (the others' traces end at the gateway; the snapshot's
        // `causing_event_ids` ties them). It contains the Gusto call and the snapshot's
        // publish, whose headers carry it on to `map`.
        let first = w.messages.first().or(batch.refresh_msgs.first());
        let span = tracing::info_span!("hydrate", otel.kind = "consumer", company = %company.company_uuid, employee = %w.employee);
        if let Some((msg, _)) = first {
            mlc_bus::extract_trace_context(msg.headers.as_ref(), &span);
        }
        async {
            let topo = &self.settings.topology;
            let subject = topo.employee_state(&company.company_uuid, &w.employee);
            let last = mlc_bus::last_on_subject::<EmployeeSnapshot>(
                &self.js,
                &topo.stream(StreamKind::EmployeeState),
                &subject,
            )
            .await?;
            // A listed record serves unless a snapshot stored after the list began says
            // otherwise: then the list may be the older of the two (a redelivered event, a
            // later batch), and the employee is fetched.
            let listed = batch.listed.and_then(|l| {
                let e = l.employees.get(&w.employee)?;
                let newer = last.as_ref().is_some_and(|s| {
                    s.sequence > l.state_seq
                        && s.message.content_hash != mlc_domain::content_hash(&normalize(e, batch.locations))
                });
                (!newer).then_some(e)
            });
            let employee = match listed.cloned() {
                Some(e) => Some(e),
                None => {
                    let _permit = batch.sem.acquire().await;
                    self.metrics.call(&company.company_uuid, "get_employee");
                    match self.gusto.get_employee(batch.grant, &w.employee).await {
                        Ok(e) => Some(e),
                        // Only onboarding employees can be deleted in Gusto.
                        Err(GustoError::NotFound { .. }) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            if let Some(e) = &employee {
                self.jobs.learn(&company.company_uuid, e);
            }
            let causing: Vec<&GustoEvent> =
                w.messages.iter().map(|(_, e)| e).chain(batch.refresh_msgs.iter().map(|(_, e)| e)).collect();
            self.append_snapshot(company, &w.employee, employee.as_ref(), batch.locations, &causing, last)
                .await?;
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Appends a snapshot when the content changed (`last`: the employee's newest, read
    /// before the fetch); a vanished employee becomes a `DELETED` snapshot of its last
    /// known content.
    async fn append_snapshot(
        &self,
        company: &Company,
        employee_uuid: &str,
        employee: Option<&gusto::Employee>,
        locations: &HashMap<String, gusto::Location>,
        causing: &[&GustoEvent],
        last: Option<mlc_bus::Stored<EmployeeSnapshot>>,
    ) -> Result<(), mlc_bus::BusError> {
        let topo = &self.settings.topology;
        let subject = topo.employee_state(&company.company_uuid, employee_uuid);
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
            trace: Some(mlc_bus::trace::current().unwrap_or_default()),
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
        self.audit(
            AuditEntry::new(
                format!("snapshot:{}:{}", topo.stream(StreamKind::EmployeeState), published.sequence),
                AuditKind::SnapshotAppended,
            )
            .for_company(&company.company_uuid)
            .for_employee(employee_uuid)
            .with_detail(serde_json::json!({
                "seq": published.sequence,
                "content_hash": hash,
                "causing_events": snapshot.causing_event_ids,
            }))
            .with_trace_id(mlc_bus::trace::trace_id(&snapshot.trace)),
        )
        .await;
        Ok(())
    }

    /// Reads the company's whole employee list, marking where the event and state
    /// streams stood before the first page (see [`crate::directory::ListRead`]).
    async fn list_read(&self, grant: &GrantId, company_uuid: &str) -> Result<Listed, HydrateError> {
        let topo = &self.settings.topology;
        let began = std::time::Instant::now();
        let events_seq = mlc_bus::last_sequence(&self.js, &topo.stream(StreamKind::GustoEvents)).await?;
        let state_seq = mlc_bus::last_sequence(&self.js, &topo.stream(StreamKind::EmployeeState)).await?;
        let per = self.settings.list_page_size;
        let list = self.gusto.list_all_employees(grant, company_uuid, per).await?;
        for _ in 0..list.len().div_ceil(per as usize).max(1) {
            self.metrics.call(company_uuid, "list_employees");
        }
        Ok(Arc::new(ListRead::new(list, events_seq, state_seq, began)))
    }

    /// A failure for some of a company's events: park, retry later, or give up.
    async fn gusto_failed<'m>(
        &self,
        company: &Company,
        msgs: &[&(&'m Message, GustoEvent)],
        e: HydrateError,
    ) -> Vec<(&'m Message, Disposition)> {
        let every = |d: Disposition| msgs.iter().map(move |(m, _)| (*m, d.clone())).collect::<Vec<_>>();
        let e = match e {
            HydrateError::Bus(e) => {
                // Not Gusto's failure: the snapshot could not be appended (NATS, or another
                // replica appended first). The employee is fetched again.
                tracing::warn!(company = %company.company_uuid, error = %e, "snapshot append failed; will retry");
                return every(Disposition::retry("nats", e));
            }
            HydrateError::Gusto(e) => e,
        };
        match &e {
            GustoError::NeedsReauth { .. } | GustoError::UnknownGrant(_) => {
                self.metrics.error(&company.company_uuid, "needs_reauth");
                self.park(company, msgs, &e.to_string()).await
            }
            // A configuration error (or Gusto raised the app's minimum version): park, the
            // reason names the version and the key. The client holds further calls off
            // (5 s, doubling to 60 s while Gusto keeps refusing), so there is no retry
            // storm; the events come back when the hold ends, so they resume within
            // seconds of Gusto accepting the version again.
            GustoError::InvalidApiVersion { .. } => {
                self.metrics.error(&company.company_uuid, "invalid_api_version");
                let delay = self
                    .gusto
                    .version_refusal_left()
                    .map_or(self.settings.park_delay, |d| d.min(self.settings.park_delay));
                self.park_for(company, msgs, &e.to_string(), delay).await
            }
            // Gusto pacing us (the client already waited out its bounded number of 429s):
            // the events wait what Gusto's `Retry-After` asked, not the back-off. A wait,
            // not a failure: a grant throttled for a while (another client of it, a long
            // window) must not spend the events' error budget into dead letters.
            GustoError::RateLimited { retry_after } => {
                self.metrics.error(&company.company_uuid, "rate_limited");
                let delay = retry_after.unwrap_or(RATE_LIMIT_WAIT).max(Duration::from_millis(100));
                tracing::warn!(company = %company.company_uuid, ?delay, "Gusto rate limited; waiting its Retry-After");
                every(Disposition::Wait { delay, reason: "rate_limited" })
            }
            e if e.is_transient() => {
                self.metrics.error(&company.company_uuid, "transient");
                tracing::warn!(company = %company.company_uuid, error = %e, "Gusto call failed; will retry");
                every(Disposition::retry("gusto", e))
            }
            e => {
                self.metrics.error(&company.company_uuid, "permanent");
                every(Disposition::dead("permanent", e.to_string()))
            }
        }
    }

    /// Holds a company's events back without losing them: they wait `park_delay` and
    /// are processed once the company is resumed or re-authorised. A wait, not a
    /// failure: it spends nothing of the events' error budget.
    async fn park<'m>(
        &self,
        company: &Company,
        msgs: &[&(&'m Message, GustoEvent)],
        reason: &str,
    ) -> Vec<(&'m Message, Disposition)> {
        self.park_for(company, msgs, reason, self.settings.park_delay).await
    }

    /// [`Self::park`] for `delay` instead of `park_delay`.
    async fn park_for<'m>(
        &self,
        company: &Company,
        msgs: &[&(&'m Message, GustoEvent)],
        reason: &str,
        delay: Duration,
    ) -> Vec<(&'m Message, Disposition)> {
        tracing::warn!(company = %company.company_uuid, reason, events = msgs.len(), "company parked");
        self.metrics
            .parked
            .get_or_create(&crate::metrics::Company { company: company.company_uuid.clone() })
            .inc_by(msgs.len() as u64);
        let mut out = Vec::with_capacity(msgs.len());
        for (msg, ev) in msgs {
            // Audited once per event, on its first delivery.
            if msg.info().map_or(1, |i| i.delivered) == 1 {
                self.audit(
                    AuditEntry::new(format!("parked:{}", ev.event_uuid), AuditKind::EventParked)
                        .for_company(&company.company_uuid)
                        .with_detail(serde_json::json!({ "reason": reason, "event_type": ev.event_type }))
                        .with_trace_id(mlc_bus::trace::trace_id(&ev.trace)),
                )
                .await;
            }
            out.push((*msg, Disposition::Wait { delay, reason: "parked" }));
        }
        out
    }

    /// A handled event is acked only once its fate is in the audit log: an event acked
    /// without it would be accepted and never accounted for. The rows of a company's batch
    /// go in one group write with the other companies' (a commit per row cost a burst of a
    /// thousand events 0.6 s on SQLite).
    /// When the store refuses them, the events wait (an outage, not their fault) and are
    /// handled again; the snapshots they caused are there already, so the second time
    /// appends nothing but the rows.
    async fn audited<'m>(&self, done: Done<'m>) -> Vec<(&'m Message, Disposition)> {
        if done.0.is_empty() {
            return Vec::new();
        }
        let (events, entries): (Vec<_>, Vec<AuditEntry>) =
            done.0.into_iter().map(|(msg, entry, fate)| ((msg, fate), entry)).unzip();
        let rows = entries.len();
        let stored = match self.store.record_audits(entries).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, rows, "audit append failed");
                false
            }
        };
        events
            .into_iter()
            .map(|(msg, fate)| {
                if !stored {
                    return (msg, Disposition::Wait { delay: STORE_WAIT, reason: "store" });
                }
                ProjectorMetrics::inc(&self.metrics.events, fate);
                (msg, Disposition::Ack)
            })
            .collect()
    }
}

/// The events of a company's batch that ended well, with their audit rows and fates.
#[derive(Default)]
struct Done<'m>(Vec<(&'m Message, AuditEntry, &'static str)>);

impl<'m> Done<'m> {
    fn push(&mut self, msg: &&'m Message, ev: &GustoEvent, kind: AuditKind, fate: &'static str) {
        let mut entry = AuditEntry::new(format!("event:{}", ev.event_uuid), kind)
            .for_company(&ev.company_uuid)
            .with_detail(serde_json::json!({
                "event_type": ev.event_type,
                "entity_type": ev.entity_type,
                "source": ev.source().as_str_name(),
                "received_at_ms": ev.received_at_ms,
            }))
            .with_trace_id(mlc_bus::trace::trace_id(&ev.trace));
        if !ev.entity_uuid.is_empty() && ev.entity_type == "Employee" {
            entry = entry.for_employee(&ev.entity_uuid);
        }
        self.0.push((*msg, entry, fate));
    }
}

/// Refreshes the rate budget gauges when a company's batch is done, however it ended.
struct BudgetOnDrop<'a>(&'a Projector);

impl Drop for BudgetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.update_rate_budget();
    }
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
