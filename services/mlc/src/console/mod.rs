//! The operator console (`mlc run console`): server-rendered pages over the same code the
//! CLI commands run, for the people who operate the sync.
//!
//! Flow of a request: [`auth::guard`] decides who is there (loopback: anyone on this
//! machine; otherwise the operator token or the forward-auth header of a proxy in front)
//! and hands out the CSRF token; a page handler reads through the CLI's functions and
//! renders HTML with maud ([`layout`]); every form post goes through [`auth::ActionForm`]
//! (CSRF verified) and every action is written to the audit log with who did it
//! ([`Console::record`]). Live parts are server-sent events ([`employee::live`]).

mod auth;
mod charts;
mod company;
mod connect;
mod dead_letters;
mod deliveries;
mod employee;
mod layout;
mod mapping;
mod overview;
mod reconcile;
mod review;

use crate::ctx::Ctx;
use anyhow::Context as _;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mlc_config::Config;
use mlc_runtime::Deps;
use std::future::Future;
use std::sync::Arc;

/// What `[console]` of the configuration becomes.
#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    /// No login asked: the console listens on a loopback address only.
    pub open: bool,
    pub token: Option<mlc_config::Secret>,
    pub forward_auth_header: Option<axum::http::HeaderName>,
    pub jaeger_ui_url: Option<String>,
}

impl Settings {
    /// Validated: a console reachable from elsewhere without a way to log in is refused
    /// with an error naming `console.token`.
    pub fn from_config(cfg: &Config) -> anyhow::Result<Settings> {
        let c = &cfg.console;
        c.check_access()?;
        let forward_auth_header = c
            .forward_auth_header
            .as_deref()
            .map(|h| axum::http::HeaderName::try_from(h.to_ascii_lowercase()))
            .transpose()
            .context("config key `console.forward_auth_header`: not a header name")?;
        Ok(Settings {
            listen: c.listen.clone(),
            open: c.is_loopback(),
            token: c.token.clone(),
            forward_auth_header,
            jaeger_ui_url: c.jaeger_ui_url.as_ref().map(|u| u.trim_end_matches('/').to_string()),
        })
    }
}

/// The console's state: the CLI's context and the login sessions.
pub struct Console {
    pub ctx: Ctx,
    pub settings: Settings,
    sessions: auth::Sessions,
    /// SYNC_OUTCOMES as folded so far, for the overview ([`crate::status::gather_with`]).
    outcomes: tokio::sync::Mutex<crate::status::Outcomes>,
    /// Turns true when the console stops: live streams end, so shutdown does not wait on
    /// pages left open.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Console {
    pub fn new(ctx: Ctx, settings: Settings, stopping: tokio::sync::watch::Receiver<bool>) -> Arc<Console> {
        Arc::new(Console {
            ctx,
            settings,
            sessions: auth::Sessions::default(),
            outcomes: Default::default(),
            stopping,
        })
    }

    /// Writes an operator's action to the audit log: `console.<action>`, with who did it.
    pub async fn record(
        &self,
        who: &auth::Operator,
        action: &str,
        company: Option<&str>,
        employee: Option<&str>,
        mut detail: serde_json::Value,
    ) -> anyhow::Result<()> {
        detail["by"] = serde_json::Value::from(who.0.clone());
        self.ctx
            .store
            .append_audit(&mlc_store::AuditEntry {
                event_id: format!("console:{}", uuid::Uuid::new_v4()),
                kind: format!("console.{action}"),
                company: company.map(str::to_string),
                employee: employee.map(str::to_string),
                detail,
                trace_id: None,
            })
            .await
            .context("writing the action to the audit log")?;
        Ok(())
    }
}

/// Every page and action of the console.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/companies/{company}", get(company::page))
        .route("/companies/{company}/pause", post(company::pause))
        .route("/companies/{company}/resume", post(company::resume))
        .route("/companies/{company}/connect", post(connect::reauthorise))
        .route("/companies/{company}/mapping", get(mapping::page).post(mapping::preview))
        .route("/connect", post(connect::connect_new))
        .route("/companies/{company}/reconcile", get(reconcile::page).post(reconcile::repair))
        .route("/dead-letters", get(dead_letters::page).post(dead_letters::act))
        .route("/employees/{employee}", get(employee::page))
        .route("/employees/{employee}/live", get(employee::live))
        .route("/deliveries", get(deliveries::page))
        .route("/review", get(review::page).post(review::apply))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/console.css", get(layout::css))
        .route("/healthz", get(|| async { "ok" }))
        .route("/console.js", get(layout::js))
        .fallback(|| async { PageError::NotFound("no such page".into()) })
        .layer(axum::middleware::from_fn_with_state(console.clone(), auth::guard))
        .with_state(console)
}

/// The console on `listener`, serving until `shutdown` resolves. It acts through the CLI's
/// code, so it holds the CLI's context over the process's dependencies.
pub fn serve(
    listener: tokio::net::TcpListener,
    deps: &Deps,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    let ctx = Ctx {
        cfg: deps.cfg.clone(),
        store: deps.store()?.clone(),
        nats: deps.nats.clone(),
        js: deps.js.clone(),
        topo: deps.topo.clone(),
        publisher: deps.publisher.clone(),
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let app = router(Console::new(ctx, settings, stopping));
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    Ok(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("console") })
}

/// A page that cannot be shown, as the operator sees it (inside the layout).
#[derive(Debug)]
pub enum PageError {
    NotFound(String),
    BadRequest(String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        PageError::Internal(e)
    }
}

impl From<mlc_store::StoreError> for PageError {
    fn from(e: mlc_store::StoreError) -> Self {
        PageError::Internal(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        use axum::http::StatusCode;
        let (status, title, text) = match self {
            PageError::NotFound(t) => (StatusCode::NOT_FOUND, "Not found", t),
            PageError::BadRequest(t) => (StatusCode::BAD_REQUEST, "Bad request", t),
            PageError::Internal(e) => {
                let text = mlc_telemetry::redact(&format!("{e:#}"));
                tracing::warn!(error = %text, "console page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something failed", text)
            }
        };
        (status, layout::bare(title, maud::html! { p.error { (text) } })).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;
