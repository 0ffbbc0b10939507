//! `webhook_verification_tokens`: the tokens Gusto sent with its verification
//! handshake, encrypted at rest; the verified ones sign webhooks.

use crate::{now_ms, sqlite_sql, Backend, Store, StoreError};

impl Store {
    /// Keeps a verification token that Gusto POSTed to the gateway.
    pub async fn put_verification_token(&self, token: &str) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO webhook_verification_tokens (token, received_at) VALUES ($1, $2)";
        let sealed = self.key()?.seal(token.as_bytes());
        with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(sealed)
            .bind(now_ms())
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The newest verification token received (verified or not): `(id, token, received_at)`.
    pub async fn latest_verification_token(&self) -> Result<Option<(i64, String, i64)>, StoreError> {
        const SQL: &str =
            "SELECT id, token, received_at FROM webhook_verification_tokens ORDER BY id DESC LIMIT 1";
        let row: Option<(i64, Vec<u8>, i64)> =
            with_pool!(self, SQL, |p, s| sqlx::query_as(s).fetch_optional(p).await?);
        match row {
            None => Ok(None),
            Some((id, sealed, at)) => Ok(Some((id, self.open_text(&sealed)?, at))),
        }
    }

    /// Records that Gusto accepted the token `id`: from now on the gateway trusts it.
    pub async fn mark_verification_token_verified(&self, id: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE webhook_verification_tokens SET verified_at = $1 WHERE id = $2";
        with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(now_ms())
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Tokens Gusto confirmed, newest first: the gateway's signing keys besides config.
    pub async fn verified_tokens(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT token FROM webhook_verification_tokens WHERE verified_at IS NOT NULL \
             ORDER BY id DESC LIMIT 8";
        let rows: Vec<(Vec<u8>,)> = with_pool!(self, SQL, |p, s| sqlx::query_as(s).fetch_all(p).await?);
        rows.into_iter().map(|(sealed,)| self.open_text(&sealed)).collect()
    }

    fn open_text(&self, sealed: &[u8]) -> Result<String, StoreError> {
        String::from_utf8(self.key()?.open(sealed)?)
            .map_err(|_| StoreError::Crypto("token is not UTF-8".into()))
    }
}
