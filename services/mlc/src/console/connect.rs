//! Connect a company, or re-authorise one whose grant Gusto no longer honours, through the
//! same pending connect as `mlc company connect` ([`crate::cmd::connect::begin`]): every
//! precondition is checked first, then the page hands out Gusto's consent link. The admin
//! who presses Allow lands on the gateway's `/oauth/callback`, which relays the code to
//! the connect this console holds open; it exchanges the code, stores the grant and
//! answers the admin's page. Both ends are audited: `console.connect` when an operator
//! asks, `console.connected` or `console.connect_failed` with the outcome.
//!
//! The consent page is Gusto's, on another origin: the page shows a link to it (a form
//! redirecting there would break `form-action 'self'`), which an operator who is not the
//! company's Gusto admin can also pass on.

use super::auth::{ActionForm, Operator};
use super::layout::{self, Nav};
use super::{Console, PageError, PageResult};
use crate::cmd::connect::ConnectArgs;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use maud::html;
use std::sync::Arc;

/// How long the consent link stays good.
const CONSENT_TIMEOUT_SECS: u64 = 600;

/// `POST /companies/<uuid>/connect`: re-authorise a connected company, same name, tenant
/// and mapping; a consent given for another company is refused.
pub async fn reauthorise(
    State(c): State<Arc<Console>>,
    Path(company): Path<String>,
    form: ActionForm,
) -> PageResult {
    let co = c
        .ctx
        .store
        .company(&company)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no company {company} is connected")))?;
    let args = ConnectArgs {
        name: co.name.clone(),
        visma_tenant: co.visma_tenant.clone(),
        mapping: co.mapping_path.clone().into(),
        redirect_uri: None,
        timeout_secs: CONSENT_TIMEOUT_SECS,
        skip_review: false,
        expect_company: Some(company.clone()),
    };
    start(c, form.who, args, Some(company)).await
}

/// `POST /connect`: a new company, from the overview's form (name, Visma tenant, mapping).
pub async fn connect_new(State(c): State<Arc<Console>>, form: ActionForm) -> PageResult {
    let field = |k: &str| {
        form.get(k).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string).ok_or_else(|| {
            PageError::BadRequest(format!(
                "the form's `{k}` is empty: give the company's name, Visma tenant and mapping file"
            ))
        })
    };
    let args = ConnectArgs {
        name: field("name")?,
        visma_tenant: field("visma_tenant")?,
        mapping: field("mapping")?.into(),
        redirect_uri: None,
        timeout_secs: CONSENT_TIMEOUT_SECS,
        skip_review: false,
        expect_company: None,
    };
    start(c, form.who.clone(), args, None).await
}

async fn start(c: Arc<Console>, who: Operator, args: ConnectArgs, company: Option<String>) -> PageResult {
    let name = args.name.clone();
    let detail = serde_json::json!({"name": name, "visma_tenant": args.visma_tenant, "reauthorise": company.is_some()});
    // A missing key, an unknown tenant or a broken mapping is said now, before Gusto.
    let pending = crate::cmd::connect::begin(c.ctx.cfg.clone(), args)
        .await
        .map_err(|e| PageError::BadRequest(mlc_telemetry::redact(&format!("{e:#}"))))?;
    let url = pending.authorize_url.clone();
    c.record(&who, "connect", company.as_deref(), None, detail).await?;
    let console = c.clone();
    let mut stopping = c.stopping.clone();
    tokio::spawn(async move {
        let outcome = tokio::select! {
            r = pending.wait() => r,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let (action, detail) = match &outcome {
            Ok(message) => ("connected", serde_json::json!({"message": message})),
            Err(e) => {
                ("connect_failed", serde_json::json!({"error": mlc_telemetry::redact(&format!("{e:#}"))}))
            }
        };
        // The company a new connect reached is in its message; the audit row names it
        // when it was known up front.
        if let Err(e) = console.record(&who, action, company.as_deref(), None, detail).await {
            tracing::warn!(error = %format!("{e:#}"), "console: recording the connect's outcome failed");
        }
    });
    Ok(layout::page(
        &format!("Connect {name}"),
        Nav::Overview,
        html! {
            p { "Open Gusto's consent page as the company's Gusto admin and press " strong { "Allow" } ". "
                "Gusto then sends the browser to the gateway's " code { "/oauth/callback" } ", and this console stores the grant." }
            p { a.button.primary #authorize href=(url) { "Open Gusto's consent page" } }
            p.muted { "Or send this link to the admin. It works once, for " (CONSENT_TIMEOUT_SECS / 60) " minutes:" }
            pre.mono #authorize-url { (url) }
            p { a href="/" { "Back to the overview" } " (the company shows its grant once connected)" }
        },
    )
    .into_response())
}
