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

mod branches;
mod departments;
mod dimensions;
mod employees;
use branches::{get_branch, list_branches};
use departments::{create_department, get_department, list_departments, update_department};
use dimensions::{get_dimension, get_segment, list_dimensions, update_segment};
use employees::{create_employee, get_employee, list_employees, update_employee};

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
