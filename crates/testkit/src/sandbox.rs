//! The configuration of an installation that talks only to the simulators: every value a
//! test (or `mlc demo`) would otherwise paste into a TOML template, as a typed
//! [`mlc_config::Config`]. Change fields, then write it with [`write_config`].

use mlc_config::{Config, Secret, VismaTenant};
use std::path::Path;

/// The key under `visma.tenants` of the one tenant [`sandbox_config`] configures.
pub const TENANT: &str = "nordic";

/// `host:port` on loopback that nobody listens on right now.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", crate::free_port())
}

/// An installation against `nats` and the two simulators, its state in `dir`:
///
/// * a SQLite store `dir/mlc.db` with a fresh encryption key;
/// * the gateway, the three ops/metrics listeners and the console on free loopback ports;
/// * Gusto on the simulator with its OAuth client, redirect `http://127.0.0.1/cb`;
/// * one Visma tenant, [`TENANT`], on the simulator's default tenant and client;
/// * the default stream prefix (empty): set `nats.stream_prefix` for a private one.
pub fn sandbox_config(
    nats: &str,
    gusto: &sim_gusto::SimHandle,
    visma: &sim_visma::SimHandle,
    dir: &Path,
) -> Config {
    let mut cfg = Config::default();
    cfg.nats.url = nats.to_string();
    cfg.store.url = Secret::new(format!("sqlite://{}", dir.join("mlc.db").display()));
    cfg.store.encryption_key = Some(Secret::new(mlc_store::EncryptionKey::generate_base64()));
    cfg.gateway.listen = free_addr();
    cfg.gateway.ops_listen = free_addr();
    let oauth = gusto.sim().config().clone();
    cfg.gusto.base_url = gusto.base_url();
    cfg.gusto.client_id = oauth.client_id;
    cfg.gusto.client_secret = Some(Secret::new(oauth.client_secret));
    cfg.gusto.redirect_uri = "http://127.0.0.1/cb".into();
    cfg.visma.base_url = visma.base_url().to_string();
    cfg.visma.token_url = visma.token_url();
    cfg.visma.tenants.insert(TENANT.into(), sim_tenant(sim_visma::DEFAULT_TENANT));
    cfg.projector.metrics_listen = free_addr();
    cfg.writer.metrics_listen = free_addr();
    cfg.console.listen = free_addr();
    cfg.telemetry.log_filter = "info".into();
    cfg
}

/// A `visma.tenants` entry for the simulator's tenant `tenant_id`, on its default client.
pub fn sim_tenant(tenant_id: &str) -> VismaTenant {
    VismaTenant {
        client_id: sim_visma::DEFAULT_CLIENT_ID.into(),
        client_secret: Secret::new(sim_visma::DEFAULT_CLIENT_SECRET),
        tenant_id: tenant_id.into(),
        ipp_company_id: None,
    }
}

/// Writes `cfg` as the TOML file the processes will read, secrets included (the file is
/// the processes' only way to them), after checking it the way they will.
pub fn write_config(path: &Path, cfg: &Config) -> std::io::Result<()> {
    cfg.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    std::fs::write(path, cfg.to_toml_with_secrets())
}
