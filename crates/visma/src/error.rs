//! Error classification.
//!
//! Visma answers errors in three body shapes (an `IPPException` object, `{"message": ...}`, or
//! plain text). [`VismaError`] keeps Visma's own text for the operator and sorts every failure
//! into *retryable* (throttling, 5xx, timeouts, broken connections) or *permanent* (validation,
//! not found, conflicts, auth). Retrying is the caller's decision; [`VismaError::is_retryable`]
//! and [`VismaError::retry_after`] are what it decides with.

use std::time::Duration;

use serde::Deserialize;

/// Everything that can go wrong talking to Visma.
#[derive(Debug, thiserror::Error)]
pub enum VismaError {
    /// 429: throttled (hourly window or "same failing request" rule).
    #[error("Visma throttled the request (429), retry after {retry_after:?}: {message}")]
    RateLimited { retry_after: Option<Duration>, message: String },
    /// 5xx.
    #[error("Visma server error ({status}): {message}")]
    Server { status: u16, message: String },
    #[error("request to Visma timed out")]
    Timeout,
    /// Connect failure or a connection dropped mid-answer.
    #[error("connection to Visma failed: {0}")]
    Connection(String),
    /// A 2xx whose body could not be read. The operation may or may not have been applied.
    #[error("unreadable answer from Visma: {0}")]
    Decode(String),
    /// 400: Visma refused the data. `fault_code` is set for IPPException bodies.
    #[error("Visma rejected the request (400): {message}")]
    Validation { message: String, fault_code: Option<String> },
    /// 400 on create because the employee number is taken: read the employee, then update it.
    #[error("employee {employee_cd} already exists in Visma: {message}")]
    DuplicateEmployee { employee_cd: String, message: String },
    /// 404.
    #[error("not found in Visma (404): {message}")]
    NotFound { message: String },
    /// 412: `If-Match` did not match; re-read and retry with the new ETag.
    #[error("Visma version conflict (412): {message}")]
    Conflict { message: String },
    /// 401/403 from the API: wrong tenant (customer vs company), missing scope, licence.
    #[error("Visma refused access ({status}): {message}")]
    Auth { status: u16, message: String },
    /// Visma Connect refused the token request (`invalid_client`, `invalid_scope`, ...).
    #[error("Visma Connect token request failed ({status}): {error}")]
    Token { status: u16, error: String },
    /// Any other status.
    #[error("unexpected answer from Visma ({status}): {message}")]
    Unexpected { status: u16, message: String },
    /// Bad configuration (e.g. an unparsable base URL).
    #[error("invalid Visma client configuration: {0}")]
    Config(String),
}

impl VismaError {
    /// Whether trying the same request again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Server { .. }
            | Self::Timeout
            | Self::Connection(_)
            | Self::Decode(_) => true,
            Self::Token { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The wait Visma asked for (429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// HTTP status, when the failure came with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::RateLimited { .. } => Some(429),
            Self::Validation { .. } | Self::DuplicateEmployee { .. } => Some(400),
            Self::NotFound { .. } => Some(404),
            Self::Conflict { .. } => Some(412),
            Self::Server { status, .. }
            | Self::Auth { status, .. }
            | Self::Token { status, .. }
            | Self::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Classifies a reqwest transport error. The URL is stripped: it carries no secret, but
    /// error text should not depend on where the request went.
    pub(crate) fn transport(e: reqwest::Error) -> Self {
        let e = e.without_url();
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_decode() {
            Self::Decode(e.to_string())
        } else {
            Self::Connection(error_chain(&e))
        }
    }

    /// Classifies a non-success answer from the ERP API.
    pub(crate) fn from_response(status: u16, retry_after: Option<Duration>, body: &str) -> Self {
        let (message, fault_code) = extract_message(body);
        let message = if message.is_empty() { format!("HTTP {status} with empty body") } else { message };
        match status {
            429 => Self::RateLimited { retry_after, message },
            400 => Self::Validation { message, fault_code },
            401 | 403 => Self::Auth { status, message },
            404 => Self::NotFound { message },
            412 => Self::Conflict { message },
            500..=599 => Self::Server { status, message },
            _ => Self::Unexpected { status, message },
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[derive(Deserialize)]
struct AnyErrorBody {
    #[serde(rename = "ExceptionMessage")]
    exception_message: Option<String>,
    #[serde(rename = "ExceptionFaultCode")]
    exception_fault_code: Option<String>,
    #[serde(rename = "ExceptionMessageID")]
    exception_message_id: Option<String>,
    message: Option<String>,
    #[serde(rename = "Message")]
    message_upper: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Visma's message from any of the three body shapes, plus the IPP fault code when present.
pub fn extract_message(body: &str) -> (String, Option<String>) {
    let trimmed = body.trim();
    if let Ok(b) = serde_json::from_str::<AnyErrorBody>(trimmed) {
        if let Some(m) = b.exception_message {
            let id = b.exception_message_id.map(|id| format!(" ({id})")).unwrap_or_default();
            return (format!("{m}{id}"), b.exception_fault_code);
        }
        if let Some(m) = b.message.or(b.message_upper) {
            return (m, None);
        }
        if let Some(e) = b.error {
            let d =
                b.error_description.filter(|d| !d.is_empty()).map(|d| format!(": {d}")).unwrap_or_default();
            return (format!("{e}{d}"), None);
        }
    }
    // Plain text (or JSON of another shape): keep it, bounded.
    let mut s: String = trimmed.chars().take(500).collect();
    if trimmed.chars().count() > 500 {
        s.push('…');
    }
    (s, None)
}
