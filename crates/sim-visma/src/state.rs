//! Shared simulator state: tenants, tokens, rate windows, faults, counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::NaiveDateTime;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sim_kit::Clock;
use tokio::time::Instant;

use crate::config::{SimConfig, TenantConfig};
use crate::model::TenantData;

pub type Shared = Arc<Sim>;

/// The simulator: one mutex around all state. Handlers never hold it across an `.await`.
#[derive(Debug)]
pub struct Sim {
    inner: Mutex<State>,
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        let tenants = config
            .tenants
            .iter()
            .map(|t| (t.tenant_id.clone(), Tenant { config: t.clone(), data: TenantData::default() }))
            .collect();
        let rng = StdRng::seed_from_u64(config.seed);
        Self {
            inner: Mutex::new(State {
                config,
                base_url: String::new(),
                tenants,
                tokens: HashMap::new(),
                tokens_issued: 0,
                windows: HashMap::new(),
                failures: HashMap::new(),
                faults: BTreeMap::new(),
                requests: BTreeMap::new(),
                rng,
                clock: Clock::default(),
            }),
        }
    }

    /// Locks the state. A panic in a handler must not take the whole simulator down, so a
    /// poisoned lock is recovered rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub config: TenantConfig,
    pub data: TenantData,
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub client_id: String,
    pub tenant_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub count: u32,
}

/// Per-route fault injection. Rates are probabilities in `0.0..=1.0`, drawn from the seeded RNG.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultSpec {
    /// Probability of answering `error_status` (plain-text body) instead of serving the request.
    pub error_rate: f64,
    /// Status for injected errors; 503 when unset.
    pub error_status: Option<u16>,
    /// Answer the next N requests with `error_status`, deterministically (before rates apply).
    pub fail_next: u32,
    /// Added latency before answering.
    pub latency_ms: u64,
    /// Probability of sending headers and then dropping the connection mid-body.
    pub drop_rate: f64,
    /// Probability of answering 200 with a truncated JSON body.
    pub malformed_rate: f64,
    /// The next N employee updates find the record edited by someone else just before they
    /// arrive (its version moves on), so one sent with `If-Match` answers 412 from the
    /// handler, as Visma does, and a re-read sees the new `ETag`. Unlike `fail_next` with
    /// 412, the conflict is real: the re-read and a PUT with the new tag succeed.
    pub stale_next: u32,
}

/// What the fault layer decided for one request (shared with sim-gusto).
pub use sim_kit::FaultAction;

#[derive(Debug)]
pub struct State {
    pub config: SimConfig,
    pub base_url: String,
    pub tenants: BTreeMap<String, Tenant>,
    pub tokens: HashMap<String, TokenInfo>,
    pub tokens_issued: u64,
    /// Fixed rate windows per (tenant, client).
    pub windows: HashMap<(String, String), Window>,
    /// Failure times per request fingerprint, for the "same failing request" rule.
    pub failures: HashMap<u64, VecDeque<Instant>>,
    /// Route key (`"POST /v1/employee"`, or `"*"`) -> faults.
    pub faults: BTreeMap<String, FaultSpec>,
    /// Route key -> requests that reached the handler.
    pub requests: BTreeMap<String, u64>,
    pub rng: StdRng,
    /// The admin clock; lets tests expire tokens and roll rate windows instantly.
    pub clock: Clock,
}

impl State {
    pub fn now(&self) -> Instant {
        self.clock.instant()
    }

    /// Wall-clock time on the ERP's side (for `lastModifiedDateTime`).
    pub fn wall_now(&self) -> NaiveDateTime {
        self.clock.utc().naive_utc()
    }

    pub fn tenant_mut(&mut self, tenant_id: &str) -> &mut Tenant {
        self.tenants.entry(tenant_id.to_string()).or_insert_with(|| Tenant {
            config: TenantConfig::company(tenant_id, 0),
            data: TenantData::default(),
        })
    }

    /// Decides the fault for a route, consuming `fail_next` and drawing from the seeded RNG.
    pub fn fault_for(&mut self, route: &str) -> (FaultAction, Duration) {
        let key = if self.faults.contains_key(route) {
            route.to_string()
        } else if self.faults.contains_key("*") {
            "*".to_string()
        } else {
            return (FaultAction::Serve, Duration::ZERO);
        };
        let Some(spec) = self.faults.get_mut(&key) else {
            return (FaultAction::Serve, Duration::ZERO);
        };
        let latency = Duration::from_millis(spec.latency_ms);
        let status = spec.error_status.unwrap_or(503);
        if spec.fail_next > 0 {
            spec.fail_next -= 1;
            return (FaultAction::Error(status), latency);
        }
        let spec = spec.clone();
        let roll = |rng: &mut StdRng, p: f64| p > 0.0 && rng.random::<f64>() < p;
        let action = if roll(&mut self.rng, spec.error_rate) {
            FaultAction::Error(status)
        } else if roll(&mut self.rng, spec.drop_rate) {
            FaultAction::Drop
        } else if roll(&mut self.rng, spec.malformed_rate) {
            FaultAction::Malformed
        } else {
            FaultAction::Serve
        };
        (action, latency)
    }

    /// Whether the request on `route` meets a concurrent edit ([`FaultSpec::stale_next`]);
    /// consumes one.
    pub fn take_stale(&mut self, route: &str) -> bool {
        let key = if self.faults.contains_key(route) { route } else { "*" };
        match self.faults.get_mut(key) {
            Some(spec) if spec.stale_next > 0 => {
                spec.stale_next -= 1;
                true
            }
            _ => false,
        }
    }

    /// The full state as JSON (`GET /admin/state`). Client secrets and tokens are left out.
    pub fn to_json(&self) -> Value {
        let now = self.now();
        let windows: Vec<Value> = self
            .windows
            .iter()
            .map(|((tenant, client), w)| {
                json!({
                    "tenantId": tenant,
                    "clientId": client,
                    "count": w.count,
                    "resetInSecs": (w.start + self.config.rate_window).saturating_duration_since(now).as_secs(),
                })
            })
            .collect();
        json!({
            "baseUrl": self.base_url,
            "config": {
                "hourlyLimit": self.config.hourly_limit,
                "rateWindowSecs": self.config.rate_window.as_secs_f64(),
                "failingRequestLimit": self.config.failing_request_limit,
                "tokenTtlSecs": self.config.token_ttl.as_secs(),
                "createStyle": self.config.create_style,
                "legacyPaths": self.config.legacy_paths,
                "maxPageSize": self.config.max_page_size,
                "clients": self.config.clients.iter().map(|c| json!({"clientId": c.client_id, "allowedScopes": c.allowed_scopes})).collect::<Vec<_>>(),
            },
            "tenants": self.tenants,
            "tokensIssued": self.tokens_issued,
            "rateWindows": windows,
            "faults": self.faults,
            "requests": self.requests,
            "clockOffsetSecs": self.clock.offset().as_secs_f64(),
        })
    }
}
