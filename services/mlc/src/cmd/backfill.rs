//! `mlc backfill`: the initial full sync of a company.
//!
//! Reads Gusto's paged employee list (within the grant's shared rate budget), queues one
//! hydration event per employee, and (with `--wait`, the default on a terminal) follows
//! the work through the pipeline until every queued employee has reached an end: applied in
//! Visma, unchanged, parked, or dead-lettered. It follows by reading, never by consuming:
//! the services' durable consumers say how far each stage got, and ephemeral ordered
//! consumers read what the stages produced after the backfill began.

use crate::ctx::Ctx;
use anyhow::Context as _;
use clap::Args;
use gusto::GrantId;
use mlc_bus::replay::{Replay, Start};
use mlc_bus::{ConsumerSpec, StreamKind};
use mlc_config::Config;
use mlc_proto::v1::{
    DeadLetter, EmployeeSnapshot, EventSource, GustoEvent, Outcome, SyncOutcome, VismaCommand,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BackfillArgs {
    /// The company to sync: its Gusto uuid (`mlc company list`).
    #[arg(long)]
    pub company: String,
    /// Follow the work until every employee is applied in Visma (or parked, or
    /// dead-lettered), then print the summary. The default on a terminal.
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Return once the employees are queued (the default when standard error is not a
    /// terminal, e.g. in scripts).
    #[arg(long)]
    pub no_wait: bool,
    /// With --wait: give up waiting after this long (the work goes on; exit 1).
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub timeout_secs: u64,
}

/// `mlc backfill --json`; `summary` only when the command waited.
#[derive(Debug, Serialize)]
pub struct BackfillReport {
    pub company: String,
    pub pages: u32,
    pub queued: usize,
    pub waited: bool,
    pub summary: Option<Summary>,
}

/// Where the queued employees ended. The counts add up to `queued`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub created: usize,
    pub updated: usize,
    /// Already in Visma as Gusto has them (no new snapshot, no command, or a command the
    /// writer found already applied).
    pub unchanged: usize,
    pub parked: usize,
    pub dead_lettered: usize,
    /// Commands held until the company's first-connect review is applied (`mlc match`).
    pub awaiting_review: usize,
    pub seconds: f64,
}

impl Summary {
    pub fn line(&self) -> String {
        let mut s = format!(
            "created {}, updated {}, unchanged {}, parked {}, dead-lettered {}",
            self.created, self.updated, self.unchanged, self.parked, self.dead_lettered
        );
        if self.awaiting_review > 0 {
            s.push_str(&format!(", awaiting the first-connect review {}", self.awaiting_review));
        }
        s
    }
}

pub async fn run(cfg: Config, args: BackfillArgs) -> anyhow::Result<()> {
    let wait = if args.no_wait { false } else { args.wait || crate::output::interactive() };
    let ctx = Ctx::connect(cfg, "mlc-backfill").await?;
    let company = ctx.company(&args.company).await?;
    if company.paused && wait {
        return Err(crate::exit::usage(format!(
            "company {} is paused: its work waits, so --wait would not end; `mlc company resume {}` first, or --no-wait",
            args.company, args.company
        )));
    }
    let marks = Marks::now(&ctx, &args.company).await?;
    let started = Instant::now();
    let queued = queue(&ctx, &args.company).await?;
    let summary = if wait {
        Some(follow(&ctx, &company, &queued, &marks, started, Duration::from_secs(args.timeout_secs)).await?)
    } else {
        None
    };
    let report = BackfillReport {
        company: args.company.clone(),
        pages: queued.pages,
        queued: queued.employees.len(),
        waited: wait,
        summary,
    };
    if crate::output::json_mode() {
        return crate::output::json(&report);
    }
    outln!("backfill of {}: {} employees queued for hydration", args.company, report.queued);
    if let Some(s) = &report.summary {
        outln!("backfill of {} done in {:.1} s: {}", args.company, s.seconds, s.line());
        if s.dead_lettered > 0 {
            outln!("dead letters: `mlc dlq list --company {}`", args.company);
        }
        if s.awaiting_review > 0 {
            outln!("the review: `mlc match --company {}`", args.company);
        }
    }
    Ok(())
}

/// What [`queue`] published.
pub struct Queued {
    pub pages: u32,
    /// Employee uuid -> sequence of its event in GUSTO_EVENTS.
    pub employees: BTreeMap<String, u64>,
}

/// Queues every employee of the company for hydration: the initial full sync. Reads the
/// paged list within the rate budget; safe to run again (unchanged employees make no
/// snapshot).
pub async fn backfill(ctx: &Ctx, company: &str) -> anyhow::Result<usize> {
    ctx.company(company).await?;
    Ok(queue(ctx, company).await?.employees.len())
}

async fn queue(ctx: &Ctx, company: &str) -> anyhow::Result<Queued> {
    let c = ctx.company(company).await?;
    let gusto = ctx.gusto().await?;
    let grant = GrantId(c.grant_id.clone());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let bar = crate::output::progress(None, "queued");
    bar.set_message("employees (reading Gusto's list)");
    let mut queued = BTreeMap::new();
    let mut page = 1;
    loop {
        let p = gusto.list_employees(&grant, company, page, 100).await.context("listing Gusto employees")?;
        let more = p.has_more(100);
        for e in &p.items {
            let ev = GustoEvent {
                event_uuid: format!("backfill-{run}-{}", e.uuid),
                event_type: "employee.backfill".into(),
                company_uuid: company.to_string(),
                entity_type: "Employee".into(),
                entity_uuid: e.uuid.clone(),
                timestamp: chrono::Utc::now().timestamp(),
                raw_body: Vec::new(),
                received_at_ms: mlc_bus::now_ms(),
                trace: None,
                source: EventSource::Backfill as i32,
            };
            let published = ctx
                .publisher
                .publish(&ctx.topo.gusto_event(company, "Employee"), &ev.event_uuid, &ev)
                .await?;
            queued.insert(e.uuid.clone(), published.sequence);
            bar.inc(1);
        }
        bar.set_message(format!("employees, {page} page(s) read"));
        if !more {
            bar.finish_and_clear();
            return Ok(Queued { pages: page, employees: queued });
        }
        page += 1;
    }
}

/// The last sequence of each stream the backfill follows, before it queued anything.
pub struct Marks {
    state: u64,
    commands: u64,
    outcomes: u64,
    letters: u64,
}

impl Marks {
    pub async fn now(ctx: &Ctx, _company: &str) -> anyhow::Result<Marks> {
        let last = |kind| async move {
            let name = ctx.topo.stream(kind);
            let mut s = ctx.js.get_stream(&name).await.with_context(|| format!("stream {name}"))?;
            anyhow::Ok(s.info().await.with_context(|| format!("stream {name}"))?.state.last_sequence)
        };
        Ok(Marks {
            state: last(StreamKind::EmployeeState).await?,
            commands: last(StreamKind::VismaCommands).await?,
            outcomes: last(StreamKind::SyncOutcomes).await?,
            letters: last(StreamKind::DeadLetters).await?,
        })
    }
}

/// What a stage's durable consumer (the company's partition) has acknowledged.
async fn acked_through(ctx: &Ctx, spec: &ConsumerSpec, company: &str, target: u64) -> anyhow::Result<bool> {
    if target == 0 {
        return Ok(true);
    }
    let durable = ctx.topo.durable(spec, ctx.topo.partition_of(company));
    let stream = ctx.js.get_stream(ctx.topo.stream(spec.stream)).await?;
    let mut c = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&durable)
        .await
        .map_err(|e| anyhow::anyhow!("consumer {durable}: {e}; is the {} running?", spec.durable))?;
    let info = c.info().await?;
    // The floor can stay behind for another company's held work; then "delivered past
    // the target with nothing outstanding" is as good.
    Ok(info.ack_floor.stream_sequence >= target
        || (info.delivered.stream_sequence >= target && info.num_ack_pending == 0))
}

/// Reads `kind`'s messages for the company after `from`, returning the last sequence read.
async fn read_after<M: prost::Message + Default>(
    ctx: &Ctx,
    kind: StreamKind,
    company: &str,
    from: u64,
    mut each: impl FnMut(u64, M),
) -> anyhow::Result<u64> {
    let filter = match kind {
        StreamKind::DeadLetters => ctx.topo.wildcard(kind),
        _ => ctx.topo.company_filter(kind, Some(company)),
    };
    let mut r = Replay::open(&ctx.js, &ctx.topo.stream(kind), &filter, Start::Sequence(from + 1)).await?;
    let mut last = from;
    while let Some(m) = r.next().await {
        let m = m?;
        last = m.sequence;
        each(m.sequence, mlc_bus::decode(&m.subject, &m.payload)?);
    }
    Ok(last)
}

/// Follows the queued employees to their ends; see the module docs.
async fn follow(
    ctx: &Ctx,
    company: &mlc_store::Company,
    queued: &Queued,
    marks: &Marks,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Summary> {
    let id = company.company_uuid.as_str();
    let n = queued.employees.len() as u64;
    // Bars added to a MultiProgress draw where it draws: hidden unless a person watches.
    let multi = indicatif::MultiProgress::with_draw_target(if crate::output::interactive() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    });
    let hydrated_bar = multi.add(crate::output::progress(Some(n), "hydrated"));
    let applied_bar = multi.add(crate::output::progress(Some(0), "in Visma"));
    let last_event = queued.employees.values().copied().max().unwrap_or(0);
    let ours: BTreeSet<&str> = queued.employees.keys().map(String::as_str).collect();

    // Per employee of this backfill: the newest snapshot, command and outcome seen.
    let mut snapshots: BTreeMap<String, u64> = BTreeMap::new();
    let mut commands: BTreeMap<String, VismaCommand> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, SyncOutcome> = BTreeMap::new();
    let mut letters: BTreeSet<String> = BTreeSet::new();
    let (mut s_seq, mut c_seq, mut o_seq, mut d_seq) =
        (marks.state, marks.commands, marks.outcomes, marks.letters);
    let (mut last_snapshot, mut last_command) = (0u64, 0u64);
    let deadline = started + timeout;
    let mut final_read = false;
    loop {
        s_seq = read_after::<EmployeeSnapshot>(ctx, StreamKind::EmployeeState, id, s_seq, |seq, s| {
            if ours.contains(s.employee_uuid.as_str()) {
                snapshots.insert(s.employee_uuid, seq);
                last_snapshot = seq;
            }
        })
        .await?;
        c_seq = read_after::<VismaCommand>(ctx, StreamKind::VismaCommands, id, c_seq, |seq, c| {
            if ours.contains(c.employee_uuid.as_str()) {
                last_command = seq;
                commands.insert(c.employee_uuid.clone(), c);
            }
        })
        .await?;
        o_seq = read_after::<SyncOutcome>(ctx, StreamKind::SyncOutcomes, id, o_seq, |_, o| {
            if ours.contains(o.employee_uuid.as_str()) {
                // Created stays created: a redelivered command for an employee the writer
                // already created answers unchanged (or updated), yet this backfill created it.
                let created = |o: &SyncOutcome| o.outcome() == Outcome::Applied && o.detail == "created";
                let later_failed = matches!(o.outcome(), Outcome::Failed | Outcome::Parked);
                if later_failed || !outcomes.get(&o.employee_uuid).is_some_and(created) {
                    outcomes.insert(o.employee_uuid.clone(), o);
                }
            }
        })
        .await?;
        d_seq = read_after::<DeadLetter>(ctx, StreamKind::DeadLetters, id, d_seq, |_, l| {
            if l.company_uuid == id {
                let employee =
                    [StreamKind::GustoEvents, StreamKind::EmployeeState, StreamKind::VismaCommands]
                        .into_iter()
                        .find_map(|k| {
                            ctx.topo.split_subject(k, &l.original_subject).map(|(_, e)| e.to_string())
                        });
                if let Some(e) = employee {
                    letters.insert(e);
                }
            }
        })
        .await?;

        let hydrated = acked_through(ctx, &ConsumerSpec::HYDRATOR, id, last_event).await?;
        let mapped = hydrated && acked_through(ctx, &ConsumerSpec::MAPPER, id, last_snapshot).await?;
        let written = mapped && acked_through(ctx, &ConsumerSpec::WRITER, id, last_command).await?;
        let held = !company.first_connect_applied;
        hydrated_bar.set_position(if hydrated { n } else { (snapshots.len() + letters.len()) as u64 });
        let to_apply = commands.len() as u64;
        applied_bar.set_length(to_apply);
        applied_bar.set_position(outcomes.len().min(commands.len()) as u64);
        // Held for the review, the writer acknowledges nothing of ours: mapped is the end.
        if hydrated && mapped && (written || held) {
            if final_read {
                break;
            }
            // The streams were read before the acknowledgements were looked at, and the writer
            // publishes an outcome just before it acknowledges: one more read takes the
            // outcomes published in between (else they count as unchanged).
            final_read = true;
            continue;
        }
        if Instant::now() > deadline {
            hydrated_bar.abandon();
            applied_bar.abandon();
            anyhow::bail!(
                "backfill of {id}: not finished after {} s ({} of {n} hydrated, {} of {to_apply} commands applied); \
                 the work goes on: `mlc status`",
                timeout.as_secs(),
                snapshots.len(),
                outcomes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    hydrated_bar.finish_and_clear();
    applied_bar.finish_and_clear();

    let mut s = Summary { seconds: started.elapsed().as_secs_f64(), ..Default::default() };
    for employee in queued.employees.keys() {
        if letters.contains(employee) {
            s.dead_lettered += 1;
            continue;
        }
        match (commands.get(employee), outcomes.get(employee)) {
            (_, Some(o)) => match o.outcome() {
                Outcome::Applied if o.detail == "created" => s.created += 1,
                Outcome::Applied => s.updated += 1,
                Outcome::Parked => s.parked += 1,
                Outcome::Failed => s.dead_lettered += 1,
                _ => s.unchanged += 1,
            },
            (Some(c), None) if !c.parked_reason.is_empty() => s.parked += 1,
            (Some(_), None) if !company.first_connect_applied => s.awaiting_review += 1,
            _ => s.unchanged += 1,
        }
    }
    Ok(s)
}
