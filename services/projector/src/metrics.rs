//! Prometheus series of the projector.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Result_ {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompanyCall {
    pub company: String,
    pub call: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Company {
    pub company: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Consumer {
    pub consumer: String,
}

pub struct ProjectorMetrics {
    registry: Registry,
    pub events: Family<Result_, Counter>,
    pub snapshots: Family<Result_, Counter>,
    pub commands: Family<Result_, Counter>,
    pub gusto_calls: Family<CompanyCall, Counter>,
    pub gusto_errors: Family<CompanyCall, Counter>,
    pub parked: Family<Company, Counter>,
    pub rate_budget_used: Family<Company, Gauge>,
    pub consumer_pending: Family<Consumer, Gauge>,
    pub dead_letters: Counter,
}

impl Default for ProjectorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProjectorMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mlc_projector");
        let m = Self {
            events: Default::default(),
            snapshots: Default::default(),
            commands: Default::default(),
            gusto_calls: Default::default(),
            gusto_errors: Default::default(),
            parked: Default::default(),
            rate_budget_used: Default::default(),
            consumer_pending: Default::default(),
            dead_letters: Default::default(),
            registry: Registry::default(),
        };
        registry.register("events", "Gusto events consumed, by result", m.events.clone());
        registry.register("snapshots", "Employee snapshots: appended or unchanged", m.snapshots.clone());
        registry.register("commands", "Visma commands: emitted, unchanged or superseded", m.commands.clone());
        registry.register("gusto_calls", "Gusto API calls, by company and call", m.gusto_calls.clone());
        registry.register(
            "gusto_errors",
            "Gusto API errors, by company and kind (rate_limited, server, reauth...)",
            m.gusto_errors.clone(),
        );
        registry.register(
            "parked_events",
            "Events held back because the company is paused or needs re-authorisation",
            m.parked.clone(),
        );
        registry.register(
            "rate_budget_used",
            "Gusto requests used in the current rolling window, per company",
            m.rate_budget_used.clone(),
        );
        registry.register(
            "consumer_pending",
            "Messages not yet delivered to the consumer (lag)",
            m.consumer_pending.clone(),
        );
        registry.register("dead_letters", "Messages dead-lettered by the projector", m.dead_letters.clone());
        Self { registry, ..m }
    }

    pub fn inc(family: &Family<Result_, Counter>, result: &str) {
        family.get_or_create(&Result_ { result: result.to_string() }).inc();
    }

    pub fn call(&self, company: &str, call: &str) {
        self.gusto_calls.get_or_create(&CompanyCall { company: company.into(), call: call.into() }).inc();
    }

    pub fn error(&self, company: &str, kind: &str) {
        self.gusto_errors.get_or_create(&CompanyCall { company: company.into(), call: kind.into() }).inc();
    }

    pub fn encode(&self) -> String {
        mlc_telemetry::encode_metrics(&self.registry)
    }
}
