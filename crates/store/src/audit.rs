//! `audit_log`: the append-only record of every transaction, ordered by a global
//! position; an append with an event id already present is a no-op. What happened is an
//! [`AuditKind`]; an [`AuditEntry`] is built from one.

use crate::{now_ms, sqlite_sql, Backend, Store, StoreError};
use mlc_proto::v1::Outcome;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// What an audit record says happened. The stored strings ([`AuditKind::as_str`]) are
/// a contract with their readers (`mlc explain`, `mlc status`, the console, replays of an
/// old log): a kind is never renamed, only added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// The projector fetched the employee a Gusto event names (`event.hydrated`).
    EventHydrated,
    /// A Gusto event the projector does not act on (`event.ignored`).
    EventIgnored,
    /// A Gusto event held back, e.g. Gusto refused the API version (`event.parked`).
    EventParked,
    /// A new employee state on EMPLOYEE_STATE (`snapshot.appended`).
    SnapshotAppended,
    /// A command for the writer, or a mapping that parked one (`command.emitted`).
    CommandEmitted,
    /// The writer's outcome for a command: `visma.applied`, `visma.unchanged`,
    /// `visma.failed`, `visma.parked`, `visma.superseded`.
    Outcome(Outcome),
    /// `mlc match` linked a Gusto employee to an existing Visma one (`first_connect.link`).
    FirstConnectLink,
    /// The first-connect review was applied for a company (`first_connect.applied`).
    FirstConnectApplied,
    /// `mlc reconcile --repair` re-emitted an employee (`reconcile.repair`).
    ReconcileRepair,
}

impl AuditKind {
    /// Every kind, for readers that list or parse them.
    pub const ALL: [AuditKind; 14] = [
        AuditKind::EventHydrated,
        AuditKind::EventIgnored,
        AuditKind::EventParked,
        AuditKind::SnapshotAppended,
        AuditKind::CommandEmitted,
        AuditKind::Outcome(Outcome::Applied),
        AuditKind::Outcome(Outcome::Unchanged),
        AuditKind::Outcome(Outcome::Failed),
        AuditKind::Outcome(Outcome::Parked),
        AuditKind::Outcome(Outcome::Superseded),
        AuditKind::Outcome(Outcome::Unspecified),
        AuditKind::FirstConnectLink,
        AuditKind::FirstConnectApplied,
        AuditKind::ReconcileRepair,
    ];

    /// The string stored in `audit_log.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::EventHydrated => "event.hydrated",
            AuditKind::EventIgnored => "event.ignored",
            AuditKind::EventParked => "event.parked",
            AuditKind::SnapshotAppended => "snapshot.appended",
            AuditKind::CommandEmitted => "command.emitted",
            AuditKind::Outcome(o) => match o {
                Outcome::Applied => "visma.applied",
                Outcome::Unchanged => "visma.unchanged",
                Outcome::Failed => "visma.failed",
                Outcome::Parked => "visma.parked",
                Outcome::Superseded => "visma.superseded",
                Outcome::Unspecified => "visma.unspecified",
            },
            AuditKind::FirstConnectLink => "first_connect.link",
            AuditKind::FirstConnectApplied => "first_connect.applied",
            AuditKind::ReconcileRepair => "reconcile.repair",
        }
    }

    /// The kind a stored string names (`None` for kinds written by others, e.g.
    /// `console.*`).
    pub fn parse(s: &str) -> Option<AuditKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl AsRef<str> for AuditKind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit record to append.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Unique per transaction: a repeated append with the same id changes nothing.
    pub event_id: String,
    /// What happened: an [`AuditKind`]'s string (built by [`AuditEntry::new`]), or a
    /// kind of another writer's (`console.<action>`).
    pub kind: String,
    pub company: Option<String>,
    pub employee: Option<String>,
    /// Structured detail; never secrets, never more personal data than the audit needs.
    pub detail: serde_json::Value,
    pub trace_id: Option<String>,
}

impl AuditEntry {
    /// A record of `kind` with the id `event_id` (unique per transaction: `event:<uuid>`,
    /// `snapshot:<subject>:<seq>`, `outcome:<command>:<outcome>`, ...), no company, no
    /// employee, an empty detail and no trace; the methods below add them.
    pub fn new(event_id: impl Into<String>, kind: AuditKind) -> AuditEntry {
        AuditEntry {
            event_id: event_id.into(),
            kind: kind.as_str().to_string(),
            company: None,
            employee: None,
            detail: serde_json::json!({}),
            trace_id: None,
        }
    }

    pub fn for_company(mut self, company: impl Into<String>) -> Self {
        self.company = Some(company.into());
        self
    }

    pub fn for_employee(mut self, employee: impl Into<String>) -> Self {
        self.employee = Some(employee.into());
        self
    }

    /// Structured detail; never secrets, never more personal data than the audit needs.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// The W3C trace id of the work this record belongs to, when there is one.
    pub fn with_trace_id(mut self, trace_id: Option<String>) -> Self {
        self.trace_id = trace_id;
        self
    }
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

/// Rows per statement of [`Store::append_audits`]. Each statement is one commit, so one
/// take of SQLite's write lock, held while the rows go in (1,000 rows in two statements:
/// 6-10 ms). Measured on 12-04 and not kept, when a row was still seven parameters:
/// statements of 100
/// took the lock five times as often and the writer's link writes, finding it taken,
/// slept in the busy handler (`freshness` 500/s p99 2.0 s and 11.8 s); the 100-row
/// statements in one transaction passed that, and left the writer not ready for over a
/// minute after a disk-full moment (`the_sqlite_disk_full_for_a_moment`, twice).
const AUDIT_ROWS_PER_STATEMENT: usize = 500;

/// [`Store::append_audits`]' statement on each back end: the rows of `$1`, a JSON array
/// of `[event_id, kind, company, employee, detail, trace_id]` arrays, inserted in array
/// order (positions follow it), each recorded at `$2`.
const SQLITE_ROWS: &str =
    "INSERT INTO audit_log (event_id, kind, company, employee, detail, trace_id, recorded_at) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, ?2 \
     FROM json_each(?1) WHERE true ORDER BY key ON CONFLICT (event_id) DO NOTHING";
const POSTGRES_ROWS: &str =
    "INSERT INTO audit_log (event_id, kind, company, employee, detail, trace_id, recorded_at) \
     SELECT r ->> 0, r ->> 1, r ->> 2, r ->> 3, r ->> 4, r ->> 5, $2 \
     FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(r, i) ORDER BY i \
     ON CONFLICT (event_id) DO NOTHING";

/// The rows waiting for [`Store::record_audit`]'s next group write, and whether one runs.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<GroupState>,
}

#[derive(Default)]
struct GroupState {
    waiting: Vec<(Vec<AuditEntry>, Reply)>,
    writing: bool,
}

/// How a caller of [`Store::record_audits`] learns its rows' fate.
type Reply = oneshot::Sender<Result<(), String>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

impl Store {
    /// Appends `entry`; returns its position, or `None` when an entry with the same
    /// event id was already there (a redelivery).
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<Option<i64>, StoreError> {
        let appended = self.append_audit_row(entry).await;
        self.noted(appended)
    }

    async fn append_audit_row(&self, entry: &AuditEntry) -> Result<Option<i64>, StoreError> {
        const SQL: &str =
            "INSERT INTO audit_log (event_id, kind, company, employee, detail, trace_id, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING RETURNING position";
        let detail = entry.detail.to_string();
        let now = now_ms();
        match &self.backend {
            Backend::Sqlite(pool) => {
                // Stepped to the end (`fetch_all`), so the commit's answer is the
                // statement's: SQLite commits an autocommit statement when it finishes, and
                // `fetch_optional` stops at the RETURNING row and resets the statement,
                // which drops a failed commit without a word. On a full disk every append
                // said "stored" and none was (tests/disk_full.rs: 200 of 200).
                let sql = sqlite_sql(SQL);
                let positions = sqlx::query_scalar::<_, i64>(&sql)
                    .bind(&entry.event_id)
                    .bind(&entry.kind)
                    .bind(&entry.company)
                    .bind(&entry.employee)
                    .bind(&detail)
                    .bind(&entry.trace_id)
                    .bind(now)
                    .fetch_all(pool)
                    .await?;
                Ok(positions.first().copied())
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

    /// Appends `entries` in order, in statements of `AUDIT_ROWS_PER_STATEMENT` (500) rows;
    /// returns how many were new (an entry whose event id is there already is skipped, as
    /// in [`Store::append_audit`]). One statement is one commit: a batch of a thousand
    /// event rows costs a few commits, not a thousand (1.2 ms each on SQLite, so the
    /// projector's acks of a burst waited 0.6 s for their rows). On an error some earlier
    /// statements may have been stored; appending the same entries again is a no-op for
    /// those.
    pub async fn append_audits(&self, entries: &[AuditEntry]) -> Result<usize, StoreError> {
        let mut appended = 0;
        for chunk in entries.chunks(AUDIT_ROWS_PER_STATEMENT) {
            let stored = self.append_audit_rows(chunk).await;
            appended += self.noted(stored)?;
        }
        Ok(appended)
    }

    async fn append_audit_rows(&self, entries: &[AuditEntry]) -> Result<usize, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        // The rows go in as one JSON array, one parameter: through sqlx a statement's cost
        // grew faster than its parameters (seven a row): 1,000 rows in two statements of
        // 3,500 parameters took 32-43 ms on SQLite, as two arrays 6-10 ms (PostgreSQL
        // 13-26 ms either way). No RETURNING: only the count is wanted, and the
        // rows-affected count is it (a skipped repeat changes nothing).
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!([
                    e.event_id,
                    e.kind,
                    e.company,
                    e.employee,
                    e.detail.to_string(),
                    e.trace_id
                ])
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        let now = now_ms();
        let affected = match &self.backend {
            Backend::Sqlite(pool) => {
                // One autocommit statement, stepped to its end (`execute`): the commit's
                // answer is the statement's, as in `append_audit_row`.
                sqlx::query(SQLITE_ROWS).bind(rows).bind(now).execute(pool).await?.rows_affected()
            }
            Backend::Postgres(pool) => {
                // Serialised like `append_audit_row`, so commit order is position order.
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7226001)").execute(&mut *tx).await?;
                let affected =
                    sqlx::query(POSTGRES_ROWS).bind(rows).bind(now).execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                affected
            }
        };
        Ok(usize::try_from(affected).unwrap_or(usize::MAX))
    }

    /// Appends `entry` together with the rows other tasks record at the same moment: one
    /// write (one commit) for all of them, and each caller returns once its row is stored.
    /// While a write runs, the rows that arrive wait for the next one, so under load the
    /// rows of many concurrent messages share a commit (SQLite commits one at a time, so
    /// a commit per row made the audit trail the pipeline's queue). The write runs in its
    /// own task: a caller that is cancelled does not cancel the others' rows.
    pub async fn record_audit(self: &Arc<Self>, entry: AuditEntry) -> Result<(), StoreError> {
        self.record_audits(vec![entry]).await
    }

    /// [`Store::record_audit`] for several rows of one caller, kept together and in order.
    pub async fn record_audits(self: &Arc<Self>, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut st = lock(&self.group.state);
            st.waiting.push((entries, tx));
            !std::mem::replace(&mut st.writing, true)
        };
        if lead {
            let store = self.clone();
            tokio::spawn(async move { store.write_groups().await });
        }
        match rx.await {
            Ok(r) => r.map_err(StoreError::Grouped),
            Err(_) => Err(StoreError::Grouped("the write was abandoned".into())),
        }
    }

    /// Writes what is waiting, group after group, until nothing is.
    async fn write_groups(&self) {
        loop {
            let group = {
                let mut st = lock(&self.group.state);
                if st.waiting.is_empty() {
                    st.writing = false;
                    return;
                }
                std::mem::take(&mut st.waiting)
            };
            let (entries, waiters): (Vec<Vec<AuditEntry>>, Vec<_>) = group.into_iter().unzip();
            let entries: Vec<AuditEntry> = entries.into_iter().flatten().collect();
            let result = self.append_audits(&entries).await.map(|_| ()).map_err(|e| e.to_string());
            for w in waiters {
                let _ = w.send(result.clone());
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
    pub async fn last_audit(
        &self,
        company: &str,
        kind: impl AsRef<str>,
    ) -> Result<Option<AuditRow>, StoreError> {
        let kind = kind.as_ref();
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
    pub async fn count_audit(&self, kind: impl AsRef<str>) -> Result<i64, StoreError> {
        let kind = kind.as_ref();
        const SQL: &str = "SELECT COUNT(*) FROM audit_log WHERE kind = $1";
        Ok(with_pool!(self, SQL, |p, s| sqlx::query_scalar::<_, i64>(s).bind(kind).fetch_one(p).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored strings are what `mlc explain`, the console and old logs read.
    #[test]
    fn kinds_keep_their_stored_strings() {
        let stored: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            stored,
            [
                "event.hydrated",
                "event.ignored",
                "event.parked",
                "snapshot.appended",
                "command.emitted",
                "visma.applied",
                "visma.unchanged",
                "visma.failed",
                "visma.parked",
                "visma.superseded",
                "visma.unspecified",
                "first_connect.link",
                "first_connect.applied",
                "reconcile.repair",
            ]
        );
        for k in AuditKind::ALL {
            assert_eq!(AuditKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(AuditKind::parse("console.pause"), None);
    }
}
