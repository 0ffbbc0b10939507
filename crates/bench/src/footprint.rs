//! `footprint`: resident memory of each service as a process (`mlc run gateway|projector|writer`
//! with a configuration like `mlc demo` writes), idle and at peak under a sync of N
//! employees delivered as webhooks. Reads `/proc/<pid>/status` (VmRSS, VmHWM).

use crate::common::{self, Report, Row, Target, MAPPING, TENANT};
use futures::StreamExt;
use gusto::GrantId;
use mlc_bus::{StreamKind, Topology};
use mlc_proto::v1::{Outcome, SyncOutcome};
use mlc_testkit::StopOnDrop;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct FootprintArgs {
    /// Employees synced during the peak phase.
    #[arg(long, default_value_t = 1000)]
    pub employees: usize,
    /// Webhooks per employee during the peak phase.
    #[arg(long, default_value_t = 5)]
    pub webhooks_per_employee: usize,
    /// Gusto rate window in ms (simulator and `gusto.rate_window_ms`); Gusto's is 60,000.
    #[arg(long, default_value_t = 5_000)]
    pub rate_window_ms: u64,
    /// The `mlc` binary; default: next to this one (target/release/mlc).
    #[arg(long)]
    pub mlc_bin: Option<PathBuf>,
    /// Small and quick: 100 employees.
    #[arg(long)]
    pub quick: bool,
}

pub fn run(args: &FootprintArgs) -> anyhow::Result<Report> {
    let mut a = args.clone();
    if a.quick {
        a.employees = a.employees.min(100);
    }
    let rt = common::runtime("footprint", 2)?;
    rt.block_on(run_async(a))
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{url} not ready within 30 s")
}

async fn run_async(a: FootprintArgs) -> anyhow::Result<Report> {
    let bin = match &a.mlc_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("mlc"),
    };
    anyhow::ensure!(bin.exists(), "{} missing: cargo build --release -p mlc", bin.display());
    let nats = mlc_testkit::NatsServer::start();
    let window = Duration::from_millis(a.rate_window_ms);
    let gusto_sim =
        sim_gusto::start(sim_gusto::SimConfig { rate_window: window, ..Default::default() }).await?;
    let visma_sim =
        sim_visma::start(sim_visma::SimConfig { hourly_limit: 100_000_000, ..Default::default() }).await?;
    visma_sim.seed(sim_visma::DEFAULT_TENANT, &sim_visma::nordic_seed()).map_err(anyhow::Error::msg)?;
    let company = gusto_sim.seed_company(a.employees);

    let dir = tempfile::tempdir()?;
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(&mapping, MAPPING)?;
    let mut cfg = mlc_testkit::sandbox_config(&nats.url(), &gusto_sim, &visma_sim, dir.path());
    cfg.nats.stream_prefix = mlc_testkit::unique("fp");
    let prefix = cfg.nats.stream_prefix.clone();
    cfg.gateway.webhook_tokens = vec![mlc_config::Secret::new(common::TOKEN)];
    cfg.gusto.rate_window_ms = a.rate_window_ms;
    cfg.telemetry.log_format = "json".into();
    let config = dir.path().join("mlc.toml");
    mlc_testkit::write_config(&config, &cfg)?;
    let (gw_listen, pm, wm, gw_ops) = (
        cfg.gateway.listen.clone(),
        cfg.projector.metrics_listen.clone(),
        cfg.writer.metrics_listen.clone(),
        cfg.gateway.ops_listen.clone(),
    );
    // Connect the company in the services' store, as `mlc company add` would.
    {
        // Built from the file the services read, the way `mlc` builds them.
        let cfg = mlc_config::Config::load_from(Some(&config), &[])?;
        let store = Arc::new(mlc_runtime::open_store(&cfg).await?);
        let gusto = mlc_runtime::clients::gusto_client(&cfg, store.clone())?;
        let code = gusto_sim.issue_code(&company.company_uuid, "http://127.0.0.1/cb")?;
        let grant = GrantId(format!("grant-{}", company.company_uuid));
        gusto.exchange_code(&grant, &code, "http://127.0.0.1/cb").await?;
        store.put_company(&mlc_testkit::connected_company(&company.company_uuid, TENANT, &mapping)).await?;
        store.close().await;
    }

    let mut procs = Vec::new();
    for name in ["gateway", "projector", "writer"] {
        let child =
            mlc_testkit::mlc_run(&bin, &config, name, &dir.path().join(format!("{name}.log")))?.spawn()?;
        procs.push(StopOnDrop { name, child });
    }
    wait_ready(&format!("http://{gw_ops}/readyz")).await?;
    wait_ready(&format!("http://{pm}/readyz")).await?;
    wait_ready(&format!("http://{wm}/readyz")).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pids: Vec<(&str, u32)> = procs.iter().map(|p| (p.name, p.child.id())).collect();
    let nats_pid = common::nats_pid(nats.port());
    let idle: Vec<f64> =
        pids.iter().map(|(_, pid)| common::rss_mib(*pid).map_or(f64::NAN, |r| r.0)).collect();
    let nats_idle = nats_pid.and_then(common::rss_mib).map_or(f64::NAN, |r| r.0);

    // Peak: every employee changes, and Gusto delivers several webhooks for each.
    let client = mlc_bus::connect(&nats.config(), "bench-footprint").await?;
    let topo = Topology::new(&prefix, 1)?;
    let applied: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut sub = client.subscribe(topo.wildcard(StreamKind::SyncOutcomes)).await?;
    let seen = applied.clone();
    let collector = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Ok(o) = mlc_bus::decode::<SyncOutcome>(&m.subject, &m.payload) {
                if o.outcome() == Outcome::Applied {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).insert(o.employee_uuid);
                }
            }
        }
    });
    let sampler_pids: Vec<u32> = pids.iter().map(|(_, p)| *p).chain(nats_pid).collect();
    let peak_rss: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(vec![0.0; sampler_pids.len()]));
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                for (i, pid) in sampler_pids.iter().enumerate() {
                    if let Some((rss, _)) = common::rss_mib(*pid) {
                        let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                        p[i] = p[i].max(rss);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let t = Instant::now();
    let http = common::http_client(32)?;
    let url = format!("http://{gw_listen}/webhooks/gusto");
    let mut bodies = Vec::new();
    for (i, e) in company.employee_uuids.iter().enumerate() {
        gusto_sim.update_employee(
            e,
            sim_gusto::EmployeePatch { last_name: Some(format!("Peak{i}")), ..Default::default() },
        )?;
        for _ in 0..a.webhooks_per_employee {
            bodies.push(common::webhook_body(
                &uuid::Uuid::new_v4().to_string(),
                &company.company_uuid,
                e,
                "employee.updated",
            ));
        }
    }
    let webhooks = bodies.len();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (bodies, next, http, url) = (bodies.clone(), next.clone(), http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(b) = bodies.get(i) else { break };
                if !matches!(common::post_signed(&http, &url, b.clone()).await, Ok(200)) {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap_or(1);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while applied.lock().unwrap_or_else(|e| e.into_inner()).len() < company.employee_uuids.len()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = applied.lock().unwrap_or_else(|e| e.into_inner()).len();
    let took = t.elapsed().as_secs_f64();
    sampler.abort();
    collector.abort();
    let peaks = peak_rss.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let hwm: Vec<f64> = pids.iter().map(|(_, pid)| common::rss_mib(*pid).map_or(f64::NAN, |r| r.1)).collect();

    let mut report = Report::new(format!(
        "footprint: services as processes, idle vs peak during a sync of {} employees ({webhooks} webhooks)",
        company.employee_uuids.len()
    ));
    report.note(format!(
        "{synced}/{} employees applied in {took:.1} s, {refused} webhooks refused; Gusto window {} ms{}",
        company.employee_uuids.len(),
        a.rate_window_ms,
        if a.rate_window_ms == 60_000 { "" } else { " (compressed in simulator and gusto.rate_window_ms)" }
    ));
    report.note(
        "baseline = VmRSS idle (3 s after ready); ours = max(sampled VmRSS every 50 ms, VmHWM at the end)",
    );
    for (i, (name, _)) in pids.iter().enumerate() {
        report.row(Row::new(
            format!("{name} RSS MiB (idle vs peak)"),
            Some(idle[i]),
            peaks[i].max(hwm[i]),
            Target::Info,
        ));
    }
    if nats_pid.is_some() {
        report.row(Row::new(
            "nats-server RSS MiB (idle vs peak), context",
            Some(nats_idle),
            peaks[pids.len()],
            Target::Info,
        ));
    }
    report.row(Row::new(
        "employees not synced",
        None,
        (company.employee_uuids.len() - synced) as f64,
        Target::ValueAtMost(0.0),
    ));
    drop(procs);
    Ok(report)
}
