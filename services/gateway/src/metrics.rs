//! Prometheus series of the gateway.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Dup {
    duplicate: String,
}

pub struct GatewayMetrics {
    registry: Registry,
    accepted: Family<Dup, Counter>,
    /// The two series of `accepted`, taken once: a webhook then costs one atomic add, not
    /// a label allocation and a map lookup (and both series show from the start).
    accepted_new: Counter,
    accepted_dup: Counter,
    refused: Family<Reason, Counter>,
    unavailable: Counter,
    dead_letters: Counter,
    handshakes: Counter,
    publish_seconds: Histogram,
    in_flight: Gauge,
    connections_closed: Family<Reason, Counter>,
    shed: Family<Reason, Counter>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mlc_gateway");
        let accepted = Family::<Dup, Counter>::default();
        let refused = Family::<Reason, Counter>::default();
        let unavailable = Counter::default();
        let dead_letters = Counter::default();
        let handshakes = Counter::default();
        let publish_seconds = Histogram::new(exponential_buckets(0.0002, 2.0, 16));
        let in_flight = Gauge::default();
        let connections_closed = Family::<Reason, Counter>::default();
        let shed = Family::<Reason, Counter>::default();
        let series = |dup: bool| accepted.get_or_create(&Dup { duplicate: dup.to_string() }).clone();
        let (accepted_new, accepted_dup) = (series(false), series(true));
        registry.register(
            "connections_closed",
            "Connections the gateway closed: idle_timeout, header_timeout, evicted_silent, http_error",
            connections_closed.clone(),
        );
        registry.register(
            "shed",
            "Requests answered 503 with Retry-After to protect the gateway: body_budget (no room), \
             stalled_body_cut (a stalled body cut to make room)",
            shed.clone(),
        );
        registry.register(
            "webhooks_accepted",
            "Webhooks published to GUSTO_EVENTS and acknowledged",
            accepted.clone(),
        );
        registry.register("webhooks_refused", "Webhooks refused, by reason", refused.clone());
        registry.register(
            "webhooks_unavailable",
            "Webhooks answered 503 because JetStream did not ack",
            unavailable.clone(),
        );
        registry.register(
            "dead_letters",
            "Signed bodies that were not events, kept in DEAD_LETTERS",
            dead_letters.clone(),
        );
        registry.register(
            "verification_handshakes",
            "Verification-token POSTs passed on to the HANDSHAKES stream",
            handshakes.clone(),
        );
        registry.register("publish_seconds", "Time from publish to JetStream ack", publish_seconds.clone());
        registry.register("in_flight", "Webhook requests being handled", in_flight.clone());
        Self {
            registry,
            accepted,
            accepted_new,
            accepted_dup,
            refused,
            unavailable,
            dead_letters,
            handshakes,
            publish_seconds,
            in_flight,
            connections_closed,
            shed,
        }
    }

    pub(crate) fn accepted(&self, duplicate: bool) {
        if duplicate { &self.accepted_dup } else { &self.accepted_new }.inc();
    }
    pub(crate) fn refused(&self, reason: &str) {
        self.refused.get_or_create(&Reason { reason: reason.to_string() }).inc();
    }
    pub(crate) fn connection_closed(&self, reason: &str) {
        self.connections_closed.get_or_create(&Reason { reason: reason.to_string() }).inc();
    }
    pub(crate) fn shed(&self, reason: &str) {
        self.shed.get_or_create(&Reason { reason: reason.to_string() }).inc();
    }
    pub(crate) fn unavailable(&self) {
        self.unavailable.inc();
    }
    pub(crate) fn dead_lettered(&self) {
        self.dead_letters.inc();
    }
    pub(crate) fn handshake(&self) {
        self.handshakes.inc();
    }
    pub(crate) fn observe_publish(&self, d: Duration) {
        self.publish_seconds.observe(d.as_secs_f64());
    }
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Accepted webhooks so far (fresh and duplicate).
    pub fn accepted_total(&self) -> u64 {
        ["true", "false"]
            .iter()
            .map(|d| self.accepted.get_or_create(&Dup { duplicate: d.to_string() }).get())
            .sum()
    }

    pub fn encode(&self) -> String {
        mlc_telemetry::encode_metrics(&self.registry)
    }
}

pub(crate) struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
