//! Pull consumers, batched for coalescing.

use crate::{BusError, ConsumerSpec, Topology};
use async_nats::jetstream::consumer::pull::Stream as PullStream;
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use std::time::Duration;

/// Waits for at least one message, then takes whatever else arrives within
/// `linger` (up to `max`). One message waits no longer than `linger` for company,
/// and a burst is handed over as one batch, so work on it can be coalesced.
/// Transient pull errors (missed heartbeats, reconnects) are logged and skipped;
/// `None` means the stream ended.
pub async fn next_batch(stream: &mut PullStream, max: usize, linger: Duration) -> Option<Vec<Message>> {
    let mut batch = Vec::new();
    loop {
        match stream.next().await? {
            Ok(m) => {
                batch.push(m);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "pull error; continuing");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // While the server says more is pending, keep taking it (a backlog or a burst
    // becomes one batch); otherwise wait at most `linger` for company.
    let mut deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        let pending = batch.last().and_then(|m| m.info().ok()).map_or(0, |i| i.pending);
        if pending > 0 {
            deadline = deadline.max(tokio::time::Instant::now() + linger.max(Duration::from_millis(50)));
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(m))) => batch.push(m),
            Ok(Some(Err(e))) => tracing::warn!(error = %e, "pull error; continuing"),
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch)
}

/// Opens the durable consumer `spec` of `topology` as a continuous message stream
/// (partition 0: the only one of an unpartitioned topology).
pub async fn open(
    js: &jetstream::Context,
    topology: &Topology,
    spec: &ConsumerSpec,
    batch: usize,
) -> Result<PullStream, BusError> {
    open_partition(js, topology, spec, 0, batch).await
}

/// Opens the durable consumer of `spec` for one partition.
pub async fn open_partition(
    js: &jetstream::Context,
    topology: &Topology,
    spec: &ConsumerSpec,
    partition: u32,
    batch: usize,
) -> Result<PullStream, BusError> {
    let name = topology.stream(spec.stream);
    let durable = topology.durable(spec, partition);
    let stream = js.get_stream(&name).await.map_err(|e| BusError::Topology(format!("{name}: {e}")))?;
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(&durable)
        .await
        .map_err(|e| BusError::Topology(format!("consumer {durable}: {e}")))?;
    consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| BusError::Topology(format!("consumer {durable}: {e}")))
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
