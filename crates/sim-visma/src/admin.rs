//! Admin routes (no auth): inspection, seeding, faults, clock and limits.
//!
//! | route | body |
//! |---|---|
//! | `GET /admin/state` | – (full state JSON) |
//! | `GET /admin/requests` | – (`{"GET /v1/employee": 3, ...}`) |
//! | `POST /admin/tenants` | `TenantConfig` `{"tenantId", "companyId", "kind": "company"\|"customer"}` |
//! | `POST /admin/clients` | `ClientConfig` `{"clientId", "clientSecret", "allowedScopes": [..]}` |
//! | `POST /admin/tenants/{tenantId}/seed` | [`Seed`] |
//! | `GET /admin/tenants/{tenantId}/employees` | – (stored records) |
//! | `PUT /admin/faults` | `{"route": "POST /v1/employee" \| "*", ...FaultSpec}` |
//! | `DELETE /admin/faults` | – |
//! | `PUT /admin/settings` | [`Settings`] |
//! | `POST /admin/clock/advance` | `{"seconds": 3600}` |
//! | `POST /admin/throttle/reset` | – |

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{ClientConfig, CreateStyle, TenantConfig};
use crate::errors;
use crate::model::{EmployeeCreate, RuleError};
use crate::state::{FaultSpec, Shared, State as SimState};

/// Setup data for one tenant. Employees use the `EmployeeCreateDTO` wire shape (the same body a
/// client would POST), so the demo can pre-load "employees Visma already has".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Seed {
    pub departments: Vec<SeedDepartment>,
    pub branches: Vec<SeedBranch>,
    pub employee_classes: Vec<SeedClass>,
    pub calendars: Vec<String>,
    pub segments: Vec<SeedSegment>,
    pub employees: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedDepartment {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedBranch {
    pub number: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedClass {
    pub id: String,
    #[serde(default)]
    pub description: String,
}

/// A segment of a segmented key (dimension), e.g. `SUBACCOUNT` segment 1, with its values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedSegment {
    pub dimension: String,
    pub segment_id: i32,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_segment_length")]
    pub length: i32,
    #[serde(default)]
    pub values: Vec<SeedSegmentValue>,
}

fn default_segment_length() -> i32 {
    10
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedSegmentValue {
    pub value: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// Runtime knobs (`PUT /admin/settings`); absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    pub hourly_limit: Option<u32>,
    pub rate_window_secs: Option<f64>,
    /// `0` disables the "same failing request" rule.
    pub failing_request_limit: Option<u32>,
    pub token_ttl_secs: Option<u64>,
    pub create_style: Option<CreateStyle>,
    pub legacy_paths: Option<bool>,
    pub max_page_size: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRequest {
    /// `"POST /v1/employee"`, `"PUT /v1/employee/{employeeCd}"`, ... or `"*"` for every route.
    pub route: String,
    #[serde(flatten)]
    pub spec: FaultSpec,
}

#[derive(Debug, Clone, Deserialize)]
struct Advance {
    seconds: f64,
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/state", get(state))
        .route("/requests", get(requests))
        .route("/tenants", post(add_tenant))
        .route("/clients", post(add_client))
        .route("/tenants/{tenant_id}/seed", post(seed))
        .route("/tenants/{tenant_id}/employees", get(employees))
        .route("/faults", put(set_fault).delete(clear_faults))
        .route("/settings", put(settings))
        .route("/clock/advance", post(advance))
        .route("/throttle/reset", post(reset_throttle))
}

async fn state(State(sim): State<Shared>) -> Json<Value> {
    Json(sim.lock().to_json())
}

async fn requests(State(sim): State<Shared>) -> Json<Value> {
    Json(json!(sim.lock().requests))
}

async fn add_tenant(State(sim): State<Shared>, Json(t): Json<TenantConfig>) -> StatusCode {
    let mut st = sim.lock();
    let id = t.tenant_id.clone();
    st.tenant_mut(&id).config = t;
    StatusCode::NO_CONTENT
}

async fn add_client(State(sim): State<Shared>, Json(c): Json<ClientConfig>) -> StatusCode {
    let mut st = sim.lock();
    st.config.clients.retain(|x| x.client_id != c.client_id);
    st.config.clients.push(c);
    StatusCode::NO_CONTENT
}

async fn seed(State(sim): State<Shared>, Path(tenant_id): Path<String>, Json(seed): Json<Seed>) -> Response {
    match apply_seed(&mut sim.lock(), &tenant_id, &seed) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(msg) => errors::message(StatusCode::BAD_REQUEST, &msg),
    }
}

/// Applies setup data. Employees go through the same rules as `POST /v1/employee`, so a seed
/// that references a missing department fails loudly instead of creating an impossible record.
pub fn apply_seed(st: &mut SimState, tenant_id: &str, seed: &Seed) -> Result<(), String> {
    let now = st.wall_now();
    let data = &mut st.tenant_mut(tenant_id).data;
    for d in &seed.departments {
        data.seed_department(&d.id, d.description.clone(), now);
    }
    for b in &seed.branches {
        data.seed_branch(&b.number, &b.name, now);
    }
    for c in &seed.employee_classes {
        data.employee_classes.insert(c.id.clone(), c.description.clone());
    }
    for c in &seed.calendars {
        if !data.calendars.contains(c) {
            data.calendars.push(c.clone());
        }
    }
    for s in &seed.segments {
        data.seed_segment(&s.dimension, &s.dimension, s.segment_id, &s.description, s.length, now);
        let write = crate::model::SegmentWrite {
            segment_values: Some(
                s.values
                    .iter()
                    .filter(|v| {
                        !data.dimensions.get(&s.dimension).is_some_and(|d| {
                            d.segments.get(&s.segment_id).is_some_and(|seg| seg.values.contains_key(&v.value))
                        })
                    })
                    .map(|v| crate::model::SegmentValueWrite {
                        operation: Some("Insert".into()),
                        value: Some(v.value.clone()),
                        description: Some(crate::model::Val { value: v.description.clone() }),
                        active: None,
                    })
                    .collect(),
            ),
            description: None,
        };
        data.update_segment(&s.dimension, s.segment_id, &write, now).map_err(rule_text)?;
    }
    for e in &seed.employees {
        let dto: EmployeeCreate =
            serde_json::from_value(e.clone()).map_err(|err| format!("employee seed: {err}"))?;
        data.create_employee(&dto, now).map_err(rule_text)?;
    }
    Ok(())
}

fn rule_text(e: RuleError) -> String {
    match e {
        RuleError::Invalid(m) | RuleError::NotFound(m) => m,
        RuleError::Stale => "stale version".into(),
    }
}

async fn employees(State(sim): State<Shared>, Path(tenant_id): Path<String>) -> Response {
    let st = sim.lock();
    match st.tenants.get(&tenant_id) {
        Some(t) => Json(json!(t.data.employees.values().collect::<Vec<_>>())).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn set_fault(State(sim): State<Shared>, Json(f): Json<FaultRequest>) -> StatusCode {
    sim.lock().faults.insert(f.route, f.spec);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): State<Shared>) -> StatusCode {
    sim.lock().faults.clear();
    StatusCode::NO_CONTENT
}

pub fn apply_settings(st: &mut SimState, s: &Settings) {
    let c = &mut st.config;
    if let Some(v) = s.hourly_limit {
        c.hourly_limit = v;
    }
    if let Some(v) = s.rate_window_secs.and_then(|v| std::time::Duration::try_from_secs_f64(v).ok()) {
        c.rate_window = v;
    }
    if let Some(v) = s.failing_request_limit {
        c.failing_request_limit = (v > 0).then_some(v);
    }
    if let Some(v) = s.token_ttl_secs {
        c.token_ttl = std::time::Duration::from_secs(v);
    }
    if let Some(v) = s.create_style {
        c.create_style = v;
    }
    if let Some(v) = s.legacy_paths {
        c.legacy_paths = v;
    }
    if let Some(v) = s.max_page_size {
        c.max_page_size = v.max(1);
    }
}

async fn settings(State(sim): State<Shared>, Json(s): Json<Settings>) -> StatusCode {
    apply_settings(&mut sim.lock(), &s);
    StatusCode::NO_CONTENT
}

async fn advance(State(sim): State<Shared>, Json(a): Json<Advance>) -> StatusCode {
    match std::time::Duration::try_from_secs_f64(a.seconds) {
        Ok(d) => {
            sim.lock().clock.advance(d);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn reset_throttle(State(sim): State<Shared>) -> StatusCode {
    let mut st = sim.lock();
    st.windows.clear();
    st.failures.clear();
    StatusCode::NO_CONTENT
}
