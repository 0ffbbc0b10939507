//! Start-up configuration of the simulator.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The four service-API scopes of Visma.net ERP.
pub const ALL_SCOPES: [&str; 4] = [
    "vismanet_erp_service_api:read",
    "vismanet_erp_service_api:create",
    "vismanet_erp_service_api:update",
    "vismanet_erp_service_api:delete",
];

/// What `POST /v1/employee` answers on success.
///
/// The 2025 spec declares `200 {}`; the later (2026) spec answers `201 Created` with an `ETag`.
/// The client must cope with both, so the simulator can play either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CreateStyle {
    /// `201 Created` + `Location` + `ETag` (Spec 2026).
    #[default]
    Created201,
    /// `200 OK` with body `{}` + `Location`, no `ETag` (Spec 2025).
    Ok200,
}

/// Whether a tenant id is a company tenant (usable) or a customer tenant.
///
/// Visma Connect issues tokens for both, but the ERP API answers 401 to a customer-tenant token;
/// this is the most common integration mistake, so the simulator reproduces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum TenantKind {
    #[default]
    Company,
    Customer,
}

/// One Visma.net tenant (company).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantConfig {
    pub tenant_id: String,
    /// Numeric context id the legacy host expects in `ipp-company-id`.
    #[serde(default)]
    pub company_id: i64,
    #[serde(default)]
    pub kind: TenantKind,
}

impl TenantConfig {
    pub fn company(tenant_id: impl Into<String>, company_id: i64) -> Self {
        Self { tenant_id: tenant_id.into(), company_id, kind: TenantKind::Company }
    }

    pub fn customer(tenant_id: impl Into<String>) -> Self {
        Self { tenant_id: tenant_id.into(), company_id: 0, kind: TenantKind::Customer }
    }
}

/// A Visma Developer Portal service client (client credentials).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Scopes the application was granted in the Developer Portal; a token request for any
    /// other scope fails with `invalid_scope`.
    pub allowed_scopes: Vec<String>,
}

impl ClientConfig {
    /// A client allowed all four `vismanet_erp_service_api:*` scopes.
    pub fn full_access(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            allowed_scopes: ALL_SCOPES.iter().map(|s| (*s).to_string()).collect(),
        }
    }
}

/// Full simulator configuration. `SimConfig::default()` is a usable single-tenant setup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimConfig {
    /// Address to bind; `None` binds `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    pub tenants: Vec<TenantConfig>,
    pub clients: Vec<ClientConfig>,
    /// Requests per fixed window per (tenant, client), policy `4-fixed-window`.
    pub hourly_limit: u32,
    /// Length of the rate window. One hour in Visma; tests shrink it or advance the clock.
    #[serde(with = "secs")]
    pub rate_window: Duration,
    /// "Same failing request" punishment: the same request failing with a 4xx more than this
    /// many times inside `failing_request_window` answers 429. `None` disables it.
    pub failing_request_limit: Option<u32>,
    #[serde(with = "secs")]
    pub failing_request_window: Duration,
    /// Lifetime of issued access tokens (`expires_in`).
    #[serde(with = "secs")]
    pub token_ttl: Duration,
    pub create_style: CreateStyle,
    /// Also serve the legacy `/API/controller/api/v1/...` layout (requires `ipp-company-id`).
    pub legacy_paths: bool,
    /// Maximum page size of list endpoints (reported as `metadata.maxPageSize`).
    pub max_page_size: u32,
    /// Seed of the fault-injection RNG, so a failing run can be replayed.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tenants: vec![TenantConfig::company(DEFAULT_TENANT, 1)],
            clients: vec![ClientConfig::full_access(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)],
            hourly_limit: 15_000,
            rate_window: Duration::from_secs(3600),
            failing_request_limit: Some(2),
            failing_request_window: Duration::from_secs(300),
            token_ttl: Duration::from_secs(3600),
            create_style: CreateStyle::Created201,
            legacy_paths: true,
            max_page_size: 1000,
            seed: 42,
        }
    }
}

/// Tenant id of the default configuration.
pub const DEFAULT_TENANT: &str = "af1140c1-52e0-46c7-b684-df894d4b8a5a";
/// Client id of the default configuration.
pub const DEFAULT_CLIENT_ID: &str = "isv_mlconnector";
/// Client secret of the default configuration (a simulator value, not a real secret).
pub const DEFAULT_CLIENT_SECRET: &str = "sim-secret";

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}
