//! Errors of the Gusto client, classified for retry decisions.

use std::time::Duration;

use serde::Deserialize;

use crate::grant::GrantId;

/// One entry of Gusto's `{"errors":[...]}` body.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ApiErrorDetail {
    #[serde(default)]
    pub error_key: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// What kind of malformed answer was received. Only the kind and position are
/// kept: serde's messages may quote values from the body, which could be secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedKind {
    /// Not JSON at all (e.g. an HTML page from a proxy).
    Syntax,
    /// The body ended early (truncated transfer).
    Eof,
    /// Valid JSON of an unexpected shape.
    Data,
}

/// Everything that can go wrong talking to Gusto.
#[derive(Debug, thiserror::Error)]
pub enum GustoError {
    /// The grant's refresh token is dead (revoked, or rotated and lost). A person must
    /// re-authorise the app for this company; work for it should be parked, not retried.
    #[error("grant {grant} needs re-authorisation: {reason}")]
    NeedsReauth { grant: GrantId, reason: String },
    /// No stored grant with this id.
    #[error("unknown grant {0}")]
    UnknownGrant(GrantId),
    /// 401 even after one forced refresh. Transient: the refresh itself succeeded (a dead
    /// grant is `NeedsReauth`), so the fresh token was refused by a moment (expired or
    /// revoked between the refresh and the call, Gusto's clock ahead of ours); the next try
    /// refreshes again.
    #[error("unauthorized (401) for grant {grant}")]
    Unauthorized { grant: GrantId },
    /// 429 after the bounded number of waits.
    #[error("rate limited (429); retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    /// 409 `invalid_resource_version` after the bounded number of re-applies.
    #[error("version conflict (409) persisted after {attempts} attempts")]
    Conflict { attempts: u32 },
    /// 404.
    #[error("not found: {path}")]
    NotFound { path: String },
    /// Any other 4xx with Gusto's error body.
    #[error("gusto answered {status}: {}", summarize(.errors))]
    Api { status: u16, errors: Vec<ApiErrorDetail> },
    /// 5xx after the bounded retries.
    #[error("gusto server error {status}")]
    Server { status: u16 },
    /// The OAuth server refused a request with a Doorkeeper error (other than invalid_grant).
    #[error("oauth error {error} ({status})")]
    OAuth { status: u16, error: String },
    /// Connection failure or timeout.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The answer could not be decoded.
    #[error("malformed response from {path}: {kind:?} at line {line} column {column}")]
    Malformed { path: String, kind: MalformedKind, line: usize, column: usize },
    /// The token store failed.
    #[error("token store: {0}")]
    Store(#[from] crate::grant::StoreError),
    /// Refresh did not converge (another holder kept the lease); bounded, never spins.
    #[error("refresh of grant {grant} did not converge")]
    RefreshContention { grant: GrantId },
    /// The OAuth server did not answer a refresh within the refresh lease's bound; the
    /// lease is given back and the refresh is tried again (the old refresh token stays
    /// valid until a new access token is used).
    #[error("refresh of grant {grant} got no answer within {secs} s")]
    RefreshTimedOut { grant: GrantId, secs: u64 },
    /// 406 `invalid_api_version`: Gusto refuses the configured `X-Gusto-API-Version`
    /// (retired, in the future or malformed). A configuration error, never retried.
    #[error(
        "Gusto refused API version {version} (406 invalid_api_version: {message}); {}",
        crate::version::version_hint(version)
    )]
    InvalidApiVersion { version: String, message: String },
    /// Invalid configuration (e.g. unparsable base URL).
    #[error("configuration: {0}")]
    Config(String),
}

fn summarize(errors: &[ApiErrorDetail]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "{}/{}: {}",
                e.error_key.as_deref().unwrap_or("-"),
                e.category.as_deref().unwrap_or("-"),
                e.message.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl GustoError {
    /// Whether retrying the same operation later may succeed without human action.
    ///
    /// `NeedsReauth`, `Api` (4xx), `NotFound`, `Config` and data-shape `Malformed`
    /// are permanent (a 401 after a successful refresh is not); a syntactically broken or truncated body is treated as a
    /// transient upstream glitch.
    pub fn is_transient(&self) -> bool {
        match self {
            GustoError::RateLimited { .. }
            | GustoError::Server { .. }
            | GustoError::Transport(_)
            | GustoError::Conflict { .. }
            | GustoError::RefreshContention { .. }
            | GustoError::RefreshTimedOut { .. }
            | GustoError::Unauthorized { .. }
            | GustoError::Store(_) => true,
            GustoError::Malformed { kind, .. } => *kind != MalformedKind::Data,
            GustoError::NeedsReauth { .. }
            | GustoError::UnknownGrant(_)
            | GustoError::NotFound { .. }
            | GustoError::Api { .. }
            | GustoError::OAuth { .. }
            | GustoError::InvalidApiVersion { .. }
            | GustoError::Config(_) => false,
        }
    }

    pub(crate) fn malformed(path: &str, e: &serde_json::Error) -> Self {
        let kind = match e.classify() {
            serde_json::error::Category::Eof => MalformedKind::Eof,
            serde_json::error::Category::Data => MalformedKind::Data,
            _ => MalformedKind::Syntax,
        };
        GustoError::Malformed { path: path.to_owned(), kind, line: e.line(), column: e.column() }
    }
}
