//! The whole pipeline in one process, wired like `mlc demo` and `mlc run all`: a private
//! nats-server, the Gusto and Visma simulators, SQLite, the gateway on its own runtime,
//! the projector and the writer; plus a collector of every `SyncOutcome` with the instant
//! it was seen.

use crate::common::{self, GatewayHandle, Shared, MAPPING, TENANT};
use gusto::{GrantId, GustoClient};
use mlc_bus::{StreamKind, Topology};
use mlc_config::Config;
use mlc_projector::{Projector, ProjectorSettings};
use mlc_proto::v1::{Outcome, SyncOutcome};
use mlc_store::Store;
use mlc_testkit::{NatsServer, TestDb};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Gusto requests per window per grant, in the simulator and the client.
    pub gusto_limit: usize,
    pub gusto_window: Duration,
    /// Visma requests per hour per tenant in the simulator.
    pub visma_hourly_limit: u32,
    pub gateway_threads: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            gusto_limit: 200,
            gusto_window: Duration::from_secs(60),
            visma_hourly_limit: 15_000,
            gateway_threads: 1,
        }
    }
}

pub struct Pipeline {
    pub topo: Topology,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub gusto_sim: sim_gusto::SimHandle,
    pub visma_sim: sim_visma::SimHandle,
    pub store: Arc<Store>,
    pub gusto: Arc<GustoClient>,
    pub gateway: GatewayHandle,
    pub http: reqwest::Client,
    /// Every outcome seen, with when.
    pub outcomes: Shared<Vec<(Instant, SyncOutcome)>>,
    pub projector: Option<Arc<Projector>>,
    /// The writer's counters (its per-step times), once started.
    pub writer_metrics: Option<Arc<mlc_writer::WriterMetrics>>,
    /// The configuration the services are built from, as `mlc run all` builds them.
    pub cfg: Config,
    dir: tempfile::TempDir,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _db: TestDb,
    pub nats: NatsServer,
}

impl Pipeline {
    pub async fn start(opts: &PipelineOptions) -> anyhow::Result<Pipeline> {
        let nats = NatsServer::start();
        let mut cfg = Config { nats: nats.config(), ..Config::default() };
        cfg.nats.stream_prefix = mlc_testkit::unique("f");
        let client = mlc_bus::connect(&cfg.nats, "bench-pipeline").await?;
        let topo = mlc_runtime::topology(&cfg)?;
        let js = async_nats::jetstream::new(client.clone());
        mlc_bus::ensure_topology(&js, &topo).await?;
        let gusto_sim = sim_gusto::start(sim_gusto::SimConfig {
            rate_limit: opts.gusto_limit,
            rate_window: opts.gusto_window,
            ..Default::default()
        })
        .await?;
        let visma_sim = sim_visma::start(sim_visma::SimConfig {
            hourly_limit: opts.visma_hourly_limit,
            ..Default::default()
        })
        .await?;
        visma_sim.seed(sim_visma::DEFAULT_TENANT, &sim_visma::nordic_seed()).map_err(anyhow::Error::msg)?;
        let db = TestDb::sqlite();
        let store = Arc::new(db.store().await);
        let sim_cfg = gusto_sim.config().clone();
        cfg.gusto.base_url = gusto_sim.base_url();
        cfg.gusto.client_id = sim_cfg.client_id.clone();
        cfg.gusto.client_secret = Some(mlc_config::Secret::new(sim_cfg.client_secret.clone()));
        cfg.gusto.rate_limit = opts.gusto_limit as u32;
        cfg.gusto.rate_window_ms = opts.gusto_window.as_millis() as u64;
        cfg.visma.base_url = visma_sim.base_url().to_string();
        cfg.visma.token_url = visma_sim.token_url().to_string();
        cfg.visma.tenants.insert(
            TENANT.into(),
            mlc_config::VismaTenant {
                client_id: sim_visma::DEFAULT_CLIENT_ID.into(),
                client_secret: mlc_config::Secret::new(sim_visma::DEFAULT_CLIENT_SECRET),
                tenant_id: sim_visma::DEFAULT_TENANT.into(),
                ipp_company_id: None,
            },
        );
        cfg.projector.workers = 16;
        cfg.projector.burst_threshold = 20;
        let gusto = mlc_runtime::clients::gusto_client(&cfg, store.clone())?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("mapping.toml"), MAPPING)?;
        let gateway = GatewayHandle::start(&nats.url(), topo.clone(), opts.gateway_threads)?;

        let outcomes: Shared<Vec<(Instant, SyncOutcome)>> = Arc::new(Mutex::new(Vec::new()));
        let mut sub = client.subscribe(topo.wildcard(StreamKind::SyncOutcomes)).await?;
        let collected = outcomes.clone();
        let collector = tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(m) = sub.next().await {
                let at = Instant::now();
                if let Ok(o) = mlc_bus::decode::<SyncOutcome>(&m.subject, &m.payload) {
                    collected.lock().unwrap_or_else(|p| p.into_inner()).push((at, o));
                }
            }
        });
        Ok(Pipeline {
            topo,
            client,
            js,
            gusto_sim,
            visma_sim,
            store,
            gusto,
            gateway,
            http: common::http_client(64)?,
            outcomes,
            projector: None,
            writer_metrics: None,
            cfg,
            dir,
            stops: Vec::new(),
            tasks: vec![collector],
            _db: db,
            nats,
        })
    }

    /// Seeds a company of `n` employees in Gusto and connects it (OAuth code exchange).
    pub async fn add_company(&self, n: usize) -> anyhow::Result<sim_gusto::CompanyInfo> {
        let info = self.gusto_sim.seed_company(n);
        let redirect = "http://127.0.0.1/cb";
        let code = self.gusto_sim.issue_code(&info.company_uuid, redirect)?;
        let grant = GrantId(format!("grant-{}", info.company_uuid));
        self.gusto.exchange_code(&grant, &code, redirect).await?;
        let mapping = self.dir.path().join("mapping.toml");
        self.store.put_company(&mlc_testkit::connected_company(&info.company_uuid, TENANT, &mapping)).await?;
        Ok(info)
    }

    /// Starts the projector and the writer (production settings of `mlc run`) on the
    /// current runtime.
    pub fn start_services(&mut self) -> anyhow::Result<()> {
        let publisher = mlc_runtime::publisher(&self.cfg, &self.client);
        let p = Projector::new(
            self.js.clone(),
            publisher,
            self.store.clone(),
            self.gusto.clone(),
            ProjectorSettings::from_config(&self.cfg)?,
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let runner = p.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = runner
                .run(async {
                    let _ = rx.await;
                })
                .await
            {
                eprintln!("projector stopped: {e}");
            }
        }));
        self.stops.push(tx);
        self.projector = Some(p);

        let wsettings = mlc_writer::WriterSettings::from_config(
            &self.cfg,
            mlc_runtime::clients::visma_clients(&self.cfg)?,
        )?;
        self.writer_metrics = Some(wsettings.metrics.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (client, store) = (self.client.clone(), self.store.clone());
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = mlc_writer::run(client, store, wsettings, async {
                let _ = rx.await;
            })
            .await
            {
                eprintln!("writer stopped: {e}");
            }
        }));
        self.stops.push(tx);
        Ok(())
    }

    pub fn webhook_url(&self) -> String {
        self.gateway.webhook_url()
    }

    /// The private nats-server's pid (for its CPU time).
    pub fn nats_pid(&self) -> Option<u32> {
        common::nats_pid(self.nats.port())
    }

    /// Number of outcomes seen so far (a mark to count from).
    pub fn outcome_mark(&self) -> usize {
        self.outcomes.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Distinct employees with an APPLIED outcome since `mark`.
    pub fn applied_since(&self, mark: usize) -> HashSet<String> {
        let o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        o[mark.min(o.len())..]
            .iter()
            .filter(|(_, o)| o.outcome() == Outcome::Applied)
            .map(|(_, o)| o.employee_uuid.clone())
            .collect()
    }

    /// Outcomes other than APPLIED since `mark`, by kind.
    pub fn other_outcomes_since(&self, mark: usize) -> HashMap<String, usize> {
        let o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = HashMap::new();
        for (_, o) in &o[mark.min(o.len())..] {
            if o.outcome() != Outcome::Applied {
                *out.entry(o.outcome().as_str_name().to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Waits until `n` distinct employees were applied since `mark`; returns when the last
    /// one was seen, or `None` on timeout.
    pub async fn wait_applied(&self, mark: usize, n: usize, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
                let mut seen = HashSet::new();
                for (at, o) in &o[mark.min(o.len())..] {
                    if o.outcome() == Outcome::Applied
                        && seen.insert(o.employee_uuid.as_str())
                        && seen.len() >= n
                    {
                        return Some(*at);
                    }
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts the bodies as signed webhooks at `concurrency`; returns the non-200 count.
    pub async fn post_all(&self, bodies: Vec<String>, concurrency: usize) -> usize {
        let bodies = Arc::new(bodies);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let (bodies, next, http, url) =
                    (bodies.clone(), next.clone(), self.http.clone(), self.webhook_url());
                tokio::spawn(async move {
                    let mut failed = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(b) = bodies.get(i) else { break };
                        if !matches!(common::post_signed(&http, &url, b.clone()).await, Ok(200)) {
                            failed += 1;
                        }
                    }
                    failed
                })
            })
            .collect();
        let mut failed = 0;
        for t in tasks {
            failed += t.await.unwrap_or(1);
        }
        failed
    }

    /// Stops the services and the collector.
    pub async fn stop(mut self) {
        for tx in self.stops.drain(..) {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}
