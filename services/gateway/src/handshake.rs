//! The unsigned verification-token POST, bounded (finding 4).
//!
//! Gusto POSTs `{"verification_token": T}` once, unsigned, when a subscription is created.
//! Anyone can send that shape, so the gateway trusts nothing in it: it passes T on to the
//! `HANDSHAKES` stream (at most 100 kept, a day at most) for `mlc subscribe`, which tries the
//! candidates newest first with Gusto's verify call until Gusto accepts one. A token bucket
//! bounds how fast candidates enter the stream, so a flood costs a fixed amount and pushes
//! out only other candidates at that rate; `mlc subscribe` asks Gusto to send the token again
//! when its own was not let in.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest token accepted: Gusto's are UUIDs (36 bytes).
pub const MAX_TOKEN_BYTES: usize = 256;

/// A token bucket: `per_minute` passes per minute, bursts of as many.
pub struct RateBound {
    per_minute: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateBound {
    pub fn new(per_minute: u32) -> Self {
        let n = f64::from(per_minute.max(1));
        RateBound { per_minute: n, state: Mutex::new((n, Instant::now())) }
    }

    /// Takes a pass, or says how long until one is free.
    pub fn take(&self) -> Result<(), Duration> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(st.1).as_secs_f64() * self.per_minute / 60.0;
        st.0 = (st.0 + refill).min(self.per_minute);
        st.1 = now;
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - st.0) * 60.0 / self.per_minute))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_passes_a_burst_then_refills() {
        let b = RateBound::new(6_000); // 100 per second
        for _ in 0..6_000 {
            b.take().unwrap();
        }
        let wait = b.take().unwrap_err();
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.take().is_ok());
    }
}
