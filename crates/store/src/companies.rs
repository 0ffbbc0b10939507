//! `companies`: who the connector serves, with the pause and first-connect flags.

use crate::{sqlite_sql, Backend, Store, StoreError};
use serde::Serialize;

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

type CompanyTuple = (String, String, String, String, String, bool, bool, Option<String>, i64);

impl Store {
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
