//! Which Gusto API version the connector speaks, and what Gusto says about it.
//!
//! Every call (API, OAuth token, webhook subscription) carries `X-Gusto-API-Version`.
//! Gusto echoes the version it served in the same header; a version below the app's
//! minimum, in the future or malformed gets 406 `invalid_api_version`
//! ([`crate::GustoError::InvalidApiVersion`]). Where Gusto marks a version as deprecated
//! the answer carries deprecation headers: Gusto's page naming them could not be read
//! (reference gap), so the standard `Deprecation` (RFC 9745) and `Sunset` (RFC 8594)
//! headers are read; any `Deprecation` value other than `false` counts.

use reqwest::header::HeaderMap;
use std::sync::{Arc, Mutex};

/// The version sent when the configuration names none: the newest stable App
/// Integrations version on 2026-12-01 (2025-06-15 was retired after 2026-11-15).
pub const DEFAULT_API_VERSION: &str = "2026-06-15";

/// What the connector asked for and what Gusto's answers said about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApiVersionStatus {
    /// The `X-Gusto-API-Version` this client sends.
    pub requested: String,
    /// The version Gusto echoed on its last answer (`None` before the first answer, or
    /// when Gusto sent no echo).
    pub confirmed: Option<String>,
    /// Whether the last answer marked the version deprecated.
    pub deprecated: bool,
    /// The `Deprecation` header as sent (a date such as `@1780000000`, or `true`).
    pub deprecation: Option<String>,
    /// The `Sunset` header as sent (an HTTP date): when the version stops working.
    pub sunset: Option<String>,
    /// Gusto's message when it refused the version (406), until an answer succeeds.
    pub refused: Option<String>,
}

/// What to do about a refused version. Suggesting this release's default is only useful when
/// the refused one is something else; when the default itself is refused, Gusto has moved its
/// minimum past this release.
pub fn version_hint(refused: &str) -> String {
    if refused == DEFAULT_API_VERSION {
        format!(
            "{DEFAULT_API_VERSION} is this release's default, so Gusto has retired it since: set \
             `gusto.api_version` (MLC_GUSTO_API_VERSION) to a version Gusto supports (Gusto's message \
             names its minimum) and upgrade ml-connector"
        )
    } else {
        format!(
            "set `gusto.api_version` (MLC_GUSTO_API_VERSION) to a supported version, e.g. {DEFAULT_API_VERSION}"
        )
    }
}

impl ApiVersionStatus {
    /// One line for `mlc check`: `(ok, text)`.
    pub fn check_line(&self) -> (bool, String) {
        if let Some(msg) = &self.refused {
            return (
                false,
                format!(
                    "Gusto refuses API version {} (406 invalid_api_version: {msg}); {}",
                    self.requested,
                    version_hint(&self.requested)
                ),
            );
        }
        match (&self.confirmed, self.deprecated) {
            (None, _) => (true, format!("Gusto API version {} sent; Gusto echoed none", self.requested)),
            (Some(v), false) => (true, format!("Gusto confirmed API version {v}")),
            (Some(v), true) => (
                true,
                format!(
                    "WARNING: Gusto confirmed API version {v} but marks it deprecated{}; move \
                     `gusto.api_version` to a newer version before then",
                    self.sunset.as_deref().map(|s| format!(" (sunset {s})")).unwrap_or_default()
                ),
            ),
        }
    }
}

/// Shared between a client and its clones.
#[derive(Clone, Debug, Default)]
pub(crate) struct VersionTracker(Arc<Mutex<ApiVersionStatus>>);

impl VersionTracker {
    pub(crate) fn new(requested: &str) -> Self {
        Self(Arc::new(Mutex::new(ApiVersionStatus { requested: requested.to_owned(), ..Default::default() })))
    }

    pub(crate) fn get(&self) -> ApiVersionStatus {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records what an answer's headers say; returns the new status when it changed.
    pub(crate) fn observe(&self, headers: &HeaderMap, success: bool) -> Option<ApiVersionStatus> {
        let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_owned());
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let before = st.clone();
        if let Some(v) = text("x-gusto-api-version").filter(|v| !v.is_empty()) {
            st.confirmed = Some(v);
        }
        let deprecation = text("deprecation");
        st.deprecated = deprecation.as_deref().is_some_and(|d| !d.eq_ignore_ascii_case("false"));
        st.deprecation = deprecation;
        st.sunset = text("sunset");
        if success {
            st.refused = None;
        }
        (*st != before).then(|| st.clone())
    }

    pub(crate) fn refused(&self, message: &str) -> ApiVersionStatus {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.refused = Some(message.to_owned());
        st.clone()
    }
}

/// Gusto's message of a 406 body, in either shape it uses
/// (`{"errors":[{"category":"invalid_api_version","message":…}]}` or the older
/// `{"name":…,"message":…}`).
pub(crate) fn refusal_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let msg = v["errors"][0]["message"].as_str().or_else(|| v["message"].as_str());
    // Gusto's message quotes only the version strings; cap it anyway.
    msg.unwrap_or("Not Acceptable").chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_default_is_not_suggested_again() {
        let own = version_hint(DEFAULT_API_VERSION);
        assert!(!own.contains("e.g."), "{own}");
        assert!(own.contains("upgrade ml-connector"), "{own}");
        let other = version_hint("2025-06-15");
        assert!(other.ends_with(&format!("e.g. {DEFAULT_API_VERSION}")), "{other}");
    }

    #[test]
    fn reads_echo_and_deprecation() {
        let t = VersionTracker::new("2026-02-01");
        let mut h = HeaderMap::new();
        h.insert("x-gusto-api-version", "2026-02-01".parse().unwrap());
        h.insert("deprecation", "@1781481600".parse().unwrap());
        h.insert("sunset", "Tue, 15 Jun 2027 00:00:00 GMT".parse().unwrap());
        let st = t.observe(&h, true).expect("changed");
        assert!(st.deprecated);
        assert_eq!(st.confirmed.as_deref(), Some("2026-02-01"));
        assert!(t.observe(&h, true).is_none(), "same headers: no change");
        let (ok, line) = st.check_line();
        assert!(ok && line.contains("WARNING") && line.contains("2027"), "{line}");
        h.remove("deprecation");
        h.remove("sunset");
        let st = t.observe(&h, true).expect("changed");
        assert!(!st.deprecated);
        assert_eq!(st.check_line().1, "Gusto confirmed API version 2026-02-01");
    }

    #[test]
    fn refusal_messages_of_both_shapes() {
        let new = br#"{"errors":[{"error_key":"request","category":"invalid_api_version","message":"Invalid API Version `2025-06-15`."}]}"#;
        assert_eq!(refusal_message(new), "Invalid API Version `2025-06-15`.");
        let old = br#"{"name":"Invalid X-Gusto-API-Version Header","message":"too old"}"#;
        assert_eq!(refusal_message(old), "too old");
        assert_eq!(refusal_message(b"<html>"), "Not Acceptable");
    }
}
