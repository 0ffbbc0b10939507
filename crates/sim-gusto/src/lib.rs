//! Gusto API simulator: OAuth with rotating refresh tokens, per-grant rolling rate
//! limit, `X-Gusto-API-Version` checks, pagination headers, optimistic versions,
//! signed webhook deliveries with retries, duplicates and reordering, `GET /v1/events`,
//! fault injection, and an `/admin` API that changes data as a person in Gusto would.
//!
//! Everything lives in memory behind one mutex; the simulator favours faithfulness
//! and inspectability over throughput.
//!
//! # Versions and the 2026-12-01 audit
//!
//! API versions as Gusto handles them on 2026-12-01 are in [`versions`] (minimum
//! `2025-11-15`, so `2025-06-15` gets 406; echo; `Deprecation`/`Sunset` for deprecated
//! versions, header names \[inferred\]). The Gusto items of
//! `shared/findings/spec-audit-2026-12-01.md` §4:
//!
//! | # | item | state |
//! |---|---|---|
//! | 1 | terminations effective at once when the last day is today (UTC) | fixed: effective at 12:00 AM **Pacific** the day after the last day (§1.5, §2.5); a termination without a date has yesterday as its last day, so it is effective at once. The demo environment's 1:00 AM PT is not modelled (production timing only). |
//! | 2 | no `company.provisioned` | fixed: emitted on every `authorization_code` exchange, delivered to every verified subscription whatever its types (§1.4) |
//! | 9 | secret in the token URL → 401 | fixed: 400 `invalid_request` (§3) |
//! | 10 | 429 reason phrase | fixed: `Rate Limit Exceeded` (§4) |
//! | 11 | only the Embedded spelling `employee.termination_effective` | fixed: the App Integrations spelling `employee.terminated_effective` by default, the Embedded one with [`SimConfig::embedded_event_spelling`] |
//! | 12 | a company token on a system endpoint → 403 `missing_permissions` | kept: the reference (§6.2) lists `missing_permissions` under 404 for *Embedded-only endpoints called by an App Integrations app*, a different case; what Gusto answers for the wrong token kind is not documented, and 403 is what a scope or strict-access refusal gets (§6.2). |
//!
//! The other rows of that table (3–8, 13) are about the Visma simulator.
//!
//! ```no_run
//! # async fn demo() {
//! let sim = sim_gusto::start(sim_gusto::SimConfig::default()).await.expect("start");
//! let company = sim.seed_company(40);
//! println!("{} {}", sim.base_url(), company.company_uuid);
//! # }
//! ```

mod consent;
mod http;
pub mod model;
mod ops;
mod seed;
pub mod versions;
mod webhooks;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use ops::{CompanyInfo, EmployeePatch, HireRequest, LocationPatch};
pub use versions::{default_versions, ApiVersionInfo};

use model::*;

/// Webhook delivery behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// Per-attempt timeout (Gusto's is undocumented; 10 s here).
    pub timeout: Duration,
    /// Retries after the first attempt (Gusto: 16).
    pub max_retries: u32,
    /// First retry delay; doubles each time. Compress it in tests.
    pub retry_base: Duration,
    /// Cap of one retry delay.
    pub retry_max: Duration,
    /// Fraction of events delivered twice.
    pub duplicate_rate: f64,
    /// Each delivery is delayed by a random 0..this, which reorders bursts.
    pub reorder_max_delay: Duration,
    /// Fraction of 2xx answers treated as lost (as if the attempt timed out after the
    /// receiver had accepted it): the delivery is retried, so the receiver sees the same
    /// event again. Stands in for a proxy or network that drops the receiver's answer.
    pub lost_ack_rate: f64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_retries: 16,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            duplicate_rate: 0.0,
            reorder_max_delay: Duration::ZERO,
            lost_ack_rate: 0.0,
        }
    }
}

/// One fault-injection rule. `path` is a glob over the request path (`*` matches any
/// run of characters, e.g. `/v1/employees/*`); rates are probabilities in 0..=1.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRule {
    pub path: String,
    /// Only this method (e.g. `GET`); any when empty.
    pub method: Option<String>,
    pub error_rate: f64,
    /// Status used for injected errors (default 500).
    pub error_status: Option<u16>,
    pub latency_ms: u64,
    pub drop_rate: f64,
    pub malformed_rate: f64,
    /// Apply to this many matching requests only, then retire the rule.
    pub times: Option<u32>,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; `127.0.0.1:0` when `None`.
    pub listen: Option<SocketAddr>,
    /// Seed of the data generator and of every random decision.
    pub seed: u64,
    pub client_id: String,
    pub client_secret: String,
    /// Requests per window per grant (Gusto: 200).
    pub rate_limit: usize,
    /// Rolling window (Gusto: 60 s). Compress it (e.g. 600 ms) in tests, together
    /// with the client's limiter window.
    pub rate_window: Duration,
    /// Access token lifetime (Gusto: 7200 s).
    pub access_token_ttl: Duration,
    /// Oldest accepted `X-Gusto-API-Version` (the app's minimum; also used when a request
    /// has no header). Default `2025-11-15`, the oldest version Gusto still serves on
    /// 2026-12-01: `2025-06-15` is refused with 406.
    pub min_api_version: String,
    /// Released versions and their deprecation dates (deprecation headers).
    pub api_versions: Vec<ApiVersionInfo>,
    pub webhooks: WebhookConfig,
    pub faults: Vec<FaultRule>,
    /// Emit the Embedded product's `employee.termination_effective` instead of the App
    /// Integrations spelling `employee.terminated_effective` (reference §1.5: both exist).
    pub embedded_event_spelling: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: None,
            seed: 42,
            client_id: "sim-client-id".into(),
            client_secret: "sim-client-secret".into(),
            rate_limit: 200,
            rate_window: Duration::from_secs(60),
            access_token_ttl: Duration::from_secs(7200),
            min_api_version: "2025-11-15".into(),
            api_versions: default_versions(),
            webhooks: WebhookConfig::default(),
            faults: Vec::new(),
            embedded_event_spelling: false,
        }
    }
}

/// Mutable state. Public for inspection through [`Sim::state`].
pub struct State {
    pub(crate) rng: StdRng,
    pub(crate) clock: sim_kit::Clock,
    pub companies: Vec<Company>,
    pub employees: HashMap<String, Employee>,
    pub locations: HashMap<String, Location>,
    pub departments: HashMap<String, Department>,
    pub events: Vec<Event>,
    pub subscriptions: Vec<Subscription>,
    pub grants: HashMap<String, Grant>,
    pub(crate) access_tokens: HashMap<String, AccessToken>,
    pub(crate) refresh_tokens: HashMap<String, RefreshToken>,
    pub(crate) codes: HashMap<String, AuthCode>,
    /// Arrival instant of every request per grant (including ones answered 429).
    pub(crate) arrivals: HashMap<String, Vec<Instant>>,
    /// Accepted requests in the current window per grant (enforcement log).
    pub(crate) window: HashMap<String, VecDeque<Instant>>,
    /// Requests per (grant, route template).
    pub route_counts: HashMap<(String, String), u64>,
    pub refresh_counts: HashMap<String, u64>,
    pub rate_limited: HashMap<String, u64>,
    /// Grants whose window is exhausted until the instant ([`Sim::throttle_grant`]).
    pub(crate) throttled: HashMap<String, Instant>,
    /// Requests answered 429 while their grant was throttled.
    pub throttled_answers: u64,
    /// Replaces [`SimConfig::min_api_version`] while set ([`Sim::set_min_api_version`]).
    pub(crate) min_api_version: Option<String>,
    pub faults: Vec<FaultRule>,
    pub drop_next_webhooks: u32,
    pub deliveries: Vec<Delivery>,
    pub(crate) webhook_cfg: WebhookConfig,
    pub(crate) events_tx: mpsc::UnboundedSender<Event>,
    /// (date, employee, is_termination) waiting for the date to be reached.
    pub(crate) pending_effective: Vec<(chrono::NaiveDate, String, bool)>,
    /// Requests (API and OAuth) that came without `X-Gusto-API-Version`.
    pub unversioned_requests: u64,
    /// Requests answered 406 `invalid_api_version`.
    pub version_refusals: u64,
    pub(crate) embedded_spelling: bool,
}

impl State {
    /// A fresh opaque token (OAuth codes, access and refresh tokens) from the seeded RNG.
    pub(crate) fn random_token(&mut self) -> String {
        use base64::Engine;
        use rand::Rng;
        let bytes: [u8; 32] = self.rng.random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// The shared simulator. [`SimHandle`] derefs to it, so tests call the admin
/// operations (`hire`, `terminate`, ...) and the inspection methods directly.
pub struct Sim {
    pub(crate) cfg: SimConfig,
    pub(crate) state: Mutex<State>,
    pub(crate) http: reqwest::Client,
}

impl Sim {
    /// Locks the state (a poisoned lock is recovered: state is always consistent
    /// between statements that hold it).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Largest number of requests (including refused ones) that arrived for `grant`
    /// within any `rate_window`-long interval.
    pub fn max_requests_in_any_window(&self, grant: &str) -> usize {
        let st = self.state();
        let Some(times) = st.arrivals.get(grant) else {
            return 0;
        };
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi].duration_since(times[lo]) >= self.cfg.rate_window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    /// Arrival instants of every request of `grant`.
    pub fn arrivals(&self, grant: &str) -> Vec<Instant> {
        self.state().arrivals.get(grant).cloned().unwrap_or_default()
    }

    pub fn request_count(&self, grant: &str) -> usize {
        self.state().arrivals.get(grant).map_or(0, Vec::len)
    }

    /// Requests of `grant` to a route template such as `/v1/employees/{employee_id}`.
    pub fn route_count(&self, grant: &str, route: &str) -> u64 {
        self.state().route_counts.get(&(grant.to_owned(), route.to_owned())).copied().unwrap_or(0)
    }

    /// Successful `refresh_token` exchanges for `grant`.
    pub fn refresh_count(&self, grant: &str) -> u64 {
        self.state().refresh_counts.get(grant).copied().unwrap_or(0)
    }

    /// Requests of `grant` answered 429.
    pub fn rate_limited_count(&self, grant: &str) -> u64 {
        self.state().rate_limited.get(grant).copied().unwrap_or(0)
    }

    /// The grant of the most recent authorisation of `company_uuid`.
    pub fn grant_for_company(&self, company_uuid: &str) -> Option<String> {
        let st = self.state();
        let mut grants: Vec<&Grant> = st
            .grants
            .values()
            .filter(|g| g.company_uuid.as_deref() == Some(company_uuid) && !g.revoked)
            .collect();
        grants.sort_by(|a, b| a.id.cmp(&b.id));
        grants.last().map(|g| g.id.clone())
    }

    /// The grant id of an access token (to look up stats for a client's token).
    pub fn grant_of_token(&self, access_token: &str) -> Option<String> {
        self.state().access_tokens.get(access_token).map(|t| t.grant_id.clone())
    }

    /// Requests (API and OAuth) that came without `X-Gusto-API-Version`.
    pub fn unversioned_requests(&self) -> u64 {
        self.state().unversioned_requests
    }

    /// Requests answered 406 `invalid_api_version`.
    pub fn version_refusals(&self) -> u64 {
        self.state().version_refusals
    }

    /// Every webhook POST attempt so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().deliveries.clone()
    }

    /// All events emitted so far.
    pub fn events(&self) -> Vec<Event> {
        self.state().events.clone()
    }
}

/// A running simulator. Dropping it does not stop the server; call
/// [`SimHandle::shutdown`].
pub struct SimHandle {
    sim: Arc<Sim>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Deref for SimHandle {
    type Target = Sim;
    fn deref(&self) -> &Sim {
        &self.sim
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn sim(&self) -> Arc<Sim> {
        self.sim.clone()
    }

    /// Stops accepting requests and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// Starts the simulator on `cfg.listen` (or an ephemeral local port).
pub async fn start(cfg: SimConfig) -> std::io::Result<SimHandle> {
    let listen = cfg.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let http =
        reqwest::Client::builder().timeout(cfg.webhooks.timeout).build().map_err(std::io::Error::other)?;
    let state = State {
        rng: StdRng::seed_from_u64(cfg.seed),
        clock: sim_kit::Clock::default(),
        companies: Vec::new(),
        employees: HashMap::new(),
        locations: HashMap::new(),
        departments: HashMap::new(),
        events: Vec::new(),
        subscriptions: Vec::new(),
        grants: HashMap::new(),
        access_tokens: HashMap::new(),
        refresh_tokens: HashMap::new(),
        codes: HashMap::new(),
        arrivals: HashMap::new(),
        window: HashMap::new(),
        route_counts: HashMap::new(),
        refresh_counts: HashMap::new(),
        rate_limited: HashMap::new(),
        throttled: HashMap::new(),
        throttled_answers: 0,
        min_api_version: None,
        faults: cfg.faults.clone(),
        drop_next_webhooks: 0,
        deliveries: Vec::new(),
        webhook_cfg: cfg.webhooks.clone(),
        events_tx,
        pending_effective: Vec::new(),
        unversioned_requests: 0,
        version_refusals: 0,
        embedded_spelling: cfg.embedded_event_spelling,
    };
    let sim = Arc::new(Sim { cfg, state: Mutex::new(state), http });
    tokio::spawn(webhooks::dispatcher(Arc::downgrade(&sim), events_rx));
    tokio::spawn(ops::effective_date_ticker(Arc::downgrade(&sim)));
    let app = http::router(sim.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "sim-gusto server failed");
        }
    });
    Ok(SimHandle { sim, addr, shutdown: Some(tx), server: Some(server) })
}
