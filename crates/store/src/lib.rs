//! The connector's relational store, on SQLite (embedded default, WAL) or PostgreSQL
//! (production), with the same behaviour on both:
//!
//! - `audit_log`: append-only record of every transaction, ordered by a global position;
//!   an append with an event id already present is a no-op.
//! - `employee_links`: Gusto employee to Visma employee number and the last applied
//!   command hash (the writer's idempotency record).
//! - `oauth_grants`: Gusto tokens encrypted at rest, with a version for compare-and-swap.
//! - `companies` and `webhook_verification_tokens`.
//!
//! SQL is written once with `$n` placeholders; SQLite gets them as `?n`, which it
//! understands natively.

mod crypto;

pub use crypto::EncryptionKey;

use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL must start with sqlite: or postgres:, got {0:?}")]
    BadUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("token encryption: {0}")]
    Crypto(String),
    #[error("no store encryption key is configured (store.encryption_key / MLC_STORE_ENCRYPTION_KEY); tokens cannot be stored or read")]
    NoKey,
    #[error("stored JSON is not valid: {0}")]
    Json(#[from] serde_json::Error),
}

enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool on one of the two back ends, plus the token encryption key.
pub struct Store {
    backend: Backend,
    key: Option<EncryptionKey>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// Runs `$body` with `$p` bound to the pool and `$s` to the SQL in the back end's dialect.
macro_rules! with_pool {
    ($store:expr, $sql:expr, |$p:ident, $s:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($p) => {
                let owned = sqlite_sql($sql);
                let $s: &str = owned.as_str();
                $body
            }
            Backend::Postgres($p) => {
                let $s: &str = $sql;
                $body
            }
        }
    };
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// One audit record to append.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Unique per transaction: a repeated append with the same id changes nothing.
    pub event_id: String,
    /// What happened, e.g. `webhook.accepted`, `gusto.call`, `snapshot.appended`,
    /// `command.emitted`, `visma.applied`.
    pub kind: String,
    pub company: Option<String>,
    pub employee: Option<String>,
    /// Structured detail; never secrets, never more personal data than the audit needs.
    pub detail: serde_json::Value,
    pub trace_id: Option<String>,
}

/// A stored audit record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRow {
    pub position: i64,
    pub event_id: String,
    pub kind: String,
    pub company: Option<String>,
    pub employee: Option<String>,
    pub detail: serde_json::Value,
    pub trace_id: Option<String>,
    pub recorded_at: i64,
}

/// Which audit rows to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub company: Option<String>,
    pub employee: Option<String>,
    pub after_position: i64,
    pub limit: i64,
}

/// A Gusto employee linked to a Visma employee number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmployeeLink {
    pub company: String,
    pub employee_uuid: String,
    pub visma_tenant: String,
    pub employee_cd: String,
    /// `created` by the writer, `matched` by `mlc match`, `found` when a create met an
    /// existing number.
    pub origin: String,
    pub last_command_hash: Option<String>,
    pub last_command_seq: Option<i64>,
    pub updated_at: i64,
}

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

/// A company the connector serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Company {
    pub company_uuid: String,
    pub name: String,
    pub grant_id: String,
    pub visma_tenant: String,
    pub mapping_path: String,
    pub paused: bool,
    pub first_connect_applied: bool,
    pub last_event_uuid: Option<String>,
    pub created_at: i64,
}

type AuditTuple = (i64, String, String, Option<String>, Option<String>, String, Option<String>, i64);

/// An `audit_log` row as both back ends return it; `detail` is JSON text.
fn audit_row(
    (position, event_id, kind, company, employee, detail, trace_id, recorded_at): AuditTuple,
) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        position,
        event_id,
        kind,
        company,
        employee,
        detail: serde_json::from_str(&detail)?,
        trace_id,
        recorded_at,
    })
}
type LinkTuple = (String, String, String, String, String, Option<String>, Option<i64>, i64);
type GrantTuple = (String, String, Vec<u8>, Vec<u8>, i64, i64, String, Option<String>, Option<i64>);
type CompanyTuple = (String, String, String, String, String, bool, bool, Option<String>, i64);

impl Store {
    /// Opens the store named by `url` (`sqlite://path` or `postgres://...`) and brings its
    /// schema up to date.
    pub async fn connect(url: &str, key: Option<EncryptionKey>) -> Result<Store, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            if let Some(path) = url.strip_prefix("sqlite://").filter(|p| !p.starts_with(':')) {
                if let Some(parent) =
                    std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty())
                {
                    let _ = std::fs::create_dir_all(parent);
                }
            }
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
            sqlx::migrate!("../../schemas/sqlite").run(&pool).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            sqlx::migrate!("../../schemas/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::BadUrl(url.chars().take(16).collect()));
        };
        Ok(Store { backend, key })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn key(&self) -> Result<&EncryptionKey, StoreError> {
        self.key.as_ref().ok_or(StoreError::NoKey)
    }

    // ---------------------------------------------------------------- audit log

    /// Appends `entry`; returns its position, or `None` when an entry with the same
    /// event id was already there (a redelivery).
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<Option<i64>, StoreError> {
        const SQL: &str =
            "INSERT INTO audit_log (event_id, kind, company, employee, detail, trace_id, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING RETURNING position";
        let detail = entry.detail.to_string();
        let now = now_ms();
        match &self.backend {
            Backend::Sqlite(pool) => {
                let sql = sqlite_sql(SQL);
                Ok(sqlx::query_scalar::<_, i64>(&sql)
                    .bind(&entry.event_id)
                    .bind(&entry.kind)
                    .bind(&entry.company)
                    .bind(&entry.employee)
                    .bind(&detail)
                    .bind(&entry.trace_id)
                    .bind(now)
                    .fetch_optional(pool)
                    .await?)
            }
            Backend::Postgres(pool) => {
                // Positions come from a sequence; serialising appends keeps commit order
                // equal to position order, so a reader following positions misses nothing.
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7226001)").execute(&mut *tx).await?;
                let pos = sqlx::query_scalar::<_, i64>(SQL)
                    .bind(&entry.event_id)
                    .bind(&entry.kind)
                    .bind(&entry.company)
                    .bind(&entry.employee)
                    .bind(&detail)
                    .bind(&entry.trace_id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(pos)
            }
        }
    }

    /// Reads audit rows in position order.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        const SQL: &str = "SELECT position, event_id, kind, company, employee, detail, trace_id, recorded_at \
             FROM audit_log WHERE position > $1 AND ($2 IS NULL OR company = $2) AND ($3 IS NULL OR employee = $3) \
             ORDER BY position LIMIT $4";
        let limit = if q.limit <= 0 { 1000 } else { q.limit };
        let rows: Vec<AuditTuple> = with_pool!(self, SQL, |p, s| sqlx::query_as(s)
            .bind(q.after_position)
            .bind(&q.company)
            .bind(&q.employee)
            .bind(limit)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(audit_row).collect()
    }

    /// The newest audit rows whose kind starts with `kind_prefix` (e.g. `event.`), newest
    /// first, of one company or all (for the console's deliveries page).
    pub async fn recent_audit(
        &self,
        kind_prefix: &str,
        company: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        const SQL: &str =
            "SELECT position, event_id, kind, company, employee, detail, trace_id, recorded_at \
             FROM audit_log WHERE substr(kind, 1, length(CAST($1 AS TEXT))) = CAST($1 AS TEXT) \
             AND ($2 IS NULL OR company = $2) ORDER BY position DESC LIMIT $3";
        let rows: Vec<AuditTuple> = with_pool!(self, SQL, |p, s| sqlx::query_as(s)
            .bind(kind_prefix)
            .bind(company)
            .bind(limit.max(1))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(audit_row).collect()
    }

    /// The newest audit row of `kind` for `company` (for `mlc status`).
    pub async fn last_audit(&self, company: &str, kind: &str) -> Result<Option<AuditRow>, StoreError> {
        const SQL: &str =
            "SELECT position, event_id, kind, company, employee, detail, trace_id, recorded_at \
             FROM audit_log WHERE company = $1 AND kind = $2 ORDER BY position DESC LIMIT 1";
        let row: Option<AuditTuple> = with_pool!(self, SQL, |p, s| sqlx::query_as(s)
            .bind(company)
            .bind(kind)
            .fetch_optional(p)
            .await?);
        row.map(audit_row).transpose()
    }

    /// Counts audit rows of one kind (for status and tests).
    pub async fn count_audit(&self, kind: &str) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM audit_log WHERE kind = $1";
        Ok(with_pool!(self, SQL, |p, s| sqlx::query_scalar::<_, i64>(s).bind(kind).fetch_one(p).await?))
    }

    // ---------------------------------------------------------------- employee links

    pub async fn link(&self, company: &str, employee_uuid: &str) -> Result<Option<EmployeeLink>, StoreError> {
        const SQL: &str =
            "SELECT company, employee_uuid, visma_tenant, employee_cd, origin, last_command_hash, \
             last_command_seq, updated_at FROM employee_links WHERE company = $1 AND employee_uuid = $2";
        let row: Option<LinkTuple> = with_pool!(self, SQL, |p, s| sqlx::query_as(s)
            .bind(company)
            .bind(employee_uuid)
            .fetch_optional(p)
            .await?);
        Ok(row.map(link_from))
    }

    pub async fn links(&self, company: &str) -> Result<Vec<EmployeeLink>, StoreError> {
        const SQL: &str =
            "SELECT company, employee_uuid, visma_tenant, employee_cd, origin, last_command_hash, \
             last_command_seq, updated_at FROM employee_links WHERE company = $1 ORDER BY employee_uuid";
        let rows: Vec<LinkTuple> =
            with_pool!(self, SQL, |p, s| sqlx::query_as(s).bind(company).fetch_all(p).await?);
        Ok(rows.into_iter().map(link_from).collect())
    }

    /// Creates or replaces the link of one employee.
    pub async fn put_link(&self, link: &EmployeeLink) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO employee_links (company, employee_uuid, visma_tenant, employee_cd, origin, \
             last_command_hash, last_command_seq, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (company, employee_uuid) DO UPDATE SET visma_tenant = excluded.visma_tenant, \
             employee_cd = excluded.employee_cd, origin = excluded.origin, \
             last_command_hash = excluded.last_command_hash, last_command_seq = excluded.last_command_seq, \
             updated_at = excluded.updated_at";
        with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(&link.company)
            .bind(&link.employee_uuid)
            .bind(&link.visma_tenant)
            .bind(&link.employee_cd)
            .bind(&link.origin)
            .bind(&link.last_command_hash)
            .bind(link.last_command_seq)
            .bind(now_ms())
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    // ---------------------------------------------------------------- OAuth grants

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

    // ---------------------------------------------------------------- companies

    pub async fn put_company(&self, c: &Company) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO companies (company_uuid, name, grant_id, visma_tenant, mapping_path, paused, \
             first_connect_applied, last_event_uuid, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (company_uuid) DO UPDATE SET name = excluded.name, grant_id = excluded.grant_id, \
             visma_tenant = excluded.visma_tenant, mapping_path = excluded.mapping_path, paused = excluded.paused, \
             first_connect_applied = excluded.first_connect_applied";
        with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(&c.company_uuid)
            .bind(&c.name)
            .bind(&c.grant_id)
            .bind(&c.visma_tenant)
            .bind(&c.mapping_path)
            .bind(c.paused)
            .bind(c.first_connect_applied)
            .bind(&c.last_event_uuid)
            .bind(c.created_at)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn company(&self, company_uuid: &str) -> Result<Option<Company>, StoreError> {
        const SQL: &str = "SELECT company_uuid, name, grant_id, visma_tenant, mapping_path, paused, \
             first_connect_applied, last_event_uuid, created_at FROM companies WHERE company_uuid = $1";
        let row: Option<CompanyTuple> =
            with_pool!(self, SQL, |p, s| sqlx::query_as(s).bind(company_uuid).fetch_optional(p).await?);
        Ok(row.map(company_from))
    }

    pub async fn companies(&self) -> Result<Vec<Company>, StoreError> {
        const SQL: &str = "SELECT company_uuid, name, grant_id, visma_tenant, mapping_path, paused, \
             first_connect_applied, last_event_uuid, created_at FROM companies ORDER BY name, company_uuid";
        let rows: Vec<CompanyTuple> = with_pool!(self, SQL, |p, s| sqlx::query_as(s).fetch_all(p).await?);
        Ok(rows.into_iter().map(company_from).collect())
    }

    pub async fn set_company_paused(&self, company_uuid: &str, paused: bool) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE companies SET paused = $1 WHERE company_uuid = $2";
        let n = with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(paused)
            .bind(company_uuid)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    pub async fn set_first_connect_applied(
        &self,
        company_uuid: &str,
        applied: bool,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE companies SET first_connect_applied = $1 WHERE company_uuid = $2";
        let n = with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(applied)
            .bind(company_uuid)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Remembers the newest Gusto event seen for a company: the catch-up cursor.
    pub async fn set_last_event_uuid(&self, company_uuid: &str, event_uuid: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE companies SET last_event_uuid = $1 WHERE company_uuid = $2";
        with_pool!(self, SQL, |p, s| sqlx::query(s)
            .bind(event_uuid)
            .bind(company_uuid)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    // ---------------------------------------------------------------- webhook handshake

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

    /// Closes the pool, flushing SQLite's WAL.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(p) => p.close().await,
            Backend::Postgres(p) => p.close().await,
        }
    }
}

fn link_from(t: LinkTuple) -> EmployeeLink {
    let (
        company,
        employee_uuid,
        visma_tenant,
        employee_cd,
        origin,
        last_command_hash,
        last_command_seq,
        updated_at,
    ) = t;
    EmployeeLink {
        company,
        employee_uuid,
        visma_tenant,
        employee_cd,
        origin,
        last_command_hash,
        last_command_seq,
        updated_at,
    }
}

fn company_from(t: CompanyTuple) -> Company {
    let (
        company_uuid,
        name,
        grant_id,
        visma_tenant,
        mapping_path,
        paused,
        first_connect_applied,
        last_event_uuid,
        created_at,
    ) = t;
    Company {
        company_uuid,
        name,
        grant_id,
        visma_tenant,
        mapping_path,
        paused,
        first_connect_applied,
        last_event_uuid,
        created_at,
    }
}
