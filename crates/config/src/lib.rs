//! Configuration of every ml-connector process, in three layers: built-in defaults (the
//! commented `defaults.toml`, which `mlc config init` writes out: one source for the
//! template, the docs and the defaults), then a TOML file (`--config` or `MLC_CONFIG`), then
//! `MLC_`-prefixed environment variables (every key has one; an unknown `MLC_*` variable is
//! an error naming the closest known one).
//! The result is typed and validated once at start-up; every error names the key (the
//! TOML path and its environment variable) so an operator knows what to fix.

mod secret;

pub use secret::Secret;

/// The built-in defaults, commented: every key with its default value and its variable.
pub const DEFAULTS_TOML: &str = include_str!("../defaults.toml");

/// Where each effective value came from: `default`, `file`, or `env NAME`, by dotted key.
pub type Origins = BTreeMap<String, String>;

/// `MLC_*` variables that are not configuration: the CLI's own and the test and ops tools'.
/// (MLC_GATEWAY_PUBLISH is docker-compose's host port of the gateway.)
const TOOL_ENV: &[&str] = &[
    "MLC_CONFIG",
    "MLC_BIN",
    "MLC_FULL",
    "MLC_IMAGE",
    "MLC_NATS_SERVER_BIN",
    "MLC_APT_UPDATED",
    "MLC_GATEWAY_PUBLISH",
];
const TOOL_ENV_PREFIXES: &[&str] = &["MLC_TEST", "MLC_FAULT_"];
/// `MLC_VISMA_TENANTS__NAME__FIELD` sets `visma.tenants.name.field`.
const TENANT_ENV_PREFIX: &str = "MLC_VISMA_TENANTS__";
const TENANT_FIELDS: &[&str] = &["client_id", "client_secret", "tenant_id", "ipp_company_id"];

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything a process may need; each service reads its own sections.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub nats: NatsConfig,
    pub store: StoreConfig,
    pub gateway: GatewayConfig,
    pub gusto: GustoConfig,
    pub visma: VismaConfig,
    pub projector: ProjectorConfig,
    pub writer: WriterConfig,
    pub telemetry: TelemetryConfig,
    pub console: ConsoleConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URLs, comma-separated for a cluster. Never with credentials in them: those
    /// go in the keys below (refused at validation, so they cannot leak with the URL).
    pub url: String,
    /// Password authentication: both or neither. At most one of password, token, NKey
    /// and creds file may be set.
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Token authentication.
    pub token: Option<Secret>,
    /// NKey authentication: the user seed (`SU...`) itself, or a file holding it.
    pub nkey_seed: Option<Secret>,
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and seed), for servers in operator (decentralised) mode.
    pub creds_file: Option<PathBuf>,
    /// PEM CA certificate(s) the server's certificate must chain to; turns TLS on.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for servers that verify clients: both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Insist on TLS even without a CA file (the system roots then verify the server).
    pub tls_required: bool,
    /// Subject prefix of this process's reply inboxes. Give each service user its own
    /// (`_INBOX.gateway`) and allow it only that to subscribe, so no service can read
    /// replies (publish acks, pulled messages) meant for another.
    pub inbox_prefix: String,
    /// Allow plain-text NATS to a server that is not on this machine. Only for a private
    /// network (e.g. the compose network): credentials and messages cross it in clear.
    pub allow_plaintext: bool,
    /// Prefix of every stream name and subject, so tenants and tests can share a server.
    pub stream_prefix: String,
    /// Stream replicas: 1 locally, 3 on a production cluster.
    pub replicas: usize,
    pub publish_timeout_ms: u64,
    /// Partitions of the work streams (by company). Above 1, replicas of the projector and
    /// the writer share them through leases. Fixed for the life of the streams.
    pub partitions: u32,
    /// This process's name among replicas; empty: host name and process id.
    pub replica_id: String,
    /// How long a partition lease lives without renewal.
    pub lease_ttl_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path` (embedded default) or `postgres://...`.
    pub url: Secret,
    /// Base64 of 32 bytes; encrypts OAuth tokens at rest.
    pub encryption_key: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The public webhook port: `POST /webhooks/gusto` (and `GET /oauth/callback`), nothing else.
    pub listen: String,
    /// Health, readiness and metrics: an operator port, loopback by default, never the public one.
    pub ops_listen: String,
    /// Active webhook verification tokens; more than one during a rotation. Tokens that
    /// `mlc subscribe` verified reach the gateway through NATS (the `WEBHOOK_KEYS` bucket).
    pub webhook_tokens: Vec<Secret>,
    pub max_body_bytes: usize,
    /// Open connections at most (each a descriptor). At the cap, the connection that has
    /// waited longest without sending a byte is closed to make room; clamped at start-up to
    /// what the descriptor limit allows.
    pub max_connections: usize,
    /// How long a connection may stay open without a request in progress: before its first
    /// byte, and between requests on a kept-alive connection.
    pub idle_timeout_ms: u64,
    /// From the first byte of a request to the end of its head.
    pub header_timeout_ms: u64,
    /// From the end of the head to the end of the body.
    pub body_timeout_ms: u64,
    /// Bytes of unfinished request bodies held at once, over all connections. A request that
    /// does not fit (after stalled bodies are cut) is answered 503 with `Retry-After`.
    pub body_budget_bytes: usize,
    /// Unsigned verification-token POSTs passed on to `mlc subscribe` per minute, at most.
    pub handshakes_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GustoConfig {
    pub base_url: String,
    pub api_version: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub redirect_uri: String,
    /// Requests per rolling window per grant (Gusto: 200 per 60 s).
    pub rate_limit: u32,
    pub rate_window_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VismaConfig {
    pub base_url: String,
    pub token_url: String,
    /// The legacy integration.visma.net layout with the `ipp-company-id` header.
    pub legacy: bool,
    pub tenants: BTreeMap<String, VismaTenant>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VismaTenant {
    pub client_id: String,
    pub client_secret: Secret,
    /// Visma Connect tenant id (the Company tenant, not the Customer tenant).
    pub tenant_id: String,
    #[serde(default)]
    pub ipp_company_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    pub metrics_listen: String,
    /// Parallel employee workers; each employee is always handled by the same one.
    pub workers: usize,
    /// Distinct employees of one company in one batch above which the paged list is read.
    pub burst_threshold: usize,
    pub mappings_dir: PathBuf,
    /// Seconds between reads of Gusto's `GET /v1/events` for events the webhooks missed;
    /// 0 turns catch-up off.
    pub catch_up_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    pub metrics_listen: String,
    pub workers: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `json` (default) or `pretty`.
    pub log_format: String,
    pub log_filter: String,
    /// OTLP/HTTP endpoint; `OTEL_EXPORTER_OTLP_ENDPOINT` also sets it.
    pub otlp_endpoint: Option<String>,
}

/// The operator console (`mlc run console`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub listen: String,
    /// The operator token: required (or `forward_auth_header`) when `listen` is not a
    /// loopback address; sent as `Authorization: Bearer` or entered on the login page.
    pub token: Option<Secret>,
    /// A header set by an authenticating proxy in front (e.g. `X-Forwarded-User` of
    /// oauth2-proxy): its value names the operator. Trust it only when nothing but that
    /// proxy can reach `listen`.
    pub forward_auth_header: Option<String>,
    /// Jaeger's UI, e.g. `http://127.0.0.1:16686`: trace ids become links to it.
    pub jaeger_ui_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8090".into(), token: None, forward_auth_header: None, jaeger_ui_url: None }
    }
}

impl ConsoleConfig {
    /// Whether `listen` is a loopback address (then no login is asked).
    pub fn is_loopback(&self) -> bool {
        self.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
    }

    /// The console's own start-up check: a console reachable from elsewhere must ask who
    /// is there. Not part of [`Config::validate`], so the other services of an
    /// installation whose console runs elsewhere need no token.
    pub fn check_access(&self) -> Result<(), ConfigError> {
        if !self.is_loopback() && self.token.is_none() && self.forward_auth_header.is_none() {
            return Err(ConfigError::invalid(
                "console.token",
                format!(
                    "is required when console.listen ({}) is not a loopback address (or set console.forward_auth_header behind an authenticating proxy)",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            nkey_seed_file: None,
            creds_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            inbox_prefix: "_INBOX".into(),
            allow_plaintext: false,
            stream_prefix: String::new(),
            replicas: 1,
            publish_timeout_ms: 5000,
            partitions: 1,
            replica_id: String::new(),
            lease_ttl_ms: 10_000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: Secret::new("sqlite://.mlc/mlc.db"), encryption_key: None }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            ops_listen: "127.0.0.1:9100".into(),
            webhook_tokens: Vec::new(),
            max_body_bytes: 64 * 1024,
            max_connections: 4096,
            idle_timeout_ms: 5_000,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            body_budget_bytes: 16 * 1024 * 1024,
            handshakes_per_minute: 30,
        }
    }
}

impl Default for GustoConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.gusto.com".into(),
            api_version: "2026-06-15".into(),
            client_id: String::new(),
            client_secret: None,
            redirect_uri: "http://127.0.0.1:8080/oauth/callback".into(),
            rate_limit: 200,
            rate_window_ms: 60_000,
        }
    }
}

impl Default for VismaConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.finance.visma.net".into(),
            token_url: "https://connect.visma.com/connect/token".into(),
            legacy: false,
            tenants: BTreeMap::new(),
        }
    }
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            metrics_listen: "127.0.0.1:9101".into(),
            workers: 16,
            burst_threshold: 20,
            mappings_dir: ".".into(),
            catch_up_secs: 300,
        }
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self { metrics_listen: "127.0.0.1:9102".into(), workers: 16 }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: "json".into(), log_filter: "info".into(), otlp_endpoint: None }
    }
}

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config key `{key}`{env}: {reason}")]
    Invalid { key: String, env: String, reason: String },
    #[error("unknown environment variable {name}{hint}; `mlc config env` lists the known ones")]
    UnknownEnv { name: String, hint: String },
}

impl ConfigError {
    fn invalid(key: &str, reason: impl Into<String>) -> Self {
        let env = ENV_KEYS
            .iter()
            .find(|(_, k, _)| *k == key)
            .map(|(e, _, _)| format!(" (env {e})"))
            .unwrap_or_default();
        ConfigError::Invalid { key: key.to_string(), env, reason: reason.into() }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    /// A string whose empty value means "not set" (`MLC_NATS_PASSWORD=` unsets it).
    OptStr,
    Int,
    Bool,
    List,
}

/// Every environment variable and the key it sets.
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("MLC_NATS_URL", "nats.url", Kind::Str),
    ("MLC_NATS_USER", "nats.user", Kind::OptStr),
    ("MLC_NATS_PASSWORD", "nats.password", Kind::OptStr),
    ("MLC_NATS_TOKEN", "nats.token", Kind::OptStr),
    ("MLC_NATS_NKEY_SEED", "nats.nkey_seed", Kind::OptStr),
    ("MLC_NATS_NKEY_SEED_FILE", "nats.nkey_seed_file", Kind::OptStr),
    ("MLC_NATS_CREDS_FILE", "nats.creds_file", Kind::OptStr),
    ("MLC_NATS_TLS_CA_FILE", "nats.tls_ca_file", Kind::OptStr),
    ("MLC_NATS_TLS_CERT_FILE", "nats.tls_cert_file", Kind::OptStr),
    ("MLC_NATS_TLS_KEY_FILE", "nats.tls_key_file", Kind::OptStr),
    ("MLC_NATS_TLS_REQUIRED", "nats.tls_required", Kind::Bool),
    ("MLC_NATS_INBOX_PREFIX", "nats.inbox_prefix", Kind::Str),
    ("MLC_NATS_ALLOW_PLAINTEXT", "nats.allow_plaintext", Kind::Bool),
    ("MLC_STREAM_PREFIX", "nats.stream_prefix", Kind::Str),
    ("MLC_NATS_REPLICAS", "nats.replicas", Kind::Int),
    ("MLC_NATS_PUBLISH_TIMEOUT_MS", "nats.publish_timeout_ms", Kind::Int),
    ("MLC_NATS_PARTITIONS", "nats.partitions", Kind::Int),
    ("MLC_REPLICA_ID", "nats.replica_id", Kind::Str),
    ("MLC_LEASE_TTL_MS", "nats.lease_ttl_ms", Kind::Int),
    ("MLC_STORE_URL", "store.url", Kind::Str),
    ("MLC_STORE_ENCRYPTION_KEY", "store.encryption_key", Kind::Str),
    ("MLC_GATEWAY_LISTEN", "gateway.listen", Kind::Str),
    ("MLC_GUSTO_WEBHOOK_TOKENS", "gateway.webhook_tokens", Kind::List),
    ("MLC_GATEWAY_MAX_BODY_BYTES", "gateway.max_body_bytes", Kind::Int),
    ("MLC_GATEWAY_OPS_LISTEN", "gateway.ops_listen", Kind::Str),
    ("MLC_GATEWAY_MAX_CONNECTIONS", "gateway.max_connections", Kind::Int),
    ("MLC_GATEWAY_IDLE_TIMEOUT_MS", "gateway.idle_timeout_ms", Kind::Int),
    ("MLC_GATEWAY_HEADER_TIMEOUT_MS", "gateway.header_timeout_ms", Kind::Int),
    ("MLC_GATEWAY_BODY_TIMEOUT_MS", "gateway.body_timeout_ms", Kind::Int),
    ("MLC_GATEWAY_BODY_BUDGET_BYTES", "gateway.body_budget_bytes", Kind::Int),
    ("MLC_GATEWAY_HANDSHAKES_PER_MINUTE", "gateway.handshakes_per_minute", Kind::Int),
    ("MLC_GUSTO_BASE_URL", "gusto.base_url", Kind::Str),
    ("MLC_GUSTO_API_VERSION", "gusto.api_version", Kind::Str),
    ("MLC_GUSTO_CLIENT_ID", "gusto.client_id", Kind::Str),
    ("MLC_GUSTO_CLIENT_SECRET", "gusto.client_secret", Kind::Str),
    ("MLC_GUSTO_REDIRECT_URI", "gusto.redirect_uri", Kind::Str),
    ("MLC_GUSTO_RATE_LIMIT", "gusto.rate_limit", Kind::Int),
    ("MLC_GUSTO_RATE_WINDOW_MS", "gusto.rate_window_ms", Kind::Int),
    ("MLC_VISMA_BASE_URL", "visma.base_url", Kind::Str),
    ("MLC_VISMA_TOKEN_URL", "visma.token_url", Kind::Str),
    ("MLC_VISMA_LEGACY", "visma.legacy", Kind::Bool),
    ("MLC_PROJECTOR_METRICS_LISTEN", "projector.metrics_listen", Kind::Str),
    ("MLC_PROJECTOR_WORKERS", "projector.workers", Kind::Int),
    ("MLC_PROJECTOR_BURST_THRESHOLD", "projector.burst_threshold", Kind::Int),
    ("MLC_PROJECTOR_MAPPINGS_DIR", "projector.mappings_dir", Kind::Str),
    ("MLC_PROJECTOR_CATCH_UP_SECS", "projector.catch_up_secs", Kind::Int),
    ("MLC_WRITER_METRICS_LISTEN", "writer.metrics_listen", Kind::Str),
    ("MLC_WRITER_WORKERS", "writer.workers", Kind::Int),
    ("MLC_LOG_FORMAT", "telemetry.log_format", Kind::Str),
    ("MLC_LOG", "telemetry.log_filter", Kind::Str),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint", Kind::Str),
    ("MLC_CONSOLE_LISTEN", "console.listen", Kind::Str),
    ("MLC_CONSOLE_TOKEN", "console.token", Kind::OptStr),
    ("MLC_CONSOLE_FORWARD_AUTH_HEADER", "console.forward_auth_header", Kind::OptStr),
    ("MLC_CONSOLE_JAEGER_UI_URL", "console.jaeger_ui_url", Kind::OptStr),
];

impl Config {
    /// Defaults, then `file` (if any), then the process environment; validated.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// As [`Config::load`] with an explicit environment (for tests and `mlc config print`).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        Self::load_with_origins(file, env).map(|(c, _)| c)
    }

    /// As [`Config::load_from`], also telling where each value came from.
    pub fn load_with_origins(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<(Config, Origins), ConfigError> {
        let mut origins = Origins::new();
        let mut value: toml::Value = toml::from_str(DEFAULTS_TOML)
            .map_err(|e| ConfigError::Syntax { path: "(built-in defaults)".into(), reason: e.to_string() })?;
        record_leaves(&value, "", "default", &mut origins);
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::File { path: path.display().to_string(), reason: e.to_string() })?;
            let layer: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            record_leaves(&layer, "", "file", &mut origins);
            merge(&mut value, layer);
        }
        for (name, key, kind) in ENV_KEYS {
            let Some((_, raw)) = env.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let v = match kind {
                Kind::Str => toml::Value::String(raw.clone()),
                Kind::OptStr if raw.trim().is_empty() => continue,
                Kind::OptStr => toml::Value::String(raw.clone()),
                Kind::Int => toml::Value::Integer(
                    raw.trim()
                        .parse()
                        .map_err(|_| ConfigError::invalid(key, format!("{raw:?} is not a whole number")))?,
                ),
                Kind::Bool => toml::Value::Boolean(match raw.trim() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" | "" => false,
                    _ => return Err(ConfigError::invalid(key, format!("{raw:?} is not true or false"))),
                }),
                Kind::List => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.into()))
                        .collect(),
                ),
            };
            set_path(&mut value, key, v);
            origins.insert(key.to_string(), format!("env {name}"));
        }
        for (name, raw) in env {
            if !name.starts_with("MLC_") || ENV_KEYS.iter().any(|(n, _, _)| n == name) {
                continue;
            }
            if let Some(key) = tenant_env_key(name) {
                set_tenant(&mut value, &key, toml::Value::String(raw.clone()));
                origins.insert(key, format!("env {name}"));
                continue;
            }
            if TOOL_ENV.contains(&name.as_str()) || TOOL_ENV_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            return Err(unknown_env(name));
        }
        let de = toml::Value::try_into::<serde_json::Value>(value)
            .map_err(|e| ConfigError::invalid("(root)", e.to_string()))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::invalid(&key, without_value(&e.into_inner().to_string()))
        })?;
        config.validate()?;
        Ok((config, origins))
    }

    /// Checks what types cannot: URLs, addresses, ranges, keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.nats.validate()?;
        if !self.nats.stream_prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError::invalid(
                "nats.stream_prefix",
                "may only hold letters, digits, '-' and '_'",
            ));
        }
        if !(1..=5).contains(&self.nats.replicas) {
            return Err(ConfigError::invalid("nats.replicas", "must be between 1 and 5"));
        }
        if !(1..=1024).contains(&self.nats.partitions) {
            return Err(ConfigError::invalid("nats.partitions", "must be between 1 and 1024"));
        }
        if self.nats.lease_ttl_ms < 1000 {
            return Err(ConfigError::invalid("nats.lease_ttl_ms", "must be at least 1000"));
        }
        if self.nats.publish_timeout_ms == 0 {
            return Err(ConfigError::invalid("nats.publish_timeout_ms", "must be positive"));
        }
        let store = self.store.url.expose();
        if !(store.starts_with("sqlite:")
            || store.starts_with("postgres:")
            || store.starts_with("postgresql:"))
        {
            return Err(ConfigError::invalid("store.url", "must start with sqlite: or postgres:"));
        }
        if let Some(k) = &self.store.encryption_key {
            let n = base64_len(k.expose());
            if n != Some(32) {
                return Err(ConfigError::invalid(
                    "store.encryption_key",
                    "must be the base64 form of 32 random bytes (`mlc config gen-key` makes one)",
                ));
            }
        }
        check_addr("gateway.listen", &self.gateway.listen)?;
        if self.gateway.max_body_bytes < 1024 {
            return Err(ConfigError::invalid("gateway.max_body_bytes", "must be at least 1024"));
        }
        check_addr("gateway.ops_listen", &self.gateway.ops_listen)?;
        if self.gateway.ops_listen == self.gateway.listen {
            return Err(ConfigError::invalid(
                "gateway.ops_listen",
                "must differ from gateway.listen: metrics stay off the public port",
            ));
        }
        if !(16..=1_000_000).contains(&self.gateway.max_connections) {
            return Err(ConfigError::invalid("gateway.max_connections", "must be between 16 and 1000000"));
        }
        for (key, ms) in [
            ("gateway.idle_timeout_ms", self.gateway.idle_timeout_ms),
            ("gateway.header_timeout_ms", self.gateway.header_timeout_ms),
            ("gateway.body_timeout_ms", self.gateway.body_timeout_ms),
        ] {
            if !(100..=600_000).contains(&ms) {
                return Err(ConfigError::invalid(key, "must be between 100 and 600000 (ms)"));
            }
        }
        if self.gateway.body_budget_bytes < 4 * self.gateway.max_body_bytes {
            return Err(ConfigError::invalid(
                "gateway.body_budget_bytes",
                "must hold at least 4 bodies of gateway.max_body_bytes",
            ));
        }
        if self.gateway.handshakes_per_minute == 0 {
            return Err(ConfigError::invalid("gateway.handshakes_per_minute", "must be positive"));
        }
        if self.gateway.webhook_tokens.iter().any(|t| t.expose().trim().is_empty()) {
            return Err(ConfigError::invalid(
                "gateway.webhook_tokens",
                "an empty token would accept anything",
            ));
        }
        check_url("gusto.base_url", &self.gusto.base_url, &["http", "https"])?;
        if !is_api_version(&self.gusto.api_version) {
            return Err(ConfigError::invalid(
                "gusto.api_version",
                "must be a date YYYY-MM-DD, e.g. 2026-06-15",
            ));
        }
        if self.gusto.rate_limit == 0 {
            return Err(ConfigError::invalid("gusto.rate_limit", "must be positive"));
        }
        if self.gusto.rate_window_ms == 0 {
            return Err(ConfigError::invalid("gusto.rate_window_ms", "must be positive"));
        }
        check_url("visma.base_url", &self.visma.base_url, &["http", "https"])?;
        check_url("visma.token_url", &self.visma.token_url, &["http", "https"])?;
        for (name, t) in &self.visma.tenants {
            let key = format!("visma.tenants.{name}");
            if t.client_id.trim().is_empty() {
                return Err(ConfigError::invalid(&format!("{key}.client_id"), "must not be empty"));
            }
            if t.tenant_id.trim().is_empty() {
                return Err(ConfigError::invalid(&format!("{key}.tenant_id"), "must not be empty"));
            }
            if self.visma.legacy && t.ipp_company_id.is_none() {
                return Err(ConfigError::invalid(
                    &format!("{key}.ipp_company_id"),
                    "is required when visma.legacy is true",
                ));
            }
        }
        check_addr("projector.metrics_listen", &self.projector.metrics_listen)?;
        check_addr("writer.metrics_listen", &self.writer.metrics_listen)?;
        if !(1..=1024).contains(&self.projector.workers) {
            return Err(ConfigError::invalid("projector.workers", "must be between 1 and 1024"));
        }
        if !(1..=1024).contains(&self.writer.workers) {
            return Err(ConfigError::invalid("writer.workers", "must be between 1 and 1024"));
        }
        if !matches!(self.telemetry.log_format.as_str(), "json" | "pretty") {
            return Err(ConfigError::invalid("telemetry.log_format", "must be json or pretty"));
        }
        if let Some(e) = &self.telemetry.otlp_endpoint {
            check_url("telemetry.otlp_endpoint", e, &["http", "https"])?;
        }
        check_addr("console.listen", &self.console.listen)?;
        if self.console.token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            return Err(ConfigError::invalid("console.token", "must be at least 16 characters"));
        }
        if let Some(h) = &self.console.forward_auth_header {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(ConfigError::invalid("console.forward_auth_header", "must be a header name"));
            }
        }
        if let Some(u) = &self.console.jaeger_ui_url {
            check_url("console.jaeger_ui_url", u, &["http", "https"])?;
        }
        Ok(())
    }

    /// This process's replica name: `nats.replica_id`, else host name and process id.
    pub fn replica_id(&self) -> String {
        if !self.nats.replica_id.is_empty() {
            return self.nats.replica_id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        format!("{host}-{}", std::process::id())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }

    /// The whole configuration as a TOML file **with the secrets in it**, for a program
    /// that writes the configuration of processes it starts (the test installation,
    /// `mlc demo`). Never for showing a configuration: `mlc config print` uses
    /// [`Config::to_redacted_toml`].
    pub fn to_toml_with_secrets(&self) -> String {
        secret::exposed(|| toml::to_string_pretty(self)).expect("a Config always renders as TOML")
    }

    /// The effective configuration as TOML, secrets redacted, each value followed by where
    /// it came from (`# default`, `# file`, `# env NAME`); unset optional keys as comments.
    pub fn to_redacted_toml_with_origins(&self, origins: &Origins) -> String {
        let mut value = toml::Value::try_from(self).unwrap_or(toml::Value::Table(toml::Table::new()));
        // A SQLite path holds no secret; a PostgreSQL URL may hold a password.
        if self.store.url.expose().starts_with("sqlite:") {
            set_path(&mut value, "store.url", toml::Value::String(self.store.url.expose().to_string()));
        }
        let mut out = String::new();
        let toml::Value::Table(root) = value else { return out };
        for (section, body) in &root {
            out.push_str(&format!("[{section}]\n"));
            if let toml::Value::Table(t) = body {
                print_table(&mut out, section, t, origins);
            }
            out.push('\n');
        }
        for optional in [
            "store.encryption_key",
            "gusto.client_secret",
            "telemetry.otlp_endpoint",
            "console.token",
            "console.forward_auth_header",
            "console.jaeger_ui_url",
        ] {
            if !origins.contains_key(optional) {
                out.push_str(&format!("# {optional} = <unset>\n"));
            }
        }
        out
    }

    /// The environment variables this program reads, with the keys they set.
    pub fn env_keys() -> impl Iterator<Item = (&'static str, &'static str)> {
        ENV_KEYS.iter().map(|(e, k, _)| (*e, *k))
    }
}

fn print_table(out: &mut String, prefix: &str, t: &toml::Table, origins: &Origins) {
    // Plain keys first: in TOML they belong to the table above the next header.
    for (k, v) in t.iter().filter(|(_, v)| !v.is_table()) {
        let key = format!("{prefix}.{k}");
        let origin = origins.get(&key).map(String::as_str).unwrap_or("default");
        out.push_str(&format!("{k} = {v}  # {origin}\n"));
    }
    for (k, v) in t {
        if let toml::Value::Table(inner) = v {
            let key = format!("{prefix}.{k}");
            if inner.values().any(|v| !v.is_table()) || inner.is_empty() {
                out.push_str(&format!("[{key}]\n"));
            }
            print_table(out, &key, inner, origins);
        }
    }
}

/// Records every leaf of `v` (arrays are leaves) as coming from `origin`.
fn record_leaves(v: &toml::Value, prefix: &str, origin: &str, out: &mut Origins) {
    match v {
        toml::Value::Table(t) => {
            for (k, inner) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                record_leaves(inner, &key, origin, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), origin.to_string());
        }
    }
}

/// Lays `layer` over `base`, table by table.
fn merge(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(b), toml::Value::Table(l)) => {
            for (k, v) in l {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, l) => *b = l,
    }
}

/// `MLC_VISMA_TENANTS__ACME__CLIENT_ID` -> `visma.tenants.acme.client_id`.
fn tenant_env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(TENANT_ENV_PREFIX)?;
    let (tenant, field) = rest.split_once("__")?;
    let field = field.to_ascii_lowercase();
    if tenant.is_empty() || !TENANT_FIELDS.contains(&field.as_str()) {
        return None;
    }
    Some(format!("visma.tenants.{}.{field}", tenant.to_ascii_lowercase()))
}

fn set_tenant(root: &mut toml::Value, key: &str, v: toml::Value) {
    // Tenant names may hold dots only through TOML quoting; the env form has none.
    set_path(root, key, v);
}

fn unknown_env(name: &str) -> ConfigError {
    let mut candidates: Vec<(String, String)> =
        ENV_KEYS.iter().map(|(n, k, _)| (n.to_string(), k.to_string())).collect();
    for f in TENANT_FIELDS {
        candidates.push((
            format!("{TENANT_ENV_PREFIX}NAME__{}", f.to_ascii_uppercase()),
            format!("visma.tenants.NAME.{f}"),
        ));
    }
    let best =
        candidates.into_iter().map(|(n, k)| (strsim::levenshtein(name, &n), n, k)).min_by_key(|(d, _, _)| *d);
    let hint = match best {
        Some((d, n, k)) if d <= name.len() / 2 => format!(" (did you mean {n}, key `{k}`?)"),
        _ => String::new(),
    };
    ConfigError::UnknownEnv { name: name.to_string(), hint }
}

impl NatsConfig {
    /// The defaults with another server URL: what tests and tools start from.
    pub fn at(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// Whether the connection must be TLS: a `tls://`/`wss://` URL, a CA file or
    /// `tls_required`.
    pub fn tls(&self) -> bool {
        self.tls_required
            || self.tls_ca_file.is_some()
            || self.url.split(',').any(|u| {
                let u = u.trim();
                u.starts_with("tls://") || u.starts_with("wss://")
            })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // A cluster is given as a comma-separated list of server URLs.
        for url in self.url.split(',') {
            let u = check_url("nats.url", url.trim(), &["nats", "tls", "ws", "wss"])?;
            if !u.username().is_empty() || u.password().is_some() {
                return Err(ConfigError::invalid(
                    "nats.url",
                    "must not carry credentials (they would be shown wherever the URL is); \
                     set nats.user and nats.password (MLC_NATS_USER, MLC_NATS_PASSWORD) or \
                     nats.token instead",
                ));
            }
            // nats:// is no special scheme to the url crate: its host stays a string.
            let host = u.host_str().unwrap_or_default();
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            if !loopback && !self.tls() && !self.allow_plaintext {
                return Err(ConfigError::invalid(
                    "nats.url",
                    format!(
                        "{host} is not on this machine, and plain-text NATS would send the \
                         credentials and every message across the network in clear; use TLS \
                         (a tls:// URL, nats.tls_ca_file or nats.tls_required = true), or set \
                         nats.allow_plaintext = true (MLC_NATS_ALLOW_PLAINTEXT) on a private network"
                    ),
                ));
            }
        }
        let empty = |s: &str| s.trim().is_empty();
        match (&self.user, &self.password) {
            (Some(u), _) if empty(u) => return Err(ConfigError::invalid("nats.user", "must not be empty")),
            (_, Some(p)) if empty(p.expose()) => {
                return Err(ConfigError::invalid("nats.password", "must not be empty"))
            }
            (Some(_), None) => {
                return Err(ConfigError::invalid("nats.password", "is required with nats.user"))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid("nats.user", "is required with nats.password"))
            }
            _ => {}
        }
        if self.token.as_ref().is_some_and(|t| empty(t.expose())) {
            return Err(ConfigError::invalid("nats.token", "must not be empty"));
        }
        if self.nkey_seed.is_some() && self.nkey_seed_file.is_some() {
            return Err(ConfigError::invalid(
                "nats.nkey_seed",
                "set nats.nkey_seed or nats.nkey_seed_file, not both",
            ));
        }
        if let Some(seed) = &self.nkey_seed {
            if !is_user_seed(seed.expose()) {
                return Err(ConfigError::invalid(
                    "nats.nkey_seed",
                    "is not an NKey user seed (58 characters starting with SU, as `nk -gen user` prints)",
                ));
            }
        }
        let methods = [
            ("nats.user", self.user.is_some()),
            ("nats.token", self.token.is_some()),
            ("nats.nkey_seed", self.nkey_seed.is_some() || self.nkey_seed_file.is_some()),
            ("nats.creds_file", self.creds_file.is_some()),
        ];
        let set: Vec<&str> = methods.iter().filter(|(_, on)| *on).map(|(k, _)| *k).collect();
        if set.len() > 1 {
            return Err(ConfigError::invalid(
                set[1],
                format!("only one NATS authentication method may be set, and {} is too", set[0]),
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            let missing =
                if self.tls_cert_file.is_some() { "nats.tls_key_file" } else { "nats.tls_cert_file" };
            return Err(ConfigError::invalid(missing, "the client certificate and its key go together"));
        }
        let p = &self.inbox_prefix;
        if p.is_empty()
            || p.starts_with('.')
            || p.ends_with('.')
            || p.contains("..")
            || !p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(ConfigError::invalid(
                "nats.inbox_prefix",
                "must be subject tokens of letters, digits, '_' and '-', joined by '.' (e.g. _INBOX.gateway)",
            ));
        }
        if self.allow_plaintext && self.tls() {
            return Err(ConfigError::invalid("nats.allow_plaintext", "contradicts the TLS settings"));
        }
        Ok(())
    }
}

/// An NKey user seed: `SU` and 56 more base32 characters.
fn is_user_seed(s: &str) -> bool {
    let s = s.trim();
    s.len() == 58
        && s.starts_with("SU")
        && s.bytes().all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
}

/// serde's type errors quote the value (`invalid type: string "s3cr3t", expected a
/// sequence`); the value may be a secret, so only the types are kept.
fn without_value(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
        let found = found.split_whitespace().next().unwrap_or("value");
        return format!("invalid type: {found}, expected{expected}");
    }
    if let Some((head, expected)) = message.split_once(", expected") {
        if head.starts_with("invalid value") || head.starts_with("invalid length") {
            return format!("invalid value, expected{expected}");
        }
    }
    message.to_string()
}

fn set_path(root: &mut toml::Value, dotted: &str, v: toml::Value) {
    let mut cur = root;
    let parts: Vec<&str> = dotted.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        let table = match cur {
            toml::Value::Table(t) => t,
            _ => return,
        };
        cur = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    if let toml::Value::Table(t) = cur {
        t.insert(parts[parts.len() - 1].to_string(), v);
    }
}

fn check_url(key: &str, s: &str, schemes: &[&str]) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(s)
        .map_err(|e| ConfigError::invalid(key, format!("{:?} is not a URL ({e})", without_userinfo(s))))?;
    if !schemes.contains(&u.scheme()) {
        return Err(ConfigError::invalid(key, format!("scheme must be one of {}", schemes.join(", "))));
    }
    Ok(u)
}

/// `scheme://user:pass@host` as `scheme://***@host`, also for text that is no valid URL.
fn without_userinfo(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &s[..scheme], &s[at + 1..]),
        _ => s.to_string(),
    }
}

fn check_addr(key: &str, s: &str) -> Result<(), ConfigError> {
    s.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| ConfigError::invalid(key, format!("{s:?} is not an address like 127.0.0.1:8080")))
}

fn is_api_version(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Decoded length of standard base64, without pulling a decoder into this crate.
fn base64_len(s: &str) -> Option<usize> {
    let s = s.trim();
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    if !s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=') {
        return None;
    }
    let pad = s.bytes().rev().take_while(|c| *c == b'=').count();
    Some(s.len() / 4 * 3 - pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_from(None, &[]).unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(c.gusto.rate_limit, 200);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[nats]\nurl = \"nats://127.0.0.9:4222\"\nstream_prefix = \"fromfile\"\n")
            .unwrap();
        let c = Config::load_from(
            Some(&f),
            &env(&[("MLC_STREAM_PREFIX", "fromenv"), ("MLC_GUSTO_WEBHOOK_TOKENS", "a, b")]),
        )
        .unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.9:4222");
        assert_eq!(c.nats.stream_prefix, "fromenv");
        assert_eq!(c.gateway.webhook_tokens.len(), 2);
        assert_eq!(c.gateway.webhook_tokens[1].expose(), "b");
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let e = Config::load_from(None, &env(&[("MLC_NATS_URL", "not a url")])).unwrap_err();
        assert!(e.to_string().contains("`nats.url` (env MLC_NATS_URL)"), "{e}");
        let e = Config::load_from(None, &env(&[("MLC_WRITER_WORKERS", "many")])).unwrap_err();
        assert!(e.to_string().contains("writer.workers"), "{e}");
        let e = Config::load_from(None, &env(&[("MLC_STORE_ENCRYPTION_KEY", "short")])).unwrap_err();
        assert!(e.to_string().contains("store.encryption_key"), "{e}");
        assert!(!e.to_string().contains("short"), "the secret itself must not be echoed: {e}");
    }

    #[test]
    fn unknown_and_mistyped_file_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[gateway]\nlisten = \"127.0.0.1:1\"\nmax_body_bytes = \"big\"\n").unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err();
        assert!(e.to_string().contains("gateway.max_body_bytes"), "{e}");
        std::fs::write(&f, "[gatway]\nlisten = \"x\"\n").unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err();
        assert!(e.to_string().contains("gatway"), "{e}");
        std::fs::write(
            &f,
            "[visma.tenants.acme]\nclient_id = \"x\"\nclient_secret = \"s\"\ntenant_id = \"\"\n",
        )
        .unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err();
        assert!(e.to_string().contains("visma.tenants.acme.tenant_id"), "{e}");
    }

    /// The defaults file with its optional keys and the tenant example uncommented.
    fn defaults_uncommented() -> String {
        DEFAULTS_TOML
            .lines()
            .map(|l| {
                let body = l.strip_prefix("# ").unwrap_or("");
                let first = body.split(' ').next().unwrap_or("");
                let is_key = !first.is_empty()
                    && first.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && body[first.len()..].starts_with(" = ");
                let is_header = body.starts_with('[') && body.ends_with(']');
                if is_key || is_header {
                    format!("{body}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    }

    fn leaves(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, inner) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    leaves(inner, &key, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn the_defaults_file_is_config_default() {
        let parsed: Config = toml::from_str(DEFAULTS_TOML).unwrap();
        let a = serde_json::to_value(&parsed).unwrap();
        let b = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(a, b, "defaults.toml and the Default impls disagree");
        assert_eq!(parsed.store.url.expose(), Config::default().store.url.expose());
    }

    #[test]
    fn every_key_is_in_the_defaults_file_and_has_a_variable() {
        let mut want = Vec::new();
        let mut full = serde_json::to_value(Config::default()).unwrap();
        // The map of tenants is empty by default; one example entry stands for its keys.
        full["visma"]["tenants"] = serde_json::json!({"NAME": {
            "client_id": "", "client_secret": "", "tenant_id": "", "ipp_company_id": null}});
        leaves(&full, "", &mut want);
        let file: toml::Value = toml::from_str(&defaults_uncommented()).unwrap();
        let mut have = Vec::new();
        leaves(&serde_json::to_value(file).unwrap(), "", &mut have);
        for key in &want {
            assert!(have.contains(key), "config key `{key}` is missing from crates/config/defaults.toml");
            if !key.starts_with("visma.tenants.") {
                assert!(
                    ENV_KEYS.iter().any(|(_, k, _)| k == key),
                    "config key `{key}` has no environment variable in ENV_KEYS"
                );
                let (env, _, _) = ENV_KEYS.iter().find(|(_, k, _)| k == key).unwrap();
                assert!(DEFAULTS_TOML.contains(env), "defaults.toml does not name {env}");
            }
        }
        for key in &have {
            assert!(want.contains(key), "defaults.toml names `{key}`, which Config does not have");
        }
    }

    #[test]
    fn an_unknown_variable_names_the_closest_key() {
        let e = Config::load_from(None, &env(&[("MLC_GATEWAY_LISTNE", "1")])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("MLC_GATEWAY_LISTNE") && text.contains("MLC_GATEWAY_LISTEN"), "{text}");
        assert!(text.contains("gateway.listen"), "{text}");
        // The CLI's and the tools' own variables are not configuration.
        Config::load_from(None, &env(&[("MLC_CONFIG", "x"), ("MLC_FULL", "1"), ("MLC_BIN", "b")])).unwrap();
    }

    #[test]
    fn visma_tenants_come_from_the_environment_too() {
        let c = Config::load_from(
            None,
            &env(&[
                ("MLC_VISMA_TENANTS__NORDIC__CLIENT_ID", "isv"),
                ("MLC_VISMA_TENANTS__NORDIC__CLIENT_SECRET", "S3CRET"),
                ("MLC_VISMA_TENANTS__NORDIC__TENANT_ID", "t-1"),
            ]),
        )
        .unwrap();
        let t = &c.visma.tenants["nordic"];
        assert_eq!(
            (t.client_id.as_str(), t.client_secret.expose(), t.tenant_id.as_str()),
            ("isv", "S3CRET", "t-1")
        );
    }

    #[test]
    fn print_shows_where_each_value_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[nats]\nurl = \"nats://127.0.0.9:4222\"\n").unwrap();
        let (c, origins) = Config::load_with_origins(
            Some(&f),
            &env(&[("MLC_STREAM_PREFIX", "p"), ("MLC_GUSTO_CLIENT_SECRET", "cs-SECRET")]),
        )
        .unwrap();
        assert_eq!(origins["nats.url"], "file");
        assert_eq!(origins["nats.stream_prefix"], "env MLC_STREAM_PREFIX");
        assert_eq!(origins["writer.workers"], "default");
        let text = c.to_redacted_toml_with_origins(&origins);
        assert!(text.contains("url = \"nats://127.0.0.9:4222\"  # file"), "{text}");
        assert!(text.contains("stream_prefix = \"p\"  # env MLC_STREAM_PREFIX"), "{text}");
        assert!(text.contains("# store.encryption_key = <unset>"), "{text}");
        assert!(
            text.contains("url = \"sqlite://.mlc/mlc.db\"  # default"),
            "a SQLite path is no secret: {text}"
        );
        assert!(!text.contains("cs-SECRET"), "{text}");
    }

    #[test]
    fn printing_redacts_secrets() {
        let c = Config::load_from(
            None,
            &env(&[("MLC_GUSTO_WEBHOOK_TOKENS", "tok-SECRET"), ("MLC_GUSTO_CLIENT_SECRET", "cs-SECRET")]),
        )
        .unwrap();
        let text = c.to_redacted_toml();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn a_file_written_with_its_secrets_loads_back_the_same() {
        let mut c = Config::default();
        // 32 bytes of base64 whose text says SECRET.
        let key = "SECRETSECRETSECRETSECRETSECRETSECRETSECRET0=";
        c.store.encryption_key = Some(Secret::new(key));
        c.gateway.webhook_tokens = vec![Secret::new("tok-SECRET")];
        c.visma.tenants.insert(
            "t".into(),
            VismaTenant {
                client_id: "id".into(),
                client_secret: Secret::new("cs-SECRET"),
                tenant_id: "tid".into(),
                ipp_company_id: None,
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, c.to_toml_with_secrets()).unwrap();
        let back = Config::load_from(Some(&f), &[]).unwrap();
        assert_eq!(back.store.encryption_key.as_ref().map(Secret::expose), Some(key));
        assert_eq!(back.gateway.webhook_tokens, vec![Secret::new("tok-SECRET")]);
        assert_eq!(back.visma.tenants["t"].client_secret.expose(), "cs-SECRET");
        // The exposure ends with the call: printing masks again.
        let printed = back.to_redacted_toml();
        assert!(!printed.contains("SECRET"), "{printed}");
    }

    #[test]
    fn type_errors_name_the_key_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[gateway]\nwebhook_tokens = \"tok-SECRET-1\"\n").unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("gateway.webhook_tokens") && e.contains("expected a sequence"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        std::fs::write(&f, "[nats]\npassword = [\"pw-SECRET-2\"]\nuser = \"u\"\n").unwrap();
        let e = Config::load_from(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("nats.password") && !e.contains("SECRET"), "{e}");
    }

    #[test]
    fn credentials_in_the_nats_url_are_refused_without_echo() {
        for url in [
            "nats://u:pw-SECRET@127.0.0.1:4222",
            "nats://tok-SECRET@127.0.0.1:4222",
            "nats://u:pw-SECRET@h:x",
        ] {
            let e = Config::load_from(None, &env(&[("MLC_NATS_URL", url)])).unwrap_err().to_string();
            assert!(e.contains("`nats.url` (env MLC_NATS_URL)"), "{e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
        let e = Config::load_from(None, &env(&[("MLC_NATS_URL", "nats://u:pw-SECRET@127.0.0.1:4222")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nats.user") && e.contains("nats.password"), "{e}");
    }

    #[test]
    fn nats_authentication_keys() {
        let seed = format!("SU{}", "A".repeat(56));
        let c = Config::load_from(
            None,
            &env(&[("MLC_NATS_USER", "gateway"), ("MLC_NATS_PASSWORD", "pw-SECRET"), ("MLC_NATS_TOKEN", "")]),
        )
        .unwrap();
        assert_eq!(c.nats.user.as_deref(), Some("gateway"));
        assert_eq!(c.nats.password.as_ref().map(Secret::expose), Some("pw-SECRET"));
        assert!(c.nats.token.is_none(), "an empty variable unsets the key");
        assert!(!c.to_redacted_toml().contains("SECRET"));
        let e = Config::load_from(None, &env(&[("MLC_NATS_USER", "gateway")])).unwrap_err();
        assert!(e.to_string().contains("nats.password"), "{e}");
        let e = Config::load_from(None, &env(&[("MLC_NATS_TOKEN", "t"), ("MLC_NATS_NKEY_SEED", &seed)]))
            .unwrap_err();
        assert!(e.to_string().contains("only one NATS authentication method"), "{e}");
        let e = Config::load_from(None, &env(&[("MLC_NATS_NKEY_SEED", "SUshort-SECRET")])).unwrap_err();
        assert!(e.to_string().contains("nats.nkey_seed") && !e.to_string().contains("SECRET"), "{e}");
        Config::load_from(None, &env(&[("MLC_NATS_NKEY_SEED", &seed)])).unwrap();
        let e = Config::load_from(None, &env(&[("MLC_NATS_TLS_CERT_FILE", "/c.pem")])).unwrap_err();
        assert!(e.to_string().contains("nats.tls_key_file"), "{e}");
    }

    #[test]
    fn plain_text_nats_off_this_machine_needs_tls_or_consent() {
        let remote = ("MLC_NATS_URL", "nats://nats.nats:4222");
        let e = Config::load_from(None, &env(&[remote])).unwrap_err().to_string();
        assert!(e.contains("nats.url") && e.contains("nats.allow_plaintext"), "{e}");
        Config::load_from(None, &env(&[remote, ("MLC_NATS_ALLOW_PLAINTEXT", "true")])).unwrap();
        Config::load_from(None, &env(&[remote, ("MLC_NATS_TLS_CA_FILE", "/ca.pem")])).unwrap();
        Config::load_from(None, &env(&[("MLC_NATS_URL", "tls://nats.nats:4222")])).unwrap();
        for local in ["nats://127.0.0.1:4222", "nats://localhost:4222", "nats://[::1]:4222"] {
            Config::load_from(None, &env(&[("MLC_NATS_URL", local)])).unwrap();
        }
    }

    #[test]
    fn a_console_off_loopback_needs_a_login_and_its_token_stays_secret() {
        let c = Config::load_from(None, &env(&[("MLC_CONSOLE_LISTEN", "0.0.0.0:8090")])).unwrap();
        let e = c.console.check_access().unwrap_err().to_string();
        assert!(e.contains("console.token") && e.contains("MLC_CONSOLE_TOKEN"), "{e}");
        let local = Config::load_from(None, &[]).unwrap();
        assert!(local.console.is_loopback() && local.console.check_access().is_ok());
        let e = Config::load_from(None, &env(&[("MLC_CONSOLE_TOKEN", "short")])).unwrap_err().to_string();
        assert!(e.contains("console.token") && !e.contains("short"), "{e}");
        let c = Config::load_from(
            None,
            &env(&[("MLC_CONSOLE_LISTEN", "0.0.0.0:8090"), ("MLC_CONSOLE_TOKEN", "tok-SECRET-0123456789")]),
        )
        .unwrap();
        assert!(c.console.check_access().is_ok());
        assert!(!c.to_redacted_toml().contains("SECRET") && !format!("{c:?}").contains("SECRET"));
        let behind_proxy = Config::load_from(
            None,
            &env(&[
                ("MLC_CONSOLE_LISTEN", "0.0.0.0:8090"),
                ("MLC_CONSOLE_FORWARD_AUTH_HEADER", "X-Forwarded-User"),
            ]),
        )
        .unwrap();
        assert!(behind_proxy.console.check_access().is_ok());
    }
}
