//! Rolling-window rate limiter, one independent window per grant.
//!
//! Gusto allows 200 requests per rolling 60 s per OAuth grant. We keep a sliding log
//! of our own send instants per grant and never start a request that would make the
//! log hold more than `limit` entries within `window + safety_margin`. The margin
//! absorbs the jitter between our send instant and Gusto's arrival instant; it costs
//! well under 2% of throughput with the defaults.
//!
//! Server hints are honoured too: a 429's `Retry-After` blocks the grant, and an
//! `X-RateLimit-Remaining: 0` that our own log cannot explain (another process uses
//! the same grant) blocks it until `X-RateLimit-Reset`.
//!
//! Each grant has its own FIFO async mutex: a busy company never delays another, and
//! waiters of one grant are served in arrival order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Limits of the rolling window.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Requests allowed per window (Gusto: 200).
    pub limit: usize,
    /// Window length (Gusto: 60 s). Tests compress it together with the simulator's.
    pub window: Duration,
    /// Extra spacing added to the window to absorb network/scheduling jitter.
    pub safety_margin: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            limit: 200,
            window: Duration::from_secs(60),
            safety_margin: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Default)]
struct GrantWindow {
    /// Send instants, oldest first; kept for two windows so that server answers about
    /// slightly older requests can still be compared with our own count.
    sends: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// The limiter. Cheap to clone and share.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    grants: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<GrantWindow>>>>>,
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self {
            cfg,
            grants: Arc::default(),
        }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.cfg
    }

    fn slot(&self, grant: &str) -> Arc<tokio::sync::Mutex<GrantWindow>> {
        // A poisoned map only means another thread panicked mid-insert; the map is
        // still consistent (insert is atomic from our point of view).
        let mut map = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(grant.to_owned()).or_default().clone()
    }

    fn span(&self) -> Duration {
        self.cfg.window + self.cfg.safety_margin
    }

    /// Waits until a request for `grant` may be sent, records it and returns the send
    /// instant (pass it to [`RateLimiter::observe`] with the answer's headers).
    pub async fn acquire(&self, grant: &str) -> Instant {
        let slot = self.slot(grant);
        // Holding the grant's mutex while sleeping is deliberate: it makes waiters FIFO.
        let mut w = slot.lock().await;
        loop {
            let now = Instant::now();
            if let Some(until) = w.blocked_until {
                if until > now {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
                w.blocked_until = None;
            }
            let keep_from = now.checked_sub(self.span() * 2);
            while let (Some(front), Some(from)) = (w.sends.front(), keep_from) {
                if *front < from {
                    w.sends.pop_front();
                } else {
                    break;
                }
            }
            let in_window = count_since(&w.sends, now.checked_sub(self.span()));
            if in_window < self.cfg.limit {
                w.sends.push_back(now);
                return now;
            }
            // The request `limit` places back from the newest must leave the window.
            let idx = w.sends.len() - self.cfg.limit;
            let free_at = w.sends[idx] + self.span();
            tokio::time::sleep_until(free_at).await;
        }
    }

    /// Blocks the grant for `delay` (a 429's `Retry-After`).
    pub async fn block_for(&self, grant: &str, delay: Duration) {
        let slot = self.slot(grant);
        let mut w = slot.lock().await;
        let until = Instant::now() + delay;
        w.blocked_until = Some(w.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// Feeds the server's view back: when Gusto says nothing remains but our own log
    /// for the request's window says otherwise, someone else shares the grant, so wait
    /// until the server's reset instant.
    pub fn observe(
        &self,
        grant: &str,
        sent_at: Instant,
        remaining: Option<u64>,
        reset_in: Option<Duration>,
    ) {
        let (Some(0), Some(reset_in)) = (remaining, reset_in) else {
            return;
        };
        let slot = self.slot(grant);
        let Ok(mut w) = slot.try_lock() else {
            // Someone is waiting on the window already; they will see the next answer.
            return;
        };
        let ours = w
            .sends
            .iter()
            .filter(|t| {
                **t <= sent_at
                    && sent_at
                        .checked_sub(self.cfg.window)
                        .is_none_or(|from| **t > from)
            })
            .count();
        // Slack of a few requests for in-flight reordering.
        if ours + 3 < self.cfg.limit {
            let until = Instant::now() + reset_in;
            w.blocked_until = Some(w.blocked_until.map_or(until, |b| b.max(until)));
            tracing::warn!(
                grant,
                ours,
                "rate window exhausted by another client of the same grant"
            );
        }
    }

    /// Requests sent for `grant` within the current window (for `mlc status`).
    pub async fn used(&self, grant: &str) -> usize {
        let slot = self.slot(grant);
        let w = slot.lock().await;
        count_since(&w.sends, Instant::now().checked_sub(self.cfg.window))
    }
}

fn count_since(sends: &VecDeque<Instant>, from: Option<Instant>) -> usize {
    match from {
        None => sends.len(),
        Some(from) => sends.iter().rev().take_while(|t| **t > from).count(),
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
            sent.push(lim.acquire("g").await);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_secs(60))
                .count();
            assert!(in_window <= 5);
        }
        assert_eq!(sent[11] - start, Duration::from_secs(120));
        // Another grant is not affected.
        let t = lim.acquire("other").await;
        assert_eq!(t, Instant::now());
    }
}
