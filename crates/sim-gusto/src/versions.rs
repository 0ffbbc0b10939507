//! `X-Gusto-API-Version` as Gusto handles it on 2026-12-01 (reference "Versions and changes
//! after 2025-06-15", V.1, V.5, and §6.1):
//!
//! * no header: the app's minimum version ([`crate::SimConfig::min_api_version`]) is used;
//! * malformed, older than the minimum, or in the future: 406 with Gusto's error shape
//!   `{"errors":[{"error_key":"request","category":"invalid_api_version","message":…}]}`;
//! * the served version is echoed in `X-Gusto-API-Version`;
//! * a deprecated but still supported version is answered normally plus `Deprecation`
//!   (RFC 9745, `@<epoch seconds>` of the deprecation date) and `Sunset` (RFC 8594, HTTP
//!   date of the retirement). **\[inferred\]**: Gusto's versioning page has a "Deprecation
//!   headers" section whose text was not in the stored copy; these standard header names
//!   are our pick, not a confirmed Gusto fact.
//!
//! The same check runs on `/v1` and on `/oauth/token` and `/oauth/revoke` (whether Gusto
//! checks the version on its OAuth endpoints is not documented: **\[inferred\]**).

// Handlers return `Response` early on error, as in `http.rs`.
#![allow(clippy::result_large_err)]

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::NaiveDate;

use crate::Sim;

/// One released API version and its lifecycle (dates from reference V.1, App Integrations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersionInfo {
    pub version: NaiveDate,
    /// From this day on, answers carry `Deprecation` and `Sunset`.
    pub deprecated_on: Option<NaiveDate>,
    /// Retirement: the day after which the version is refused (informational here; the
    /// refusal itself follows [`crate::SimConfig::min_api_version`]).
    pub sunset: Option<NaiveDate>,
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("valid date literal")
}

/// The versions of reference V.1 that are still usable on 2026-12-01.
pub fn default_versions() -> Vec<ApiVersionInfo> {
    vec![
        ApiVersionInfo {
            version: d("2025-11-15"),
            deprecated_on: Some(d("2026-02-01")),
            sunset: Some(d("2027-02-01")),
        },
        ApiVersionInfo {
            version: d("2026-02-01"),
            deprecated_on: Some(d("2026-06-15")),
            sunset: Some(d("2027-06-15")),
        },
        ApiVersionInfo { version: d("2026-06-15"), deprecated_on: None, sunset: None },
    ]
}

/// The version a request is served with, and its deprecation headers.
pub(crate) struct Served {
    version: String,
    deprecation: Option<(String, String)>,
}

impl Served {
    /// Adds the echo and, for a deprecated version, `Deprecation` and `Sunset`.
    pub(crate) fn decorate(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.version) {
            headers.insert("X-Gusto-API-Version", v);
        }
        if let Some((dep, sunset)) = &self.deprecation {
            if let Ok(v) = HeaderValue::from_str(dep) {
                headers.insert("Deprecation", v);
            }
            if let Ok(v) = HeaderValue::from_str(sunset).map_err(|_| ()).and_then(|v| {
                if sunset.is_empty() {
                    Err(())
                } else {
                    Ok(v)
                }
            }) {
                headers.insert("Sunset", v);
            }
        }
    }
}

fn refuse(message: String) -> Response {
    let body = serde_json::json!({"errors": [{
        "error_key": "request", "category": "invalid_api_version", "message": message,
    }]});
    let mut r = Response::new(axum::body::Body::from(body.to_string()));
    *r.status_mut() = StatusCode::NOT_ACCEPTABLE;
    r.headers_mut().insert("Content-Type", HeaderValue::from_static("application/json"));
    r
}

fn parse(v: &str) -> Option<NaiveDate> {
    if v.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()
}

/// Checks a request's `X-Gusto-API-Version`; `Err` is the 406 to send.
pub(crate) fn check(sim: &Sim, headers: &HeaderMap) -> Result<Served, Response> {
    let served = check_inner(sim, headers);
    if served.is_err() {
        sim.state().version_refusals += 1;
    }
    served
}

fn check_inner(sim: &Sim, headers: &HeaderMap) -> Result<Served, Response> {
    let min = &sim.state().min_api_version.clone().unwrap_or_else(|| sim.cfg.min_api_version.clone());
    let raw = match headers.get("x-gusto-api-version") {
        None => {
            sim.state().unversioned_requests += 1;
            min.clone()
        }
        Some(v) => v.to_str().unwrap_or("").to_owned(),
    };
    let Some(date) = parse(&raw) else {
        return Err(refuse(format!("Invalid API Version `{raw}`. Expected format: YYYY-MM-DD")));
    };
    let today = sim.state().today();
    let min_date = parse(min).unwrap_or(date);
    if date < min_date || date > today {
        return Err(refuse(format!(
            "Invalid API Version `{raw}`. Version must be >= your application's minimum API version \
             `{min}` and not in the future."
        )));
    }
    // The release a date falls in is the newest one at or before it.
    let release = sim.cfg.api_versions.iter().filter(|v| v.version <= date).max_by_key(|v| v.version);
    let deprecation = release.and_then(|r| {
        let on = r.deprecated_on.filter(|on| *on <= today)?;
        let dep = format!("@{}", on.and_hms_opt(0, 0, 0)?.and_utc().timestamp());
        let sunset = r
            .sunset
            .and_then(|s| s.and_hms_opt(0, 0, 0))
            .map(|s| s.and_utc().format("%a, %d %b %Y %H:%M:%S GMT").to_string())
            .unwrap_or_default();
        Some((dep, sunset))
    });
    Ok(Served { version: raw, deprecation })
}
