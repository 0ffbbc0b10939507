//! `employee_links`: Gusto employee to Visma employee number, and the last applied
//! command hash (the writer's idempotency record).

use crate::{now_ms, sqlite_sql, Backend, Store, StoreError};
use serde::Serialize;

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

type LinkTuple = (String, String, String, String, String, Option<String>, Option<i64>, i64);

impl Store {
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
        let stored = self.put_link_row(link).await;
        self.noted(stored)
    }

    async fn put_link_row(&self, link: &EmployeeLink) -> Result<(), StoreError> {
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
