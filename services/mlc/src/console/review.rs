//! First-connect review: the proposals of `mlc match` (criteria, confidence, reason) with a
//! decision per row (approve or reject, and which Visma employee), then apply. The page
//! writes the decisions as the review file `mlc match` writes and applies it with the same
//! code as `mlc match --apply` (`first_connect::apply`), so the checks are the CLI's: one
//! Visma employee per Gusto employee, both exist, nothing linked twice.

use super::auth::{ActionForm, Csrf};
use super::layout::{self, Nav};
use super::{Console, PageError, PageResult};
use crate::first_connect::People;
use crate::matching::{self, Proposal, ReviewRow, Suggestion};
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::Extension;
use maud::{html, Markup};
use std::sync::Arc;

#[derive(serde::Deserialize, Default)]
pub struct Which {
    #[serde(default)]
    company: String,
    /// Compare both systems for a company whose review is applied (people linked to
    /// nobody yet).
    #[serde(default)]
    unlinked: bool,
}

pub async fn page(
    State(c): State<Arc<Console>>,
    Query(q): Query<Which>,
    Extension(csrf): Extension<Csrf>,
) -> PageResult {
    let companies = c.ctx.store.companies().await?;
    let company = match (q.company.as_str(), companies.as_slice()) {
        ("", [only]) => only.company_uuid.clone(),
        ("", _) => return Ok(choose(&companies).into_response()),
        (c, _) => c.to_string(),
    };
    // An applied review is over: the page says so from the store, without reading every
    // employee of both systems (at 10,000 people that is the better part of a minute).
    if let Some(co) = companies.iter().find(|co| co.company_uuid == company && co.first_connect_applied) {
        if !q.unlinked {
            let links = c.ctx.store.links(&company).await?;
            return Ok(layout::page("First-connect review", Nav::Review, applied(co, &links)).into_response());
        }
    }
    let people = People::load(&c.ctx, &company).await?;
    let proposals = people.propose();
    Ok(layout::page("First-connect review", Nav::Review, review_form(&people, &proposals, &csrf))
        .into_response())
}

fn choose(companies: &[mlc_store::Company]) -> Markup {
    layout::page(
        "First-connect review",
        Nav::Review,
        html! {
            p { "Which company?" }
            ul { @for co in companies { li {
                a href={ "/review?company=" (co.company_uuid) } { (co.name) }
                " " @if co.first_connect_applied { span.muted { "applied" } } @else { span.warn { "awaiting review" } }
            } } }
        },
    )
}

fn applied(co: &mlc_store::Company, links: &[mlc_store::EmployeeLink]) -> Markup {
    let mut by_origin: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in links {
        *by_origin.entry(l.origin.as_str()).or_default() += 1;
    }
    html! {
        p.notice #applied {
            "The first connect of " (co.name) " is applied: " (links.len()) " people linked"
            @for (origin, n) in &by_origin { " · " (n) " " (origin) }
            ". New people are created in Visma as they come."
        }
        p {
            a href={ "/review?company=" (co.company_uuid) "&unlinked=true" } { "Look for people linked to nobody yet" }
            " " span.muted { "(reads every employee of Gusto and Visma)" } " · "
            a href={ "/companies/" (co.company_uuid) } { "the company" }
        }
    }
}

fn review_form(people: &People, proposals: &[Proposal], csrf: &Csrf) -> Markup {
    let co = &people.company;
    let rows: Vec<&Proposal> = proposals.iter().filter(|p| p.gusto.is_some()).collect();
    let keep: Vec<&Proposal> = proposals.iter().filter(|p| p.gusto.is_none()).collect();
    let counts = crate::first_connect::counts(proposals);
    html! {
        p.notice {
            @if co.first_connect_applied { "The first connect of " (co.name) " is applied; rows below are people linked to nobody yet." }
            @else { "Until this review is applied the writer creates no Visma employee for " (co.name) ": its commands wait." }
            " " (people.links.len()) " linked already. "
            @for (s, n) in &counts { (n) " " (s.as_str()) " · " }
        }
        @let linked: std::collections::HashSet<&String> = people.links.values().collect();
        datalist #visma-people {
            @for v in people.visma.iter().filter(|v| !linked.contains(&v.employee_cd)) {
                option value=(v.employee_cd) { (v.name()) }
            }
        }
        form method="post" action="/review" {
            (csrf.field())
            input type="hidden" name="company" value=(co.company_uuid);
            table #proposals {
                thead { tr {
                    th { "Suggestion" } th.num { "Confidence" } th { "Criteria" } th { "Gusto employee" }
                    th { "Visma employee" } th { "Reason" } th { "Decision" }
                } }
                tbody {
                    @for p in &rows {
                        @let g = p.gusto.as_ref().map(|g| g.uuid.as_str()).unwrap_or_default();
                        @let approve = p.suggestion == Suggestion::Link;
                        tr data-gusto=(g) data-suggestion=(p.suggestion.as_str()) {
                            td { span.badge.ok[p.suggestion == Suggestion::Link].warn[p.suggestion == Suggestion::Review].muted[p.suggestion != Suggestion::Link && p.suggestion != Suggestion::Review] { (p.suggestion.as_str()) } }
                            td.num { @if p.visma.is_some() { (format!("{:.2}", p.confidence)) } }
                            td.mono { (p.criteria_text()) }
                            td { (p.gusto.as_ref().map(|g| g.name()).unwrap_or_default())
                                 br; span.muted { (p.gusto.as_ref().and_then(|g| g.work_email.clone().or(g.email.clone())).unwrap_or_default()) } }
                            td { input type="text" size="9" list="visma-people" name={ "pick." (g) } aria-label="Visma employee number"
                                     value=(p.visma.as_ref().map(|v| v.employee_cd.as_str()).unwrap_or_default())
                                     placeholder="new";
                                 " " span.muted { (p.visma.as_ref().map(|v| v.name()).unwrap_or_default()) } }
                            td { (p.reason) }
                            td {
                                label { input type="radio" name={ "d." (g) } value="approve" checked[approve]; " link" } " "
                                label { input type="radio" name={ "d." (g) } value="reject" checked[!approve]; " don't link" }
                            }
                        }
                    }
                }
            }
            p { button.primary type="submit" #apply { "Apply…" } " " span.muted { "shows what it would store first" } }
        }
        @if !keep.is_empty() {
            h2 { "Only in Visma, left untouched (" (keep.len()) ")" }
            table { tbody { @for p in &keep { @if let Some(v) = &p.visma { tr { td { (v.employee_cd) } td { (v.name()) } td { (p.reason) } } } } } }
        }
    }
}

/// The decisions of the form as review-file rows (approved: `yes`).
fn decided_rows(form: &ActionForm, people: &People, company: &str) -> Vec<(u64, ReviewRow)> {
    people
        .gusto
        .iter()
        .filter(|g| !people.links.contains_key(&g.uuid))
        .filter_map(|g| {
            let approved = form.get(&format!("d.{}", g.uuid)) == Some("approve");
            let cd = form.get(&format!("pick.{}", g.uuid)).map(str::trim).unwrap_or_default();
            (approved && !cd.is_empty()).then(|| ReviewRow {
                approve: "yes".into(),
                gusto_uuid: g.uuid.clone(),
                gusto_name: g.name(),
                visma_cd: cd.to_string(),
                visma_name: people
                    .visma
                    .iter()
                    .find(|v| v.employee_cd == cd)
                    .map(|v| v.name())
                    .unwrap_or_default(),
                company: company.to_string(),
                ..Default::default()
            })
        })
        .enumerate()
        .map(|(i, r)| (i as u64 + 2, r))
        .collect()
}

pub async fn apply(
    State(c): State<Arc<Console>>,
    Extension(csrf): Extension<Csrf>,
    form: ActionForm,
) -> PageResult {
    let company = form.get("company").ok_or_else(|| PageError::BadRequest("no company".into()))?.to_string();
    let people = People::load(&c.ctx, &company).await?;
    let rows = decided_rows(&form, &people, &company);
    let check = matching::ApplyContext {
        company: company.clone(),
        gusto_uuids: people.gusto.iter().map(|g| g.uuid.clone()).collect(),
        visma_cds: people.visma.iter().map(|v| v.employee_cd.clone()).collect(),
        links: people.links.clone(),
    };
    if let Err(e) = matching::validate("the form", &rows, &check) {
        let body = html! { p.notice.bad #apply-errors { (e.to_string()) } p { a href={ "/review?company=" (company) } { "Back to the review" } } };
        return Ok(layout::page("First-connect review", Nav::Review, body).into_response());
    }
    if form.get("confirm") != Some("yes") {
        let to_create = people.gusto.len() - people.links.len() - rows.len();
        let body = html! {
            p.notice #dry-run {
                "Dry run: " strong #dry-run-links { (rows.len()) } " link(s) would be stored; "
                (to_create) " Gusto employee(s) would be created in Visma by the writer."
                @if !people.company.first_connect_applied { " Applying ends the review: the waiting commands go to Visma." }
            }
            form method="post" action="/review" {
                @for (k, v) in form_pairs(&form) { input type="hidden" name=(k) value=(v); }
                input type="hidden" name="confirm" value="yes";
                (csrf.field())
                button.primary type="submit" #confirm { "Store " (rows.len()) " link(s) and apply" } " "
                a href={ "/review?company=" (company) } { "Back to the review" }
            }
            table { tbody { @for (_, r) in &rows { tr { td { (r.gusto_name) } td { "→" } td { (r.visma_cd) " " (r.visma_name) } } } } }
        };
        return Ok(layout::page("First-connect review", Nav::Review, body).into_response());
    }
    let dir = tempfile::tempdir().map_err(anyhow::Error::from)?;
    let file = dir.path().join(format!("console-review-{company}.csv"));
    let plain: Vec<ReviewRow> = rows.iter().map(|(_, r)| r.clone()).collect();
    matching::write_review(&file, &plain).map_err(anyhow::Error::from)?;
    let applied = crate::first_connect::apply(&c.ctx, &file).await?;
    c.record(
        &form.who,
        "first_connect_apply",
        Some(&company),
        None,
        serde_json::json!({"linked": applied.linked, "to_create": applied.to_create, "untouched": applied.untouched.len()}),
    )
    .await?;
    let body = html! {
        p.notice #result { "Applied: " (applied.linked) " link(s) stored; " (applied.to_create) " Gusto employee(s) will be created by the writer." }
        table #links { tbody { @for (_, r) in &rows { tr {
            td { a href={ "/employees/" (r.gusto_uuid) } data-gusto=(r.gusto_uuid) { (r.gusto_name) } }
            td { "linked to " (r.visma_cd) " " (r.visma_name) }
        } } } }
        p { a href={ "/companies/" (company) } { "To the company" } }
    };
    Ok(layout::page("First-connect review", Nav::Review, body).into_response())
}

/// The decisions to carry from the dry run to the confirmation (not the CSRF field: the
/// page adds its own).
fn form_pairs(form: &ActionForm) -> Vec<(String, String)> {
    form.pairs().filter(|(k, _)| k.starts_with("d.") || k.starts_with("pick.") || *k == "company").collect()
}
