//! The gateway: Gusto webhooks in, verified events on JetStream out.
//!
//! Per request, in this order and no other:
//! 1. size limit (413 past it), read the raw body;
//! 2. no signature header: accept only the exact `{"verification_token": ...}` handshake
//!    (stored for `mlc subscribe`), refuse everything else with 401;
//! 3. verify `X-Gusto-Signature` in constant time against every active token (401);
//! 4. only then parse: a signed body that is not an event goes to DEAD_LETTERS, 200;
//! 5. publish a `GustoEvent` with `Nats-Msg-Id` = the Gusto event uuid, await the ack,
//!    and only then answer 200. No ack (NATS down, timeout): 503, and Gusto retries.

mod metrics;
pub mod oauth;

pub use metrics::GatewayMetrics;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mlc_bus::{Publisher, StreamKind, Topology};
use mlc_proto::v1::{DeadLetter, EventSource, GustoEvent, TraceContext};
use mlc_store::{AuditEntry, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Everything a request handler needs.
pub struct Gateway {
    publisher: Publisher,
    topology: Topology,
    /// Verification tokens from configuration, as bytes: HMAC keys.
    config_tokens: Vec<Vec<u8>>,
    /// Configuration tokens plus those `mlc subscribe` verified with Gusto (from the store).
    tokens: std::sync::RwLock<Arc<Vec<Vec<u8>>>>,
    max_body_bytes: usize,
    store: Option<Arc<Store>>,
    metrics: GatewayMetrics,
    ready: AtomicBool,
}

impl Gateway {
    pub fn new(
        publisher: Publisher,
        topology: Topology,
        tokens: Vec<Vec<u8>>,
        max_body_bytes: usize,
        store: Option<Arc<Store>>,
    ) -> Arc<Self> {
        Arc::new(Gateway {
            publisher,
            topology,
            tokens: std::sync::RwLock::new(Arc::new(tokens.clone())),
            config_tokens: tokens,
            max_body_bytes,
            store,
            metrics: GatewayMetrics::new(),
            ready: AtomicBool::new(false),
        })
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// Re-reads the tokens that `mlc subscribe` verified, so a new subscription is
    /// served without a restart. A token only counts once Gusto confirmed it: the
    /// unsigned handshake POST alone proves nothing about who sent it.
    pub async fn refresh_tokens(&self) {
        let Some(store) = &self.store else { return };
        match store.verified_tokens().await {
            Ok(verified) => {
                let mut all = self.config_tokens.clone();
                all.extend(verified.into_iter().map(String::into_bytes));
                all.dedup();
                *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(all);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read verified webhook tokens"),
        }
    }

    fn current_tokens(&self) -> Arc<Vec<Vec<u8>>> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps `/readyz` true only while NATS is connected and the events stream exists,
    /// and the verified tokens current.
    pub async fn watch_readiness(self: Arc<Self>, client: async_nats::Client) {
        let stream = self.topology.stream(StreamKind::GustoEvents);
        loop {
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            let exists = connected
                && tokio::time::timeout(
                    Duration::from_secs(2),
                    self.publisher.context().get_stream_no_info(&stream),
                )
                .await
                .is_ok_and(|r| r.is_ok());
            self.ready.store(exists, Ordering::Relaxed);
            self.refresh_tokens().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The gateway's HTTP routes.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/webhooks/gusto", post(receive))
        .route("/oauth/callback", get(oauth::callback))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(gw)
}

/// Serves until `shutdown` resolves, then stops accepting and finishes the requests in
/// flight before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(gw)).with_graceful_shutdown(shutdown).await
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "nats not connected or GUSTO_EVENTS missing").into_response()
    }
}

async fn metrics_text(State(gw): State<Arc<Gateway>>) -> Response {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], gw.metrics.encode())
        .into_response()
}

/// Why a request was refused; the label of `gateway_refused_total`.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    TooLarge,
    Unreadable,
    MissingSignature,
    BadSignatureEncoding,
    WrongSignature,
    NoTokensConfigured,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::Unreadable => "unreadable",
            Refusal::MissingSignature => "missing_signature",
            Refusal::BadSignatureEncoding => "bad_signature_encoding",
            Refusal::WrongSignature => "wrong_signature",
            Refusal::NoTokensConfigured => "no_tokens_configured",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

async fn receive(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let span = tracing::info_span!("webhook", otel.kind = "server", event_uuid = tracing::field::Empty);
    let metrics_gw = gw.clone();
    let _inflight = metrics_gw.metrics.in_flight();
    handle(gw, headers, body).instrument(span).await
}

async fn handle(gw: Arc<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let received_at_ms = mlc_bus::now_ms();

    // 1. Size, before reading a byte more than allowed.
    let declared =
        headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > gw.max_body_bytes) {
        return refuse(&gw, Refusal::TooLarge).await;
    }
    let raw = match axum::body::to_bytes(body, gw.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            return refuse(&gw, if too_large { Refusal::TooLarge } else { Refusal::Unreadable }).await;
        }
    };

    // 2. The unsigned handshake, by its exact shape only.
    let signature = headers.get(gusto::webhook::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if signature.is_none() {
        if let Some(token) = gusto::webhook::is_verification_handshake(&raw) {
            return handshake(&gw, &token).await;
        }
        return refuse(&gw, Refusal::MissingSignature).await;
    }

    // 3. Verify before parsing.
    if let Err(e) = gusto::webhook::verify_signature(gw.current_tokens().as_slice(), &raw, signature) {
        use gusto::webhook::SignatureError as S;
        let r = match e {
            S::Missing => Refusal::MissingSignature,
            S::BadEncoding => Refusal::BadSignatureEncoding,
            S::NoKeys => Refusal::NoTokensConfigured,
            S::Mismatch => Refusal::WrongSignature,
        };
        return refuse(&gw, r).await;
    }

    // 4. Parse; a signed body that is not an event is kept, not bounced.
    let (event, company) = match gusto::webhook::parse_event(&raw) {
        Ok(ev) => match ev.resource_uuid.clone().filter(|c| !c.trim().is_empty()) {
            Some(company) if !ev.uuid.trim().is_empty() => (ev, company),
            _ => return dead_letter(&gw, raw, "signed body lacks uuid or resource_uuid").await,
        },
        Err(e) => return dead_letter(&gw, raw, &format!("signed body is not a Gusto event: {e}")).await,
    };
    tracing::Span::current().record("event_uuid", event.uuid.as_str());

    // 5. Publish, await the ack, then answer.
    let mut trace_headers = async_nats::HeaderMap::new();
    mlc_bus::inject_trace_context(&mut trace_headers);
    let traceparent = trace_headers.get("traceparent").map(|v| v.as_str().to_string()).unwrap_or_default();
    let entity_type = event.entity_type.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "Unknown".into());
    let msg = GustoEvent {
        event_uuid: event.uuid.clone(),
        event_type: event.event_type.clone(),
        company_uuid: company.clone(),
        entity_type: entity_type.clone(),
        entity_uuid: event.entity_uuid.clone().unwrap_or_default(),
        timestamp: event.timestamp.unwrap_or_default(),
        raw_body: raw.to_vec(),
        received_at_ms,
        trace: Some(TraceContext { traceparent, tracestate: String::new() }),
        source: EventSource::Webhook as i32,
    };
    let subject = gw.topology.gusto_event(&company, &entity_type);
    let started = Instant::now();
    match gw.publisher.publish(&subject, &event.uuid, &msg).await {
        Ok(p) => {
            gw.metrics.observe_publish(started.elapsed());
            gw.metrics.accepted(p.duplicate);
            tracing::info!(event_type = %event.event_type, seq = p.sequence, duplicate = p.duplicate, "webhook accepted");
            (StatusCode::OK, "accepted").into_response()
        }
        Err(e) => {
            gw.metrics.unavailable();
            tracing::warn!(error = %e, "publish not acknowledged; answering 503 so Gusto retries");
            (StatusCode::SERVICE_UNAVAILABLE, "event store unavailable, retry later").into_response()
        }
    }
}

async fn refuse(gw: &Gateway, r: Refusal) -> Response {
    gw.metrics.refused(r.label());
    tracing::warn!(reason = r.label(), "webhook refused");
    if let Some(store) = &gw.store {
        // Audited without the body: an unverified body is attacker-controlled.
        let entry = AuditEntry {
            event_id: format!("refused:{}", uuid::Uuid::new_v4()),
            kind: "webhook.refused".into(),
            company: None,
            employee: None,
            detail: serde_json::json!({ "reason": r.label(), "status": r.status().as_u16() }),
            trace_id: None,
        };
        if let Err(e) = store.append_audit(&entry).await {
            tracing::warn!(error = %e, "cannot audit a refused webhook");
        }
    }
    (r.status(), r.label()).into_response()
}

async fn handshake(gw: &Gateway, token: &str) -> Response {
    let Some(store) = &gw.store else {
        tracing::warn!("verification token received but no store is configured to keep it");
        return (StatusCode::SERVICE_UNAVAILABLE, "no store to keep the verification token").into_response();
    };
    match store.put_verification_token(token).await {
        Ok(()) => {
            gw.metrics.handshake();
            let _ = store
                .append_audit(&AuditEntry {
                    event_id: format!("handshake:{}", uuid::Uuid::new_v4()),
                    kind: "webhook.verification_token_received".into(),
                    company: None,
                    employee: None,
                    detail: serde_json::json!({}),
                    trace_id: None,
                })
                .await;
            tracing::info!("webhook verification token received; run `mlc subscribe --verify` to finish");
            (StatusCode::OK, "verification token received").into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot store the verification token");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot store the verification token").into_response()
        }
    }
}

async fn dead_letter(gw: &Gateway, raw: bytes::Bytes, reason: &str) -> Response {
    // Dedupe on the body's hash: Gusto's retries of the same bad body are one letter.
    let id = format!("gateway:{}", hex_sha256(&raw));
    let letter = DeadLetter {
        stage: "gateway".into(),
        original_id: id.clone(),
        original_subject: String::new(),
        original_payload: raw.to_vec(),
        reason: reason.to_string(),
        attempts: 1,
        failed_at_ms: mlc_bus::now_ms(),
        trace: None,
        company_uuid: String::new(),
    };
    let subject = gw.topology.dead_letter("gateway", "unknown");
    match gw.publisher.publish(&subject, &id, &letter).await {
        Ok(_) => {
            gw.metrics.dead_lettered();
            tracing::warn!(reason, "signed but unparseable webhook kept in DEAD_LETTERS");
            (StatusCode::OK, "kept for review").into_response()
        }
        Err(e) => {
            gw.metrics.unavailable();
            tracing::warn!(error = %e, "cannot keep a dead letter; answering 503");
            (StatusCode::SERVICE_UNAVAILABLE, "event store unavailable, retry later").into_response()
        }
    }
}

fn hex_sha256(b: &[u8]) -> String {
    use std::fmt::Write;
    let digest = <sha2_digest::Sha256 as sha2_digest::Digest>::digest(b);
    digest.iter().fold(String::with_capacity(64), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

mod sha2_digest {
    pub use sha2::{Digest, Sha256};
}
