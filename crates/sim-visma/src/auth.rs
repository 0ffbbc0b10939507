//! Visma Connect: the client-credentials token endpoint.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use crate::config::ALL_SCOPES;
use crate::state::{Shared, TokenInfo};

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    tenant_id: Option<String>,
    scope: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({ "error": error, "error_description": description }))).into_response()
}

/// `POST /connect/token`.
///
/// Like Visma Connect, a token is issued for any tenant id the client names; whether the tenant
/// is a usable company is only checked when the token is used (401 then).
pub async fn token(State(sim): State<Shared>, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        );
    }
    let (Some(client_id), Some(secret)) = (form.client_id, form.client_secret) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "");
    };
    let mut st = sim.lock();
    let Some(client) = st.config.clients.iter().find(|c| c.client_id == client_id).cloned() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "");
    };
    if client.client_secret != secret {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "");
    }
    let Some(tenant_id) = form.tenant_id.filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "tenant_id is required for tenant-based APIs",
        );
    };
    let requested: Vec<String> =
        form.scope.unwrap_or_default().split_whitespace().map(str::to_string).collect();
    if requested.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "no scope requested");
    }
    if let Some(bad) = requested.iter().find(|s| !client.allowed_scopes.contains(s)) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("scope {bad} is not allowed for this client"),
        );
    }
    let ttl = st.config.token_ttl;
    let access_token = format!("sim.{}", uuid::Uuid::new_v4().simple());
    let expires_at = st.now() + ttl;
    st.tokens.insert(
        access_token.clone(),
        TokenInfo { client_id, tenant_id, scopes: requested.clone(), expires_at },
    );
    st.tokens_issued += 1;
    axum::Json(json!({
        "access_token": access_token,
        "expires_in": ttl.as_secs().max(1),
        "token_type": "Bearer",
        "scope": requested.join(" "),
    }))
    .into_response()
}

/// Scope needed for an HTTP method.
pub fn scope_for(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::POST => ALL_SCOPES[1],
        axum::http::Method::PUT | axum::http::Method::PATCH => ALL_SCOPES[2],
        axum::http::Method::DELETE => ALL_SCOPES[3],
        _ => ALL_SCOPES[0],
    }
}

/// Whole seconds, rounded up, so a `Retry-After` never undershoots.
pub fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 {
        s + 1
    } else {
        s
    }
}
