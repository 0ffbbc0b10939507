//! The partitions a replica works: all of them, or those its leases hold.

use crate::lease::{self, LeaseConfig, Leases};
use crate::{BusError, Topology};
use async_nats::jetstream;
use std::collections::BTreeSet;
use tokio::sync::watch;

/// The partitions this replica works now; changes as leases are taken and lost.
pub type Held = watch::Receiver<BTreeSet<u32>>;

/// The partitions of a running service, and the leases behind them (if shared).
pub struct Partitions {
    held: Held,
    leases: Option<Leases>,
}

impl Partitions {
    /// With `leases`, shares the partitions with the other replicas of the role; without,
    /// works them all.
    pub async fn start(
        js: &jetstream::Context,
        topo: &Topology,
        leases: Option<LeaseConfig>,
    ) -> Result<Partitions, BusError> {
        let leases = match leases {
            Some(cfg) => Some(lease::start(js, topo, cfg).await?),
            None => None,
        };
        let held = match &leases {
            Some(l) => l.watch(),
            None => lease::all_partitions(topo),
        };
        Ok(Partitions { held, leases })
    }

    pub fn held(&self) -> Held {
        self.held.clone()
    }

    /// The least slack measured at a lease renewal so far (see [`Leases::min_slack`]).
    pub fn min_slack(&self) -> Option<std::time::Duration> {
        self.leases.as_ref().and_then(|l| l.min_slack())
    }

    /// Gives the leases up, so another replica takes the partitions at once.
    pub async fn release(self) {
        if let Some(l) = self.leases {
            l.release().await;
        }
    }
}
