//! The adapters that join the Gusto client to the connector's store and bus: grants kept
//! in the store, so every process (and replica) shares one refresh token per grant and the
//! refresh stays single-flight across them; and the grant's request window kept in
//! JetStream, so all of them together stay within Gusto's limit.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use gusto::{GrantId, GrantStatus, Secret, StoreError, StoredGrant, TokenStore};
use mlc_store::{GrantRecord, Store};
use std::sync::Arc;

/// [`TokenStore`] over the `oauth_grants` table (tokens encrypted at rest).
pub struct GrantStore {
    store: Arc<Store>,
    /// The company a new grant row belongs to, when the token manager inserts one.
    default_company: String,
}

impl GrantStore {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, default_company: String::new() }
    }

    /// For `mlc company add`: rows inserted through this store belong to `company`.
    pub fn for_company(store: Arc<Store>, company: &str) -> Self {
        Self { store, default_company: company.to_string() }
    }
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_else(Utc::now)
}

fn err(e: mlc_store::StoreError) -> StoreError {
    StoreError(e.to_string())
}

#[async_trait]
impl TokenStore for GrantStore {
    async fn load(&self, grant: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        let Some(row) = self.store.grant(&grant.0).await.map_err(err)? else {
            return Ok(None);
        };
        Ok(Some(StoredGrant {
            access_token: Secret::new(row.access_token),
            refresh_token: Secret::new(row.refresh_token),
            expires_at: ms_to_time(row.expires_at_ms),
            version: row.version,
            status: if row.status == "active" {
                GrantStatus::Active
            } else {
                GrantStatus::NeedsReauth { reason: row.status_reason.unwrap_or_default() }
            },
            refresh_lease_until: row.refresh_lease_until_ms.map(ms_to_time),
        }))
    }

    async fn compare_and_swap(
        &self,
        grant: &GrantId,
        expected_version: i64,
        new: StoredGrant,
    ) -> Result<bool, StoreError> {
        let company = match self.store.grant(&grant.0).await.map_err(err)? {
            Some(row) => row.company,
            None => self.default_company.clone(),
        };
        let (status, reason) = match &new.status {
            GrantStatus::Active => ("active".to_string(), None),
            GrantStatus::NeedsReauth { reason } => ("needs_reauth".to_string(), Some(reason.clone())),
        };
        let record = GrantRecord {
            grant_id: grant.0.clone(),
            company,
            access_token: new.access_token.expose().to_string(),
            refresh_token: new.refresh_token.expose().to_string(),
            expires_at_ms: new.expires_at.timestamp_millis(),
            version: new.version,
            status,
            status_reason: reason,
            refresh_lease_until_ms: new.refresh_lease_until.map(|t| t.timestamp_millis()),
        };
        self.store.compare_and_swap_grant(expected_version, &record).await.map_err(err)
    }

    async fn mark_needs_reauth(&self, grant: &GrantId, reason: &str) -> Result<(), StoreError> {
        self.store.set_grant_status(&grant.0, "needs_reauth", Some(reason)).await.map_err(err)
    }
}

/// The Gusto budget shared by replicas: [`mlc_bus::ratelimit::SharedWindow`] behind the
/// client's [`gusto::SharedLimit`].
pub struct JetStreamLimit(pub mlc_bus::ratelimit::SharedWindow);

#[async_trait]
impl gusto::SharedLimit for JetStreamLimit {
    async fn acquire(&self, key: &str) -> Result<(), String> {
        self.0.acquire(key).await.map_err(|e| e.to_string())
    }
}

/// The CLI's share of the budget: a slot of its own half-size window first, then one of
/// the grant's shared window, so CLI commands together hold at most half of the window
/// and the running sync keeps the rest.
pub struct CliLimit {
    pub cli: mlc_bus::ratelimit::SharedWindow,
    pub shared: mlc_bus::ratelimit::SharedWindow,
}

#[async_trait]
impl gusto::SharedLimit for CliLimit {
    async fn acquire(&self, key: &str) -> Result<(), String> {
        self.cli.acquire(key).await.map_err(|e| e.to_string())?;
        self.shared.acquire(key).await.map_err(|e| e.to_string())
    }
}
