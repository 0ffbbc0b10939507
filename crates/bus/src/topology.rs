//! Stream and consumer names, subjects, and their idempotent creation.
//!
//! | stream          | subjects                                 |
//! |-----------------|------------------------------------------|
//! | GUSTO_EVENTS    | `gusto.events.<company>.<entity_type>`   |
//! | EMPLOYEE_STATE  | `employee.state.<company>.<employee>`    |
//! | VISMA_COMMANDS  | `visma.commands.<company>.<employee>`    |
//! | SYNC_OUTCOMES   | `sync.outcomes.<company>.<employee>`     |
//! | DEAD_LETTERS    | `dlq.<stage>.<company>`                  |
//!
//! With a prefix `p`, stream names become `P_GUSTO_EVENTS` and subjects `p.gusto.events...`.
//!
//! Beside the five, two small ones for the webhook handshake (issue 17): the stream
//! `HANDSHAKES` (`gateway.handshakes`, the unsigned verification-token POSTs, bounded) and
//! the KV bucket `WEBHOOK_KEYS` (subscription uuid -> token `mlc subscribe` verified with
//! Gusto), which the gateway watches for its HMAC keys.

use crate::BusError;
use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
    stream::{Config, DiscardPolicy, RetentionPolicy, StorageType},
};
use std::time::Duration;

/// The five streams of the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    GustoEvents,
    EmployeeState,
    VismaCommands,
    SyncOutcomes,
    DeadLetters,
}

impl StreamKind {
    pub const ALL: [StreamKind; 5] = [
        StreamKind::GustoEvents,
        StreamKind::EmployeeState,
        StreamKind::VismaCommands,
        StreamKind::SyncOutcomes,
        StreamKind::DeadLetters,
    ];

    pub fn base_name(self) -> &'static str {
        match self {
            StreamKind::GustoEvents => "GUSTO_EVENTS",
            StreamKind::EmployeeState => "EMPLOYEE_STATE",
            StreamKind::VismaCommands => "VISMA_COMMANDS",
            StreamKind::SyncOutcomes => "SYNC_OUTCOMES",
            StreamKind::DeadLetters => "DEAD_LETTERS",
        }
    }

    fn subject_root(self) -> &'static str {
        match self {
            StreamKind::GustoEvents => "gusto.events",
            StreamKind::EmployeeState => "employee.state",
            StreamKind::VismaCommands => "visma.commands",
            StreamKind::SyncOutcomes => "sync.outcomes",
            StreamKind::DeadLetters => "dlq",
        }
    }

    /// Parses `GUSTO_EVENTS`, `gusto-events`, `employee_state`... as typed by an operator.
    pub fn parse(s: &str) -> Option<StreamKind> {
        let norm = s.trim().to_ascii_uppercase().replace('-', "_");
        StreamKind::ALL.into_iter().find(|k| k.base_name() == norm)
    }
}

/// How long a delivered message stays invisible before redelivery. Short, so work taken by
/// a process that died (kill -9, OOM, a lost node) resumes within seconds of a restart;
/// a message that is being worked gets progress acknowledgements meanwhile
/// ([`crate::delivery::Keepalive`]), however long its Gusto or Visma calls take.
pub const ACK_WAIT: Duration = Duration::from_secs(4);

/// A durable pull consumer that a service owns.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: StreamKind,
    pub durable: &'static str,
    pub ack_wait: Duration,
    pub max_deliver: i64,
    pub max_ack_pending: i64,
}

impl ConsumerSpec {
    /// The projector's hydration consumer on GUSTO_EVENTS.
    pub const HYDRATOR: ConsumerSpec = ConsumerSpec {
        stream: StreamKind::GustoEvents,
        durable: "projector-hydrate",
        ack_wait: ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: 2000,
    };
    /// The projector's mapping consumer on EMPLOYEE_STATE.
    pub const MAPPER: ConsumerSpec = ConsumerSpec {
        stream: StreamKind::EmployeeState,
        durable: "projector-map",
        ack_wait: ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: 2000,
    };
    /// The writer's consumer on VISMA_COMMANDS.
    pub const WRITER: ConsumerSpec = ConsumerSpec {
        stream: StreamKind::VismaCommands,
        durable: "writer",
        ack_wait: ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: 1000,
    };
    pub const ALL: [ConsumerSpec; 3] = [Self::HYDRATOR, Self::MAPPER, Self::WRITER];
}

/// Names every stream, subject and consumer under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    replicas: usize,
    ack_wait: Option<Duration>,
    partitions: u32,
}

impl Topology {
    /// `prefix` may be empty; otherwise it must be a single subject token of letters,
    /// digits, `-` or `_`.
    pub fn new(prefix: &str, replicas: usize) -> Result<Self, BusError> {
        if !prefix.is_empty() && !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(BusError::Topology(format!(
                "stream prefix {prefix:?} may only hold letters, digits, '-' and '_'"
            )));
        }
        if !(1..=5).contains(&replicas) {
            return Err(BusError::Topology(format!("stream replicas must be 1..=5, got {replicas}")));
        }
        Ok(Self { prefix: prefix.to_string(), replicas, ack_wait: None, partitions: 1 })
    }

    /// Overrides every consumer's ack wait: how long a message taken by a process that
    /// died stays invisible before redelivery. Tests shorten it.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = Some(ack_wait);
        self
    }

    /// Splits the work streams (events, state, commands) into `n` partitions by company:
    /// subjects gain a partition token after their root and each partition has its own
    /// durable consumer, so replicas can share the work while one company (and so each of
    /// its employees) is only ever handled by one replica. `n = 1` keeps the plain layout.
    pub fn with_partitions(mut self, n: u32) -> Result<Self, BusError> {
        if !(1..=1024).contains(&n) {
            return Err(BusError::Topology(format!("partitions must be 1..=1024, got {n}")));
        }
        self.partitions = n;
        Ok(self)
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition of a company: FNV-1a of its uuid, stable across processes and releases.
    pub fn partition_of(&self, company: &str) -> u32 {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in company.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        (h % u64::from(self.partitions)) as u32
    }

    fn partitioned(&self, kind: StreamKind) -> bool {
        self.partitions > 1
            && matches!(kind, StreamKind::GustoEvents | StreamKind::EmployeeState | StreamKind::VismaCommands)
    }

    /// `<root>` or `<root>.<partition of company>`.
    fn company_root(&self, kind: StreamKind, company: &str) -> String {
        if self.partitioned(kind) {
            format!("{}.{}", self.root(kind), self.partition_of(company))
        } else {
            self.root(kind)
        }
    }

    /// The partition a subject of a work stream belongs to (0 when not partitioned).
    pub fn partition_of_subject(&self, kind: StreamKind, subject: &str) -> Option<u32> {
        if !self.partitioned(kind) {
            return Some(0);
        }
        let rest = subject.strip_prefix(&self.root(kind))?.strip_prefix('.')?;
        rest.split('.').next()?.parse().ok()
    }

    /// What the consumer of `partition` reads.
    pub fn partition_filter(&self, kind: StreamKind, partition: u32) -> String {
        if self.partitioned(kind) {
            format!("{}.{}.>", self.root(kind), partition)
        } else {
            self.wildcard(kind)
        }
    }

    /// The durable name of `spec`'s consumer for `partition`.
    pub fn durable(&self, spec: &ConsumerSpec, partition: u32) -> String {
        if self.partitioned(spec.stream) {
            format!("{}-p{partition}", spec.durable)
        } else {
            spec.durable.to_string()
        }
    }

    /// Every durable consumer of `spec`: one per partition.
    pub fn durables(&self, spec: &ConsumerSpec) -> Vec<String> {
        let n = if self.partitioned(spec.stream) { self.partitions } else { 1 };
        (0..n).map(|p| self.durable(spec, p)).collect()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn stream(&self, kind: StreamKind) -> String {
        if self.prefix.is_empty() {
            kind.base_name().to_string()
        } else {
            format!("{}_{}", self.prefix.to_ascii_uppercase().replace('-', "_"), kind.base_name())
        }
    }

    fn root(&self, kind: StreamKind) -> String {
        if self.prefix.is_empty() {
            kind.subject_root().to_string()
        } else {
            format!("{}.{}", self.prefix, kind.subject_root())
        }
    }

    /// The wildcard that binds the stream and filters its consumers.
    pub fn wildcard(&self, kind: StreamKind) -> String {
        format!("{}.>", self.root(kind))
    }

    pub fn gusto_event(&self, company: &str, entity_type: &str) -> String {
        let c = token(company);
        format!("{}.{}.{}", self.company_root(StreamKind::GustoEvents, &c), c, token(entity_type))
    }

    pub fn employee_state(&self, company: &str, employee: &str) -> String {
        let c = token(company);
        format!("{}.{}.{}", self.company_root(StreamKind::EmployeeState, &c), c, token(employee))
    }

    pub fn visma_command(&self, company: &str, employee: &str) -> String {
        let c = token(company);
        format!("{}.{}.{}", self.company_root(StreamKind::VismaCommands, &c), c, token(employee))
    }

    pub fn sync_outcome(&self, company: &str, employee: &str) -> String {
        format!("{}.{}.{}", self.root(StreamKind::SyncOutcomes), token(company), token(employee))
    }

    pub fn dead_letter(&self, stage: &str, company: &str) -> String {
        format!("{}.{}.{}", self.root(StreamKind::DeadLetters), token(stage), token(company))
    }

    /// Subject filter for one company (or everything) in a per-employee stream.
    pub fn company_filter(&self, kind: StreamKind, company: Option<&str>) -> String {
        match company {
            Some(c) => {
                let c = token(c);
                format!("{}.{}.>", self.company_root(kind, &c), c)
            }
            None => self.wildcard(kind),
        }
    }

    /// Splits `<root>.<company>.<last>` back into its two tokens.
    pub fn split_subject<'a>(&self, kind: StreamKind, subject: &'a str) -> Option<(&'a str, &'a str)> {
        let mut rest = subject.strip_prefix(&self.root(kind))?.strip_prefix('.')?;
        if self.partitioned(kind) {
            rest = rest.split_once('.')?.1;
        }
        let (a, b) = rest.split_once('.')?;
        (!b.contains('.')).then_some((a, b))
    }

    fn prefixed_name(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_string()
        } else {
            format!("{}_{base}", self.prefix.to_ascii_uppercase().replace('-', "_"))
        }
    }

    /// The stream of unsigned verification-token POSTs: candidates for `mlc subscribe`.
    pub fn handshakes_stream(&self) -> String {
        self.prefixed_name("HANDSHAKES")
    }

    /// The one subject of [`Topology::handshakes_stream`].
    pub fn handshake_subject(&self) -> String {
        if self.prefix.is_empty() {
            "gateway.handshakes".to_string()
        } else {
            format!("{}.gateway.handshakes", self.prefix)
        }
    }

    /// The KV bucket of verified webhook tokens (key: subscription uuid).
    pub fn webhook_keys_bucket(&self) -> String {
        self.prefixed_name("WEBHOOK_KEYS")
    }

    /// At most 100 candidates, a day old at most, 1 KiB each: a flood of junk handshakes
    /// costs a fixed amount of disk and pushes out only other junk's place in line.
    pub fn handshakes_config(&self) -> Config {
        Config {
            name: self.handshakes_stream(),
            subjects: vec![self.handshake_subject()],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_messages: 100,
            max_age: Duration::from_secs(24 * 3600),
            max_message_size: 1024,
            duplicate_window: Duration::from_secs(120),
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// The stream behind the `WEBHOOK_KEYS` bucket, created by hand as the lease bucket's is
    /// (async-nats' `create_key_value` cannot parse nats-server 2.9's account answer).
    pub fn webhook_keys_config(&self) -> Config {
        let bucket = self.webhook_keys_bucket();
        Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: DiscardPolicy::New,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    pub fn stream_config(&self, kind: StreamKind) -> Config {
        let day = Duration::from_secs(24 * 3600);
        let max_age = match kind {
            // Gusto keeps events for 30 days; keep ours longer so replay outlives catch-up.
            StreamKind::GustoEvents => 90 * day,
            // The state stream is the replay source of truth: keep it.
            StreamKind::EmployeeState => Duration::ZERO,
            StreamKind::VismaCommands => 90 * day,
            StreamKind::SyncOutcomes => 30 * day,
            StreamKind::DeadLetters => Duration::ZERO,
        };
        Config {
            name: self.stream(kind),
            subjects: vec![self.wildcard(kind)],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age,
            duplicate_window: Duration::from_secs(120),
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }

    pub fn consumer_config(&self, spec: &ConsumerSpec, partition: u32) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable(spec, partition)),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.ack_wait.unwrap_or(spec.ack_wait),
            max_deliver: spec.max_deliver,
            max_ack_pending: spec.max_ack_pending,
            filter_subject: self.partition_filter(spec.stream, partition),
            num_replicas: 0,
            ..Default::default()
        }
    }
}

/// Subject tokens cannot hold `.`, `*`, `>` or white space; ids from Gusto never do, but a
/// crafted webhook could, and must not be able to address another subject.
/// Borrowed when already clean (every Gusto id): subjects are built per message.
fn token(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c == '.' || c == '*' || c == '>' || c.is_whitespace();
    if s.is_empty() {
        "_".into()
    } else if s.chars().any(bad) {
        s.chars().map(|c| if bad(c) { '_' } else { c }).collect::<String>().into()
    } else {
        s.into()
    }
}

/// What every service runs at start-up: creates the topology when any stream or durable
/// consumer is missing, and otherwise leaves it as it is. A service's NATS user may read
/// the topology (`$JS.API.STREAM.INFO`, `CONSUMER.INFO`) but not change it (a gateway that
/// could edit `VISMA_COMMANDS`' subjects could feed the writer): changes of configuration
/// are applied by the admin, whose `mlc` commands run [`apply_topology`].
pub async fn ensure_topology(js: &jetstream::Context, topo: &Topology) -> Result<(), BusError> {
    if topology_in_place(js, topo).await {
        return Ok(());
    }
    apply_topology(js, topo).await.map_err(|e| match e {
        BusError::Topology(m) => BusError::Topology(format!(
            "{m} (if this service's NATS user may not create streams, as in ops/nats/auth.conf, \
             let the admin create them first: any `mlc` command, e.g. `mlc status`)"
        )),
        e => e,
    })
}

/// Whether every stream and durable consumer exists (whatever its configuration).
async fn topology_in_place(js: &jetstream::Context, topo: &Topology) -> bool {
    missing_in_topology(js, topo).await.is_none()
}

/// The first stream or durable consumer of `topo` that does not exist, if any.
async fn missing_in_topology(js: &jetstream::Context, topo: &Topology) -> Option<String> {
    let names = StreamKind::ALL
        .into_iter()
        .map(|k| topo.stream(k))
        .chain([topo.handshakes_stream(), format!("KV_{}", topo.webhook_keys_bucket())]);
    for name in names {
        if js.get_stream(&name).await.is_err() {
            return Some(format!("stream {name}"));
        }
    }
    for spec in ConsumerSpec::ALL {
        let name = topo.stream(spec.stream);
        let Ok(stream) = js.get_stream(&name).await else {
            return Some(format!("stream {name}"));
        };
        for durable in topo.durables(&spec) {
            if stream.consumer_info(&durable).await.is_err() {
                return Some(format!("consumer {durable} of {name}"));
            }
        }
    }
    None
}

/// Checks that every stream and durable consumer of `topo` exists and creates nothing:
/// for read-only commands, which must not bring up an installation by looking at it (a
/// mistyped `nats.stream_prefix` would otherwise create a second, empty one).
pub async fn verify_topology(js: &jetstream::Context, topo: &Topology) -> Result<(), BusError> {
    match missing_in_topology(js, topo).await {
        None => Ok(()),
        Some(what) => Err(BusError::Topology(format!(
            "{what} does not exist under the stream prefix {:?} (nats.stream_prefix): is this the \
             installation you meant? The services create it when they start (`mlc run`)",
            topo.prefix()
        ))),
    }
}

/// Creates every stream and durable consumer, or updates them to the current
/// configuration. Safe to run concurrently: the server treats a create with an identical
/// configuration as a no-op, and a lost create race is retried as an update.
pub async fn apply_topology(js: &jetstream::Context, topo: &Topology) -> Result<(), BusError> {
    let streams = StreamKind::ALL
        .into_iter()
        .map(|k| topo.stream_config(k))
        .chain([topo.handshakes_config(), topo.webhook_keys_config()]);
    for config in streams {
        let c = &config;
        while_electing(move || js.create_or_update_stream(c.clone()))
            .await
            .map_err(|e| BusError::Topology(format!("stream {}: {e}", config.name)))?;
    }
    for spec in ConsumerSpec::ALL {
        let stream_name = topo.stream(spec.stream);
        let stream = js
            .get_stream(&stream_name)
            .await
            .map_err(|e| BusError::Topology(format!("stream {stream_name}: {e}")))?;
        let n = topo.durables(&spec).len() as u32;
        for partition in 0..n {
            let config = topo.consumer_config(&spec, partition);
            let (stream, config) = (&stream, &config);
            while_electing(move || stream.create_consumer(config.clone())).await.map_err(|e| {
                BusError::Topology(format!("consumer {}: {e}", topo.durable(&spec, partition)))
            })?;
        }
    }
    Ok(())
}

/// Runs `op` until it succeeds, ten times at most, 200 ms more apart each time: concurrent
/// start-ups and a cluster electing a stream leader time out now and then. The last error
/// when it never did.
pub(crate) async fn while_electing<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    mut op: impl FnMut() -> F,
) -> Result<T, String> {
    let mut last = String::new();
    for attempt in 1..=10u64 {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => last = e.to_string(),
        }
        if attempt < 10 {
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("t1", 1).unwrap();
        assert_eq!(t.stream(StreamKind::GustoEvents), "T1_GUSTO_EVENTS");
        assert_eq!(t.gusto_event("c1", "Employee"), "t1.gusto.events.c1.Employee");
        assert_eq!(t.wildcard(StreamKind::EmployeeState), "t1.employee.state.>");
        let plain = Topology::new("", 1).unwrap();
        assert_eq!(plain.stream(StreamKind::DeadLetters), "DEAD_LETTERS");
        assert_eq!(plain.dead_letter("writer", "c"), "dlq.writer.c");
    }

    #[test]
    fn hostile_ids_cannot_escape_their_token() {
        let t = Topology::new("", 1).unwrap();
        assert_eq!(t.gusto_event("a.b", "*>"), "gusto.events.a_b.__");
        assert_eq!(t.split_subject(StreamKind::EmployeeState, "employee.state.c1.e1"), Some(("c1", "e1")));
        assert_eq!(t.split_subject(StreamKind::EmployeeState, "other.state.c1.e1"), None);
    }

    #[test]
    fn partitions_put_a_company_in_one_place() {
        let t = Topology::new("t", 1).unwrap().with_partitions(8).unwrap();
        let p = t.partition_of("c1");
        assert!(p < 8);
        assert_eq!(t.gusto_event("c1", "Employee"), format!("t.gusto.events.{p}.c1.Employee"));
        assert_eq!(t.employee_state("c1", "e1"), format!("t.employee.state.{p}.c1.e1"));
        assert_eq!(
            t.split_subject(StreamKind::EmployeeState, &t.employee_state("c1", "e1")),
            Some(("c1", "e1"))
        );
        assert_eq!(
            t.company_filter(StreamKind::VismaCommands, Some("c1")),
            format!("t.visma.commands.{p}.c1.>")
        );
        assert_eq!(t.partition_filter(StreamKind::GustoEvents, 3), "t.gusto.events.3.>");
        assert_eq!(t.durable(&ConsumerSpec::WRITER, 3), "writer-p3");
        assert_eq!(t.durables(&ConsumerSpec::WRITER).len(), 8);
        // Outcomes and dead letters are not partitioned: nobody consumes them in parallel.
        assert_eq!(t.sync_outcome("c1", "e1"), "t.sync.outcomes.c1.e1");
        // Spread: 100 companies over 8 partitions leave none empty.
        let used: std::collections::BTreeSet<u32> =
            (0..100).map(|i| t.partition_of(&format!("company-{i}"))).collect();
        assert_eq!(used.len(), 8);
        let plain = Topology::new("t", 1).unwrap();
        assert_eq!(plain.durable(&ConsumerSpec::WRITER, 0), "writer");
        assert_eq!(plain.gusto_event("c1", "Employee"), "t.gusto.events.c1.Employee");
    }

    #[test]
    fn bad_prefixes_are_refused() {
        assert!(Topology::new("a.b", 1).is_err());
        assert!(Topology::new("ok", 0).is_err());
        assert_eq!(StreamKind::parse("employee-state"), Some(StreamKind::EmployeeState));
    }
}
