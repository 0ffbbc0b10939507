//! Step 4's Visma side: read the employee, write what differs (update, or create when
//! absent), within the tenant's pacing and with its memory of which employees are there.

use crate::fields::{create_dto, fields_from_dto, update_dto};
use crate::Writer;
use mlc_domain::{diff_fields, FieldChange};
use mlc_proto::v1::{VismaEmployeeFields, VismaStatus};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;
use visma::{EmployeeDto, VismaClient, VismaError};

/// One Visma tenant: its client and what the writer remembers about it.
pub(crate) struct Tenant {
    pub(crate) client: Arc<VismaClient>,
    /// What the writer last learnt of an employee number, and when: absent (a GET answered
    /// 404) or present (created, or read). Within the TTL the writer acts on it instead of
    /// repeating a request that would fail, which Visma throttles (the same failing
    /// request twice in five minutes): an absent one goes straight to the create (itself
    /// idempotent); a present one whose link could not be stored (the store refused the
    /// write after the create) is read and updated, never created again.
    pub(crate) known: Mutex<HashMap<String, (Presence, Instant)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    Absent,
    Present,
}

impl Tenant {
    pub(crate) fn new(client: Arc<VismaClient>) -> Self {
        Self { client, known: Mutex::new(HashMap::new()) }
    }

    /// What was learnt of `cd` within `ttl`.
    pub(crate) fn known(&self, cd: &str, ttl: Duration) -> Option<Presence> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.retain(|_, (_, at)| at.elapsed() < ttl);
        known.get(cd).map(|(p, _)| *p)
    }

    pub(crate) fn learn(&self, cd: &str, presence: Presence) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(cd.to_string(), (presence, Instant::now()));
    }

    /// Path prefix for call summaries, as the client sends it.
    pub(crate) fn api_prefix(&self) -> &'static str {
        if self.client.config().legacy.is_some() {
            "/API/controller/api/v1"
        } else {
            "/v1"
        }
    }
}

/// What [`Writer::apply`] did.
pub(crate) struct Applied {
    pub(crate) created: bool,
    /// A create or update reached Visma in this delivery.
    pub(crate) wrote: bool,
    pub(crate) changed: Vec<&'static str>,
    /// Link origin when the employee had none: `created` or `found`.
    pub(crate) origin: &'static str,
}

pub(crate) enum ApplyError {
    Visma(VismaError),
    /// The tenant's rate budget is nearly spent until this long from now.
    Paced(Duration),
    /// Visma contradicted itself (e.g. "exists" then 404); worth another try later.
    Inconsistent(String),
}

impl Writer {
    /// Reads the employee (`linked`) or creates it (not linked yet) and writes what differs:
    /// update, create, or nothing.
    pub(crate) async fn apply(
        &self,
        tenant: &Tenant,
        cd: &str,
        linked: bool,
        target: &VismaEmployeeFields,
        calls: &mut Vec<String>,
    ) -> Result<Applied, ApplyError> {
        let mut origin = "found";
        // An employee we never linked is most likely new: create first. A GET would answer
        // 404, and the memory of that 404 dies with the process, so a writer restarted
        // mid-batch would repeat the same failing GET and draw Visma's throttle (the same
        // failing request twice in five minutes). A create of an existing employee is
        // refused as a duplicate, once, and then read and updated.
        let read_first = match tenant.known(cd, self.retry.absent_ttl) {
            Some(Presence::Absent) => false,
            Some(Presence::Present) => true,
            None => linked,
        };
        let mut current = if read_first { self.get(tenant, cd, calls).await? } else { None };
        if current.is_none() {
            let body = create_dto(target);
            match self
                .visma_call(
                    tenant,
                    calls,
                    "POST",
                    "/employee".into(),
                    // Spec 2026 answers 201 with an ETag, Spec 2025 200 without.
                    |c: &visma::Created| if c.etag.is_some() { "201" } else { "200" }.into(),
                    tenant.client.create_employee(&body),
                )
                .await
            {
                Ok(_) => {
                    tenant.learn(cd, Presence::Present);
                    return Ok(Applied {
                        created: true,
                        wrote: true,
                        changed: Vec::new(),
                        origin: "created",
                    });
                }
                // Someone (we, before a crash) created it: read it and update it instead.
                Err(ApplyError::Visma(VismaError::DuplicateEmployee { .. })) => {
                    tenant.learn(cd, Presence::Present);
                    current = self.get(tenant, cd, calls).await?;
                    if current.is_none() {
                        return Err(ApplyError::Inconsistent(
                            "Visma refused the create as a duplicate but the employee cannot be read".into(),
                        ));
                    }
                    origin = "found";
                }
                Err(e) => return Err(e),
            }
        }

        let mut puts = 0;
        while let Some(dto) = current {
            let now = fields_from_dto(&dto, cd);
            let mut want = target.clone();
            if want.status() == VismaStatus::Unspecified {
                want.status = now.status;
            }
            let changes: Vec<FieldChange> =
                diff_fields(&now, &want).into_iter().filter(|c| c.field != "employee_cd").collect();
            if changes.is_empty() {
                return Ok(Applied { created: false, wrote: puts > 0, changed: Vec::new(), origin });
            }
            let body = update_dto(&want, &changes);
            let etag = dto.etag();
            let path = format!("/employee/{cd}");
            puts += 1;
            match self
                .visma_call(
                    tenant,
                    calls,
                    "PUT",
                    path,
                    |_| "204".into(),
                    tenant.client.update_employee(cd, &body, etag.as_deref()),
                )
                .await
            {
                Ok(_) => {
                    return Ok(Applied {
                        created: false,
                        wrote: true,
                        changed: changes.iter().map(|c| c.field).collect(),
                        origin,
                    })
                }
                // Changed under us: read the new version and diff again, a bounded number
                // of times (each 412 is a failing request in Visma's throttling book).
                Err(ApplyError::Visma(VismaError::Conflict { .. })) if puts < self.retry.max_puts => {
                    current = self.get(tenant, cd, calls).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApplyError::Inconsistent("the employee disappeared from Visma during the update".into()))
    }

    pub(crate) async fn get(
        &self,
        tenant: &Tenant,
        cd: &str,
        calls: &mut Vec<String>,
    ) -> Result<Option<EmployeeDto>, ApplyError> {
        let found = self
            .visma_call(
                tenant,
                calls,
                "GET",
                format!("/employee/{cd}"),
                |r: &Option<EmployeeDto>| if r.is_some() { "200" } else { "404" }.into(),
                tenant.client.get_employee(cd),
            )
            .await?;
        tenant.learn(cd, if found.is_some() { Presence::Present } else { Presence::Absent });
        Ok(found)
    }

    /// One Visma call: paced, in a client span, counted, and summarised as
    /// `"GET /v1/employee/X 200"` (never bodies or tokens).
    pub(crate) async fn visma_call<T>(
        &self,
        tenant: &Tenant,
        calls: &mut Vec<String>,
        method: &'static str,
        path: String,
        ok_status: impl FnOnce(&T) -> String,
        call: impl Future<Output = Result<T, VismaError>>,
    ) -> Result<T, ApplyError> {
        self.pace(tenant).await?;
        let path = format!("{}{path}", tenant.api_prefix());
        let span = tracing::info_span!(
            "visma.request",
            otel.kind = "client",
            http.request.method = method,
            url.path = %path,
            http.response.status_code = tracing::field::Empty,
        );
        let result = call.instrument(span.clone()).await;
        let status = match &result {
            Ok(v) => ok_status(v),
            Err(e) => error_status(e),
        };
        span.record("http.response.status_code", status.as_str());
        self.metrics.visma_call(method, &status);
        calls.push(format!("{method} {path} {status}"));
        result.map_err(ApplyError::Visma)
    }

    /// Waits for the tenant's rate window to reset when less than `pacing_floor` of it is
    /// left, so our own scheduling never runs into a 429. A long wait is handed back to
    /// JetStream rather than holding the worker (and the other employees behind it).
    pub(crate) async fn pace(&self, tenant: &Tenant) -> Result<(), ApplyError> {
        let Some(rate) = tenant.client.rate_limit() else {
            return Ok(());
        };
        let (Some(limit), Some(remaining)) = (rate.limit, rate.remaining) else {
            return Ok(());
        };
        if (remaining as f64) >= (limit as f64) * self.retry.pacing_floor {
            return Ok(());
        }
        let wait = rate.reset_in().unwrap_or_default();
        if wait.is_zero() {
            return Ok(());
        }
        if wait > self.retry.max_pacing_sleep {
            return Err(ApplyError::Paced(wait));
        }
        tracing::debug!(wait_ms = wait.as_millis() as u64, remaining, limit, "pacing Visma calls");
        self.metrics.paced();
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

pub(crate) fn error_status(e: &VismaError) -> String {
    match e {
        VismaError::Timeout => "timeout".into(),
        VismaError::Connection(_) => "connection".into(),
        VismaError::Decode(_) => "unreadable".into(),
        VismaError::Config(_) => "config".into(),
        other => other.status().map_or_else(|| "error".to_string(), |s| s.to_string()),
    }
}
