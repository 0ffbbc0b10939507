//! Per-tenant client configuration.

use std::time::Duration;

use crate::Secret;

/// Production API base (the new host; no `/API/controller/api` prefix).
pub const DEFAULT_BASE_URL: &str = "https://api.finance.visma.net";
/// Visma Connect token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://connect.visma.com/connect/token";
/// The service-API scopes the writer needs (no delete: employees cannot be deleted).
pub const DEFAULT_SCOPES: [&str; 3] =
    ["vismanet_erp_service_api:read", "vismanet_erp_service_api:create", "vismanet_erp_service_api:update"];

/// The legacy (VNI-era) layout: `/API/controller/api/v1` paths and company headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMode {
    /// Sent as `ipp-company-id` (numeric context id).
    pub company_id: String,
}

/// How to reach one Visma.net company. One Visma Connect token serves exactly one tenant, so a
/// multi-company setup has one `VismaConfig` (and one client) per company.
#[derive(Debug, Clone)]
pub struct VismaConfig {
    /// API base, e.g. `https://api.finance.visma.net` (validated by `VismaClient::new`).
    pub base_url: String,
    /// Token endpoint, e.g. `https://connect.visma.com/connect/token`.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The *company* tenant id (a customer tenant id authenticates but gets 401 from the API).
    pub tenant_id: String,
    pub scopes: Vec<String>,
    pub legacy: Option<LegacyMode>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Refresh the token this long before it expires.
    pub token_refresh_margin: Duration,
}

impl VismaConfig {
    /// Production endpoints with the default scopes.
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            token_url: DEFAULT_TOKEN_URL.to_string(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            tenant_id: tenant_id.into(),
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_string()).collect(),
            legacy: None,
            timeout: Duration::from_secs(30),
            token_refresh_margin: Duration::from_secs(180),
        }
    }

    /// Points the client at other endpoints (e.g. the simulator).
    pub fn with_endpoints(mut self, base_url: impl Into<String>, token_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self.token_url = token_url.into();
        self
    }

    /// Uses the legacy layout with `ipp-company-id`.
    pub fn with_legacy(mut self, company_id: impl Into<String>) -> Self {
        self.legacy = Some(LegacyMode { company_id: company_id.into() });
        self
    }

    /// Path prefix in front of `employee`, `department`, ...
    pub(crate) fn api_prefix(&self) -> &'static str {
        if self.legacy.is_some() {
            "/API/controller/api/v1"
        } else {
            "/v1"
        }
    }
}
