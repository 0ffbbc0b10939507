//! Dead letters: filter by company, stage and reason; retry or drop one or many. An action
//! first shows what it would touch (the dry run, with the count), then runs on exactly
//! those letters once confirmed: the same retry as `mlc dlq retry` (`cmd::retry`).

use super::auth::{ActionForm, Csrf};
use super::layout::{self, Nav};
use super::{Console, PageError, PageResult};
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::Extension;
use maud::{html, Markup};
use mlc_bus::StreamKind;
use mlc_proto::v1::DeadLetter;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Letters a page lists at most; the bulk actions still take every matching letter.
const SHOWN: usize = 500;

/// Which letters to show; empty fields match everything.
#[derive(serde::Deserialize, Default, Clone)]
pub struct Filter {
    #[serde(default)]
    company: String,
    #[serde(default)]
    stage: String,
    /// A part of the reason, any case.
    #[serde(default)]
    reason: String,
}

impl Filter {
    /// The CLI's criteria (`mlc dlq list --company --stage --reason`), so both select alike.
    fn matches(&self, l: &DeadLetter) -> bool {
        let given = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        crate::cmd::dlq::Criteria {
            company: given(&self.company),
            stage: given(&self.stage),
            reason: given(&self.reason),
            since_ms: None,
        }
        .matches(l)
    }

    fn from_form(f: &ActionForm) -> Filter {
        let field = |k: &str| f.get(k).unwrap_or_default().to_string();
        Filter { company: field("company"), stage: field("stage"), reason: field("reason") }
    }

    fn hidden(&self) -> Markup {
        html! {
            input type="hidden" name="company" value=(self.company);
            input type="hidden" name="stage" value=(self.stage);
            input type="hidden" name="reason" value=(self.reason);
        }
    }

    fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("company", &self.company)
            .append_pair("stage", &self.stage)
            .append_pair("reason", &self.reason)
            .finish()
    }
}

pub async fn page(
    State(c): State<Arc<Console>>,
    Query(filter): Query<Filter>,
    Extension(csrf): Extension<Csrf>,
) -> PageResult {
    let letters = crate::cmd::dlq::dead_letters(&c.ctx).await?;
    let companies = c.ctx.store.companies().await?;
    let stages: BTreeSet<&str> = letters
        .iter()
        .map(|(_, l)| l.stage.as_str())
        .chain(["projector", "mapper", "writer", "gateway"])
        .collect();
    let shown: Vec<&(u64, DeadLetter)> = letters.iter().filter(|(_, l)| filter.matches(l)).collect();
    let body = html! {
        form.filters method="get" action="/dead-letters" {
            label { "Company " select name="company" {
                option value="" { "all" }
                @for co in &companies {
                    option value=(co.company_uuid) selected[co.company_uuid == filter.company] { (co.name) }
                }
            } }
            label { "Stage " select name="stage" {
                option value="" { "all" }
                @for s in &stages { option value=(s) selected[*s == filter.stage] { (s) } }
            } }
            label { "Reason contains " input type="search" name="reason" value=(filter.reason); }
            button type="submit" { "Filter" }
        }
        p #dl-count {
            (shown.len()) " of " (letters.len()) " dead letter(s) match"
            @if shown.len() > SHOWN { "; the first " (SHOWN) " are listed, narrow the filter to see the others" }
        }
        form method="post" action="/dead-letters" {
            (csrf.field())
            (filter.hidden())
            p {
                button type="submit" name="action" value="retry" { "Retry selected…" } " "
                button.danger type="submit" name="action" value="drop" { "Drop selected…" } " "
                button type="submit" name="action" value="retry-matching" { "Retry all " (shown.len()) " matching…" } " "
                button.danger type="submit" name="action" value="drop-matching" { "Drop all " (shown.len()) " matching…" }
            }
            table #dead-letters {
                thead { tr {
                    th { input type="checkbox" data-select-all="seq" aria-label="select all"; }
                    th.num { "Seq" } th { "Failed" } th { "Stage" } th { "Company" } th { "Employee" } th.num { "Attempts" } th { "Reason" }
                } }
                tbody {
                    @for (seq, l) in shown.iter().take(SHOWN) {
                        tr data-seq=(seq) {
                            td { input type="checkbox" name="seq" value=(seq) aria-label={ "letter " (seq) }; }
                            td.num { (seq) }
                            td { @if l.failed_at_ms > 0 { (layout::time(l.failed_at_ms)) } }
                            td { (l.stage) }
                            td { a href={ "/companies/" (l.company_uuid) } { (company_name(&companies, &l.company_uuid)) } }
                            td.mono { @if let Some(e) = employee_of(&c, l) { a href={ "/employees/" (e) } { (e) } } }
                            td.num { (l.attempts) }
                            td { (l.reason) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("Dead letters", Nav::DeadLetters, body).into_response())
}

fn company_name<'a>(companies: &'a [mlc_store::Company], uuid: &'a str) -> &'a str {
    companies.iter().find(|c| c.company_uuid == uuid).map_or(uuid, |c| c.name.as_str())
}

/// The employee a letter is about, when its subject names one.
fn employee_of<'a>(c: &Console, l: &'a DeadLetter) -> Option<&'a str> {
    [StreamKind::VismaCommands, StreamKind::EmployeeState, StreamKind::GustoEvents]
        .into_iter()
        .find_map(|k| c.ctx.topo.split_subject(k, &l.original_subject))
        .map(|(_, e)| e)
        .filter(|_| l.stage != "projector")
}

/// `action` = retry | drop (the checked letters) or retry-matching | drop-matching (every
/// letter the filter shows); without `confirm` only the dry run: what would be touched.
pub async fn act(
    State(c): State<Arc<Console>>,
    Extension(csrf): Extension<Csrf>,
    form: ActionForm,
) -> PageResult {
    let filter = Filter::from_form(&form);
    let action = form.get("action").unwrap_or_default();
    let (verb, matching) = match action {
        "retry" => ("retry", false),
        "drop" => ("drop", false),
        "retry-matching" => ("retry", true),
        "drop-matching" => ("drop", true),
        other => return Err(PageError::BadRequest(format!("unknown action {other:?}"))),
    };
    let letters = crate::cmd::dlq::dead_letters(&c.ctx).await?;
    let chosen: BTreeSet<u64> = if matching {
        letters.iter().filter(|(_, l)| filter.matches(l)).map(|(s, _)| *s).collect()
    } else {
        form.all("seq").filter_map(|s| s.parse().ok()).collect()
    };
    let back = format!("/dead-letters?{}", filter.query());
    if chosen.is_empty() {
        let body = html! { p.notice { "No letter selected: tick the letters first." } p { a href=(back) { "Back" } } };
        return Ok(layout::page("Dead letters", Nav::DeadLetters, body).into_response());
    }
    let targets: Vec<&(u64, DeadLetter)> = letters.iter().filter(|(s, _)| chosen.contains(s)).collect();
    if form.get("confirm") != Some("yes") {
        let body = html! {
            p.notice #dry-run {
                "Dry run: " strong #dry-run-count { (targets.len()) } " dead letter(s) would be "
                (if verb == "retry" { "retried" } else { "dropped for good" }) "."
                @if targets.len() < chosen.len() { " " (chosen.len() - targets.len()) " of those selected are gone already." }
            }
            form method="post" action="/dead-letters" {
                (csrf.field())
                (filter.hidden())
                input type="hidden" name="action" value=(verb);
                input type="hidden" name="confirm" value="yes";
                @for (seq, _) in &targets { input type="hidden" name="seq" value=(seq); }
                button.primary type="submit" #confirm { (if verb == "retry" { "Retry " } else { "Drop " }) (targets.len()) " letter(s)" } " "
                a href=(back) { "Cancel" }
            }
            table { tbody { @for (seq, l) in &targets { tr { td.num { (seq) } td { (l.stage) } td { (l.reason) } } } } }
        };
        return Ok(layout::page("Dead letters", Nav::DeadLetters, body).into_response());
    }
    let stream =
        c.ctx.js.get_stream(c.ctx.topo.stream(StreamKind::DeadLetters)).await.map_err(anyhow::Error::from)?;
    let mut results = Vec::new();
    for (seq, l) in &targets {
        let r = crate::cmd::dlq::retry_or_drop(&c.ctx, &stream, verb == "retry", *seq, l).await;
        let detail = serde_json::json!({
            "seq": seq, "stage": l.stage, "reason": l.reason,
            "result": match &r { Ok(d) => d.clone(), Err(e) => format!("failed: {e:#}") },
        });
        let employee = employee_of(&c, l);
        c.record(&form.who, &format!("dlq_{verb}"), Some(&l.company_uuid), employee, detail).await?;
        results.push((*seq, r));
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let body = html! {
        p.notice.bad[failed > 0] #result {
            (results.len() - failed) " of " (results.len()) " letter(s) " (if verb == "retry" { "retried" } else { "dropped" })
            @if failed > 0 { "; " (failed) " failed and stay in the list" } "."
        }
        table { tbody { @for (seq, r) in &results { tr {
            td.num { (seq) }
            @match r { Ok(d) => td.ok { (d) }, Err(e) => td.bad { (mlc_telemetry::redact(&format!("{e:#}"))) } }
        } } } }
        p { a href=(back) { "Back to the dead letters" } }
    };
    Ok(layout::page("Dead letters", Nav::DeadLetters, body).into_response())
}
