//! What the CLI says about the Gusto API version and about parked work: the one line
//! `mlc check` prints, and the parked reason `mlc status` shows per company.

use gusto::GustoClient;
use mlc_store::{AuditKind, Store};

/// How `mlc check` should mark the version line.
#[derive(Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// The version line from what the client's answers said so far: `Ok` "Gusto confirmed
/// API version X", `Warn` when Gusto marks it deprecated, `Fail` when Gusto refused it
/// (406), naming `gusto.api_version`.
pub fn version_line(gusto: &GustoClient) -> (Level, String) {
    let st = gusto.api_version_status();
    let (ok, text) = st.check_line();
    let level = match (ok, st.deprecated) {
        (false, _) => Level::Fail,
        (true, true) => Level::Warn,
        (true, false) => Level::Ok,
    };
    (level, text.trim_start_matches("WARNING: ").to_string())
}

/// The reason the company's events are parked, when the newest parked row is newer
/// than the newest hydrated one (so work resumed after a fix clears it).
pub async fn parked_reason(store: &Store, company: &str) -> anyhow::Result<Option<String>> {
    let Some(parked) = store.last_audit(company, AuditKind::EventParked).await? else { return Ok(None) };
    let hydrated = store.last_audit(company, AuditKind::EventHydrated).await?;
    if hydrated.is_some_and(|h| h.position > parked.position) {
        return Ok(None);
    }
    Ok(parked.detail["reason"].as_str().map(str::to_string))
}
