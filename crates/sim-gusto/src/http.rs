//! HTTP surface: `/v1` (gated by version check, auth, rate limit and faults),
//! `/oauth`, and `/admin`.

// Handlers return `Response` early on error; boxing it would only add noise.
#![allow(clippy::result_large_err)]

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
use base64::Engine;
use chrono::NaiveDate;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::model::*;
use crate::ops::{EmployeePatch, HireRequest, LocationPatch, SimError};
use crate::seed::new_uuid;
use crate::{FaultRule, Sim, State};

type Shared = Arc<Sim>;

/// Who is calling, resolved by the gate from the bearer token.
#[derive(Clone, Debug)]
struct AuthCtx {
    grant: String,
    company: Option<String>,
}

pub(crate) fn random_token(st: &mut State) -> String {
    let bytes: [u8; 32] = st.rng.random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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

// ---------------------------------------------------------------- gate

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

enum Fault {
    None,
    Error(u16),
    Drop,
    Malformed,
}

/// Version check, bearer auth (with Doorkeeper's revoke-on-first-use), per-grant
/// rolling window, request recording and fault injection, in that order.
async fn gate(AxState(sim): AxState<Shared>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();

    // 1. X-Gusto-API-Version.
    let served = match crate::versions::check(&sim, req.headers()) {
        Ok(s) => s,
        Err(refused) => return refused,
    };

    // 2. Bearer token.
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    let Some(token) = token else {
        return unauthorized("No access token was provided");
    };
    let ctx = {
        let mut st = sim.state();
        let now = st.now();
        let Some(t) = st.access_tokens.get(&token).cloned() else {
            return unauthorized("The access token is invalid");
        };
        let grant = st.grants.get(&t.grant_id).cloned();
        let Some(grant) = grant.filter(|g| !g.revoked) else {
            return unauthorized("The access token was revoked");
        };
        if t.revoked {
            return unauthorized("The access token was revoked");
        }
        if t.expires_at <= now {
            return unauthorized("The access token expired");
        }
        if !t.used {
            // First use of a refreshed token revokes the refresh token it came from,
            // and the access token issued with that refresh token.
            if let Some(prev) = &t.previous_refresh {
                if let Some(r) = st.refresh_tokens.get_mut(prev) {
                    r.revoked = true;
                    let old_access = r.access_token.clone();
                    if let Some(a) = st.access_tokens.get_mut(&old_access) {
                        a.revoked = true;
                    }
                }
            }
            if let Some(a) = st.access_tokens.get_mut(&token) {
                a.used = true;
            }
        }
        AuthCtx { grant: grant.id, company: grant.company_uuid }
    };

    // 3. Rolling window per grant; 4. record; 5. faults.
    let limit = sim.cfg.rate_limit;
    let window = sim.cfg.rate_window;
    let (remaining, reset_after, limited, fault, latency) = {
        let mut st = sim.state();
        let now = Instant::now();
        st.arrivals.entry(ctx.grant.clone()).or_default().push(now);
        *st.route_counts.entry((ctx.grant.clone(), route.clone())).or_default() += 1;
        let log = st.window.entry(ctx.grant.clone()).or_default();
        while log.front().is_some_and(|t| now.duration_since(*t) >= window) {
            log.pop_front();
        }
        let limited = log.len() >= limit;
        if !limited {
            log.push_back(now);
        }
        let remaining = limit.saturating_sub(log.len());
        let reset_after = log.front().map_or(window, |t| window.saturating_sub(now.duration_since(*t)));
        if limited {
            *st.rate_limited.entry(ctx.grant.clone()).or_default() += 1;
        }
        let (fault, latency) = if limited { (Fault::None, 0) } else { pick_fault(&mut st, &path, &method) };
        (remaining, reset_after, limited, fault, latency)
    };

    let reset_at = chrono::Utc::now() + chrono::Duration::from_std(reset_after).unwrap_or_default();
    let mut rl_headers = HeaderMap::new();
    rl_headers.insert("X-RateLimit-Limit", HeaderValue::from(limit as u64));
    rl_headers.insert("X-RateLimit-Remaining", HeaderValue::from(remaining as u64));
    if let Ok(v) = HeaderValue::from_str(&reset_at.format("%Y-%m-%d %H:%M:%S %z").to_string()) {
        rl_headers.insert("X-RateLimit-Reset", v);
    }
    served.decorate(&mut rl_headers);

    let mut resp = if limited {
        let secs = reset_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = Response::new(Body::from(
            json!({"errors":[{"error_key":"base","category":"rate_limit_exceeded","message":"Rate Limit Exceeded"}]})
                .to_string(),
        ));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        // Gusto's reason phrase (§4), not the canonical "Too Many Requests".
        r.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Rate Limit Exceeded"));
        r.headers_mut().insert("Content-Type", HeaderValue::from_static("application/json"));
        r.headers_mut().insert("Retry-After", HeaderValue::from(secs));
        r
    } else {
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        match fault {
            Fault::Error(status) => errors(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "base",
                "internal_error",
                "An unexpected error has occurred.",
            ),
            Fault::Malformed => {
                let mut r = Response::new(Body::from("{\"uuid\": \"truncated"));
                r.headers_mut().insert("Content-Type", HeaderValue::from_static("application/json"));
                r
            }
            Fault::Drop => {
                // Headers go out, then the body stream fails: the connection is cut.
                let stream = futures::stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "dropped",
                    ))
                });
                let mut r = Response::new(Body::from_stream(stream));
                r.headers_mut().insert("Content-Type", HeaderValue::from_static("application/json"));
                r
            }
            Fault::None => {
                req.extensions_mut().insert(ctx);
                next.run(req).await
            }
        }
    };
    resp.headers_mut().extend(rl_headers);
    resp
}

fn pick_fault(st: &mut State, path: &str, method: &Method) -> (Fault, u64) {
    let mut chosen = (Fault::None, 0);
    let mut retire = None;
    for i in 0..st.faults.len() {
        let rule: FaultRule = st.faults[i].clone();
        if !glob_match(&rule.path, path)
            || rule.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(method.as_str()))
        {
            continue;
        }
        let roll: f64 = st.rng.random();
        let fault = if roll < rule.drop_rate {
            Fault::Drop
        } else if roll < rule.drop_rate + rule.malformed_rate {
            Fault::Malformed
        } else if roll < rule.drop_rate + rule.malformed_rate + rule.error_rate {
            Fault::Error(rule.error_status.unwrap_or(500))
        } else {
            Fault::None
        };
        chosen = (fault, rule.latency_ms);
        if let Some(times) = rule.times {
            if times <= 1 {
                retire = Some(i);
            } else {
                st.faults[i].times = Some(times - 1);
            }
        }
        break;
    }
    if let Some(i) = retire {
        st.faults.remove(i);
    }
    chosen
}

// ---------------------------------------------------------------- helpers

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
    let page_param = q.get("page").map(|p| p.parse::<usize>());
    let per_param = q.get("per").map(|p| p.parse::<usize>());
    if !force && page_param.is_none() && per_param.is_none() {
        return Ok(Json(Value::Array(items)).into_response());
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
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per).take(per).collect();
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

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

// ---------------------------------------------------------------- /v1 handlers

async fn token_info(AxState(sim): AxState<Shared>, Extension(ctx): Extension<AuthCtx>) -> Response {
    let st = sim.state();
    match &ctx.company {
        Some(c) => {
            let admin = st.companies.iter().find(|x| &x.uuid == c).map(|x| x.admin_uuid.clone());
            Json(json!({
                "scope": "companies:read departments:read employees:read employments:read jobs:read public",
                "resource": {"type": "Company", "uuid": c},
                "resource_owner": {"type": "CompanyAdmin", "uuid": admin},
            }))
            .into_response()
        }
        None => Json(json!({
            "scope": "events:read webhook_subscriptions:read webhook_subscriptions:write public",
            "resource": {"type": "Oauth::Application", "uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, sim.cfg.client_id.as_bytes()).to_string()},
            "resource_owner": null,
        }))
        .into_response(),
    }
}

async fn get_employee(
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

async fn list_employees(
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
    let items: Vec<Value> = c
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
        .map(|e| st.employee_json(e))
        .collect();
    match paginate(items, &q, true) {
        Ok(r) | Err(r) => r,
    }
}

async fn list_locations(
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
    let items = c.locations.iter().filter_map(|l| st.locations.get(l)).map(Location::to_json).collect();
    match paginate(items, &q, false) {
        Ok(r) | Err(r) => r,
    }
}

async fn get_location(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    let st = sim.state();
    let Some(l) = st.locations.get(&id) else {
        return not_found();
    };
    tri!(company_ok(&ctx, &l.company_uuid));
    Json(l.to_json()).into_response()
}

async fn put_location(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = tri!(json_body(&body));
    let mut st = sim.state();
    let Some(l) = st.locations.get(&id).cloned() else {
        return not_found();
    };
    tri!(company_ok(&ctx, &l.company_uuid));
    let Some(version) = body.get("version").and_then(Value::as_str) else {
        return errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            "version",
            "invalid_attribute_value",
            "Version is required",
        );
    };
    if version != l.version() {
        return conflict();
    }
    let mut next = l.clone();
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    if let Some(v) = s("street_1") {
        next.street_1 = v;
    }
    if body.contains_key("street_2") {
        next.street_2 = s("street_2");
    }
    if let Some(v) = s("city") {
        next.city = v;
    }
    if let Some(v) = s("state") {
        next.state = v;
    }
    if let Some(v) = s("zip") {
        next.zip = v;
    }
    if let Some(v) = s("country") {
        next.country = v;
    }
    if let Some(v) = s("phone_number") {
        next.phone_number = v;
    }
    if let Some(v) = body.get("mailing_address").and_then(Value::as_bool) {
        next.mailing_address = v;
    }
    if let Some(v) = body.get("filing_address").and_then(Value::as_bool) {
        next.filing_address = v;
    }
    if next.version() != l.version() {
        next.updated_at = st.now().format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string();
        st.locations.insert(id.clone(), next.clone());
        st.emit(&l.company_uuid, "location.updated", "Location", &id);
    }
    Json(next.to_json()).into_response()
}

async fn put_employee(
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
    let Some(version) = body.get("version").and_then(Value::as_str) else {
        return errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            "version",
            "invalid_attribute_value",
            "Version is required",
        );
    };
    if version != e.version() {
        return conflict();
    }
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

async fn list_departments(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(company): Path<String>,
) -> Response {
    tri!(company_ok(&ctx, &company));
    let st = sim.state();
    let Some(c) = st.companies.iter().find(|c| c.uuid == company) else {
        return not_found();
    };
    let items: Vec<Value> =
        c.departments.iter().filter_map(|d| st.departments.get(d)).map(|d| st.department_json(d)).collect();
    Json(items).into_response()
}

async fn get_department(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    let st = sim.state();
    let Some(d) = st.departments.get(&id) else {
        return not_found();
    };
    tri!(company_ok(&ctx, &d.company_uuid));
    Json(st.department_json(d)).into_response()
}

async fn list_work_addresses(
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

async fn list_terminations(
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

async fn list_events(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    tri!(system_only(&ctx));
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 25,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        _ => {
            return errors(
                StatusCode::UNPROCESSABLE_ENTITY,
                "limit",
                "invalid_parameter",
                "limit must be between 1 and 100",
            )
        }
    };
    let desc = match q.get("sort_order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return errors(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sort_order",
                "invalid_parameter",
                "sort_order must be asc or desc",
            )
        }
    };
    let st = sim.state();
    let since = st.now().timestamp() - 30 * 24 * 3600;
    let mut events: Vec<&Event> = st
        .events
        .iter()
        .filter(|e| e.timestamp >= since)
        .filter(|e| q.get("resource_uuid").is_none_or(|r| &e.resource_uuid == r))
        .filter(|e| q.get("event_type").is_none_or(|t| glob_match(t, &e.event_type)))
        .collect();
    // Stable sort keeps emission order for equal timestamps.
    events.sort_by_key(|e| e.timestamp);
    if desc {
        events.reverse();
    }
    if let Some(after) = q.get("starting_after_uuid") {
        match events.iter().position(|e| &e.uuid == after) {
            Some(pos) => events = events.split_off(pos + 1),
            None => events.clear(),
        }
    }
    events.truncate(limit);
    Json(events).into_response()
}

const SUBSCRIPTION_TYPES: &[&str] = &[
    "BankAccount",
    "Company",
    "CompanyBenefit",
    "Contractor",
    "ContractorPayment",
    "Employee",
    "EmployeeBenefit",
    "EmployeeJobCompensation",
    "ExternalPayroll",
    "Form",
    "Location",
    "Notification",
    "Payroll",
    "PayrollSync",
    "PaySchedule",
    "PeopleBatch",
    "Signatory",
];

fn parse_types(body: &serde_json::Map<String, Value>) -> Result<Vec<String>, Response> {
    let invalid = |m: &str| {
        errors(StatusCode::UNPROCESSABLE_ENTITY, "subscription_types", "invalid_attribute_value", m)
    };
    let Some(Value::Array(items)) = body.get("subscription_types") else {
        return Err(invalid("subscription_types is required"));
    };
    let mut out = Vec::new();
    for i in items {
        match i.as_str() {
            Some(t) if SUBSCRIPTION_TYPES.contains(&t) => out.push(t.to_owned()),
            _ => return Err(invalid("subscription_types contains an unknown type")),
        }
    }
    Ok(out)
}

async fn create_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> Response {
    tri!(system_only(&ctx));
    let body = tri!(json_body(&body));
    let Some(url) = body.get("url").and_then(Value::as_str).map(str::to_owned) else {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "url", "invalid_attribute_value", "url is required");
    };
    let types = tri!(parse_types(&body));
    let sub = {
        let mut st = sim.state();
        let sub = Subscription {
            uuid: new_uuid(&mut st),
            url: url.clone(),
            status: "pending".into(),
            subscription_types: types,
            verification_token: new_uuid(&mut st),
        };
        st.subscriptions.push(sub.clone());
        sub
    };
    tokio::spawn(crate::webhooks::send_verification_token(
        sim.clone(),
        sub.uuid.clone(),
        url,
        sub.verification_token.clone(),
    ));
    (StatusCode::CREATED, Json(sub.to_json())).into_response()
}

async fn list_subscriptions(AxState(sim): AxState<Shared>, Extension(ctx): Extension<AuthCtx>) -> Response {
    tri!(system_only(&ctx));
    let st = sim.state();
    Json(
        st.subscriptions
            .iter()
            .filter(|s| s.status != "removed")
            .map(Subscription::to_json)
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn get_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    tri!(system_only(&ctx));
    let st = sim.state();
    match st.subscriptions.iter().find(|s| s.uuid == id && s.status != "removed") {
        Some(s) => Json(s.to_json()).into_response(),
        None => not_found(),
    }
}

async fn update_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    tri!(system_only(&ctx));
    let body = tri!(json_body(&body));
    let types = tri!(parse_types(&body));
    let mut st = sim.state();
    match st.subscriptions.iter_mut().find(|s| s.uuid == id && s.status != "removed") {
        Some(s) => {
            s.subscription_types = types;
            Json(s.to_json()).into_response()
        }
        None => not_found(),
    }
}

async fn delete_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    tri!(system_only(&ctx));
    let mut st = sim.state();
    match st.subscriptions.iter_mut().find(|s| s.uuid == id && s.status != "removed") {
        Some(s) => {
            s.status = "removed".into();
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(),
    }
}

async fn verify_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    tri!(system_only(&ctx));
    let body = tri!(json_body(&body));
    let given = body.get("verification_token").and_then(Value::as_str).unwrap_or("");
    let mut st = sim.state();
    let Some(s) = st.subscriptions.iter_mut().find(|s| s.uuid == id && s.status != "removed") else {
        return not_found();
    };
    if s.verification_token != given {
        return errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            "base",
            "invalid_attribute_value",
            "Invalid verification token",
        );
    }
    s.status = "verified".into();
    Json(s.to_json()).into_response()
}

async fn request_verification_token(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    tri!(system_only(&ctx));
    let found = {
        let st = sim.state();
        st.subscriptions
            .iter()
            .find(|s| s.uuid == id && s.status != "removed")
            .map(|s| (s.url.clone(), s.verification_token.clone()))
    };
    let Some((url, token)) = found else {
        return not_found();
    };
    tokio::spawn(crate::webhooks::send_verification_token(sim.clone(), id, url, token));
    Json(json!({"message": "Success! The subscriber will be notified with the verification token"}))
        .into_response()
}

// ---------------------------------------------------------------- OAuth

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenRequest {
    client_id: String,
    client_secret: String,
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    refresh_token: Option<String>,
    token: Option<String>,
}

fn parse_token_request(headers: &HeaderMap, body: &Bytes) -> Option<TokenRequest> {
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        serde_urlencoded_like(body)
    } else {
        serde_json::from_slice(body).ok()
    }
}

fn serde_urlencoded_like(body: &Bytes) -> Option<TokenRequest> {
    let map: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    serde_json::from_value(serde_json::to_value(map).ok()?).ok()
}

fn issue(
    st: &mut State,
    grant_id: &str,
    ttl: Duration,
    with_refresh: bool,
    previous_refresh: Option<String>,
) -> Value {
    let access = random_token(st);
    let refresh = with_refresh.then(|| random_token(st));
    let now = st.now();
    st.access_tokens.insert(
        access.clone(),
        AccessToken {
            grant_id: grant_id.to_owned(),
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
            revoked: false,
            previous_refresh,
            used: false,
            refresh_token: refresh.clone(),
        },
    );
    if let Some(r) = &refresh {
        st.refresh_tokens.insert(
            r.clone(),
            RefreshToken { grant_id: grant_id.to_owned(), revoked: false, access_token: access.clone() },
        );
    }
    let mut body = json!({
        "access_token": access, "token_type": "Bearer", "expires_in": ttl.as_secs().max(1),
        "created_at": now.timestamp(), "refresh_token": refresh,
    });
    if with_refresh {
        body["scope"] = json!("companies:read departments:read employees:read employees:write employments:read jobs:read public");
    }
    body
}

async fn token(
    AxState(sim): AxState<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let served = tri!(crate::versions::check(&sim, &headers));
    // "The client_secret cannot be passed via API request URLs … will result in a 400" (§3).
    if query.contains_key("client_secret") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The client_secret cannot be passed via API request URLs.",
        );
    }
    let Some(req) = parse_token_request(&headers, &body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing a required parameter.",
        );
    };
    if req.client_id != sim.cfg.client_id || req.client_secret != sim.cfg.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", INVALID_CLIENT);
    }
    let ttl = sim.cfg.access_token_ttl;
    let mut st = sim.state();
    let body = match req.grant_type.as_str() {
        "authorization_code" => {
            let Some(code) = req.code.and_then(|c| st.codes.remove(&c)) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT);
            };
            if code.expires_at <= st.now()
                || req.redirect_uri.as_deref().is_some_and(|r| r != code.redirect_uri)
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT);
            }
            // Grant ids sort by creation so `grant_for_company` finds the latest.
            let grant_id = format!("grant-{:06}-{}", st.grants.len() + 1, &new_uuid(&mut st)[..8]);
            st.grants.insert(
                grant_id.clone(),
                Grant { id: grant_id.clone(), company_uuid: Some(code.company_uuid.clone()), revoked: false },
            );
            // The OAuth connection is established: `company.provisioned` (§1.4).
            st.emit(&code.company_uuid, "company.provisioned", "Company", &code.company_uuid);
            issue(&mut st, &grant_id, ttl, true, None)
        }
        "refresh_token" => {
            let Some(rt) = req.refresh_token else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The request is missing a required parameter.",
                );
            };
            let Some(record) = st.refresh_tokens.get(&rt).cloned() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT);
            };
            let grant_ok = st.grants.get(&record.grant_id).is_some_and(|g| !g.revoked);
            if record.revoked || !grant_ok {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", INVALID_GRANT);
            }
            *st.refresh_counts.entry(record.grant_id.clone()).or_default() += 1;
            issue(&mut st, &record.grant_id, ttl, true, Some(rt))
        }
        "system_access" => {
            st.grants.entry("system".into()).or_insert(Grant {
                id: "system".into(),
                company_uuid: None,
                revoked: false,
            });
            issue(&mut st, "system", ttl, false, None)
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            )
        }
    };
    let mut r = Json(body).into_response();
    served.decorate(r.headers_mut());
    r
}

async fn revoke(AxState(sim): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let served = tri!(crate::versions::check(&sim, &headers));
    let Some(req) = parse_token_request(&headers, &body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing a required parameter.",
        );
    };
    if req.client_id != sim.cfg.client_id || req.client_secret != sim.cfg.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", INVALID_CLIENT);
    }
    let token = req.token.unwrap_or_default();
    let mut st = sim.state();
    // Revoking either half revokes the pair (one Doorkeeper record).
    let pair = if let Some(a) = st.access_tokens.get(&token) {
        Some((token.clone(), a.refresh_token.clone()))
    } else {
        st.refresh_tokens.get(&token).map(|r| (r.access_token.clone(), Some(token.clone())))
    };
    if let Some((access, refresh)) = pair {
        if let Some(a) = st.access_tokens.get_mut(&access) {
            a.revoked = true;
        }
        if let Some(r) = refresh.and_then(|r| st.refresh_tokens.get_mut(&r)) {
            r.revoked = true;
        }
    }
    // RFC 7009: 200 even for unknown tokens.
    let mut r = Json(json!({})).into_response();
    served.decorate(r.headers_mut());
    r
}

// ---------------------------------------------------------------- /admin

fn admin_result(r: Result<Value, SimError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(SimError::NotFound(m)) => (StatusCode::NOT_FOUND, Json(json!({"error": m}))).into_response(),
        Err(SimError::Invalid(m)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": m}))).into_response()
        }
    }
}

async fn admin_state(AxState(sim): AxState<Shared>) -> Response {
    Json(sim.state_json()).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SeedBody {
    name: Option<String>,
    employees: Option<usize>,
}

async fn admin_seed(AxState(sim): AxState<Shared>, Json(b): Json<SeedBody>) -> Response {
    let info =
        sim.seed_named_company(b.name.as_deref().unwrap_or("Nordlys Consulting"), b.employees.unwrap_or(25));
    (StatusCode::CREATED, Json(json!(info))).into_response()
}

async fn admin_hire(
    AxState(sim): AxState<Shared>,
    Path(company): Path<String>,
    Json(b): Json<HireRequest>,
) -> Response {
    admin_result(sim.hire(&company, b).map(|id| json!({"employee_uuid": id})))
}

async fn admin_update_employee(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<EmployeePatch>,
) -> Response {
    admin_result(sim.update_employee(&id, b).map(|()| json!({"ok": true})))
}

async fn admin_onboard(AxState(sim): AxState<Shared>, Path(id): Path<String>) -> Response {
    admin_result(sim.onboard(&id).map(|()| json!({"ok": true})))
}

#[derive(Deserialize)]
struct TitleBody {
    title: String,
}

async fn admin_title(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<TitleBody>,
) -> Response {
    admin_result(sim.change_title(&id, &b.title).map(|()| json!({"ok": true})))
}

#[derive(Deserialize)]
struct DepartmentBody {
    department_uuid: String,
}

async fn admin_department(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<DepartmentBody>,
) -> Response {
    admin_result(sim.change_department(&id, &b.department_uuid).map(|()| json!({"ok": true})))
}

#[derive(Deserialize)]
struct TransferBody {
    location_uuid: String,
    #[serde(default)]
    effective_date: Option<NaiveDate>,
}

async fn admin_transfer(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<TransferBody>,
) -> Response {
    admin_result(sim.transfer(&id, &b.location_uuid, b.effective_date).map(|()| json!({"ok": true})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DateBody {
    effective_date: Option<NaiveDate>,
}

async fn admin_terminate(AxState(sim): AxState<Shared>, Path(id): Path<String>, body: Bytes) -> Response {
    let b: DateBody = serde_json::from_slice(&body).unwrap_or_default();
    admin_result(sim.terminate(&id, b.effective_date).map(|()| json!({"ok": true})))
}

async fn admin_rehire(AxState(sim): AxState<Shared>, Path(id): Path<String>, body: Bytes) -> Response {
    let b: DateBody = serde_json::from_slice(&body).unwrap_or_default();
    admin_result(sim.rehire(&id, b.effective_date).map(|()| json!({"ok": true})))
}

async fn admin_location(
    AxState(sim): AxState<Shared>,
    Path(id): Path<String>,
    Json(b): Json<LocationPatch>,
) -> Response {
    admin_result(sim.edit_location(&id, b).map(|()| json!({"ok": true})))
}

#[derive(Deserialize)]
struct CountBody {
    count: u32,
}

async fn admin_drop_next(AxState(sim): AxState<Shared>, Json(b): Json<CountBody>) -> Response {
    sim.drop_next_webhooks(b.count);
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BehaviourBody {
    duplicate_rate: f64,
    reorder_max_delay_ms: u64,
    /// Left as it is when absent.
    lost_ack_rate: Option<f64>,
}

async fn admin_webhook_behaviour(AxState(sim): AxState<Shared>, Json(b): Json<BehaviourBody>) -> Response {
    sim.set_webhook_behaviour(b.duplicate_rate, Duration::from_millis(b.reorder_max_delay_ms));
    if let Some(rate) = b.lost_ack_rate {
        sim.set_lost_ack_rate(rate);
    }
    Json(json!({"ok": true})).into_response()
}

async fn admin_revoke_grant(AxState(sim): AxState<Shared>, Path(grant): Path<String>) -> Response {
    admin_result(sim.revoke_grant(&grant).map(|()| json!({"ok": true})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExpireBody {
    grant_id: Option<String>,
}

async fn admin_expire_tokens(AxState(sim): AxState<Shared>, body: Bytes) -> Response {
    let b: ExpireBody = serde_json::from_slice(&body).unwrap_or_default();
    sim.expire_tokens(b.grant_id.as_deref());
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct AdvanceBody {
    seconds: u64,
}

async fn admin_advance_clock(AxState(sim): AxState<Shared>, Json(b): Json<AdvanceBody>) -> Response {
    sim.advance_clock(Duration::from_secs(b.seconds));
    Json(json!({"ok": true, "now": sim.state().now().to_rfc3339()})).into_response()
}

async fn admin_set_faults(AxState(sim): AxState<Shared>, Json(rules): Json<Vec<FaultRule>>) -> Response {
    sim.set_faults(rules);
    Json(json!({"ok": true})).into_response()
}

async fn admin_clear_faults(AxState(sim): AxState<Shared>) -> Response {
    sim.clear_faults();
    Json(json!({"ok": true})).into_response()
}

async fn admin_stats(AxState(sim): AxState<Shared>, Path(grant): Path<String>) -> Response {
    Json(json!({
        "grant_id": grant,
        "requests": sim.request_count(&grant),
        "max_requests_in_any_window": sim.max_requests_in_any_window(&grant),
        "refreshes": sim.refresh_count(&grant),
        "rate_limited": sim.rate_limited_count(&grant),
    }))
    .into_response()
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
