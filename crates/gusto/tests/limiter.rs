//! 1,000 requests through a compressed window (200 per 2 s): the simulator's own
//! record shows no window above the limit, no 429, and the run takes within 5% of the
//! theoretical minimum ((n / limit - 1) * window). Kept in its own test binary so that
//! other tests do not compete for the two CPU cores while it measures time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gusto::*;
use sim_gusto::SimConfig;

async fn setup(window: Duration) -> (sim_gusto::SimHandle, GustoClient, GrantId, Vec<String>, String) {
    let sim = sim_gusto::start(SimConfig { rate_window: window, ..Default::default() }).await.expect("sim");
    let company = sim.seed_company(5);
    let mut cfg =
        ClientConfig::new(&sim.base_url(), "sim-client-id", Secret::new("sim-client-secret")).expect("cfg");
    cfg.rate_limit = RateLimitConfig { limit: 200, window, safety_margin: Duration::from_millis(2) };
    let client = GustoClient::new(cfg, Arc::new(MemoryTokenStore::new())).expect("client");
    let grant = GrantId("g".into());
    let code = sim.issue_code(&company.company_uuid, "http://localhost/cb").expect("code");
    client.exchange_code(&grant, &code, "http://localhost/cb").await.expect("exchange");
    let sim_grant = sim.grant_for_company(&company.company_uuid).expect("grant");
    (sim, client, grant, company.employee_uuids, sim_grant)
}

#[tokio::test]
async fn limiter_keeps_1000_requests_under_the_compressed_window() {
    let window = Duration::from_secs(2);
    let (sim, client, grant, employees, sim_grant) = setup(window).await;
    let employee = employees[0].clone();
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..1000)
        .map(|_| {
            let (client, grant, id) = (client.clone(), grant.clone(), employee.clone());
            async move { client.get_employee(&grant, &id).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let elapsed = started.elapsed();
    assert!(results.iter().all(Result::is_ok));
    let max = sim.max_requests_in_any_window(&sim_grant);
    assert!(max <= 200, "{max} requests arrived within one window");
    assert_eq!(sim.request_count(&sim_grant), 1000);
    assert_eq!(sim.rate_limited_count(&sim_grant), 0, "the limiter, not the 429, keeps us under");
    let theoretical = window * (1000 / 200 - 1);
    // The schedule as Gusto sees it: first to last arrival. This is what the formula
    // models (the last batch may start at (n / limit - 1) * window).
    let arrivals = sim.arrivals(&sim_grant);
    let span = *arrivals.last().expect("arrivals") - arrivals[0];
    println!("arrival span {span:?}, wall clock {elapsed:?}, theoretical {theoretical:?}");
    assert!(span >= theoretical, "{span:?} < {theoretical:?}");
    // The 5% bound is a performance figure: it holds on a quiet machine
    // (`MLC_FULL=1`, as `ops/test.sh` runs the long suites), while CI runs this beside
    // every other test on two cores and only guards against a gross regression.
    let (span_bound, wall_bound) =
        if std::env::var("MLC_FULL").is_ok_and(|v| v == "1") { (1.05, 1.10) } else { (1.25, 1.35) };
    assert!(
        span.as_secs_f64() <= theoretical.as_secs_f64() * span_bound,
        "{span:?} too slow vs {theoretical:?}"
    );
    // Wall clock additionally includes serving the last batch of 200.
    assert!(
        elapsed.as_secs_f64() <= theoretical.as_secs_f64() * wall_bound,
        "{elapsed:?} too slow vs {theoretical:?}"
    );
}
