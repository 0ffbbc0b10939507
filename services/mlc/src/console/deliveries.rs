//! Deliveries: the webhooks (and backfill and catch-up events) the connector received, as
//! the projector recorded them in the audit log, newest first, with what became of each
//! (fetched, ignored, parked and why). Webhooks the gateway refused never reach the store
//! (the internet-facing gateway holds none): their counts by reason come from the
//! gateway's own `/metrics`.

use super::layout::{self, Nav};
use super::{Console, PageResult};
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use maud::html;
use std::sync::Arc;

/// Rows a page shows at most.
const SHOWN: i64 = 300;

#[derive(serde::Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    company: String,
    /// A part of the event type, e.g. `employee.updated`.
    #[serde(default)]
    r#type: String,
    /// hydrated | ignored | parked
    #[serde(default)]
    fate: String,
    #[serde(default)]
    employee: String,
}

pub async fn page(State(c): State<Arc<Console>>, Query(f): Query<Filter>) -> PageResult {
    let companies = c.ctx.store.companies().await?;
    let company = Some(f.company.as_str()).filter(|s| !s.is_empty());
    let rows = c.ctx.store.recent_audit("event.", company, SHOWN).await?;
    let shown: Vec<_> = rows
        .iter()
        .filter(|r| f.fate.is_empty() || r.kind.strip_prefix("event.") == Some(f.fate.as_str()))
        .filter(|r| f.employee.is_empty() || r.employee.as_deref() == Some(f.employee.as_str()))
        .filter(|r| f.r#type.is_empty() || str_of(&r.detail, "event_type").contains(f.r#type.as_str()))
        .collect();
    let refused = gateway_refusals(&c.ctx.cfg.gateway.ops_listen).await;
    let body = html! {
        form.filters method="get" action="/deliveries" {
            label { "Company " select name="company" {
                option value="" { "all" }
                @for co in &companies { option value=(co.company_uuid) selected[co.company_uuid == f.company] { (co.name) } }
            } }
            label { "Type contains " input type="search" name="type" value=(f.r#type) placeholder="employee.updated"; }
            label { "Outcome " select name="fate" {
                @for (v, t) in [("", "all"), ("hydrated", "fetched"), ("ignored", "ignored"), ("parked", "parked")] {
                    option value=(v) selected[v == f.fate] { (t) }
                }
            } }
            label { "Employee " input type="search" name="employee" value=(f.employee) size="36"; }
            button type="submit" { "Filter" }
        }
        h2 { "Refused by the gateway" }
        @match &refused {
            Ok(counts) if counts.is_empty() => p.muted { "None since the gateway started." },
            Ok(counts) => table #refused { thead { tr { th { "Reason" } th.num { "Webhooks" } } } tbody {
                @for (reason, n) in counts { tr { td { (reason) } td.num { (n) } } }
            } },
            Err(e) => p.muted { (e) },
        }
        h2 { "Received (" (shown.len()) @if rows.len() as i64 == SHOWN { ", the newest " (SHOWN) " read" } ")" }
        table #deliveries {
            thead { tr {
                th { "Received" } th { "Type" } th { "Source" } th { "Employee" } th { "What became of it" } th.num { "Handled after" }
            } }
            tbody {
                @for r in &shown {
                    @let received = r.detail.get("received_at_ms").and_then(|v| v.as_i64()).unwrap_or(0);
                    tr data-kind=(r.kind) {
                        td { @if received > 0 { (layout::time(received)) } }
                        td.mono { (str_of(&r.detail, "event_type")) }
                        td { (super::employee::source(str_of(&r.detail, "source"))) }
                        td.mono { @if let Some(e) = &r.employee { a href={ "/employees/" (e) } { (e.get(..8).unwrap_or(e)) "…" } } @else { (str_of(&r.detail, "entity_type")) } }
                        td { @match r.kind.as_str() {
                            "event.hydrated" => span.ok { "fetched from Gusto" },
                            "event.ignored" => span.muted { "ignored (nothing to sync)" },
                            "event.parked" => span.warn { "parked: " (str_of(&r.detail, "reason")) },
                            k => (k),
                        } }
                        td.num { @if received > 0 { (format!("{:.1} s", (r.recorded_at - received).max(0) as f64 / 1000.0)) } }
                    }
                }
            }
        }
    };
    Ok(layout::page("Deliveries", Nav::Deliveries, body).into_response())
}

fn str_of<'a>(d: &'a serde_json::Value, key: &str) -> &'a str {
    d.get(key).and_then(|v| v.as_str()).unwrap_or_default()
}

/// `webhooks_refused` of the gateway's `/metrics` by reason.
async fn gateway_refusals(ops_listen: &str) -> Result<Vec<(String, u64)>, String> {
    let url = format!("http://{ops_listen}/metrics");
    let unreachable = |e: reqwest::Error| format!("the gateway's metrics at {url} cannot be read ({e})");
    let client =
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(2)).build().map_err(unreachable)?;
    let text = client.get(&url).send().await.map_err(unreachable)?.text().await.map_err(unreachable)?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("webhooks_refused"))
        .filter_map(|l| {
            let reason = l.split("reason=\"").nth(1)?.split('"').next()?.to_string();
            let n = l.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            Some((reason, n))
        })
        .collect())
}
