//! The gateway: Gusto webhooks in, verified events on JetStream out. It is the one
//! internet-facing process, so it holds no store, no encryption key and no OAuth grant: it
//! talks only to NATS (docs/SECURITY.md).
//!
//! Per request, in this order and no other:
//! 1. size limit (413 past it), a reservation of the shared body budget (503 with
//!    `Retry-After` when there is no room), then the raw body within `body_timeout` (408);
//! 2. no signature header: accept only the exact `{"verification_token": ...}` handshake,
//!    rate-bounded, passed on to the `HANDSHAKES` stream for `mlc subscribe`; refuse
//!    everything else with 401;
//! 3. verify `X-Gusto-Signature` in constant time against every active key (401);
//! 4. only then parse: a signed body that is not an event, or whose ids are not plain
//!    tokens, goes to DEAD_LETTERS, 200;
//! 5. publish a `GustoEvent` with `Nats-Msg-Id` = the Gusto event uuid, await the ack,
//!    and only then answer 200. No ack (NATS down, timeout): 503, and Gusto retries.
//!
//! Refusals are counted by reason (`mlc_gateway_webhooks_refused_total`) and logged at most
//! once per reason per 10 s: an unauthenticated client must not be able to write anything
//! that lasts (finding 5).
//!
//! # Layout
//! - `listener`: the accept loop, the connection cap and the connection timeouts.
//! - `budget`: the memory bound on unfinished bodies.
//! - `handshake`: the rate bound on unsigned verification-token POSTs.
//! - `keys`: the HMAC keys, from configuration and the `WEBHOOK_KEYS` bucket.
//! - `metrics`: the Prometheus series, served on the ops listener only.
//! - `oauth`: `GET /oauth/callback`, relayed to the waiting `mlc company connect`.

mod budget;
mod handshake;
mod keys;
mod listener;
mod metrics;
pub mod oauth;

pub use budget::BodyBudget;
pub use keys::WebhookKeys;
pub use listener::{bind, Limits, Listener};
pub use metrics::GatewayMetrics;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use mlc_bus::dead_letter::{DeadLetters, Letter};
use mlc_bus::{Publisher, StreamKind, Topology};
use mlc_proto::v1::{EventSource, GustoEvent};
use mlc_telemetry::ReadyFlag;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// What `Retry-After` says when the gateway sheds load.
const RETRY_AFTER_SECS: u64 = 5;

/// The gateway's settings, from the `[gateway]` section.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Verification tokens from configuration, as bytes: HMAC keys.
    pub tokens: Vec<Vec<u8>>,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub body_budget_bytes: usize,
    pub handshakes_per_minute: u32,
    pub limits: Limits,
}

impl Settings {
    /// The `[gateway]` section of the configuration (pure: nothing is opened).
    pub fn from_config(cfg: &mlc_config::Config) -> Self {
        let cfg = &cfg.gateway;
        Settings {
            tokens: cfg.webhook_tokens.iter().map(|t| t.expose().as_bytes().to_vec()).collect(),
            max_body_bytes: cfg.max_body_bytes,
            body_timeout: Duration::from_millis(cfg.body_timeout_ms),
            body_budget_bytes: cfg.body_budget_bytes,
            handshakes_per_minute: cfg.handshakes_per_minute,
            limits: Limits {
                max_connections: cfg.max_connections,
                idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
                header_timeout: Duration::from_millis(cfg.header_timeout_ms),
            },
        }
    }

    /// The defaults of the configuration with these tokens (tests).
    pub fn with_tokens(tokens: Vec<Vec<u8>>) -> Self {
        Settings { tokens, ..Settings::from_config(&mlc_config::Config::default()) }
    }
}

/// Everything a request handler needs.
pub struct Gateway {
    publisher: Publisher,
    dead_letters: DeadLetters,
    topology: Topology,
    /// The HMAC keys: configuration plus the tokens `mlc subscribe` verified.
    keys: Arc<WebhookKeys>,
    max_body_bytes: usize,
    /// How long a body may take once its head is in.
    body_timeout: Duration,
    /// Bounds the memory of bodies being read, over all connections.
    budget: Arc<BodyBudget>,
    /// Bounds how fast unsigned handshakes reach the `HANDSHAKES` stream.
    handshakes: handshake::RateBound,
    metrics: Arc<GatewayMetrics>,
    /// When each refusal reason was last logged, and how many since: one line per reason
    /// per 10 s, whatever the flood.
    refusal_log: Mutex<HashMap<&'static str, (Instant, u64)>>,
    ready: ReadyFlag,
}

impl Gateway {
    pub fn new(publisher: Publisher, topology: Topology, settings: &Settings) -> Arc<Self> {
        Arc::new(Gateway {
            dead_letters: DeadLetters::new(publisher.clone(), topology.clone()),
            publisher,
            topology,
            keys: Arc::new(WebhookKeys::new(settings.tokens.clone())),
            max_body_bytes: settings.max_body_bytes,
            body_timeout: settings.body_timeout,
            budget: BodyBudget::new(settings.body_budget_bytes),
            handshakes: handshake::RateBound::new(settings.handshakes_per_minute),
            metrics: Arc::new(GatewayMetrics::new()),
            refusal_log: Mutex::new(HashMap::new()),
            ready: ReadyFlag::new("nats not connected or GUSTO_EVENTS missing"),
        })
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    pub fn keys(&self) -> &Arc<WebhookKeys> {
        &self.keys
    }

    /// Follows the `WEBHOOK_KEYS` bucket for the verified tokens (runs forever).
    pub async fn watch_keys(self: Arc<Self>, js: async_nats::jetstream::Context) {
        let bucket = self.topology.webhook_keys_bucket();
        self.keys.clone().watch(js, bucket).await
    }

    /// Keeps `/readyz` true only while NATS is connected and the events stream exists.
    pub async fn watch_readiness(self: Arc<Self>, client: async_nats::Client) {
        let stream = self.topology.stream(StreamKind::GustoEvents);
        mlc_bus::watch_ready(client, Some(stream), || async { true }, self.ready.clone()).await
    }

    /// Counts a refusal, and logs it unless this reason was logged in the last 10 s.
    fn note_refusal(&self, reason: &'static str) {
        self.metrics.refused(reason);
        let mut log = self.refusal_log.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entry = log.entry(reason).or_insert((now - Duration::from_secs(3600), 0));
        if now.duration_since(entry.0) >= Duration::from_secs(10) {
            tracing::warn!(reason, suppressed = entry.1, "webhook refused");
            *entry = (now, 0);
        } else {
            entry.1 += 1;
        }
    }
}

/// The public routes: the webhook and the OAuth callback. (Health and metrics are on
/// [`ops_router`].)
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/webhooks/gusto", post(receive))
        .route("/oauth/callback", get(oauth::callback))
        .with_state(gw)
}

/// The operator routes, for `gateway.ops_listen`: health, readiness, metrics.
pub fn ops_router(gw: Arc<Gateway>) -> Router {
    let ready = gw.ready.clone();
    mlc_telemetry::ops_router(move || gw.metrics.encode(), ready)
}

/// Serves the webhook routes with the connection limits until `shutdown` resolves, then
/// lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Arc<Gateway>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = gw.metrics.clone();
    Listener::new(listener, router(gw), limits.clamped_to_descriptors(), Some(metrics)).run(shutdown).await
}

/// Serves [`ops_router`] (a scraper and probes: few connections).
pub async fn serve_ops(
    listener: tokio::net::TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Limits {
        max_connections: 64,
        idle_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(10),
    };
    Listener::new(listener, ops_router(gw), limits, None).run(shutdown).await
}

/// Why a request was refused; the label of `webhooks_refused_total`.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    TooLarge,
    Unreadable,
    BodyTimeout,
    MissingSignature,
    BadSignatureEncoding,
    WrongSignature,
    NoTokensConfigured,
    BadHandshake,
    HandshakeRate,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::Unreadable => "unreadable",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::MissingSignature => "missing_signature",
            Refusal::BadSignatureEncoding => "bad_signature_encoding",
            Refusal::WrongSignature => "wrong_signature",
            Refusal::NoTokensConfigured => "no_tokens_configured",
            Refusal::BadHandshake => "bad_handshake",
            Refusal::HandshakeRate => "handshake_rate",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable => StatusCode::BAD_REQUEST,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::HandshakeRate => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

// The whole request, not the `HeaderMap` extractor: that one clones the headers.
async fn receive(State(gw): State<Arc<Gateway>>, req: axum::extract::Request) -> Response {
    let span = tracing::info_span!("webhook", otel.kind = "server", event_uuid = tracing::field::Empty);
    let metrics = gw.metrics.clone();
    let _inflight = metrics.in_flight();
    let (parts, body) = req.into_parts();
    handle(gw, parts.headers, body).instrument(span).await
}

async fn handle(gw: Arc<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let received_at_ms = mlc_bus::now_ms();

    // 1. Size, budget, then the body within its deadline.
    let declared =
        headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > gw.max_body_bytes) {
        return refuse(&gw, Refusal::TooLarge);
    }
    let reserved = gw.budget.reserve(declared.unwrap_or(gw.max_body_bytes).max(1));
    for _ in 0..reserved.cut {
        gw.metrics.shed("stalled_body_cut");
    }
    let Some(reservation) = reserved.reservation else {
        return shed(&gw, "body_budget");
    };
    let raw = match read_body(&gw, body, declared, &reservation).await {
        Ok(b) => b,
        Err(BodyEnd::Refused(r)) => return refuse(&gw, r),
        // Counted when cut (above, by the request that needed the room).
        Err(BodyEnd::Cut) => return shed_response(),
    };
    reservation.done_reading();

    // 2. The unsigned handshake, by its exact shape only.
    let signature = headers.get(gusto::webhook::SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if signature.is_none() {
        if let Some(token) = gusto::webhook::is_verification_handshake(&raw) {
            return handshake(&gw, &token).await;
        }
        return refuse(&gw, Refusal::MissingSignature);
    }

    // 3. Verify before parsing.
    if let Err(e) = gusto::webhook::verify_signature(gw.keys.current().as_slice(), &raw, signature) {
        use gusto::webhook::SignatureError as S;
        let r = match e {
            S::Missing => Refusal::MissingSignature,
            S::BadEncoding => Refusal::BadSignatureEncoding,
            S::NoKeys => Refusal::NoTokensConfigured,
            S::Mismatch => Refusal::WrongSignature,
        };
        return refuse(&gw, r);
    }

    // 4. Parse; a signed body that is not an event is kept, not bounced.
    let (mut event, company) = match gusto::webhook::parse_event(&raw) {
        Ok(mut ev) => match ev.resource_uuid.take().filter(|c| !c.trim().is_empty()) {
            Some(company) if !ev.uuid.trim().is_empty() => (ev, company),
            _ => return dead_letter(&gw, raw, "signed body lacks uuid or resource_uuid").await,
        },
        Err(e) => return dead_letter(&gw, raw, &format!("signed body is not a Gusto event: {e}")).await,
    };
    // Ids become a NATS header and subject tokens: plain tokens only (finding 9).
    let ids_ok = is_id(&event.uuid)
        && is_id(&company)
        && event.entity_uuid.as_deref().is_none_or(|e| e.is_empty() || is_id(e))
        && event.entity_type.as_deref().is_none_or(|t| t.is_empty() || is_entity_type(t));
    if !ids_ok {
        return dead_letter(&gw, raw, "signed event with an id that is not a plain token").await;
    }
    tracing::Span::current().record("event_uuid", event.uuid.as_str());

    // 5. Publish, await the ack, then answer.
    let entity_type = event.entity_type.take().filter(|s| !s.is_empty()).unwrap_or_else(|| "Unknown".into());
    let subject = gw.topology.gusto_event(&company, &entity_type);
    let msg = GustoEvent {
        event_uuid: event.uuid,
        event_type: event.event_type,
        company_uuid: company,
        entity_type,
        entity_uuid: event.entity_uuid.unwrap_or_default(),
        timestamp: event.timestamp.unwrap_or_default(),
        raw_body: raw.to_vec(),
        received_at_ms,
        trace: Some(mlc_bus::trace::current().unwrap_or_default()),
        source: EventSource::Webhook as i32,
    };
    let started = Instant::now();
    match gw.publisher.publish(&subject, &msg.event_uuid, &msg).await {
        Ok(p) => {
            gw.metrics.observe_publish(started.elapsed());
            gw.metrics.accepted(p.duplicate);
            tracing::info!(event_type = %msg.event_type, seq = p.sequence, duplicate = p.duplicate, "webhook accepted");
            (StatusCode::OK, "accepted").into_response()
        }
        Err(e) => {
            gw.metrics.unavailable();
            tracing::warn!(error = %e, "publish not acknowledged; answering 503 so Gusto retries");
            (StatusCode::SERVICE_UNAVAILABLE, "event store unavailable, retry later").into_response()
        }
    }
}

/// A Gusto id as it may appear in a header and a subject: 1 to 64 of `[A-Za-z0-9_-]`
/// (Gusto's are UUIDs).
fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_entity_type(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic())
}

enum BodyEnd {
    Refused(Refusal),
    /// Cut to make room in the budget for another request.
    Cut,
}

/// Reads the body frame by frame: at most `max_body_bytes`, within `body_timeout`, and
/// only for as long as the budget does not cut it.
async fn read_body(
    gw: &Gateway,
    mut body: Body,
    declared: Option<usize>,
    reservation: &budget::Reservation,
) -> Result<Bytes, BodyEnd> {
    let deadline = tokio::time::Instant::now() + gw.body_timeout;
    // The declared size at once, so the buffer never doubles past what was reserved.
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(gw.max_body_bytes));
    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout_at(deadline, body.frame()) => match f {
                Err(_) => return Err(BodyEnd::Refused(Refusal::BodyTimeout)),
                Ok(None) => break,
                Ok(Some(Err(_))) => return Err(BodyEnd::Refused(Refusal::Unreadable)),
                Ok(Some(Ok(frame))) => frame,
            },
            _ = reservation.cut() => return Err(BodyEnd::Cut),
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > gw.max_body_bytes {
                return Err(BodyEnd::Refused(Refusal::TooLarge));
            }
            buf.extend_from_slice(&data);
            reservation.progress();
        }
    }
    Ok(buf.freeze())
}

fn refuse(gw: &Gateway, r: Refusal) -> Response {
    gw.note_refusal(r.label());
    let mut resp = (r.status(), r.label()).into_response();
    if matches!(r, Refusal::HandshakeRate) {
        resp.headers_mut().insert("retry-after", RETRY_AFTER_SECS.into());
    }
    resp
}

fn shed(gw: &Gateway, reason: &'static str) -> Response {
    gw.metrics.shed(reason);
    shed_response()
}

/// 503 with `Retry-After`: Gusto retries a delivery it did not get a 2xx for.
fn shed_response() -> Response {
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, "busy, retry later").into_response();
    resp.headers_mut().insert("retry-after", RETRY_AFTER_SECS.into());
    resp.headers_mut().insert("connection", axum::http::HeaderValue::from_static("close"));
    resp
}

async fn handshake(gw: &Gateway, token: &str) -> Response {
    if token.len() > handshake::MAX_TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse(gw, Refusal::BadHandshake);
    }
    if gw.handshakes.take().is_err() {
        return refuse(gw, Refusal::HandshakeRate);
    }
    // The same token twice (Gusto's retry) is one candidate.
    let id = format!("handshake:{}", &hex::encode(sha2_256(token.as_bytes()))[..32]);
    let subject = gw.topology.handshake_subject();
    let payload = Bytes::copy_from_slice(token.as_bytes());
    match gw.publisher.publish_raw(&subject, &id, payload, async_nats::HeaderMap::new()).await {
        Ok(_) => {
            gw.metrics.handshake();
            tracing::info!("webhook verification token received; `mlc subscribe` verifies it with Gusto");
            (StatusCode::OK, "verification token received").into_response()
        }
        Err(e) => {
            gw.metrics.unavailable();
            tracing::warn!(error = %e, "cannot pass the verification token on; answering 503");
            (StatusCode::SERVICE_UNAVAILABLE, "event store unavailable, retry later").into_response()
        }
    }
}

async fn dead_letter(gw: &Gateway, raw: Bytes, reason: &str) -> Response {
    // Identified by the body's hash: Gusto's retries of the same bad body are one letter.
    let letter = Letter {
        stage: "gateway",
        company: String::new(),
        original_id: hex::encode(sha2_256(&raw)),
        sequence: None,
        subject: String::new(),
        payload: raw.to_vec(),
        reason: reason.to_string(),
        attempts: 1,
        trace: None,
    };
    match gw.dead_letters.send(&letter).await {
        Ok(_) => {
            gw.metrics.dead_lettered();
            tracing::warn!(reason, "signed but unusable webhook kept in DEAD_LETTERS");
            (StatusCode::OK, "kept for review").into_response()
        }
        Err(e) => {
            gw.metrics.unavailable();
            tracing::warn!(error = %e, "cannot keep a dead letter; answering 503");
            (StatusCode::SERVICE_UNAVAILABLE, "event store unavailable, retry later").into_response()
        }
    }
}

fn sha2_256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(b).into()
}
