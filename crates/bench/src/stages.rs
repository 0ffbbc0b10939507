//! Where a phase's time went: when the stages' streams stored their messages (the server's
//! clock), relative to the phase's start, so a slow run says which stage queued.

use crate::pipeline::Pipeline;
use mlc_bus::StreamKind;

/// When one stream stored the phase's messages: first, median and last, in seconds
/// after the phase began, and how many.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub count: usize,
    pub first: f64,
    pub median: f64,
    pub last: f64,
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count == 0 {
            return write!(f, "none");
        }
        write!(f, "{} at {:.2} / {:.2} / {:.2} s", self.count, self.first, self.median, self.last)
    }
}

/// The stored times of `kind`'s messages from `since_ms` (Unix ms) on, as a [`Spread`]
/// relative to `since_ms`.
pub async fn spread(p: &Pipeline, kind: StreamKind, since_ms: i64) -> anyhow::Result<Spread> {
    let mut replay = mlc_bus::replay::Replay::open(
        &p.js,
        &p.topo.stream(kind),
        &p.topo.wildcard(kind),
        mlc_bus::replay::Start::Time(since_ms),
    )
    .await?;
    let mut at = Vec::new();
    while let Some(m) = replay.next().await {
        at.push((m?.stored_at_ms - since_ms) as f64 / 1e3);
    }
    let count = at.len();
    let pick = |i: usize| at.get(i).copied().unwrap_or(f64::NAN);
    Ok(Spread { count, first: pick(0), median: pick(count / 2), last: pick(count.saturating_sub(1)) })
}

/// One line: events accepted, snapshots, commands and outcomes of a phase (outcomes by
/// this process's clock, the others by the server's).
pub async fn timeline(p: &Pipeline, since_ms: i64, outcomes: Spread) -> anyhow::Result<String> {
    Ok(format!(
        "events {}; snapshots {}; commands {}; outcomes {}",
        spread(p, StreamKind::GustoEvents, since_ms).await?,
        spread(p, StreamKind::EmployeeState, since_ms).await?,
        spread(p, StreamKind::VismaCommands, since_ms).await?,
        outcomes,
    ))
}

/// When the APPLIED outcomes since `mark` were seen, relative to `start`.
pub fn outcome_spread(p: &Pipeline, mark: usize, start: std::time::Instant) -> Spread {
    let o = p.outcomes.lock().unwrap_or_else(|e| e.into_inner());
    let at: Vec<f64> = o[mark.min(o.len())..]
        .iter()
        .filter(|(_, o)| o.outcome() == mlc_proto::v1::Outcome::Applied)
        .map(|(t, _)| t.saturating_duration_since(start).as_secs_f64())
        .collect();
    let count = at.len();
    let pick = |i: usize| at.get(i).copied().unwrap_or(f64::NAN);
    Spread { count, first: pick(0), median: pick(count / 2), last: pick(count.saturating_sub(1)) }
}
