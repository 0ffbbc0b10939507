//! `mlc dlq retry SEQ`: retrying a letter does what a fix needs, per stage.
//!
//! * `writer` and `mapper` letters: the command is **re-derived** from the employee's newest
//!   snapshot in EMPLOYEE_STATE under the company's current mapping file (the projector's own
//!   code path). A mapping fix is thereby applied: the letter's stale, parked command is not
//!   sent again. When the current mapping derives the same command as before (the fix was in
//!   Visma, e.g. a missing department created), that current command is re-delivered to the
//!   writer with its idempotency hash cleared, so it compares with Visma and writes.
//!   Still parked under the current mapping: the letter is kept, with the reason.
//! * `projector` (hydration) letters: the Gusto event is published again; hydration reads
//!   the employee's current state from Gusto.
//! * `gateway` letters have no subject (an unparseable body): nothing to retry.

use crate::ctx::Ctx;
use anyhow::{bail, Context as _};
use mlc_bus::StreamKind;
use mlc_proto::v1::{DeadLetter, EmployeeSnapshot, VismaCommand};
use prost::Message as _;

/// Retries one letter; returns what was done (the caller removes the letter on success).
pub async fn retry(ctx: &Ctx, seq: u64, letter: &DeadLetter) -> anyhow::Result<String> {
    if letter.original_subject.is_empty() {
        bail!("letter {seq} has no original subject (a gateway letter of an unparseable body); inspect it with `mlc dlq show`");
    }
    let kind = match letter.stage.as_str() {
        "writer" => Some(StreamKind::VismaCommands),
        "mapper" => Some(StreamKind::EmployeeState),
        _ => None,
    };
    let target = kind.and_then(|k| ctx.topo.split_subject(k, &letter.original_subject));
    match target {
        Some((company, employee)) => rederive(ctx, seq, company, employee).await,
        None => {
            republish(
                ctx,
                &letter.original_subject,
                &format!("retry-{seq}"),
                letter.original_payload.clone(),
            )
            .await?;
            Ok(format!("letter {seq} re-delivered to {}", letter.original_subject))
        }
    }
}

async fn rederive(ctx: &Ctx, seq: u64, company: &str, employee: &str) -> anyhow::Result<String> {
    let state_subject = ctx.topo.employee_state(company, employee);
    let Some(snapshot) = mlc_bus::last_on_subject::<EmployeeSnapshot>(
        &ctx.js,
        &ctx.topo.stream(StreamKind::EmployeeState),
        &state_subject,
    )
    .await?
    else {
        bail!("no snapshot of employee {employee} in EMPLOYEE_STATE; `mlc backfill --company {company}` makes one");
    };
    let projector = ctx.projector().await?;
    let outcome = projector
        .map_snapshot(&state_subject, snapshot.sequence, &snapshot.message.encode_to_vec(), false)
        .await
        .map_err(|e| anyhow::anyhow!("re-deriving the command of employee {employee}: {e:?}"))?;
    match outcome {
        mlc_projector::MapOutcome::Emitted(cmd) if !cmd.parked_reason.is_empty() => {
            // Unreachable in practice (a new parked command differs only by reason), but
            // never report a park as a retry.
            bail!("employee {employee} is still parked under the current mapping: {}", cmd.parked_reason)
        }
        mlc_projector::MapOutcome::Emitted(cmd) => Ok(format!(
            "letter {seq}: command re-derived from snapshot {} under mapping revision {} and sent to the writer",
            snapshot.sequence, cmd.mapping_revision
        )),
        mlc_projector::MapOutcome::Unchanged | mlc_projector::MapOutcome::Superseded => {
            let cmd_subject = ctx.topo.visma_command(company, employee);
            let current = mlc_bus::last_on_subject::<VismaCommand>(
                &ctx.js,
                &ctx.topo.stream(StreamKind::VismaCommands),
                &cmd_subject,
            )
            .await?
            .context("no command to re-deliver")?;
            if !current.message.parked_reason.is_empty() {
                bail!(
                    "employee {employee} is still parked under the current mapping: {}; fix the mapping, then retry",
                    current.message.parked_reason
                );
            }
            // The writer skips a command whose hash it already applied; it must look at Visma.
            if let Some(mut link) = ctx.store.link(company, employee).await? {
                link.last_command_hash = None;
                ctx.store.put_link(&link).await?;
            }
            republish(ctx, &cmd_subject, &format!("retry-{seq}"), current.message.encode_to_vec()).await?;
            Ok(format!(
                "letter {seq}: the current mapping derives the same command; re-delivered it to the writer"
            ))
        }
    }
}

async fn republish(ctx: &Ctx, subject: &str, id: &str, payload: Vec<u8>) -> anyhow::Result<()> {
    let mut headers = async_nats::HeaderMap::new();
    mlc_bus::inject_trace_context(&mut headers);
    ctx.publisher
        .publish_raw(subject, &format!("{id}-{}", uuid::Uuid::new_v4().simple()), payload.into(), headers)
        .await?;
    Ok(())
}
