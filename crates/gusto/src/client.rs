//! The HTTP client: auth, rate limiting and retry policy in one place, so every
//! endpoint method gets the same behaviour.
//!
//! * 429: block the grant for `Retry-After`, then retry (bounded).
//! * 5xx, timeouts, dropped connections: bounded exponential back-off, GETs only
//!   (a write may have been applied).
//! * 401: one forced refresh of the grant's token, then retry once.
//! * 409 on writes: surfaced to the caller; [`GustoClient::update_employee`] shows the
//!   re-fetch / re-apply loop.
//! * Undecodable bodies: [`GustoError::Malformed`], without echoing the body.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing::Instrument;

use crate::error::{ApiErrorDetail, GustoError};
use crate::limiter::{RateLimitConfig, RateLimiter};
use crate::models::*;
pub use crate::observe::ClientObserver;
use crate::observe::ObserverSlot;
use crate::secret::Secret;
use crate::token::{GrantId, OAuthClient, TokenManager, TokenManagerConfig, TokenResponse, TokenStore};

pub const PRODUCTION_BASE_URL: &str = "https://api.gusto.com";
pub const DEMO_BASE_URL: &str = "https://api.gusto-demo.com";
pub use crate::version::DEFAULT_API_VERSION;
use crate::version::{ApiVersionStatus, VersionTracker};

/// Bounds of the retry loops.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries of a GET after 5xx / timeout / transport failure.
    pub max_retries: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How many 429s are waited out before giving up.
    pub max_rate_limit_waits: u32,
    /// Used when a 429 carries no `Retry-After`.
    pub default_retry_after: Duration,
    /// Re-apply attempts after 409 in the update helpers.
    pub max_conflict_retries: u32,
    /// After a 406 `invalid_api_version`, calls fail at once (without asking Gusto) for
    /// `version_refusal_first_hold`, doubling with every refusal in a row up to this: a
    /// version that stays refused costs Gusto about one request a minute, not a retry
    /// storm, while a refusal that passes (Gusto lowered the minimum back, the operator
    /// fixed the version) is noticed within seconds.
    pub version_refusal_hold: Duration,
    pub version_refusal_first_hold: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_waits: 4,
            default_retry_after: Duration::from_secs(5),
            max_conflict_retries: 3,
            version_refusal_hold: Duration::from_secs(60),
            version_refusal_first_hold: Duration::from_secs(5),
        }
    }
}

/// Configuration of a [`GustoClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// [`PRODUCTION_BASE_URL`], [`DEMO_BASE_URL`] or a simulator.
    pub base_url: url::Url,
    pub api_version: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_limit: RateLimitConfig,
    pub tokens: TokenManagerConfig,
}

impl ClientConfig {
    pub fn new(
        base_url: &str,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Result<Self, GustoError> {
        Ok(Self {
            base_url: url::Url::parse(base_url).map_err(|e| GustoError::Config(format!("base url: {e}")))?,
            api_version: DEFAULT_API_VERSION.to_owned(),
            client_id: client_id.into(),
            client_secret,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            rate_limit: RateLimitConfig::default(),
            tokens: TokenManagerConfig::default(),
        })
    }
}

/// What the last 406s left: the hold in force (until, Gusto's message) and how many
/// refusals came in a row (the hold doubles with each).
#[derive(Debug, Default)]
struct Refusal {
    held: Option<(tokio::time::Instant, String)>,
    in_a_row: u32,
}

/// One page of a paginated list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    /// From `X-Total-Pages`, when sent.
    pub total_pages: Option<u32>,
    /// From `X-Total-Count`, when sent.
    pub total_count: Option<u64>,
}

impl<T> Page<T> {
    /// Whether another page should be fetched (falls back to "short page = last").
    pub fn has_more(&self, per: u32) -> bool {
        match self.total_pages {
            Some(total) => self.page < total,
            None => self.items.len() as u32 >= per && !self.items.is_empty(),
        }
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Grant(&'a GrantId),
    System,
}

impl Auth<'_> {
    fn limiter_key(&self) -> String {
        match self {
            Auth::Grant(g) => g.0.clone(),
            Auth::System => "system".to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ApiErrorDetail>,
}

/// A rolling window shared by every process using the same grants (replicas of the
/// projector, the CLI): taken after this process's own limiter, before each request.
#[async_trait::async_trait]
pub trait SharedLimit: Send + Sync {
    /// Waits for and takes one slot of `key`'s window.
    async fn acquire(&self, key: &str) -> Result<(), String>;
}

/// The Gusto API client. Cheap to clone.
#[derive(Clone)]
pub struct GustoClient {
    http: reqwest::Client,
    cfg: Arc<ClientConfig>,
    tokens: Arc<TokenManager>,
    limiter: RateLimiter,
    observer: ObserverSlot,
    shared: Option<Arc<dyn SharedLimit>>,
    version: VersionTracker,
    /// Set by a 406 `invalid_api_version`: until then calls fail without a request.
    refusal: Arc<std::sync::Mutex<Refusal>>,
}

impl std::fmt::Debug for GustoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GustoClient").field("cfg", &self.cfg).finish()
    }
}

impl GustoClient {
    /// Builds a client whose grants live in `store`.
    pub fn new(cfg: ClientConfig, store: Arc<dyn TokenStore>) -> Result<Self, GustoError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .user_agent(concat!("ml-connector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GustoError::Config(e.to_string()))?;
        let oauth = OAuthClient::new(
            http.clone(),
            cfg.base_url.clone(),
            cfg.client_id.clone(),
            cfg.client_secret.clone(),
        )
        .with_api_version(&cfg.api_version);
        let observer = ObserverSlot::default();
        let mut tokens = TokenManager::new(store, oauth, cfg.tokens.clone());
        tokens.observer = observer.clone();
        let limiter = RateLimiter::new(cfg.rate_limit.clone());
        let version = VersionTracker::new(&cfg.api_version);
        Ok(Self {
            http,
            cfg: Arc::new(cfg),
            tokens: Arc::new(tokens),
            limiter,
            observer,
            shared: None,
            version,
            refusal: Default::default(),
        })
    }

    /// The version this client sends and what Gusto's answers said about it so far
    /// (for `mlc check` and the `gusto_api_version_deprecated` gauge).
    pub fn api_version_status(&self) -> ApiVersionStatus {
        self.version.get()
    }

    fn refusal(&self) -> std::sync::MutexGuard<'_, Refusal> {
        self.refusal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The refusal still in force, if the hold of the last 406 has not passed.
    fn refusal_in_force(&self) -> Option<GustoError> {
        let guard = self.refusal();
        let (until, message) = guard.held.as_ref()?;
        (tokio::time::Instant::now() < *until).then(|| GustoError::InvalidApiVersion {
            version: self.cfg.api_version.clone(),
            message: message.clone(),
        })
    }

    /// How long calls still fail at once after a 406 (`None`: Gusto is asked). Work refused
    /// for the version can wait this long: the next call after it asks Gusto again.
    pub fn version_refusal_left(&self) -> Option<Duration> {
        let guard = self.refusal();
        let (until, _) = guard.held.as_ref()?;
        until.checked_duration_since(tokio::time::Instant::now()).filter(|d| !d.is_zero())
    }

    fn note_refusal(&self, message: &str) -> GustoError {
        let error = GustoError::InvalidApiVersion {
            version: self.cfg.api_version.clone(),
            message: message.to_owned(),
        };
        {
            let mut r = self.refusal();
            let now = tokio::time::Instant::now();
            // Requests already in flight when the first refusal came are refused together:
            // one refusal, not several in a row (which would lengthen the hold at once).
            if r.held.as_ref().is_some_and(|(until, _)| *until > now) {
                return error;
            }
            let retry = &self.cfg.retry;
            let hold = retry
                .version_refusal_first_hold
                .saturating_mul(1u32 << r.in_a_row.min(16))
                .min(retry.version_refusal_hold);
            r.in_a_row += 1;
            r.held = Some((now + hold, message.to_owned()));
        }
        let status = self.version.refused(message);
        self.observer.notify(|o| o.api_version(&status));
        tracing::error!(
            api_version = %self.cfg.api_version,
            message,
            "Gusto refused the API version (406); set gusto.api_version to a supported version"
        );
        error
    }

    /// Makes every request also take a slot of a window shared across processes, so
    /// replicas together never exceed the grant's budget.
    pub fn with_shared_limit(mut self, shared: Arc<dyn SharedLimit>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Installs (or replaces) the observer told about answers and token refreshes, for
    /// this client and every clone of it.
    pub fn set_observer(&self, observer: Arc<dyn ClientObserver>) {
        self.observer.set(observer);
    }

    pub fn tokens(&self) -> &Arc<TokenManager> {
        &self.tokens
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Exchanges an authorisation code and stores the grant under `grant`.
    pub async fn exchange_code(
        &self,
        grant: &GrantId,
        code: &str,
        redirect_uri: &str,
    ) -> Result<(), GustoError> {
        self.tokens.install_from_code(grant, code, redirect_uri).await
    }

    /// Exchanges an authorisation code without storing it.
    pub async fn exchange_code_raw(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<TokenResponse, GustoError> {
        self.tokens.oauth().exchange_code(code, redirect_uri).await
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.cfg.retry.base_backoff.saturating_mul(1u32 << attempt.min(16));
        exp.min(self.cfg.retry.max_backoff)
    }

    /// Sends one logical request with the retry policy; returns headers and body. The
    /// request (retries included) is one client span; its fields never hold a token.
    async fn send(
        &self,
        auth: Auth<'_>,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<(HeaderMap, bytes::Bytes), GustoError> {
        let span = tracing::info_span!(
            "gusto.request",
            otel.kind = "client",
            http.request.method = %method,
            url.path = path,
            server.address = self.cfg.base_url.host_str().unwrap_or_default(),
            http.response.status_code = tracing::field::Empty,
            http.request.resend_count = tracing::field::Empty,
        );
        self.send_in_span(auth, method, path, query, body).instrument(span).await
    }

    async fn send_in_span(
        &self,
        auth: Auth<'_>,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<(HeaderMap, bytes::Bytes), GustoError> {
        let url = self.cfg.base_url.join(path).map_err(|e| GustoError::Config(e.to_string()))?;
        let idempotent = method == Method::GET;
        let key = auth.limiter_key();
        let (mut retries, mut waits, mut refreshed) = (0u32, 0u32, false);
        let mut attempt = 0u32;
        loop {
            if let Some(refused) = self.refusal_in_force() {
                return Err(refused);
            }
            if attempt > 0 {
                tracing::Span::current().record("http.request.resend_count", attempt);
            }
            attempt += 1;
            let token = match auth {
                Auth::Grant(g) => self.tokens.access_token(g).await,
                Auth::System => self.tokens.system_token().await,
            };
            // The token endpoint refuses a retired version too: the same one clear error.
            let token = match token {
                Ok(t) => t,
                Err(GustoError::InvalidApiVersion { message, .. }) => return Err(self.note_refusal(&message)),
                Err(e) => return Err(e),
            };
            let permit = self.limiter.acquire(&key).await;
            if let Some(shared) = &self.shared {
                shared.acquire(&key).await.map_err(|e| {
                    GustoError::Store(crate::token::StoreError(format!("shared rate limit: {e}")))
                })?;
            }
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose())
                .header("X-Gusto-API-Version", &self.cfg.api_version)
                .header(reqwest::header::ACCEPT, "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let result = req.send().await;
            // The answer's headers are in (or the attempt failed): anchor the slot here.
            let sent_at = permit.sent_at;
            drop(permit);
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    self.observer.notify(|o| o.response(&key, 0));
                    if idempotent && retries < self.cfg.retry.max_retries {
                        tracing::warn!(path, error = %e, retries, "transport error; retrying");
                        tokio::time::sleep(self.backoff(retries)).await;
                        retries += 1;
                        continue;
                    }
                    return Err(GustoError::Transport(e.without_url()));
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            self.observer.notify(|o| o.response(&key, status.as_u16()));
            self.limiter.observe(
                &key,
                sent_at,
                header_u64(&headers, "x-ratelimit-remaining"),
                reset_in(&headers),
            );
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    if idempotent && retries < self.cfg.retry.max_retries {
                        tracing::warn!(path, error = %e, "body read failed; retrying");
                        tokio::time::sleep(self.backoff(retries)).await;
                        retries += 1;
                        continue;
                    }
                    return Err(GustoError::Transport(e.without_url()));
                }
            };
            if let Some(changed) = self.version.observe(&headers, status.is_success()) {
                self.observer.notify(|o| o.api_version(&changed));
            }
            if status.is_success() {
                self.refusal().in_a_row = 0;
                return Ok((headers, bytes));
            }
            match status.as_u16() {
                406 => return Err(self.note_refusal(&crate::version::refusal_message(&bytes))),
                401 if !refreshed => {
                    refreshed = true;
                    match auth {
                        Auth::Grant(g) => {
                            self.tokens.refresh_after_rejection(g, &token).await?;
                        }
                        Auth::System => self.tokens.drop_system_token().await,
                    }
                    continue;
                }
                401 => {
                    return Err(match auth {
                        Auth::Grant(g) => GustoError::Unauthorized { grant: g.clone() },
                        Auth::System => GustoError::Unauthorized { grant: GrantId("system".into()) },
                    })
                }
                429 => {
                    let wait = header_u64(&headers, "retry-after")
                        .map(Duration::from_secs)
                        .unwrap_or(self.cfg.retry.default_retry_after);
                    if waits >= self.cfg.retry.max_rate_limit_waits {
                        return Err(GustoError::RateLimited { retry_after: Some(wait) });
                    }
                    waits += 1;
                    tracing::warn!(path, ?wait, "429 from Gusto; honouring Retry-After");
                    self.limiter.block_for(&key, wait);
                    // The token may expire or be rotated during the wait: a 401 after it
                    // earns its own forced refresh (bounded by the waits).
                    refreshed = false;
                    continue;
                }
                404 => return Err(GustoError::NotFound { path: path.to_owned() }),
                s if s >= 500 => {
                    if idempotent && retries < self.cfg.retry.max_retries {
                        tracing::warn!(path, status = s, retries, "server error; retrying");
                        tokio::time::sleep(self.backoff(retries)).await;
                        retries += 1;
                        continue;
                    }
                    return Err(GustoError::Server { status: s });
                }
                s => {
                    let errors =
                        serde_json::from_slice::<ErrorBody>(&bytes).map(|b| b.errors).unwrap_or_default();
                    return Err(GustoError::Api { status: s, errors });
                }
            }
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        auth: Auth<'_>,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(HeaderMap, T), GustoError> {
        let (headers, bytes) = self.send(auth, Method::GET, path, query, None).await?;
        let value = serde_json::from_slice(&bytes).map_err(|e| GustoError::malformed(path, &e))?;
        Ok((headers, value))
    }

    pub async fn get_employee(&self, grant: &GrantId, employee_id: &str) -> Result<Employee, GustoError> {
        let path = format!("/v1/employees/{employee_id}");
        Ok(self.get_json(Auth::Grant(grant), &path, &[]).await?.1)
    }

    /// One page of the company's employees: everyone (onboarding, active, terminated).
    /// `terminated` is deliberately not sent: it is a filter, not an include.
    pub async fn list_employees(
        &self,
        grant: &GrantId,
        company_id: &str,
        page: u32,
        per: u32,
    ) -> Result<Page<Employee>, GustoError> {
        let path = format!("/v1/companies/{company_id}/employees");
        let (headers, items) = self
            .get_json(Auth::Grant(grant), &path, &[("page", page.to_string()), ("per", per.to_string())])
            .await?;
        Ok(Page {
            items,
            page: header_u64(&headers, "x-page").map_or(page, |p| p as u32),
            total_pages: header_u64(&headers, "x-total-pages").map(|p| p as u32),
            total_count: header_u64(&headers, "x-total-count"),
        })
    }

    /// All employees of the company, page by page.
    pub async fn list_all_employees(
        &self,
        grant: &GrantId,
        company_id: &str,
        per: u32,
    ) -> Result<Vec<Employee>, GustoError> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let p = self.list_employees(grant, company_id, page, per).await?;
            let more = p.has_more(per);
            all.extend(p.items);
            if !more {
                return Ok(all);
            }
            page += 1;
        }
    }

    pub async fn list_locations(
        &self,
        grant: &GrantId,
        company_id: &str,
    ) -> Result<Vec<Location>, GustoError> {
        let path = format!("/v1/companies/{company_id}/locations");
        Ok(self.get_json(Auth::Grant(grant), &path, &[]).await?.1)
    }

    pub async fn get_location(&self, grant: &GrantId, location_id: &str) -> Result<Location, GustoError> {
        let path = format!("/v1/locations/{location_id}");
        Ok(self.get_json(Auth::Grant(grant), &path, &[]).await?.1)
    }

    pub async fn list_departments(
        &self,
        grant: &GrantId,
        company_id: &str,
    ) -> Result<Vec<Department>, GustoError> {
        let path = format!("/v1/companies/{company_id}/departments");
        Ok(self.get_json(Auth::Grant(grant), &path, &[]).await?.1)
    }

    pub async fn get_department(
        &self,
        grant: &GrantId,
        department_id: &str,
    ) -> Result<Department, GustoError> {
        let path = format!("/v1/departments/{department_id}");
        Ok(self.get_json(Auth::Grant(grant), &path, &[]).await?.1)
    }

    pub async fn list_work_addresses(
        &self,
        grant: &GrantId,
        employee_id: &str,
    ) -> Result<Vec<WorkAddress>, GustoError> {
        let path = format!("/v1/employees/{employee_id}/work_addresses");
        Ok(self.get_json(Auth::Grant(grant), &path, &[]).await?.1)
    }

    pub async fn list_terminations(
        &self,
        grant: &GrantId,
        employee_id: &str,
    ) -> Result<Vec<Termination>, GustoError> {
        let path = format!("/v1/employees/{employee_id}/terminations");
        Ok(self.get_json(Auth::Grant(grant), &path, &[]).await?.1)
    }

    pub async fn token_info(&self, grant: &GrantId) -> Result<TokenInfo, GustoError> {
        Ok(self.get_json(Auth::Grant(grant), "/v1/token_info", &[]).await?.1)
    }

    /// `GET /v1/events` with the system token (catch-up after outages).
    pub async fn list_events(&self, q: &EventQuery) -> Result<Vec<Event>, GustoError> {
        let mut query = Vec::new();
        if let Some(v) = &q.starting_after_uuid {
            query.push(("starting_after_uuid", v.clone()));
        }
        if let Some(v) = &q.resource_uuid {
            query.push(("resource_uuid", v.clone()));
        }
        if let Some(v) = &q.event_type {
            query.push(("event_type", v.clone()));
        }
        if let Some(v) = q.limit {
            query.push(("limit", v.clamp(1, 100).to_string()));
        }
        if q.descending {
            query.push(("sort_order", "desc".to_owned()));
        }
        Ok(self.get_json(Auth::System, "/v1/events", &query).await?.1)
    }

    pub async fn create_webhook_subscription(
        &self,
        url: &str,
        subscription_types: &[&str],
    ) -> Result<WebhookSubscription, GustoError> {
        let body = serde_json::json!({"url": url, "subscription_types": subscription_types});
        let (_, bytes) =
            self.send(Auth::System, Method::POST, "/v1/webhook_subscriptions", &[], Some(&body)).await?;
        serde_json::from_slice(&bytes).map_err(|e| GustoError::malformed("/v1/webhook_subscriptions", &e))
    }

    pub async fn list_webhook_subscriptions(&self) -> Result<Vec<WebhookSubscription>, GustoError> {
        Ok(self.get_json(Auth::System, "/v1/webhook_subscriptions", &[]).await?.1)
    }

    /// Completes the handshake with the token Gusto POSTed to the subscription URL.
    pub async fn verify_webhook_subscription(
        &self,
        subscription_uuid: &str,
        verification_token: &Secret,
    ) -> Result<WebhookSubscription, GustoError> {
        let path = format!("/v1/webhook_subscriptions/{subscription_uuid}/verify");
        let body = serde_json::json!({"verification_token": verification_token.expose()});
        let (_, bytes) = self.send(Auth::System, Method::PUT, &path, &[], Some(&body)).await?;
        serde_json::from_slice(&bytes).map_err(|e| GustoError::malformed(&path, &e))
    }

    /// Asks Gusto to POST the verification token to the subscription URL again.
    pub async fn request_verification_token(&self, subscription_uuid: &str) -> Result<(), GustoError> {
        let path = format!("/v1/webhook_subscriptions/{subscription_uuid}/request_verification_token");
        self.send(Auth::System, Method::GET, &path, &[], None).await.map(|_| ())
    }

    /// Updates an employee with optimistic concurrency: fetch, let `apply` compute the
    /// change from the current state, PUT with the fetched `version`; on 409 fetch
    /// again and re-apply, at most `max_conflict_retries` times.
    pub async fn update_employee(
        &self,
        grant: &GrantId,
        employee_id: &str,
        apply: impl Fn(&Employee) -> EmployeeUpdate,
    ) -> Result<Employee, GustoError> {
        let path = format!("/v1/employees/{employee_id}");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.get_employee(grant, employee_id).await?;
            let update = apply(&current);
            let mut body = serde_json::to_value(&update).map_err(|e| GustoError::malformed(&path, &e))?;
            if let Some(obj) = body.as_object_mut() {
                obj.insert("version".into(), current.version.clone().unwrap_or_default().into());
            }
            match self.send(Auth::Grant(grant), Method::PUT, &path, &[], Some(&body)).await {
                Ok((_, bytes)) => {
                    return serde_json::from_slice(&bytes).map_err(|e| GustoError::malformed(&path, &e))
                }
                Err(GustoError::Api { status: 409, .. })
                    if attempts <= self.cfg.retry.max_conflict_retries =>
                {
                    tracing::info!(employee_id, attempts, "409 stale version; re-fetching and re-applying");
                    continue;
                }
                Err(GustoError::Api { status: 409, .. }) => return Err(GustoError::Conflict { attempts }),
                Err(e) => return Err(e),
            }
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `X-RateLimit-Reset` is a Ruby `Time#to_s` string (`2025-07-08 15:35:40 -0700`);
/// also accepts RFC 3339 and epoch seconds. Returns the time left until it.
fn reset_in(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim();
    let at: DateTime<Utc> = DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S %z")
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| DateTime::parse_from_rfc3339(raw).map(|d| d.with_timezone(&Utc)))
        .ok()
        .or_else(|| raw.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0)))?;
    (at - Utc::now()).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ruby_reset() {
        let mut h = HeaderMap::new();
        let future = (Utc::now() + chrono::Duration::seconds(30)).format("%Y-%m-%d %H:%M:%S %z").to_string();
        h.insert("x-ratelimit-reset", future.parse().expect("header"));
        let d = reset_in(&h).expect("parsed");
        assert!(d <= Duration::from_secs(31) && d >= Duration::from_secs(28));
    }
}
