//! The connector's relational store, on SQLite (embedded default, WAL) or PostgreSQL
//! (production), with the same behaviour on both:
//!
//! - [`audit`] `audit_log`: append-only record of every transaction, ordered by a global
//!   position; an append with an event id already present is a no-op. What happened is
//!   an [`AuditKind`].
//! - [`links`] `employee_links`: Gusto employee to Visma employee number and the last
//!   applied command hash (the writer's idempotency record).
//! - [`grants`] `oauth_grants`: Gusto tokens encrypted at rest, with a version for
//!   compare-and-swap.
//! - [`companies`] and [`webhook_tokens`] `webhook_verification_tokens`.
//!
//! Each table is one module of `impl Store` methods; this file holds the pool, the two
//! back ends and the migrations. SQL is written once with `$n` placeholders; SQLite gets them as `?n`, which it
//! understands natively.

mod crypto;

pub use crypto::EncryptionKey;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, PgConnection, PgPool, SqlitePool};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL must start with sqlite: or postgres:, got {0:?}")]
    BadUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The first connection failed: what the server (or the network) said.
    #[error("cannot connect to the database: {0}")]
    Unreachable(String),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("token encryption: {0}")]
    Crypto(String),
    #[error("no store encryption key is configured (store.encryption_key / MLC_STORE_ENCRYPTION_KEY); tokens cannot be stored or read")]
    NoKey,
    #[error("stored JSON is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A group write of audit rows failed (what the database said), or was abandoned.
    #[error("audit write: {0}")]
    Grouped(String),
}

/// How long a PostgreSQL query waits for a pooled connection (and a first connection for
/// one); past it the call fails and the caller retries later.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool on one of the two back ends, plus the token encryption key.
pub struct Store {
    backend: Backend,
    key: Option<EncryptionKey>,
    writes: WriteHealth,
    group: audit::GroupCommit,
}

/// Whether the store takes writes, as the last ones found. Reads go on answering while a
/// full disk refuses every write, so a probe that reads cannot tell; the services' own
/// writes (audit rows, links) can.
#[derive(Debug, Default)]
struct WriteHealth {
    /// When the last write failed and the last one succeeded (ms since the epoch, 0: never).
    failed_at: AtomicI64,
    succeeded_at: AtomicI64,
}

/// How long a failed write counts against readiness when no write follows it.
const WRITE_FAILURE_HOLD_MS: i64 = 30_000;

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

pub mod audit;
pub mod companies;
pub mod grants;
pub mod links;
pub mod webhook_tokens;

pub use audit::{AuditEntry, AuditKind, AuditQuery, AuditRow};
pub use companies::Company;
pub use grants::GrantRecord;
pub use links::EmployeeLink;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

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
            let opts = PgConnectOptions::from_str(url)?;
            // One connection on its own first: a pool retries a refused connection until
            // its acquire timeout and then says only that it timed out, while this says at
            // once why (refused, unknown host, authentication). A server still starting up
            // is left to the pool, which waits for it.
            match tokio::time::timeout(PG_ACQUIRE_TIMEOUT, PgConnection::connect_with(&opts)).await {
                Ok(Ok(c)) => {
                    let _ = c.close().await;
                }
                Ok(Err(sqlx::Error::Database(e))) if e.is_transient_in_connect_phase() => {}
                Ok(Err(e)) => return Err(StoreError::Unreachable(e.to_string())),
                Err(_) => {
                    return Err(StoreError::Unreachable(format!(
                        "no answer within {} s",
                        PG_ACQUIRE_TIMEOUT.as_secs()
                    )))
                }
            }
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(PG_ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await?;
            sqlx::migrate!("../../schemas/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::BadUrl(url.chars().take(16).collect()));
        };
        Ok(Store { backend, key, writes: WriteHealth::default(), group: audit::GroupCommit::default() })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Notes how a write went, for [`Store::answers`].
    fn noted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let at = if result.is_ok() { &self.writes.succeeded_at } else { &self.writes.failed_at };
        at.store(now_ms(), Ordering::Relaxed);
        result
    }

    /// Whether the last write failed, and no write succeeded since (within 30 s).
    pub fn writes_failing(&self) -> bool {
        let failed = self.writes.failed_at.load(Ordering::Relaxed);
        failed > 0
            && failed >= self.writes.succeeded_at.load(Ordering::Relaxed)
            && now_ms() - failed < WRITE_FAILURE_HOLD_MS
    }

    /// The readiness probe of a service that writes: a pooled connection answers a query,
    /// and the last write did not fail ([`Store::writes_failing`]).
    pub async fn answers(&self) -> bool {
        !self.writes_failing() && self.company("readiness-probe").await.is_ok()
    }

    fn key(&self) -> Result<&EncryptionKey, StoreError> {
        self.key.as_ref().ok_or(StoreError::NoKey)
    }

    /// Closes the pool, flushing SQLite's WAL.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(p) => p.close().await,
            Backend::Postgres(p) => p.close().await,
        }
    }
}
