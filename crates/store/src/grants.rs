//! `oauth_grants`: Gusto tokens encrypted at rest, with a version for compare-and-swap
//! and a refresh lease.

use crate::{now_ms, sqlite_sql, Backend, Store, StoreError};

/// A Gusto OAuth grant, decrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub grant_id: String,
    pub company: String,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at_ms: i64,
    pub version: i64,
    /// `active` or `needs_reauth`.
    pub status: String,
    pub status_reason: Option<String>,
    /// While set and in the future, one process is refreshing; the others wait.
    pub refresh_lease_until_ms: Option<i64>,
}

impl std::fmt::Debug for GrantRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantRecord")
            .field("grant_id", &self.grant_id)
            .field("company", &self.company)
            .field("access_token", &"***")
            .field("refresh_token", &"***")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("version", &self.version)
            .field("status", &self.status)
            .finish()
    }
}

type GrantTuple = (String, String, Vec<u8>, Vec<u8>, i64, i64, String, Option<String>, Option<i64>);

impl Store {
    /// Stores a new grant (or replaces one after re-authorisation), version 1.
    pub async fn put_grant(
        &self,
        grant_id: &str,
        company: &str,
        access_token: &str,
        refresh_token: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO oauth_grants (grant_id, company, access_token, refresh_token, expires_at, \
             version, status, status_reason, updated_at) VALUES ($1, $2, $3, $4, $5, 1, 'active', NULL, $6) \
             ON CONFLICT (grant_id) DO UPDATE SET company = excluded.company, access_token = excluded.access_token, \
             refresh_token = excluded.refresh_token, expires_at = excluded.expires_at, \
             version = oauth_grants.version + 1, status = 'active', status_reason = NULL, updated_at = excluded.updated_at";
        let key = self.key()?;
        let (a, r) = (key.seal(access_token.as_bytes()), key.seal(refresh_token.as_bytes()));
        with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(grant_id)
            .bind(company)
            .bind(a)
            .bind(r)
            .bind(expires_at_ms)
            .bind(now_ms())
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError> {
        const SQL: &str =
            "SELECT grant_id, company, access_token, refresh_token, expires_at, version, status, \
             status_reason, refresh_lease_until FROM oauth_grants WHERE grant_id = $1";
        let row: Option<GrantTuple> =
            with_pool!(self, SQL, |p, s| sqlx::query_as(s).bind(grant_id).fetch_optional(p).await?);
        let Some((
            grant_id,
            company,
            a,
            r,
            expires_at_ms,
            version,
            status,
            status_reason,
            refresh_lease_until_ms,
        )) = row
        else {
            return Ok(None);
        };
        let key = self.key()?;
        let text =
            |b: Vec<u8>| String::from_utf8(b).map_err(|_| StoreError::Crypto("token is not UTF-8".into()));
        Ok(Some(GrantRecord {
            grant_id,
            company,
            access_token: text(key.open(&a)?)?,
            refresh_token: text(key.open(&r)?)?,
            expires_at_ms,
            version,
            status,
            status_reason,
            refresh_lease_until_ms,
        }))
    }

    /// Writes `new` only if the stored version is `expected_version` (0: no row yet),
    /// storing `new.version` as given. The general compare-and-swap behind the Gusto
    /// token manager's cross-process single flight.
    pub async fn compare_and_swap_grant(
        &self,
        expected_version: i64,
        new: &GrantRecord,
    ) -> Result<bool, StoreError> {
        const INSERT: &str =
            "INSERT INTO oauth_grants (grant_id, company, access_token, refresh_token, expires_at, \
             version, status, status_reason, refresh_lease_until, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (grant_id) DO NOTHING";
        const UPDATE: &str = "UPDATE oauth_grants SET company = $2, access_token = $3, refresh_token = $4, \
             expires_at = $5, version = $6, status = $7, status_reason = $8, refresh_lease_until = $9, \
             updated_at = $10 WHERE grant_id = $1 AND version = $11";
        let key = self.key()?;
        let (a, r) = (key.seal(new.access_token.as_bytes()), key.seal(new.refresh_token.as_bytes()));
        let now = now_ms();
        let n = if expected_version == 0 {
            with_pool!(self, INSERT, |p, s| sqlx::query(s)
                .bind(&new.grant_id)
                .bind(&new.company)
                .bind(a)
                .bind(r)
                .bind(new.expires_at_ms)
                .bind(new.version)
                .bind(&new.status)
                .bind(&new.status_reason)
                .bind(new.refresh_lease_until_ms)
                .bind(now)
                .execute(p)
                .await?
                .rows_affected())
        } else {
            with_pool!(self, UPDATE, |p, s| sqlx::query(s)
                .bind(&new.grant_id)
                .bind(&new.company)
                .bind(a)
                .bind(r)
                .bind(new.expires_at_ms)
                .bind(new.version)
                .bind(&new.status)
                .bind(&new.status_reason)
                .bind(new.refresh_lease_until_ms)
                .bind(now)
                .bind(expected_version)
                .execute(p)
                .await?
                .rows_affected())
        };
        Ok(n == 1)
    }

    /// Replaces the tokens only if the stored version is still `expected_version`: the
    /// compare-and-swap that makes a refresh single-flight across processes. Returns
    /// whether this caller won.
    pub async fn swap_grant_tokens(
        &self,
        grant_id: &str,
        expected_version: i64,
        access_token: &str,
        refresh_token: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE oauth_grants SET access_token = $1, refresh_token = $2, expires_at = $3, \
             version = version + 1, status = 'active', status_reason = NULL, updated_at = $4 \
             WHERE grant_id = $5 AND version = $6";
        let key = self.key()?;
        let (a, r) = (key.seal(access_token.as_bytes()), key.seal(refresh_token.as_bytes()));
        let done = with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(a)
            .bind(r)
            .bind(expires_at_ms)
            .bind(now_ms())
            .bind(grant_id)
            .bind(expected_version)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Marks a grant as unusable until a person re-authorises the company.
    pub async fn set_grant_status(
        &self,
        grant_id: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE oauth_grants SET status = $1, status_reason = $2, version = version + 1, \
             updated_at = $3 WHERE grant_id = $4";
        with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(status)
            .bind(reason)
            .bind(now_ms())
            .bind(grant_id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }
}
