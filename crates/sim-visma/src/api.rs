//! ERP routes (`/v1/...`, mirrored under the legacy prefix).

// Early-return helpers yield the finished error `Response`; boxing it would only add noise on a
// path that axum turns into a response right away.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::NaiveDateTime;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::config::CreateStyle;
use crate::errors;
use crate::guard::Caller;
use crate::model::{
    time_stamp, DepartmentWrite, EmployeeCreate, EmployeeUpdate, RuleError, SegmentWrite, TenantData,
};
use crate::state::{Shared, State as SimState};

/// The ERP routes, relative to `/v1`.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/employee", get(list_employees).post(create_employee))
        .route("/employee/{employee_cd}", get(get_employee).put(update_employee))
        .route("/department", get(list_departments).post(create_department))
        .route("/department/{department_id}", get(get_department).put(update_department))
        .route("/branch", get(list_branches))
        .route("/branch/{number}", get(get_branch))
        .route("/dimension", get(list_dimensions))
        .route("/dimension/{id}", get(get_dimension))
        .route("/dimension/{id}/{segment_id}", get(get_segment).put(update_segment))
}

fn rule_error(e: RuleError) -> Response {
    match e {
        RuleError::Invalid(m) => errors::message(StatusCode::BAD_REQUEST, &m),
        RuleError::NotFound(m) => errors::message(StatusCode::NOT_FOUND, &m),
        RuleError::Stale => errors::message(
            StatusCode::PRECONDITION_FAILED,
            "Employee version does not match with If-Match header",
        ),
    }
}

fn not_found(what: &str) -> Response {
    errors::message(StatusCode::NOT_FOUND, &format!("Error: {what} not found."))
}

fn parse_body<T: DeserializeOwned>(body: &Bytes, name: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        errors::message(
            StatusCode::BAD_REQUEST,
            &format!("Error: '{name}' could not be read from the request body: {e}"),
        )
    })
}

fn etag_header(resp: &mut Response, version: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", time_stamp(version))) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}

fn with_tenant<R>(
    st: &mut SimState,
    caller: &Caller,
    f: impl FnOnce(&mut TenantData, NaiveDateTime) -> R,
) -> R {
    let now = st.wall_now();
    let tenant = st.tenant_mut(&caller.tenant_id);
    f(&mut tenant.data, now)
}

/// `lastModifiedDateTime` + `lastModifiedDateTimeCondition`: both or neither.
#[allow(clippy::type_complexity)]
fn modified_filter(
    q: &HashMap<String, String>,
) -> Result<Option<Box<dyn Fn(NaiveDateTime) -> bool>>, Response> {
    let get = |k: &str| q.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    match (get("lastModifiedDateTime"), get("lastModifiedDateTimeCondition")) {
        (None, None) => Ok(None),
        (Some(t), Some(c)) => {
            let at = parse_visma_time(&t).ok_or_else(|| {
                errors::message(
                    StatusCode::BAD_REQUEST,
                    &format!("Error: The value '{t}' is not a valid LastModifiedDateTime."),
                )
            })?;
            let f: Box<dyn Fn(NaiveDateTime) -> bool> = match c.trim() {
                ">" => Box::new(move |x| x > at),
                "<" => Box::new(move |x| x < at),
                ">=" => Box::new(move |x| x >= at),
                "<=" => Box::new(move |x| x <= at),
                other => {
                    return Err(errors::message(
                        StatusCode::BAD_REQUEST,
                        &format!("Error: '{other}' is not a valid LastModifiedDateTimeCondition."),
                    ))
                }
            };
            Ok(Some(f))
        }
        _ => Err(errors::message(
            StatusCode::BAD_REQUEST,
            "Error: LastModifiedDateTime and LastModifiedDateTimeCondition are mutually inclusive.",
        )),
    }
}

/// The formats the spec lists for `lastModifiedDateTime`.
pub fn parse_visma_time(s: &str) -> Option<NaiveDateTime> {
    const FORMATS: [&str; 4] =
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"];
    let s = s.trim();
    FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(s, f).ok()).or_else(|| {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

fn query_u32(q: &HashMap<String, String>, key: &str) -> Option<u32> {
    q.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).and_then(|(_, v)| v.trim().parse().ok())
}

// ---- employees ----

async fn list_employees(
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

async fn get_employee(
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

async fn create_employee(
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

async fn update_employee(
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
    with_tenant(&mut st, &caller, |t, now| match t.update_employee(&cd, &dto, if_match.as_deref(), now) {
        Ok(e) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            etag_header(&mut r, e.version);
            r
        }
        Err(e) => rule_error(e),
    })
}

// ---- departments ----

async fn list_departments(
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

async fn get_department(
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

async fn create_department(
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

async fn update_department(
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

// ---- branches ----

async fn list_branches(
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
            .branches
            .values()
            .filter(|b| filter.as_ref().is_none_or(|f| f(b.last_modified)))
            .map(|b| b.to_dto())
            .collect();
        Json(items).into_response()
    })
}

async fn get_branch(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
) -> Response {
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| match t.branches.get(&number) {
        Some(b) => Json(b.to_dto()).into_response(),
        None => not_found(&format!("Branch '{number}'")),
    })
}

// ---- dimensions ----

async fn list_dimensions(State(sim): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| {
        Json(t.dimensions.keys().cloned().collect::<Vec<_>>()).into_response()
    })
}

async fn get_dimension(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| match t.dimensions.get(&id) {
        Some(d) => Json(d.to_dto()).into_response(),
        None => not_found(&format!("Dimension '{id}'")),
    })
}

async fn get_segment(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, segment)): Path<(String, String)>,
) -> Response {
    let Ok(segment_id) = segment.parse::<i32>() else {
        return errors::message(
            StatusCode::BAD_REQUEST,
            &format!("Error: '{segment}' is not a valid segment id."),
        );
    };
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| {
        match t.dimensions.get(&id).and_then(|d| d.segments.get(&segment_id)) {
            Some(s) => Json(s.to_dto()).into_response(),
            None => not_found(&format!("Segment {segment_id} of dimension '{id}'")),
        }
    })
}

async fn update_segment(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, segment)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(segment_id) = segment.parse::<i32>() else {
        return errors::message(
            StatusCode::BAD_REQUEST,
            &format!("Error: '{segment}' is not a valid segment id."),
        );
    };
    let dto: SegmentWrite = match parse_body(&body, "segment") {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, now| match t.update_segment(&id, segment_id, &dto, now) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => rule_error(e),
    })
}
