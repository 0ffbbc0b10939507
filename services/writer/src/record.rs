//! Step 6: record a decided command (audit row, dead letter, outcome on `SYNC_OUTCOMES`),
//! then settle it; and the NAKs of the wait and retry paths.

use crate::decide::Report;
use crate::{Delivery, Step, Writer};
use mlc_bus::delivery::{Disposition, Settled};
use mlc_bus::{BusError, StreamKind};
use mlc_proto::v1::{Outcome, SyncOutcome, VismaCommand};
use mlc_store::{AuditEntry, AuditKind, StoreError};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Writer {
    /// Step 6: audit, dead letter, outcome, ack. Any failure leaves the message unacked.
    pub(crate) async fn record(
        &self,
        d: &Delivery<'_>,
        command: &VismaCommand,
        report: &Report,
        calls: &[String],
    ) -> Result<(), RecordError> {
        let name = outcome_name(report.outcome);
        tracing::Span::current().record("outcome", name);
        // The projector always sets a command id; a hand-made command without one still
        // gets ids that cannot collide with another employee's.
        let key =
            if command.command_id.is_empty() { format!("seq-{}", d.seq) } else { command.command_id.clone() };
        let now = mlc_bus::now_ms();
        let latency_ms =
            (command.webhook_received_at_ms > 0).then(|| (now - command.webhook_received_at_ms).max(0));
        let trace = mlc_bus::trace::current();

        let mut detail = serde_json::json!({
            "command_id": command.command_id,
            "stream_seq": d.seq,
            "delivered": d.delivered,
            "employee_cd": report.employee_cd,
            "calls": calls,
            "changed": report.changed,
        });
        if report.outcome == Outcome::Parked {
            // Park reasons are written to name Gusto values, never personal data.
            detail["reason"] = serde_json::Value::from(report.detail.clone());
        }
        if let Some(dl) = &report.dead_letter {
            detail["dead_letter"] = serde_json::Value::from(dl.cause);
        }
        let trace_id = mlc_bus::trace::trace_id(&trace).or_else(|| mlc_bus::trace::trace_id(&command.trace));
        let row = AuditEntry::new(format!("outcome:{key}:{name}"), AuditKind::Outcome(report.outcome))
            .for_company(&command.company_uuid)
            .for_employee(&command.employee_uuid)
            .with_detail(detail)
            .with_trace_id(trace_id);
        self.timed(Step::Audit, self.store.record_audit(row)).await?;

        if let Some(dl) = &report.dead_letter {
            let mut letter = self.settle.letter(d.msg, &command.company_uuid, dl.reason.clone());
            letter.original_id = key.clone();
            letter.trace = trace.clone();
            self.settle.dead_letters.send(&letter).await?;
            self.metrics.dead_lettered(dl.cause);
        }

        let outcome = SyncOutcome {
            command_id: command.command_id.clone(),
            company_uuid: command.company_uuid.clone(),
            employee_uuid: command.employee_uuid.clone(),
            outcome: report.outcome as i32,
            visma_employee_cd: report.employee_cd.clone(),
            detail: report.detail.clone(),
            latency_ms: latency_ms.unwrap_or_default(),
            visma_calls: calls.to_vec(),
            trace,
            decided_at_ms: now,
        };
        let subject = self.topology.sync_outcome(&command.company_uuid, &command.employee_uuid);
        let id = format!("{key}:{name}");
        self.timed(Step::Outcome, self.publisher.publish(&subject, &id, &outcome)).await?;

        self.metrics.outcome(&name.to_ascii_lowercase());
        if let Some(ms) = latency_ms {
            self.metrics.observe_latency(Duration::from_millis(ms.unsigned_abs()));
        }
        // Recorded already: should the ack be lost, the redelivery finds the link and
        // records UNCHANGED.
        self.timed(Step::Ack, self.settle.done(d.msg, report.outcome == Outcome::Failed)).await;
        tracing::info!(outcome = name, employee_cd = %report.employee_cd, calls = calls.len(), "command decided");
        Ok(())
    }

    pub(crate) async fn nak(&self, d: &Delivery<'_>, delay: Duration, reason: &'static str) {
        self.metrics.nak(reason);
        mlc_bus::delivery::nak(d.msg, delay).await;
    }

    /// A payload that is not a `VismaCommand` can never succeed: keep it and stop
    /// redelivering it.
    pub(crate) async fn undecodable(&self, d: &Delivery<'_>, reason: &str) {
        let company =
            self.topology.split_subject(StreamKind::VismaCommands, d.subject).map_or("", |(c, _)| c);
        match self.settle.settle(d.msg, company, Disposition::dead("undecodable", reason)).await {
            Settled::DeadLettered { cause } => self.metrics.dead_lettered(cause),
            _ => self.metrics.nak("nats"),
        }
    }
}

/// `OUTCOME_APPLIED` -> `APPLIED`: the suffix of `Nats-Msg-Id`s and audit kinds.
fn outcome_name(o: Outcome) -> &'static str {
    o.as_str_name().trim_start_matches("OUTCOME_")
}
