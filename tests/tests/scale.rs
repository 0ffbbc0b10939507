//! Scale-out (issue 12): two replicas of each service on a three-node NATS cluster with
//! R3 streams and partitioned work, while a cluster node and one replica of each service
//! are killed and brought back; and (issue 22) while a cluster node is cut off by a network
//! partition (each node in its own network namespace, its link taken down: it keeps running,
//! and the connections to it hang instead of closing), then joined again.
//!
//! Short form (CI): 4 companies, about 400 webhooks. Full form (`MLC_FULL=1`): 10
//! companies, at least 2,000 webhooks. At the end every employee is in sync, none is
//! duplicated in Visma, no employee's snapshots were appended out of order (fetch times
//! rise along each subject), and no grant drew more than 200 Gusto requests in any
//! rolling 60 s window, as the Gusto simulator measured it.

use mlc_bus::{StreamKind, Topology};
use mlc_e2e::{mlc_bin, FleetCompany, MAPPING};
use mlc_proto::v1::EmployeeSnapshot;
use mlc_testkit::NatsCluster;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 4;

struct Scale {
    cluster: NatsCluster,
    gusto: sim_gusto::SimHandle,
    visma: sim_visma::SimHandle,
    dir: tempfile::TempDir,
    config: PathBuf,
    gateways: Vec<String>,
    /// Each gateway's ops listener (health, metrics).
    gateway_ops: Vec<String>,
    companies: Vec<FleetCompany>,
    services: BTreeMap<String, mlc_testkit::Tethered>,
    js: async_nats::jetstream::Context,
    topo: Topology,
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", mlc_testkit::free_port())
}

impl Scale {
    async fn start(companies: usize, employees: usize, cluster: NatsCluster) -> Scale {
        let gusto = sim_gusto::start(sim_gusto::SimConfig {
            webhooks: sim_gusto::WebhookConfig {
                retry_base: Duration::from_millis(200),
                retry_max: Duration::from_secs(3),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let visma = sim_visma::start(sim_visma::SimConfig::default()).await.unwrap();
        let mut fleet = Vec::new();
        for i in 0..companies {
            let info = gusto.sim().seed_named_company(&format!("Scale Company {i:02} AS"), employees);
            let tenant_id = uuid::Uuid::new_v4().to_string();
            visma.add_tenant(sim_visma::TenantConfig::company(tenant_id.clone(), 2000 + i as i64));
            visma.seed(&tenant_id, &sim_visma::nordic_seed()).unwrap();
            fleet.push(FleetCompany { info, tenant_key: format!("t{i:02}"), tenant_id });
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mapping.toml"), MAPPING).unwrap();
        let prefix = mlc_testkit::unique("s");
        // PostgreSQL would be the production store for several processes; SQLite in WAL
        // mode serves this loopback test. Each process gets its own listeners by env.
        let mut cfg = mlc_testkit::sandbox_config(&cluster.url(), &gusto, &visma, dir.path());
        cfg.nats.stream_prefix = prefix.clone();
        cfg.nats.allow_plaintext = cluster.config().allow_plaintext;
        cfg.nats.replicas = 3;
        cfg.nats.partitions = PARTITIONS;
        cfg.nats.lease_ttl_ms = 3000;
        cfg.visma.tenants = mlc_e2e::tenants(&fleet);
        cfg.projector.catch_up_secs = 0;
        let config = dir.path().join("mlc.toml");
        mlc_testkit::write_config(&config, &cfg).unwrap();
        let client = mlc_bus::connect(&cluster.config(), "scale").await.unwrap();
        let js = async_nats::jetstream::new(client);
        let topo = Topology::new(&prefix, 3).unwrap().with_partitions(PARTITIONS).unwrap();
        // The cluster elects its JetStream leader before anything can be created.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = mlc_bus::ensure_topology(&js, &topo).await {
            assert!(Instant::now() < deadline, "cluster not ready: {e}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut s = Scale {
            cluster,
            gusto,
            visma,
            dir,
            config,
            gateways: vec![free_addr(), free_addr()],
            gateway_ops: vec![free_addr(), free_addr()],
            companies: fleet,
            services: BTreeMap::new(),
            js,
            topo,
        };
        let mapping = s.dir.path().join("mapping.toml");
        for c in s.companies.clone() {
            let code = s.gusto.sim().issue_code(&c.info.company_uuid, "http://127.0.0.1/cb").unwrap();
            s.mlc_ok(&[
                "company",
                "add",
                "--company",
                &c.info.company_uuid,
                "--name",
                &c.tenant_key,
                &format!("--code={code}"),
                "--visma-tenant",
                &c.tenant_key,
                "--mapping",
                mapping.to_str().unwrap(),
                "--skip-review",
            ])
            .await;
        }
        for service in ["gateway", "projector", "writer"] {
            for replica in 0..2 {
                s.start_service(service, replica);
            }
        }
        for (g, ops) in s.gateways.clone().into_iter().zip(s.gateway_ops.clone()) {
            wait_http(&format!("http://{ops}/readyz")).await;
            // One subscription per gateway: Gusto delivers every event to both, and the
            // event uuid makes the second copy a duplicate JetStream drops.
            s.mlc_ok(&["subscribe", "--url", &format!("http://{g}/webhooks/gusto")]).await;
        }
        s
    }

    fn start_service(&mut self, service: &str, replica: usize) {
        let name = format!("{service}-{replica}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        let child = mlc_testkit::Tethered::spawn(
            Command::new(mlc_bin())
                .arg("--config")
                .arg(&self.config)
                .args(["run", service])
                .env_remove("MLC_CONFIG")
                .env("MLC_REPLICA_ID", &name)
                .env("MLC_GATEWAY_LISTEN", &self.gateways[replica])
                .env("MLC_GATEWAY_OPS_LISTEN", &self.gateway_ops[replica])
                .env("MLC_PROJECTOR_METRICS_LISTEN", free_addr())
                .env("MLC_WRITER_METRICS_LISTEN", free_addr())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .unwrap();
        self.services.insert(name, child);
    }

    fn kill_service(&mut self, service: &str, replica: usize) {
        if let Some(mut c) = self.services.remove(&format!("{service}-{replica}")) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn mlc(&self, args: &[&str]) -> std::process::Output {
        mlc_e2e::run_mlc(&self.config, args).await
    }

    async fn mlc_ok(&self, args: &[&str]) -> String {
        let out = self.mlc(args).await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "mlc {args:?}: {text}\n{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    async fn settle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut idle = 0;
        loop {
            match mlc_bus::backlog(&self.js, &self.topo).await {
                Ok(0) => idle += 1,
                _ => idle = 0,
            }
            if idle >= 6 {
                return;
            }
            if Instant::now() > deadline {
                let mut report = String::new();
                for spec in mlc_bus::ConsumerSpec::ALL {
                    let stream = self.js.get_stream(self.topo.stream(spec.stream)).await.unwrap();
                    for d in self.topo.durables(&spec) {
                        let mut c = stream
                            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&d)
                            .await
                            .unwrap();
                        let i = c.info().await.unwrap();
                        report.push_str(&format!(
                            "{d}: pending {} ack_pending {} redelivered {}\n",
                            i.num_pending, i.num_ack_pending, i.num_redelivered
                        ));
                    }
                }
                for name in self.services.keys() {
                    let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                        .unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(6).collect();
                    report.push_str(&format!(
                        "--- {name}\n{}\n",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
                panic!("the pipeline did not settle:\n{report}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Scale {
    fn drop(&mut self) {
        for (_, c) in self.services.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} not ready");
}

/// What happens halfway through the changes.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Node 1 and one replica of each service are killed, and started again 2 s later.
    Kills,
    /// Node 1 is cut off the network for this long, then joined again.
    Partition(Duration),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_per_service_on_a_three_node_cluster_survive_kills() {
    scale_out(NatsCluster::start(3), Fault::Kills).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_cut_off_by_a_network_partition_loses_nothing() {
    let cluster = NatsCluster::start_partitionable(3)
        .expect("network namespaces (root and iproute2, as CI has) for the partition test");
    scale_out(cluster, Fault::Partition(Duration::from_secs(10))).await;
}

async fn scale_out(cluster: NatsCluster, fault: Fault) {
    let full = std::env::var("MLC_FULL").is_ok_and(|v| v == "1");
    let (companies, employees, target_events) = if full { (10, 20, 2000) } else { (4, 10, 400) };
    let mut s = Scale::start(companies, employees, cluster).await;
    let started = Instant::now();
    for c in s.companies.clone() {
        s.mlc_ok(&["backfill", "--company", &c.info.company_uuid]).await;
    }
    s.settle(Duration::from_secs(120)).await;

    // Changes across all companies; halfway, a node and one replica of each service die.
    let sim = s.gusto.sim();
    let events_before = sim.events().len();
    let titles = ["Partner", "Consultant", "Senior Consultant", "Trainee", "Managing Director"];
    let mut i = 0usize;
    let mut killed = false;
    let mut cut_until: Option<Instant> = None;
    // When the fault ended (restarts done, partition healed).
    let mut fault_over = None;
    while sim.events().len() - events_before < target_events {
        let c = &s.companies[i % s.companies.len()].info;
        let e = &c.employee_uuids[(i / s.companies.len()) % c.employee_uuids.len()];
        match i % 5 {
            0..=2 => sim.change_title(e, titles[i % titles.len()]).unwrap(),
            3 => sim.transfer(e, &c.location_uuids[i % c.location_uuids.len()], None).unwrap(),
            _ => sim
                .update_employee(
                    e,
                    sim_gusto::EmployeePatch { last_name: Some(format!("Berg{i}")), ..Default::default() },
                )
                .unwrap(),
        }
        i += 1;
        if !killed && sim.events().len() - events_before >= target_events / 2 {
            killed = true;
            match fault {
                Fault::Kills => {
                    s.cluster.stop_node(1);
                    s.kill_service("gateway", 1);
                    s.kill_service("projector", 0);
                    s.kill_service("writer", 1);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    s.cluster.start_node(1);
                    s.start_service("gateway", 1);
                    s.start_service("projector", 0);
                    s.start_service("writer", 1);
                    fault_over = Some(Instant::now());
                }
                Fault::Partition(down) => {
                    // The changes go on while the node is away: Gusto delivers, and the
                    // clients that were on node 1 must notice and move.
                    s.cluster.cut(1);
                    cut_until = Some(Instant::now() + down);
                }
            }
        }
        if cut_until.is_some_and(|t| Instant::now() >= t) {
            s.cluster.heal(1);
            cut_until = None;
            fault_over = Some(Instant::now());
        }
        // Paced like a working day compressed: the pipeline works while the kills happen.
        tokio::time::sleep(Duration::from_millis(if full { 15 } else { 40 })).await;
    }
    if let Some(t) = cut_until {
        tokio::time::sleep(t.saturating_duration_since(Instant::now())).await;
        s.cluster.heal(1);
        fault_over = Some(Instant::now());
    }
    let emitted = sim.events().len() - events_before;
    let changes_done = Instant::now();
    s.settle(Duration::from_secs(if full { 600 } else { 120 })).await;
    let (after_fault, after_changes) =
        (fault_over.map_or(0.0, |t| t.elapsed().as_secs_f64()), changes_done.elapsed().as_secs_f64());

    // Every employee in sync, none duplicated.
    for c in &s.companies {
        let out = s.mlc(&["reconcile", "--company", &c.info.company_uuid, "--quiet"]).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("in sync: {employees}/{employees}")), "{}: {text}", c.tenant_key);
        let records = s.visma.employees(&c.tenant_id);
        assert_eq!(records.len(), employees, "no duplicate employee in {}", c.tenant_key);
    }
    // No employee's snapshots out of order: along each subject the fetch times rise.
    let mut by_subject: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut replay = mlc_bus::replay::Replay::open(
        &s.js,
        &s.topo.stream(StreamKind::EmployeeState),
        &s.topo.wildcard(StreamKind::EmployeeState),
        mlc_bus::replay::Start::Sequence(1),
    )
    .await
    .unwrap();
    while let Some(m) = replay.next().await {
        let m = m.unwrap();
        let snap: EmployeeSnapshot = mlc_bus::decode(&m.subject, &m.payload).unwrap();
        by_subject.entry(m.subject).or_default().push(snap.fetched_at_ms);
    }
    let snapshots: usize = by_subject.values().map(Vec::len).sum();
    for (subject, times) in &by_subject {
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{subject} has a snapshot appended out of order: {times:?}"
        );
    }
    // The shared budget: no grant over 200 requests in any rolling 60 s window.
    let mut max_window = 0;
    for c in &s.companies {
        let grant = sim.grant_for_company(&c.info.company_uuid).unwrap();
        let m = sim.max_requests_in_any_window(&grant);
        assert!(m <= 200, "{} drew {m} Gusto requests in one window", c.tenant_key);
        max_window = max_window.max(m);
    }
    let what = match fault {
        Fault::Kills => "node 1 and a replica of each service killed".to_string(),
        Fault::Partition(d) => format!("node 1 cut off for {} s", d.as_secs()),
    };
    println!(
        "scale-out ({what}): {companies} companies, {emitted} webhook events, {snapshots} snapshots, \
         {} employees, max {max_window} Gusto requests per grant in any 60 s; settled {after_fault:.1} s \
         after the fault ended and {after_changes:.1} s after the last change; {:.1} s in all",
        companies * employees,
        started.elapsed().as_secs_f64()
    );
}
