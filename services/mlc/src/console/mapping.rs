//! A company's mapping: the file and revision in use, and a preview of what a changed
//! mapping would do before anyone changes the file. The operator edits the mapping's text
//! on the page; the preview is `mlc mapping preview --mapping` ([`crate::cmd::mapping`]'s
//! [`Summary`] and [`effect`] over [`crate::reconcile::compare_under`]): every Gusto employee
//! mapped under the edited text, against what Visma holds now. It reads Gusto and Visma and
//! writes nothing, so it is not audited; it is still a CSRF-checked post (the text is
//! too long for a link).

use super::auth::{ActionForm, Csrf};
use super::layout::{self, Nav};
use super::{Console, PageError, PageResult};
use crate::cmd::mapping::{changes, effect, Effect, Summary};
use crate::reconcile::Report;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Extension;
use maud::{html, Markup};
use std::sync::Arc;

/// Rows of a preview listed in full; the counts always cover everyone.
const LISTED: usize = 200;

/// The mapping file in use, its text and revision (or why it does not parse).
struct InUse {
    path: String,
    text: String,
    revision: Result<String, String>,
}

async fn in_use(c: &Console, company: &str) -> Result<InUse, PageError> {
    let co = c
        .ctx
        .store
        .company(company)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no company {company} is connected")))?;
    let path = co.mapping_path;
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("reading mapping file {path}: {e}"))?;
    let revision = revision_of(&text, &path);
    Ok(InUse { path, text, revision })
}

/// The mapping's revision, or its error as `file:line:column: ...`.
pub fn revision_of(text: &str, origin: &str) -> Result<String, String> {
    mlc_domain::Mapping::from_toml_str(text, origin)
        .map(|m| m.revision().to_string())
        .map_err(|e| e.to_string())
}

pub async fn page(
    State(c): State<Arc<Console>>,
    Path(company): Path<String>,
    Extension(csrf): Extension<Csrf>,
) -> PageResult {
    let cur = in_use(&c, &company).await?;
    let text = cur.text.clone();
    Ok(layout::page("Mapping", Nav::Overview, render(&company, &cur, &text, &csrf, None)).into_response())
}

/// The outcome of a preview: the edited mapping's error, or its revision and report.
enum Preview {
    Invalid(String),
    Report(String, Report),
}

pub async fn preview(
    State(c): State<Arc<Console>>,
    Path(company): Path<String>,
    Extension(csrf): Extension<Csrf>,
    form: ActionForm,
) -> PageResult {
    let cur = in_use(&c, &company).await?;
    let text = form.get("mapping").unwrap_or_default().replace("\r\n", "\n");
    let preview = match mlc_domain::Mapping::from_toml_str(&text, "the edited mapping") {
        Err(e) => Preview::Invalid(e.to_string()),
        Ok(m) => {
            let report = crate::reconcile::compare_under(&c.ctx, &company, &m, None).await?;
            Preview::Report(m.revision().to_string(), report)
        }
    };
    Ok(layout::page("Mapping", Nav::Overview, render(&company, &cur, &text, &csrf, Some(&preview)))
        .into_response())
}

fn render(company: &str, cur: &InUse, text: &str, csrf: &Csrf, preview: Option<&Preview>) -> Markup {
    html! {
        dl.facts {
            dt { "File" } dd.mono { (cur.path) }
            dt { "Revision in use" } dd {
                @match &cur.revision {
                    Ok(r) => code #revision { (r) },
                    Err(e) => span.bad { (e) },
                }
            }
        }
        p { a href={ "/companies/" (company) } { "back to the company" } }
        @match preview {
            Some(Preview::Invalid(e)) => { p.notice.bad #preview-error { "The edited mapping is not valid: " (e) } },
            Some(Preview::Report(rev, report)) => (result(cur, rev, report)),
            None => {},
        }
        h2 { "Preview a change" }
        p.muted { "Edit the mapping below and preview: every employee of the company is mapped under the edited text and compared with Visma's record. Nothing is written and the file is not changed; once the preview is right, change the file (" code { "mlc mapping check" } ") and restart the projector." }
        form method="post" action={ "/companies/" (company) "/mapping" } {
            (csrf.field())
            textarea.mapping name="mapping" spellcheck="false" { (text) }
            p { button.primary type="submit" #preview { "Preview" } }
        }
    }
}

fn result(cur: &InUse, revision: &str, r: &Report) -> Markup {
    let summary = Summary::of(&r.rows);
    let changed: Vec<_> = r.rows.iter().filter(|row| effect(row) != Effect::Unchanged).collect();
    html! {
        section #preview-result {
            p.notice #summary {
                "Preview of " (r.rows.len()) " employee(s) under revision " code { (revision) }
                @if cur.revision.as_deref() == Ok(revision) { " (the one in use)" }
                ": " strong { (summary) } "."
            }
            @if !changed.is_empty() {
                @if changed.len() > LISTED { p.muted { "The first " (LISTED) " of " (changed.len()) " changed records:" } }
                table #preview-rows {
                    thead { tr { th { "Employee" } th { "Office" } th { "Visma no." } th { "Would" } th { "Fields" } } }
                    tbody { @for row in changed.iter().take(LISTED) { @let e = effect(row); tr data-effect=(e.label()) {
                        td { a href={ "/employees/" (row.employee_uuid) } { (row.name) } }
                        td { (row.office) } td { (row.employee_cd) }
                        td class=(if e == Effect::Park { "warn" } else { "" }) { (e.label()) }
                        td.diff.mono {
                            @if e == Effect::Park { (row.detail) }
                            @for (f, from, to) in changes(row) { div { (f) ": " @if !from.is_empty() { del { (from) } " → " } ins { (to) } } }
                        }
                    } } }
                }
            }
        }
    }
}
