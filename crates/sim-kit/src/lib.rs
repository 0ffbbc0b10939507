//! The pieces the two simulators share because they are the same idea in both:
//!
//! - [`FaultAction`]: what fault injection decided for one request, and [`FaultAction::answer`],
//!   the broken answer it stands for (the connection cut after the headers, a truncated JSON
//!   body, an error status). Each simulator keeps its own rules for *choosing* an action
//!   (`sim_gusto::FaultRule` by path glob, `sim_visma::FaultSpec` by route), since their
//!   admin APIs and their seeded draws are part of what tests rely on.
//! - [`Clock`]: the admin clock, real time plus an offset that only moves forward, read as
//!   an instant (token lifetimes, rate windows) or as wall time (timestamps in answers).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use std::time::Duration;

/// What fault injection decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// No fault: the request is served.
    Serve,
    /// Answer with this status instead of serving.
    Error(u16),
    /// Send the headers, then cut the connection mid-body.
    Drop,
    /// Answer 200 with a JSON body cut short.
    Malformed,
}

impl FaultAction {
    /// The answer of a fault that is not [`FaultAction::Serve`] (which gets `None`): a cut
    /// connection, or `truncated` (a JSON text cut short) as a 200, both as
    /// `content_type`. `Error` gets `None` too: each vendor words its errors its own way.
    pub fn answer(self, content_type: &'static str, truncated: &'static str) -> Option<Response> {
        let body = match self {
            FaultAction::Serve | FaultAction::Error(_) => return None,
            FaultAction::Drop => {
                // Headers go out, then the body stream fails: the client sees a broken connection.
                Body::from_stream(futures::stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "simulated connection drop",
                    ))
                }))
            }
            FaultAction::Malformed => Body::from(truncated),
        };
        let mut r = Response::new(body);
        *r.status_mut() = StatusCode::OK;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Some(r)
    }
}

/// The admin clock: real time plus an offset that `POST /admin/clock/advance` moves forward,
/// so tests expire tokens, roll rate windows and reach effective dates without waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: Duration,
}

impl Clock {
    pub fn advance(&mut self, by: Duration) {
        self.offset += by;
    }

    /// How far the clock is ahead of real time.
    pub fn offset(&self) -> Duration {
        self.offset
    }

    /// Now, for lifetimes and windows.
    pub fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.offset
    }

    /// Now, as wall time (for timestamps in answers).
    pub fn utc(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::from_std(self.offset).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_only_moves_forward_by_what_it_is_told() {
        let mut c = Clock::default();
        let before = c.utc();
        c.advance(Duration::from_secs(3600));
        c.advance(Duration::from_secs(60));
        assert_eq!(c.offset(), Duration::from_secs(3660));
        assert!(c.utc() - before >= chrono::Duration::seconds(3660));
    }

    #[tokio::test]
    async fn faults_answer_as_they_say() {
        assert!(FaultAction::Serve.answer("application/json", "{").is_none());
        assert!(FaultAction::Error(503).answer("application/json", "{").is_none());
        let r = FaultAction::Malformed.answer("application/json", "{\"a\": \"b").unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"{\"a\": \"b");
        let r = FaultAction::Drop.answer("application/json", "{").unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert!(axum::body::to_bytes(r.into_body(), 1024).await.is_err(), "the body must fail");
    }
}
