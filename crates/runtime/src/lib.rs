//! The composition root: the one place where a validated [`Config`] becomes connected
//! dependencies ([`Deps`]) and API clients ([`clients`]). The services, the CLI, the bench
//! and the tests all build through here, so a process is wired the same way wherever it
//! starts. Starting the services themselves is `mlc::startup`, which depends on this crate
//! (this one depends on no service).

pub mod adapters;
pub mod clients;

pub use adapters::{CliLimit, GrantStore, JetStreamLimit};

use anyhow::Context as _;
use async_nats::jetstream;
use mlc_bus::{Publisher, Topology};
use mlc_config::Config;
use mlc_store::{EncryptionKey, Store};
use std::sync::Arc;
use std::time::Duration;

/// What a process may do to the JetStream topology when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A service: create what is missing, leave what exists as it is (a service's NATS
    /// user may not be allowed to change streams).
    Service,
    /// The admin (CLI commands that change things): bring every stream and consumer to
    /// the configured topology.
    Admin,
    /// Read-only commands: create nothing; fail, naming the prefix, when a stream is
    /// missing.
    ReadOnly,
}

/// A process's connected dependencies.
pub struct Deps {
    pub cfg: Config,
    /// `None` for the gateway, which faces the internet and holds no store or key.
    pub store: Option<Arc<Store>>,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub topo: Topology,
    pub publisher: Publisher,
}

impl Deps {
    /// Opens the store (when `with_store`), connects to NATS as `name` and checks or sets
    /// up the topology as `access` allows. Services retry the first NATS connect (pods
    /// may start before NATS); the CLI fails fast.
    pub async fn connect(cfg: Config, name: &str, access: Access, with_store: bool) -> anyhow::Result<Deps> {
        let store = if with_store { Some(Arc::new(open_store(&cfg).await?)) } else { None };
        let nats = match access {
            Access::Service => mlc_bus::connect(&cfg.nats, name).await?,
            Access::Admin | Access::ReadOnly => mlc_bus::connect_now(&cfg.nats, name).await?,
        };
        let topo = topology(&cfg)?;
        let js = jetstream::new(nats.clone());
        match access {
            Access::Service => mlc_bus::ensure_topology(&js, &topo).await,
            Access::Admin => mlc_bus::apply_topology(&js, &topo).await,
            Access::ReadOnly => mlc_bus::verify_topology(&js, &topo).await,
        }
        .context("the JetStream topology")?;
        let publisher = publisher(&cfg, &nats);
        Ok(Deps { cfg, store, nats, js, topo, publisher })
    }

    /// The store, for the roles that need it.
    pub fn store(&self) -> anyhow::Result<&Arc<Store>> {
        self.store.as_ref().context("this process was started without the store")
    }
}

/// A readiness probe of the store: a pooled connection answers a query and the last
/// write did not fail ([`Store::answers`]).
pub async fn store_answers(store: &Store) -> bool {
    store.answers().await
}

/// The configured topology: `nats.stream_prefix`, `nats.replicas`, `nats.partitions`.
pub fn topology(cfg: &Config) -> anyhow::Result<Topology> {
    Ok(Topology::new(&cfg.nats.stream_prefix, cfg.nats.replicas)?.with_partitions(cfg.nats.partitions)?)
}

/// A publisher that waits `nats.publish_timeout_ms` for JetStream's ack.
pub fn publisher(cfg: &Config, nats: &async_nats::Client) -> Publisher {
    Publisher::new(nats.clone(), Duration::from_millis(cfg.nats.publish_timeout_ms.max(1)))
}

/// Opens (and migrates) the store at `store.url`, with `store.encryption_key`.
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
