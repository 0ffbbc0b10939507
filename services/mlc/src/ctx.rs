//! What most commands need: the validated configuration, the store, NATS and the API
//! clients, built the same way the services build them.

use anyhow::Context as _;
use gusto::{ClientConfig, GustoClient};
use mlc_bus::{Publisher, Topology};
use mlc_config::Config;
use mlc_store::{EncryptionKey, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct Ctx {
    pub cfg: Config,
    pub store: Arc<Store>,
    pub js: async_nats::jetstream::Context,
    pub topo: Topology,
    pub publisher: Publisher,
}

impl Ctx {
    pub async fn connect(cfg: Config, name: &str) -> anyhow::Result<Ctx> {
        let store = Arc::new(open_store(&cfg).await?);
        let client = mlc_bus::connect_now(&cfg.nats, name).await?;
        let topo = topology(&cfg)?;
        let js = async_nats::jetstream::new(client.clone());
        // The CLI is the admin: it brings the topology to the current configuration.
        mlc_bus::apply_topology(&js, &topo).await.context("creating the JetStream topology")?;
        let publisher = Publisher::new(client.clone(), Duration::from_millis(cfg.nats.publish_timeout_ms));
        Ok(Ctx { cfg, store, js, topo, publisher })
    }

    /// The Gusto client of CLI commands: the grant's shared window, at most half of it.
    pub async fn gusto(&self) -> anyhow::Result<Arc<GustoClient>> {
        cli_gusto_client(&self.cfg, self.store.clone(), &self.js, &self.topo).await
    }

    /// The projector's mapping path, driven by the CLI (replay, dead-letter retry) with the
    /// CLI's Gusto client.
    pub async fn projector(&self) -> anyhow::Result<Arc<mlc_projector::Projector>> {
        Ok(mlc_projector::Projector::new(
            self.js.clone(),
            self.publisher.clone(),
            self.store.clone(),
            self.gusto().await?,
            mlc_projector::ProjectorSettings::new(self.topo.clone()),
        ))
    }

    pub fn visma(&self, tenant: &str) -> anyhow::Result<Arc<visma::VismaClient>> {
        visma_clients(&self.cfg)?
            .remove(tenant)
            .with_context(|| format!("no Visma tenant {tenant:?} under visma.tenants in the configuration"))
    }

    pub async fn company(&self, company: &str) -> anyhow::Result<mlc_store::Company> {
        self.store
            .company(company)
            .await?
            .with_context(|| format!("unknown company {company}; `mlc company list` shows the known ones"))
    }
}

pub fn topology(cfg: &Config) -> anyhow::Result<Topology> {
    Ok(Topology::new(&cfg.nats.stream_prefix, cfg.nats.replicas)?.with_partitions(cfg.nats.partitions)?)
}

pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let key = cfg
        .store
        .encryption_key
        .as_ref()
        .map(|k| EncryptionKey::from_base64(k.expose()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("config key `store.encryption_key` {e}"))?;
    Store::connect(cfg.store.url.expose(), key).await.context("opening the store (store.url)")
}

pub fn gusto_client(cfg: &Config, store: Arc<Store>) -> anyhow::Result<Arc<GustoClient>> {
    gusto_client_with(cfg, Arc::new(mlc_projector::GrantStore::new(store)))
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
    c.rate_limit.window = Duration::from_millis(cfg.gusto.rate_window_ms);
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
    let shared =
        mlc_bus::ratelimit::SharedWindow::ensure(js, topo, cfg.gusto.rate_limit, rate_window(cfg)).await?;
    Ok(with_limit(gusto_client(cfg, store)?, Arc::new(mlc_projector::JetStreamLimit(shared))))
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
    let shared = mlc_bus::ratelimit::SharedWindow::ensure(js, topo, limit, window).await?;
    let cli = mlc_bus::ratelimit::SharedWindow::ensure_cli(js, topo, limit, window).await?;
    Ok(with_limit(gusto_client(cfg, store)?, Arc::new(mlc_projector::CliLimit { cli, shared })))
}

fn rate_window(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.gusto.rate_window_ms)
}

fn with_limit(client: Arc<GustoClient>, limit: Arc<dyn gusto::SharedLimit>) -> Arc<GustoClient> {
    Arc::new(Arc::unwrap_or_clone(client).with_shared_limit(limit))
}

pub fn visma_clients(cfg: &Config) -> anyhow::Result<HashMap<String, Arc<visma::VismaClient>>> {
    let mut out = HashMap::new();
    for (name, t) in &cfg.visma.tenants {
        let mut vc = visma::VismaConfig::new(
            t.tenant_id.clone(),
            t.client_id.clone(),
            visma::Secret::new(t.client_secret.expose()),
        )
        .with_endpoints(cfg.visma.base_url.clone(), cfg.visma.token_url.clone());
        if cfg.visma.legacy {
            let id = t.ipp_company_id.clone().with_context(|| {
                format!("config key `visma.tenants.{name}.ipp_company_id` is required in legacy mode")
            })?;
            vc = vc.with_legacy(id);
        }
        out.insert(name.clone(), Arc::new(visma::VismaClient::new(vc)?));
    }
    Ok(out)
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
