//! One delivery vocabulary for every consumer: a stage says what should happen to a
//! message ([`Disposition`]); only the consumer loop acts on it ([`Settle`]), with one
//! error budget that counts failures, never waits ([`Attempts`]), and one back-off
//! ([`Backoff`]).
//!
//! Why failures are counted here and not read from JetStream's delivery count: a
//! delivery count also counts the waits of a paused company, so a company paused for a
//! while would be dead-lettered on its first real error after resuming
//! (docs/ARCHITECTURE.md, decision 4).
//!
//! Why every answer to the server goes through [`answer`]: the ack wait is short (a
//! message taken by a process that died is redelivered within seconds), so while a message
//! is held, its feed's [`Keepalive`] sends progress (`+WPI`) on a timer; an answer takes
//! the message off that timer first, so no progress ever follows it (a progress after a
//! delayed NAK would turn the delay back into one ack wait).

use crate::dead_letter::{DeadLetters, Letter};
use async_nats::jetstream::{AckKind, Message};
use rand::Rng as _;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a consumer decided for one delivery. The only thing a stage returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (whatever the outcome): acknowledge.
    Ack,
    /// Not now, and not a failure (paused company, first connect, pacing): NAK after
    /// `delay`. Spends nothing of the error budget.
    Wait { delay: Duration, reason: &'static str },
    /// A failure that may pass (broker, store or API unavailable): spends one attempt of
    /// the budget, then NAK after `after` (a `Retry-After`) or the back-off; once the
    /// budget is spent, a dead letter.
    Retry { after: Option<Duration>, reason: &'static str, cause: String },
    /// Will never succeed as it is: to DEAD_LETTERS with `reason`, then TERM.
    Dead { cause: &'static str, reason: String },
}

impl Disposition {
    pub fn retry(reason: &'static str, cause: impl std::fmt::Display) -> Self {
        Disposition::Retry { after: None, reason, cause: cause.to_string() }
    }

    pub fn dead(cause: &'static str, reason: impl Into<String>) -> Self {
        Disposition::Dead { cause, reason: reason.into() }
    }
}

/// Failed attempts per stream sequence, kept in memory. A restart resets it, which only
/// grants a stubborn message another round of capped back-offs.
#[derive(Debug, Default)]
pub struct Attempts {
    failures: Mutex<HashMap<u64, u32>>,
}

/// Sequences remembered at most; past it the memory starts over (see [`Attempts`]).
const MAX_REMEMBERED: usize = 10_000;

impl Attempts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more failure of the message at `seq`; returns how many so far.
    pub fn fail(&self, seq: u64) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= MAX_REMEMBERED && !f.contains_key(&seq) {
            f.clear();
        }
        let n = f.entry(seq).or_insert(0);
        *n += 1;
        *n
    }

    /// Failures of the message at `seq` so far.
    pub fn count(&self, seq: u64) -> u32 {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).get(&seq).copied().unwrap_or(0)
    }

    /// The message at `seq` is settled for good: forget it.
    pub fn forget(&self, seq: u64) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
    }
}

/// Exponential back-off after failures, capped, with jitter; a server's `Retry-After`
/// is honoured up to `max_retry_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure; doubles per failure.
    pub base: Duration,
    pub max: Duration,
    /// The longest `Retry-After` honoured as given; longer ones are cut to this.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The schedule without jitter: `base` × 2^(attempt-1), capped at `max` (`attempt` is
    /// 1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The wait before the next try after the `attempt`-th failure: `retry_after` when the
    /// server gave one (clamped), else [`Backoff::delay`] less up to a quarter at random, so
    /// messages that failed together do not come back together.
    pub fn next(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_after);
        }
        let d = self.delay(attempt);
        let quarter = (d.as_millis() / 4) as u64;
        if quarter == 0 {
            return d;
        }
        d.saturating_sub(Duration::from_millis(rand::rng().random_range(0..=quarter)))
    }
}

/// What the consumer loop did with a delivery, for the caller's metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Acked,
    /// NAKed after `delay`; `attempt` is the failure count for a retry, `None` for a wait.
    Nacked {
        reason: &'static str,
        delay: Duration,
        attempt: Option<u32>,
    },
    /// Kept in DEAD_LETTERS and terminated.
    DeadLettered {
        cause: &'static str,
    },
    /// The dead letter could not be published: NAKed to try again later.
    DeadLetterFailed,
}

/// How long a message waits when its dead letter could not be published.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(5);

/// The one place a consumer acts on a [`Disposition`].
pub struct Settle {
    /// The stage named in dead letters (`projector`, `mapper`, `writer`).
    pub stage: &'static str,
    pub dead_letters: DeadLetters,
    pub attempts: Attempts,
    pub backoff: Backoff,
    /// Failures after which a retry becomes a dead letter.
    pub max_attempts: u32,
}

impl Settle {
    pub fn new(stage: &'static str, dead_letters: DeadLetters, backoff: Backoff, max_attempts: u32) -> Self {
        Self { stage, dead_letters, attempts: Attempts::new(), backoff, max_attempts }
    }

    /// Acts on `disposition` for `msg` (of `company`, `""` when unknown).
    pub async fn settle(&self, msg: &Message, company: &str, disposition: Disposition) -> Settled {
        match disposition {
            Disposition::Ack => {
                self.done(msg, false).await;
                Settled::Acked
            }
            Disposition::Wait { delay, reason } => {
                nak(msg, delay).await;
                Settled::Nacked { reason, delay, attempt: None }
            }
            Disposition::Retry { after, reason, cause } => match self.retry(msg, after, reason, &cause).await
            {
                Retried::Later(settled) => settled,
                Retried::Exhausted { attempts } => {
                    let reason = format!("gave up after {attempts} failed attempts: {cause}");
                    self.dead(msg, company, "retries_exhausted", reason).await
                }
            },
            Disposition::Dead { cause, reason } => self.dead(msg, company, cause, reason).await,
        }
    }

    /// Counts one failure of `msg`; NAKs it after the back-off (or `after`, a server's
    /// `Retry-After`) while the budget lasts, else says it is spent and leaves the message
    /// to the caller, which records why it gives up and ends with a dead letter. (What
    /// [`Settle::settle`] does with a [`Disposition::Retry`]; a stage that records outcomes
    /// of its own, as the writer does, calls it directly.)
    pub async fn retry(
        &self,
        msg: &Message,
        after: Option<Duration>,
        reason: &'static str,
        cause: &str,
    ) -> Retried {
        let attempt = self.attempts.fail(sequence(msg));
        if attempt >= self.max_attempts {
            return Retried::Exhausted { attempts: attempt };
        }
        let delay = self.backoff.next(attempt, after);
        tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %cause, "will be retried");
        nak(msg, delay).await;
        Retried::Later(Settled::Nacked { reason, delay, attempt: Some(attempt) })
    }

    /// The dead letter of `msg` for this stage: its id, payload and company, and as
    /// attempts its deliveries or its counted failures, whichever is more.
    pub fn letter(&self, msg: &Message, company: &str, reason: impl Into<String>) -> Letter {
        let mut letter = Letter::of(self.stage, msg, reason);
        letter.company = company.to_string();
        letter.attempts = letter.attempts.max(self.attempts.count(sequence(msg)));
        letter
    }

    /// `msg` is decided and recorded: its failures are forgotten and it is acknowledged, or
    /// terminated when it was kept as a dead letter.
    pub async fn done(&self, msg: &Message, dead_lettered: bool) {
        self.attempts.forget(sequence(msg));
        let ack = answer(msg, if dead_lettered { AckKind::Term } else { AckKind::Ack }).await;
        if let Err(e) = ack {
            tracing::debug!(error = %e, "cannot ack; the message comes back after its ack wait");
        }
    }

    async fn dead(&self, msg: &Message, company: &str, cause: &'static str, reason: String) -> Settled {
        let letter = self.letter(msg, company, reason);
        match self.dead_letters.send(&letter).await {
            Ok(_) => {
                tracing::warn!(stage = self.stage, cause, reason = %letter.reason, "dead-lettered");
                self.done(msg, true).await;
                Settled::DeadLettered { cause }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot dead-letter; redelivering later");
                nak(msg, DEAD_LETTER_RETRY).await;
                Settled::DeadLetterFailed
            }
        }
    }
}

/// What [`Settle::retry`] did with a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// NAKed for a later try ([`Settled::Nacked`]).
    Later(Settled),
    /// The budget is spent after `attempts` failures: the caller gives up.
    Exhausted { attempts: u32 },
}

fn sequence(msg: &Message) -> u64 {
    msg.info().map(|i| i.stream_sequence).unwrap_or(0)
}

/// NAK with a delay (the one way every consumer hands a message back for later).
pub async fn nak(msg: &Message, delay: Duration) {
    if let Err(e) = answer(msg, AckKind::Nak(Some(delay))).await {
        tracing::debug!(error = %e, "cannot NAK; the message comes back after its ack wait");
    }
}

// ------------------------------------------------------------------ progress while held

/// Ack (reply) subjects of deliveries this process holds and has not answered yet.
static UNANSWERED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Held by a keepalive while it sends progress and by [`answer`] while it takes its message
/// off [`UNANSWERED`]: both go out on the same connection, so a progress is either sent
/// before the answer or not at all.
static GATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A message held longer than this gets no more progress: a delivery some path forgot to
/// answer is then redelivered after one ack wait instead of being kept forever.
const MAX_HOLD: Duration = Duration::from_secs(600);

/// The one way to answer the server for a message taken from a [`crate::feed::Feed`]
/// (ack, NAK, TERM): stops its progress first, then answers.
pub async fn answer(msg: &Message, kind: AckKind) -> Result<(), async_nats::Error> {
    if let Some(reply) = msg.reply.as_ref() {
        let _gate = GATE.lock().await;
        UNANSWERED.lock().unwrap_or_else(|p| p.into_inner()).remove(reply.as_str());
    }
    msg.ack_with(kind).await
}

/// Sends progress for the held messages of one feed every `every` (a fraction of the ack
/// wait), so a message that is being worked (a Gusto or Visma call under back-off, a
/// worker queue) is not redelivered, while one taken by a process that died comes back
/// after one short ack wait. Dropping it stops the progress of its messages.
pub struct Keepalive {
    mine: Arc<Mutex<Vec<(Message, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Keepalive {
    /// For a consumer whose ack wait is `ack_wait`.
    pub fn start(ack_wait: Duration) -> Keepalive {
        let every = (ack_wait / 4).max(Duration::from_millis(100));
        let mine: Arc<Mutex<Vec<(Message, Instant)>>> = Arc::default();
        let task = tokio::spawn({
            let mine = mine.clone();
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    let due: Vec<Message> = {
                        let mut unanswered = UNANSWERED.lock().unwrap_or_else(|p| p.into_inner());
                        let mut mine = mine.lock().unwrap_or_else(|p| p.into_inner());
                        mine.retain(|(m, at)| {
                            let reply = m.reply.as_ref().map(|r| r.as_str()).unwrap_or_default();
                            let keep = unanswered.contains(reply) && at.elapsed() < MAX_HOLD;
                            if !keep && unanswered.remove(reply) {
                                tracing::warn!(subject = %m.subject, "held too long without an answer; no more progress");
                            }
                            keep
                        });
                        mine.iter().map(|(m, _)| m.clone()).collect()
                    };
                    // The gate is taken per message, not for the whole round: every answer
                    // of the process waits on it, and a round of a thousand held messages
                    // kept them all waiting (a backlog then held more, and the next round
                    // took longer: at 500 events/s the writer fell seconds behind).
                    for m in due {
                        let _gate = GATE.lock().await;
                        let reply = m.reply.as_ref().map(|r| r.as_str()).unwrap_or_default();
                        if !UNANSWERED.lock().unwrap_or_else(|p| p.into_inner()).contains(reply) {
                            continue;
                        }
                        if let Err(e) = m.ack_with(AckKind::Progress).await {
                            tracing::debug!(error = %e, "cannot send progress");
                        }
                    }
                }
            }
        });
        Keepalive { mine, task }
    }

    /// Starts sending progress for `msgs` (just taken from the server).
    pub fn hold(&self, msgs: &[Message]) {
        let now = Instant::now();
        let mut unanswered = UNANSWERED.lock().unwrap_or_else(|p| p.into_inner());
        let mut mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        for m in msgs {
            if let Some(reply) = m.reply.as_ref() {
                unanswered.insert(reply.to_string());
                mine.push((m.clone(), now));
            }
        }
    }

    /// Messages held and not answered yet (for tests and metrics).
    pub fn held(&self) -> usize {
        let unanswered = UNANSWERED.lock().unwrap_or_else(|p| p.into_inner());
        let mine = self.mine.lock().unwrap_or_else(|p| p.into_inner());
        mine.iter().filter(|(m, _)| m.reply.as_ref().is_some_and(|r| unanswered.contains(r.as_str()))).count()
    }
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.task.abort();
        let mut unanswered = UNANSWERED.lock().unwrap_or_else(|p| p.into_inner());
        for (m, _) in self.mine.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            if let Some(reply) = m.reply.as_ref() {
                unanswered.remove(reply.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_doubles_and_caps_and_jitter_only_shortens() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(3), Duration::from_secs(4));
        assert_eq!(b.delay(12), Duration::from_secs(60));
        for attempt in 1..20 {
            let d = b.next(attempt, None);
            assert!(d <= b.delay(attempt) && d >= b.delay(attempt) * 3 / 4, "{attempt}: {d:?}");
        }
        assert_eq!(b.next(1, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(b.next(1, Some(Duration::from_secs(86_400))), b.max_retry_after);
    }

    #[test]
    fn attempts_count_failures_per_sequence_and_forget_settled_ones() {
        let a = Attempts::new();
        assert_eq!(a.fail(7), 1);
        assert_eq!(a.fail(7), 2);
        assert_eq!(a.fail(8), 1);
        assert_eq!(a.count(7), 2);
        a.forget(7);
        assert_eq!(a.count(7), 0);
    }
}
