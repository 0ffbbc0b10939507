//! Steps 1 to 4 of the module docs: what to do with one command, as a [`Decision`]
//! (decided, with a [`Report`] to record; or later, as a [`Disposition`]).

use crate::apply::ApplyError;
use crate::fields::target_fields;
use crate::{CrashPoint, Delivery, Step, Writer, WriterError, CRASH_REDELIVERY};
use mlc_bus::delivery::Disposition;
use mlc_bus::BusError;
use mlc_proto::v1::{CommandKind, Outcome, VismaCommand};
use mlc_store::{EmployeeLink, StoreError};
use std::time::Duration;
use visma::VismaError;

/// How long a command waits when the store does not answer or refuses a write.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// What to do with a delivery.
pub(crate) enum Decision {
    /// Decided: record it, then ack.
    Done(Report),
    /// Not now: a wait, or a failure that spends the error budget (never `Ack` or
    /// `Dead`: a decided command is recorded first).
    Later(Disposition),
}

/// A decided command.
pub(crate) struct Report {
    pub(crate) outcome: Outcome,
    pub(crate) employee_cd: String,
    /// Operator-facing, no personal data.
    pub(crate) detail: String,
    /// Names of the fields written, never their values.
    pub(crate) changed: Vec<&'static str>,
    pub(crate) dead_letter: Option<DeadLetterCause>,
}

pub(crate) struct DeadLetterCause {
    /// Label of `mlc_writer_dead_letters`.
    pub(crate) cause: &'static str,
    /// Visma's message or the park reason.
    pub(crate) reason: String,
}

impl Report {
    pub(crate) fn new(outcome: Outcome, employee_cd: &str, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            employee_cd: employee_cd.to_string(),
            detail: detail.into(),
            changed: Vec::new(),
            dead_letter: None,
        }
    }

    pub(crate) fn failed(employee_cd: &str, cause: &'static str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            dead_letter: Some(DeadLetterCause { cause, reason: reason.clone() }),
            ..Self::new(Outcome::Failed, employee_cd, reason)
        }
    }
}

impl Writer {
    /// Steps 1 to 4 of the module docs. Visma calls are summarised into `calls`.
    pub(crate) async fn decide(
        &self,
        d: &Delivery<'_>,
        command: &VismaCommand,
        calls: &mut Vec<String>,
    ) -> Result<Decision, WriterError> {
        // The store down or refusing writes is an outage, not the command's failure: it
        // waits without spending the error budget (as the projector's events do), so a long
        // outage ends in the commands applied, not in dead letters.
        let retry_store = |e: StoreError| {
            tracing::warn!(error = %e, "store unavailable; the command waits");
            Decision::Later(Disposition::Wait { delay: STORE_WAIT, reason: "store" })
        };

        // 1. Superseded by a newer command for the same employee.
        let newest = mlc_bus::last_on_subject::<VismaCommand>(&self.js, &self.commands_stream, d.subject);
        match self.timed(Step::Newest, newest).await {
            Ok(Some(last)) if last.sequence > d.seq => {
                return Ok(Decision::Done(Report::new(
                    Outcome::Superseded,
                    "",
                    format!("a newer command (stream seq {}) exists", last.sequence),
                )));
            }
            // An undecodable newest message cannot supersede anything.
            Ok(_) | Err(BusError::Decode { .. }) => {}
            Err(e) => {
                return Ok(Decision::Later(Disposition::Retry {
                    after: None,
                    reason: "nats",
                    cause: e.to_string(),
                }))
            }
        }

        // 2. Parked by the projector.
        if !command.parked_reason.is_empty() {
            let mut r = Report::new(Outcome::Parked, "", command.parked_reason.clone());
            r.dead_letter = Some(DeadLetterCause { cause: "parked", reason: command.parked_reason.clone() });
            return Ok(Decision::Done(r));
        }
        let kind = command.kind();
        let (Some(fields), CommandKind::Upsert | CommandKind::Deactivate) = (command.fields.as_ref(), kind)
        else {
            return Ok(Decision::Done(Report::failed(
                "",
                "malformed",
                "command has no kind or no target fields",
            )));
        };

        // 3. The company: known, not paused, first connect applied (or employee linked).
        let read_began = std::time::Instant::now();
        let company = match self.store.company(&command.company_uuid).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Ok(Decision::Done(Report::failed(
                    &fields.employee_cd,
                    "unknown_company",
                    "company is not configured in the connector",
                )))
            }
            Err(e) => return Ok(retry_store(e)),
        };
        if company.paused {
            return Ok(Decision::Later(Disposition::Wait {
                delay: self.retry.paused_delay,
                reason: "paused",
            }));
        }
        let link = match self.store.link(&command.company_uuid, &command.employee_uuid).await {
            Ok(l) => l,
            Err(e) => return Ok(retry_store(e)),
        };
        self.metrics.step(Step::StoreRead, read_began.elapsed());
        let waiting = !company.first_connect_applied && link.is_none();
        self.metrics.set_waiting_first_connect(&command.company_uuid, &command.employee_uuid, waiting);
        if waiting {
            return Ok(Decision::Later(Disposition::Wait {
                delay: self.retry.first_connect_delay,
                reason: "first_connect",
            }));
        }
        let tenant_name = if company.visma_tenant.is_empty() {
            command.visma_tenant.as_str()
        } else {
            company.visma_tenant.as_str()
        };
        let Some(tenant) = self.tenants.get(tenant_name) else {
            return Ok(Decision::Done(Report::failed(
                &fields.employee_cd,
                "unknown_tenant",
                format!("Visma tenant {tenant_name:?} is not configured (visma.tenants)"),
            )));
        };

        // 4. Idempotent apply. The link's hash proves Visma holds this content only for the
        // very command it was stored by (a redelivery after the link, before the ack). A
        // later command with the same content as the link can only follow a command whose
        // link was never stored (the projector emits a command only when it differs from
        // the last one): a rehire after a termination whose writer died after its PUT.
        // Visma may hold the termination, so that command is applied (read, compare).
        let seq = i64::try_from(command.source_snapshot_seq).ok();
        if let Some(l) = link.as_ref().filter(|l| {
            !command.content_hash.is_empty()
                && l.last_command_hash.as_deref() == Some(command.content_hash.as_str())
                && l.last_command_seq == seq
        }) {
            return Ok(Decision::Done(Report::new(
                Outcome::Unchanged,
                &l.employee_cd,
                "already applied (same content hash)",
            )));
        }
        let cd = link.as_ref().map(|l| l.employee_cd.clone()).unwrap_or_else(|| fields.employee_cd.clone());
        if cd.is_empty() {
            return Ok(Decision::Done(Report::failed("", "malformed", "command has no employee number")));
        }
        let target = target_fields(kind, fields, &cd);

        let applied = self.timed(Step::Visma, self.apply(tenant, &cd, link.is_some(), &target, calls)).await;
        let applied = match applied {
            Ok(a) => a,
            Err(ApplyError::Paced(wait)) => {
                return Ok(Decision::Later(Disposition::Wait { delay: wait, reason: "paced" }))
            }
            Err(ApplyError::Visma(e)) if e.is_retryable() || matches!(e, VismaError::Conflict { .. }) => {
                let throttled = matches!(e, VismaError::RateLimited { .. });
                return Ok(Decision::Later(Disposition::Retry {
                    after: e
                        .retry_after()
                        .map(|ra| ra.clamp(Duration::from_secs(1), self.retry.max_retry_after)),
                    reason: if throttled { "visma_throttled" } else { "visma_retryable" },
                    cause: e.to_string(),
                }));
            }
            Err(ApplyError::Visma(e)) => {
                return Ok(Decision::Done(Report::failed(&cd, "visma_rejected", e.to_string())))
            }
            Err(ApplyError::Inconsistent(why)) => {
                return Ok(Decision::Later(Disposition::Retry {
                    after: None,
                    reason: "visma_inconsistent",
                    cause: why,
                }))
            }
        };

        if applied.wrote && self.crash_point == Some(CrashPoint::AfterVismaWrite) {
            tracing::warn!("simulated crash after the Visma write, before link and ack");
            // Delayed, so the redelivery goes to the next writer, not to this one's pulls.
            mlc_bus::delivery::nak(d.msg, CRASH_REDELIVERY).await;
            return Err(WriterError::SimulatedCrash);
        }

        // The link with the new hash, before the ack: a redelivery then stops at step 4.
        let new_link = EmployeeLink {
            company: command.company_uuid.clone(),
            employee_uuid: command.employee_uuid.clone(),
            visma_tenant: tenant_name.to_string(),
            employee_cd: cd.clone(),
            origin: link.as_ref().map(|l| l.origin.clone()).unwrap_or_else(|| applied.origin.to_string()),
            last_command_hash: Some(command.content_hash.clone()),
            last_command_seq: seq,
            updated_at: mlc_bus::now_ms(),
        };
        if let Err(e) = self.timed(Step::Link, self.store.put_link(&new_link)).await {
            return Ok(retry_store(e));
        }
        let report = if applied.changed.is_empty() && !applied.created {
            Report::new(Outcome::Unchanged, &cd, "Visma already holds the target state")
        } else {
            let detail = if applied.created {
                "created".to_string()
            } else {
                format!("updated: {}", applied.changed.join(", "))
            };
            Report { changed: applied.changed, ..Report::new(Outcome::Applied, &cd, detail) }
        };
        Ok(Decision::Done(report))
    }
}
