//! The Gusto and Visma clients, built from the configuration in one place for the
//! services, the CLI and the bench.

use crate::adapters::{CliLimit, GrantStore, JetStreamLimit};
use anyhow::Context as _;
use gusto::{ClientConfig, GustoClient};
use mlc_bus::ratelimit::SharedWindow;
use mlc_bus::Topology;
use mlc_config::Config;
use mlc_store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use visma::VismaClient;

/// A Gusto client whose grants live in the store (`oauth_grants`, encrypted at rest).
pub fn gusto_client(cfg: &Config, store: Arc<Store>) -> anyhow::Result<Arc<GustoClient>> {
    gusto_client_with(cfg, Arc::new(GrantStore::new(store)))
}

/// As [`gusto_client`] over any token store (e.g. an in-memory one for a probe).
pub fn gusto_client_with(
    cfg: &Config,
    tokens: Arc<dyn gusto::TokenStore>,
) -> anyhow::Result<Arc<GustoClient>> {
    let secret = cfg.gusto.client_secret.as_ref().map(|s| s.expose().to_string()).unwrap_or_default();
    let mut c =
        ClientConfig::new(&cfg.gusto.base_url, cfg.gusto.client_id.clone(), gusto::Secret::new(secret))?;
    c.api_version = cfg.gusto.api_version.clone();
    c.rate_limit.limit = cfg.gusto.rate_limit as usize;
    c.rate_limit.window = rate_window(cfg);
    Ok(Arc::new(GustoClient::new(c, tokens)?))
}

/// As [`gusto_client`], with the grant's window also kept in JetStream: every process
/// holding the grant (services, replicas, the CLI) takes a slot before each request, so
/// together they stay within Gusto's 200 per rolling minute per grant, in every
/// configuration (one partition or many).
pub async fn shared_gusto_client(
    cfg: &Config,
    store: Arc<Store>,
    js: &async_nats::jetstream::Context,
    topo: &Topology,
) -> anyhow::Result<Arc<GustoClient>> {
    let shared = SharedWindow::ensure(js, topo, cfg.gusto.rate_limit, rate_window(cfg)).await?;
    Ok(with_limit(gusto_client(cfg, store)?, Arc::new(JetStreamLimit(shared))))
}

/// The CLI's client: as [`shared_gusto_client`], and its requests also take a slot of the
/// CLI's half-size window, so long commands yield to the sync (which keeps at least half).
pub async fn cli_gusto_client(
    cfg: &Config,
    store: Arc<Store>,
    js: &async_nats::jetstream::Context,
    topo: &Topology,
) -> anyhow::Result<Arc<GustoClient>> {
    let (limit, window) = (cfg.gusto.rate_limit, rate_window(cfg));
    let shared = SharedWindow::ensure(js, topo, limit, window).await?;
    let cli = SharedWindow::ensure_cli(js, topo, limit, window).await?;
    Ok(with_limit(gusto_client(cfg, store)?, Arc::new(CliLimit { cli, shared })))
}

fn rate_window(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.gusto.rate_window_ms)
}

fn with_limit(client: Arc<GustoClient>, limit: Arc<dyn gusto::SharedLimit>) -> Arc<GustoClient> {
    Arc::new(Arc::unwrap_or_clone(client).with_shared_limit(limit))
}

/// One Visma client per `visma.tenants` entry, by the entry's name (`Company.visma_tenant`).
pub fn visma_clients(cfg: &Config) -> anyhow::Result<HashMap<String, Arc<VismaClient>>> {
    cfg.visma.tenants.keys().map(|name| Ok((name.clone(), visma_client(cfg, name)?))).collect()
}

/// The Visma client of the tenant configured as `visma.tenants.<name>`.
pub fn visma_client(cfg: &Config, name: &str) -> anyhow::Result<Arc<VismaClient>> {
    let t = cfg
        .visma
        .tenants
        .get(name)
        .with_context(|| format!("no Visma tenant {name:?} under visma.tenants in the configuration"))?;
    let mut vc = visma::VismaConfig::new(
        t.tenant_id.clone(),
        t.client_id.clone(),
        visma::Secret::new(t.client_secret.expose()),
    )
    .with_endpoints(cfg.visma.base_url.clone(), cfg.visma.token_url.clone());
    if cfg.visma.legacy {
        let id = t.ipp_company_id.clone().with_context(|| {
            format!(
                "config key `visma.tenants.{name}.ipp_company_id` is required in legacy mode (visma.legacy)"
            )
        })?;
        vc = vc.with_legacy(id);
    }
    let client = VismaClient::new(vc).with_context(|| format!("Visma client for tenant {name}"))?;
    Ok(Arc::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_visma_client_per_tenant_and_legacy_needs_the_company_id() {
        let mut cfg = Config::default();
        cfg.visma.tenants.insert(
            "main".into(),
            mlc_config::VismaTenant {
                client_id: "isv".into(),
                client_secret: mlc_config::Secret::new("s3cret"),
                tenant_id: "t-1".into(),
                ipp_company_id: None,
            },
        );
        let clients = visma_clients(&cfg).expect("clients");
        assert_eq!(clients["main"].config().tenant_id, "t-1");

        cfg.visma.legacy = true;
        let err = visma_clients(&cfg).expect_err("legacy needs ipp_company_id");
        assert!(err.to_string().contains("ipp_company_id"));
        assert!(!format!("{err:?}").contains("s3cret"));
    }
}
