//! The overview: per company whether Visma is in sync and, when not, what an operator must
//! do, from the status model `mlc status` prints ([`crate::status`]); the services and
//! the consumers' lag; freshness (webhook to Visma) and outcomes over the last hour as
//! small SVG charts, from SYNC_OUTCOMES (folded as they arrive, [`crate::status::Outcomes`]).

use super::auth::Csrf;
use super::charts;
use super::layout::{self, Nav};
use super::{Console, PageResult};
use crate::status::{CompanyStatus, Status};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Extension;
use maud::{html, Markup};
use mlc_proto::v1::{Outcome, SyncOutcome};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The charts' window and its buckets.
const WINDOW_MS: i64 = 3_600_000;
const BUCKETS: usize = 12;

/// The outcomes as the charts stack them, with their colours.
const OUTCOMES: [(&str, &str); 5] = [
    ("applied", "#1a7f37"),
    ("unchanged", "#9fb3c8"),
    ("superseded", "#c9d1d9"),
    ("parked", "#d4a72c"),
    ("failed", "#cf222e"),
];

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Applied => 0,
        Outcome::Unchanged => 1,
        Outcome::Superseded => 2,
        Outcome::Parked => 3,
        _ => 4,
    }
}

/// What the last hour of SYNC_OUTCOMES says.
#[derive(Default)]
struct Hour {
    /// Seconds from webhook to Visma of applied outcomes, per bucket and per company.
    latency: Vec<Vec<f64>>,
    by_company: BTreeMap<String, Vec<f64>>,
    outcomes: Vec<Vec<u64>>,
}

/// The charts' hour from the outcomes the console's fold keeps for it.
fn last_hour<'a>(recent: impl Iterator<Item = &'a SyncOutcome>, now: i64) -> Hour {
    let since = now - WINDOW_MS;
    let mut h = Hour {
        latency: vec![Vec::new(); BUCKETS],
        outcomes: vec![vec![0; OUTCOMES.len()]; BUCKETS],
        ..Default::default()
    };
    for o in recent.filter(|o| o.decided_at_ms >= since) {
        let b = (((o.decided_at_ms - since) * BUCKETS as i64 / WINDOW_MS) as usize).min(BUCKETS - 1);
        h.outcomes[b][outcome_index(o.outcome())] += 1;
        if o.outcome() == Outcome::Applied && o.latency_ms > 0 {
            let s = o.latency_ms as f64 / 1000.0;
            h.latency[b].push(s);
            h.by_company.entry(o.company_uuid.clone()).or_default().push(s);
        }
    }
    h
}

/// Why a company is not in sync, in the words of what to do; empty when it is.
fn attention(co: &CompanyStatus, csrf: &Csrf) -> Vec<Markup> {
    let mut out = Vec::new();
    if co.paused {
        out.push(html! { "paused: its events wait in JetStream (resume on the company page)" });
    }
    if co.grant != "ok" {
        out.push(html! {
            "Gusto grant " (crate::status::grant_label(&co.grant))
            @if let Some(r) = &co.grant_reason { ": " (r) }
            " "
            form.inline method="post" action={ "/companies/" (co.company) "/connect" } {
                (csrf.field()) button.primary type="submit" { "Re-authorise" }
            }
        });
    }
    if co.first_connect != "applied" {
        out.push(html! { "first connect awaiting review: writes wait; " a href={ "/review?company=" (co.company) } { "review" } });
    }
    if let Some(p) = co.events_parked.as_ref().filter(|_| !co.paused) {
        out.push(html! { "events parked: " (p) });
    }
    for p in &co.parked {
        out.push(html! { (p.employees) " employee(s) parked: " (p.reason) });
    }
    if co.dead_letters > 0 {
        out.push(html! { a href={ "/dead-letters?company=" (co.company) } { (co.dead_letters) " dead letter(s)" } ": retry once fixed" });
    }
    if co.last_outcome.as_ref().is_some_and(|o| o.outcome == "failed") {
        out.push(html! { "the last write to Visma failed" });
    }
    out
}

pub async fn page(State(c): State<Arc<Console>>, Extension(csrf): Extension<Csrf>) -> PageResult {
    let now = mlc_bus::now_ms();
    // The console's fold of SYNC_OUTCOMES: each view reads only what arrived since the last.
    let mut fold = c.outcomes.lock().await;
    let status =
        crate::status::gather_with(&c.ctx.cfg, &c.ctx.store, &c.ctx.js, &c.ctx.topo, &mut fold).await?;
    let hour = last_hour(fold.recent.iter(), now);
    drop(fold);
    Ok(layout::page("Overview", Nav::Overview, render(&status, &hour, &c.ctx.cfg, &csrf)).into_response())
}

fn render(status: &Status, hour: &Hour, cfg: &mlc_config::Config, csrf: &Csrf) -> Markup {
    let lag: u64 = status.consumers.iter().map(|c| c.pending + c.in_flight).sum();
    let p = |q: f64| -> Vec<Option<f64>> {
        hour.latency.iter().map(|b| charts::quantile(&mut b.clone(), q)).collect()
    };
    html! {
        section #services {
            @for s in &status.services {
                span.badge.ok[s.state == "ready"].bad[s.state != "ready"] title=(s.detail) { (s.service) " " (s.state.replace('_', " ")) } " "
            }
            span.muted { " · in the pipeline: " (lag) " · dead letters: " (status.dead_letters) }
        }
        h2 { "Companies" }
        table #companies {
            thead { tr {
                th { "Company" } th { "State" } th { "Last outcome" } th.num { "Freshness p50 / p99 (1 h)" }
                th.num { "Gusto budget" } th { "Grant" }
            } }
            tbody {
                @for co in &status.companies {
                    @let why = attention(co, csrf);
                    @let mut fresh = hour.by_company.get(&co.company).cloned().unwrap_or_default();
                    tr data-company=(co.company) data-state=(if why.is_empty() { "in-sync" } else { "attention" }) {
                        td { a href={ "/companies/" (co.company) } { (co.name) } }
                        td {
                            @if why.is_empty() { span.badge.ok.state { "in sync" } }
                            @else {
                                span.badge.bad.state { "needs action" }
                                ul.why { @for w in &why { li { (w) } } }
                            }
                        }
                        td { @match &co.last_outcome {
                            Some(o) => { span class=(if o.outcome == "failed" { "bad" } else { "" }) { (o.outcome) }
                                         @if let Some(a) = o.age_secs { " " span.muted { (ago(a)) } } },
                            None => span.muted { "none yet" },
                        } }
                        td.num { (secs(charts::quantile(&mut fresh, 0.5))) " / " (secs(charts::quantile(&mut fresh, 0.99))) }
                        td.num { (co.gusto_budget.used) " / " (co.gusto_budget.limit) " per " (co.gusto_budget.window_secs) " s" }
                        td { (crate::status::grant_label(&co.grant)) }
                    }
                }
            }
        }
        details #connect-company {
            summary { "Connect a company" }
            form.filters method="post" action="/connect" {
                (csrf.field())
                label { "Name " input name="name" required; }
                label { "Visma tenant " select name="visma_tenant" { @for t in cfg.visma.tenants.keys() { option { (t) } } } }
                label { "Mapping file " input.mono name="mapping" size="40" required; }
                button.primary type="submit" { "Connect through Gusto" }
            }
        }
        div.charts {
            (charts::lines("Freshness, webhook to Visma", "s",
                &[("p50", "#0b5cad", p(0.5)), ("p99", "#cf222e", p(0.99))], ("1 h ago", "now")))
            (charts::bars("Outcomes", &OUTCOMES, &hour.outcomes, ("1 h ago", "now")))
        }
        h2 { "Consumers" }
        table #consumers {
            thead { tr { th { "Consumer" } th.num { "Pending" } th.num { "In flight" } th.num { "Redelivered" } } }
            tbody { @for c in &status.consumers { tr {
                td.mono { (c.consumer) } td.num { (c.pending) } td.num { (c.in_flight) } td.num { (c.redelivered) }
            } } }
        }
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |s| format!("{s:.1} s"))
}

fn ago(s: i64) -> String {
    layout::age(mlc_store::now_ms() - s * 1000)
}
