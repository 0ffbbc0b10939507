//! `mlc explain --employee E`: one employee's story as a timeline.
//!
//! The audit log is the timeline (every stage writes one row per step: event hydrated or
//! parked, snapshot appended, command emitted, Visma outcome, repairs, first-connect
//! links); the streams add what changed: each snapshot and each command is compared with
//! the employee's previous one, field by field. A webhook's hydration is shown before the
//! snapshot it caused, although the projector records it just after.

use crate::ctx::Ctx;
use clap::Args;
use mlc_bus::replay::{Replay, Start};
use mlc_bus::StreamKind;
use mlc_config::Config;
use mlc_proto::v1::{EmployeeContent, EmployeeSnapshot, VismaCommand};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Args)]
pub struct ExplainArgs {
    /// The Gusto employee uuid.
    #[arg(long)]
    pub employee: String,
}

/// `mlc explain --json`.
#[derive(Debug, Serialize)]
pub struct Explained {
    pub employee: String,
    pub company: Option<String>,
    /// From the newest snapshot.
    pub name: Option<String>,
    pub visma_employee_cd: Option<String>,
    pub timeline: Vec<Entry>,
}

/// One step, oldest first.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub at: Option<String>,
    pub at_ms: i64,
    /// The audit kind: event.hydrated, event.parked, snapshot.appended, command.emitted,
    /// visma.applied, visma.unchanged, visma.parked, visma.failed, reconcile.repair, ...
    pub what: String,
    /// One line for people.
    pub summary: String,
    /// What this snapshot or command changed against the previous one.
    pub changes: Vec<Change>,
    pub trace_id: Option<String>,
    /// The stage's own record, as stored.
    pub detail: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
}

pub async fn run(cfg: Config, args: ExplainArgs) -> anyhow::Result<()> {
    let ctx = crate::cmd::read_only(cfg, "mlc-explain").await?;
    let e = explain(&ctx, &args.employee).await?;
    if crate::output::json_mode() {
        return crate::output::json(&e);
    }
    outln!(
        "employee {}{}{}, company {}",
        e.employee,
        e.name.as_ref().map(|n| format!(" {n:?}")).unwrap_or_default(),
        e.visma_employee_cd.as_ref().map(|c| format!(" (Visma {c})")).unwrap_or_default(),
        e.company.as_deref().unwrap_or("unknown")
    );
    let mut day = String::new();
    for t in &e.timeline {
        let local = crate::output::local_time(t.at_ms);
        let (d, time) = local.split_once(' ').unwrap_or(("", &local));
        if d != day {
            outln!("{d}");
            day = d.to_string();
        }
        outln!("  {time}  {:<18} {}", t.what, t.summary);
        for c in &t.changes {
            outln!("            {:<18}   {}: {} -> {}", "", c.field, show(&c.from), show(&c.to));
        }
    }
    let traces: Vec<&str> = e.timeline.iter().filter_map(|t| t.trace_id.as_deref()).collect();
    if traces.is_empty() {
        outln!("no trace ids (telemetry.otlp_endpoint is not set)");
    }
    Ok(())
}

fn show(v: &str) -> String {
    if v.is_empty() {
        "(empty)".into()
    } else {
        format!("{v:?}")
    }
}

/// The protobuf enum name without its type prefix, lower case: `COMMAND_KIND_UPSERT` ->
/// `upsert`.
fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_lowercase()
}

pub async fn explain(ctx: &Ctx, employee: &str) -> anyhow::Result<Explained> {
    let rows = ctx
        .store
        .audit(&mlc_store::AuditQuery {
            employee: Some(employee.to_string()),
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    let company = rows.iter().find_map(|r| r.company.clone());
    let Some(company) = company else {
        anyhow::bail!(
            "no record of employee {employee}: no event, snapshot or command names it (a Gusto employee uuid; \
             `mlc reconcile --company C` lists them)"
        );
    };

    // The employee's snapshots and commands by sequence, each with what it changed.
    let mut snapshot_changes: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
    let mut caused_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut name = None;
    let mut prev: Option<EmployeeContent> = None;
    let subject = ctx.topo.employee_state(&company, employee);
    let mut r =
        Replay::open(&ctx.js, &ctx.topo.stream(StreamKind::EmployeeState), &subject, Start::Sequence(1))
            .await?;
    while let Some(m) = r.next().await {
        let m = m?;
        let s: EmployeeSnapshot = mlc_bus::decode(&m.subject, &m.payload)?;
        for ev in &s.causing_event_ids {
            caused_by.insert(ev.clone(), m.sequence);
        }
        let c = s.content.unwrap_or_default();
        let first = if c.preferred_first_name.is_empty() { &c.first_name } else { &c.preferred_first_name };
        name = Some(format!("{first} {}", c.last_name));
        snapshot_changes.insert(m.sequence, content_changes(prev.as_ref(), &c));
        prev = Some(c);
    }
    let mut command_changes: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
    let mut prev_fields = None;
    let mut cd = None;
    let subject = ctx.topo.visma_command(&company, employee);
    let mut r =
        Replay::open(&ctx.js, &ctx.topo.stream(StreamKind::VismaCommands), &subject, Start::Sequence(1))
            .await?;
    while let Some(m) = r.next().await {
        let m = m?;
        let c: VismaCommand = mlc_bus::decode(&m.subject, &m.payload)?;
        let fields = c.fields.unwrap_or_default();
        let base = prev_fields.clone().unwrap_or_default();
        command_changes.insert(
            m.sequence,
            mlc_domain::diff_fields(&base, &fields)
                .into_iter()
                .map(|f| Change { field: f.field.to_string(), from: f.from, to: f.to })
                .collect(),
        );
        if !fields.employee_cd.is_empty() {
            cd = Some(fields.employee_cd.clone());
        }
        prev_fields = Some(fields);
    }

    // The time a snapshot was recorded, to put the events that caused it just before it.
    let snapshot_at: BTreeMap<u64, i64> = rows
        .iter()
        .filter(|r| r.kind == "snapshot.appended")
        .filter_map(|r| Some((r.detail["seq"].as_u64()?, r.recorded_at)))
        .collect();

    let mut timeline: Vec<(i64, u8, i64, Entry)> = Vec::new();
    for row in rows {
        let d = &row.detail;
        let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
        let seq = d["seq"].as_u64();
        let mut changes = Vec::new();
        let mut at = row.recorded_at;
        let (rank, summary) = match row.kind.as_str() {
            "event.hydrated" | "event.parked" | "event.dead_lettered" => {
                let id = row.event_id.strip_prefix("event:").or(row.event_id.strip_prefix("parked:"));
                if let Some(snap) = id.and_then(|id| caused_by.get(id)).and_then(|s| snapshot_at.get(s)) {
                    at = at.min(*snap);
                }
                let mut text = format!("{} ({})", s("event_type"), short(&s("source"), "EVENT_SOURCE_"));
                if let Some(received) = d["received_at_ms"].as_i64().filter(|ms| *ms > 0) {
                    let local = crate::output::local_time(received);
                    text.push_str(&format!(
                        ", received {}",
                        local.split_once(' ').map_or(&*local, |(_, t)| t)
                    ));
                }
                if !s("reason").is_empty() {
                    text = format!("{}: {}", s("event_type"), s("reason"));
                }
                (0, text)
            }
            "snapshot.appended" => {
                changes = seq.and_then(|q| snapshot_changes.remove(&q)).unwrap_or_default();
                (
                    1,
                    format!(
                        "snapshot {} in {}",
                        seq.unwrap_or(0),
                        ctx.topo.stream(StreamKind::EmployeeState)
                    ),
                )
            }
            "command.emitted" => {
                changes = seq.and_then(|q| command_changes.remove(&q)).unwrap_or_default();
                let parked = s("parked_reason");
                let kind = short(&s("kind"), "COMMAND_KIND_");
                if parked.is_empty() {
                    (
                        2,
                        format!(
                            "{kind} Visma employee {} (mapping revision {})",
                            s("employee_cd"),
                            s("mapping_revision")
                        ),
                    )
                } else {
                    (2, format!("{kind} Visma employee {}, parked: {parked}", s("employee_cd")))
                }
            }
            k if k.starts_with("visma.") => {
                let changed: Vec<String> = d["changed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                let mut text = format!("Visma employee {}", s("employee_cd"));
                if !changed.is_empty() {
                    text.push_str(&format!(": {}", changed.join(", ")));
                }
                if !s("reason").is_empty() {
                    text.push_str(&format!(": {}", s("reason")));
                }
                if let Some(dl) = d["dead_letter"].as_str() {
                    text.push_str(&format!(" (dead-lettered: {dl})"));
                }
                if let Some(n) = d["calls"].as_array().map(|c| c.len()).filter(|n| *n > 0) {
                    text.push_str(&format!(", {n} Visma call(s)"));
                }
                (3, text)
            }
            _ => (4, compact(d)),
        };
        timeline.push((
            at,
            rank,
            row.position,
            Entry {
                at: crate::output::rfc3339(at),
                at_ms: at,
                what: row.kind,
                summary,
                changes,
                trace_id: row.trace_id,
                detail: row.detail,
            },
        ));
    }
    timeline.sort_by_key(|(at, rank, pos, _)| (*at, *rank, *pos));
    Ok(Explained {
        employee: employee.to_string(),
        company: Some(company),
        name,
        visma_employee_cd: cd,
        timeline: timeline.into_iter().map(|(_, _, _, e)| e).collect(),
    })
}

/// A detail object as `key value, ...`, for kinds without a summary of their own.
fn compact(d: &serde_json::Value) -> String {
    match d.as_object() {
        Some(o) => o
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k} {s}"),
                other => format!("{k} {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => d.to_string(),
    }
}

/// The fields of the employee's content that changed since the previous snapshot (all set
/// fields for the first one).
fn content_changes(prev: Option<&EmployeeContent>, c: &EmployeeContent) -> Vec<Change> {
    let empty = EmployeeContent::default();
    let p = prev.unwrap_or(&empty);
    let city = |x: &EmployeeContent| x.work_location.as_ref().map(|l| l.city.clone()).unwrap_or_default();
    let pairs: [(&str, String, String); 11] = [
        ("first_name", p.first_name.clone(), c.first_name.clone()),
        ("preferred_first_name", p.preferred_first_name.clone(), c.preferred_first_name.clone()),
        ("last_name", p.last_name.clone(), c.last_name.clone()),
        ("email", p.email.clone(), c.email.clone()),
        ("work_email", p.work_email.clone(), c.work_email.clone()),
        ("phone", p.phone.clone(), c.phone.clone()),
        ("job_title", p.job_title.clone(), c.job_title.clone()),
        ("department", p.department_title.clone(), c.department_title.clone()),
        ("work_location", city(p), city(c)),
        (
            "status",
            if prev.is_some() {
                short(p.status().as_str_name(), "EMPLOYMENT_STATUS_")
            } else {
                String::new()
            },
            short(c.status().as_str_name(), "EMPLOYMENT_STATUS_"),
        ),
        ("middle_initial", p.middle_initial.clone(), c.middle_initial.clone()),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(f, from, to)| Change { field: f.to_string(), from, to })
        .collect()
}
