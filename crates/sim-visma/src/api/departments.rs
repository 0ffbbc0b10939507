//! `/department`: list, read, create, update.

use super::*;

pub(super) async fn list_departments(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = match modified_filter(&q) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| {
        let items: Vec<Value> = t
            .departments
            .values()
            .filter(|d| filter.as_ref().is_none_or(|f| f(d.last_modified)))
            .map(|d| d.to_dto())
            .collect();
        Json(items).into_response()
    })
}

pub(super) async fn get_department(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| match t.departments.get(&id) {
        Some(d) => {
            let mut r = Json(d.to_dto()).into_response();
            etag_header(&mut r, d.version);
            r
        }
        None => not_found(&format!("Department '{id}'")),
    })
}

pub(super) async fn create_department(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let dto: DepartmentWrite = match parse_body(&body, "department") {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut st = sim.lock();
    let base = st.base_url.clone();
    with_tenant(&mut st, &caller, |t, now| match t.upsert_department(None, &dto, now, true) {
        Ok(d) => {
            let mut r = (StatusCode::CREATED, Json(json!({}))).into_response();
            etag_header(&mut r, d.version);
            if let Ok(v) = HeaderValue::from_str(&format!("{base}/v1/department/{}", d.department_id)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(e) => rule_error(e),
    })
}

pub(super) async fn update_department(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let dto: DepartmentWrite = match parse_body(&body, "department") {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, now| match t.upsert_department(Some(&id), &dto, now, false) {
        Ok(d) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            etag_header(&mut r, d.version);
            r
        }
        Err(e) => rule_error(e),
    })
}
