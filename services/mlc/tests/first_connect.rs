//! First connect end to end: 150 Gusto employees, a Visma company that already holds 140
//! people (137 of them, 10 with an old email, 5 with a surname typo, plus 3 strangers).
//!
//! Real parts: both simulators (in this process, over HTTP), nats-server, SQLite, and the
//! `mlc` binary as the operator and the services use it (`mlc run all` as a child process).
//! Checked: nothing is created before the review is applied; the proposals link every pair
//! two criteria support and flag the rest; a bad review file is refused with line numbers;
//! after apply and sync only the 13 new people are created, the strangers are untouched, and
//! no person has two Visma records.

use mlc::matching::{self, ReviewRow};
use mlc::scenario::{self, Drift, ScenarioSpec, SeedIds};
use mlc_testkit::StopOnDrop;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const MAPPING: &str = include_str!("../../../schemas/examples/mapping.example.toml");

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// A reachable nats-server: the local one, else a private one on a free port.
fn nats(dir: &Path) -> (String, Option<StopOnDrop>) {
    if std::net::TcpStream::connect("127.0.0.1:4222").is_ok() {
        return ("nats://127.0.0.1:4222".into(), None);
    }
    let port = free_addr().rsplit(':').next().expect("port").to_string();
    let bin =
        if Path::new("/usr/sbin/nats-server").exists() { "/usr/sbin/nats-server" } else { "nats-server" };
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
        .arg(dir.join("nats"))
        .spawn()
        .expect("nats-server");
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (format!("nats://{addr}"), Some(StopOnDrop { name: "nats-server", child }))
}

struct Mlc {
    config: PathBuf,
}

impl Mlc {
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mlc"));
        c.arg("--config").arg(&self.config).env_remove("MLC_CONFIG");
        c
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        tokio::task::spawn_blocking(move || c.output().expect("run mlc")).await.expect("join")
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "mlc {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

async fn waiting_first_connect(metrics: &str) -> i64 {
    let Ok(r) = reqwest::get(format!("http://{metrics}/metrics")).await else { return -1 };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("mlc_writer_waiting_first_connect "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(-1, |v| v as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_connect_links_what_visma_has_and_creates_only_the_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nats_url, _nats) = nats(dir.path());
    let gusto = sim_gusto::start(sim_gusto::SimConfig::default()).await.expect("sim-gusto");
    let visma = sim_visma::start(sim_visma::SimConfig::default()).await.expect("sim-visma");
    let tenant = sim_visma::DEFAULT_TENANT;

    // Gusto: 150 people. Visma: 137 of them kept by hand, drifted, plus 3 strangers.
    let firm = gusto.sim().seed_named_company("Fjord & Fjell Consulting AS", 150);
    let state = gusto.sim().state_json();
    let people: Vec<gusto::Employee> = state["employees"]
        .as_array()
        .expect("employees")
        .iter()
        .filter(|e| e["company_uuid"].as_str() == Some(firm.company_uuid.as_str()))
        .map(|e| serde_json::from_value(e.clone()).expect("employee"))
        .collect();
    assert_eq!(people.len(), 150);
    let spec =
        ScenarioSpec { existing: 137, changed_email: 10, changed_surname: 5, changed_both: 0, strangers: 3 };
    let ids = SeedIds { department: "ADMIN", employee_class: "EMPSTD", branch: "1", calendar: "MAIN" };
    let story = scenario::pre_existing(&people, &spec, &ids);
    let mut seed = sim_visma::nordic_seed();
    seed.employees = story.visma_employees.clone();
    visma.seed(tenant, &seed).expect("seed visma");
    assert_eq!(visma.employees(tenant).len(), 140);
    let strangers_before: Vec<_> =
        story.strangers.iter().map(|cd| visma.employee(tenant, cd).expect("stranger")).collect();

    // The connector's configuration, and the company connected without skipping the review.
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(&mapping, MAPPING).expect("mapping");
    let mut cfg = mlc_testkit::sandbox_config(&nats_url, &gusto, &visma, dir.path());
    cfg.nats.stream_prefix = format!("fc{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    cfg.gusto.redirect_uri = "http://127.0.0.1/oauth/callback".into();
    let writer_metrics = cfg.writer.metrics_listen.clone();
    let config = dir.path().join("mlc.toml");
    mlc_testkit::write_config(&config, &cfg).expect("config");
    let mlc = Mlc { config: config.clone() };
    let company = firm.company_uuid.clone();
    let code = gusto.sim().issue_code(&company, "http://127.0.0.1/oauth/callback").expect("code");
    let mapping_arg = mapping.display().to_string();
    mlc.ok(&[
        "company",
        "add",
        "--company",
        &company,
        "--name",
        "Fjord & Fjell",
        "--code",
        &code,
        "--visma-tenant",
        "nordic",
        "--mapping",
        &mapping_arg,
    ])
    .await;
    let log = std::fs::File::create(dir.path().join("services.log")).expect("log");
    let _services = StopOnDrop {
        name: "mlc run all",
        child: mlc
            .cmd()
            .args(["run", "all"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("mlc run all"),
    };

    // The initial sync before the review: every command waits, nothing reaches Visma.
    mlc.ok(&["backfill", "--company", &company]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while waiting_first_connect(&writer_metrics).await < 150 {
        assert!(Instant::now() < deadline, "the writer never held all 150 commands for the review");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = mlc.ok(&["status"]).await;
    assert!(status.contains("awaiting review"), "{status}");
    assert_eq!(visma.request_count("POST /v1/employee"), 0, "an employee was created before the review");
    assert_eq!(visma.employees(tenant).len(), 140);

    // The proposals.
    let review = dir.path().join("review.csv");
    let review_arg = review.display().to_string();
    let table = mlc.ok(&["match", "--company", &company, "--out", &review_arg]).await;
    assert!(table.contains("to link (two criteria)"), "{table}");
    let text = std::fs::read_to_string(&review).expect("review file");
    let rows = matching::read_review(&review_arg, &text).expect("readable review file");
    let truth: HashMap<&str, &scenario::Known> =
        story.truth.iter().map(|k| (k.gusto_uuid.as_str(), k)).collect();
    let by_gusto: HashMap<&str, &ReviewRow> = rows
        .iter()
        .filter(|(_, r)| !r.gusto_uuid.is_empty())
        .map(|(_, r)| (r.gusto_uuid.as_str(), r))
        .collect();
    assert_eq!(by_gusto.len(), 150, "one row per Gusto employee");
    // Gusto employees sharing a name (the simulator's name pool repeats) cannot be told apart
    // by name and address: the matcher must not guess between them.
    let mut namesakes: HashMap<String, usize> = HashMap::new();
    for p in &people {
        *namesakes.entry(matching::fold(&format!("{} {}", p.first_name, p.last_name))).or_default() += 1;
    }
    let has_namesake = |uuid: &str| {
        let p = people.iter().find(|p| p.uuid == uuid).expect("person");
        namesakes[&matching::fold(&format!("{} {}", p.first_name, p.last_name))] > 1
    };
    let (mut linked, mut ambiguous) = (0, 0);
    for k in story.two_criteria() {
        let r = by_gusto[k.gusto_uuid.as_str()];
        if r.suggestion == "link" {
            assert_eq!(r.visma_cd, k.visma_cd, "wrong link for {}", r.gusto_name);
            linked += 1;
        } else {
            // Left to the operator (or to the namesake's row), never guessed.
            assert!(r.suggestion == "review" || r.suggestion == "create", "{r:?}");
            assert!(has_namesake(&k.gusto_uuid), "two criteria but not linked, and no namesake: {r:?}");
            ambiguous += 1;
        }
    }
    for (_, r) in rows.iter().filter(|(_, r)| r.suggestion == "link") {
        let k = truth.get(r.gusto_uuid.as_str()).unwrap_or_else(|| panic!("link for a new person: {r:?}"));
        assert_eq!(r.visma_cd, k.visma_cd, "{r:?}");
    }
    // One criterion (an old email or a typo, no number): proposed, flagged for review.
    for k in story.truth.iter().filter(|k| k.drift != Drift::None && !k.number_recorded) {
        let r = by_gusto[k.gusto_uuid.as_str()];
        if has_namesake(&k.gusto_uuid) {
            // The record may have gone to the namesake's proposal: never a link, though.
            assert!(r.suggestion == "review" || r.suggestion == "create", "{r:?}");
        } else {
            assert_eq!(
                (r.suggestion.as_str(), r.visma_cd.as_str()),
                ("review", k.visma_cd.as_str()),
                "{r:?}"
            );
        }
    }
    for cd in &story.strangers {
        assert!(
            rows.iter().all(|(_, r)| r.visma_cd != *cd || r.suggestion == "keep" || r.suggestion == "review"),
            "stranger {cd} proposed as a link"
        );
    }
    let created: Vec<&str> =
        people.iter().map(|p| p.uuid.as_str()).filter(|u| !truth.contains_key(u)).collect();
    assert_eq!(created.len(), 13);
    for u in &created {
        assert_ne!(by_gusto[u].suggestion, "link", "a new person was linked: {:?}", by_gusto[u]);
    }
    assert!(linked >= 110, "only {linked} links proposed ({ambiguous} ambiguous)");
    eprintln!("{linked} links, {ambiguous} ambiguous namesakes among the two-criteria pairs");

    // A file with mistakes is refused, naming the lines, and nothing is applied.
    let mut bad: Vec<ReviewRow> = rows.iter().map(|(_, r)| r.clone()).collect();
    let first_link = bad.iter().position(|r| r.suggestion == "link").expect("a link");
    bad[first_link].approve = "yes".into();
    let mut twice = bad[first_link].clone();
    twice.visma_cd = story.strangers[0].clone();
    bad.push(twice);
    let keep = bad.iter().position(|r| r.suggestion == "keep").expect("a keep row");
    bad[keep].approve = "perhaps".into();
    let bad_path = dir.path().join("bad.csv");
    matching::write_review(&bad_path, &bad).expect("write");
    let out = mlc.run(&["match", "--apply", &bad_path.display().to_string()]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!(":{}: approve is \"perhaps\"", keep + 2)), "{err}");
    assert!(err.contains(&format!(":{}: Gusto employee", bad.len() + 1)), "{err}");
    assert!(err.contains("approved twice"), "{err}");
    assert!(mlc.ok(&["status"]).await.contains("awaiting review"));

    // The operator: approves the clear links, confirms the right review proposals and
    // corrects the wrong ones (the file is editable), leaves new people and strangers alone.
    let approved: Vec<ReviewRow> = rows
        .iter()
        .map(|(_, r)| {
            let mut r = r.clone();
            match truth.get(r.gusto_uuid.as_str()) {
                Some(k) => {
                    r.visma_cd = k.visma_cd.clone();
                    r.approve = "yes".into();
                }
                None => r.approve = "no".into(),
            }
            r
        })
        .collect();
    matching::write_review(&review, &approved).expect("write");
    let applied = mlc.ok(&["match", "--apply", &review_arg]).await;
    assert!(applied.contains("137 link(s) stored"), "{applied}");
    assert!(applied.contains("13 Gusto employee(s) will be created"), "{applied}");

    // The held commands go through: links update, only the new people are created.
    let deadline = Instant::now() + Duration::from_secs(90);
    let report = loop {
        let out = mlc.run(&["reconcile", "--company", &company, "--json"]).await;
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if out.status.success() || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let rows = report["rows"].as_array().expect("reconcile rows");
    let in_sync = rows.iter().filter(|r| r["state"] == "in_sync").count();
    assert_eq!((in_sync, rows.len()), (150, 150), "{report:#}");
    assert_eq!(visma.request_count("POST /v1/employee"), 13, "only the new people are created");
    let all = visma.employees(tenant);
    assert_eq!(all.len(), 153);
    // No duplicates: every Visma record is one Gusto employee's, or a stranger's.
    let cds: HashSet<&str> = rows.iter().filter_map(|r| r["employee_cd"].as_str()).collect();
    assert_eq!(cds.len(), 150, "two Gusto employees share a Visma record");
    for e in &all {
        assert!(
            cds.contains(e.employee_cd.as_str()) || story.strangers.contains(&e.employee_cd),
            "Visma record {} belongs to no one",
            e.employee_cd
        );
    }
    for k in &story.truth {
        let r = rows.iter().find(|r| r["employee_uuid"] == k.gusto_uuid.as_str()).expect("row");
        assert_eq!(r["employee_cd"], k.visma_cd.as_str(), "linked employee got another record");
    }
    for before in &strangers_before {
        assert_eq!(visma.employee(tenant, &before.employee_cd).as_ref(), Some(before), "stranger touched");
    }
    let only: Vec<String> = serde_json::from_value(report["visma_only"].clone()).expect("visma_only");
    assert_eq!(only.len(), 3, "{only:?}");
}
