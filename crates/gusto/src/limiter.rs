//! Rolling-window rate limiter, one independent window per grant.
//!
//! Gusto allows 200 requests per rolling 60 s per OAuth grant, counted when requests
//! *arrive*. We only know when we send and when the answer comes back, and the
//! arrival lies between the two. So each request holds a slot from the moment it is
//! sent until one window after its answer came back (a request still in flight holds
//! its slot indefinitely). Then the 201st request is sent at least one window after
//! the first one's answer, hence after its arrival: no window at Gusto can ever hold
//! more than `limit` of our requests, whatever the network jitter, at the price of one
//! round-trip per window. `safety_margin` adds spacing for anything else (clock
//! granularity); it can stay small.
//!
//! Server hints are honoured too: a 429's `Retry-After` blocks the grant, and an
//! `X-RateLimit-Remaining: 0` that our own log cannot explain (another process uses
//! the same grant) blocks it until `X-RateLimit-Reset`.
//!
//! Each grant has its own FIFO async mutex: a busy company never delays another, and
//! waiters of one grant are served in arrival order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Limits of the rolling window.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Requests allowed per window (Gusto: 200).
    pub limit: usize,
    /// Window length (Gusto: 60 s). Tests compress it together with the simulator's.
    pub window: Duration,
    /// Extra spacing added to the window.
    pub safety_margin: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { limit: 200, window: Duration::from_secs(60), safety_margin: Duration::from_millis(100) }
    }
}

#[derive(Debug)]
struct Slot {
    id: u64,
    sent: Instant,
    /// When the answer came back (or the attempt ended); `None` while in flight.
    done: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    slots: VecDeque<Slot>,
    next_id: u64,
    blocked_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct GrantState {
    /// Makes waiters of one grant FIFO.
    fifo: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
    /// Signalled when a slot's request completes.
    completed: Notify,
}

impl GrantState {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // The data stays consistent even if a holder panicked (single-field updates).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A sent request's hold on its grant's window. Drop it when the answer (or the
/// failure) has arrived: that instant anchors the slot's expiry.
#[derive(Debug)]
pub struct Permit {
    state: Arc<GrantState>,
    id: u64,
    /// When the request was allowed to go.
    pub sent_at: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut inner = self.state.inner();
        if let Some(slot) = inner.slots.iter_mut().find(|s| s.id == self.id) {
            slot.done = Some(now);
        }
        drop(inner);
        self.state.completed.notify_waiters();
    }
}

/// The limiter. Cheap to clone and share.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    grants: Arc<Mutex<HashMap<String, Arc<GrantState>>>>,
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self { cfg, grants: Arc::default() }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.cfg
    }

    fn state(&self, grant: &str) -> Arc<GrantState> {
        let mut map = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(grant.to_owned()).or_default().clone()
    }

    fn span(&self) -> Duration {
        self.cfg.window + self.cfg.safety_margin
    }

    /// Waits until a request for `grant` may be sent and takes a slot. Keep the
    /// permit alive until the answer arrives.
    pub async fn acquire(&self, grant: &str) -> Permit {
        let state = self.state(grant);
        let _fifo = state.fifo.lock().await;
        let span = self.span();
        loop {
            // Register for completions before inspecting, so none is missed.
            let completed = state.completed.notified();
            tokio::pin!(completed);
            completed.as_mut().enable();
            let wake_at = {
                let mut inner = state.inner();
                let now = Instant::now();
                match inner.blocked_until {
                    Some(until) if until > now => Some(until),
                    _ => {
                        inner.blocked_until = None;
                        let keep_from = now.checked_sub(span * 2);
                        inner.slots.retain(|s| match (s.done, keep_from) {
                            (Some(d), Some(from)) => d >= from,
                            _ => true,
                        });
                        let busy =
                            inner.slots.iter().filter(|s| s.done.is_none_or(|d| d + span > now)).count();
                        if busy < self.cfg.limit {
                            let id = inner.next_id;
                            inner.next_id += 1;
                            inner.slots.push_back(Slot { id, sent: now, done: None });
                            return Permit { state: state.clone(), id, sent_at: now };
                        }
                        // Earliest expiry among completed slots; none: wait for a completion.
                        inner
                            .slots
                            .iter()
                            .filter_map(|s| s.done)
                            .filter(|d| *d + span > now)
                            .min()
                            .map(|d| d + span)
                    }
                }
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = &mut completed => {}
                    }
                }
                None => completed.await,
            }
        }
    }

    /// Blocks the grant for `delay` (a 429's `Retry-After`).
    pub fn block_for(&self, grant: &str, delay: Duration) {
        let state = self.state(grant);
        let mut inner = state.inner();
        let until = Instant::now() + delay;
        inner.blocked_until = Some(inner.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// Feeds the server's view back: when Gusto says nothing remains but our own log
    /// for the request's window says otherwise, someone else shares the grant, so wait
    /// until the server's reset instant.
    pub fn observe(&self, grant: &str, sent_at: Instant, remaining: Option<u64>, reset_in: Option<Duration>) {
        let (Some(0), Some(reset_in)) = (remaining, reset_in) else {
            return;
        };
        let state = self.state(grant);
        let mut inner = state.inner();
        let from = sent_at.checked_sub(self.cfg.window);
        let ours = inner
            .slots
            .iter()
            .filter(|s| s.sent <= sent_at && from.is_none_or(|f| s.done.is_none_or(|d| d > f)))
            .count();
        // Slack of a few requests for in-flight reordering.
        if ours + 3 < self.cfg.limit {
            let until = Instant::now() + reset_in;
            inner.blocked_until = Some(inner.blocked_until.map_or(until, |b| b.max(until)));
            tracing::warn!(grant, ours, "rate window exhausted by another client of the same grant");
        }
    }

    /// Slots of `grant` currently held (in flight or within a window of completion).
    pub fn used(&self, grant: &str) -> usize {
        let state = self.state(grant);
        let inner = state.inner();
        let now = Instant::now();
        inner.slots.iter().filter(|s| s.done.is_none_or(|d| d + self.span() > now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_limit_in_any_window() {
        let lim = RateLimiter::new(RateLimitConfig {
            limit: 5,
            window: Duration::from_secs(60),
            safety_margin: Duration::ZERO,
        });
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..12 {
            // Dropping the permit at once: answer "arrived" at the send instant.
            sent.push(lim.acquire("g").await.sent_at);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().filter(|u| **u < *t + Duration::from_secs(60)).count();
            assert!(in_window <= 5);
        }
        assert_eq!(sent[11] - start, Duration::from_secs(120));
        // Another grant is not affected.
        let t = lim.acquire("other").await;
        assert_eq!(t.sent_at, Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_hold_their_slot() {
        let lim = RateLimiter::new(RateLimitConfig {
            limit: 1,
            window: Duration::from_secs(10),
            safety_margin: Duration::ZERO,
        });
        let first = lim.acquire("g").await;
        let start = Instant::now();
        let waiter = tokio::spawn({
            let lim = lim.clone();
            async move { lim.acquire("g").await.sent_at }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!waiter.is_finished(), "slot held while the request is in flight");
        drop(first); // the answer arrives at start + 30 s
        let sent = waiter.await.expect("join");
        assert_eq!(sent - start, Duration::from_secs(40));
    }
}
