//! `mlc demo`: the product's own story, end to end, on embedded defaults.
//!
//! A Nordic consulting firm keeps its people in Gusto and its books in Visma.net. The
//! demo starts both simulators, a nats-server when none is reachable, SQLite, and the
//! three services as child processes of this binary; connects the company (OAuth code
//! exchange), subscribes to webhooks (with the verification handshake through the
//! gateway), runs the initial sync, then plays a day of changes as signed webhooks.
//! It ends with a reconciliation computed from both simulators' data, and exits 0 only
//! when every employee is in sync.

use crate::ctx::Ctx;
use crate::{ops, reconcile};
use anyhow::{bail, Context as _};
use clap::Args;
use mlc_bus::StreamKind;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct DemoArgs {
    /// Employees of the firm at the end of the day (three of them are hired during it).
    #[arg(long, default_value_t = 150)]
    pub employees: usize,
    /// Keep the work directory, the streams and the logs afterwards.
    #[arg(long)]
    pub keep: bool,
    /// How long to wait for the sync to converge at each step.
    #[arg(long, default_value_t = 180)]
    pub timeout_secs: u64,
    /// Print the full reconciliation table (one line per employee).
    #[arg(long)]
    pub full_table: bool,
}

const TENANT: &str = "nordic";
const MAPPING: &str = include_str!("../../../schemas/examples/mapping.example.toml");

struct Child {
    name: &'static str,
    child: std::process::Child,
}

impl Drop for Child {
    fn drop(&mut self) {
        // SIGTERM first: the services finish what they hold and exit.
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn step(started: Instant, msg: impl std::fmt::Display) {
    println!("[{:>5.1}s] {msg}", started.elapsed().as_secs_f64());
}

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

pub async fn demo(args: DemoArgs, _config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if args.employees < 10 {
        bail!("--employees must be at least 10");
    }
    let work = tempfile::Builder::new().prefix("mlc-demo-").tempdir()?;
    let dir = work.path().to_path_buf();
    step(started, format!("work directory {}", dir.display()));

    // NATS: the local server when one answers, else a private one.
    let mut _nats_child = None;
    let default_url = std::env::var("MLC_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats_url = if mlc_bus::connect_now(&default_url, "mlc-demo-probe").await.is_ok() {
        step(started, format!("using the NATS server at {default_url}"));
        default_url
    } else {
        let addr = free_addr()?;
        let port = addr.rsplit(':').next().unwrap_or("4222").to_string();
        let bin =
            if Path::new("/usr/sbin/nats-server").exists() { "/usr/sbin/nats-server" } else { "nats-server" };
        let child = std::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(dir.join("nats"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| {
                format!("no NATS at {default_url} and cannot start {bin}; run `bash ops/demo.sh`")
            })?;
        _nats_child = Some(Child { name: "nats-server", child });
        let url = format!("nats://127.0.0.1:{port}");
        for _ in 0..100 {
            if mlc_bus::connect_now(&url, "mlc-demo-probe").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        step(started, format!("started a private nats-server at {url}"));
        url
    };

    // The two simulators, in this process.
    let gusto_sim = sim_gusto::start(sim_gusto::SimConfig {
        webhooks: sim_gusto::WebhookConfig { retry_base: Duration::from_millis(500), ..Default::default() },
        ..Default::default()
    })
    .await?;
    let visma_sim = sim_visma::start(sim_visma::SimConfig::default()).await?;
    let firm = gusto_sim.sim().seed_named_company("Fjord & Fjell Consulting AS", args.employees - 3);
    visma_sim.seed(sim_visma::DEFAULT_TENANT, &nordic_visma_seed()).map_err(|e| anyhow::anyhow!(e))?;
    step(
        started,
        format!(
            "Gusto simulator {} with {} employees in 5 offices; Visma simulator {}",
            gusto_sim.base_url(),
            firm.employee_uuids.len(),
            visma_sim.base_url()
        ),
    );

    // One configuration for this process and the three services.
    let mapping_path = dir.join("mapping.toml");
    std::fs::write(&mapping_path, MAPPING)?;
    let gateway_listen = free_addr()?;
    let prefix = format!("demo{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let config_path = dir.join("mlc.toml");
    let gcfg = gusto_sim.sim().config().clone();
    std::fs::write(
        &config_path,
        format!(
            r#"# Written by `mlc demo`: every value points at the bundled simulators.
[nats]
url = "{nats_url}"
stream_prefix = "{prefix}"

[store]
url = "sqlite://{db}"
encryption_key = "{key}"

[gateway]
listen = "{gateway_listen}"

[gusto]
base_url = "{gusto}"
client_id = "{gid}"
client_secret = "{gsecret}"
redirect_uri = "http://127.0.0.1/oauth/callback"

[visma]
base_url = "{visma}"
token_url = "{visma_token}"

[visma.tenants.{TENANT}]
client_id = "{vid}"
client_secret = "{vsecret}"
tenant_id = "{vtenant}"

[projector]
metrics_listen = "{pm}"

[writer]
metrics_listen = "{wm}"

[telemetry]
log_format = "json"
"#,
            db = dir.join("mlc.db").display(),
            key = mlc_store::EncryptionKey::generate_base64(),
            gusto = gusto_sim.base_url(),
            gid = gcfg.client_id,
            gsecret = gcfg.client_secret,
            visma = visma_sim.base_url(),
            visma_token = visma_sim.token_url(),
            vid = sim_visma::DEFAULT_CLIENT_ID,
            vsecret = sim_visma::DEFAULT_CLIENT_SECRET,
            vtenant = sim_visma::DEFAULT_TENANT,
            pm = free_addr()?,
            wm = free_addr()?,
        ),
    )?;
    let cfg = mlc_config::Config::load_from(Some(&config_path), &[])?;
    let ctx = Ctx::connect(cfg.clone(), "mlc-demo").await?;

    // Connect the company: the OAuth code a Gusto admin's consent would give.
    let redirect = cfg.gusto.redirect_uri.clone();
    let code = gusto_sim.sim().issue_code(&firm.company_uuid, &redirect)?;
    ops::company(
        cfg.clone(),
        ops::CompanyCommand::Add {
            company: firm.company_uuid.clone(),
            name: "Fjord & Fjell Consulting AS".into(),
            code,
            redirect_uri: Some(redirect),
            visma_tenant: TENANT.into(),
            mapping: mapping_path.clone(),
            skip_review: true,
        },
    )
    .await?;

    // The services, as real processes.
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for name in ["gateway", "projector", "writer"] {
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = std::process::Command::new(&exe)
            .arg("--config")
            .arg(&config_path)
            .args(["run", name])
            .env_remove("MLC_CONFIG")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting `mlc run {name}`"))?;
        children.push(Child {
            name: if name == "gateway" {
                "gateway"
            } else if name == "projector" {
                "projector"
            } else {
                "writer"
            },
            child,
        });
    }
    wait_ready(&format!("http://{gateway_listen}/readyz"), Duration::from_secs(30)).await?;
    step(started, format!("gateway, projector and writer running (logs in {})", dir.display()));

    let webhook_url = format!("http://{gateway_listen}/webhooks/gusto");
    let sub = ops::subscribe_with(&ctx.store, ctx.gusto()?.as_ref(), Some(&webhook_url), None, 30).await?;
    step(started, format!("webhook subscription {sub} verified through the gateway's handshake"));

    // The initial sync.
    let queued = ops::backfill(&ctx, &firm.company_uuid, false).await?;
    step(started, format!("initial sync: {queued} employees queued from Gusto's paged list"));
    converge(&ctx, &visma_sim, &firm.company_uuid, started, args.timeout_secs, "initial sync").await?;

    // A day at the firm, as Gusto would send it.
    step(started, "a day of changes, delivered as signed webhooks:");
    let day = play_day(&gusto_sim, &firm)?;
    for line in &day {
        println!("         - {line}");
    }
    let report =
        converge(&ctx, &visma_sim, &firm.company_uuid, started, args.timeout_secs, "day of changes").await?;

    let ok = report.in_sync();
    print_visma_summary(&visma_sim);
    step(started, "reconciliation of the simulators' data (Gusto's employees against Visma's records):");
    println!();
    reconcile::print_report(&report, !args.full_table);

    drop(children);
    if args.keep {
        let kept = work.keep();
        eprintln!("kept {} (config mlc.toml, logs, SQLite); streams prefixed {prefix}", kept.display());
    } else {
        for kind in StreamKind::ALL {
            let _ = ctx.js.delete_stream(ctx.topo.stream(kind)).await;
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn wait_ready(url: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} not ready within {within:?}; see the service logs")
}

/// Waits until the pipeline is idle, then compares both systems; repeats until they
/// agree or time runs out. The comparison costs Gusto calls, so it runs only when idle.
async fn converge(
    ctx: &Ctx,
    visma: &sim_visma::SimHandle,
    company: &str,
    started: Instant,
    timeout_secs: u64,
    what: &str,
) -> anyhow::Result<reconcile::Report> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut last_line = String::new();
    let mut idle_polls = 0;
    loop {
        let busy = pipeline_busy(ctx).await?;
        let line = format!(
            "{what}: {} employees in Visma, {} messages in flight",
            visma.employees(sim_visma::DEFAULT_TENANT).len(),
            busy
        );
        if line != last_line {
            step(started, &line);
            last_line = line;
        }
        idle_polls = if busy == 0 { idle_polls + 1 } else { 0 };
        if idle_polls >= 2 {
            let report = reconcile::compare(ctx, company).await?;
            if report.in_sync() || Instant::now() > deadline {
                step(started, format!("{what}: in sync {}/{}", report.in_sync_count(), report.rows.len()));
                return Ok(report);
            }
            idle_polls = 0;
        }
        if Instant::now() > deadline {
            return reconcile::compare(ctx, company).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Messages pending or in flight on the three consumers.
async fn pipeline_busy(ctx: &Ctx) -> anyhow::Result<u64> {
    let mut n = 0;
    for spec in mlc_bus::ConsumerSpec::ALL {
        let stream = ctx.js.get_stream(ctx.topo.stream(spec.stream)).await?;
        let mut c = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(spec.durable)
            .await
            .map_err(|e| anyhow::anyhow!("consumer {}: {e}", spec.durable))?;
        let info = c.info().await?;
        n += info.num_pending + info.num_ack_pending as u64;
    }
    Ok(n)
}

/// Hires, title changes, a transfer, a termination, a rehire, a name change.
fn play_day(gusto: &sim_gusto::SimHandle, firm: &sim_gusto::CompanyInfo) -> anyhow::Result<Vec<String>> {
    let sim = gusto.sim();
    let e = &firm.employee_uuids;
    let (oslo, stockholm, copenhagen, helsinki) =
        (&firm.location_uuids[0], &firm.location_uuids[1], &firm.location_uuids[2], &firm.location_uuids[3]);
    let dept = &firm.department_uuids;
    let mut log = Vec::new();
    for (first, last, title, d, loc, city) in [
        ("Sigrid", "Haugland", "Consultant", 0, oslo, "Oslo"),
        ("Elias", "Lindqvist", "Software Engineer", 1, stockholm, "Stockholm"),
        ("Freja", "Møller", "Account Executive", 3, copenhagen, "Copenhagen"),
    ] {
        sim.hire(
            &firm.company_uuid,
            sim_gusto::HireRequest {
                first_name: Some(first.into()),
                last_name: Some(last.into()),
                work_email: Some(format!(
                    "{}.{}@fjordfjell.example",
                    first.to_lowercase(),
                    last.to_lowercase()
                )),
                title: Some(title.into()),
                department_uuid: Some(dept[d].clone()),
                location_uuid: Some(loc.clone()),
                ..Default::default()
            },
        )?;
        log.push(format!("hired {first} {last}, {title} in {city}"));
    }
    sim.change_title(&e[0], "Senior Consultant")?;
    sim.change_title(&e[1], "Partner")?;
    sim.change_title(&e[2], "Trainee")?;
    log.push("three title changes (one promotion to Partner)".into());
    sim.transfer(&e[3], helsinki, None)?;
    log.push("one transfer to the Helsinki office".into());
    sim.update_employee(
        &e[4],
        sim_gusto::EmployeePatch { last_name: Some("Aasen-Berg".into()), ..Default::default() },
    )?;
    log.push("one surname change".into());
    sim.terminate(&e[5], None)?;
    log.push("one termination (effective today)".into());
    sim.terminate(&e[6], None)?;
    sim.rehire(&e[6], None)?;
    log.push("one termination and rehire the same day".into());
    Ok(log)
}

fn print_visma_summary(visma: &sim_visma::SimHandle) {
    let employees = visma.employees(sim_visma::DEFAULT_TENANT);
    let mut by_branch: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for e in &employees {
        let entry = by_branch.entry(e.branch.clone()).or_default();
        if format!("{:?}", e.status) == "Active" {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    let line = by_branch.iter().map(|(b, (a, i))| format!("{b}: {a}+{i}")).collect::<Vec<_>>().join(", ");
    println!("         Visma employees by branch (active+inactive): {line}");
}

/// The Visma company the example mapping expects: departments, branches (one per office),
/// employee classes, the calendar and the office segment values.
pub fn nordic_visma_seed() -> sim_visma::Seed {
    use sim_visma::{SeedBranch, SeedClass, SeedDepartment, SeedSegment, SeedSegmentValue};
    let deps = [
        ("CONS", "Consulting"),
        ("ENG", "Engineering"),
        ("FIN", "Finance"),
        ("SALES", "Sales"),
        ("HR", "People"),
        ("OPS", "Operations"),
        ("ADMIN", "Administration"),
    ];
    let branches =
        [("1", "Oslo"), ("2", "Stockholm"), ("3", "Copenhagen"), ("4", "Helsinki"), ("5", "Reykjavik")];
    sim_visma::Seed {
        departments: deps
            .iter()
            .map(|(id, d)| SeedDepartment { id: (*id).into(), description: Some((*d).into()) })
            .collect(),
        branches: branches
            .iter()
            .map(|(n, name)| SeedBranch { number: (*n).into(), name: (*name).into() })
            .collect(),
        employee_classes: ["EMPSTD", "EMPPART", "EMPCONS", "EMPTEMP"]
            .iter()
            .map(|id| SeedClass { id: (*id).into(), description: (*id).into() })
            .collect(),
        calendars: vec!["MAIN".into()],
        segments: vec![SeedSegment {
            dimension: "SUBACCOUNT".into(),
            segment_id: 2,
            description: "Office".into(),
            length: 3,
            values: ["OSL", "STO", "CPH", "HEL", "REK"]
                .iter()
                .map(|v| SeedSegmentValue { value: (*v).into(), description: None })
                .collect(),
        }],
        employees: Vec::new(),
    }
}
