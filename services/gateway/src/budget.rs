//! The body budget: a bound on the memory that unfinished request bodies hold, over all
//! connections together.
//!
//! An unsigned body has to be read whole before its signature can be checked, so each
//! stalled upload can pin up to `gateway.max_body_bytes` (finding 1, case C02: 3,000 slow
//! 64 KiB bodies held 177 MiB). Every request reserves its declared length (or the maximum,
//! when chunked) before a byte of body is read. When the budget is full, bodies that made no
//! progress for [`STALL`] are cut (answered 503, their connection closed), oldest progress
//! first, to make room; if that is not enough, the new request is shed with 503 and
//! `Retry-After`, which Gusto retries. A body Gusto sends arrives in a few packets, so it is
//! never the stalled one for long.
//!
//! Bodies of at most [`SMALL_BODY`] (a Gusto event is under 1 KiB) reserve from their own
//! lane, a sixteenth of the budget, before they try the shared one: a burst of large uploads
//! that are all still arriving cannot crowd out an event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a body may go without a new byte before it counts as stalled, and may be cut
/// when the budget is needed for another request.
pub const STALL: Duration = Duration::from_millis(250);

/// Bodies up to this size have a lane of their own.
pub const SMALL_BODY: usize = 4096;

pub struct BodyBudget {
    small: Arc<Pool>,
    large: Arc<Pool>,
}

struct Pool {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    used: usize,
    next: u64,
    readers: BTreeMap<u64, Reader>,
}

struct Reader {
    bytes: usize,
    progress: Instant,
    /// False once the body is read: the request is then being handled and is not cut.
    reading: bool,
    cut: Arc<Notify>,
}

/// Bytes of the budget held by one request until dropped.
pub struct Reservation {
    budget: Arc<Pool>,
    id: u64,
    cut: Arc<Notify>,
}

/// What a reservation attempt did.
pub struct Reserved {
    pub reservation: Option<Reservation>,
    /// Stalled bodies cut to make room.
    pub cut: usize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        let small = (limit / 16).max(SMALL_BODY);
        Arc::new(BodyBudget {
            small: Arc::new(Pool { limit: small, state: Mutex::new(State::default()) }),
            large: Arc::new(Pool { limit: limit.saturating_sub(small), state: Mutex::new(State::default()) }),
        })
    }

    /// Reserves `bytes`, cutting stalled bodies if needed; `None` when the budget is held
    /// by bodies that are all still arriving (or being handled).
    pub fn reserve(&self, bytes: usize) -> Reserved {
        let mut cut = 0;
        if bytes <= SMALL_BODY {
            let r = self.small.reserve(bytes);
            if r.reservation.is_some() {
                return r;
            }
            cut += r.cut;
        }
        let r = self.large.reserve(bytes);
        Reserved { reservation: r.reservation, cut: cut + r.cut }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.small.lock().used + self.large.lock().used
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reserve(self: &Arc<Self>, bytes: usize) -> Reserved {
        let mut st = self.lock();
        let mut cut = 0;
        if st.used + bytes > self.limit {
            let now = Instant::now();
            let mut stalled: Vec<(Instant, u64)> = st
                .readers
                .iter()
                .filter(|(_, r)| r.reading && now.duration_since(r.progress) >= STALL)
                .map(|(id, r)| (r.progress, *id))
                .collect();
            stalled.sort_unstable();
            for (_, id) in stalled {
                if st.used + bytes <= self.limit {
                    break;
                }
                if let Some(r) = st.readers.remove(&id) {
                    st.used -= r.bytes;
                    r.cut.notify_one();
                    cut += 1;
                }
            }
            if st.used + bytes > self.limit {
                return Reserved { reservation: None, cut };
            }
        }
        let id = st.next;
        st.next += 1;
        st.used += bytes;
        let notify = Arc::new(Notify::new());
        st.readers.insert(id, Reader { bytes, progress: Instant::now(), reading: true, cut: notify.clone() });
        Reserved { reservation: Some(Reservation { budget: self.clone(), id, cut: notify }), cut }
    }
}

impl Reservation {
    /// A chunk of the body arrived.
    pub fn progress(&self) {
        if let Some(r) = self.budget.lock().readers.get_mut(&self.id) {
            r.progress = Instant::now();
        }
    }

    /// The body is read: keep the bytes reserved while the request is handled, but do
    /// not cut it.
    pub fn done_reading(&self) {
        if let Some(r) = self.budget.lock().readers.get_mut(&self.id) {
            r.reading = false;
        }
    }

    /// Resolves when this body was cut to make room for another request.
    pub async fn cut(&self) {
        self.cut.notified().await
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut st = self.budget.lock();
        if let Some(r) = st.readers.remove(&self.id) {
            st.used -= r.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_budget_cuts_stalled_bodies_first_and_sheds_otherwise() {
        let b = BodyBudget::new(16 * 100 * 1024);
        let b = BodyBudget {
            small: b.small.clone(),
            large: Arc::new(Pool { limit: 100 * 1024, state: Mutex::default() }),
        };
        let k = 1024 * 60;
        let first = b.reserve(k).reservation.unwrap();
        // Not stalled yet: the newcomer is shed.
        let r = b.reserve(k);
        assert!(r.reservation.is_none());
        assert_eq!(r.cut, 0);
        // A small body has its own lane.
        let small = b.reserve(800).reservation.unwrap();
        std::thread::sleep(STALL + Duration::from_millis(20));
        let r = b.reserve(k);
        assert_eq!(r.cut, 1, "the stalled body made room");
        let second = r.reservation.unwrap();
        drop(first);
        drop(small);
        assert_eq!(b.used(), k, "a cut reservation is not released twice");
        second.done_reading();
        std::thread::sleep(STALL + Duration::from_millis(20));
        assert!(b.reserve(k).reservation.is_none(), "a body being handled is never cut");
        drop(second);
        assert_eq!(b.used(), 0);
    }
}
