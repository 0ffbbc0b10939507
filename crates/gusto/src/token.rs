//! OAuth grants: storage contract, in-memory store, and the token manager.
//!
//! Gusto rotates refresh tokens: each refresh returns a new refresh token and the old
//! one dies on the first use of the new access token. Two workers refreshing the same
//! grant at once therefore risk one of them holding a dead token. The manager makes a
//! refresh single-flight per grant:
//!
//! * inside a process with a per-grant async mutex;
//! * across processes with a lease taken through [`TokenStore::compare_and_swap`]: the
//!   winner bumps the row's version and records `refresh_lease_until`; others wait for
//!   the version to move (or the lease to lapse) and then use the winner's token.
//!
//! The new refresh token is persisted (CAS) before the new access token is returned to
//! anyone, so a crash can never lose the only living refresh token: if the process dies
//! between the refresh and the CAS, the new access token was never used, so the old
//! refresh token still works for whoever takes the lapsed lease.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::GustoError;
pub use crate::grant::{GrantId, GrantStatus, StoreError, StoredGrant, TokenStore};
use crate::observe::ObserverSlot;
use crate::secret::Secret;

/// In-memory [`TokenStore`] for tests and the demo. Share it with `Arc` to simulate
/// two processes using one database.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    rows: Mutex<HashMap<GrantId, StoredGrant>>,
}

impl MemoryTokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<GrantId, StoredGrant>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Test helper: pretends the access token expired now.
    pub fn expire_now(&self, grant: &GrantId) {
        if let Some(row) = self.rows().get_mut(grant) {
            row.expires_at = Utc::now() - chrono::Duration::seconds(1);
        }
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self, grant: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        Ok(self.rows().get(grant).cloned())
    }

    async fn compare_and_swap(
        &self,
        grant: &GrantId,
        expected_version: i64,
        new: StoredGrant,
    ) -> Result<bool, StoreError> {
        let mut rows = self.rows();
        let current = rows.get(grant).map_or(0, |r| r.version);
        if current != expected_version {
            return Ok(false);
        }
        rows.insert(grant.clone(), new);
        Ok(true)
    }

    async fn mark_needs_reauth(&self, grant: &GrantId, reason: &str) -> Result<(), StoreError> {
        if let Some(row) = self.rows().get_mut(grant) {
            row.status = GrantStatus::NeedsReauth { reason: reason.to_owned() };
            row.refresh_lease_until = None;
            row.version += 1;
        }
        Ok(())
    }
}

/// `POST /oauth/token` answer.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<f64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[REDACTED]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[REDACTED]"))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenResponse {
    /// Absolute expiry; a missing `expires_in` means Gusto's documented 7200 s.
    pub fn expires_at(&self) -> DateTime<Utc> {
        let secs = self.expires_in.unwrap_or(7200.0).max(0.0);
        Utc::now() + chrono::Duration::milliseconds((secs * 1000.0) as i64)
    }
}

#[derive(Deserialize)]
struct DoorkeeperError {
    error: String,
}

/// Outcome of a token endpoint call that failed.
#[derive(Debug)]
pub(crate) enum OAuthFailure {
    /// `invalid_grant`: the refresh token / code is dead.
    InvalidGrant,
    Other(GustoError),
}

/// Minimal client of Gusto's OAuth endpoints (`/oauth/token`, `/oauth/revoke`).
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    base_url: url::Url,
    client_id: String,
    client_secret: Secret,
    /// `X-Gusto-API-Version` of token and revoke calls.
    api_version: String,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("base_url", &self.base_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

impl OAuthClient {
    pub fn new(http: reqwest::Client, base_url: url::Url, client_id: String, client_secret: Secret) -> Self {
        let api_version = crate::version::DEFAULT_API_VERSION.to_owned();
        Self { http, base_url, client_id, client_secret, api_version }
    }

    /// Sends `version` as `X-Gusto-API-Version` on token and revoke calls.
    pub fn with_api_version(mut self, version: &str) -> Self {
        self.api_version = version.to_owned();
        self
    }

    /// The URL a company admin opens to authorise the app.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> Result<url::Url, GustoError> {
        let mut url =
            self.base_url.join("/oauth/authorize").map_err(|e| GustoError::Config(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("state", state);
        Ok(url)
    }

    async fn token_call(&self, body: serde_json::Value) -> Result<TokenResponse, OAuthFailure> {
        let url = self
            .base_url
            .join("/oauth/token")
            .map_err(|e| OAuthFailure::Other(GustoError::Config(e.to_string())))?;
        let resp = self
            .http
            .post(url)
            .header("X-Gusto-API-Version", &self.api_version)
            .json(&body)
            .send()
            .await
            .map_err(|e| OAuthFailure::Other(GustoError::Transport(e.without_url())))?;
        let status = resp.status();
        let bytes =
            resp.bytes().await.map_err(|e| OAuthFailure::Other(GustoError::Transport(e.without_url())))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| OAuthFailure::Other(GustoError::malformed("/oauth/token", &e)));
        }
        if status.is_server_error() {
            return Err(OAuthFailure::Other(GustoError::Server { status: status.as_u16() }));
        }
        if status.as_u16() == 406 {
            return Err(OAuthFailure::Other(GustoError::InvalidApiVersion {
                version: self.api_version.clone(),
                message: crate::version::refusal_message(&bytes),
            }));
        }
        match serde_json::from_slice::<DoorkeeperError>(&bytes) {
            Ok(e) if e.error == "invalid_grant" => Err(OAuthFailure::InvalidGrant),
            Ok(e) => Err(OAuthFailure::Other(GustoError::OAuth { status: status.as_u16(), error: e.error })),
            Err(_) => Err(OAuthFailure::Other(GustoError::OAuth {
                status: status.as_u16(),
                error: "unrecognised error body".into(),
            })),
        }
    }

    /// Exchanges an authorisation code for the grant's first token pair.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<TokenResponse, GustoError> {
        self.token_call(serde_json::json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose(),
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }))
        .await
        .map_err(|f| match f {
            OAuthFailure::InvalidGrant => GustoError::OAuth { status: 400, error: "invalid_grant".into() },
            OAuthFailure::Other(e) => e,
        })
    }

    pub(crate) async fn refresh(&self, refresh_token: &Secret) -> Result<TokenResponse, OAuthFailure> {
        self.token_call(serde_json::json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose(),
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose(),
        }))
        .await
    }

    /// Obtains a system access token (webhook subscriptions, `/v1/events`).
    pub async fn system_token(&self) -> Result<TokenResponse, GustoError> {
        self.token_call(serde_json::json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose(),
            "grant_type": "system_access",
        }))
        .await
        .map_err(|f| match f {
            OAuthFailure::InvalidGrant => GustoError::OAuth { status: 400, error: "invalid_grant".into() },
            OAuthFailure::Other(e) => e,
        })
    }

    /// Revokes a token (`POST /oauth/revoke`).
    pub async fn revoke(&self, token: &Secret) -> Result<(), GustoError> {
        let url = self.base_url.join("/oauth/revoke").map_err(|e| GustoError::Config(e.to_string()))?;
        let resp = self
            .http
            .post(url)
            .header("X-Gusto-API-Version", &self.api_version)
            .json(&serde_json::json!({
                "client_id": self.client_id,
                "client_secret": self.client_secret.expose(),
                "token": token.expose(),
            }))
            .send()
            .await
            .map_err(|e| GustoError::Transport(e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(GustoError::OAuth { status: resp.status().as_u16(), error: "revoke failed".into() })
        }
    }
}

/// Tuning of the [`TokenManager`].
#[derive(Debug, Clone)]
pub struct TokenManagerConfig {
    /// Refresh when the access token expires within this margin.
    pub refresh_ahead: Duration,
    /// How long a refresh lease protects the refresher from others. The refresh call is
    /// bounded to 80 % of it, so a live holder always finishes (or gives up) inside its
    /// lease, and a holder that died (kill -9 mid-refresh) stalls the grant's other
    /// processes for at most this long.
    pub lease_ttl: Duration,
    /// How often a waiter re-reads the store while another process refreshes.
    pub poll_interval: Duration,
    /// Upper bound for one `access_token` call; it never spins beyond this.
    pub max_wait: Duration,
}

impl Default for TokenManagerConfig {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(300),
            // Was 30 s (the HTTP timeout): a projector killed while refreshing left every
            // call of that grant in its successor waiting half a minute, silently.
            lease_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_millis(50),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Hands out valid access tokens per grant, refreshing single-flight.
pub struct TokenManager {
    store: Arc<dyn TokenStore>,
    oauth: OAuthClient,
    cfg: TokenManagerConfig,
    locks: Mutex<HashMap<GrantId, Arc<tokio::sync::Mutex<()>>>>,
    system: tokio::sync::Mutex<Option<(Secret, DateTime<Utc>)>>,
    /// Told about refreshes (set by the [`crate::GustoClient`] that owns this manager).
    pub(crate) observer: ObserverSlot,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager").field("oauth", &self.oauth).field("cfg", &self.cfg).finish()
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl TokenManager {
    pub fn new(store: Arc<dyn TokenStore>, oauth: OAuthClient, cfg: TokenManagerConfig) -> Self {
        Self {
            store,
            oauth,
            cfg,
            locks: Mutex::default(),
            system: tokio::sync::Mutex::new(None),
            observer: Default::default(),
        }
    }

    pub fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    fn lock_for(&self, grant: &GrantId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(grant.clone()).or_default().clone()
    }

    /// Exchanges an authorisation code and stores the new grant under `grant`
    /// (replacing a dead one: re-authorisation reuses the grant id).
    pub async fn install_from_code(
        &self,
        grant: &GrantId,
        code: &str,
        redirect_uri: &str,
    ) -> Result<(), GustoError> {
        let tokens = self.oauth.exchange_code(code, redirect_uri).await?;
        self.install(grant, &tokens).await
    }

    /// Stores a fresh token pair (from a code exchange) for `grant`.
    pub async fn install(&self, grant: &GrantId, tokens: &TokenResponse) -> Result<(), GustoError> {
        let refresh = tokens
            .refresh_token
            .clone()
            .ok_or_else(|| GustoError::OAuth { status: 200, error: "no refresh_token in answer".into() })?;
        for _ in 0..5 {
            let current = self.store.load(grant).await?.map_or(0, |g| g.version);
            let row = StoredGrant {
                access_token: Secret::new(tokens.access_token.clone()),
                refresh_token: Secret::new(refresh.clone()),
                expires_at: tokens.expires_at(),
                version: current + 1,
                status: GrantStatus::Active,
                refresh_lease_until: None,
            };
            if self.store.compare_and_swap(grant, current, row).await? {
                return Ok(());
            }
        }
        Err(GustoError::RefreshContention { grant: grant.clone() })
    }

    /// A valid access token for `grant`, refreshing if it expires soon.
    pub async fn access_token(&self, grant: &GrantId) -> Result<Secret, GustoError> {
        self.get(grant, None).await
    }

    /// Called after a 401 with `rejected`: returns a different, fresh token (refreshing
    /// unless another worker already did).
    pub async fn refresh_after_rejection(
        &self,
        grant: &GrantId,
        rejected: &Secret,
    ) -> Result<Secret, GustoError> {
        self.get(grant, Some(rejected)).await
    }

    async fn get(&self, grant: &GrantId, rejected: Option<&Secret>) -> Result<Secret, GustoError> {
        let deadline = tokio::time::Instant::now() + self.cfg.max_wait;
        let ahead = chrono_dur(self.cfg.refresh_ahead);
        let usable = |g: &StoredGrant| {
            g.expires_at - ahead > Utc::now() && rejected.is_none_or(|r| r != &g.access_token)
        };
        // Fast path without any lock.
        let row = self.store.load(grant).await?.ok_or_else(|| GustoError::UnknownGrant(grant.clone()))?;
        if let GrantStatus::NeedsReauth { reason } = &row.status {
            return Err(GustoError::NeedsReauth { grant: grant.clone(), reason: reason.clone() });
        }
        if usable(&row) {
            return Ok(row.access_token);
        }

        let lock = self.lock_for(grant);
        let _guard = lock.lock().await;
        let mut invalid_grant_seen = false;
        let mut waited_logged = false;
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(GustoError::RefreshContention { grant: grant.clone() });
            }
            let row = self.store.load(grant).await?.ok_or_else(|| GustoError::UnknownGrant(grant.clone()))?;
            if let GrantStatus::NeedsReauth { reason } = &row.status {
                return Err(GustoError::NeedsReauth { grant: grant.clone(), reason: reason.clone() });
            }
            if usable(&row) {
                return Ok(row.access_token);
            }
            let now = Utc::now();
            if let Some(until) = row.refresh_lease_until.filter(|until| *until > now) {
                // Another process is refreshing. While the old token is still valid
                // (refresh-ahead), use it; otherwise wait for the winner's CAS.
                if row.expires_at > now && rejected.is_none_or(|r| r != &row.access_token) {
                    return Ok(row.access_token);
                }
                if !waited_logged {
                    waited_logged = true;
                    tracing::info!(
                        %grant,
                        lease_left_ms = (until - now).num_milliseconds(),
                        "waiting for another process's token refresh (or for its lease to lapse)"
                    );
                }
                tokio::time::sleep(self.cfg.poll_interval).await;
                continue;
            }
            // Take the lease.
            let leased = StoredGrant {
                version: row.version + 1,
                refresh_lease_until: Some(now + chrono_dur(self.cfg.lease_ttl)),
                ..row.clone()
            };
            if !self.store.compare_and_swap(grant, row.version, leased.clone()).await? {
                continue; // someone moved first: re-read
            }
            tracing::debug!(%grant, "refreshing access token");
            let bound = self.cfg.lease_ttl.mul_f64(0.8);
            let Ok(answer) = tokio::time::timeout(bound, self.oauth.refresh(&row.refresh_token)).await else {
                self.release_lease(grant, &leased).await;
                return Err(GustoError::RefreshTimedOut { grant: grant.clone(), secs: bound.as_secs() });
            };
            match answer {
                Ok(tokens) => {
                    let Some(new_refresh) = tokens.refresh_token.clone() else {
                        self.release_lease(grant, &leased).await;
                        return Err(GustoError::OAuth {
                            status: 200,
                            error: "no refresh_token in answer".into(),
                        });
                    };
                    let access = Secret::new(tokens.access_token.clone());
                    let fresh = StoredGrant {
                        access_token: access.clone(),
                        refresh_token: Secret::new(new_refresh),
                        expires_at: tokens.expires_at(),
                        version: leased.version + 1,
                        status: GrantStatus::Active,
                        refresh_lease_until: None,
                    };
                    // Persist BEFORE the new access token is used by anyone.
                    if self.store.compare_and_swap(grant, leased.version, fresh).await? {
                        self.observer.notify(|o| o.token_refreshed(&grant.0));
                        return Ok(access);
                    }
                    // Our lease lapsed and someone else rotated: their token wins and
                    // ours is dropped unused (so it revoked nothing).
                    continue;
                }
                Err(OAuthFailure::InvalidGrant) => {
                    // Another process may have rotated in between: re-read first.
                    let now_row = self.store.load(grant).await?;
                    let rotated = now_row.as_ref().is_some_and(|r| r.refresh_token != row.refresh_token);
                    if rotated && !invalid_grant_seen {
                        invalid_grant_seen = true;
                        continue;
                    }
                    let reason = "refresh token rejected with invalid_grant".to_owned();
                    self.store.mark_needs_reauth(grant, &reason).await?;
                    tracing::error!(%grant, "grant needs re-authorisation");
                    return Err(GustoError::NeedsReauth { grant: grant.clone(), reason });
                }
                Err(OAuthFailure::Other(e)) => {
                    self.release_lease(grant, &leased).await;
                    return Err(e);
                }
            }
        }
    }

    async fn release_lease(&self, grant: &GrantId, leased: &StoredGrant) {
        let released =
            StoredGrant { version: leased.version + 1, refresh_lease_until: None, ..leased.clone() };
        if let Err(e) = self.store.compare_and_swap(grant, leased.version, released).await {
            tracing::warn!(%grant, error = %e, "could not release refresh lease; it will lapse");
        }
    }

    /// A system access token (cached until five minutes before expiry).
    pub async fn system_token(&self) -> Result<Secret, GustoError> {
        let mut cached = self.system.lock().await;
        if let Some((token, exp)) = cached.as_ref() {
            if *exp - chrono_dur(self.cfg.refresh_ahead) > Utc::now() {
                return Ok(token.clone());
            }
        }
        let tokens = self.oauth.system_token().await?;
        let token = Secret::new(tokens.access_token.clone());
        *cached = Some((token.clone(), tokens.expires_at()));
        Ok(token)
    }

    /// Forgets the cached system token (after a 401).
    pub async fn drop_system_token(&self) {
        *self.system.lock().await = None;
    }
}
