//! How the projector runs, from `projector.*` and `nats.*` of the configuration.

use crate::ProjectorError;
use mlc_bus::Topology;
use std::path::PathBuf;
use std::time::Duration;

/// How the projector runs; built from `projector.*` of the configuration.
#[derive(Debug, Clone)]
pub struct ProjectorSettings {
    pub topology: Topology,
    /// Gusto fetches in flight at once (across companies).
    pub fetch_concurrency: usize,
    /// Distinct employees of one company in a batch above which the list is read.
    pub burst_threshold: usize,
    /// Page size of the employee list (Gusto allows up to 100 here).
    pub list_page_size: u32,
    /// Where relative mapping paths of companies are resolved.
    pub mappings_dir: PathBuf,
    pub max_batch: usize,
    /// How long a batch of snapshots waits for more after the first.
    pub linger: Duration,
    /// How long a batch of events waits for more: also while one company's burst
    /// arrives (>= 5 of its events in the first 5 ms, then while >= 2 come per 10 ms,
    /// 200/s, at most 200 ms: every event of the batch waits with it, 500 ms put 500/s
    /// freshness at p99 825 ms, 200 ms at 383 ms), so a reorg's hundreds of webhooks are
    /// one batch and cost one list read. The step is also the wait after the burst's last
    /// webhook: with 25 ms steps `mlc-bench budget`'s timeline showed 10-70 ms there, with
    /// 10 ms none beyond its noise.
    pub hydrate_linger: mlc_bus::consume::Linger,
    /// Redelivery delay of events of a paused or de-authorised company.
    pub park_delay: Duration,
    /// Failed attempts (waits do not count) after which a message is dead-lettered.
    pub max_attempts: u32,
    /// How often `GET /v1/events` is read for events the webhooks missed; `None` turns
    /// catch-up off.
    pub catch_up_every: Option<Duration>,
    /// Share the partitions with other replicas through leases; `None` works them all.
    pub leases: Option<mlc_bus::lease::LeaseConfig>,
}

impl ProjectorSettings {
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            fetch_concurrency: 8,
            burst_threshold: 20,
            list_page_size: 100,
            mappings_dir: PathBuf::from("."),
            max_batch: 1000,
            linger: Duration::from_millis(5),
            hydrate_linger: mlc_bus::consume::Linger {
                first: Duration::from_millis(5),
                step: Duration::from_millis(10),
                burst: 5,
                keep: 2,
                most: Duration::from_millis(200),
            },
            park_delay: Duration::from_secs(30),
            max_attempts: 12,
            catch_up_every: None,
            leases: None,
        }
    }

    /// Settings from the connector's configuration (pure): the topology of `nats`,
    /// `projector.*`, and leases when the topology is partitioned.
    pub fn from_config(cfg: &mlc_config::Config) -> Result<Self, ProjectorError> {
        let topology = Topology::new(&cfg.nats.stream_prefix, cfg.nats.replicas)?
            .with_partitions(cfg.nats.partitions)?;
        let mut settings = Self::new(topology);
        settings.fetch_concurrency = cfg.projector.workers.clamp(1, 64);
        settings.burst_threshold = cfg.projector.burst_threshold;
        settings.mappings_dir = cfg.projector.mappings_dir.clone();
        if cfg.nats.partitions > 1 {
            settings.leases = Some(mlc_bus::lease::LeaseConfig {
                role: "projector".into(),
                replica: cfg.replica_id(),
                ttl: Duration::from_millis(cfg.nats.lease_ttl_ms),
            });
        }
        settings.catch_up_every =
            (cfg.projector.catch_up_secs > 0).then(|| Duration::from_secs(cfg.projector.catch_up_secs));
        Ok(settings)
    }
}
