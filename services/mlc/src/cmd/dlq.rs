//! `mlc dlq`: dead letters, listed, shown, retried and dropped, one at a time or in bulk.
//!
//! A bulk action (`--all`, or a filter) first counts what it selected and says so; with
//! `--dry-run` it stops there. Each letter is retried on its own: a failure keeps that
//! letter (with the reason printed) and the others go on, and the command then exits 1.

use crate::ctx::Ctx;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use mlc_bus::replay::{Replay, Start};
use mlc_bus::StreamKind;
use mlc_config::Config;
use mlc_proto::v1::{DeadLetter, GustoEvent, VismaCommand};
use serde::Serialize;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// Lists the dead letters (all, or those matching the filter), oldest first.
    ///
    /// Example: mlc dlq list --company 7d1c0a52-... --stage writer --reason department
    List {
        #[command(flatten)]
        filter: LetterFilter,
    },
    /// Shows one letter: when and where it failed, why, and what it carried.
    ///
    /// Example: mlc dlq show 12
    Show {
        /// The letter's sequence number (`mlc dlq list`).
        seq: u64,
    },
    /// Retries letters and removes each one that was retried: writer and mapper letters
    /// are re-derived from the employee's newest snapshot under the current mapping;
    /// others are re-delivered. A failed retry keeps its letter.
    ///
    /// Example: mlc dlq retry --stage writer --reason "Class 'EMPTEMP'" --dry-run
    Retry {
        #[command(flatten)]
        select: Selection,
    },
    /// Removes letters for good (their work is not done; `reconcile` would find it).
    ///
    /// Example: mlc dlq drop 12
    Drop {
        #[command(flatten)]
        select: Selection,
    },
}

/// Which letters: all of them when nothing is given (for `list`).
#[derive(Args, Clone, Default, Debug)]
pub struct LetterFilter {
    /// Only letters of this company (its Gusto uuid).
    #[arg(long)]
    pub company: Option<String>,
    /// Only letters of this stage: gateway, projector, mapper or writer.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only letters whose reason contains this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Only letters that failed at or after this time (RFC 3339, e.g. 2026-12-02T08:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// The same criteria as KEY=VALUE (company, stage, reason, since); repeat for more.
    #[arg(long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
}

/// One letter, a bulk selection, or all.
#[derive(Args, Clone, Debug)]
pub struct Selection {
    /// The letter's sequence number (`mlc dlq list`); or --all, or a filter.
    #[arg(conflicts_with = "all")]
    pub seq: Option<u64>,
    /// Every letter.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub filter: LetterFilter,
    /// Count and list what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The criteria of a [`LetterFilter`], checked and merged.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Criteria {
    pub company: Option<String>,
    pub stage: Option<String>,
    pub reason: Option<String>,
    pub since_ms: Option<i64>,
}

const STAGES: [&str; 4] = ["gateway", "projector", "mapper", "writer"];

impl LetterFilter {
    pub fn criteria(&self) -> anyhow::Result<Criteria> {
        let mut c = Criteria {
            company: self.company.clone(),
            stage: self.stage.clone(),
            reason: self.reason.clone(),
            since_ms: None,
        };
        let mut since = self.since.clone();
        for kv in &self.filter {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                crate::exit::usage(format!(
                    "--filter {kv:?}: expected KEY=VALUE (company, stage, reason, since)"
                ))
            })?;
            let v = Some(v.to_string());
            match k.trim() {
                "company" => c.company = v,
                "stage" => c.stage = v,
                "reason" => c.reason = v,
                "since" => since = v,
                other => {
                    return Err(crate::exit::usage(format!(
                        "--filter {other}=...: unknown key; use company, stage, reason or since"
                    )))
                }
            }
        }
        if let Some(s) = &c.stage {
            if !STAGES.contains(&s.as_str()) {
                return Err(crate::exit::usage(format!(
                    "unknown stage {s:?}; use gateway, projector, mapper or writer"
                )));
            }
        }
        if let Some(t) = since {
            c.since_ms = Some(
                chrono::DateTime::parse_from_rfc3339(&t)
                    .map_err(|_| crate::exit::usage(format!("since {t:?} is not an RFC 3339 time")))?
                    .timestamp_millis(),
            );
        }
        Ok(c)
    }
}

impl Criteria {
    pub fn is_empty(&self) -> bool {
        *self == Criteria::default()
    }

    pub fn matches(&self, l: &DeadLetter) -> bool {
        self.company.as_ref().is_none_or(|c| &l.company_uuid == c)
            && self.stage.as_ref().is_none_or(|s| &l.stage == s)
            && self.reason.as_ref().is_none_or(|r| l.reason.to_lowercase().contains(&r.to_lowercase()))
            && self.since_ms.is_none_or(|t| l.failed_at_ms >= t)
    }
}

/// A letter as `--json` shows it (`dlq list`, `dlq show`).
#[derive(Debug, Serialize)]
pub struct Letter {
    pub seq: u64,
    pub stage: String,
    pub company: String,
    pub subject: String,
    pub original_id: String,
    pub reason: String,
    pub attempts: u32,
    /// RFC 3339, UTC.
    pub failed_at: Option<String>,
    pub trace_id: Option<String>,
}

impl Letter {
    pub fn new(seq: u64, l: &DeadLetter) -> Letter {
        Letter {
            seq,
            stage: l.stage.clone(),
            company: l.company_uuid.clone(),
            subject: l.original_subject.clone(),
            original_id: l.original_id.clone(),
            reason: l.reason.clone(),
            attempts: l.attempts,
            failed_at: (l.failed_at_ms > 0).then(|| crate::output::rfc3339(l.failed_at_ms)).flatten(),
            trace_id: mlc_bus::trace::trace_id(&l.trace),
        }
    }
}

/// `mlc dlq show --json`: the letter and what it carried, decoded.
#[derive(Debug, Serialize)]
struct Shown {
    #[serde(flatten)]
    letter: Letter,
    /// A writer or mapper letter's command, field by field.
    command: Option<ShownCommand>,
    /// A projector letter's Gusto event.
    event: Option<ShownEvent>,
    next: String,
}

#[derive(Debug, Serialize)]
struct ShownCommand {
    kind: String,
    employee: String,
    employee_cd: String,
    mapping_revision: String,
    parked_reason: Option<String>,
    fields: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
struct ShownEvent {
    event_type: String,
    entity_type: String,
    entity_uuid: String,
    received_at: Option<String>,
}

/// `mlc dlq retry|drop --json`.
#[derive(Debug, Serialize)]
pub struct BulkReport {
    pub action: &'static str,
    pub dry_run: bool,
    pub matched: usize,
    pub done: usize,
    pub failed: usize,
    pub results: Vec<BulkResult>,
}

#[derive(Debug, Serialize)]
pub struct BulkResult {
    pub seq: u64,
    pub ok: bool,
    pub detail: String,
}

/// Every dead letter, oldest first.
pub async fn dead_letters(ctx: &Ctx) -> anyhow::Result<Vec<(u64, DeadLetter)>> {
    let stream = ctx.topo.stream(StreamKind::DeadLetters);
    let mut replay =
        Replay::open(&ctx.js, &stream, &ctx.topo.wildcard(StreamKind::DeadLetters), Start::Sequence(1))
            .await?;
    let mut out = Vec::new();
    while let Some(m) = replay.next().await {
        let m = m?;
        out.push((m.sequence, mlc_bus::decode(&m.subject, &m.payload)?));
    }
    Ok(out)
}

pub async fn dlq(cfg: Config, cmd: DlqCommand) -> anyhow::Result<std::process::ExitCode> {
    let json = crate::output::json_mode();
    // Looking changes nothing; acting may (a retry publishes).
    let read_only = match &cmd {
        DlqCommand::List { .. } | DlqCommand::Show { .. } => true,
        DlqCommand::Retry { select } | DlqCommand::Drop { select } => select.dry_run,
    };
    let ctx = if read_only {
        crate::cmd::read_only(cfg, "mlc-dlq").await?
    } else {
        Ctx::connect(cfg, "mlc-dlq").await?
    };
    match cmd {
        DlqCommand::List { filter } => {
            let criteria = filter.criteria()?;
            let letters: Vec<Letter> = dead_letters(&ctx)
                .await?
                .iter()
                .filter(|(_, l)| criteria.matches(l))
                .map(|(s, l)| Letter::new(*s, l))
                .collect();
            if json {
                crate::output::json(&letters)?;
            } else {
                outln!(
                    "{:>6}  {:<9} {:<19} {:<38} {:>8}  reason",
                    "seq",
                    "stage",
                    "failed",
                    "company",
                    "attempts"
                );
                for l in &letters {
                    let at = l
                        .failed_at
                        .as_ref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| crate::output::local_time(t.timestamp_millis()))
                        .unwrap_or_default();
                    outln!(
                        "{:>6}  {:<9} {:<19} {:<38} {:>8}  {}",
                        l.seq,
                        l.stage,
                        at,
                        l.company,
                        l.attempts,
                        l.reason
                    );
                }
                outln!("{} dead letter(s)", letters.len());
            }
        }
        DlqCommand::Show { seq } => {
            let l =
                dead_letters(&ctx).await?.into_iter().find(|(s, _)| *s == seq).map(|(_, l)| l).with_context(
                    || format!("no dead letter at sequence {seq}; `mlc dlq list` shows them"),
                )?;
            show(seq, &l, json)?;
        }
        DlqCommand::Retry { select } => return bulk(&ctx, "retry", select, json).await,
        DlqCommand::Drop { select } => return bulk(&ctx, "drop", select, json).await,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn show(seq: u64, l: &DeadLetter, json: bool) -> anyhow::Result<()> {
    let mut command = None;
    let mut event = None;
    if l.stage == "writer" || l.stage == "mapper" {
        if let Ok(c) = mlc_bus::decode::<VismaCommand>(&l.original_subject, &l.original_payload) {
            let fields = c.fields.clone().unwrap_or_default();
            command = Some(ShownCommand {
                kind: c.kind().as_str_name().trim_start_matches("COMMAND_KIND_").to_lowercase(),
                employee: c.employee_uuid.clone(),
                employee_cd: fields.employee_cd.clone(),
                mapping_revision: c.mapping_revision.clone(),
                parked_reason: (!c.parked_reason.is_empty()).then(|| c.parked_reason.clone()),
                // Every field that is set: the difference from an empty record.
                fields: mlc_domain::diff_fields(&Default::default(), &fields)
                    .into_iter()
                    .map(|f| (f.field.to_string(), f.to))
                    .collect(),
            });
        }
    } else if l.stage == "projector" {
        if let Ok(e) = mlc_bus::decode::<GustoEvent>(&l.original_subject, &l.original_payload) {
            event = Some(ShownEvent {
                event_type: e.event_type,
                entity_type: e.entity_type,
                entity_uuid: e.entity_uuid,
                received_at: crate::output::rfc3339(e.received_at_ms),
            });
        }
    }
    let next = if l.original_subject.is_empty() {
        format!("nothing to retry (an unparseable body); `mlc dlq drop {seq}` once read")
    } else {
        format!("fix the cause, then `mlc dlq retry {seq}` (or `mlc dlq drop {seq}`)")
    };
    let shown = Shown { letter: Letter::new(seq, l), command, event, next };
    if json {
        return crate::output::json(&shown);
    }
    let s = &shown.letter;
    let when = if l.failed_at_ms > 0 {
        format!("{} ({} ago)", crate::output::local_time(l.failed_at_ms), crate::output::age(l.failed_at_ms))
    } else {
        "unknown".into()
    };
    outln!("letter {seq}: {} stage, {} attempt(s)", s.stage, s.attempts);
    outln!("failed:   {when}");
    outln!("reason:   {}", s.reason);
    outln!("company:  {}", s.company);
    outln!("subject:  {}", s.subject);
    outln!("id:       {}", s.original_id);
    outln!("trace:    {}", s.trace_id.as_deref().unwrap_or("none (no tracing endpoint was configured)"));
    if let Some(c) = &shown.command {
        outln!(
            "command:  {} employee {} ({}), mapping revision {}",
            c.kind,
            c.employee_cd,
            c.employee,
            c.mapping_revision
        );
        if let Some(p) = &c.parked_reason {
            outln!("parked:   {p}");
        }
        for (k, v) in &c.fields {
            outln!("  {k:<16} {v}");
        }
    }
    if let Some(e) = &shown.event {
        outln!(
            "event:    {} {} {} (received {})",
            e.event_type,
            e.entity_type,
            e.entity_uuid,
            e.received_at.as_deref().unwrap_or("?")
        );
    }
    outln!("next:     {}", shown.next);
    Ok(())
}

/// Retries (`retry`) or drops one letter; a letter is removed only when that worked.
/// What `mlc dlq retry|drop` and the console's dead-letter page do per letter.
pub async fn retry_or_drop(
    ctx: &Ctx,
    stream: &async_nats::jetstream::stream::Stream,
    retry: bool,
    seq: u64,
    l: &DeadLetter,
) -> anyhow::Result<String> {
    let done =
        if retry { crate::cmd::retry::retry(ctx, seq, l).await? } else { format!("letter {seq} dropped") };
    stream.delete_message(seq).await.map_err(|e| anyhow::anyhow!("removing letter {seq}: {e}"))?;
    Ok(done)
}

async fn bulk(
    ctx: &Ctx,
    action: &'static str,
    select: Selection,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let criteria = select.filter.criteria()?;
    let letters = dead_letters(ctx).await?;
    let chosen: Vec<(u64, DeadLetter)> = match (select.seq, select.all, criteria.is_empty()) {
        (Some(seq), _, true) => {
            let l = letters
                .into_iter()
                .find(|(s, _)| *s == seq)
                .with_context(|| format!("no dead letter at sequence {seq}; `mlc dlq list` shows them"))?;
            vec![l]
        }
        (Some(_), _, false) => {
            return Err(crate::exit::usage("give a sequence number or a filter, not both"));
        }
        (None, true, _) => letters.into_iter().filter(|(_, l)| criteria.matches(l)).collect(),
        (None, false, false) => letters.into_iter().filter(|(_, l)| criteria.matches(l)).collect(),
        (None, false, true) => {
            return Err(crate::exit::usage(format!(
                "which letters? give a sequence number, --all, or a filter (--company, --stage, --reason, --since); \
                 e.g. `mlc dlq {action} --stage writer --dry-run`"
            )))
        }
    };
    let bulk = select.seq.is_none();
    let verb = if action == "retry" { "retried" } else { "dropped" };
    if bulk && !json {
        outln!(
            "{} letter(s) match{}",
            chosen.len(),
            if select.dry_run {
                format!("; would be {verb} (--dry-run: nothing changed)")
            } else {
                String::new()
            }
        );
    }
    let mut report = BulkReport {
        action,
        dry_run: select.dry_run,
        matched: chosen.len(),
        done: 0,
        failed: 0,
        results: Vec::new(),
    };
    if select.dry_run {
        for (seq, l) in &chosen {
            let detail = format!("{} {} {}", l.stage, l.company_uuid, l.reason);
            human_line(json, || format!("{seq:>6}  {detail}"));
            report.results.push(BulkResult { seq: *seq, ok: true, detail });
        }
        if json {
            crate::output::json(&report)?;
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let stream = ctx.js.get_stream(ctx.topo.stream(StreamKind::DeadLetters)).await?;
    let bar = if bulk {
        crate::output::progress(Some(chosen.len() as u64), action)
    } else {
        indicatif::ProgressBar::hidden()
    };
    for (seq, l) in &chosen {
        let result = retry_or_drop(ctx, &stream, action == "retry", *seq, l).await;
        bar.inc(1);
        match result {
            Ok(done) => {
                report.done += 1;
                bar.suspend(|| human_line(json, || done.clone()));
                report.results.push(BulkResult { seq: *seq, ok: true, detail: done });
            }
            // One letter: its error is the command's error, as it was.
            Err(e) if !bulk && !json => return Err(e),
            Err(e) => {
                report.failed += 1;
                let detail = format!("{e:#}");
                bar.suspend(|| human_line(json, || format!("letter {seq} kept: {detail}")));
                report.results.push(BulkResult { seq: *seq, ok: false, detail });
            }
        }
    }
    bar.finish_and_clear();
    if json {
        crate::output::json(&report)?;
    } else if bulk {
        outln!("{} {verb}, {} kept", report.done, report.failed);
    }
    if report.failed > 0 {
        return Ok(crate::exit::Code::Error.into());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn human_line(json: bool, line: impl FnOnce() -> String) {
    if !json {
        outln!("{}", line());
    }
}
