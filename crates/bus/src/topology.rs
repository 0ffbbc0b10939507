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
        ack_wait: Duration::from_secs(60),
        max_deliver: -1,
        max_ack_pending: 2000,
    };
    /// The projector's mapping consumer on EMPLOYEE_STATE.
    pub const MAPPER: ConsumerSpec = ConsumerSpec {
        stream: StreamKind::EmployeeState,
        durable: "projector-map",
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        max_ack_pending: 2000,
    };
    /// The writer's consumer on VISMA_COMMANDS.
    pub const WRITER: ConsumerSpec = ConsumerSpec {
        stream: StreamKind::VismaCommands,
        durable: "writer",
        ack_wait: Duration::from_secs(60),
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
        Ok(Self { prefix: prefix.to_string(), replicas, ack_wait: None })
    }

    /// Overrides every consumer's ack wait: how long a message taken by a process that
    /// died stays invisible before redelivery. Tests shorten it.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = Some(ack_wait);
        self
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
        format!("{}.{}.{}", self.root(StreamKind::GustoEvents), token(company), token(entity_type))
    }

    pub fn employee_state(&self, company: &str, employee: &str) -> String {
        format!("{}.{}.{}", self.root(StreamKind::EmployeeState), token(company), token(employee))
    }

    pub fn visma_command(&self, company: &str, employee: &str) -> String {
        format!("{}.{}.{}", self.root(StreamKind::VismaCommands), token(company), token(employee))
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
            Some(c) => format!("{}.{}.>", self.root(kind), token(c)),
            None => self.wildcard(kind),
        }
    }

    /// Splits `<root>.<company>.<last>` back into its two tokens.
    pub fn split_subject<'a>(&self, kind: StreamKind, subject: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = subject.strip_prefix(&self.root(kind))?.strip_prefix('.')?;
        let (a, b) = rest.split_once('.')?;
        (!b.contains('.')).then_some((a, b))
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

    pub fn consumer_config(&self, spec: &ConsumerSpec) -> pull::Config {
        pull::Config {
            durable_name: Some(spec.durable.to_string()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.ack_wait.unwrap_or(spec.ack_wait),
            max_deliver: spec.max_deliver,
            max_ack_pending: spec.max_ack_pending,
            filter_subject: self.wildcard(spec.stream),
            num_replicas: 0,
            ..Default::default()
        }
    }
}

/// Subject tokens cannot hold `.`, `*`, `>` or white space; ids from Gusto never do, but a
/// crafted webhook could, and must not be able to address another subject.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c == '.' || c == '*' || c == '>' || c.is_whitespace() { '_' } else { c })
        .collect();
    if t.is_empty() {
        "_".to_string()
    } else {
        t
    }
}

/// Creates every stream and durable consumer, or updates them to the current
/// configuration. Safe to run from every service at start-up, concurrently: the server
/// treats a create with an identical configuration as a no-op, and a lost create race
/// is retried as an update.
pub async fn ensure_topology(js: &jetstream::Context, topo: &Topology) -> Result<(), BusError> {
    for kind in StreamKind::ALL {
        let config = topo.stream_config(kind);
        let mut last_err = None;
        for _ in 0..5 {
            match js.create_or_update_stream(config.clone()).await {
                Ok(_) => {
                    last_err = None;
                    break;
                }
                Err(e) => {
                    last_err = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Some(e) = last_err {
            return Err(BusError::Topology(format!("stream {}: {e}", config.name)));
        }
    }
    for spec in ConsumerSpec::ALL {
        let stream_name = topo.stream(spec.stream);
        let stream = js
            .get_stream(&stream_name)
            .await
            .map_err(|e| BusError::Topology(format!("stream {stream_name}: {e}")))?;
        let config = topo.consumer_config(&spec);
        let mut last_err = None;
        for _ in 0..5 {
            match stream.create_consumer(config.clone()).await {
                Ok(_) => {
                    last_err = None;
                    break;
                }
                Err(e) => {
                    last_err = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Some(e) = last_err {
            return Err(BusError::Topology(format!("consumer {}: {e}", spec.durable)));
        }
    }
    Ok(())
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
    fn bad_prefixes_are_refused() {
        assert!(Topology::new("a.b", 1).is_err());
        assert!(Topology::new("ok", 0).is_err());
        assert_eq!(StreamKind::parse("employee-state"), Some(StreamKind::EmployeeState));
    }
}
