//! Bounded retries that honour Visma's `Retry-After`.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::VismaError;

/// How hard [`with_retry`] tries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// First back-off after a 5xx/transport failure; doubles each time.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not slept through: the error is returned so the
    /// caller can park the work (an hourly window can mean waiting most of an hour).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` after `err`, or `None` to give up.
    pub fn delay_for(&self, attempt: u32, err: &VismaError) -> Option<Duration> {
        if !err.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        if let Some(ra) = err.retry_after() {
            return (ra <= self.max_retry_after).then_some(ra);
        }
        let exp = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        // Jitter (50..100 %) so many writers do not retry in lock-step.
        let factor = rand::rng().random_range(0.5..=1.0);
        Some(capped.mul_f64(factor))
    }
}

/// Runs `op` until it succeeds, fails permanently, or the policy is exhausted. Permanent errors
/// (400, 404, 412, 401/403) return at once: repeating a failing request is what Visma's
/// "same failing request" throttle punishes.
pub async fn with_retry<T, F, Fut>(policy: &RetryPolicy, mut op: F) -> Result<T, VismaError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, VismaError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => match policy.delay_for(attempt, &e) {
                Some(delay) => {
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %e, "retrying Visma request");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
        }
    }
}
