//! Who is told about the client's answers and refreshes (metrics), and where the client
//! and its token manager keep that observer. Depends only on [`crate::version`].

use std::sync::Arc;

use crate::version::ApiVersionStatus;

/// Told about every answer from Gusto and every token refresh, for metrics. Receives
/// grant ids and statuses only: never tokens, bodies or URLs with query strings.
pub trait ClientObserver: Send + Sync {
    /// One HTTP answer to a request made for `grant` (`"system"` for the system token);
    /// `status` is 0 when no answer came (transport failure, cut body).
    fn response(&self, _grant: &str, _status: u16) {}
    /// This process refreshed (rotated) the access token of `grant`.
    fn token_refreshed(&self, _grant: &str) {}
    /// What Gusto says about the API version changed (echo, deprecation, refusal).
    fn api_version(&self, _status: &ApiVersionStatus) {}
}

/// Where the [`ClientObserver`] of a client and its token manager lives; settable after
/// construction (the client is usually shared by then).
#[derive(Clone, Default)]
pub(crate) struct ObserverSlot(Arc<std::sync::RwLock<Option<Arc<dyn ClientObserver>>>>);

impl ObserverSlot {
    pub(crate) fn notify(&self, f: impl FnOnce(&dyn ClientObserver)) {
        if let Some(o) = self.0.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            f(o.as_ref());
        }
    }

    pub(crate) fn set(&self, observer: Arc<dyn ClientObserver>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }
}
