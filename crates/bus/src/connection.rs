//! The one way every process connects to NATS: [`connect_options`] turns the typed
//! `nats.*` configuration into async-nats options (who we are, how the server is
//! verified); [`connect`] and [`connect_now`] only add how hard to try.
//!
//! Secrets go from `mlc_config::Secret` straight into the options and are never put in
//! an error or a log line; URLs carry no credentials (validation refuses them) and are
//! shown through [`redact_url`] all the same.

use crate::BusError;
use async_nats::{ClientError, ConnectOptions, Event, ServerAddr, ServerError};
use mlc_config::{NatsConfig, Secret};
use std::time::Duration;

/// How often a connection pings its server (see [`connect_options`]).
pub const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Options and servers for `cfg`, named `name` in the server's connection list. Reads
/// the NKey seed and creds files, so a missing file is reported here, naming its key.
pub async fn connect_options(
    cfg: &NatsConfig,
    name: &str,
) -> Result<(ConnectOptions, Vec<ServerAddr>), BusError> {
    let err = |reason: String| BusError::Connect { url: redact_url(&cfg.url), reason };
    let servers = servers(&cfg.url)?;
    let user = cfg.user.clone().unwrap_or_default();
    let mut opts = ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        // A server cut off by a partition sends no reset: the connection just goes quiet.
        // The client notices after two unanswered pings, so this is how long a process
        // stays stuck on such a server before it reconnects to another (the default 60 s
        // kept a partition-healed cluster unsettled for half a minute).
        .ping_interval(PING_INTERVAL)
        .custom_inbox_prefix(&cfg.inbox_prefix)
        .event_callback(move |event| log_event(user.clone(), event));
    if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
        opts = opts.user_and_password(user.clone(), password.expose().to_string());
    }
    if let Some(token) = &cfg.token {
        opts = opts.token(token.expose().to_string());
    }
    let seed = match (&cfg.nkey_seed, &cfg.nkey_seed_file) {
        (Some(seed), _) => Some(seed.clone()),
        (None, Some(path)) => Some(Secret::new(
            std::fs::read_to_string(path)
                .map_err(|e| err(format!("nats.nkey_seed_file {}: {e}", path.display())))?
                .trim(),
        )),
        (None, None) => None,
    };
    if let Some(seed) = seed {
        // Checked here too: the file's content was not validated with the config.
        if nkeys::KeyPair::from_seed(seed.expose()).is_err() {
            return Err(err("nats.nkey_seed(_file) does not hold a valid NKey user seed".into()));
        }
        opts = opts.nkey(seed.expose().to_string());
    }
    if let Some(path) = &cfg.creds_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| err(format!("nats.creds_file {}: {}", path.display(), e.kind())))?;
    }
    if cfg.tls() {
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &cfg.tls_ca_file {
        readable("nats.tls_ca_file", ca).map_err(err)?;
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        readable("nats.tls_cert_file", cert).map_err(err)?;
        readable("nats.tls_key_file", key).map_err(err)?;
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    Ok((opts, servers))
}

/// Connects with what every service wants on top: retries on the first connect (pods may
/// start before NATS) and unlimited reconnects.
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, BusError> {
    let (opts, servers) = connect_options(cfg, name).await?;
    opts.retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|e| BusError::Connect { url: redact_url(&cfg.url), reason: e.to_string() })
}

/// Connects once, failing fast: for CLI commands and readiness checks.
pub async fn connect_now(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, BusError> {
    let (opts, servers) = connect_options(cfg, name).await?;
    opts.connect(servers)
        .await
        .map_err(|e| BusError::Connect { url: redact_url(&cfg.url), reason: e.to_string() })
}

/// Connection events as log lines. A refusal by the server is an error an operator must
/// act on, so it says which NATS user was refused and where the permissions live.
async fn log_event(user: String, event: Event) {
    let user = if user.is_empty() { "(this connection's credentials)".to_string() } else { user };
    // A refused login arrives as a server error once connected, as a client error while connecting.
    let refused_login = match &event {
        Event::ServerError(ServerError::AuthorizationViolation) => true,
        Event::ClientError(ClientError::Other(e)) => {
            e.to_ascii_lowercase().contains("authorization violation")
        }
        _ => false,
    };
    match &event {
        _ if refused_login => tracing::error!(
            nats_user = %user,
            "NATS refused to authenticate this process: check nats.user/nats.password, nats.token, \
             nats.nkey_seed or nats.creds_file against the server's configuration"
        ),
        Event::ServerError(ServerError::Other(e))
            if e.to_ascii_lowercase().contains("permissions violation") =>
        {
            tracing::error!(
                nats_user = %user,
                refused = %e,
                "NATS refused an operation for lack of permission: the server's permissions for this \
                 user do not cover what this service does (see docs/SECURITY.md, NATS users)"
            )
        }
        Event::ServerError(e) => tracing::error!(error = %e, "NATS server error"),
        Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
        Event::Disconnected | Event::LameDuckMode | Event::SlowConsumer(_) => {
            tracing::warn!(%event, "nats connection event")
        }
        _ => tracing::info!(%event, "nats connection event"),
    }
}

fn readable(key: &str, path: &std::path::Path) -> Result<(), String> {
    std::fs::metadata(path).map(|_| ()).map_err(|e| format!("{key} {}: {e}", path.display()))
}

/// `url` may list a cluster's servers, comma-separated.
fn servers(url: &str) -> Result<Vec<ServerAddr>, BusError> {
    url.split(',')
        .map(|u| {
            u.trim()
                .parse::<ServerAddr>()
                .map_err(|e| BusError::Connect { url: redact_url(u), reason: e.to_string() })
        })
        .collect()
}

/// URLs may carry `user:password@` (validation refuses them; this is the belt to its
/// braces): keep them out of errors and logs.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &u[..scheme], &u[at + 1..]),
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("nats://user:pw@host:4222"), "nats://***@host:4222");
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
        assert_eq!(redact_url("nats://a:b@h1:1,nats://c:d@h2:2"), "nats://***@h1:1,nats://***@h2:2");
    }

    #[tokio::test]
    async fn a_missing_file_is_named_by_its_key() {
        let mut cfg = NatsConfig::at("nats://127.0.0.1:1");
        cfg.creds_file = Some("/nonexistent/x.creds".into());
        let e = connect_options(&cfg, "t").await.err().unwrap().to_string();
        assert!(e.contains("nats.creds_file"), "{e}");
        let mut cfg = NatsConfig::at("nats://127.0.0.1:1");
        cfg.tls_ca_file = Some("/nonexistent/ca.pem".into());
        let e = connect_options(&cfg, "t").await.err().unwrap().to_string();
        assert!(e.contains("nats.tls_ca_file"), "{e}");
    }
}
