//! The parts a service test starts from: a private JetStream with the topology made
//! ([`Bus`]), and a connected company in the store ([`company`]).

use crate::NatsServer;
use mlc_bus::{Publisher, Topology};
use mlc_store::{Company, Store};
use std::path::Path;
use std::time::Duration;

/// A private nats-server with a unique [`Topology`] already created: what every service
/// test needs before it can publish or consume.
pub struct Bus {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub topo: Topology,
    pub publisher: Publisher,
}

impl Bus {
    /// Streams under a unique prefix starting with `prefix`, one replica.
    pub async fn start(prefix: &str) -> Bus {
        Self::start_with(prefix, |t| t).await
    }

    /// As [`Bus::start`], the topology changed first (`|t| t.with_ack_wait(..)`).
    pub async fn start_with(prefix: &str, edit: impl FnOnce(Topology) -> Topology) -> Bus {
        let server = NatsServer::start();
        let client = mlc_bus::connect(&server.config(), prefix).await.expect("connect to nats-server");
        let topo = edit(Topology::new(&crate::unique(prefix), 1).expect("topology"));
        let js = async_nats::jetstream::new(client.clone());
        mlc_bus::ensure_topology(&js, &topo).await.expect("create the topology");
        let publisher = Publisher::new(client.clone(), Duration::from_secs(5));
        Bus { server, client, js, topo, publisher }
    }
}

/// A company as `mlc company add --skip-review` leaves it: grant `grant-<uuid>`, the first
/// connect applied, not paused.
pub fn connected_company(company_uuid: &str, visma_tenant: &str, mapping: &Path) -> Company {
    Company {
        company_uuid: company_uuid.into(),
        name: format!("Company {company_uuid}"),
        grant_id: format!("grant-{company_uuid}"),
        visma_tenant: visma_tenant.into(),
        mapping_path: mapping.display().to_string(),
        paused: false,
        first_connect_applied: true,
        last_event_uuid: None,
        created_at: 0,
    }
}

/// Puts [`connected_company`] in `store` and returns it.
pub async fn company(store: &Store, company_uuid: &str, visma_tenant: &str, mapping: &Path) -> Company {
    let c = connected_company(company_uuid, visma_tenant, mapping);
    store.put_company(&c).await.expect("put the company");
    c
}
