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
pub struct CompanyStatus {
    pub company: String,
    pub status: String,
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
    pub rate_budget_left: Family<Company, Gauge>,
    pub gusto_responses: Family<CompanyStatus, Counter>,
    pub gusto_rate_limited: Family<Company, Counter>,
    pub token_refreshes: Family<Company, Counter>,
    pub consumer_pending: Family<Consumer, Gauge>,
    pub dead_letters: Counter,
    pub dead_letter_depth: Gauge,
    /// 1 while Gusto marks the configured API version deprecated.
    pub gusto_api_version_deprecated: Gauge,
    /// 1 while Gusto refuses the configured API version (406).
    pub gusto_api_version_refused: Gauge,
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
            rate_budget_left: Default::default(),
            gusto_responses: Default::default(),
            gusto_rate_limited: Default::default(),
            token_refreshes: Default::default(),
            consumer_pending: Default::default(),
            dead_letters: Default::default(),
            dead_letter_depth: Default::default(),
            gusto_api_version_deprecated: Default::default(),
            gusto_api_version_refused: Default::default(),
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
            "rate_budget_left",
            "Gusto requests still allowed in the current rolling window, per company",
            m.rate_budget_left.clone(),
        );
        registry.register(
            "gusto_responses",
            "Gusto HTTP answers (every attempt, retries included), by company and status (0: none)",
            m.gusto_responses.clone(),
        );
        registry.register(
            "gusto_rate_limited",
            "Gusto answers with status 429, per company",
            m.gusto_rate_limited.clone(),
        );
        registry.register(
            "gusto_token_refreshes",
            "Gusto access tokens refreshed by this process, per company",
            m.token_refreshes.clone(),
        );
        registry.register(
            "consumer_pending",
            "Messages not yet delivered to the consumer (lag)",
            m.consumer_pending.clone(),
        );
        registry.register("dead_letters", "Messages dead-lettered by the projector", m.dead_letters.clone());
        registry.register(
            "dead_letter_depth",
            "Messages in the DEAD_LETTERS stream (all stages), waiting for `mlc dlq`",
            m.dead_letter_depth.clone(),
        );
        registry.register(
            "gusto_api_version_deprecated",
            "1 while Gusto marks the configured gusto.api_version deprecated (Deprecation header)",
            m.gusto_api_version_deprecated.clone(),
        );
        registry.register(
            "gusto_api_version_refused",
            "1 while Gusto refuses the configured gusto.api_version (406 invalid_api_version)",
            m.gusto_api_version_refused.clone(),
        );
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

/// Grant id to company uuid, as the projector learns it from the store: the Gusto client
/// only knows grants, the series are per company.
pub type GrantCompanies = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;

/// Counts the Gusto client's answers and token refreshes per company.
pub(crate) struct GustoObserver {
    pub grants: GrantCompanies,
    pub responses: Family<CompanyStatus, Counter>,
    pub rate_limited: Family<Company, Counter>,
    pub refreshes: Family<Company, Counter>,
    pub version_deprecated: Gauge,
    pub version_refused: Gauge,
}

impl GustoObserver {
    fn company(&self, grant: &str) -> String {
        if grant == "system" {
            return "system".into();
        }
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(grant)
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }
}

impl gusto::ClientObserver for GustoObserver {
    fn response(&self, grant: &str, status: u16) {
        let company = self.company(grant);
        if status == 429 {
            self.rate_limited.get_or_create(&Company { company: company.clone() }).inc();
        }
        self.responses.get_or_create(&CompanyStatus { company, status: status.to_string() }).inc();
    }

    fn token_refreshed(&self, grant: &str) {
        self.refreshes.get_or_create(&Company { company: self.company(grant) }).inc();
    }

    fn api_version(&self, status: &gusto::ApiVersionStatus) {
        self.version_deprecated.set(i64::from(status.deprecated));
        self.version_refused.set(i64::from(status.refused.is_some()));
    }
}
