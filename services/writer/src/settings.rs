//! How the writer runs: [`WriterSettings`] with production defaults, from the
//! configuration; [`RetryTuning`], the delays and bounds of the wait and retry paths; the
//! crash test hook.

use crate::{WriterError, WriterMetrics};
use mlc_bus::delivery::Backoff;
use mlc_bus::Topology;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use visma::VismaClient;

/// How the writer runs. [`WriterSettings::new`] has production defaults; tests shorten the
/// delays.
#[derive(Debug)]
pub struct WriterSettings {
    pub topology: Topology,
    /// Worker tasks; each employee is always handled by the same one.
    pub workers: usize,
    /// One client per Visma tenant, by the tenant's configuration name (`Company.visma_tenant`).
    pub tenants: HashMap<String, Arc<VismaClient>>,
    /// Shared with [`router`], so the binary can serve `/metrics` and `/readyz`.
    pub metrics: Arc<WriterMetrics>,
    /// How long to wait for JetStream to acknowledge an outcome or dead letter.
    pub publish_timeout: Duration,
    pub retry: RetryTuning,
    /// Test hook: stop as if the process died at this point.
    pub crash_point: Option<CrashPoint>,
    /// Share the partitions with other replicas through leases; `None` works them all.
    pub leases: Option<mlc_bus::lease::LeaseConfig>,
}

/// Delays and bounds of the retry and wait paths.
#[derive(Debug, Clone)]
pub struct RetryTuning {
    /// Failed attempts (retryable errors) after which a command is dead-lettered as FAILED.
    pub max_error_attempts: u32,
    /// First back-off after a retryable error without `Retry-After`; doubles per attempt.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured as given; longer ones are cut to this.
    pub max_retry_after: Duration,
    /// NAK delay while the company is paused.
    pub paused_delay: Duration,
    /// NAK delay while the company's first-connect review is not applied.
    pub first_connect_delay: Duration,
    /// PUTs per delivery when `If-Match` keeps failing (412); then the delivery is retried.
    pub max_puts: u32,
    /// Pacing waits up to this long in the worker; longer waits hand the command back.
    pub max_pacing_sleep: Duration,
    /// Pace when fewer than this share of the tenant's rate limit remains.
    pub pacing_floor: f64,
    /// How long what a GET or a create learnt of an employee number (404: absent; found or
    /// created: present) is remembered, so the same failing GET or create is not repeated
    /// (Visma punishes a third identical failing request within 5 minutes).
    pub absent_ttl: Duration,
}

impl Default for RetryTuning {
    fn default() -> Self {
        Self {
            max_error_attempts: 12,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
            paused_delay: Duration::from_secs(30),
            first_connect_delay: Duration::from_secs(10),
            max_puts: 2,
            max_pacing_sleep: Duration::from_secs(5),
            pacing_floor: 0.05,
            absent_ttl: Duration::from_secs(300),
        }
    }
}

impl RetryTuning {
    /// The back-off after retryable errors: `base_backoff` doubling up to `max_backoff`,
    /// `Retry-After` up to `max_retry_after`.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff { base: self.base_backoff, max: self.max_backoff, max_retry_after: self.max_retry_after }
    }
}

/// How soon a command interrupted by [`CrashPoint`] is redelivered.
pub(crate) const CRASH_REDELIVERY: Duration = Duration::from_secs(1);

/// Where a test may make the writer stop as if its process had died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after a successful Visma create or update, before the link is stored and before
    /// the ack. The message is NAKed with a 1 s delay, standing in for the ack-wait expiry a
    /// real crash would wait for; then [`run`] returns [`WriterError::SimulatedCrash`].
    AfterVismaWrite,
}

impl WriterSettings {
    /// Production defaults for `tenants`.
    pub fn new(topology: Topology, tenants: HashMap<String, Arc<VismaClient>>) -> Self {
        Self {
            topology,
            workers: 8,
            tenants,
            metrics: Arc::new(WriterMetrics::new()),
            publish_timeout: Duration::from_secs(5),
            retry: RetryTuning::default(),
            crash_point: None,
            leases: None,
        }
    }

    /// Settings from the connector's configuration (pure): `writer.workers`, the stream
    /// prefix, replicas, partitions and publish timeout of `nats`, and `tenants`, the Visma
    /// clients built from `visma.tenants` (`mlc_runtime::clients::visma_clients`).
    pub fn from_config(
        cfg: &mlc_config::Config,
        tenants: HashMap<String, Arc<VismaClient>>,
    ) -> Result<Self, WriterError> {
        let topology = Topology::new(&cfg.nats.stream_prefix, cfg.nats.replicas)?
            .with_partitions(cfg.nats.partitions)?;
        let mut settings = Self::new(topology, tenants);
        settings.workers = cfg.writer.workers.max(1);
        if cfg.nats.partitions > 1 {
            settings.leases = Some(mlc_bus::lease::LeaseConfig {
                role: "writer".into(),
                replica: cfg.replica_id(),
                ttl: Duration::from_millis(cfg.nats.lease_ttl_ms),
            });
        }
        settings.publish_timeout = Duration::from_millis(cfg.nats.publish_timeout_ms.max(1));
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryTuning::default();
        assert_eq!(r.backoff().delay(1), Duration::from_secs(1));
        assert_eq!(r.backoff().delay(3), Duration::from_secs(4));
        assert_eq!(r.backoff().delay(12), Duration::from_secs(60));
    }

    #[test]
    fn settings_from_config_take_the_workers_and_the_tenants() {
        let cfg = mlc_config::Config::default();
        let s = WriterSettings::from_config(&cfg, HashMap::new()).expect("settings");
        assert_eq!(s.workers, cfg.writer.workers.max(1));
        assert!(s.tenants.is_empty());
    }
}
