//! Gusto's consent screen: `GET /oauth/authorize` shows a page where the company admin
//! picks the company and presses Allow (or Deny); the form posts back to
//! `POST /oauth/authorize`, which issues a code and redirects the browser to
//! `redirect_uri?code=..&state=..` (or `?error=access_denied&state=..`), as Gusto does.
//!
//! Tests approve without a browser through `POST /admin/oauth/approve` (the same decision,
//! answered as JSON with the redirect location), and ask `GET /admin/oauth/codes` how many
//! issued codes are still unredeemed (to prove a refused connect did not burn one).

// Handlers return `Response` early on error; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::Sim;

type Shared = Arc<Sim>;

pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/oauth/authorize", get(consent_page).post(decide))
        .route("/admin/oauth/approve", post(admin_approve))
        .route("/admin/oauth/codes", get(admin_codes))
}

impl Sim {
    /// Authorisation codes issued and not yet exchanged (expired ones included).
    pub fn outstanding_codes(&self) -> usize {
        self.state().codes.len()
    }
}

/// The authorize request's parameters, as the query string or the consent form holds them.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct AuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    response_type: String,
    state: Option<String>,
    /// Chosen on the page; the sim's stand-in for "the company this admin administers".
    company_uuid: Option<String>,
    /// `allow` or `deny` (the button pressed).
    decision: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": description}))).into_response()
}

/// The checks Gusto makes before showing the page: an error here is shown to the admin,
/// never redirected (the redirect URI itself may be the problem).
fn validate(sim: &Sim, q: &AuthorizeRequest) -> Result<url::Url, Response> {
    if q.client_id != sim.cfg.client_id {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.",
        ));
    }
    if q.response_type != "code" {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "The authorization server does not support this response type.",
        ));
    }
    url::Url::parse(&q.redirect_uri).map_err(|_| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "The requested redirect uri is malformed or doesn't match client redirect URI.",
        )
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn consent_page(AxState(sim): AxState<Shared>, Query(q): Query<AuthorizeRequest>) -> Response {
    if let Err(r) = validate(&sim, &q) {
        return r;
    }
    let companies: Vec<(String, String)> =
        sim.state().companies.iter().map(|c| (c.uuid.clone(), c.name.clone())).collect();
    if companies.is_empty() {
        return (StatusCode::NOT_FOUND, "no company in the simulator: seed one first").into_response();
    }
    let options: String = companies
        .iter()
        .map(|(uuid, name)| {
            let selected = if q.company_uuid.as_deref() == Some(uuid) { " selected" } else { "" };
            format!(
                "<option value=\"{}\"{selected}>{} ({})</option>",
                escape(uuid),
                escape(name),
                escape(uuid)
            )
        })
        .collect();
    let hidden = |name: &str, value: &str| {
        format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value))
    };
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize application</title></head>\
         <body><h1>Authorize ml-connector</h1>\
         <p>The application <b>{client}</b> asks to read and update your company's employees, \
         departments and locations. You will be sent back to <code>{redirect}</code>.</p>\
         <form method=\"post\" action=\"/oauth/authorize\">{h1}{h2}{h3}{h4}\
         <label>Company <select name=\"company_uuid\">{options}</select></label>\
         <p><button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></p>\
         </form></body></html>",
        client = escape(&q.client_id),
        redirect = escape(&q.redirect_uri),
        h1 = hidden("client_id", &q.client_id),
        h2 = hidden("redirect_uri", &q.redirect_uri),
        h3 = hidden("response_type", &q.response_type),
        h4 = hidden("state", q.state.as_deref().unwrap_or("")),
    );
    Html(page).into_response()
}

/// The redirect the admin's decision leads to.
fn decision_location(sim: &Sim, q: &AuthorizeRequest) -> Result<url::Url, Response> {
    let mut location = validate(sim, q)?;
    let state = q.state.clone().filter(|s| !s.is_empty());
    if q.decision.as_deref() != Some("allow") {
        location.query_pairs_mut().append_pair("error", "access_denied").append_pair(
            "error_description",
            "The resource owner or authorization server denied the request.",
        );
    } else {
        let company = q
            .company_uuid
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| sim.state().companies.first().map(|c| c.uuid.clone()));
        let Some(company) = company else {
            return Err((StatusCode::NOT_FOUND, "no such company").into_response());
        };
        let code = sim
            .issue_code(&company, &q.redirect_uri)
            .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()).into_response())?;
        location.query_pairs_mut().append_pair("code", &code);
    }
    if let Some(state) = state {
        location.query_pairs_mut().append_pair("state", &state);
    }
    Ok(location)
}

async fn decide(AxState(sim): AxState<Shared>, Form(q): Form<AuthorizeRequest>) -> Response {
    let location = match decision_location(&sim, &q) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location.as_str()) {
        r.headers_mut().insert("Location", v);
    }
    r
}

#[derive(Deserialize)]
struct ApproveBody {
    /// The authorize URL exactly as the connector printed it.
    authorize_url: String,
    company_uuid: Option<String>,
    /// Default true; false presses Deny.
    #[serde(default)]
    deny: bool,
}

/// Presses Allow (or Deny) on the consent page for a test: answers the redirect location
/// instead of redirecting, so the test decides when the "browser" follows it.
async fn admin_approve(AxState(sim): AxState<Shared>, Json(b): Json<ApproveBody>) -> Response {
    let Ok(url) = url::Url::parse(&b.authorize_url) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "authorize_url is not a URL"})))
            .into_response();
    };
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let q = AuthorizeRequest {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        response_type: get("response_type"),
        state: params.get("state").cloned(),
        company_uuid: b.company_uuid.or_else(|| params.get("company_uuid").cloned()),
        decision: Some(if b.deny { "deny" } else { "allow" }.into()),
    };
    match decision_location(&sim, &q) {
        Ok(l) => Json(json!({"location": l.as_str()})).into_response(),
        Err(r) => r,
    }
}

async fn admin_codes(AxState(sim): AxState<Shared>) -> Response {
    Json(json!({"outstanding": sim.outstanding_codes()})).into_response()
}
