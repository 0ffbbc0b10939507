//! The operator endpoints every service serves on its ops listener: `/healthz` (the
//! process is up), `/readyz` (its dependencies answer) and `/metrics` (Prometheus).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether a service can do its work now. The service's readiness watcher sets it from
/// its real dependencies (NATS connected, the store reachable, its stream present);
/// `/readyz` reads it. Cheap to clone: every clone is the same flag.
#[derive(Clone, Debug)]
pub struct ReadyFlag {
    ready: Arc<AtomicBool>,
    /// What `/readyz` answers with its 503: which dependencies the flag stands for.
    not_ready: &'static str,
}

impl ReadyFlag {
    /// A flag that starts not ready; `not_ready` is the 503's text.
    pub fn new(not_ready: &'static str) -> Self {
        Self { ready: Arc::new(AtomicBool::new(false)), not_ready }
    }

    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// `/healthz`, `/readyz` (200 `ready`, or 503 with what is missing) and `/metrics` (the
/// OpenMetrics text `metrics` returns).
pub fn ops_router<F>(metrics: F, ready: ReadyFlag) -> Router
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.is_ready() {
                        (StatusCode::OK, "ready").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, ready.not_ready).into_response()
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics();
                async move { metrics_response(text) }
            }),
        )
}

fn metrics_response(text: String) -> Response {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}
