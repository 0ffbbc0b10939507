//! The HTTP client: tokens, requests, classification, pacing headers.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, ETAG, IF_MATCH, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::dto::{
    BranchDto, DepartmentDto, DimensionDto, EmployeeCreateDto, EmployeeDto, EmployeeUpdateDto,
    SegmentUpdateDto,
};
use crate::{Secret, VismaConfig, VismaError};

mod employees;
mod setup;

/// The last `X-RateLimit-*` values Visma sent for this tenant, so a writer can slow down
/// before it hits 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Time until the window resets, as of `observed_at`.
    pub reset: Option<Duration>,
    pub policy: Option<String>,
    pub observed_at: Instant,
}

impl RateLimitStatus {
    /// Time left until the window resets, from now.
    pub fn reset_in(&self) -> Option<Duration> {
        self.reset.map(|r| r.saturating_sub(self.observed_at.elapsed()))
    }
}

/// One page of a list endpoint plus the paging metadata Visma puts on every item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_count: Option<i64>,
    pub max_page_size: Option<i64>,
}

/// `lastModifiedDateTimeCondition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateCondition {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

impl DateCondition {
    fn as_str(self) -> &'static str {
        match self {
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
            Self::Less => "<",
            Self::LessOrEqual => "<=",
        }
    }
}

/// Query of `GET /v1/employee`. `page_number` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmployeeQuery {
    pub page_number: u32,
    pub page_size: u32,
    /// `lastModifiedDateTime` + condition (always sent together, as Visma requires).
    pub modified: Option<(chrono::NaiveDateTime, DateCondition)>,
}

impl Default for EmployeeQuery {
    fn default() -> Self {
        Self { page_number: 1, page_size: 500, modified: None }
    }
}

/// What a successful create told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub employee_cd: String,
    /// `Location` header, when sent.
    pub location: Option<String>,
    /// `ETag` (Spec 2026 answers 201 + ETag; Spec 2025 answers 200 without).
    pub etag: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

#[derive(Serialize)]
struct TokenForm<'a> {
    grant_type: &'a str,
    client_id: &'a str,
    client_secret: &'a str,
    tenant_id: &'a str,
    scope: String,
}

/// A Visma.net ERP client for one tenant (company). Cheap to share behind an `Arc`; the token
/// is cached and refreshed single-flight.
#[derive(Debug)]
pub struct VismaClient {
    http: reqwest::Client,
    cfg: VismaConfig,
    api_base: String,
    token: Mutex<Option<CachedToken>>,
    rate: StdMutex<Option<RateLimitStatus>>,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken").field("token", &self.token).finish_non_exhaustive()
    }
}

impl VismaClient {
    pub fn new(cfg: VismaConfig) -> Result<Self, VismaError> {
        let base =
            url::Url::parse(&cfg.base_url).map_err(|e| VismaError::Config(format!("base_url: {e}")))?;
        url::Url::parse(&cfg.token_url).map_err(|e| VismaError::Config(format!("token_url: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| VismaError::Config(format!("http client: {e}")))?;
        let api_base = format!("{}{}", base.as_str().trim_end_matches('/'), cfg.api_prefix());
        Ok(Self { http, cfg, api_base, token: Mutex::new(None), rate: StdMutex::new(None) })
    }

    pub fn config(&self) -> &VismaConfig {
        &self.cfg
    }

    /// Last seen `X-RateLimit-*` values.
    pub fn rate_limit(&self) -> Option<RateLimitStatus> {
        self.rate.lock().map(|g| g.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Drops the cached token (the next call fetches a new one).
    pub async fn invalidate_token(&self) {
        *self.token.lock().await = None;
    }

    /// A valid access token, from cache or from Visma Connect. Holding the lock while fetching
    /// makes refresh single-flight: concurrent callers wait for one token request.
    async fn access_token(&self) -> Result<Secret, VismaError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.token.clone());
            }
        }
        let form = TokenForm {
            grant_type: "client_credentials",
            client_id: &self.cfg.client_id,
            client_secret: self.cfg.client_secret.expose(),
            tenant_id: &self.cfg.tenant_id,
            scope: self.cfg.scopes.join(" "),
        };
        let resp =
            self.http.post(&self.cfg.token_url).form(&form).send().await.map_err(VismaError::transport)?;
        let status = resp.status();
        let body = resp.text().await.map_err(VismaError::transport)?;
        if !status.is_success() {
            let (error, _) = crate::error::extract_message(&body);
            return Err(VismaError::Token { status: status.as_u16(), error });
        }
        let parsed: TokenResponse =
            serde_json::from_str(&body).map_err(|e| VismaError::Decode(format!("token response: {e}")))?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        // Refresh `margin` early, but never later than half-way through a short-lived token.
        let margin = self.cfg.token_refresh_margin.min(lifetime / 2);
        let token = Secret::new(parsed.access_token);
        *guard = Some(CachedToken { token: token.clone(), refresh_at: Instant::now() + lifetime - margin });
        tracing::debug!(tenant = %self.cfg.tenant_id, expires_in = lifetime.as_secs(), "visma token acquired");
        Ok(token)
    }

    fn record_rate(&self, headers: &HeaderMap) {
        let num = |name: &str| {
            headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
        };
        let limit = num("x-ratelimit-limit");
        let remaining = num("x-ratelimit-remaining");
        if limit.is_none() && remaining.is_none() {
            return;
        }
        let status = RateLimitStatus {
            limit,
            remaining,
            reset: num("x-ratelimit-reset").map(Duration::from_secs),
            policy: headers.get("x-ratelimit-policy").and_then(|v| v.to_str().ok()).map(str::to_string),
            observed_at: Instant::now(),
        };
        match self.rate.lock() {
            Ok(mut g) => *g = Some(status),
            Err(e) => *e.into_inner() = Some(status),
        }
    }

    /// Sends one API request; on 401 with a cached token, refetches the token once (it may have
    /// been revoked or expired early) before giving up.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        if_match: Option<&str>,
    ) -> Result<(StatusCode, HeaderMap, String), VismaError> {
        let url = format!("{}{}", self.api_base, path);
        let mut refreshed = false;
        loop {
            let token = self.access_token().await?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose())
                .header("accept", "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(legacy) = &self.cfg.legacy {
                req = req
                    .header("ipp-company-id", &legacy.company_id)
                    .header("ipp-application-type", "Visma.net Financials");
            }
            if let Some(tag) = if_match {
                req = req.header(IF_MATCH, tag);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(VismaError::transport)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            self.record_rate(&headers);
            let text = resp.text().await.map_err(VismaError::transport)?;
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.invalidate_token().await;
                continue;
            }
            tracing::debug!(%method, path, status = status.as_u16(), "visma request");
            return Ok((status, headers, text));
        }
    }

    fn fail(status: StatusCode, headers: &HeaderMap, body: &str) -> VismaError {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        VismaError::from_response(status.as_u16(), retry_after, body)
    }

    fn decode<T: DeserializeOwned>(body: &str) -> Result<T, VismaError> {
        serde_json::from_str(body).map_err(|e| VismaError::Decode(e.to_string()))
    }

    fn to_json<T: Serialize>(dto: &T) -> Result<serde_json::Value, VismaError> {
        serde_json::to_value(dto).map_err(|e| VismaError::Config(format!("serialising body: {e}")))
    }

    async fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, VismaError> {
        let (status, headers, body) = self.send(Method::GET, path, &[], None, None).await?;
        match status {
            s if s.is_success() => Self::decode(&body).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(Self::fail(s, &headers, &body)),
        }
    }

    async fn get_list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, VismaError> {
        let (status, headers, body) = self.send(Method::GET, path, query, None, None).await?;
        if !status.is_success() {
            return Err(Self::fail(status, &headers, &body));
        }
        Self::decode(&body)
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Visma does not document the duplicate-number answer; it is a 400 whose message says the id
/// "already exists". Matching the text is the only signal there is.
fn is_duplicate_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already exists") || m.contains("duplicate")
}

/// Percent-encodes one path segment (ids may contain `/`, spaces, ...).
fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}
