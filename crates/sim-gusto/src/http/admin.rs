//! `/admin`: seed, change and break the simulated Gusto from a test or the demo.

use super::*;

pub(super) fn admin_result(r: Result<Value, SimError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(SimError::NotFound(m)) => (StatusCode::NOT_FOUND, Json(json!({"error": m}))).into_response(),
        Err(SimError::Invalid(m)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": m}))).into_response()
        }
    }
}

pub(super) async fn admin_state(AxState(sim): AxState<Shared>) -> Response {
    Json(sim.state_json()).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SeedBody {
    name: Option<String>,
    employees: Option<usize>,
}

pub(super) async fn admin_seed(AxState(sim): AxState<Shared>, Json(b): Json<SeedBody>) -> Response {
    let info =
        sim.seed_named_company(b.name.as_deref().unwrap_or("Nordlys Consulting"), b.employees.unwrap_or(25));
    (StatusCode::CREATED, Json(json!(info))).into_response()
}

pub(super) async fn admin_hire(
    AxState(sim): AxState<Shared>,
    Path(company): Path<String>,
    Json(b): Json<HireRequest>,
) -> Response {
    admin_result(sim.hire(&company, b).map(|id| json!({"employee_uuid": id})))
}

pub(super) async fn admin_update_employee(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<EmployeePatch>,
) -> Response {
    admin_result(sim.update_employee(&id, b).map(|()| json!({"ok": true})))
}

pub(super) async fn admin_onboard(AxState(sim): AxState<Shared>, Path(id): Path<String>) -> Response {
    admin_result(sim.onboard(&id).map(|()| json!({"ok": true})))
}

#[derive(Deserialize)]
pub(super) struct TitleBody {
    title: String,
}

pub(super) async fn admin_title(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<TitleBody>,
) -> Response {
    admin_result(sim.change_title(&id, &b.title).map(|()| json!({"ok": true})))
}

#[derive(Deserialize)]
pub(super) struct DepartmentBody {
    department_uuid: String,
}

pub(super) async fn admin_department(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<DepartmentBody>,
) -> Response {
    admin_result(sim.change_department(&id, &b.department_uuid).map(|()| json!({"ok": true})))
}

#[derive(Deserialize)]
pub(super) struct TransferBody {
    location_uuid: String,
    #[serde(default)]
    effective_date: Option<NaiveDate>,
}

pub(super) async fn admin_transfer(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<TransferBody>,
) -> Response {
    admin_result(sim.transfer(&id, &b.location_uuid, b.effective_date).map(|()| json!({"ok": true})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DateBody {
    effective_date: Option<NaiveDate>,
}

pub(super) async fn admin_terminate(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let b: DateBody = serde_json::from_slice(&body).unwrap_or_default();
    admin_result(sim.terminate(&id, b.effective_date).map(|()| json!({"ok": true})))
}

pub(super) async fn admin_rehire(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let b: DateBody = serde_json::from_slice(&body).unwrap_or_default();
    admin_result(sim.rehire(&id, b.effective_date).map(|()| json!({"ok": true})))
}

pub(super) async fn admin_location(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<LocationPatch>,
) -> Response {
    admin_result(sim.edit_location(&id, b).map(|()| json!({"ok": true})))
}

#[derive(Deserialize)]
pub(super) struct CountBody {
    count: u32,
}

pub(super) async fn admin_drop_next(AxState(sim): AxState<Shared>, Json(b): Json<CountBody>) -> Response {
    sim.drop_next_webhooks(b.count);
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct BehaviourBody {
    duplicate_rate: f64,
    reorder_max_delay_ms: u64,
    /// Left as it is when absent.
    lost_ack_rate: Option<f64>,
}

pub(super) async fn admin_webhook_behaviour(
    AxState(sim): AxState<Shared>,
    Json(b): Json<BehaviourBody>,
) -> Response {
    sim.set_webhook_behaviour(b.duplicate_rate, Duration::from_millis(b.reorder_max_delay_ms));
    if let Some(rate) = b.lost_ack_rate {
        sim.set_lost_ack_rate(rate);
    }
    Json(json!({"ok": true})).into_response()
}

pub(super) async fn admin_revoke_grant(AxState(sim): AxState<Shared>, Path(grant): Path<String>) -> Response {
    admin_result(sim.revoke_grant(&grant).map(|()| json!({"ok": true})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ExpireBody {
    grant_id: Option<String>,
}

pub(super) async fn admin_expire_tokens(AxState(sim): AxState<Shared>, body: Bytes) -> Response {
    let b: ExpireBody = serde_json::from_slice(&body).unwrap_or_default();
    sim.expire_tokens(b.grant_id.as_deref());
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
pub(super) struct AdvanceBody {
    seconds: u64,
}

pub(super) async fn admin_advance_clock(
    AxState(sim): AxState<Shared>,
    Json(b): Json<AdvanceBody>,
) -> Response {
    sim.advance_clock(Duration::from_secs(b.seconds));
    Json(json!({"ok": true, "now": sim.state().now().to_rfc3339()})).into_response()
}

pub(super) async fn admin_set_faults(
    AxState(sim): AxState<Shared>,
    Json(rules): Json<Vec<FaultRule>>,
) -> Response {
    sim.set_faults(rules);
    Json(json!({"ok": true})).into_response()
}

pub(super) async fn admin_clear_faults(AxState(sim): AxState<Shared>) -> Response {
    sim.clear_faults();
    Json(json!({"ok": true})).into_response()
}

pub(super) async fn admin_stats(AxState(sim): AxState<Shared>, Path(grant): Path<String>) -> Response {
    Json(json!({
        "grant_id": grant,
        "requests": sim.request_count(&grant),
        "max_requests_in_any_window": sim.max_requests_in_any_window(&grant),
        "refreshes": sim.refresh_count(&grant),
        "rate_limited": sim.rate_limited_count(&grant),
    }))
    .into_response()
}
