//! The company page: grant (re-authorise), mapping revision (preview a change), first-connect
//! state, pause and resume, its people.

use super::auth::{ActionForm, Csrf};
use super::layout::{self, Nav};
use super::{Console, PageError, PageResult};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use maud::html;
use std::sync::Arc;

#[derive(serde::Deserialize, Default)]
pub struct Notice {
    notice: Option<String>,
    /// Page of the people list, from 1.
    page: Option<usize>,
}

/// People a page of the company lists (10,000 of them would weigh megabytes).
const PEOPLE_PER_PAGE: usize = 100;

pub async fn page(
    State(c): State<Arc<Console>>,
    Path(company): Path<String>,
    Query(q): Query<Notice>,
    Extension(csrf): Extension<Csrf>,
) -> PageResult {
    let store = &c.ctx.store;
    let co = store
        .company(&company)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no company {company} is connected")))?;
    let grant = store.grant(&co.grant_id).await?;
    let parked = crate::gusto_version::parked_reason(store, &company).await?;
    let links = store.links(&company).await?;
    let action = |verb: &str, label: &str, class: &str| {
        html! {
            form.inline method="post" action={ "/companies/" (company) "/" (verb) } {
                (csrf.field())
                button type="submit" class=(class) { (label) }
            }
        }
    };
    Ok(layout::page(
        &co.name,
        Nav::Overview,
        html! {
            @if let Some(n) = &q.notice { p.notice { (n) } }
            dl.facts {
                dt { "Company" } dd.mono { (co.company_uuid) }
                dt { "Sync" } dd {
                    @if co.paused {
                        span.badge.warn #sync-state { "paused" } " its events wait in JetStream; nothing is lost. "
                        (action("resume", "Resume", "primary"))
                    } @else {
                        span.badge.ok #sync-state { "running" } " "
                        (action("pause", "Pause", ""))
                    }
                }
                dt { "Gusto grant" } dd #grant {
                    @match &grant {
                        Some(g) if g.status == "active" => { span.ok { "active" } " " (action("connect", "Re-authorise", "")) },
                        Some(g) => { span.bad { (g.status) } " " (g.status_reason.as_deref().unwrap_or("")) " " (action("connect", "Re-authorise", "primary")) },
                        None => { span.bad { "missing" } " " (action("connect", "Re-authorise", "primary")) },
                    }
                }
                dt { "Visma tenant" } dd { (co.visma_tenant) }
                dt { "Mapping" } dd {
                    span.mono { (co.mapping_path) } " "
                    @match std::fs::read_to_string(&co.mapping_path).map_err(|e| e.to_string()).and_then(|t| super::mapping::revision_of(&t, &co.mapping_path)) {
                        Ok(r) => { "revision " code { (r) } },
                        Err(e) => span.bad { (e) },
                    }
                    " · " a href={ "/companies/" (company) "/mapping" } #mapping { "preview a change" }
                }
                dt { "First connect" } dd {
                    @if co.first_connect_applied { "applied" } @else { span.warn { "awaiting review: writes wait" } " " a href={ "/review?company=" (company) } { "review" } }
                }
                @if let Some(p) = &parked { dt { "Parked" } dd.bad { (p) } }
                dt { "Connected" } dd { (layout::time(co.created_at)) " (" (layout::age(co.created_at)) ")" }
            }
            p {
                a href={ "/companies/" (company) "/reconcile" } #reconcile { "Compare with Visma (reconcile)" } " · "
                a href={ "/dead-letters?company=" (company) } { "Dead letters of this company" } " · "
                a href={ "/deliveries?company=" (company) } { "Deliveries" }
            }
            h2 { "People linked in Visma (" (links.len()) ")" }
            @let pages = links.len().div_ceil(PEOPLE_PER_PAGE).max(1);
            @let page = q.page.unwrap_or(1).clamp(1, pages);
            @if pages > 1 {
                p.muted { "Page " (page) " of " (pages) ": "
                    @if page > 1 { a href={ "/companies/" (company) "?page=" (page - 1) } { "previous" } " " }
                    @if page < pages { a href={ "/companies/" (company) "?page=" (page + 1) } { "next" } }
                }
            }
            table {
                thead { tr { th { "Gusto employee" } th { "Visma number" } th { "Linked by" } th { "Updated" } } }
                tbody {
                    @for l in links.iter().skip((page - 1) * PEOPLE_PER_PAGE).take(PEOPLE_PER_PAGE) {
                        tr {
                            td.mono { a href={ "/employees/" (l.employee_uuid) } { (l.employee_uuid) } }
                            td { (l.employee_cd) }
                            td { (l.origin) }
                            td { (layout::time(l.updated_at)) }
                        }
                    }
                }
            }
        },
    )
    .into_response())
}

async fn set_paused(c: &Console, company: &str, form: &ActionForm, paused: bool) -> PageResult {
    if !c.ctx.store.set_company_paused(company, paused).await? {
        return Err(PageError::NotFound(format!("no company {company} is connected")));
    }
    let verb = if paused { "pause" } else { "resume" };
    c.record(&form.who, verb, Some(company), None, serde_json::json!({})).await?;
    let notice = if paused { "Paused: its events wait in JetStream." } else { "Resumed." };
    Ok(Redirect::to(&format!("/companies/{company}?notice={}", urlencode(notice))).into_response())
}

pub async fn pause(
    State(c): State<Arc<Console>>,
    Path(company): Path<String>,
    form: ActionForm,
) -> PageResult {
    set_paused(&c, &company, &form, true).await
}

pub async fn resume(
    State(c): State<Arc<Console>>,
    Path(company): Path<String>,
    form: ActionForm,
) -> PageResult {
    set_paused(&c, &company, &form, false).await
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
