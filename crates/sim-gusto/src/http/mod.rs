//! HTTP surface, cut the way `sim-visma` is: [`gate`] (version check, auth, rate limit and
//! faults in front of `/v1`), one module per `/v1` resource under [`v1`], [`oauth`] and
//! [`admin`]; this file holds the router and the answers they share.

// Handlers return `Response` early on error; boxing it would only add noise.
#![allow(clippy::result_large_err)]

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

mod admin;
mod gate;
mod oauth;
mod v1;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use chrono::NaiveDate;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::model::*;
use crate::ops::{EmployeePatch, HireRequest, LocationPatch, SimError};
use crate::seed::new_uuid;
use crate::{FaultRule, Sim, State};

use admin::*;
use gate::gate;
use oauth::{revoke, token};
use v1::*;

type Shared = Arc<Sim>;

/// Who is calling, resolved by the gate from the bearer token.
#[derive(Clone, Debug)]
struct AuthCtx {
    grant: String,
    company: Option<String>,
}

fn errors(status: StatusCode, key: &str, category: &str, message: &str) -> Response {
    (status, Json(json!({"errors": [{"error_key": key, "category": category, "message": message}]})))
        .into_response()
}

fn not_found() -> Response {
    errors(StatusCode::NOT_FOUND, "request", "not_found", "The requested resource was not found.")
}

fn forbidden() -> Response {
    errors(
        StatusCode::FORBIDDEN,
        "request",
        "missing_permissions",
        "This token cannot access the requested resource.",
    )
}

fn conflict() -> Response {
    errors(
        StatusCode::CONFLICT,
        "base",
        "invalid_resource_version",
        "You are attempting to update a resource using an out-of-date version.",
    )
}

/// Gusto's optimistic concurrency on a PUT: the body's `version` is required (422) and must
/// be the resource's current one (409).
fn version_matches(body: &serde_json::Map<String, Value>, current: &str) -> Result<(), Response> {
    match body.get("version").and_then(Value::as_str) {
        None => Err(errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            "version",
            "invalid_attribute_value",
            "Version is required",
        )),
        Some(v) if v != current => Err(conflict()),
        Some(_) => Ok(()),
    }
}

fn unauthorized(description: &str) -> Response {
    let mut r = errors(
        StatusCode::UNAUTHORIZED,
        "request",
        "invalid_token",
        "The token is invalid, expired, or has not been included in the request.",
    );
    let v =
        format!("Bearer realm=\"Doorkeeper\", error=\"invalid_token\", error_description=\"{description}\"");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().insert("WWW-Authenticate", v);
    }
    r
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": description}))).into_response()
}

const INVALID_GRANT: &str = "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.";
const INVALID_CLIENT: &str = "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.";

pub(crate) fn router(sim: Shared) -> Router {
    let v1 = Router::new()
        .route("/v1/token_info", get(token_info))
        .route("/v1/employees/{employee_id}", get(get_employee).put(put_employee))
        .route("/v1/companies/{company_id}/employees", get(list_employees))
        .route("/v1/companies/{company_id}/locations", get(list_locations))
        .route("/v1/locations/{location_id}", get(get_location).put(put_location))
        .route("/v1/companies/{company_uuid}/departments", get(list_departments))
        .route("/v1/departments/{department_uuid}", get(get_department))
        .route("/v1/employees/{employee_id}/work_addresses", get(list_work_addresses))
        .route("/v1/employees/{employee_id}/terminations", get(list_terminations))
        .route("/v1/events", get(list_events))
        .route("/v1/webhook_subscriptions", get(list_subscriptions).post(create_subscription))
        .route(
            "/v1/webhook_subscriptions/{webhook_subscription_uuid}",
            get(get_subscription).put(update_subscription).delete(delete_subscription),
        )
        .route("/v1/webhook_subscriptions/{webhook_subscription_uuid}/verify", put(verify_subscription))
        .route(
            "/v1/webhook_subscriptions/{webhook_subscription_uuid}/request_verification_token",
            get(request_verification_token),
        )
        .route_layer(middleware::from_fn_with_state(sim.clone(), gate));
    let oauth = Router::new().route("/oauth/token", post(token)).route("/oauth/revoke", post(revoke));
    let admin = Router::new()
        .route("/admin/state", get(admin_state))
        .route("/admin/companies", post(admin_seed))
        .route("/admin/companies/{company_uuid}/employees", post(admin_hire))
        .route("/admin/employees/{id}", axum::routing::patch(admin_update_employee))
        .route("/admin/employees/{id}/onboard", post(admin_onboard))
        .route("/admin/employees/{id}/title", post(admin_title))
        .route("/admin/employees/{id}/department", post(admin_department))
        .route("/admin/employees/{id}/transfer", post(admin_transfer))
        .route("/admin/employees/{id}/terminate", post(admin_terminate))
        .route("/admin/employees/{id}/rehire", post(admin_rehire))
        .route("/admin/locations/{id}", axum::routing::patch(admin_location))
        .route("/admin/webhooks/drop_next", post(admin_drop_next))
        .route("/admin/webhooks/behaviour", put(admin_webhook_behaviour))
        .route("/admin/grants/{grant_id}/revoke", post(admin_revoke_grant))
        .route("/admin/tokens/expire", post(admin_expire_tokens))
        .route("/admin/clock/advance", post(admin_advance_clock))
        .route("/admin/faults", put(admin_set_faults).delete(admin_clear_faults))
        .route("/admin/stats/{grant_id}", get(admin_stats));
    v1.merge(oauth).merge(crate::consent::router()).merge(admin).with_state(sim)
}

fn company_ok(ctx: &AuthCtx, company: &str) -> Result<(), Response> {
    match &ctx.company {
        None => Err(forbidden()),
        Some(c) if c == company => Ok(()),
        Some(_) => Err(not_found()),
    }
}

fn system_only(ctx: &AuthCtx) -> Result<(), Response> {
    if ctx.company.is_some() {
        Err(forbidden())
    } else {
        Ok(())
    }
}

fn paginate(items: Vec<Value>, q: &HashMap<String, String>, force: bool) -> Result<Response, Response> {
    paginate_with(items, q, force, |v| v)
}

/// As [`paginate`], rendering only the items of the page asked for: a list of 10,000
/// employees read 100 at a time then costs each page 100 renderings, not 10,000 (as a
/// database-backed API's page does), and the state lock is held that much shorter.
fn paginate_with<T>(
    items: Vec<T>,
    q: &HashMap<String, String>,
    force: bool,
    render: impl Fn(T) -> Value,
) -> Result<Response, Response> {
    let page_param = q.get("page").map(|p| p.parse::<usize>());
    let per_param = q.get("per").map(|p| p.parse::<usize>());
    if !force && page_param.is_none() && per_param.is_none() {
        return Ok(Json(Value::Array(items.into_iter().map(render).collect())).into_response());
    }
    let bad = || {
        errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            "request",
            "invalid_parameter",
            "page and per must be positive integers",
        )
    };
    let page = match page_param {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => return Err(bad()),
    };
    let per = match per_param {
        None => 25,
        Some(Ok(p)) if p >= 1 => p.min(500),
        _ => return Err(bad()),
    };
    let total = items.len();
    let pages = total.div_ceil(per).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).map(render).collect();
    let mut r = Json(Value::Array(slice)).into_response();
    let h = r.headers_mut();
    h.insert("X-Page", HeaderValue::from(page as u64));
    h.insert("X-Per-Page", HeaderValue::from(per as u64));
    h.insert("X-Total-Count", HeaderValue::from(total as u64));
    h.insert("X-Total-Pages", HeaderValue::from(pages as u64));
    Ok(r)
}

fn parse_bool(v: Option<&String>) -> Option<bool> {
    v.map(|s| s == "true" || s == "1")
}

fn json_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(errors(
            StatusCode::BAD_REQUEST,
            "request",
            "invalid_request_error",
            "The request body must be a JSON object.",
        )),
    }
}

/// `*` matches any run of characters (fault paths, event types).
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("employee.*", "employee.updated"));
        assert!(glob_match("*.created", "location.created"));
        assert!(glob_match("notification.*.created", "notification.x.created"));
        assert!(!glob_match("employee.*", "location.updated"));
        assert!(glob_match("/v1/employees/*", "/v1/employees/abc"));
        assert!(glob_match("employee.updated", "employee.updated"));
    }
}
