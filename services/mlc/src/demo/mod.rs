//! `mlc demo`: the product's own story, end to end.
//!
//! A Nordic consulting firm keeps its people in Gusto and its books in Visma.net, where it
//! has kept the same people by hand for years: most of them are there already, some with
//! an old email or a typo in the surname, plus a few people Gusto never had. The demo
//! connects the company (OAuth code exchange), subscribes to webhooks (with the
//! verification handshake through the gateway), runs the first-connect review (propose
//! links on two criteria, approve the clear ones the way an operator would, apply), runs the
//! initial sync, then plays a day of changes as signed webhooks. It ends with a
//! reconciliation computed from both simulators' data, and exits 0 only when every Gusto
//! employee is in sync and the Visma-only people are untouched.
//!
//! Two ways to run it, one story ([`story`]), driven through the simulators' admin HTTP
//! APIs either way:
//!
//! * `mlc demo`: starts both simulators, its own private nats-server (unless told
//!   `--nats-url`), SQLite, and the three services as child processes of this binary;
//! * `mlc demo --external`: the docker-compose sandbox profile; uses the configured
//!   simulators, NATS, store and already-running services, and points the webhook
//!   subscription at `--webhook-url`.

use crate::ctx::Ctx;
use anyhow::{bail, Context as _};
use clap::Args;
use mlc_bus::StreamKind;
use mlc_testkit::StopOnDrop;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod story;
use story::{story, Stage};

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
    /// Print the full reconciliation and match tables (one line per employee).
    #[arg(long)]
    pub full_table: bool,
    /// Use the configured simulators, NATS, store and running services (the compose
    /// sandbox profile) instead of starting them.
    #[arg(long)]
    pub external: bool,
    /// With --external: the gateway's webhook URL as the Gusto simulator reaches it.
    #[arg(long, default_value = "http://gateway:8080/webhooks/gusto")]
    pub webhook_url: String,
    /// With --external: the key of visma.tenants to use (default: the only one, or `demo`).
    #[arg(long)]
    pub visma_tenant: Option<String>,
    /// Use this NATS server (its streams get a private prefix and are deleted afterwards)
    /// instead of starting a private nats-server (ignored with --external).
    #[arg(long, value_name = "URL", env = "MLC_NATS_URL")]
    pub nats_url: Option<String>,
    /// At the end, leave everything running and serve the operator console (on
    /// 127.0.0.1:8090, or a free port when that is taken) until Ctrl-C.
    #[arg(long, conflicts_with = "external")]
    pub serve: bool,
}

/// The sandbox configuration's one Visma tenant.
const TENANT: &str = mlc_testkit::sandbox::TENANT;
const FIRM: &str = "Fjord & Fjell Consulting AS";
const MAPPING: &str = include_str!("../../../../schemas/examples/mapping.example.toml");
const MAPPING_FILE: &str = "mapping.example.toml";

fn step(started: Instant, msg: impl std::fmt::Display) {
    outln!("[{:>5.1}s] {msg}", started.elapsed().as_secs_f64());
}

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

pub async fn demo(args: DemoArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    if args.employees < 10 {
        bail!("--employees must be at least 10");
    }
    if args.external {
        external(args, config).await
    } else {
        local(args).await
    }
}

/// Everything started here: NATS (unless `--nats-url`), the simulators, the services.
async fn local(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let work = tempfile::Builder::new().prefix("mlc-demo-").tempdir()?;
    let dir = work.path().to_path_buf();
    step(started, format!("work directory {}", dir.display()));

    // NATS: a private server, so the demo never writes into someone else's; or the one
    // the user named.
    let mut _nats_child = None;
    let nats_url = if let Some(url) = &args.nats_url {
        mlc_bus::connect_now(&mlc_bus::NatsConfig::at(url), "mlc-demo-probe")
            .await
            .with_context(|| format!("--nats-url {url}"))?;
        step(started, format!("using the NATS server at {url} (--nats-url)"));
        url.clone()
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
                format!(
                    "cannot start {bin} (install nats-server, or give --nats-url); run `bash ops/demo.sh`"
                )
            })?;
        _nats_child = Some(StopOnDrop { name: "nats-server", child });
        let url = format!("nats://127.0.0.1:{port}");
        for _ in 0..100 {
            if mlc_bus::connect_now(&mlc_bus::NatsConfig::at(&url), "mlc-demo-probe").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        step(started, format!("started a private nats-server at {url}"));
        url
    };

    // The two simulators, in this process, empty: the story seeds them over HTTP.
    let gusto_sim = sim_gusto::start(sim_gusto::SimConfig {
        webhooks: sim_gusto::WebhookConfig { retry_base: Duration::from_millis(500), ..Default::default() },
        ..Default::default()
    })
    .await?;
    let visma_sim = sim_visma::start(sim_visma::SimConfig::default()).await?;
    step(
        started,
        format!("Gusto simulator {}, Visma simulator {}", gusto_sim.base_url(), visma_sim.base_url()),
    );

    // One configuration for this process and the three services: the sandbox one, with
    // the OAuth redirect on the gateway and JSON logs.
    let mapping_path = dir.join(MAPPING_FILE);
    std::fs::write(&mapping_path, MAPPING)?;
    let prefix = format!("demo{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let config_path = dir.join("mlc.toml");
    let mut sandbox = mlc_testkit::sandbox_config(&nats_url, &gusto_sim, &visma_sim, &dir);
    sandbox.nats.stream_prefix = prefix.clone();
    sandbox.gusto.redirect_uri = format!("http://{}/oauth/callback", sandbox.gateway.listen);
    sandbox.telemetry.log_format = "json".into();
    if args.serve && std::net::TcpListener::bind("127.0.0.1:8090").is_ok() {
        sandbox.console.listen = "127.0.0.1:8090".into();
    }
    let console_listen = sandbox.console.listen.clone();
    std::fs::write(
        &config_path,
        format!(
            "# Written by `mlc demo`: every value points at the bundled simulators.\n{}",
            sandbox.to_toml_with_secrets()
        ),
    )?;
    let (gateway_listen, gateway_ops) = (sandbox.gateway.listen.clone(), sandbox.gateway.ops_listen.clone());
    let cfg = mlc_config::Config::load_from(Some(&config_path), &[])?;
    let ctx = Ctx::connect(cfg.clone(), "mlc-demo").await?;

    // The services, as real processes.
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    let services: &[&'static str] = if args.serve {
        &["gateway", "projector", "writer", "console"]
    } else {
        &["gateway", "projector", "writer"]
    };
    for name in services.iter().copied() {
        let child = mlc_testkit::mlc_run(&exe, &config_path, name, &dir.join(format!("{name}.log")))?
            .spawn()
            .with_context(|| format!("starting `mlc run {name}`"))?;
        children.push(StopOnDrop { name, child });
    }
    wait_ready(&format!("http://{gateway_ops}/readyz"), Duration::from_secs(30)).await?;
    step(started, format!("gateway, projector and writer running (logs in {})", dir.display()));

    let stage =
        Stage::new(ctx, TENANT, mapping_path, format!("http://{gateway_listen}/webhooks/gusto"), dir)?;
    let ok = story(&stage, &args, started).await?;
    if args.serve {
        wait_ready(&format!("http://{console_listen}/healthz"), Duration::from_secs(30)).await?;
        println!("console: http://{console_listen}/  (the demo's stack keeps running; Ctrl-C stops it)");
        crate::ctx::shutdown_signal().await;
    }

    drop(children);
    if args.keep {
        let kept = work.keep();
        eprintln!(
            "kept {} (config mlc.toml, logs, SQLite, review file); streams prefixed {prefix}",
            kept.display()
        );
    } else {
        for kind in StreamKind::ALL {
            let _ = stage.ctx.js.delete_stream(stage.ctx.topo.stream(kind)).await;
        }
        let _ = stage.ctx.js.delete_stream(stage.ctx.topo.handshakes_stream()).await;
        let _ = stage.ctx.js.delete_stream(format!("KV_{}", stage.ctx.topo.webhook_keys_bucket())).await;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The compose sandbox: simulators, NATS, store and services are the configured ones.
async fn external(args: DemoArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let cfg = mlc_config::Config::load(config)?;
    let tenant = match &args.visma_tenant {
        Some(t) => t.clone(),
        None if cfg.visma.tenants.len() == 1 => cfg.visma.tenants.keys().next().cloned().unwrap_or_default(),
        None => "demo".to_string(),
    };
    if !cfg.visma.tenants.contains_key(&tenant) {
        bail!("no Visma tenant {tenant:?} under visma.tenants in the configuration; give --visma-tenant");
    }
    let work = tempfile::Builder::new().prefix("mlc-demo-").tempdir()?;
    // The image ships the example mapping where the projector reads mappings; a mapping
    // written here would be invisible to a projector in another container.
    let shipped = cfg.projector.mappings_dir.join(MAPPING_FILE);
    let mapping = if shipped.is_file() {
        shipped
    } else {
        let p = work.path().join(MAPPING_FILE);
        std::fs::write(&p, MAPPING)?;
        eprintln!(
            "note: {} not found; using {} (the projector must see this path)",
            shipped.display(),
            p.display()
        );
        p
    };
    step(
        started,
        format!(
            "external mode: Gusto {}, Visma {}, NATS {}",
            cfg.gusto.base_url, cfg.visma.base_url, cfg.nats.url
        ),
    );
    let ctx = Ctx::connect(cfg, "mlc-demo").await?;
    let stage = Stage::new(ctx, &tenant, mapping, args.webhook_url.clone(), work.path().to_path_buf())?;
    let ok = story(&stage, &args, started).await?;
    if args.keep {
        let kept = work.keep();
        eprintln!("kept {} (review file)", kept.display());
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
