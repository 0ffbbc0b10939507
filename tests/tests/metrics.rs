//! Every service's `/metrics` after a small scenario through the three real services:
//! webhooks for three employees (one Gusto answer is a 429, the access tokens expired
//! so one refresh happens), plus a webhook for a company the connector does not serve
//! (dead-lettered by the projector). The series the dashboard and the alerts rely on are
//! present, with values that match what happened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mlc_e2e::{Stack, StackOptions};

/// One scrape: `(name, labels)` -> value.
struct Scrape {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim_matches('"').to_string()))
                .collect();
            samples.push((name.to_string(), labels, value));
        }
        Scrape { text, samples }
    }

    /// Samples of `name` whose labels include every pair of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = f64> + 'a {
        self.samples
            .iter()
            .filter(move |(n, l, _)| {
                n == name && labels.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| *v)
    }

    /// Sum of the matching samples; `None` when there is none.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let v: Vec<f64> = self.matching(name, labels).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// Whether `name` is declared (`# TYPE`), even without a sample yet.
    fn declares(&self, name: &str) -> bool {
        self.text.lines().any(|l| l.starts_with(&format!("# TYPE {name} ")))
    }
}

async fn scrape(url: &str) -> Scrape {
    let resp = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    Scrape::parse(resp.text().await.expect("metrics body"))
}

/// A named check over the three scrapes.
type Check = (&'static str, Box<dyn Fn(&Scrape, &Scrape, &Scrape) -> bool>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_exports_its_series_with_sensible_values() {
    let stack = Stack::start(StackOptions { employees: 4, ..Default::default() }).await;
    let company = stack.company_uuid().to_string();
    let sim = stack.gusto.sim();

    // The next employee read is answered 429 (no Retry-After: the client waits its
    // default), and every access token is expired: the first call is a 401 and a refresh.
    sim.add_fault(sim_gusto::FaultRule {
        path: "/v1/employees/*".into(),
        method: Some("GET".into()),
        error_rate: 1.0,
        error_status: Some(429),
        times: Some(1),
        ..Default::default()
    });
    sim.expire_tokens(None);
    let changed: Vec<String> = stack.company.employee_uuids[..3].to_vec();
    for (i, e) in changed.iter().enumerate() {
        sim.update_employee(
            e,
            sim_gusto::EmployeePatch { last_name: Some(format!("Metric{i}")), ..Default::default() },
        )
        .expect("update employee");
    }
    // A company the connector does not serve: its webhook is dead-lettered.
    let stranger = sim.seed_named_company("Not Connected AS", 1);
    sim.update_employee(
        &stranger.employee_uuids[0],
        sim_gusto::EmployeePatch { last_name: Some("Stranger".into()), ..Default::default() },
    )
    .expect("update the stranger");

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let names: Vec<String> =
            stack.visma_employees().iter().filter_map(|e| e.contact.last_name.clone()).collect();
        if (0..3).all(|i| names.contains(&format!("Metric{i}"))) {
            break;
        }
        assert!(Instant::now() < deadline, "the changes never reached Visma{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.settle().await;

    let c = company.clone();
    let checks: Vec<Check> = vec![
        // Gateway
        (
            "gateway: 4 webhooks accepted, none refused for a bad signature",
            // (`no_tokens_configured` refusals can happen: the gateway learns the token
            // `mlc subscribe` verified within half a second, and Gusto retries.)
            Box::new(|g, _, _| {
                g.sum("mlc_gateway_webhooks_accepted_total", &[("duplicate", "false")]).unwrap_or(0.0) >= 4.0
                    && g.sum("mlc_gateway_webhooks_refused_total", &[("reason", "wrong_signature")]).is_none()
                    && g.sum("mlc_gateway_webhooks_refused_total", &[("reason", "missing_signature")])
                        .is_none()
            }),
        ),
        (
            "gateway: publish latency histogram observed every accepted webhook",
            Box::new(|g, _, _| {
                g.sum("mlc_gateway_publish_seconds_count", &[]).unwrap_or(0.0) >= 4.0
                    && g.sum("mlc_gateway_publish_seconds_sum", &[]).is_some_and(|s| s > 0.0 && s < 10.0)
            }),
        ),
        ("gateway: nothing in flight", Box::new(|g, _, _| g.sum("mlc_gateway_in_flight", &[]) == Some(0.0))),
        // Projector
        (
            "projector: 3 events hydrated",
            Box::new(|_, p, _| {
                p.sum("mlc_projector_events_total", &[("result", "hydrated")]).unwrap_or(0.0) >= 3.0
            }),
        ),
        ("projector: consumer lag present and 0", {
            Box::new(|_, p, _| {
                p.matching("mlc_projector_consumer_pending", &[]).count() >= 2
                    && p.sum("mlc_projector_consumer_pending", &[]) == Some(0.0)
            })
        }),
        ("projector: Gusto calls and answers per company", {
            let c = c.clone();
            Box::new(move |_, p, _| {
                p.sum("mlc_projector_gusto_calls_total", &[("company", &c)]).unwrap_or(0.0) >= 3.0
                    && p.sum("mlc_projector_gusto_responses_total", &[("company", &c), ("status", "200")])
                        .unwrap_or(0.0)
                        >= 3.0
            })
        }),
        ("projector: the 429 is counted for the company", {
            let c = c.clone();
            Box::new(move |_, p, _| {
                p.sum("mlc_projector_gusto_rate_limited_total", &[("company", &c)]) == Some(1.0)
                    && p.sum("mlc_projector_gusto_responses_total", &[("company", &c), ("status", "429")])
                        == Some(1.0)
            })
        }),
        ("projector: the token refresh is counted for the company", {
            let c = c.clone();
            Box::new(move |_, p, _| {
                p.sum("mlc_projector_gusto_token_refreshes_total", &[("company", &c)]).unwrap_or(0.0) >= 1.0
            })
        }),
        ("projector: rate budget used + left = the limit (200), some used", {
            let c = c.clone();
            Box::new(move |_, p, _| {
                let used = p.sum("mlc_projector_rate_budget_used", &[("company", &c)]);
                let left = p.sum("mlc_projector_rate_budget_left", &[("company", &c)]);
                matches!((used, left), (Some(u), Some(l)) if u >= 3.0 && u + l == 200.0)
            })
        }),
        (
            "projector: the stranger's event is dead-lettered and DEAD_LETTERS holds it",
            Box::new(|_, p, _| {
                p.sum("mlc_projector_dead_letters_total", &[]) == Some(1.0)
                    && p.sum("mlc_projector_dead_letter_depth", &[]) == Some(1.0)
            }),
        ),
        // Writer
        (
            "writer: 3 commands applied, none failed",
            Box::new(|_, _, w| {
                w.sum("mlc_writer_commands_total", &[("outcome", "applied")]).unwrap_or(0.0) >= 3.0
                    && w.sum("mlc_writer_commands_total", &[("outcome", "failed")]).unwrap_or(0.0) == 0.0
            }),
        ),
        (
            "writer: Visma writes by method and status",
            Box::new(|_, _, w| {
                w.sum("mlc_writer_visma_calls_total", &[("method", "POST"), ("status", "201")]).unwrap_or(0.0)
                    >= 3.0
            }),
        ),
        (
            "writer: end-to-end latency observed per applied command, seconds not millis",
            Box::new(|_, _, w| {
                let n = w.sum("mlc_writer_e2e_latency_seconds_count", &[]).unwrap_or(0.0);
                let s = w.sum("mlc_writer_e2e_latency_seconds_sum", &[]).unwrap_or(0.0);
                // One webhook waited out the 429 (about 5 s); none took a minute.
                n >= 3.0 && s > 0.0 && s / n < 60.0
            }),
        ),
        (
            "writer: consumer lag present and 0",
            Box::new(|_, _, w| {
                w.matching("mlc_writer_consumer_pending", &[]).count() >= 1
                    && w.sum("mlc_writer_consumer_pending", &[]) == Some(0.0)
            }),
        ),
        (
            "writer: nothing waits for a first-connect review, no pacing",
            // (Families without a sample yet, e.g. dead letters and NAKs, are not printed.)
            Box::new(|_, _, w| {
                w.declares("mlc_writer_waiting_first_connect")
                    && w.sum("mlc_writer_waiting_first_connect", &[]) == Some(0.0)
                    && w.sum("mlc_writer_pacing_waits_total", &[]) == Some(0.0)
            }),
        ),
    ];

    // Gauges are refreshed every few seconds: poll until every check holds.
    let urls: Vec<String> = ["gateway", "projector", "writer"].iter().map(|s| stack.metrics_url(s)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (g, p, w) = (scrape(&urls[0]).await, scrape(&urls[1]).await, scrape(&urls[2]).await);
        let failing: Vec<&str> = checks.iter().filter(|(_, f)| !f(&g, &p, &w)).map(|(n, _)| *n).collect();
        if failing.is_empty() {
            // No secret in any series.
            for s in [&g, &p, &w] {
                assert!(!s.text.to_ascii_lowercase().contains("bearer"), "{}", s.text);
                assert!(
                    !s.text.contains(&stack.gusto.sim().config().client_secret),
                    "client secret in metrics"
                );
            }
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "failing: {failing:#?}\n--- gateway\n{}\n--- projector\n{}\n--- writer\n{}{}",
                g.text,
                p.text,
                w.text,
                stack.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
