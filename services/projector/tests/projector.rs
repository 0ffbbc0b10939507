//! The projector against the Gusto simulator and a real nats-server.
//!
//! Events are put on GUSTO_EVENTS the way the gateway does (the gateway has its own
//! tests), built from the events the simulator emitted for each change.

use gusto::{ClientConfig, GrantId, GustoClient, Secret};
use mlc_bus::StreamKind;
use mlc_projector::{MapOutcome, Projector, ProjectorSettings};
use mlc_proto::v1::{CommandKind, EmployeeSnapshot, EmploymentStatus, GustoEvent, VismaCommand};
use mlc_runtime::GrantStore;
use mlc_store::Store;
use mlc_testkit::{company, Bus, TestDb};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const MAPPING: &str = include_str!("../../../schemas/examples/mapping.example.toml");

struct Harness {
    bus: Bus,
    sim: sim_gusto::SimHandle,
    _db: TestDb,
    store: Arc<Store>,
    gusto: Arc<GustoClient>,
    dir: tempfile::TempDir,
    /// Events of the simulator already put on the stream.
    forwarded: usize,
    running: Option<(Arc<Projector>, tokio::task::JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
}

impl Harness {
    async fn new(sim_cfg: sim_gusto::SimConfig) -> Harness {
        Self::with_ack_wait(sim_cfg, Duration::from_secs(2)).await
    }

    /// A short ack wait exercises redelivery; a batch of hundreds needs a longer one.
    async fn with_ack_wait(sim_cfg: sim_gusto::SimConfig, ack_wait: Duration) -> Harness {
        let bus = Bus::start_with("p", |t| t.with_ack_wait(ack_wait)).await;
        let sim = sim_gusto::start(sim_cfg).await.unwrap();
        let db = TestDb::sqlite();
        let store = Arc::new(db.store().await);
        let cfg = sim.sim().config().clone();
        let mut client_cfg =
            ClientConfig::new(&sim.base_url(), cfg.client_id.clone(), Secret::new(cfg.client_secret.clone()))
                .unwrap();
        client_cfg.rate_limit.limit = cfg.rate_limit;
        client_cfg.rate_limit.window = cfg.rate_window;
        let gusto = Arc::new(GustoClient::new(client_cfg, Arc::new(GrantStore::new(store.clone()))).unwrap());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mapping.toml"), MAPPING).unwrap();
        Harness { bus, sim, _db: db, store, gusto, dir, forwarded: 0, running: None }
    }

    /// Seeds a company in the simulator and connects it (OAuth code exchange).
    async fn company(&self, n: usize) -> sim_gusto::CompanyInfo {
        let info = self.sim.sim().seed_company(n);
        let redirect = "http://127.0.0.1/cb";
        let code = self.sim.sim().issue_code(&info.company_uuid, redirect).unwrap();
        let company =
            company(&self.store, &info.company_uuid, "tenant-1", &self.dir.path().join("mapping.toml")).await;
        self.gusto.exchange_code(&GrantId(company.grant_id), &code, redirect).await.unwrap();
        info
    }

    fn start(&mut self) {
        let mut settings = ProjectorSettings::new(self.bus.topo.clone());
        settings.park_delay = Duration::from_millis(300);
        settings.burst_threshold = 10;
        let p = Projector::new(
            self.bus.js.clone(),
            self.bus.publisher.clone(),
            self.store.clone(),
            self.gusto.clone(),
            settings,
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let p = p.clone();
            async move {
                p.run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }
        });
        self.running = Some((p, task, tx));
    }

    /// Kills the projector where it stands (no graceful stop).
    fn kill(&mut self) {
        if let Some((_, task, _)) = self.running.take() {
            task.abort();
        }
    }

    fn projector(&self) -> Arc<Projector> {
        self.running.as_ref().unwrap().0.clone()
    }

    /// Puts the simulator's new events on GUSTO_EVENTS as the gateway would.
    async fn forward(&mut self) -> Vec<GustoEvent> {
        let events = self.sim.sim().events();
        let new: Vec<GustoEvent> = events[self.forwarded..].iter().map(to_gusto_event).collect();
        self.forwarded = events.len();
        for ev in &new {
            self.publish(ev).await;
        }
        new
    }

    async fn publish(&self, ev: &GustoEvent) {
        let subject = self.bus.topo.gusto_event(&ev.company_uuid, &ev.entity_type);
        self.bus.publisher.publish(&subject, &ev.event_uuid, ev).await.unwrap();
    }

    /// Waits until both consumers have nothing pending or in flight.
    async fn settle(&self) {
        self.settle_within(Duration::from_secs(20)).await
    }

    async fn settle_within(&self, limit: Duration) {
        let mut last = Vec::new();
        for _ in 0..(limit.as_millis() / 50) {
            let mut idle = true;
            last.clear();
            for (kind, durable) in
                [(StreamKind::GustoEvents, "projector-hydrate"), (StreamKind::EmployeeState, "projector-map")]
            {
                let stream = self.bus.js.get_stream(self.bus.topo.stream(kind)).await.unwrap();
                let mut c = stream
                    .get_consumer::<async_nats::jetstream::consumer::pull::Config>(durable)
                    .await
                    .unwrap();
                let info = c.info().await.unwrap();
                last.push(format!(
                    "{durable}: {} pending, {} in flight, {} redelivered",
                    info.num_pending, info.num_ack_pending, info.num_redelivered
                ));
                if info.num_pending > 0 || info.num_ack_pending > 0 {
                    idle = false;
                }
            }
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("projector did not settle within {limit:?}: {}", last.join("; "));
    }

    /// Every message of a per-employee stream, grouped by employee, in order.
    async fn by_employee<M: prost::Message + Default>(
        &self,
        kind: StreamKind,
    ) -> BTreeMap<String, Vec<(u64, M)>> {
        let mut out: BTreeMap<String, Vec<(u64, M)>> = BTreeMap::new();
        let mut replay = mlc_bus::replay::Replay::open(
            &self.bus.js,
            &self.bus.topo.stream(kind),
            &self.bus.topo.wildcard(kind),
            mlc_bus::replay::Start::Sequence(1),
        )
        .await
        .unwrap();
        while let Some(m) = replay.next().await {
            let m = m.unwrap();
            let (_, employee) = self.bus.topo.split_subject(kind, &m.subject).unwrap();
            out.entry(employee.to_string())
                .or_default()
                .push((m.sequence, mlc_bus::decode(&m.subject, &m.payload).unwrap()));
        }
        out
    }

    async fn snapshots(&self) -> BTreeMap<String, Vec<(u64, EmployeeSnapshot)>> {
        self.by_employee(StreamKind::EmployeeState).await
    }

    async fn commands(&self) -> BTreeMap<String, Vec<(u64, VismaCommand)>> {
        self.by_employee(StreamKind::VismaCommands).await
    }

    fn gusto_requests(&self, company: &str) -> usize {
        let grant = self.sim.sim().grant_for_company(company).unwrap();
        self.sim.sim().request_count(&grant)
    }
}

fn to_gusto_event(e: &sim_gusto::model::Event) -> GustoEvent {
    GustoEvent {
        event_uuid: e.uuid.clone(),
        event_type: e.event_type.clone(),
        company_uuid: e.resource_uuid.clone(),
        entity_type: e.entity_type.clone(),
        entity_uuid: e.entity_uuid.clone(),
        timestamp: e.timestamp,
        raw_body: serde_json::to_vec(e).unwrap(),
        received_at_ms: mlc_bus::now_ms(),
        ..Default::default()
    }
}

fn last_content(
    snaps: &BTreeMap<String, Vec<(u64, EmployeeSnapshot)>>,
    e: &str,
) -> mlc_proto::v1::EmployeeContent {
    snaps[e].last().unwrap().1.content.clone().unwrap()
}

/// No employee's stream ever holds two consecutive snapshots with the same content.
fn assert_no_duplicate_snapshots(snaps: &BTreeMap<String, Vec<(u64, EmployeeSnapshot)>>) {
    for (e, list) in snaps {
        for w in list.windows(2) {
            assert_ne!(w[0].1.content_hash, w[1].1.content_hash, "employee {e} has a repeated snapshot");
        }
    }
}

#[tokio::test]
async fn the_life_of_an_employee_makes_one_snapshot_and_one_command_per_change() {
    let mut h = Harness::new(Default::default()).await;
    let info = h.company(5).await;
    h.start();
    h.forward().await;
    h.settle().await;
    let base_snaps = h.snapshots().await;
    assert_eq!(base_snaps.len(), 0, "seeding emits no events: nothing to hydrate yet");

    let sim = h.sim.sim();
    // Hire.
    let id = sim
        .hire(
            &info.company_uuid,
            sim_gusto::HireRequest {
                first_name: Some("Ingrid".into()),
                last_name: Some("Solberg".into()),
                work_email: Some("ingrid.solberg@fjord.example".into()),
                title: Some("Consultant".into()),
                department_uuid: Some(info.department_uuids[0].clone()),
                location_uuid: Some(info.location_uuids[0].clone()),
                ..Default::default()
            },
        )
        .unwrap();
    h.forward().await;
    h.settle().await;
    let snaps = h.snapshots().await;
    let cmds = h.commands().await;
    assert_eq!(snaps[&id].len(), 1, "hire: one snapshot");
    assert_eq!(cmds[&id].len(), 1, "hire: one command");
    let c = &cmds[&id][0].1;
    assert_eq!(c.kind(), CommandKind::Upsert);
    let f = c.fields.as_ref().unwrap();
    assert_eq!((f.first_name.as_str(), f.last_name.as_str()), ("Ingrid", "Solberg"));
    assert_eq!(f.email, "ingrid.solberg@fjord.example");
    assert_eq!(f.employee_class, "EMPCONS", "title Consultant maps to its class");
    assert_eq!(f.branch, "1", "Oslo is branch 1");
    assert!(f.employee_cd.starts_with('G'));

    // Title change.
    sim.change_title(&id, "Senior Consultant").unwrap();
    h.forward().await;
    h.settle().await;
    let snaps = h.snapshots().await;
    assert_eq!(snaps[&id].len(), 2);
    assert_eq!(last_content(&snaps, &id).job_title, "Senior Consultant");
    // Same class: the Visma command content did not change, so no new command.
    assert_eq!(h.commands().await[&id].len(), 1, "a change Visma cannot hold makes no command");

    // Transfer Oslo -> Stockholm.
    sim.transfer(&id, &info.location_uuids[1], None).unwrap();
    h.forward().await;
    h.settle().await;
    let snaps = h.snapshots().await;
    assert_eq!(snaps[&id].len(), 3, "transfer: one snapshot despite four events");
    assert_eq!(last_content(&snaps, &id).work_location.unwrap().city, "Stockholm");
    let cmds = h.commands().await;
    assert_eq!(cmds[&id].len(), 2);
    assert_eq!(cmds[&id][1].1.fields.as_ref().unwrap().branch, "2");
    // The company refresh that the address events caused changed nobody else.
    for other in &info.employee_uuids {
        assert!(!snaps.contains_key(other) || snaps[other].len() == 1, "{other} got extra snapshots");
    }

    // Termination (effective today).
    sim.terminate(&id, None).unwrap();
    h.forward().await;
    h.settle().await;
    let snaps = h.snapshots().await;
    assert_eq!(snaps[&id].len(), 4);
    assert_eq!(last_content(&snaps, &id).status(), EmploymentStatus::Terminated);
    let cmds = h.commands().await;
    assert_eq!(cmds[&id].len(), 3);
    assert_eq!(cmds[&id][2].1.kind(), CommandKind::Deactivate);

    // Rehire.
    sim.rehire(&id, None).unwrap();
    h.forward().await;
    h.settle().await;
    let snaps = h.snapshots().await;
    assert_eq!(snaps[&id].len(), 5);
    assert_eq!(last_content(&snaps, &id).status(), EmploymentStatus::Active);
    let cmds = h.commands().await;
    assert_eq!(cmds[&id].len(), 4);
    assert_eq!(cmds[&id][3].1.kind(), CommandKind::Upsert);
    assert_no_duplicate_snapshots(&snaps);
}

#[tokio::test]
async fn duplicated_and_reordered_deliveries_change_nothing() {
    let mut h = Harness::new(Default::default()).await;
    let info = h.company(8).await;
    let sim = h.sim.sim();
    for e in &info.employee_uuids[..4] {
        sim.change_title(e, "Partner").unwrap();
        sim.update_employee(
            e,
            sim_gusto::EmployeePatch { last_name: Some("Berg".into()), ..Default::default() },
        )
        .unwrap();
    }
    let mut events = h.forward().await;
    h.start();
    h.settle().await;
    let before = h.snapshots().await;
    let before_cmds = h.commands().await;
    // Deliver everything again, reversed, and once more shuffled (new ids: past the
    // dedupe window these are what a late Gusto retry looks like).
    events.reverse();
    for (i, ev) in events.iter().enumerate() {
        let mut again = ev.clone();
        again.event_uuid = format!("{}-late-{i}", ev.event_uuid);
        h.publish(&again).await;
        h.publish(ev).await;
    }
    h.settle().await;
    assert_eq!(h.snapshots().await, before, "no extra snapshot");
    assert_eq!(h.commands().await, before_cmds, "no extra command");
    assert_no_duplicate_snapshots(&before);
}

#[tokio::test]
async fn a_burst_in_one_company_is_read_from_the_list_within_budget() {
    let mut h = Harness::new(Default::default()).await;
    let info = h.company(500).await;
    let sim = h.sim.sim();
    let start_requests = h.gusto_requests(&info.company_uuid);
    for e in &info.employee_uuids {
        sim.change_title(e, "Managing Director").unwrap();
    }
    h.start();
    h.forward().await;
    h.settle().await;
    let grant = sim.grant_for_company(&info.company_uuid).unwrap();
    let used = h.gusto_requests(&info.company_uuid) - start_requests;
    let list_calls = sim.route_count(&grant, "/v1/companies/{company_id}/employees") as usize;
    let snaps = h.snapshots().await;
    assert_eq!(snaps.len(), 500, "every employee hydrated");
    assert!(snaps
        .values()
        .all(|s| s.last().unwrap().1.content.as_ref().unwrap().job_title == "Managing Director"));
    let singles = sim.route_count(&grant, "/v1/employees/{employee_id}");
    println!("burst of 500: {used} Gusto calls, {list_calls} of them list pages, {singles} single fetches");
    // Job events resolve to their employee through the index once the first list read
    // taught it, so small tail batches fetch singly: still a small multiple of the pages.
    assert!(used <= 80, "{used} calls, {list_calls} list pages");
    assert_eq!(sim.rate_limited_count(&grant), 0, "never a 429");
    assert!(sim.max_requests_in_any_window(&grant) <= 200);
}

/// A list read takes seconds when Gusto is slow (pages, 429s, a token refresh). A change
/// made while it runs, to an employee on a page already read, is not in the list: its event
/// must get its own read, not be served from the list once that is done.
#[tokio::test]
async fn an_event_stored_while_a_slow_list_read_runs_is_not_served_from_it() {
    let mut h = Harness::with_ack_wait(Default::default(), Duration::from_secs(30)).await;
    let info = h.company(150).await;
    let sim = h.sim.sim();
    let grant = sim.grant_for_company(&info.company_uuid).unwrap();
    let list_route = "/v1/companies/{company_id}/employees";
    for e in &info.employee_uuids {
        sim.change_title(e, "Partner").unwrap();
    }
    // Two pages of 100, each answered 4 s after it was asked for.
    sim.add_fault(sim_gusto::FaultRule {
        path: "/v1/companies/*/employees".into(),
        method: Some("GET".into()),
        latency_ms: 4_000,
        ..Default::default()
    });
    let before = sim.route_count(&grant, list_route);
    h.start();
    h.forward().await;
    // The second page was asked for, so the first was read: everyone changes again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sim.route_count(&grant, list_route) < before + 2 {
        assert!(std::time::Instant::now() < deadline, "the list read never reached its second page");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for e in &info.employee_uuids {
        sim.change_title(e, "Analyst").unwrap();
    }
    h.forward().await;
    sim.clear_faults();
    h.settle_within(Duration::from_secs(60)).await;
    let snaps = h.snapshots().await;
    let stale: Vec<&String> =
        info.employee_uuids.iter().filter(|e| last_content(&snaps, e).job_title != "Analyst").collect();
    assert!(
        stale.is_empty(),
        "{} of 150 employees kept a title from before the list read ended",
        stale.len()
    );
    assert_no_duplicate_snapshots(&snaps);
}

#[tokio::test]
async fn a_revoked_grant_parks_its_company_while_another_keeps_syncing() {
    let mut h = Harness::new(Default::default()).await;
    let a = h.company(3).await;
    let b = h.company(3).await;
    let sim = h.sim.sim();
    let grant_a = sim.grant_for_company(&a.company_uuid).unwrap();
    sim.revoke_grant(&grant_a).unwrap();
    // Force the connector to refresh: the revoked refresh token answers invalid_grant.
    sim.expire_tokens(None);
    sim.change_title(&a.employee_uuids[0], "Partner").unwrap();
    sim.change_title(&b.employee_uuids[0], "Partner").unwrap();
    h.start();
    h.forward().await;
    // B syncs.
    for _ in 0..100 {
        if h.snapshots().await.contains_key(&b.employee_uuids[0]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snaps = h.snapshots().await;
    assert!(snaps.contains_key(&b.employee_uuids[0]), "the healthy company synced");
    assert!(!snaps.contains_key(&a.employee_uuids[0]), "the revoked company is parked");
    let g = h.store.grant(&format!("grant-{}", a.company_uuid)).await.unwrap().unwrap();
    assert_eq!(g.status, "needs_reauth");
    // Its event is still pending (not lost): the consumer holds it for redelivery.
    let stream = h.bus.js.get_stream(h.bus.topo.stream(StreamKind::GustoEvents)).await.unwrap();
    let mut c = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("projector-hydrate")
        .await
        .unwrap();
    let info = c.info().await.unwrap();
    assert!(info.num_ack_pending + info.num_pending as usize >= 1, "parked event kept");
    let parked = h
        .store
        .audit(&mlc_store::AuditQuery { company: Some(a.company_uuid.clone()), ..Default::default() })
        .await
        .unwrap();
    assert!(parked.iter().any(|r| r.kind == "event.parked"));

    // Re-authorise: the parked event goes through.
    let code = sim.issue_code(&a.company_uuid, "http://127.0.0.1/cb").unwrap();
    h.gusto
        .exchange_code(&GrantId(format!("grant-{}", a.company_uuid)), &code, "http://127.0.0.1/cb")
        .await
        .unwrap();
    h.settle().await;
    assert!(
        h.snapshots().await.contains_key(&a.employee_uuids[0]),
        "parked work resumed after re-authorisation"
    );
}

#[tokio::test]
async fn killing_the_projector_mid_batch_loses_and_duplicates_nothing() {
    let mut h = Harness::new(Default::default()).await;
    let info = h.company(60).await;
    let sim = h.sim.sim();
    for e in &info.employee_uuids {
        sim.change_title(e, "Partner").unwrap();
    }
    h.forward().await;
    h.start();
    // Kill it while it works, several times.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        h.kill();
        h.start();
    }
    h.settle().await;
    let snaps = h.snapshots().await;
    assert_eq!(snaps.len(), 60, "nothing lost");
    assert_no_duplicate_snapshots(&snaps);
    let cmds = h.commands().await;
    assert_eq!(cmds.len(), 60);
    assert!(cmds.values().all(|c| c.len() == 1), "nothing duplicated");
}

#[tokio::test]
async fn replaying_the_state_after_a_mapping_change_emits_only_for_affected_employees() {
    let mut h = Harness::new(Default::default()).await;
    let info = h.company(30).await;
    let sim = h.sim.sim();
    for e in &info.employee_uuids {
        sim.change_title(e, "Partner").unwrap();
    }
    h.forward().await;
    h.start();
    h.settle().await;
    let before = h.commands().await;
    assert_eq!(before.len(), 30);

    // A plain replay emits nothing.
    let p = h.projector();
    let plain = p.replay_state(mlc_bus::replay::Start::Sequence(1), None, None, false).await.unwrap();
    assert!(plain.iter().all(|(_, r)| matches!(r, Ok(MapOutcome::Unchanged))), "{plain:?}");

    // Engineering moves to a new Visma department id.
    let changed = MAPPING.replace(r#""Engineering" = "ENG""#, r#""Engineering" = "ENG2""#);
    assert_ne!(changed, MAPPING);
    std::fs::write(h.dir.path().join("mapping.toml"), changed).unwrap();
    let engineers: HashSet<String> = h
        .snapshots()
        .await
        .into_iter()
        .filter(|(_, s)| s.last().unwrap().1.content.as_ref().unwrap().department_title == "Engineering")
        .map(|(e, _)| e)
        .collect();
    assert!(!engineers.is_empty() && engineers.len() < 30, "the seed spreads people over departments");

    let dry = p.replay_state(mlc_bus::replay::Start::Sequence(1), None, None, true).await.unwrap();
    let dry_emitted = dry.iter().filter(|(_, r)| matches!(r, Ok(MapOutcome::Emitted(_)))).count();
    assert_eq!(dry_emitted, engineers.len());
    assert_eq!(h.commands().await, before, "a dry run publishes nothing");

    let replay = p.replay_state(mlc_bus::replay::Start::Sequence(1), None, None, false).await.unwrap();
    let emitted = replay.iter().filter(|(_, r)| matches!(r, Ok(MapOutcome::Emitted(_)))).count();
    assert_eq!(emitted, engineers.len(), "one new command per affected employee");
    let after = h.commands().await;
    for (e, cmds) in &after {
        let expected = if engineers.contains(e) { 2 } else { 1 };
        assert_eq!(cmds.len(), expected, "{e}");
        if engineers.contains(e) {
            assert_eq!(cmds[1].1.fields.as_ref().unwrap().department_id, "ENG2");
            assert_ne!(cmds[1].1.mapping_revision, cmds[0].1.mapping_revision);
        }
    }
}

#[tokio::test]
async fn catch_up_finds_events_the_webhooks_missed() {
    let mut h = Harness::new(Default::default()).await;
    let info = h.company(5).await;
    h.start();
    let sim = h.sim.sim();
    // The first pass only sets the cursor at the newest event.
    let first = mlc_projector::catch_up::catch_up_company(
        &h.gusto,
        &h.bus.publisher,
        &h.bus.topo,
        &h.store,
        &info.company_uuid,
        None,
    )
    .await
    .unwrap();
    assert_eq!(first.published, 0);
    let cursor = h.store.company(&info.company_uuid).await.unwrap().unwrap().last_event_uuid;
    // Changes happen while no webhook reaches us (nothing is forwarded).
    sim.change_title(&info.employee_uuids[0], "Partner").unwrap();
    sim.change_title(&info.employee_uuids[1], "Partner").unwrap();
    h.forwarded = sim.events().len();
    let caught = mlc_projector::catch_up::catch_up_company(
        &h.gusto,
        &h.bus.publisher,
        &h.bus.topo,
        &h.store,
        &info.company_uuid,
        cursor,
    )
    .await
    .unwrap();
    assert_eq!(caught.published, 4, "two events per title change");
    h.settle().await;
    let snaps = h.snapshots().await;
    for e in &info.employee_uuids[..2] {
        assert_eq!(last_content(&snaps, e).job_title, "Partner");
    }
    // A second pass finds nothing new.
    let cursor = h.store.company(&info.company_uuid).await.unwrap().unwrap().last_event_uuid;
    let again = mlc_projector::catch_up::catch_up_company(
        &h.gusto,
        &h.bus.publisher,
        &h.bus.topo,
        &h.store,
        &info.company_uuid,
        cursor,
    )
    .await
    .unwrap();
    assert_eq!(again, mlc_projector::catch_up::CatchUp::default());
}

/// Issue 15 (b): a job event names the job, not the employee. Once the company has
/// been read (here: the initial sync of 1,000 people), the job index resolves it to one
/// employee read instead of a 10-page list read.
#[tokio::test]
async fn a_job_event_on_one_employee_of_1000_costs_at_most_two_gusto_calls() {
    let mut h = Harness::with_ack_wait(Default::default(), Duration::from_secs(60)).await;
    let info = h.company(1000).await;
    h.forward().await; // company.provisioned: ignored
                       // Initial sync, as `mlc backfill` publishes it: one event per employee.
    for e in &info.employee_uuids {
        h.publish(&GustoEvent {
            event_uuid: format!("backfill:{e}"),
            event_type: "employee.backfill".into(),
            company_uuid: info.company_uuid.clone(),
            entity_type: "Employee".into(),
            entity_uuid: e.clone(),
            received_at_ms: mlc_bus::now_ms(),
            ..Default::default()
        })
        .await;
    }
    h.start();
    h.settle_within(Duration::from_secs(180)).await;
    assert_eq!(h.snapshots().await.len(), 1000);
    let sim = h.sim.sim();
    let grant = sim.grant_for_company(&info.company_uuid).unwrap();
    let list = "/v1/companies/{company_id}/employees";
    let e = info.employee_uuids[417].clone();
    let job = sim.state().employees[&e].jobs[0].uuid.clone();

    // A compensation change alone: `employee_job_compensation.updated` naming the job.
    let sync_calls = h.gusto_requests(&info.company_uuid);
    println!("initial sync of 1000: {sync_calls} Gusto calls ({} list pages)", sim.route_count(&grant, list));
    let before = h.gusto_requests(&info.company_uuid);
    let lists_before = sim.route_count(&grant, list);
    h.publish(&GustoEvent {
        event_uuid: "job-event-1".into(),
        event_type: "employee_job_compensation.updated".into(),
        company_uuid: info.company_uuid.clone(),
        entity_type: "EmployeeJobCompensation".into(),
        entity_uuid: job.clone(),
        ..Default::default()
    })
    .await;
    h.settle().await;
    let used = h.gusto_requests(&info.company_uuid) - before;
    println!("job event on one of 1000 employees: {used} Gusto call(s)");
    assert!(used <= 2, "{used} calls");
    assert_eq!(sim.route_count(&grant, list), lists_before, "no list read");

    // A title change as Gusto emits it (job event + employee.updated).
    let before = h.gusto_requests(&info.company_uuid);
    sim.change_title(&e, "Chief Cartographer").unwrap();
    h.forward().await;
    h.settle().await;
    let used = h.gusto_requests(&info.company_uuid) - before;
    println!("title change on one of 1000 employees: {used} Gusto call(s)");
    assert!(used <= 2, "{used} calls");
    assert_eq!(sim.route_count(&grant, list), lists_before, "no list read");
    assert_eq!(last_content(&h.snapshots().await, &e).job_title, "Chief Cartographer");
}

/// Issue 15 (c): a retired `gusto.api_version` is one clear error: the company's work
/// parks with a reason naming the version and the key, nothing is dead-lettered, and
/// Gusto sees one refused request, not a retry storm.
#[tokio::test]
async fn a_retired_api_version_parks_the_company_without_a_retry_storm() {
    let mut h = Harness::new(Default::default()).await;
    let info = h.company(5).await;
    // The projector runs with an old configured version (the grant was made earlier).
    let cfg = h.sim.sim().config().clone();
    let mut old =
        ClientConfig::new(&h.sim.base_url(), cfg.client_id.clone(), Secret::new(cfg.client_secret)).unwrap();
    old.api_version = "2025-06-15".into();
    h.gusto = Arc::new(GustoClient::new(old, Arc::new(GrantStore::new(h.store.clone()))).unwrap());
    let sim = h.sim.sim();
    sim.change_title(&info.employee_uuids[0], "Partner").unwrap();
    h.start();
    h.forward().await;
    // Several park delays (300 ms here) pass: the events are redelivered and parked again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(h.snapshots().await.is_empty(), "nothing hydrated");
    assert_eq!(sim.version_refusals(), 1, "one refused request reached Gusto");
    let rows = h
        .store
        .audit(&mlc_store::AuditQuery { company: Some(info.company_uuid.clone()), ..Default::default() })
        .await
        .unwrap();
    let reasons: Vec<&str> = rows
        .iter()
        .filter(|r| r.kind == "event.parked")
        .filter_map(|r| r.detail["reason"].as_str())
        .collect();
    assert!(!reasons.is_empty(), "parked with a reason");
    for r in &reasons {
        assert!(r.contains("2025-06-15") && r.contains("gusto.api_version"), "{r}");
    }
    let mut dlq = h.bus.js.get_stream(h.bus.topo.stream(StreamKind::DeadLetters)).await.unwrap();
    assert_eq!(dlq.info().await.unwrap().state.messages, 0, "a configuration error is not dead-lettered");
    let metrics = h.projector().metrics().encode();
    assert!(metrics.contains("mlc_projector_gusto_api_version_refused 1"), "{metrics}");
    assert!(metrics.contains("call=\"invalid_api_version\""), "{metrics}");
}

/// ARCHITECTURE decision 4, now for the projector too: waiting for a paused company is
/// not a failure. The event below is parked (redelivered after the 300 ms park delay)
/// more often than the 12-attempt error budget, then the company is resumed and its
/// first Gusto read fails with a 500: the event is retried and hydrated, not
/// dead-lettered (a delivery-count budget gave up on it at once).
#[tokio::test]
async fn a_long_pause_spends_nothing_of_the_error_budget() {
    let mut h = Harness::new(Default::default()).await;
    // One try per request, so the injected 500 reaches the projector as one failure.
    let cfg = h.sim.sim().config().clone();
    let mut once =
        ClientConfig::new(&h.sim.base_url(), cfg.client_id.clone(), Secret::new(cfg.client_secret)).unwrap();
    once.retry.max_retries = 0;
    h.gusto = Arc::new(GustoClient::new(once, Arc::new(GrantStore::new(h.store.clone()))).unwrap());
    let info = h.company(2).await;
    let employee = info.employee_uuids[0].clone();
    h.store.set_company_paused(&info.company_uuid, true).await.unwrap();
    h.sim.sim().change_title(&employee, "Partner").unwrap();
    h.start();
    let events = h.forward().await.len() as u64;

    // Each event parked more than max_attempts (12) times (they wait in one batch).
    let parked = format!("mlc_projector_parked_events_total{{company=\"{}\"}} ", info.company_uuid);
    let times_parked = |text: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(&parked)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    for _ in 0..300 {
        if times_parked(&h.projector().metrics().encode()) > 14 * events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = h.projector().metrics().encode();
    assert!(times_parked(&metrics) > 14 * events, "parked past the budget: {metrics}");
    assert!(h.snapshots().await.is_empty(), "nothing hydrated while paused");

    // Resume; the first Gusto read after it answers 500.
    h.sim.sim().add_fault(sim_gusto::FaultRule {
        path: "/v1/*".into(),
        method: Some("GET".into()),
        error_rate: 1.0,
        error_status: Some(500),
        times: Some(1),
        ..Default::default()
    });
    h.store.set_company_paused(&info.company_uuid, false).await.unwrap();
    h.settle().await;

    let mut dlq = h.bus.js.get_stream(h.bus.topo.stream(StreamKind::DeadLetters)).await.unwrap();
    assert_eq!(dlq.info().await.unwrap().state.messages, 0, "nothing dead-lettered");
    let snaps = h.snapshots().await;
    assert_eq!(last_content(&snaps, &employee).job_title, "Partner", "the event was retried and applied");
    let metrics = h.projector().metrics().encode();
    assert!(metrics.contains("call=\"transient\""), "the 500 was seen and counted as transient: {metrics}");
}
