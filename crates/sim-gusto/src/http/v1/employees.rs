//! `/v1/employees/{id}` (get, put with version check), the company's list, work
//! addresses and terminations.

use super::*;

pub(in crate::http) async fn get_employee(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    let st = sim.state();
    let Some(e) = st.employees.get(&id) else {
        return not_found();
    };
    tri!(company_ok(&ctx, &e.company_uuid));
    Json(st.employee_json(e)).into_response()
}

pub(in crate::http) async fn list_employees(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(company): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    tri!(company_ok(&ctx, &company));
    let st = sim.state();
    let Some(c) = st.companies.iter().find(|c| c.uuid == company) else {
        return not_found();
    };
    let terminated = parse_bool(q.get("terminated"));
    let onboarded = parse_bool(q.get("onboarded"));
    let location = q.get("location_uuid");
    let search = q.get("search_term").map(|s| s.to_lowercase());
    let uuids: Option<Vec<&str>> = q.get("uuids").map(|u| u.split(',').collect());
    let items: Vec<&crate::model::Employee> = c
        .employees
        .iter()
        .filter_map(|id| st.employees.get(id))
        .filter(|e| terminated.is_none_or(|t| e.terminated_or_scheduled() == t))
        .filter(|e| onboarded.is_none_or(|o| e.onboarded == o))
        .filter(|e| location.is_none_or(|l| e.primary_job().is_some_and(|j| &j.location_uuid == l)))
        .filter(|e| {
            search
                .as_ref()
                .is_none_or(|s| format!("{} {}", e.first_name, e.last_name).to_lowercase().contains(s))
        })
        .filter(|e| uuids.as_ref().is_none_or(|u| u.contains(&e.uuid.as_str())))
        .collect();
    match paginate_with(items, &q, true, |e| st.employee_json(e)) {
        Ok(r) | Err(r) => r,
    }
}

pub(in crate::http) async fn put_employee(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = tri!(json_body(&body));
    let mut st = sim.state();
    let Some(e) = st.employees.get(&id).cloned() else {
        return not_found();
    };
    tri!(company_ok(&ctx, &e.company_uuid));
    tri!(version_matches(&body, &e.version()));
    let mut next = e.clone();
    let opt = |k: &str| body.get(k).map(|v| v.as_str().map(str::to_owned).filter(|s| !s.is_empty()));
    if let Some(Some(v)) = opt("first_name") {
        next.first_name = v;
    }
    if let Some(Some(v)) = opt("last_name") {
        next.last_name = v;
    }
    if let Some(v) = opt("middle_initial") {
        next.middle_initial = v;
    }
    if let Some(v) = opt("preferred_first_name") {
        next.preferred_first_name = v;
    }
    if let Some(v) = opt("email") {
        next.email = v;
    }
    if let Some(v) = opt("work_email") {
        next.work_email = v;
    }
    if let Some(v) = opt("date_of_birth") {
        next.date_of_birth = v.and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
    }
    let changed = next.version() != e.version();
    st.employees.insert(id.clone(), next.clone());
    if changed {
        st.emit(&e.company_uuid, "employee.updated", "Employee", &id);
    }
    Json(st.employee_json(&next)).into_response()
}

pub(in crate::http) async fn list_work_addresses(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    let st = sim.state();
    let Some(e) = st.employees.get(&id) else {
        return not_found();
    };
    tri!(company_ok(&ctx, &e.company_uuid));
    let active = e.active_work_address(st.today());
    let items: Vec<Value> = e
        .work_addresses
        .iter()
        .enumerate()
        .map(|(i, w)| e.work_address_json(w, Some(i) == active, st.locations.get(&w.location_uuid)))
        .collect();
    Json(items).into_response()
}

pub(in crate::http) async fn list_terminations(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    let st = sim.state();
    let Some(e) = st.employees.get(&id) else {
        return not_found();
    };
    tri!(company_ok(&ctx, &e.company_uuid));
    Json(e.terminations.iter().map(|t| t.to_json(&e.uuid)).collect::<Vec<_>>()).into_response()
}
