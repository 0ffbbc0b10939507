//! `/employee`: list (filters, paging), read, create (both create styles), update with `If-Match`.

use super::*;

pub(super) async fn list_employees(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = match modified_filter(&q) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut st = sim.lock();
    let max = st.config.max_page_size.max(1);
    let size = query_u32(&q, "pageSize").unwrap_or(max).clamp(1, max) as usize;
    let page = query_u32(&q, "pageNumber").unwrap_or(1).max(1) as usize;
    let greater = q.get("greaterThanValue").cloned();
    with_tenant(&mut st, &caller, |t, _| {
        let matching: Vec<_> = t
            .employees
            .values()
            .filter(|e| filter.as_ref().is_none_or(|f| f(e.last_modified)))
            .filter(|e| greater.as_ref().is_none_or(|g| &e.employee_cd > g))
            .collect();
        let total = matching.len();
        let items: Vec<Value> = matching
            .into_iter()
            .skip((page - 1).saturating_mul(size))
            .take(size)
            .map(|e| {
                let mut dto = e.to_dto(t);
                dto["metadata"] = json!({"totalCount": total, "maxPageSize": max});
                dto
            })
            .collect();
        Json(items).into_response()
    })
}

pub(super) async fn get_employee(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(cd): Path<String>,
) -> Response {
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| match t.employees.get(&cd) {
        Some(e) => {
            let mut r = Json(e.to_dto(t)).into_response();
            etag_header(&mut r, e.version);
            r
        }
        None => not_found(&format!("Employee with employeeCd '{cd}'")),
    })
}

pub(super) async fn create_employee(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let dto: EmployeeCreate = match parse_body(&body, "employee") {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut st = sim.lock();
    let style = st.config.create_style;
    let base = st.base_url.clone();
    with_tenant(&mut st, &caller, |t, now| match t.create_employee(&dto, now) {
        Ok(e) => {
            let mut r = match style {
                CreateStyle::Created201 => (StatusCode::CREATED, Json(json!({}))).into_response(),
                CreateStyle::Ok200 => (StatusCode::OK, Json(json!({}))).into_response(),
            };
            if style == CreateStyle::Created201 {
                etag_header(&mut r, e.version);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("{base}/v1/employee/{}", e.employee_cd)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(e) => rule_error(e),
    })
}

pub(super) async fn update_employee(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(cd): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let dto: EmployeeUpdate = match parse_body(&body, "employeeDto") {
        Ok(d) => d,
        Err(r) => return r,
    };
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut st = sim.lock();
    // A concurrent edit injected by the fault layer lands just before this update.
    let stale = st.take_stale("PUT /v1/employee/{employee_cd}");
    with_tenant(&mut st, &caller, |t, now| {
        if stale {
            t.touch_employee(&cd, now);
        }
        match t.update_employee(&cd, &dto, if_match.as_deref(), now) {
            Ok(e) => {
                let mut r = StatusCode::NO_CONTENT.into_response();
                etag_header(&mut r, e.version);
                r
            }
            Err(e) => rule_error(e),
        }
    })
}
