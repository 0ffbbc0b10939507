//! `X-Gusto-API-Version` against the simulator: sent on every call (OAuth included), the
//! echo and deprecation read back, and a refused version as one typed error, no retries.

use std::sync::Arc;
use std::time::Duration;

use gusto::*;
use sim_gusto::{SimConfig, SimHandle};

const REDIRECT: &str = "http://localhost/callback";

fn client(sim: &SimHandle, version: &str, store: Arc<MemoryTokenStore>) -> GustoClient {
    let mut cfg =
        ClientConfig::new(&sim.base_url(), "sim-client-id", Secret::new("sim-client-secret")).expect("cfg");
    cfg.api_version = version.to_owned();
    cfg.retry.base_backoff = Duration::from_millis(10);
    GustoClient::new(cfg, store).expect("client")
}

#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<ApiVersionStatus>>);

impl ClientObserver for Seen {
    fn api_version(&self, status: &ApiVersionStatus) {
        self.0.lock().unwrap().push(status.clone());
    }
}

#[tokio::test]
async fn every_call_carries_the_version_and_the_echo_is_read() {
    assert_eq!(DEFAULT_API_VERSION, "2026-06-15");
    let sim = sim_gusto::start(SimConfig::default()).await.expect("sim");
    let company = sim.seed_company(5);
    let store = Arc::new(MemoryTokenStore::new());
    let c = client(&sim, DEFAULT_API_VERSION, store.clone());
    let grant = GrantId("g".into());
    let code = sim.issue_code(&company.company_uuid, REDIRECT).expect("code");
    c.exchange_code(&grant, &code, REDIRECT).await.expect("exchange");
    assert_eq!(c.api_version_status().confirmed, None, "nothing answered through the API yet");
    c.token_info(&grant).await.expect("token info");
    store.expire_now(&grant);
    c.list_all_employees(&grant, &company.company_uuid, 100).await.expect("list (after a refresh)");
    c.list_webhook_subscriptions().await.expect("system token + subscriptions");
    assert_eq!(sim.unversioned_requests(), 0, "code exchange, refresh, system token and API calls");
    let st = c.api_version_status();
    assert_eq!(st.confirmed.as_deref(), Some("2026-06-15"));
    assert!(!st.deprecated);
    assert_eq!(st.check_line(), (true, "Gusto confirmed API version 2026-06-15".to_owned()));
}

#[tokio::test]
async fn a_deprecated_version_is_reported() {
    let sim = sim_gusto::start(SimConfig::default()).await.expect("sim");
    let company = sim.seed_company(2);
    let c = client(&sim, "2026-02-01", Arc::new(MemoryTokenStore::new()));
    let seen = Arc::new(Seen::default());
    c.set_observer(seen.clone());
    let grant = GrantId("g".into());
    let code = sim.issue_code(&company.company_uuid, REDIRECT).expect("code");
    c.exchange_code(&grant, &code, REDIRECT).await.expect("exchange");
    c.token_info(&grant).await.expect("served");
    let st = c.api_version_status();
    assert!(st.deprecated, "{st:?}");
    assert_eq!(st.sunset.as_deref(), Some("Tue, 15 Jun 2027 00:00:00 GMT"));
    let (ok, line) = st.check_line();
    assert!(ok && line.starts_with("WARNING") && line.contains("gusto.api_version"), "{line}");
    assert!(seen.0.lock().unwrap().iter().any(|s| s.deprecated), "the observer is told");
}

#[tokio::test]
async fn a_retired_version_is_one_typed_error_without_a_retry_storm() {
    let sim = sim_gusto::start(SimConfig::default()).await.expect("sim");
    let company = sim.seed_company(2);
    let store = Arc::new(MemoryTokenStore::new());
    // The grant is installed with a good client (as `mlc company add` did last month).
    let good = client(&sim, DEFAULT_API_VERSION, store.clone());
    let grant = GrantId("g".into());
    let code = sim.issue_code(&company.company_uuid, REDIRECT).expect("code");
    good.exchange_code(&grant, &code, REDIRECT).await.expect("exchange");
    let sim_grant = sim.grant_for_company(&company.company_uuid).expect("grant");
    let before = sim.request_count(&sim_grant);

    let old = client(&sim, "2025-06-15", store.clone());
    let seen = Arc::new(Seen::default());
    old.set_observer(seen.clone());
    for _ in 0..20 {
        match old.get_employee(&grant, &company.employee_uuids[0]).await {
            Err(e @ GustoError::InvalidApiVersion { .. }) => {
                assert!(!e.is_transient());
                let text = e.to_string();
                assert!(text.contains("2025-06-15") && text.contains("gusto.api_version"), "{text}");
            }
            other => panic!("expected InvalidApiVersion, got {other:?}"),
        }
    }
    // One request reached Gusto; the client held off the other 19 (no retry storm).
    assert_eq!(sim.version_refusals(), 1);
    assert_eq!(sim.request_count(&sim_grant), before, "a 406 is not counted against the window");
    let st = old.api_version_status();
    let (ok, line) = st.check_line();
    assert!(!ok && line.contains("2025-06-15") && line.contains("gusto.api_version"), "{line}");
    assert!(seen.0.lock().unwrap().iter().any(|s| s.refused.is_some()));

    // The token endpoint refuses it too, with the same typed error.
    let fresh = client(&sim, "2025-06-15", Arc::new(MemoryTokenStore::new()));
    let code = sim.issue_code(&company.company_uuid, REDIRECT).expect("code");
    match fresh.exchange_code(&GrantId("h".into()), &code, REDIRECT).await {
        Err(GustoError::InvalidApiVersion { version, .. }) => assert_eq!(version, "2025-06-15"),
        other => panic!("expected InvalidApiVersion, got {other:?}"),
    }
}

/// A refusal that passes (Gusto raised the app's minimum version, then lowered it back) is
/// noticed at the end of the first, short hold; while Gusto keeps refusing, each hold
/// doubles (up to `version_refusal_hold`), so the requests that reach Gusto thin out.
#[tokio::test]
async fn a_refusal_that_passes_is_noticed_after_a_short_hold() {
    let sim = sim_gusto::start(SimConfig::default()).await.expect("sim");
    let company = sim.seed_company(2);
    let mut cfg =
        ClientConfig::new(&sim.base_url(), "sim-client-id", Secret::new("sim-client-secret")).expect("cfg");
    cfg.retry.version_refusal_first_hold = Duration::from_millis(200);
    cfg.retry.version_refusal_hold = Duration::from_millis(700);
    let c = GustoClient::new(cfg, Arc::new(MemoryTokenStore::new())).expect("client");
    let grant = GrantId("g".into());
    let code = sim.issue_code(&company.company_uuid, REDIRECT).expect("code");
    c.exchange_code(&grant, &code, REDIRECT).await.expect("exchange");
    let employee = &company.employee_uuids[0];

    sim.set_min_api_version(Some("2026-06-16"));
    // Asked at once, then held 200 ms, 400 ms, then 700 ms (the cap) after each refusal.
    let mut holds = Vec::new();
    for _ in 0..4 {
        let before = sim.version_refusals();
        assert!(matches!(c.get_employee(&grant, employee).await, Err(GustoError::InvalidApiVersion { .. })));
        assert_eq!(sim.version_refusals(), before + 1, "this call asked Gusto");
        let left = c.version_refusal_left().expect("held after a refusal");
        assert!(
            matches!(c.get_employee(&grant, employee).await, Err(GustoError::InvalidApiVersion { .. })),
            "refused locally while held"
        );
        assert_eq!(sim.version_refusals(), before + 1, "held: Gusto not asked");
        holds.push(left);
        tokio::time::sleep(left + Duration::from_millis(20)).await;
    }
    let ms: Vec<u128> = holds.iter().map(|d| (d.as_millis() + 50) / 100 * 100).collect();
    assert_eq!(ms, vec![200, 400, 700, 700], "{holds:?}");

    // Gusto accepts the version again: the first call after the hold is served, and the
    // next refusal starts over with the short hold; requests in flight together when it
    // comes are one refusal, not four in a row.
    sim.set_min_api_version(None);
    c.get_employee(&grant, employee).await.expect("served after the hold");
    assert_eq!(c.version_refusal_left(), None);
    sim.set_min_api_version(Some("2026-06-16"));
    let before = sim.version_refusals();
    let together = futures::future::join_all((0..4).map(|_| c.get_employee(&grant, employee))).await;
    assert!(together.iter().all(Result::is_err));
    assert_eq!(sim.version_refusals(), before + 4, "sent together, before any refusal");
    let left = c.version_refusal_left().expect("held");
    assert!(left <= Duration::from_millis(200), "{left:?}");
}
