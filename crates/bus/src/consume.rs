//! Pull consumers, batched for coalescing.
//!
//! Messages are pulled only when the caller asks for a batch, never prefetched: a message
//! the server has delivered is in the caller's hands at once, where a
//! [`crate::delivery::Keepalive`] keeps it from being redelivered while it is worked. A
//! prefetch buffer would hold delivered messages whose (short) ack wait runs out unseen.

use crate::{BusError, ConsumerSpec, Topology};
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use std::time::Duration;

/// How long one waiting pull request lives at the server before it is renewed.
const PULL_WAIT: Duration = Duration::from_secs(2);

/// How long past its expiry a waiting pull is given up on, when the server never said it
/// expired: a restarted nats-server forgets the requests it held, and async-nats waits 5 s
/// past the expiry, so a consumer sat idle for up to 10 s after every restart (8.9 s from
/// the restart to the first message, measured) while its messages waited.
const PULL_SLACK: Duration = Duration::from_millis(500);

/// How long a batch waits for more messages after its first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linger {
    /// After the first message, when nothing else is pending.
    pub first: Duration,
    /// A burst begins when what came in `first` holds at least `burst` messages of one
    /// company; it is waited for one more `step` as long as the last step brought at
    /// least `keep` of one company, up to `most` in all: a reorg's webhooks, spread over a
    /// few hundred milliseconds, become one batch (one list read serves it), while a
    /// steady stream over many companies is not held back however fast it is. The step
    /// is also how long the batch waits after the burst's last message, so it is short;
    /// `keep` per `step` is the rate that counts as "still arriving".
    pub step: Duration,
    pub burst: usize,
    pub keep: usize,
    pub most: Duration,
}

impl Linger {
    /// Waits `first` after the first message and never for a burst.
    pub const fn fixed(first: Duration) -> Linger {
        Linger { first, step: Duration::ZERO, burst: usize::MAX, keep: usize::MAX, most: Duration::ZERO }
    }
}

/// How a batch's messages are told apart by company: its stream's subjects.
#[derive(Clone, Copy)]
pub struct Subjects<'a> {
    pub topology: &'a Topology,
    pub kind: crate::StreamKind,
}

impl Subjects<'_> {
    /// The most messages of one company among `msgs`.
    fn most_of_one_company(&self, msgs: &[Message]) -> usize {
        let mut per: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for m in msgs {
            let company = self.topology.split_subject(self.kind, &m.subject).map_or("", |(c, _)| c);
            *per.entry(company).or_default() += 1;
        }
        per.into_values().max().unwrap_or(0)
    }
}

/// Waits for at least one message, then as [`Linger`] says, then takes whatever else is
/// there (up to `max`). A burst or a backlog is handed over as one batch, so work on it
/// can be coalesced. Transient pull errors (reconnects, the ack-pending limit) are logged
/// and the pull is tried again.
pub async fn next_batch(
    consumer: &PullConsumer,
    max: usize,
    linger: Linger,
    subjects: Subjects<'_>,
) -> Vec<Message> {
    let max = max.max(1);
    let mut batch = loop {
        // One message at a time while waiting, so a pull request that expires or is
        // abandoned never has a message delivered into it that nobody reads.
        match consumer.batch().max_messages(1).expires(PULL_WAIT).messages().await {
            Ok(mut pull) => {
                let mut got = Vec::with_capacity(max);
                let give_up = tokio::time::Instant::now() + PULL_WAIT + PULL_SLACK;
                while let Ok(Some(m)) = tokio::time::timeout_at(give_up, pull.next()).await {
                    match m {
                        Ok(m) => got.push(m),
                        Err(e) => {
                            tracing::warn!(error = %e, "pull error; continuing");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                if !got.is_empty() {
                    break got;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pull request failed; continuing");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    if batch.len() >= max {
        return batch;
    }
    let pending = batch.last().and_then(|m| m.info().ok()).map_or(0, |i| i.pending);
    if pending == 0 && !linger.first.is_zero() {
        tokio::time::sleep(linger.first).await;
    }
    let from = batch.len();
    take_waiting(consumer, &mut batch, max).await;
    if subjects.most_of_one_company(&batch[from..]) < linger.burst || linger.step.is_zero() {
        return batch;
    }
    let mut lingered = Duration::ZERO;
    while batch.len() < max && lingered + linger.step <= linger.most {
        tokio::time::sleep(linger.step).await;
        lingered += linger.step;
        let from = batch.len();
        take_waiting(consumer, &mut batch, max).await;
        if subjects.most_of_one_company(&batch[from..]) < linger.keep {
            break;
        }
    }
    batch
}

/// Adds what is there now to `batch`, up to `max`, without waiting (the server answers at
/// once, with fewer or none).
async fn take_waiting(consumer: &PullConsumer, batch: &mut Vec<Message>, max: usize) {
    if batch.len() >= max {
        return;
    }
    let rest = async {
        let mut pull = consumer.fetch().max_messages(max - batch.len()).messages().await?;
        while let Some(m) = pull.next().await {
            batch.push(m?);
        }
        Ok::<_, async_nats::Error>(())
    };
    match tokio::time::timeout(PULL_WAIT, rest).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "fetch ended early"),
        Err(_) => tracing::warn!("fetch unanswered for {} s", PULL_WAIT.as_secs()),
    }
}

/// The durable consumer of `spec` for one partition.
pub async fn open_partition(
    js: &jetstream::Context,
    topology: &Topology,
    spec: &ConsumerSpec,
    partition: u32,
) -> Result<PullConsumer, BusError> {
    let name = topology.stream(spec.stream);
    let durable = topology.durable(spec, partition);
    let stream = js.get_stream(&name).await.map_err(|e| BusError::Topology(format!("{name}: {e}")))?;
    stream.get_consumer(&durable).await.map_err(|e| BusError::Topology(format!("consumer {durable}: {e}")))
}

/// Messages not yet delivered plus those delivered and not acknowledged, per durable
/// consumer of `spec` (one per partition): the lag the services publish as a gauge.
pub async fn pending(
    js: &jetstream::Context,
    topo: &Topology,
    spec: &ConsumerSpec,
) -> Result<Vec<(String, u64)>, BusError> {
    let err = |e: String| BusError::Topology(e);
    let stream = js.get_stream(topo.stream(spec.stream)).await.map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for durable in topo.durables(spec) {
        let mut c = stream
            .get_consumer::<jetstream::consumer::pull::Config>(&durable)
            .await
            .map_err(|e| err(format!("consumer {durable}: {e}")))?;
        let info = c.info().await.map_err(|e| err(format!("consumer {durable}: {e}")))?;
        out.push((durable, info.num_pending + info.num_ack_pending as u64));
    }
    Ok(out)
}

/// [`pending`] over every durable consumer of the services: zero means the pipeline is
/// idle.
pub async fn backlog(js: &jetstream::Context, topo: &Topology) -> Result<u64, BusError> {
    let mut n = 0;
    for spec in ConsumerSpec::ALL {
        n += pending(js, topo, &spec).await?.into_iter().map(|(_, p)| p).sum::<u64>();
    }
    Ok(n)
}
