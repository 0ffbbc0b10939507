//! Visma.net ERP API simulator: Visma Connect tokens, employees, departments, throttling.
//!
//! A faithful-enough fake of the parts of Visma.net ERP the connector touches, built from the
//! public spec (`schemas/upstream/visma-v1_20250424.swagger.json`) and the integration notes:
//!
//! * `POST /connect/token`: Visma Connect client credentials (`tenant_id`, scopes
//!   `vismanet_erp_service_api:{read,create,update,delete}`). Tokens for a customer tenant or an
//!   unknown tenant are issued but refused (401) when used, as Visma does.
//! * `/v1/employee`, `/v1/department`, `/v1/branch`, `/v1/dimension` with `{"value": x}` write
//!   wrappers, plain read DTOs, `timeStamp`/`ETag`/`If-Match`, forced pagination.
//! * The legacy `/API/controller/api/v1/...` layout, which requires `ipp-company-id`.
//! * Throttling per (tenant, client) fixed window with `X-RateLimit-*` headers, 429 +
//!   `Retry-After`, and the "same failing request" punishment.
//! * Seeded fault injection per route (5xx, latency, dropped connections, malformed bodies).
//!
//! Start it in-process with [`start`] and inspect it through [`SimHandle`], or run the
//! `sim-visma` binary and use the `/admin/...` routes (see the `admin` module docs).

mod admin;
mod api;
mod auth;
mod config;
mod errors;
mod guard;
mod model;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::{
    FaultRequest, Seed, SeedBranch, SeedClass, SeedDepartment, SeedSegment, SeedSegmentValue, Settings,
};
pub use config::ALL_SCOPES;
pub use config::{
    ClientConfig, CreateStyle, SimConfig, TenantConfig, TenantKind, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT,
};
pub use model::{
    Address, BranchRecord, Contact, DepartmentRecord, EmployeeRecord, EmployeeStatus, WorkGroup,
};
pub use state::FaultSpec;

use state::{Shared, Sim};

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Builds the full router (ERP routes under `/v1` and, mirrored, the legacy prefix; token
/// endpoint; admin routes).
fn router(sim: Shared) -> Router {
    let api = api::routes();
    let guarded = Router::new()
        .nest("/v1", api.clone())
        .nest(&format!("{}/v1", guard::LEGACY_PREFIX), api)
        .layer(axum::middleware::from_fn_with_state(sim.clone(), guard::api_guard));
    Router::new()
        .route("/connect/token", post(auth::token))
        .nest("/admin", admin::routes())
        .merge(guarded)
        .with_state(sim)
}

/// Starts the simulator on `cfg.listen` (default `127.0.0.1:0`) in a background task.
pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
    let addr = cfg.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| SimError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| SimError::Bind { addr, source })?;
    let sim = Arc::new(Sim::new(cfg));
    let base_url = format!("http://{local}");
    sim.lock().base_url = base_url.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(sim.clone());
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "sim-visma server stopped");
        }
    });
    tracing::info!(%base_url, "sim-visma listening");
    Ok(SimHandle { sim, addr: local, base_url, shutdown: Some(tx), task: Some(task) })
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct SimHandle {
    sim: Shared,
    addr: SocketAddr,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:<port>`: the API base (use `<base>/v1/...`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `<base>/connect/token`.
    pub fn token_url(&self) -> String {
        format!("{}/connect/token", self.base_url)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// All employees of a tenant as stored, ordered by employeeCd.
    pub fn employees(&self, tenant_id: &str) -> Vec<EmployeeRecord> {
        self.sim
            .lock()
            .tenants
            .get(tenant_id)
            .map(|t| t.data.employees.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn employee(&self, tenant_id: &str, employee_cd: &str) -> Option<EmployeeRecord> {
        self.sim.lock().tenants.get(tenant_id).and_then(|t| t.data.employees.get(employee_cd).cloned())
    }

    pub fn departments(&self, tenant_id: &str) -> Vec<DepartmentRecord> {
        self.sim
            .lock()
            .tenants
            .get(tenant_id)
            .map(|t| t.data.departments.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Segment values of `dimension`/`segment_id` as `(value, description)`.
    pub fn segment_values(
        &self,
        tenant_id: &str,
        dimension: &str,
        segment_id: i32,
    ) -> Vec<(String, Option<String>)> {
        self.sim
            .lock()
            .tenants
            .get(tenant_id)
            .and_then(|t| t.data.dimensions.get(dimension))
            .and_then(|d| d.segments.get(&segment_id))
            .map(|s| s.values.values().map(|v| (v.value_id.clone(), v.description.clone())).collect())
            .unwrap_or_default()
    }

    /// Requests that reached a handler, by route key (`"POST /v1/employee"`).
    pub fn request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.sim.lock().requests.clone()
    }

    /// Requests that reached the handler of one route key.
    pub fn request_count(&self, route: &str) -> u64 {
        self.sim.lock().requests.get(route).copied().unwrap_or(0)
    }

    /// Writes (POST/PUT) that reached a handler, by route key.
    pub fn write_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.sim
            .lock()
            .requests
            .iter()
            .filter(|(k, _)| k.starts_with("POST ") || k.starts_with("PUT "))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub fn tokens_issued(&self) -> u64 {
        self.sim.lock().tokens_issued
    }

    /// The full state, as `GET /admin/state` returns it.
    pub fn state_json(&self) -> Value {
        self.sim.lock().to_json()
    }

    pub fn add_tenant(&self, tenant: TenantConfig) {
        let mut st = self.sim.lock();
        let id = tenant.tenant_id.clone();
        st.tenant_mut(&id).config = tenant;
    }

    pub fn add_client(&self, client: ClientConfig) {
        let mut st = self.sim.lock();
        st.config.clients.retain(|c| c.client_id != client.client_id);
        st.config.clients.push(client);
    }

    /// Loads setup data (and pre-existing employees) into a tenant, creating it if needed.
    pub fn seed(&self, tenant_id: &str, seed: &Seed) -> Result<(), String> {
        admin::apply_seed(&mut self.sim.lock(), tenant_id, seed)
    }

    /// Sets the faults of one route key (or `"*"`).
    pub fn set_fault(&self, route: &str, spec: FaultSpec) {
        self.sim.lock().faults.insert(route.to_string(), spec);
    }

    pub fn clear_faults(&self) {
        self.sim.lock().faults.clear();
    }

    pub fn apply_settings(&self, settings: &Settings) {
        admin::apply_settings(&mut self.sim.lock(), settings);
    }

    /// Moves the simulator's clock forward (tokens expire, rate windows roll over).
    pub fn advance_clock(&self, by: Duration) {
        self.sim.lock().clock.advance(by);
    }

    /// Forgets all rate windows and failure history.
    pub fn reset_throttle(&self) {
        let mut st = self.sim.lock();
        st.windows.clear();
        st.failures.clear();
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A seed with a typical small setup: departments, one branch, classes, a calendar and a
/// `SUBACCOUNT` segment. Handy for tests and `mlc demo`.
pub fn demo_seed() -> Seed {
    Seed {
        departments: ["ADMIN", "SALES", "ENG"]
            .iter()
            .map(|id| SeedDepartment { id: (*id).into(), description: Some(format!("{id} department")) })
            .collect(),
        branches: vec![SeedBranch { number: "1".into(), name: "Main branch".into() }],
        employee_classes: vec![SeedClass { id: "EMPSTD".into(), description: "Standard employees".into() }],
        calendars: vec!["MAIN".into()],
        segments: vec![SeedSegment {
            dimension: "SUBACCOUNT".into(),
            segment_id: 1,
            description: "Location".into(),
            length: 10,
            values: vec![],
        }],
        employees: vec![],
    }
}

/// The Visma company `schemas/examples/mapping.example.toml` expects (the demo, the
/// end-to-end tests and the benchmarks use it): departments, branches (one per office),
/// employee classes, the calendar and the office segment values.
pub fn nordic_seed() -> Seed {
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
    Seed {
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
