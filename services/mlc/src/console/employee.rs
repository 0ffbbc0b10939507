//! The employee page: what `mlc explain` tells (webhooks, snapshots, commands with their
//! field diffs, Visma outcomes, operator actions) as a timeline in the reader's local time,
//! kept up to date by server-sent events while the page is open.

use super::layout::{self, Nav};
use super::{Console, PageResult};
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures::Stream;
use maud::{html, Markup};
use mlc_bus::replay::{Replay, Start};
use mlc_bus::StreamKind;
use mlc_proto::v1::{EmployeeSnapshot, VismaCommand};
use mlc_store::{AuditQuery, AuditRow};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often an open page looks for news.
const LIVE_POLL: Duration = Duration::from_millis(500);

/// One employee's record: audit rows in order, and what the streams add to them.
struct Record {
    rows: Vec<AuditRow>,
    company: Option<String>,
    /// The field changes each command makes, by command id (against the command before).
    diffs: HashMap<String, Vec<mlc_domain::FieldChange>>,
    latest: Option<EmployeeSnapshot>,
}

async fn record(c: &Console, employee: &str) -> anyhow::Result<Record> {
    let rows = c
        .ctx
        .store
        .audit(&AuditQuery { employee: Some(employee.to_string()), limit: 10_000, ..Default::default() })
        .await?;
    let company = rows.iter().find_map(|r| r.company.clone());
    let (mut diffs, mut latest) = (HashMap::new(), None);
    if let Some(company) = &company {
        let (js, topo) = (&c.ctx.js, &c.ctx.topo);
        let subject = topo.visma_command(company, employee);
        let mut replay =
            Replay::open(js, &topo.stream(StreamKind::VismaCommands), &subject, Start::Sequence(1)).await?;
        let mut before = mlc_proto::v1::VismaEmployeeFields::default();
        while let Some(m) = replay.next().await {
            let m = m?;
            let cmd: VismaCommand = mlc_bus::decode(&m.subject, &m.payload)?;
            let Some(fields) = cmd.fields else { continue };
            diffs.insert(cmd.command_id.clone(), mlc_domain::diff_fields(&before, &fields));
            before = fields;
        }
        latest = mlc_bus::last_on_subject::<EmployeeSnapshot>(
            js,
            &topo.stream(StreamKind::EmployeeState),
            &topo.employee_state(company, employee),
        )
        .await?
        .map(|s| s.message);
    }
    Ok(Record { rows, company, diffs, latest })
}

/// What a row says, in an operator's words, and how it looks.
fn describe(r: &AuditRow) -> (String, &'static str) {
    let d = &r.detail;
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    match r.kind.as_str() {
        "event.hydrated" => {
            (format!("{} ({}) fetched from Gusto", s("event_type"), source(&s("source"))), "")
        }
        "event.ignored" => (format!("{} ignored", s("event_type")), "muted"),
        "event.parked" => (format!("{} parked: {}", s("event_type"), s("reason")), "warn"),
        "snapshot.appended" => ("new state from Gusto".into(), ""),
        "command.emitted" if !s("parked_reason").is_empty() => {
            (format!("command parked: {}", s("parked_reason")), "warn")
        }
        "command.emitted" => (
            format!(
                "{} for Visma employee {} (mapping {})",
                kind(&s("kind")),
                s("employee_cd"),
                s("mapping_revision")
            ),
            "",
        ),
        "visma.applied" => (format!("applied in Visma as {}", s("employee_cd")), "ok"),
        "visma.unchanged" => ("Visma already held this".into(), "muted"),
        "visma.superseded" => ("superseded by a newer command".into(), "muted"),
        "visma.parked" => (format!("parked by the writer: {}", s("reason")), "warn"),
        "visma.failed" => (format!("Visma call failed{}", dead_letter(d)), "bad"),
        "first_connect.link" => (format!("linked to Visma employee {}", s("employee_cd")), "ok"),
        "reconcile.repair" => ("repaired by reconcile".into(), ""),
        k if k.starts_with("console.") => (format!("{} by {}", &k[8..].replace('_', " "), s("by")), ""),
        k => (k.to_string(), ""),
    }
}

/// An event's source as an operator says it.
pub(super) fn source(s: &str) -> &str {
    match s {
        "EVENT_SOURCE_WEBHOOK" => "webhook",
        "EVENT_SOURCE_BACKFILL" => "backfill",
        "EVENT_SOURCE_CATCH_UP" => "catch-up",
        other => other.strip_prefix("EVENT_SOURCE_").unwrap_or(other),
    }
}

fn kind(s: &str) -> String {
    s.strip_prefix("COMMAND_KIND_").unwrap_or(s).to_lowercase()
}

fn dead_letter(d: &serde_json::Value) -> String {
    d.get("dead_letter")
        .and_then(|v| v.as_str())
        .map(|c| format!(" ({c}; dead-lettered)"))
        .unwrap_or_default()
}

fn timeline(c: &Console, rec: &Record) -> Markup {
    let jaeger = c.settings.jaeger_ui_url.as_deref();
    html! {
        @for r in rec.rows.iter().rev() {
            @let (what, class) = describe(r);
            li data-position=(r.position) data-kind=(r.kind) {
                span { (layout::time(r.recorded_at)) }
                span.mono.muted { (r.kind) }
                div {
                    span class=(class) { (what) }
                    @if let Some(id) = r.detail.get("command_id").and_then(|v| v.as_str()).filter(|_| r.kind == "command.emitted") {
                        @if let Some(changes) = rec.diffs.get(id).filter(|c| !c.is_empty()) {
                            div.diff.mono {
                                @for ch in changes {
                                    div { (ch.field) ": " @if !ch.from.is_empty() { del { (ch.from) } " → " } ins { (ch.to) } }
                                }
                            }
                        }
                    }
                    @if let Some(t) = &r.trace_id {
                        " "
                        @match jaeger {
                            Some(j) => a.mono href={ (j) "/trace/" (t) } title="trace in Jaeger" { "trace " (t.get(..8).unwrap_or(t)) },
                            None => span.mono.muted title=(t) { "trace " (t.get(..8).unwrap_or(t)) },
                        }
                    }
                }
            }
        }
    }
}

pub async fn page(State(c): State<Arc<Console>>, Path(employee): Path<String>) -> PageResult {
    let rec = record(&c, &employee).await?;
    let last = rec.rows.last().map_or(0, |r| r.position);
    let name = rec.latest.as_ref().and_then(|s| s.content.as_ref()).map(|p| {
        let first = if p.preferred_first_name.is_empty() { &p.first_name } else { &p.preferred_first_name };
        format!("{first} {}", p.last_name)
    });
    let link = match &rec.company {
        Some(co) => c.ctx.store.link(co, &employee).await?,
        None => None,
    };
    let body = html! {
        dl.facts {
            dt { "Gusto employee" } dd.mono { (employee) }
            @if let Some(co) = &rec.company { dt { "Company" } dd { a href={ "/companies/" (co) } { (co) } } }
            @if let Some(p) = rec.latest.as_ref().and_then(|s| s.content.as_ref()) {
                dt { "Title" } dd { (p.job_title) } dt { "Department" } dd { (p.department_title) }
            }
            dt { "Visma employee" } dd #visma-link {
                @match &link { Some(l) => { (l.employee_cd) " (" (l.origin) ")" }, None => span.muted { "not linked yet" } }
            }
        }
        h2 { "Timeline " span.live #live-status { "" } }
        @if rec.rows.is_empty() { p.muted { "Nothing recorded for this employee yet." } }
        ol.timeline #timeline data-live={ "/employees/" (employee) "/live?after=" (last) } data-live-status="live-status" {
            (timeline(&c, &rec))
        }
    };
    Ok(layout::page(name.as_deref().unwrap_or(&employee), Nav::None, body).into_response())
}

#[derive(serde::Deserialize)]
pub struct After {
    #[serde(default)]
    after: i64,
}

/// Server-sent events: the whole timeline again (`replace`) whenever the audit log has
/// something new about this employee.
pub async fn live(
    State(c): State<Arc<Console>>,
    Path(employee): Path<String>,
    Query(q): Query<After>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold((c, employee, q.after), |(c, employee, mut seen)| async move {
        let mut stopping = c.stopping.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(LIVE_POLL) => {}
                _ = stopping.wait_for(|s| *s) => return None,
            }
            let newer = c
                .ctx
                .store
                .audit(&AuditQuery {
                    employee: Some(employee.clone()),
                    after_position: seen,
                    limit: 1000,
                    ..Default::default()
                })
                .await;
            let Some(last) = newer.ok().and_then(|rows| rows.last().map(|r| r.position)) else { continue };
            seen = last;
            match record(&c, &employee).await {
                Ok(rec) => {
                    let html = timeline(&c, &rec).into_string();
                    return Some((Ok(Event::default().event("replace").data(html)), (c, employee, seen)));
                }
                Err(e) => tracing::warn!(error = %e, "console: cannot read the employee's record"),
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
