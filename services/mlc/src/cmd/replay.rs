//! `mlc replay`: re-reading a stream from an offset through the same code path.

use crate::ctx::Ctx;
use clap::Args;
use mlc_bus::replay::{Replay, Start};
use mlc_bus::StreamKind;
use mlc_config::Config;
use mlc_proto::v1::{GustoEvent, VismaCommand};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Args)]
pub struct ReplayArgs {
    /// The stream: gusto-events (re-hydrate from Gusto), employee-state (re-map under the
    /// current mapping) or visma-commands (re-apply through the writer).
    pub stream: String,
    /// Start at this stream sequence (`mlc status` shows each stream's first and last).
    #[arg(long, conflicts_with = "since", value_name = "SEQ")]
    pub from_seq: Option<u64>,
    /// Start at this time: RFC 3339, e.g. 2026-11-26T10:00:00Z.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only this company's messages (its Gusto uuid).
    #[arg(long)]
    pub company: Option<String>,
    /// Only this employee's messages (a Gusto employee uuid).
    #[arg(long)]
    pub employee: Option<String>,
    /// Print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `mlc replay --json`. employee-state fills `changes`; the other streams fill
/// `redelivered`.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    pub stream: String,
    pub dry_run: bool,
    /// Messages read (snapshots re-mapped, or messages selected for re-delivery).
    pub read: usize,
    pub emitted: usize,
    pub unchanged: usize,
    pub superseded: usize,
    pub failed: usize,
    pub changes: Vec<Change>,
    pub redelivered: Vec<Redelivered>,
    pub errors: Vec<ReplayError>,
}

/// One command the re-mapping emits (or would emit).
#[derive(Debug, Serialize)]
pub struct Change {
    pub snapshot_seq: u64,
    pub employee: String,
    pub employee_cd: String,
    /// `create`, `update` or `park`.
    pub action: &'static str,
    pub fields: Vec<FieldChange>,
    pub parked_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Serialize)]
pub struct Redelivered {
    pub subject: String,
    pub seq: u64,
}

#[derive(Debug, Serialize)]
pub struct ReplayError {
    pub seq: u64,
    pub error: String,
}

pub async fn replay(cfg: Config, args: ReplayArgs) -> anyhow::Result<()> {
    let kind = StreamKind::parse(&args.stream).ok_or_else(|| {
        crate::exit::usage(format!(
            "unknown stream {:?}; use gusto-events, employee-state or visma-commands",
            args.stream
        ))
    })?;
    let start = match (&args.from_seq, &args.since) {
        (Some(s), _) => Start::Sequence(*s),
        (None, Some(t)) => Start::Time(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    crate::exit::usage(format!(
                        "--since {t:?} is not an RFC 3339 time, e.g. 2026-11-26T10:00:00Z"
                    ))
                })?
                .timestamp_millis(),
        ),
        (None, None) => return Err(crate::exit::usage("give --from-seq N or --since TIME")),
    };
    if matches!(kind, StreamKind::SyncOutcomes | StreamKind::DeadLetters) {
        return Err(crate::exit::usage(format!(
            "{} is a record of outcomes; replay gusto-events, employee-state or visma-commands (dead letters: `mlc dlq retry`)",
            args.stream
        )));
    }
    let ctx = if args.dry_run {
        crate::cmd::read_only(cfg, "mlc-replay").await?
    } else {
        Ctx::connect(cfg, "mlc-replay").await?
    };
    let mut report =
        ReplayReport { stream: ctx.topo.stream(kind), dry_run: args.dry_run, ..Default::default() };
    match kind {
        StreamKind::EmployeeState => replay_state(&ctx, start, &args, &mut report).await?,
        _ => republish(&ctx, kind, start, &args, &mut report).await?,
    }
    if crate::output::json_mode() {
        return crate::output::json(&report);
    }
    let verb = if args.dry_run { "would" } else { "will" };
    for c in &report.changes {
        match c.action {
            "park" => outln!(
                "snapshot {} employee {}: {verb} park: {}",
                c.snapshot_seq,
                c.employee,
                c.parked_reason.as_deref().unwrap_or("")
            ),
            "create" => {
                outln!("snapshot {} employee {}: {verb} create {}", c.snapshot_seq, c.employee, c.employee_cd)
            }
            _ => {
                outln!(
                    "snapshot {} employee {} ({}): {verb} update",
                    c.snapshot_seq,
                    c.employee,
                    c.employee_cd
                );
                for ch in &c.fields {
                    outln!("  - {}: {}\n  + {}: {}", ch.field, ch.from, ch.field, ch.to);
                }
            }
        }
    }
    for e in &report.errors {
        outln!("seq {}: {}", e.seq, e.error);
    }
    if kind == StreamKind::EmployeeState {
        outln!(
            "replayed {} snapshots: {} {} command(s), {} unchanged, {} superseded, {} failed",
            report.read,
            if args.dry_run { "would emit" } else { "emitted" },
            report.emitted,
            report.unchanged,
            report.superseded,
            report.failed
        );
    } else {
        if args.dry_run {
            for r in &report.redelivered {
                outln!("would re-deliver {} seq {}", r.subject, r.seq);
            }
        }
        outln!(
            "{} {} message(s) of {}",
            if args.dry_run { "would re-deliver" } else { "re-delivered" },
            report.redelivered.len(),
            report.stream
        );
    }
    Ok(())
}

/// EMPLOYEE_STATE through the projector's mapping path: after a mapping change this
/// emits one command per affected employee; `--dry-run` reports them as diffs instead.
async fn replay_state(
    ctx: &Ctx,
    start: Start,
    args: &ReplayArgs,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    // A dry run maps and compares only: no Gusto call, so no slot of the shared window
    // (whose stream a read-only command must not create).
    let projector = if args.dry_run {
        mlc_projector::Projector::new(
            ctx.js.clone(),
            ctx.publisher.clone(),
            ctx.store.clone(),
            crate::ctx::gusto_client(&ctx.cfg, ctx.store.clone())?,
            mlc_projector::ProjectorSettings::from_config(&ctx.cfg)?,
        )
    } else {
        ctx.projector().await?
    };
    let bar = crate::output::progress(None, "replay");
    bar.set_message("snapshots re-mapped");
    let results = projector
        .replay_state(start, args.company.as_deref(), args.employee.as_deref(), args.dry_run)
        .await?;
    bar.finish_and_clear();
    report.read = results.len();
    for (seq, r) in &results {
        match r {
            Ok(mlc_projector::MapOutcome::Emitted(cmd)) => {
                report.emitted += 1;
                report.changes.push(command_change(ctx, *seq, cmd).await?);
            }
            Ok(mlc_projector::MapOutcome::Unchanged) => report.unchanged += 1,
            Ok(mlc_projector::MapOutcome::Superseded) => report.superseded += 1,
            Err(e) => {
                report.failed += 1;
                report.errors.push(ReplayError { seq: *seq, error: format!("{e:?}") });
            }
        }
    }
    Ok(())
}

async fn command_change(ctx: &Ctx, seq: u64, cmd: &VismaCommand) -> anyhow::Result<Change> {
    let subject = ctx.topo.visma_command(&cmd.company_uuid, &cmd.employee_uuid);
    let last = mlc_bus::last_on_subject::<VismaCommand>(
        &ctx.js,
        &ctx.topo.stream(StreamKind::VismaCommands),
        &subject,
    )
    .await?;
    let target = cmd.fields.clone().unwrap_or_default();
    let mut change = Change {
        snapshot_seq: seq,
        employee: cmd.employee_uuid.clone(),
        employee_cd: target.employee_cd.clone(),
        action: "create",
        fields: Vec::new(),
        parked_reason: None,
    };
    if !cmd.parked_reason.is_empty() {
        change.action = "park";
        change.parked_reason = Some(cmd.parked_reason.clone());
        return Ok(change);
    }
    if let Some(current) = last.and_then(|l| l.message.fields) {
        change.action = "update";
        change.fields = mlc_domain::diff_fields(&current, &target)
            .into_iter()
            .map(|ch| FieldChange {
                field: ch.field.to_string(),
                from: ch.from.to_string(),
                to: ch.to.to_string(),
            })
            .collect();
    }
    Ok(change)
}

fn replay_last(selected: &[mlc_bus::replay::Replayed]) -> u64 {
    selected.last().map(|m| m.sequence).unwrap_or(0)
}

/// GUSTO_EVENTS (re-hydrate from Gusto) or VISMA_COMMANDS (re-apply through the writer):
/// the messages are published again under new ids and take the normal path.
///
/// For commands only the newest of each employee in the range is re-delivered (an older
/// one would be superseded anyway), and the writer's idempotency hash of that employee is
/// cleared first, so the writer compares with what Visma really holds and writes only
/// the difference: after a Visma restore that re-creates what was lost; when nothing
/// changed it makes no write.
async fn republish(
    ctx: &Ctx,
    kind: StreamKind,
    start: Start,
    args: &ReplayArgs,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let filter = match (kind, &args.company, &args.employee) {
        (StreamKind::VismaCommands, Some(c), Some(e)) => ctx.topo.visma_command(c, e),
        (_, c, _) => ctx.topo.company_filter(kind, c.as_deref()),
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut replay = Replay::open(&ctx.js, &ctx.topo.stream(kind), &filter, start).await?;
    let mut selected: Vec<mlc_bus::replay::Replayed> = Vec::new();
    let mut newest: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(m) = replay.next().await {
        let m = m?;
        if kind == StreamKind::GustoEvents {
            if let Some(e) = &args.employee {
                let ev: GustoEvent = mlc_bus::decode(&m.subject, &m.payload)?;
                if &ev.entity_uuid != e {
                    continue;
                }
            }
            selected.push(m);
        } else if let Some(&i) = newest.get(&m.subject) {
            selected[i] = m;
        } else {
            newest.insert(m.subject.clone(), selected.len());
            selected.push(m);
        }
    }
    report.read = selected.len();
    let bar = crate::output::progress(Some(selected.len() as u64), "replay");
    for m in &selected {
        bar.set_message(format!("seq {} of {}", m.sequence, replay_last(&selected)));
        bar.inc(1);
        report.redelivered.push(Redelivered { subject: m.subject.clone(), seq: m.sequence });
        if args.dry_run {
            continue;
        }
        if kind == StreamKind::VismaCommands {
            if let Some((company, employee)) = ctx.topo.split_subject(kind, &m.subject) {
                if let Some(mut link) = ctx.store.link(company, employee).await? {
                    link.last_command_hash = None;
                    ctx.store.put_link(&link).await?;
                }
            }
        }
        let mut headers = async_nats::HeaderMap::new();
        if let Some(h) = &m.headers {
            for key in ["traceparent", mlc_bus::HEADER_MSG_TYPE] {
                if let Some(v) = h.get(key) {
                    headers.insert(key, v.as_str());
                }
            }
        }
        ctx.publisher
            .publish_raw(&m.subject, &format!("replay-{run}-{}", m.sequence), m.payload.clone(), headers)
            .await?;
    }
    bar.finish_and_clear();
    Ok(())
}
