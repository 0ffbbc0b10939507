//! A company's reconcile report (`mlc reconcile`): Gusto against what Visma holds, per
//! office and per drifted employee, with the repair button (`mlc reconcile --repair`).
//! Comparing reads every employee of both systems, so it runs when asked, not on every
//! view of the company page.

use super::auth::{ActionForm, Csrf};
use super::layout::{self, Nav};
use super::{Console, PageResult};
use crate::reconcile::Report;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Extension;
use maud::{html, Markup};
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn page(
    State(c): State<Arc<Console>>,
    Path(company): Path<String>,
    Extension(csrf): Extension<Csrf>,
) -> PageResult {
    let report = crate::reconcile::compare(&c.ctx, &company).await?;
    Ok(layout::page("Reconcile", Nav::Overview, render(&report, &csrf, None)).into_response())
}

pub async fn repair(
    State(c): State<Arc<Console>>,
    Path(company): Path<String>,
    Extension(csrf): Extension<Csrf>,
    form: ActionForm,
) -> PageResult {
    let mut report = crate::reconcile::compare(&c.ctx, &company).await?;
    report.repairs = crate::reconcile::repair(&c.ctx, &report).await?;
    c.record(
        &form.who,
        "reconcile_repair",
        Some(&company),
        None,
        serde_json::json!({"repairs": report.repairs}),
    )
    .await?;
    Ok(layout::page("Reconcile", Nav::Overview, render(&report, &csrf, Some(report.repairs))).into_response())
}

fn render(r: &Report, csrf: &Csrf, repaired: Option<usize>) -> Markup {
    // Per office: Gusto's people, in sync, drift, missing, parked.
    let mut offices: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for row in &r.rows {
        let o = offices.entry(row.office.as_str()).or_default();
        o[0] += 1;
        o[match row.state {
            "in_sync" => 1,
            "drift" => 2,
            "missing" => 3,
            _ => 4,
        }] += 1;
    }
    let off: Vec<_> = r.rows.iter().filter(|row| row.state != "in_sync").collect();
    html! {
        @if let Some(n) = repaired { p.notice #repaired { (n) " repair(s) emitted: the pipeline re-reads Gusto or re-applies to Visma; compare again in a moment." } }
        p #in-sync { "In sync: " strong { (r.in_sync_count()) "/" (r.rows.len()) } " · "
            a href={ "/companies/" (r.company) } { "back to the company" } }
        table #offices {
            thead { tr { th { "Office" } th.num { "Gusto" } th.num { "In sync" } th.num { "Drift" } th.num { "Missing" } th.num { "Parked" } } }
            tbody { @for (office, c) in &offices { tr {
                td { (office) } @for (i, n) in c.iter().enumerate() { td.num.bad[i >= 2 && *n > 0] { (n) } }
            } } }
        }
        @if !off.is_empty() {
            h2 { "Not in sync (" (off.len()) ")" }
            form method="post" action={ "/companies/" (r.company) "/reconcile" } {
                (csrf.field())
                p { button.primary type="submit" #repair { "Repair" } " " span.muted { "missed webhooks are fetched again, records changed in Visma are re-applied" } }
            }
            table #drift {
                thead { tr { th { "Employee" } th { "Visma no." } th { "State" } th { "What differs" } } }
                tbody { @for row in &off { tr data-state=(row.state) {
                    td { a href={ "/employees/" (row.employee_uuid) } { (row.name) } }
                    td { (row.employee_cd) } td.warn { (row.state) }
                    td.diff.mono {
                        @if row.changes.is_empty() { (row.detail) }
                        @for (f, from, to) in &row.changes { div { (f) ": " del { (from) } " → " ins { (to) } } }
                    }
                } } }
            }
        }
        @if !r.visma_only.is_empty() {
            h2 { "Only in Visma, never touched (" (r.visma_only.len()) ")" }
            p.muted { (r.visma_only.join(", ")) }
        }
    }
}
