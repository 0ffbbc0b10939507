//! `GET /oauth/callback?code&state`: where Gusto's consent screen sends the admin's
//! browser. The gateway holds no store and no key, so it does not exchange the code: it
//! relays `code` (or Gusto's `error`) by NATS request to `<p>.oauth.callback.<state>`,
//! where the `mlc company connect` that printed the authorize URL is waiting, and shows
//! its answer ("connected: Acme AS (uuid)" or the reason) as a small page.
//!
//! `state` is the whole capability: random, single use (the waiting CLI takes the first
//! message and unsubscribes) and expiring (the CLI gives up after its timeout). A state
//! nobody waits for (forged, replayed, expired) has no responder: refused with 400.

use crate::Gateway;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use mlc_bus::Topology;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long the browser waits for the CLI to exchange the code and store the grant.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

/// The query Gusto's redirect carries.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// What the gateway relays to the waiting CLI (JSON).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CallbackRequest {
    pub code: Option<String>,
    /// Gusto's `error` (e.g. `access_denied` when the admin pressed Deny).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The CLI's answer, shown to the admin.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CallbackReply {
    pub ok: bool,
    /// "connected: Acme AS (uuid)" or the reason it failed.
    pub message: String,
}

/// `^[A-Za-z0-9_-]{16,128}$`: it becomes one subject token, so no dots, wildcards or spaces.
pub fn valid_state(state: &str) -> bool {
    (16..=128).contains(&state.len())
        && state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The subject the CLI waiting for `state` listens on.
pub fn callback_subject(topo: &Topology, state: &str) -> String {
    if topo.prefix().is_empty() {
        format!("oauth.callback.{state}")
    } else {
        format!("{}.oauth.callback.{state}", topo.prefix())
    }
}

pub(crate) async fn callback(State(gw): State<Arc<Gateway>>, Query(q): Query<CallbackQuery>) -> Response {
    let Some(state) = q.state.as_deref().filter(|s| valid_state(s)) else {
        tracing::warn!("oauth callback refused: missing or malformed state");
        return page(
            StatusCode::BAD_REQUEST,
            "refused",
            "This link has no valid state. Start again with `mlc company connect`.",
        );
    };
    if q.code.is_none() && q.error.is_none() {
        return page(
            StatusCode::BAD_REQUEST,
            "refused",
            "Gusto's redirect carried neither a code nor an error.",
        );
    }
    let body = CallbackRequest { code: q.code, error: q.error, error_description: q.error_description };
    let Ok(payload) = serde_json::to_vec(&body) else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, "error", "cannot encode the callback");
    };
    let client = gw.publisher.context().client();
    let request = async_nats::Request::new().payload(payload.into()).timeout(Some(RELAY_TIMEOUT));
    match client.send_request(callback_subject(&gw.topology, state), request).await {
        Ok(msg) => match serde_json::from_slice::<CallbackReply>(&msg.payload) {
            Ok(r) if r.ok => {
                tracing::info!("oauth callback relayed: connected");
                page(StatusCode::OK, "connected", &r.message)
            }
            Ok(r) => {
                tracing::info!("oauth callback relayed: connect failed");
                page(StatusCode::BAD_REQUEST, "not connected", &r.message)
            }
            Err(_) => page(StatusCode::BAD_GATEWAY, "error", "the connector answered something unreadable"),
        },
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            tracing::warn!("oauth callback refused: no connect waits for this state");
            page(
                StatusCode::BAD_REQUEST,
                "refused",
                "Unknown, expired or already used state: no `mlc company connect` is waiting for it. Start again.",
            )
        }
        Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => page(
            StatusCode::GATEWAY_TIMEOUT,
            "no answer",
            "The connector did not answer in time; see the output of `mlc company connect`.",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "oauth callback: cannot reach NATS");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The gateway cannot reach NATS; try the link again shortly.",
            )
        }
    }
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ml-connector: {t}</title></head>\
         <body><h1>ml-connector: {t}</h1><p>{m}</p></body></html>",
        t = esc(title),
        m = esc(message)
    );
    (status, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_must_be_one_safe_subject_token() {
        assert!(valid_state("abcdefghijklmnop"));
        assert!(valid_state(&"A_-9".repeat(32)));
        assert!(!valid_state("short"));
        assert!(!valid_state(&"a".repeat(129)));
        assert!(!valid_state("abcdefghijklmnop.>"));
        assert!(!valid_state("abcdefgh ijklmnop"));
        assert!(!valid_state("abcdefghijklmnop*"));
    }
}
