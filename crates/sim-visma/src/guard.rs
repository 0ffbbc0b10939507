//! The layer in front of every ERP route: token check, tenant check, scopes, the legacy
//! `ipp-company-id` rule, throttling (hourly window and "same failing request"), fault
//! injection, request counting and the `X-RateLimit-*` headers.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::{ceil_secs, scope_for};
use crate::config::TenantKind;
use crate::errors;
use crate::state::{FaultAction, Shared, Window};

/// Path prefix of the legacy (integration.visma.net) layout.
pub const LEGACY_PREFIX: &str = "/API/controller/api";

/// Who is calling; inserted as a request extension for the handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
}

struct RateInfo {
    limit: u32,
    remaining: u32,
    reset: Duration,
    policy: &'static str,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn set_rate_headers(resp: &mut Response, info: &RateInfo) {
    let h = resp.headers_mut();
    let mut put = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    put("x-ratelimit-limit", info.limit.to_string());
    put("x-ratelimit-remaining", info.remaining.to_string());
    put("x-ratelimit-reset", ceil_secs(info.reset).to_string());
    put("x-ratelimit-policy", info.policy.to_string());
}

fn too_many(text: String, retry_after: Duration) -> Response {
    let mut r = errors::gateway_message(StatusCode::TOO_MANY_REQUESTS, &text);
    if let Ok(v) = HeaderValue::from_str(&ceil_secs(retry_after).max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Route key used for counters and faults: `"PUT /v1/employee/{employeeCd}"`, the same for the
/// legacy layout.
pub fn route_key(method: &axum::http::Method, matched: &str) -> String {
    let path = matched.strip_prefix(LEGACY_PREFIX).unwrap_or(matched);
    format!("{method} {path}")
}

pub async fn api_guard(State(sim): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let legacy = matched.starts_with(LEGACY_PREFIX);
    let route = route_key(&method, &matched);
    let uri = req.uri().to_string();

    // The body is part of the "same request" fingerprint, so buffer it.
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 4 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return errors::plain(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
    };

    let decided = decide(&sim, &parts.headers, &method, legacy, &route, &uri, &bytes);
    let (caller, fingerprint, rate, fault, latency) = match decided {
        Ok(d) => d,
        Err((resp, rate)) => {
            let mut resp = *resp;
            if let Some(rate) = rate {
                set_rate_headers(&mut resp, &rate);
            }
            return resp;
        }
    };

    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut resp = match fault {
        FaultAction::Error(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            errors::plain(status, status.canonical_reason().unwrap_or("Server Error"))
        }
        FaultAction::Drop | FaultAction::Malformed => fault
            .answer("application/json; charset=utf-8", "{\"employeeNumber\": \"E")
            .expect("a drop and a malformed body have an answer"),
        FaultAction::Serve => {
            sim.lock().requests.entry(route.clone()).and_modify(|n| *n += 1).or_insert(1);
            let mut req = Request::from_parts(parts, Body::from(bytes));
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
    };

    let status = resp.status();
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        let mut st = sim.lock();
        let now = st.now();
        st.failures.entry(fingerprint).or_default().push_back(now);
    }
    set_rate_headers(&mut resp, &rate);
    resp
}

type Decision = (Caller, u64, RateInfo, FaultAction, Duration);
type Refusal = (Box<Response>, Option<RateInfo>);

/// Everything decided under the lock, before the handler runs.
fn decide(
    sim: &Shared,
    headers: &HeaderMap,
    method: &axum::http::Method,
    legacy: bool,
    route: &str,
    uri: &str,
    body: &Bytes,
) -> Result<Decision, Refusal> {
    let mut st = sim.lock();
    let now = st.now();
    let refuse = |r: Response| Err((Box::new(r), None));

    if legacy && !st.config.legacy_paths {
        return refuse(errors::plain(StatusCode::NOT_FOUND, "Not Found"));
    }
    let Some(token) = bearer(headers).and_then(|t| st.tokens.get(t)).cloned() else {
        return refuse(errors::gateway_message(
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid or missing token.",
        ));
    };
    if token.expires_at <= now {
        return refuse(errors::gateway_message(
            StatusCode::UNAUTHORIZED,
            "Access denied due to expired token.",
        ));
    }

    // Fixed window per (tenant, client); every authenticated call counts, refused or not.
    let window_len = st.config.rate_window;
    let limit = st.config.hourly_limit;
    let key = (token.tenant_id.clone(), token.client_id.clone());
    let w = st.windows.entry(key).or_insert(Window { start: now, count: 0 });
    if now >= w.start + window_len {
        *w = Window { start: now, count: 0 };
    }
    w.count = w.count.saturating_add(1);
    let reset = (w.start + window_len).saturating_duration_since(now);
    let rate = RateInfo {
        limit,
        remaining: limit.saturating_sub(w.count),
        reset,
        policy: if legacy { "6-fixed-window" } else { "4-fixed-window" },
    };
    if w.count > limit {
        return Err((
            Box::new(too_many(
                format!("Rate limit is exceeded. Try again in {} seconds.", ceil_secs(reset)),
                reset,
            )),
            Some(rate),
        ));
    }

    let refuse_rated = |r: Response, rate: RateInfo| Err((Box::new(r), Some(rate)));
    let tenant = st.tenants.get(&token.tenant_id);
    let company_id = match tenant {
        Some(t) if t.config.kind == TenantKind::Company => t.config.company_id,
        _ => {
            return refuse_rated(
                errors::ipp_exception(StatusCode::UNAUTHORIZED, "12027", "No license for this company."),
                rate,
            )
        }
    };
    let needed = scope_for(method);
    if !token.scopes.iter().any(|s| s == needed) {
        return refuse_rated(
            errors::gateway_message(
                StatusCode::FORBIDDEN,
                &format!("Insufficient scope: this operation requires {needed}."),
            ),
            rate,
        );
    }
    if legacy {
        let given = headers
            .get("ipp-company-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        if given != Some(company_id) {
            return refuse_rated(
                errors::ipp_exception(
                    StatusCode::BAD_REQUEST,
                    "12002",
                    "Invalid parameter exception: ipp-company-id",
                ),
                rate,
            );
        }
    }

    // Same failing request repeated: punished with 429 until the oldest failure ages out.
    // The precondition is part of the request: after a 412, Visma's ETag how-to has the
    // client re-read and send the PUT again with the new tag, and that documented recovery
    // is not the same failing request (the identical PUT with the same stale tag is).
    let mut hasher = DefaultHasher::new();
    (&token.tenant_id, &token.client_id, method.as_str(), uri).hash(&mut hasher);
    headers.get(header::IF_MATCH).map(|v| v.as_bytes()).hash(&mut hasher);
    body.hash(&mut hasher);
    let fingerprint = hasher.finish();
    if let Some(limit) = st.config.failing_request_limit {
        let window = st.config.failing_request_window;
        if let Some(times) = st.failures.get_mut(&fingerprint) {
            while times.front().is_some_and(|t| *t + window <= now) {
                times.pop_front();
            }
            if times.len() >= limit as usize {
                let retry =
                    times.front().map(|t| (*t + window).saturating_duration_since(now)).unwrap_or(window);
                return refuse_rated(
                    too_many(
                        format!(
                            "Same failing request made too many times. Retry after {} seconds.",
                            ceil_secs(retry)
                        ),
                        retry,
                    ),
                    rate,
                );
            }
        }
    }

    let (fault, latency) = st.fault_for(route);
    Ok((Caller { tenant_id: token.tenant_id }, fingerprint, rate, fault, latency))
}
