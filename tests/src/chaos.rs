//! What a fault test needs besides the installation: bounded waits ([`within`]), a
//! timeline printed as it happens ([`Timeline`]), a seeded generator ([`Rng`]), a workload
//! that changes employees as people in Gusto do ([`workload`]), convergence
//! ([`converge`]) and the books a run is judged by ([`Ledger`]): Visma equals Gusto, no
//! duplicates, every accepted event and every command accounted for.
//!
//! Shared by the fault suite (`tests/tests/faults.rs`) and the store's fault tests
//! (`tests/tests/store_faults.rs`).

use crate::Stack;
use mlc_bus::StreamKind;
use mlc_proto::v1::{DeadLetter, GustoEvent, SyncOutcome, VismaCommand};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Awaits `f` for at most `limit`; past it the test fails naming what it waited for.
pub async fn within<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("gave up after {limit:?} waiting for {what}"),
    }
}

/// What happened when, printed as it happens and kept for the end of the run.
pub struct Timeline {
    t0: Instant,
    lines: Mutex<Vec<String>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline { t0: Instant::now(), lines: Mutex::new(Vec::new()) }
    }

    pub fn mark(&self, what: impl std::fmt::Display) {
        let line = format!("[{:>7.1}s] {what}", self.t0.elapsed().as_secs_f64());
        eprintln!("{line}");
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    pub fn print(&self) {
        println!("\ntimeline");
        for l in self.lines.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            println!("{l}");
        }
    }
}

/// SplitMix64: a small seeded generator, so a failing schedule can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn range_f(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const TITLES: &[&str] = &[
    "Partner",
    "Managing Director",
    "Consultant",
    "Senior Consultant",
    "Software Engineer",
    "Trainee",
    "Analyst",
    "Office Manager",
];
const FIRST: &[&str] =
    &["Ingrid", "Sigrid", "Ola", "Kari", "Bjørn", "Astrid", "Jens", "Liv", "Henrik", "Maja"];
const LAST: &[&str] = &["Hansen", "Johansson", "Nieminen", "Jónsson", "Larsen", "Berg", "Lund", "Dahl"];

/// One company as the workload changes it.
pub struct WorkCompany {
    pub uuid: String,
    pub locations: Vec<String>,
    pub departments: Vec<String>,
    /// (employee, terminated)
    pub employees: Vec<(String, bool)>,
}

impl WorkCompany {
    /// Every company of a fleet installation, as seeded.
    pub fn of(stack: &Stack) -> Vec<WorkCompany> {
        stack
            .companies
            .iter()
            .map(|c| WorkCompany {
                uuid: c.info.company_uuid.clone(),
                locations: c.info.location_uuids.clone(),
                departments: c.info.department_uuids.clone(),
                employees: c.info.employee_uuids.iter().map(|e| (e.clone(), false)).collect(),
            })
            .collect()
    }
}

#[derive(Default, Debug)]
pub struct WorkloadReport {
    pub ops: BTreeMap<&'static str, u64>,
    pub emitted: usize,
    pub took: Duration,
}

/// Changes employees as people in Gusto would (hires, renames, title and department
/// changes, transfers, terminations, rehires, office edits) until `target` events were
/// emitted, at about `rate` events per second.
pub async fn workload(
    sim: Arc<sim_gusto::Sim>,
    mut companies: Vec<WorkCompany>,
    seed: u64,
    target: usize,
    rate: f64,
) -> WorkloadReport {
    let mut rng = Rng(seed ^ 0x5EED);
    let mut report = WorkloadReport::default();
    let base = sim.state().events.len();
    let started = Instant::now();
    let emitted = |sim: &sim_gusto::Sim| sim.state().events.len() - base;
    while emitted(&sim) < target {
        let c = rng.below(companies.len());
        let wc = &mut companies[c];
        let roll = rng.below(100);
        let (op, result) = if roll < 8 {
            let req = sim_gusto::HireRequest {
                first_name: Some(rng.pick(FIRST).to_string()),
                last_name: Some(format!("{}-{}", rng.pick(LAST), rng.below(10_000))),
                title: Some(rng.pick(TITLES).to_string()),
                department_uuid: Some(rng.pick(&wc.departments).clone()),
                location_uuid: Some(rng.pick(&wc.locations).clone()),
                ..Default::default()
            };
            let r = sim.hire(&wc.uuid, req);
            if let Ok(id) = &r {
                wc.employees.push((id.clone(), false));
            }
            ("hire", r.map(|_| ()))
        } else {
            let i = rng.below(wc.employees.len());
            let (e, terminated) = wc.employees[i].clone();
            if terminated {
                let r = sim.rehire(&e, None);
                if r.is_ok() {
                    wc.employees[i].1 = false;
                }
                ("rehire", r)
            } else if roll < 30 {
                let patch = sim_gusto::EmployeePatch {
                    first_name: Some(rng.pick(FIRST).to_string()),
                    email: Some(format!("person{}@example.test", rng.below(1_000_000))),
                    ..Default::default()
                };
                ("rename", sim.update_employee(&e, patch))
            } else if roll < 50 {
                ("title", sim.change_title(&e, TITLES[rng.below(TITLES.len())]))
            } else if roll < 65 {
                ("department", sim.change_department(&e, &wc.departments[rng.below(wc.departments.len())]))
            } else if roll < 80 {
                ("transfer", sim.transfer(&e, &wc.locations[rng.below(wc.locations.len())], None))
            } else if roll < 88 {
                let r = sim.terminate(&e, None);
                if r.is_ok() {
                    wc.employees[i].1 = true;
                }
                ("terminate", r)
            } else {
                let patch = sim_gusto::LocationPatch {
                    phone_number: Some(format!("+47 2{:07}", rng.below(10_000_000))),
                    ..Default::default()
                };
                ("office edit", sim.edit_location(&wc.locations[rng.below(wc.locations.len())], patch))
            }
        };
        if result.is_ok() {
            *report.ops.entry(op).or_default() += 1;
        }
        let due = Duration::from_secs_f64(emitted(&sim) as f64 / rate);
        let elapsed = started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
    report.emitted = emitted(&sim);
    report.took = started.elapsed();
    report
}

/// `mlc reconcile --quiet` of every company: (company, in sync, what it said).
pub async fn reconcile_all(stack: &Stack) -> Vec<(String, bool, String)> {
    let mut out = Vec::new();
    for c in &stack.companies {
        let o = within(
            &format!("mlc reconcile of company {}", c.info.company_uuid),
            Duration::from_secs(120),
            stack.mlc(&["reconcile", "--company", &c.info.company_uuid, "--quiet"]),
        )
        .await;
        let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        out.push((c.info.company_uuid.clone(), o.status.success(), text));
    }
    out
}

/// Waits until every event Gusto emitted since `deliveries_before` got a final 2xx, then
/// until nothing is in flight and every company reconciles in sync; fails past `limit`
/// with the backlog, the reconcile reports and the services' logs.
pub async fn converge(stack: &Stack, events_before: usize, deliveries_before: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    let emitted: HashSet<String> =
        stack.gusto.events()[events_before..].iter().map(|e| e.uuid.clone()).collect();
    loop {
        let d = stack.gusto.deliveries();
        let done: HashSet<&str> = d[deliveries_before..]
            .iter()
            .filter(|x| x.status.is_some_and(|s| (200..300).contains(&s)) && !x.ack_lost)
            .filter_map(|x| x.event_uuid.as_deref())
            .collect();
        let missing = emitted.iter().filter(|e| !done.contains(e.as_str())).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} events never got a final 2xx from the gateway within {limit:?}{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut idle = 0;
    let mut last_report = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no convergence within {limit:?}: in flight {}, reconcile:\n{}{}",
            stack.in_flight().await,
            last_report
                .iter()
                .map(|(c, _, t): &(String, bool, String)| format!("{c}: {t}"))
                .collect::<String>(),
            stack.logs()
        );
        idle = if stack.in_flight().await == 0 { idle + 1 } else { 0 };
        if idle >= 3 {
            last_report = reconcile_all(stack).await;
            if last_report.iter().all(|(_, ok, _)| *ok) {
                return;
            }
            idle = 0;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The books of a run, read once it converged: what Gusto emitted and delivered, what
/// the connector accepted, hydrated, commanded and decided, and what Visma holds.
#[derive(Debug, Default)]
pub struct Ledger {
    pub emitted: usize,
    /// Distinct events Gusto delivered with a 2xx.
    pub delivered: usize,
    /// Delivered with a 2xx but not on GUSTO_EVENTS.
    pub not_accepted: Vec<String>,
    /// Distinct event uuids on GUSTO_EVENTS.
    pub accepted: usize,
    /// Accepted events by fate: hydrated, ignored (audit log), dead letter.
    pub fates: BTreeMap<&'static str, usize>,
    /// Accepted events neither audited nor dead-lettered.
    pub unaccounted: Vec<String>,
    pub commands: usize,
    /// Commands with neither an outcome nor a dead letter.
    pub undecided: Vec<String>,
    pub outcomes: BTreeMap<String, u64>,
    /// Commands with more than one APPLIED outcome (written to Visma twice).
    pub applied_twice: usize,
    pub letters: Vec<DeadLetter>,
    /// Visma employees held twice (by employeeCd).
    pub doubles: Vec<String>,
    /// (tenant, Visma employees, Gusto employees) where the two differ.
    pub miscounted: Vec<(String, usize, usize)>,
    pub gusto_employees: usize,
    pub visma_employees: usize,
}

impl Ledger {
    /// Reads the books for the events emitted since `events_before` (deliveries since
    /// `deliveries_before`).
    pub async fn read(stack: &Stack, events_before: usize, deliveries_before: usize) -> Ledger {
        let read = Duration::from_secs(120);
        let mut l = Ledger { emitted: stack.gusto.events().len() - events_before, ..Default::default() };
        let deliveries = stack.gusto.deliveries()[deliveries_before..].to_vec();
        let delivered: HashSet<String> = deliveries
            .iter()
            .filter(|d| d.status.is_some_and(|s| (200..300).contains(&s)))
            .filter_map(|d| d.event_uuid.clone())
            .collect();
        l.delivered = delivered.len();

        let events =
            within("GUSTO_EVENTS to be read", read, stack.stream_messages(StreamKind::GustoEvents)).await;
        let accepted: HashSet<String> = events
            .iter()
            .map(|m| mlc_bus::decode::<GustoEvent>(&m.subject, &m.payload).expect("a GustoEvent").event_uuid)
            .collect();
        l.accepted = accepted.len();
        l.not_accepted = delivered.iter().filter(|e| !accepted.contains(*e)).cloned().collect();

        let store = stack.store().await;
        let mut audit: HashMap<String, String> = HashMap::new();
        let mut after = 0;
        loop {
            let rows = store
                .audit(&mlc_store::AuditQuery { after_position: after, limit: 5_000, ..Default::default() })
                .await
                .expect("audit");
            let Some(last) = rows.last() else { break };
            after = last.position;
            for r in rows {
                audit.insert(r.event_id, r.kind);
            }
        }
        store.close().await;
        l.letters = within("DEAD_LETTERS to be read", read, stack.stream_messages(StreamKind::DeadLetters))
            .await
            .iter()
            .map(|m| mlc_bus::decode(&m.subject, &m.payload).expect("a DeadLetter"))
            .collect();
        let lettered: HashSet<&str> = l.letters.iter().map(|d| d.original_id.as_str()).collect();
        for id in &accepted {
            let fate = match audit.get(&format!("event:{id}")).map(String::as_str) {
                Some("event.hydrated") => "hydrated",
                Some("event.ignored") => "ignored",
                _ if lettered.contains(id.as_str()) => "dead letter",
                _ => {
                    l.unaccounted.push(id.clone());
                    "unaccounted"
                }
            };
            *l.fates.entry(fate).or_default() += 1;
        }

        let commands: Vec<VismaCommand> =
            within("VISMA_COMMANDS to be read", read, stack.stream_messages(StreamKind::VismaCommands))
                .await
                .iter()
                .map(|m| mlc_bus::decode(&m.subject, &m.payload).expect("a VismaCommand"))
                .collect();
        let outcomes: Vec<SyncOutcome> =
            within("SYNC_OUTCOMES to be read", read, stack.stream_messages(StreamKind::SyncOutcomes))
                .await
                .iter()
                .map(|m| mlc_bus::decode(&m.subject, &m.payload).expect("a SyncOutcome"))
                .collect();
        l.commands = commands.len();
        let mut applied: HashMap<&str, u32> = HashMap::new();
        for o in &outcomes {
            *l.outcomes
                .entry(o.outcome().as_str_name().trim_start_matches("OUTCOME_").to_lowercase())
                .or_default() += 1;
            if o.outcome() == mlc_proto::v1::Outcome::Applied {
                *applied.entry(o.command_id.as_str()).or_default() += 1;
            }
        }
        l.applied_twice = applied.values().filter(|n| **n > 1).count();
        let decided: HashSet<&str> = outcomes.iter().map(|o| o.command_id.as_str()).collect();
        l.undecided = commands
            .iter()
            .map(|c| c.command_id.clone())
            .filter(|id| !decided.contains(id.as_str()) && !lettered.contains(id.as_str()))
            .collect();

        let gusto = stack.gusto.state_json();
        for c in &stack.companies {
            let in_gusto = gusto["employees"].as_array().map_or(0, |a| {
                a.iter().filter(|e| e["company_uuid"] == c.info.company_uuid.as_str()).count()
            });
            let in_visma = stack.visma.employees(&c.tenant_id);
            let mut cds = HashSet::new();
            for e in &in_visma {
                if !cds.insert(e.employee_cd.clone()) {
                    l.doubles.push(format!("{} employeeCd {}", c.tenant_key, e.employee_cd));
                }
            }
            if in_visma.len() != in_gusto {
                l.miscounted.push((c.tenant_key.clone(), in_visma.len(), in_gusto));
            }
            l.gusto_employees += in_gusto;
            l.visma_employees += in_visma.len();
        }
        l
    }

    /// The books' rows for a figures table.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("webhook events emitted by Gusto".to_string(), self.emitted.to_string()),
            ("events delivered (distinct, 2xx)".into(), self.delivered.to_string()),
            ("events accepted (distinct on GUSTO_EVENTS)".into(), self.accepted.to_string()),
        ];
        for (k, v) in &self.fates {
            rows.push((format!("  {k}"), v.to_string()));
        }
        rows.push((
            "events accounted for".into(),
            format!("{} of {}", self.accepted - self.unaccounted.len(), self.accepted),
        ));
        rows.push(("commands (VISMA_COMMANDS)".into(), self.commands.to_string()));
        for (k, v) in &self.outcomes {
            rows.push((format!("  {k}"), v.to_string()));
        }
        rows.push(("commands without an outcome".into(), self.undecided.len().to_string()));
        rows.push(("dead letters".into(), self.letters.len().to_string()));
        rows.push((
            "Gusto employees / Visma employees".into(),
            format!("{} / {}", self.gusto_employees, self.visma_employees),
        ));
        rows.push((
            "duplicates (Visma doubles, commands applied twice)".into(),
            format!("{} / {}", self.doubles.len(), self.applied_twice),
        ));
        rows
    }

    /// Nothing lost, nothing doubled, everything decided; Visma equals Gusto.
    pub fn assert_sound(&self) {
        assert_eq!(self.delivered, self.emitted, "every emitted event was delivered with a 2xx");
        assert!(
            self.not_accepted.is_empty(),
            "answered 2xx but not on GUSTO_EVENTS: {:?}",
            self.not_accepted
        );
        assert!(self.unaccounted.is_empty(), "accepted events with no fate: {:?}", self.unaccounted);
        assert!(
            self.undecided.is_empty(),
            "commands without an outcome or a dead letter: {:?}",
            self.undecided
        );
        assert!(self.doubles.is_empty(), "duplicate Visma employees: {:?}", self.doubles);
        assert_eq!(self.applied_twice, 0, "commands applied to Visma twice");
        assert!(
            self.miscounted.is_empty(),
            "tenants whose count differs from Gusto's (tenant, Visma, Gusto): {:?}",
            self.miscounted
        );
    }
}

/// Prints `rows` as a two-column table under `title`.
pub fn print_table(title: &str, rows: &[(String, String)]) {
    println!("\n{title}\n| {:<52} | {:>24} |\n|{}|{}|", "figure", "value", "-".repeat(54), "-".repeat(26));
    for (k, v) in rows {
        println!("| {k:<52} | {v:>24} |");
    }
}
