//! A whole ml-connector installation for one test: a private nats-server, the Gusto and
//! Visma simulators, a SQLite store, and `mlc run gateway|projector|writer` as three
//! real processes, configured through one typed [`Config`] (written as the file the
//! processes read), driven with the real `mlc` CLI.
//!
//! The `mlc` binary must be built first (`cargo build -p mlc`; `ops/test.sh` does it).

use crate::sandbox::{sandbox_config, sim_tenant, write_config};
use crate::NatsServer;
use mlc_bus::{StreamKind, Topology};
use mlc_config::{Config, Secret};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::sandbox::TENANT;
pub const MAPPING: &str = include_str!("../../../schemas/examples/mapping.example.toml");

/// Where `mlc` is: `MLC_BIN`, else the workspace's debug build.
pub fn mlc_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MLC_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug/mlc");
    assert!(bin.exists(), "{} is missing: run `cargo build -p mlc` first (ops/test.sh does)", bin.display());
    bin
}

/// Runs the `mlc` CLI with `config` (asynchronously: the in-process simulators answer it
/// from the caller's runtime). Bounded (5 minutes): a command that hangs fails the test with its arguments, and is
/// killed.
pub async fn run_mlc(config: &Path, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(mlc_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("MLC_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(300), run).await {
        Ok(out) => out.expect("run mlc"),
        Err(_) => panic!("mlc {args:?} did not finish within 300 s"),
    }
}

/// A running installation.
pub struct Stack {
    pub nats: NatsServer,
    pub gusto: sim_gusto::SimHandle,
    pub visma: sim_visma::SimHandle,
    pub dir: tempfile::TempDir,
    /// The configuration file the services and the CLI read ([`Stack::cfg`] written out).
    pub config: PathBuf,
    /// The typed configuration behind [`Stack::config`]; change it with [`Stack::edit_config`].
    cfg: Mutex<Config>,
    pub prefix: String,
    pub gateway: String,
    pub company: sim_gusto::CompanyInfo,
    services: Vec<(String, crate::Tethered)>,
    pub js: async_nats::jetstream::Context,
    pub topo: Topology,
    /// Every company of a [`Stack::start_fleet`] installation (empty for [`Stack::start`]).
    pub companies: Vec<FleetCompany>,
    /// Counting proxies in front of the simulators' APIs ([`Stack::start_fleet`] only).
    pub gusto_proxy: Option<CountingProxy>,
    pub visma_proxy: Option<CountingProxy>,
    /// The store's URL and encryption key (base64), to read the audit log from a test.
    pub store_url: String,
    pub store_key: String,
    /// With [`StackOptions::nats_users`]: the users of `ops/nats/auth.conf` and their
    /// passwords; each service runs as its own user, the CLI as `admin`.
    pub nats_users: Option<NatsUsers>,
}

/// What to start.
pub struct StackOptions {
    pub employees: usize,
    pub visma_seed: sim_visma::Seed,
    /// Create the webhook subscription (else changes reach the connector only by backfill).
    pub subscribe: bool,
    /// Run NATS with the shipped `ops/nats/auth.conf` (one user per service, each with
    /// only its subjects; the default empty stream prefix, which that file is written for).
    pub nats_users: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self { employees: 20, visma_seed: sim_visma::nordic_seed(), subscribe: true, nats_users: false }
    }
}

/// The users of the shipped `ops/nats/auth.conf`, with passwords made for one test.
#[derive(Clone)]
pub struct NatsUsers {
    passwords: Vec<(&'static str, String)>,
}

impl Default for NatsUsers {
    fn default() -> Self {
        Self::new()
    }
}

impl NatsUsers {
    pub const SHIPPED: &'static str = include_str!("../../../ops/nats/auth.conf");

    pub fn new() -> NatsUsers {
        let passwords = ["admin", "gateway", "projector", "writer"]
            .into_iter()
            .map(|u| (u, crate::unique(&format!("pw-{u}-"))))
            .collect();
        NatsUsers { passwords }
    }

    pub fn password(&self, user: &str) -> &str {
        &self.passwords.iter().find(|(u, _)| *u == user).expect("a user of auth.conf").1
    }

    /// A nats-server running the shipped file as it is, its password variables defined.
    pub fn start_server(&self) -> NatsServer {
        let vars: String = self
            .passwords
            .iter()
            .map(|(u, pw)| format!("NATS_{}_PASSWORD: \"{pw}\"\n", u.to_ascii_uppercase()))
            .collect();
        NatsServer::start_with(&format!("{vars}{}", Self::SHIPPED), self.config("admin", ""))
    }

    /// How `user` connects to `server`.
    pub fn config(&self, user: &str, url: &str) -> mlc_bus::NatsConfig {
        let mut c = mlc_bus::NatsConfig::at(url);
        c.user = Some(user.to_string());
        c.password = Some(mlc_config::Secret::new(self.password(user)));
        c.inbox_prefix = self.inbox_prefix(user);
        c
    }

    /// Each service user may subscribe only its own inboxes (`_INBOX.<user>.>`).
    pub fn inbox_prefix(&self, user: &str) -> String {
        if user == "admin" {
            "_INBOX".to_string()
        } else {
            format!("_INBOX.{user}")
        }
    }

    /// The environment that makes a process `user`.
    pub fn env(&self, user: &str) -> [(&'static str, String); 3] {
        [
            ("MLC_NATS_USER", user.to_string()),
            ("MLC_NATS_PASSWORD", self.password(user).to_string()),
            ("MLC_NATS_INBOX_PREFIX", self.inbox_prefix(user)),
        ]
    }
}

/// Who the installation serves.
enum Companies {
    /// One company, "Fjord & Fjell", on the simulator's default Visma tenant ([`TENANT`]).
    One { employees: usize, visma_seed: sim_visma::Seed },
    /// `companies` companies, each with its own grant and its own Visma tenant.
    Fleet { companies: usize, employees_per_company: usize },
}

/// The one way an installation is started; [`Stack::start`] and [`Stack::start_fleet`]
/// are two presets of it.
pub struct StackBuilder {
    companies: Companies,
    gusto: sim_gusto::SimConfig,
    visma: sim_visma::SimConfig,
    nats_users: bool,
    subscribe: bool,
    proxies: bool,
    configure: Vec<ConfigEdit>,
}

/// A change to the configuration, applied before anything starts.
type ConfigEdit = Box<dyn FnOnce(&mut Config) + Send>;

impl StackBuilder {
    fn new(companies: Companies) -> StackBuilder {
        StackBuilder {
            companies,
            gusto: sim_gusto::SimConfig::default(),
            visma: sim_visma::SimConfig::default(),
            nats_users: false,
            subscribe: true,
            proxies: false,
            configure: Vec::new(),
        }
    }

    /// One company of `employees` people; Visma's default tenant seeded with `visma_seed`.
    pub fn one(employees: usize, visma_seed: sim_visma::Seed) -> StackBuilder {
        Self::new(Companies::One { employees, visma_seed })
    }

    /// `companies` companies of `employees_per_company` people, one Visma tenant each.
    pub fn fleet(companies: usize, employees_per_company: usize) -> StackBuilder {
        Self::new(Companies::Fleet { companies: companies.max(1), employees_per_company })
    }

    pub fn gusto(mut self, cfg: sim_gusto::SimConfig) -> Self {
        self.gusto = cfg;
        self
    }

    pub fn visma(mut self, cfg: sim_visma::SimConfig) -> Self {
        self.visma = cfg;
        self
    }

    /// Run NATS with the shipped `ops/nats/auth.conf` (see [`StackOptions::nats_users`]).
    pub fn nats_users(mut self, on: bool) -> Self {
        self.nats_users = on;
        self
    }

    /// Create the webhook subscription (on by default).
    pub fn subscribe(mut self, on: bool) -> Self {
        self.subscribe = on;
        self
    }

    /// Put a [`CountingProxy`] in front of each simulator's API.
    pub fn proxies(mut self, on: bool) -> Self {
        self.proxies = on;
        self
    }

    /// Changes the configuration before it is written and anything starts.
    pub fn configure(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    pub async fn start(self) -> Stack {
        let nats_users = self.nats_users.then(NatsUsers::new);
        let nats = nats_users.as_ref().map_or_else(NatsServer::start, NatsUsers::start_server);
        let gusto = sim_gusto::start(self.gusto).await.expect("start sim-gusto");
        let visma = sim_visma::start(self.visma).await.expect("start sim-visma");
        let proxies = if self.proxies {
            Some((
                CountingProxy::start(&gusto.base_url()).await,
                CountingProxy::start(visma.base_url()).await,
            ))
        } else {
            None
        };

        // Who is connected: (the seeded company, its name in the connector, its tenant key).
        let mut fleet = Vec::new();
        let (company, registrations) = match self.companies {
            Companies::One { employees, visma_seed } => {
                visma.seed(sim_visma::DEFAULT_TENANT, &visma_seed).expect("seed sim-visma");
                let info = gusto.sim().seed_named_company("Fjord & Fjell Consulting AS", employees);
                (info.clone(), vec![(info.company_uuid, "Fjord & Fjell".to_string(), TENANT.to_string())])
            }
            Companies::Fleet { companies, employees_per_company } => {
                for i in 0..companies {
                    let info = gusto
                        .sim()
                        .seed_named_company(&format!("Fleet Company {i:02} AS"), employees_per_company);
                    let tenant_id = uuid::Uuid::new_v4().to_string();
                    visma.add_tenant(sim_visma::TenantConfig::company(tenant_id.clone(), 1000 + i as i64));
                    visma.seed(&tenant_id, &sim_visma::nordic_seed()).expect("seed sim-visma tenant");
                    fleet.push(FleetCompany { info, tenant_key: format!("t{i:02}"), tenant_id });
                }
                let registrations = fleet
                    .iter()
                    .map(|c| {
                        (c.info.company_uuid.clone(), format!("Fleet {}", c.tenant_key), c.tenant_key.clone())
                    })
                    .collect();
                (fleet[0].info.clone(), registrations)
            }
        };

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("mapping.toml"), MAPPING).expect("mapping");
        let mut cfg = sandbox_config(&nats.url(), &gusto, &visma, dir.path());
        // The shipped auth.conf is written for the default (empty) stream prefix.
        cfg.nats.stream_prefix = match (&nats_users, fleet.is_empty()) {
            (Some(_), _) => String::new(),
            (None, true) => crate::unique("e"),
            (None, false) => crate::unique("f"),
        };
        if let Some(users) = &nats_users {
            cfg.nats.user = Some("admin".into());
            cfg.nats.password = Some(Secret::new(users.password("admin")));
        }
        if let Some((gusto_proxy, visma_proxy)) = &proxies {
            cfg.gusto.base_url = gusto_proxy.url.clone();
            cfg.visma.base_url = visma_proxy.url.clone();
            cfg.visma.token_url = format!("{}/connect/token", visma_proxy.url);
        }
        if !fleet.is_empty() {
            cfg.visma.tenants = tenants(&fleet);
        }
        for f in self.configure {
            f(&mut cfg);
        }
        let config = dir.path().join("mlc.toml");
        write_config(&config, &cfg).expect("write the configuration");

        let client = mlc_bus::connect(&nats.config(), "e2e").await.expect("nats");
        let js = async_nats::jetstream::new(client);
        let topo = Topology::new(&cfg.nats.stream_prefix, 1)
            .and_then(|t| t.with_partitions(cfg.nats.partitions))
            .expect("topology");
        let (gusto_proxy, visma_proxy) = proxies.map_or((None, None), |(g, v)| (Some(g), Some(v)));
        let mut stack = Stack {
            nats_users,
            nats,
            gusto,
            visma,
            dir,
            config,
            prefix: cfg.nats.stream_prefix.clone(),
            gateway: cfg.gateway.listen.clone(),
            company,
            services: Vec::new(),
            js,
            topo,
            companies: fleet,
            gusto_proxy,
            visma_proxy,
            store_url: cfg.store.url.expose().to_string(),
            store_key: cfg.store.encryption_key.as_ref().map(|k| k.expose().to_string()).unwrap_or_default(),
            cfg: Mutex::new(cfg),
        };
        let mapping = stack.mapping_path();
        for (company, name, tenant) in registrations {
            let code = stack.gusto.sim().issue_code(&company, "http://127.0.0.1/cb").expect("code");
            stack
                .mlc_ok(&[
                    "company",
                    "add",
                    "--company",
                    &company,
                    "--name",
                    &name,
                    // `=`: a code may start with '-'.
                    &format!("--code={code}"),
                    "--visma-tenant",
                    &tenant,
                    "--mapping",
                    mapping.to_str().unwrap(),
                    "--skip-review",
                ])
                .await;
        }
        if stack.nats_users.is_some() {
            // The services' users may not create streams: the admin does, as in a deployment.
            stack.mlc_ok(&["setup"]).await;
        }
        for s in ["gateway", "projector", "writer"] {
            stack.start_service(s);
        }
        stack.wait_ready("gateway").await;
        if self.subscribe {
            let url = format!("http://{}/webhooks/gusto", stack.gateway);
            stack.mlc_ok(&["subscribe", "--url", &url]).await;
        }
        stack
    }
}

/// The `visma.tenants` of a fleet: one per company, on the simulator's client.
pub fn tenants(companies: &[FleetCompany]) -> std::collections::BTreeMap<String, mlc_config::VismaTenant> {
    companies.iter().map(|c| (c.tenant_key.clone(), sim_tenant(&c.tenant_id))).collect()
}

impl Stack {
    /// One company (see [`StackOptions`]); the simulator retries webhooks after 200 ms.
    pub async fn start(opts: StackOptions) -> Stack {
        StackBuilder::one(opts.employees, opts.visma_seed)
            .gusto(sim_gusto::SimConfig {
                webhooks: sim_gusto::WebhookConfig {
                    retry_base: Duration::from_millis(200),
                    ..Default::default()
                },
                ..Default::default()
            })
            .nats_users(opts.nats_users)
            .subscribe(opts.subscribe)
            .start()
            .await
    }

    /// Starts an installation serving several companies. The services reach both
    /// simulators through [`CountingProxy`]s, so a test can count every answer by status.
    pub async fn start_fleet(opts: FleetOptions) -> Stack {
        StackBuilder::fleet(opts.companies, opts.employees_per_company)
            .gusto(opts.gusto)
            .visma(opts.visma)
            .proxies(true)
            .configure(move |c| {
                c.projector.catch_up_secs = opts.catch_up_secs;
                c.nats.partitions = opts.partitions;
                c.gusto.rate_window_ms = opts.gusto_rate_window_ms.unwrap_or(60_000);
                c.gusto.rate_limit = opts.gusto_rate_limit.unwrap_or(200);
                if let Some(url) = opts.store_url {
                    c.store.url = Secret::new(url);
                }
            })
            .start()
            .await
    }

    /// The configuration the services read (a copy; change it with [`Stack::edit_config`]).
    pub fn cfg(&self) -> Config {
        self.cfg.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the configuration and writes the file again. Services read it when
    /// (re)started; the CLI on its next run.
    pub fn edit_config(&self, edit: impl FnOnce(&mut Config)) {
        let mut cfg = self.cfg.lock().unwrap_or_else(|p| p.into_inner());
        edit(&mut cfg);
        write_config(&self.config, &cfg).expect("write the configuration");
    }

    pub fn company_uuid(&self) -> &str {
        &self.company.company_uuid
    }

    pub fn mapping_path(&self) -> PathBuf {
        self.dir.path().join("mapping.toml")
    }

    /// Starts `mlc run <service>` as a child process, logging to the work directory.
    pub fn start_service(&mut self, service: &str) {
        let log = self.dir.path().join(format!("{service}.log"));
        let mut cmd = crate::mlc_run(&mlc_bin(), &self.config, service, &log).expect("log file");
        if let Some(users) = &self.nats_users {
            cmd.envs(users.env(service));
        }
        let child = crate::Tethered::spawn(&mut cmd).expect("spawn mlc run");
        self.services.push((service.to_string(), child));
    }

    /// Kills a service with SIGKILL: the process dies wherever it is.
    pub fn kill_service(&mut self, service: &str) {
        if let Some(i) = self.services.iter().position(|(s, _)| s == service) {
            let (_, mut child) = self.services.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the `mlc` CLI against this installation (asynchronously: the simulators
    /// answer it from this very runtime).
    pub async fn mlc(&self, args: &[&str]) -> Output {
        run_mlc(&self.config, args).await
    }

    /// Runs the CLI and asserts success; returns stdout.
    pub async fn mlc_ok(&self, args: &[&str]) -> String {
        let out = self.mlc(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "mlc {args:?} failed ({}):\n{stdout}\n{}\nlogs: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        stdout
    }

    pub fn logs(&self) -> String {
        let mut s = format!("\n--- {}\n", self.nats.report());
        for name in ["gateway", "projector", "writer"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))) {
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                s.push_str(&format!("\n--- {name} (last lines)\n"));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    async fn wait_http(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{url} not ready{}", self.logs());
    }

    /// Messages pending or in flight on the three consumers.
    pub async fn in_flight(&self) -> u64 {
        mlc_bus::backlog(&self.js, &self.topo).await.unwrap_or(u64::MAX)
    }

    /// Waits until nothing is pending anywhere for a moment (webhooks still in the
    /// simulator's delivery queue get that moment to arrive).
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut idle = 0;
        while Instant::now() < deadline {
            if self.in_flight().await == 0 {
                idle += 1;
                if idle >= 4 {
                    return;
                }
            } else {
                idle = 0;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!("the pipeline did not settle within 90 s{}", self.logs());
    }

    pub fn visma_employees(&self) -> Vec<sim_visma::EmployeeRecord> {
        self.visma.employees(sim_visma::DEFAULT_TENANT)
    }

    /// Messages stored in one of the streams.
    pub async fn stream_len(&self, kind: StreamKind) -> u64 {
        let mut s = self.js.get_stream(self.topo.stream(kind)).await.expect("stream");
        s.info().await.expect("info").state.messages
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.services {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One company of a fleet: its Gusto data and its own Visma tenant.
#[derive(Debug, Clone)]
pub struct FleetCompany {
    pub info: sim_gusto::CompanyInfo,
    /// The key under `visma.tenants` in the configuration (`Company.visma_tenant`).
    pub tenant_key: String,
    /// The simulator's tenant id.
    pub tenant_id: String,
}

/// What [`Stack::start_fleet`] starts: `companies` Gusto companies with their own grants,
/// each synced to its own Visma tenant (employee numbers are only unique per company),
/// one webhook subscription for all of them.
pub struct FleetOptions {
    pub companies: usize,
    pub employees_per_company: usize,
    pub gusto: sim_gusto::SimConfig,
    pub visma: sim_visma::SimConfig,
    /// `projector.catch_up_secs` (0 turns catch-up off).
    pub catch_up_secs: u64,
    /// `nats.partitions`.
    pub partitions: u32,
    /// `gusto.rate_window_ms` (the default 60 s when `None`); set it to the simulator's
    /// `rate_window` when that is compressed.
    pub gusto_rate_window_ms: Option<u64>,
    /// `gusto.rate_limit` (200 when `None`); set it to the simulator's `rate_limit`.
    pub gusto_rate_limit: Option<u32>,
    /// `store.url` (the installation's own SQLite file when `None`): a PostgreSQL server
    /// ([`crate::PgServer`]) or a SQLite file on a filesystem the test controls.
    pub store_url: Option<String>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            companies: 4,
            employees_per_company: 20,
            gusto: sim_gusto::SimConfig {
                webhooks: sim_gusto::WebhookConfig {
                    retry_base: Duration::from_millis(200),
                    retry_max: Duration::from_secs(5),
                    ..Default::default()
                },
                ..Default::default()
            },
            visma: sim_visma::SimConfig::default(),
            catch_up_secs: 300,
            partitions: 1,
            gusto_rate_window_ms: None,
            gusto_rate_limit: None,
            store_url: None,
        }
    }
}

impl Stack {
    /// Opens the installation's store (to read the audit log).
    pub async fn store(&self) -> mlc_store::Store {
        let key = mlc_store::EncryptionKey::from_base64(&self.store_key).expect("store key");
        mlc_store::Store::connect(&self.store_url, Some(key)).await.expect("open the store")
    }

    /// Whether a service process is running (started and not killed).
    pub fn service_running(&self, service: &str) -> bool {
        self.services.iter().any(|(s, _)| s == service)
    }

    /// How a started service process exited, if it did on its own (`None` while it runs).
    pub fn service_exit(&mut self, service: &str) -> Option<std::process::ExitStatus> {
        let (_, child) = self.services.iter_mut().find(|(s, _)| s == service)?;
        child.try_wait().ok().flatten()
    }

    /// Whether `service` answers its `/readyz` with 2xx within 2 s.
    pub async fn is_ready(&self, service: &str) -> bool {
        let url = format!("http://{}/readyz", self.metrics_addr(service));
        let probe = reqwest::Client::new().get(url).timeout(Duration::from_secs(2)).send();
        probe.await.is_ok_and(|r| r.status().is_success())
    }

    /// The sum of a counter (or gauge) on `service`'s `/metrics` over the series whose
    /// labels contain `labels` (`""`: all of them); 0 when the service does not answer.
    pub async fn metric(&self, service: &str, name: &str, labels: &str) -> f64 {
        let probe =
            reqwest::Client::new().get(self.metrics_url(service)).timeout(Duration::from_secs(2)).send();
        let Ok(text) = (match probe.await {
            Ok(r) => r.text().await,
            Err(e) => Err(e),
        }) else {
            return 0.0;
        };
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    }

    /// Every message of a stream, in order (through an ephemeral ordered consumer).
    pub async fn stream_messages(&self, kind: StreamKind) -> Vec<mlc_bus::replay::Replayed> {
        let mut replay = mlc_bus::replay::Replay::open(
            &self.js,
            &self.topo.stream(kind),
            &self.topo.wildcard(kind),
            mlc_bus::replay::Start::Sequence(1),
        )
        .await
        .expect("open replay");
        let mut out = Vec::new();
        while let Some(m) = replay.next().await {
            out.push(m.expect("replayed message"));
        }
        out
    }
}

/// An HTTP proxy in front of a simulator that counts the upstream's answers by status
/// (0: the upstream could not be reached or cut the answer short).
pub struct CountingProxy {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    counts: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u16, u64>>>,
    auth: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    counts: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u16, u64>>>,
    auth: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CountingProxy {
    pub async fn start(upstream: &str) -> CountingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let auth = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let state = std::sync::Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("proxy client"),
            counts: counts.clone(),
            auth: auth.clone(),
        });
        let app = axum::Router::new().fallback(forward).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CountingProxy { url, counts, auth }
    }

    /// Requests to a token endpoint (`/oauth/...`, `/connect/token`), counted in
    /// [`CountingProxy::counts`] too.
    pub fn auth_requests(&self) -> u64 {
        self.auth.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers so far, by status.
    pub fn counts(&self) -> std::collections::BTreeMap<u16, u64> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Answers so far whose status satisfies `pred`.
    pub fn count(&self, pred: impl Fn(u16) -> bool) -> u64 {
        self.counts().into_iter().filter(|(s, _)| pred(*s)).map(|(_, n)| n).sum()
    }
}

async fn forward(
    axum::extract::State(p): axum::extract::State<std::sync::Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let count = |status: u16| {
        *p.counts.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
    };
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        count(0);
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if path.starts_with("/oauth/") || path.starts_with("/connect/") {
        p.auth.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    let sent = p
        .client
        .request(parts.method.clone(), format!("{}{path}", p.upstream))
        .headers(headers)
        .body(body)
        .send();
    let answer = match sent.await {
        Ok(r) => r,
        Err(_) => {
            count(0);
            return axum::http::StatusCode::BAD_GATEWAY.into_response();
        }
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(_) => {
            count(0);
            return axum::http::StatusCode::BAD_GATEWAY.into_response();
        }
    };
    count(status.as_u16());
    headers.remove(axum::http::header::TRANSFER_ENCODING);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    headers.remove(axum::http::header::CONNECTION);
    let mut resp = axum::response::Response::new(axum::body::Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

impl Stack {
    /// Stops a service with SIGTERM, as an orchestrator does: it finishes the work in hand,
    /// and `mlc run` flushes its spans on the way out. SIGKILL after `grace`. Returns
    /// whether the process exited successfully on its own.
    pub async fn stop_service(&mut self, service: &str, grace: Duration) -> bool {
        let Some(i) = self.services.iter().position(|(s, _)| s == service) else { return false };
        let (_, mut child) = self.services.remove(i);
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The `host:port` on which `service` serves `/metrics`: `gateway.ops_listen`,
    /// `projector.metrics_listen` or `writer.metrics_listen` of the configuration.
    pub fn metrics_addr(&self, service: &str) -> String {
        let cfg = self.cfg();
        match service {
            "gateway" => cfg.gateway.ops_listen,
            "projector" => cfg.projector.metrics_listen,
            "writer" => cfg.writer.metrics_listen,
            other => panic!("no ops listener for {other:?}"),
        }
    }

    /// `http://ADDR/metrics` of `service`.
    pub fn metrics_url(&self, service: &str) -> String {
        format!("http://{}/metrics", self.metrics_addr(service))
    }

    /// Waits until `http://ADDR/readyz` of `service` answers 2xx.
    pub async fn wait_ready(&self, service: &str) {
        self.wait_http(&format!("http://{}/readyz", self.metrics_addr(service))).await;
    }
}
