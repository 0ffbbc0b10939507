//! What most commands need: the validated configuration, the store, NATS and the API
//! clients. A thin CLI wrapper over [`mlc_runtime::Deps`], so commands are built the same
//! way the services are.

use anyhow::Context as _;
use gusto::GustoClient;
use mlc_bus::{Publisher, Topology};
use mlc_config::Config;
use mlc_runtime::{Access, Deps};
use mlc_store::Store;
use std::sync::Arc;

pub use mlc_runtime::clients::{
    cli_gusto_client, gusto_client, gusto_client_with, shared_gusto_client, visma_clients,
};
pub use mlc_runtime::{open_store, topology};

/// A CLI command's dependencies: [`Deps`] with the store always open.
pub struct Ctx {
    pub cfg: Config,
    pub store: Arc<Store>,
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub topo: Topology,
    pub publisher: Publisher,
}

impl Ctx {
    /// As the admin: the topology is brought to the current configuration.
    pub async fn connect(cfg: Config, name: &str) -> anyhow::Result<Ctx> {
        Self::connect_as(cfg, name, Access::Admin).await
    }

    /// With the given access; read-only commands pass [`Access::ReadOnly`] and create
    /// nothing.
    pub async fn connect_as(cfg: Config, name: &str, access: Access) -> anyhow::Result<Ctx> {
        Self::from_deps(Deps::connect(cfg, name, access, true).await?)
    }

    pub fn from_deps(deps: Deps) -> anyhow::Result<Ctx> {
        let store = deps.store()?.clone();
        let Deps { cfg, nats, js, topo, publisher, .. } = deps;
        Ok(Ctx { cfg, store, nats, js, topo, publisher })
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
            mlc_projector::ProjectorSettings::from_config(&self.cfg)?,
        ))
    }

    pub fn visma(&self, tenant: &str) -> anyhow::Result<Arc<visma::VismaClient>> {
        mlc_runtime::clients::visma_client(&self.cfg, tenant)
    }

    pub async fn company(&self, company: &str) -> anyhow::Result<mlc_store::Company> {
        self.store
            .company(company)
            .await?
            .with_context(|| format!("unknown company {company}; `mlc company list` shows the known ones"))
    }
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
