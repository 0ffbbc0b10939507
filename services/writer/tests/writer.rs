//! The writer against sim-visma, a private nats-server and a real store: what a user sees in
//! Visma and in SYNC_OUTCOMES / DEAD_LETTERS.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlc_bus::StreamKind;
use mlc_proto::v1::{
    CommandKind, DeadLetter, Outcome, SyncOutcome, VismaCommand, VismaEmployeeFields, VismaStatus,
};
use mlc_store::{Company, Store};
use mlc_testkit::{connected_company, Bus, TestDb};
use mlc_writer::{CrashPoint, RetryTuning, Step, WriterError, WriterMetrics, WriterSettings};
use prost::Message as _;
use sim_visma::{FaultSpec, SeedDepartment, SimConfig, SimHandle, DEFAULT_TENANT};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const COMPANY: &str = "c7a1e5f0-0001";
const TENANT: &str = "main";

/// A writer task and the sender that shuts it down.
type RunningWriter = (JoinHandle<Result<(), WriterError>>, oneshot::Sender<()>);

struct Harness {
    bus: Bus,
    sim: SimHandle,
    store: Arc<Store>,
    _db: TestDb,
    metrics: Arc<WriterMetrics>,
    writer: Option<RunningWriter>,
}

async fn start(db: TestDb, first_connect_applied: bool) -> Harness {
    let bus = Bus::start("w").await;
    let sim = sim_visma::start(SimConfig::default()).await.unwrap();
    sim.seed(DEFAULT_TENANT, &sim_visma::demo_seed()).unwrap();
    let store = Arc::new(db.store().await);
    let company = Company { first_connect_applied, ..connected_company(COMPANY, TENANT, Path::new("")) };
    store.put_company(&company).await.unwrap();
    Harness { bus, sim, store, _db: db, metrics: Arc::new(WriterMetrics::new()), writer: None }
}

/// Short delays so waits and retries fit in a test.
fn fast() -> RetryTuning {
    RetryTuning {
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(800),
        max_retry_after: Duration::from_secs(3),
        paused_delay: Duration::from_millis(200),
        first_connect_delay: Duration::from_millis(200),
        ..RetryTuning::default()
    }
}

impl Harness {
    fn settings(&self) -> WriterSettings {
        let cfg = visma::VismaConfig::new(
            DEFAULT_TENANT,
            sim_visma::DEFAULT_CLIENT_ID,
            sim_visma::DEFAULT_CLIENT_SECRET,
        )
        .with_endpoints(self.sim.base_url(), self.sim.token_url());
        let client = Arc::new(visma::VismaClient::new(cfg).unwrap());
        let mut s = WriterSettings::new(self.bus.topo.clone(), HashMap::from([(TENANT.to_string(), client)]));
        s.workers = 4;
        s.metrics = self.metrics.clone();
        s.retry = fast();
        s
    }

    fn spawn_writer(&mut self, settings: WriterSettings) {
        let (tx, rx) = oneshot::channel();
        let task =
            tokio::spawn(mlc_writer::run(self.bus.client.clone(), self.store.clone(), settings, async {
                let _ = rx.await;
            }));
        self.writer = Some((task, tx));
    }

    async fn stop_writer(&mut self) -> Result<(), WriterError> {
        let (task, tx) = self.writer.take().expect("writer running");
        let _ = tx.send(());
        task.await.expect("writer task")
    }

    /// Starts a writer that crashes right after its Visma write, publishes `cmd`, and waits
    /// for the crash (before the link, the outcome and the ack).
    async fn crash_after_write(&mut self, cmd: &VismaCommand, msg_id: &str) {
        let mut crashing = self.settings();
        crashing.crash_point = Some(CrashPoint::AfterVismaWrite);
        self.spawn_writer(crashing);
        self.publish(cmd, msg_id).await;
        let (task, _tx) = self.writer.take().unwrap();
        let ended =
            tokio::time::timeout(Duration::from_secs(20), task).await.expect("writer should crash").unwrap();
        assert!(matches!(ended, Err(WriterError::SimulatedCrash)), "{ended:?}");
    }

    async fn publish(&self, cmd: &VismaCommand, msg_id: &str) -> u64 {
        let subject = self.bus.topo.visma_command(&cmd.company_uuid, &cmd.employee_uuid);
        self.bus.publisher.publish(&subject, msg_id, cmd).await.unwrap().sequence
    }

    async fn read_all<M: prost::Message + Default>(&self, kind: StreamKind) -> Vec<M> {
        let stream = self.bus.js.get_stream(self.bus.topo.stream(kind)).await.unwrap();
        let last = stream.get_info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            if let Ok(m) = stream.get_raw_message(seq).await {
                out.push(M::decode(m.payload.as_ref()).unwrap());
            }
        }
        out
    }

    async fn outcomes(&self) -> Vec<SyncOutcome> {
        self.read_all(StreamKind::SyncOutcomes).await
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.read_all(StreamKind::DeadLetters).await
    }

    /// Waits until `count` outcomes of `employee` are stored; returns them.
    async fn wait_outcomes(&self, employee: &str, count: usize) -> Vec<SyncOutcome> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mine: Vec<_> =
                self.outcomes().await.into_iter().filter(|o| o.employee_uuid == employee).collect();
            if mine.len() >= count {
                return mine;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} outcomes of {employee}; have {mine:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn writes(&self) -> u64 {
        self.sim.write_counts().values().sum()
    }
}

fn fields(n: usize, department: &str) -> VismaEmployeeFields {
    VismaEmployeeFields {
        employee_cd: format!("G{n:04}"),
        first_name: format!("First{n}"),
        middle_name: String::new(),
        last_name: format!("Last{n}"),
        email: format!("e{n}@example.com"),
        phone: String::new(),
        department_id: department.into(),
        employee_class: "EMPSTD".into(),
        branch: "1".into(),
        calendar: "MAIN".into(),
        status: VismaStatus::Active as i32,
        address_line1: format!("Street {n}"),
        postal_code: "0154".into(),
        city: "Oslo".into(),
        country_id: "NO".into(),
    }
}

fn employee(n: usize) -> String {
    format!("emp-{n:04}")
}

fn command(n: usize, snapshot_seq: u64, kind: CommandKind, department: &str) -> VismaCommand {
    let mut f = fields(n, department);
    if kind == CommandKind::Deactivate {
        f.status = VismaStatus::Inactive as i32;
    }
    VismaCommand {
        command_id: format!("{snapshot_seq}-rev1"),
        company_uuid: COMPANY.into(),
        employee_uuid: employee(n),
        kind: kind as i32,
        content_hash: mlc_domain::command_hash(kind, &f),
        fields: Some(f),
        mapping_revision: "rev1".into(),
        source_snapshot_seq: snapshot_seq,
        webhook_received_at_ms: mlc_bus::now_ms(),
        visma_tenant: TENANT.into(),
        ..VismaCommand::default()
    }
}

fn outcomes_of(v: &[SyncOutcome]) -> Vec<Outcome> {
    v.iter().map(|o| o.outcome()).collect()
}

// ---------------------------------------------------------------------------- (a)

#[tokio::test]
async fn the_same_command_delivered_five_times_writes_once() {
    let mut h = start(TestDb::sqlite(), true).await;
    h.spawn_writer(h.settings());
    let cmd = command(1, 10, CommandKind::Upsert, "ENG");

    // Five deliveries, each a new stream message (as a republish or replay would make).
    for i in 0..5 {
        h.publish(&cmd, &format!("delivery-{i}")).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while h.metrics.commands_total("applied") + h.metrics.commands_total("unchanged") < i + 1 {
            assert!(Instant::now() < deadline, "delivery {i} not decided");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // And the same Nats-Msg-Id five times: JetStream keeps one.
    let first = h.publish(&cmd, "same-id").await;
    for _ in 0..4 {
        assert_eq!(h.publish(&cmd, "same-id").await, first);
    }

    let out = h.wait_outcomes(&employee(1), 2).await;
    assert_eq!(out[0].outcome(), Outcome::Applied);
    assert_eq!(out[0].visma_employee_cd, "G0001");
    assert!(out[0].latency_ms >= 0);
    assert!(out[0].visma_calls.iter().any(|c| c.starts_with("POST /v1/employee 20")));
    assert_eq!(out[1].outcome(), Outcome::Unchanged);
    assert_eq!(h.metrics.commands_total("applied"), 1);

    let employees = h.sim.employees(DEFAULT_TENANT);
    assert_eq!(employees.len(), 1);
    assert_eq!(employees[0].department, "ENG");
    assert_eq!(h.sim.request_count("POST /v1/employee"), 1);
    assert_eq!(h.sim.request_count("PUT /v1/employee/{employee_cd}"), 0);

    // The audit log has the outcome, with field names only.
    let rows = h
        .store
        .audit(&mlc_store::AuditQuery { company: Some(COMPANY.into()), ..Default::default() })
        .await
        .unwrap();
    let applied = rows.iter().find(|r| r.kind == "visma.applied").unwrap();
    assert_eq!(applied.detail["employee_cd"], "G0001");
    assert!(!applied.detail.to_string().contains("example.com"));
    h.stop_writer().await.unwrap();
}

/// `mlc_writer_step_seconds` (what `mlc-bench freshness` reads) times every stage of an
/// applied command exactly once.
#[tokio::test]
async fn an_applied_command_times_each_of_its_steps_once() {
    let mut h = start(TestDb::sqlite(), true).await;
    h.spawn_writer(h.settings());
    h.publish(&command(1, 10, CommandKind::Upsert, "ENG"), "steps").await;
    let out = h.wait_outcomes(&employee(1), 1).await;
    assert_eq!(out[0].outcome(), Outcome::Applied);
    // The ack is the last step, after the outcome is published.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.metrics.step_totals(Step::Ack).1 == 0 {
        assert!(Instant::now() < deadline, "the ack was never timed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for step in Step::ALL {
        let (seconds, count) = h.metrics.step_totals(step);
        assert_eq!(count, 1, "step {}", step.name());
        assert!((0.0..10.0).contains(&seconds), "step {}: {seconds} s", step.name());
    }
    h.stop_writer().await.unwrap();
}

// ---------------------------------------------------------------------------- (b)

async fn replay_scenario(db: TestDb) {
    let mut h = start(db, true).await;
    h.spawn_writer(h.settings());
    let n = 10;
    for i in 0..n {
        h.publish(&command(i, 100 + i as u64, CommandKind::Upsert, "ENG"), &format!("c{i}")).await;
    }
    for i in 0..n {
        let out = h.wait_outcomes(&employee(i), 1).await;
        assert_eq!(out[0].outcome(), Outcome::Applied, "{out:?}");
    }
    // One change: employee 0 moves to SALES, and only the department is written.
    h.publish(&command(0, 200, CommandKind::Upsert, "SALES"), "c0-v2").await;
    let out = h.wait_outcomes(&employee(0), 2).await;
    assert_eq!(out[1].outcome(), Outcome::Applied);
    assert_eq!(out[1].detail, "updated: department_id");
    assert_eq!(h.sim.employee(DEFAULT_TENANT, "G0000").unwrap().department, "SALES");
    let writes_before = h.writes();
    let gets_before = h.sim.request_count("GET /v1/employee/{employee_cd}");

    // Replay 1: the whole command stream republished under new ids (while the writer is
    // down, as `mlc replay` output would be queued), then the writer comes back.
    h.stop_writer().await.unwrap();
    for i in 0..n {
        h.publish(&command(i, 100 + i as u64, CommandKind::Upsert, "ENG"), &format!("r{i}")).await;
        if i == 0 {
            h.publish(&command(0, 200, CommandKind::Upsert, "SALES"), "r0-v2").await;
        }
    }
    h.spawn_writer(h.settings());
    for i in 1..n {
        let out = h.wait_outcomes(&employee(i), 2).await;
        assert_eq!(out[1].outcome(), Outcome::Unchanged, "{out:?}");
    }
    // Employee 0: the republished v1 is superseded by the republished v2, which is unchanged.
    let out = h.wait_outcomes(&employee(0), 4).await;
    assert_eq!(outcomes_of(&out)[2..], [Outcome::Superseded, Outcome::Unchanged]);

    // Replay 2: the consumer recreated from the start redelivers every stored command.
    h.stop_writer().await.unwrap();
    let stream = h.bus.js.get_stream(h.bus.topo.stream(StreamKind::VismaCommands)).await.unwrap();
    stream.delete_consumer("writer").await.unwrap();
    mlc_bus::ensure_topology(&h.bus.js, &h.bus.topo).await.unwrap();
    let decided_before = h.metrics.commands_total("superseded") + h.metrics.commands_total("unchanged");
    h.spawn_writer(h.settings());
    let stored = 2 * n as u64 + 2;
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.metrics.commands_total("superseded") + h.metrics.commands_total("unchanged")
        < decided_before + stored
    {
        assert!(Instant::now() < deadline, "replay not finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.writes(), writes_before, "a replay wrote to Visma");
    assert_eq!(
        h.sim.request_count("GET /v1/employee/{employee_cd}"),
        gets_before,
        "a replay of applied commands needs no Visma read either"
    );
    assert_eq!(h.sim.employees(DEFAULT_TENANT).len(), n);
    h.stop_writer().await.unwrap();
}

#[tokio::test]
async fn a_replay_of_the_command_stream_writes_nothing() {
    replay_scenario(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_replay_writes_nothing_on_postgres() {
    replay_scenario(TestDb::postgres().await).await;
}

// ---------------------------------------------------------------------------- (c)

#[tokio::test]
async fn a_crash_between_create_and_ack_leaves_one_employee() {
    let mut h = start(TestDb::sqlite(), true).await;
    h.crash_after_write(&command(7, 70, CommandKind::Upsert, "ENG"), "c7").await;
    assert_eq!(h.sim.employees(DEFAULT_TENANT).len(), 1, "the create happened");
    assert!(h.store.link(COMPANY, &employee(7)).await.unwrap().is_none());
    assert!(h.outcomes().await.is_empty(), "nothing recorded before the crash");

    // A fresh writer gets the redelivery.
    h.spawn_writer(h.settings());
    let out = h.wait_outcomes(&employee(7), 1).await;
    assert_eq!(out[0].outcome(), Outcome::Unchanged, "{out:?}");
    assert_eq!(h.sim.employees(DEFAULT_TENANT).len(), 1);
    // The redelivery (still unlinked) tries the create first; Visma refuses it as a
    // duplicate, and the writer reads and compares instead.
    assert_eq!(h.sim.request_count("POST /v1/employee"), 2);
    let link = h.store.link(COMPANY, &employee(7)).await.unwrap().unwrap();
    assert_eq!(link.employee_cd, "G0007");
    assert_eq!(link.origin, "found");
    assert_eq!(
        link.last_command_hash.as_deref(),
        Some(command(7, 70, CommandKind::Upsert, "ENG").content_hash.as_str())
    );
    h.stop_writer().await.unwrap();
}

/// Seen in the full fault suite (seed 402): a terminated employee rehired stayed inactive in
/// Visma. The writer was killed after its PUT of the termination and before it stored the
/// link, so the link still carried the hash of the state before; the rehire command has that
/// same content, so it was taken as "already applied", and the termination's redelivery was
/// superseded by it.
#[tokio::test]
async fn a_crash_after_a_write_does_not_make_the_next_command_look_applied() {
    let mut h = start(TestDb::sqlite(), true).await;
    h.spawn_writer(h.settings());
    let active = command(8, 80, CommandKind::Upsert, "ENG");
    h.publish(&active, "a8").await;
    assert_eq!(outcomes_of(&h.wait_outcomes(&employee(8), 1).await), [Outcome::Applied]);
    h.stop_writer().await.unwrap();

    h.crash_after_write(&command(8, 81, CommandKind::Deactivate, "ENG"), "t8").await;
    let status = |h: &Harness| {
        h.sim.employees(DEFAULT_TENANT).into_iter().find(|e| e.employee_cd == "G0008").map(|e| e.status)
    };
    assert_eq!(status(&h), Some(sim_visma::EmployeeStatus::Inactive), "the termination was written");

    // The rehire: the same content as the first command, published before the redelivery.
    let rehire = command(8, 82, CommandKind::Upsert, "ENG");
    assert_eq!(rehire.content_hash, active.content_hash);
    h.publish(&rehire, "r8").await;
    h.spawn_writer(h.settings());
    let out = h.wait_outcomes(&employee(8), 3).await;
    assert_eq!(status(&h), Some(sim_visma::EmployeeStatus::Active), "outcomes {:?}", outcomes_of(&out));
    h.stop_writer().await.unwrap();
}

// ---------------------------------------------------------------------------- (d)

#[tokio::test]
async fn thirty_employees_converge_through_5xx_and_429() {
    let mut h = start(TestDb::sqlite(), true).await;
    // 30 % of every API call fails with 503, and a small window makes 429s periodic.
    h.sim.set_fault("*", FaultSpec { error_rate: 0.3, error_status: Some(503), ..FaultSpec::default() });
    h.sim.apply_settings(&sim_visma::Settings {
        hourly_limit: Some(40),
        rate_window_secs: Some(2.0),
        ..Default::default()
    });
    let mut settings = h.settings();
    settings.retry.max_error_attempts = 60;
    h.spawn_writer(settings);

    let started = Instant::now();
    let n = 30;
    let mut expected = HashMap::new();
    for i in 0..n {
        h.publish(&command(i, 1000 + i as u64, CommandKind::Upsert, "ENG"), &format!("a{i}")).await;
        expected.insert(format!("G{i:04}"), ("ENG", sim_visma::EmployeeStatus::Active));
    }
    for i in (0..n).step_by(3) {
        h.publish(&command(i, 2000 + i as u64, CommandKind::Upsert, "SALES"), &format!("b{i}")).await;
        expected.insert(format!("G{i:04}"), ("SALES", sim_visma::EmployeeStatus::Active));
    }
    for i in (1..n).step_by(5) {
        h.publish(&command(i, 3000 + i as u64, CommandKind::Deactivate, "ENG"), &format!("d{i}")).await;
        expected.insert(format!("G{i:04}"), ("ENG", sim_visma::EmployeeStatus::Inactive));
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now: HashMap<_, _> = h
            .sim
            .employees(DEFAULT_TENANT)
            .into_iter()
            .map(|e| (e.employee_cd.clone(), (e.department.clone(), e.status)))
            .collect();
        let converged = expected
            .iter()
            .all(|(cd, (dept, status))| now.get(cd).is_some_and(|(d, s)| d == dept && s == status));
        if converged && now.len() == n {
            break;
        }
        assert!(Instant::now() < deadline, "not converged: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    // Every command gets exactly its decision; nothing failed.
    let decided = n + n.div_ceil(3) + (n - 1).div_ceil(5);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ["applied", "unchanged", "superseded", "failed"]
        .iter()
        .map(|o| h.metrics.commands_total(o))
        .sum::<u64>()
        < decided as u64
    {
        assert!(Instant::now() < deadline, "not all commands decided");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.metrics.commands_total("failed"), 0);
    assert_eq!(h.sim.request_count("POST /v1/employee"), n as u64, "one create each");
    let metrics = h.metrics.encode();
    eprintln!(
        "converged {n} employees in {elapsed:?}; naks: retryable={} throttled={} paced={}; pacing waits={}",
        h.metrics.naks_total("visma_retryable"),
        h.metrics.naks_total("visma_throttled"),
        h.metrics.naks_total("paced"),
        h.metrics.pacing_waits_total(),
    );
    assert!(h.metrics.naks_total("visma_retryable") > 0, "the 5xx path ran");
    assert!(
        h.metrics.naks_total("visma_throttled") + h.metrics.pacing_waits_total() > 0,
        "the rate limit was reached and honoured"
    );
    assert!(metrics.contains("mlc_writer_visma_calls_total"));
    h.stop_writer().await.unwrap();
}

// ---------------------------------------------------------------------------- (e)

#[tokio::test]
async fn a_validation_error_is_dead_lettered_and_applies_after_the_fix() {
    let mut h = start(TestDb::sqlite(), true).await;
    h.spawn_writer(h.settings());
    let cmd = command(3, 30, CommandKind::Upsert, "HR");
    h.publish(&cmd, "c3").await;

    let out = h.wait_outcomes(&employee(3), 1).await;
    assert_eq!(out[0].outcome(), Outcome::Failed);
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.stage, "writer");
    assert_eq!(letter.company_uuid, COMPANY);
    assert!(letter.reason.contains("Department 'HR' does not exist"), "{}", letter.reason);
    assert_eq!(VismaCommand::decode(letter.original_payload.as_slice()).unwrap(), cmd);
    assert!(h.sim.employees(DEFAULT_TENANT).is_empty());

    // Fix the cause in Visma, then publish the command again.
    h.sim
        .seed(
            DEFAULT_TENANT,
            &sim_visma::Seed {
                departments: vec![SeedDepartment { id: "HR".into(), description: None }],
                ..Default::default()
            },
        )
        .unwrap();
    h.publish(&cmd, "c3-retry").await;
    let out = h.wait_outcomes(&employee(3), 2).await;
    assert_eq!(out[1].outcome(), Outcome::Applied, "{out:?}");
    assert_eq!(h.sim.employee(DEFAULT_TENANT, "G0003").unwrap().department, "HR");
    h.stop_writer().await.unwrap();
}

#[tokio::test]
async fn parked_commands_are_dead_lettered_without_a_visma_call() {
    let mut h = start(TestDb::sqlite(), true).await;
    h.spawn_writer(h.settings());
    let parked = VismaCommand {
        command_id: "5-rev1".into(),
        company_uuid: COMPANY.into(),
        employee_uuid: employee(5),
        parked_reason: "Gusto department \"Ops\" is not in [departments]".into(),
        ..VismaCommand::default()
    };
    h.publish(&parked, "p5").await;
    let out = h.wait_outcomes(&employee(5), 1).await;
    assert_eq!(out[0].outcome(), Outcome::Parked);
    assert!(out[0].visma_calls.is_empty());
    let letters = h.dead_letters().await;
    assert_eq!(letters[0].reason, parked.parked_reason);
    assert_eq!(h.sim.request_counts().values().sum::<u64>(), 0);
    h.stop_writer().await.unwrap();
}

// ---------------------------------------------------------------------------- (f)

#[tokio::test]
async fn no_employee_is_created_before_the_first_connect_is_applied() {
    let mut h = start(TestDb::sqlite(), false).await;
    h.spawn_writer(h.settings());
    h.publish(&command(9, 90, CommandKind::Upsert, "ENG"), "c9").await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(h.sim.employees(DEFAULT_TENANT).is_empty());
    assert!(h.outcomes().await.is_empty());
    assert_eq!(h.metrics.waiting_first_connect(), 1);
    assert!(h.metrics.naks_total("first_connect") >= 2);
    assert!(h.metrics.encode().contains("mlc_writer_waiting_first_connect 1"));

    h.store.set_first_connect_applied(COMPANY, true).await.unwrap();
    let out = h.wait_outcomes(&employee(9), 1).await;
    assert_eq!(out[0].outcome(), Outcome::Applied);
    assert_eq!(h.sim.employees(DEFAULT_TENANT).len(), 1);
    assert_eq!(h.metrics.waiting_first_connect(), 0);
    h.stop_writer().await.unwrap();
}

#[tokio::test]
async fn metrics_routes_answer() {
    let mut h = start(TestDb::sqlite(), true).await;
    h.spawn_writer(h.settings());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mlc_writer::serve_metrics(listener, h.metrics.clone(), std::future::pending()));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let text = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("mlc_writer_waiting_first_connect"));
    h.stop_writer().await.unwrap();
    assert!(!h.metrics.is_ready());
}
