//! `freshness` (issue 10): webhook sent -> Visma outcome latency at fixed event rates,
//! through the whole pipeline in one process (gateway on its own runtime; projector,
//! writer, both simulators and the load on the main runtime), against a raw JetStream
//! chain publish -> consume -> publish through three streams at the same rate.
//!
//! Each event is a real change in the Gusto simulator (a new last name, which Visma holds)
//! followed by the signed `employee.updated` webhook Gusto would send. Latency is from
//! just before the POST to the moment the APPLIED outcome for that employee is seen on
//! SYNC_OUTCOMES (a core subscription in this process); the writer's own
//! `SyncOutcome.latency_ms` (gateway receipt -> outcome) is shown next to it.

use crate::common::{self, Report, Row, Samples, Target};
use crate::pipeline::{Pipeline, PipelineOptions};
use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures::StreamExt;
use mlc_proto::v1::Outcome;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, clap::Args)]
pub struct FreshnessArgs {
    /// Event rates (events per second), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "50,500")]
    pub rates: Vec<u32>,
    /// Seconds of load per rate.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Employees per simulated company.
    #[arg(long, default_value_t = 30)]
    pub employees_per_company: usize,
    /// Small and quick: 3 s per rate.
    #[arg(long)]
    pub quick: bool,
}

pub fn run(args: &FreshnessArgs) -> anyhow::Result<Report> {
    let mut a = args.clone();
    if a.quick {
        a.seconds = a.seconds.min(3);
    }
    let rt = common::runtime("pipeline", 2)?;
    rt.block_on(run_async(a))
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
}

async fn run_async(a: FreshnessArgs) -> anyhow::Result<Report> {
    // Gusto allows 200 calls per rolling minute per company; keep each company under 150
    // over the whole run by spreading the events over enough companies.
    let total_events: u64 = a.rates.iter().map(|r| *r as u64 * a.seconds).sum();
    let companies = (total_events.div_ceil(150) as usize).max(1);
    let opts = PipelineOptions { visma_hourly_limit: 100_000_000, ..Default::default() };
    let mut p = Pipeline::start(&opts).await?;
    let mut employees: Vec<(String, String)> = Vec::new();
    for _ in 0..companies {
        let c = p.add_company(a.employees_per_company).await?;
        employees.extend(c.employee_uuids.iter().map(|e| (c.company_uuid.clone(), e.clone())));
    }
    p.start_services()?;
    let mut report = Report::new(format!(
        "freshness: rates {:?}/s for {} s each, {} companies x {} employees",
        a.rates, a.seconds, companies, a.employees_per_company
    ));
    report.note(format!(
        "Gusto limit 200/60 s per company (real); Visma simulator limit raised to {}/h so Visma's hourly budget does not pace the run",
        opts.visma_hourly_limit
    ));

    // Initial sync: every employee created in Visma, so the measured events are updates.
    let started = Instant::now();
    let mark = p.outcome_mark();
    let bodies = employees
        .iter()
        .map(|(c, e)| common::webhook_body(&uuid::Uuid::new_v4().to_string(), c, e, "employee.updated"))
        .collect();
    let failed = p.post_all(bodies, 32).await;
    anyhow::ensure!(failed == 0, "{failed} warm-up webhooks refused");
    p.wait_applied(mark, employees.len(), Duration::from_secs(300))
        .await
        .ok_or_else(|| anyhow::anyhow!("initial sync of {} employees did not finish", employees.len()))?;
    let warm = started.elapsed();
    report.note(format!(
        "initial sync of {} employees took {:.1} s (not judged)",
        employees.len(),
        warm.as_secs_f64()
    ));

    let chain = Chain::create(&p.js, &p.client).await?;
    let mut cursor = 0usize;
    let mut seq = 0u64;
    for &rate in &a.rates {
        let base = chain.run(rate, a.seconds).await?;
        let (ours, writer_ms, lost) = measure(&p, &employees, &mut cursor, &mut seq, rate, a.seconds).await;
        println!(
            "{rate}/s: chain p50 {:.2} p99 {:.2} ms | pipeline p50 {:.2} p99 {:.2} ms ({} events, {lost} without outcome)",
            base.p50(),
            base.p99(),
            ours.p50(),
            ours.p99(),
            ours.len()
        );
        let p99_target = if rate == 50 { Target::ValueBelow(100.0) } else { Target::Info };
        report.row(Row::new(
            format!("{rate}/s p50 ms (3-stream chain vs pipeline)"),
            Some(base.p50()),
            ours.p50(),
            Target::Info,
        ));
        report.row(Row::new(
            format!("{rate}/s p99 ms (3-stream chain vs pipeline)"),
            Some(base.p99()),
            ours.p99(),
            p99_target,
        ));
        report.row(Row::new(format!("{rate}/s max ms"), Some(base.max_ms()), ours.max_ms(), Target::Info));
        report.row(Row::new(format!("{rate}/s writer latency_ms p50"), None, writer_ms.p50(), Target::Info));
        report.row(Row::new(format!("{rate}/s writer latency_ms p99"), None, writer_ms.p99(), Target::Info));
        report.row(Row::new(
            format!("{rate}/s events without outcome"),
            None,
            lost as f64,
            Target::ValueAtMost(0.0),
        ));
    }
    report.note("writer latency_ms: SyncOutcome.latency_ms, gateway receipt -> outcome, whole ms");
    p.stop().await;
    Ok(report)
}

/// Open-loop load at `rate` for `seconds`; returns (latencies, writer latency_ms, lost).
async fn measure(
    p: &Pipeline,
    employees: &[(String, String)],
    cursor: &mut usize,
    seq: &mut u64,
    rate: u32,
    seconds: u64,
) -> (Samples, Samples, usize) {
    let n = rate as u64 * seconds;
    let mark = p.outcome_mark();
    let sends: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate as f64)).await;
        let (company, employee) = employees[*cursor % employees.len()].clone();
        *cursor += 1;
        *seq += 1;
        let last = format!("Fresh{}", *seq);
        let (sim, http, url, sends) = (p.gusto_sim.sim(), p.http.clone(), p.webhook_url(), sends.clone());
        tasks.push(tokio::spawn(async move {
            let _ = sim.update_employee(
                &employee,
                sim_gusto::EmployeePatch { last_name: Some(last), ..Default::default() },
            );
            let body = common::webhook_body(
                &uuid::Uuid::new_v4().to_string(),
                &company,
                &employee,
                "employee.updated",
            );
            let t0 = Instant::now();
            sends.lock().unwrap_or_else(|e| e.into_inner()).push((employee, t0));
            let _ = common::post_signed(&http, &url, body).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Let the tail drain.
    let sends = sends.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let matched = match_outcomes(p, mark, &sends);
        if matched.2 == 0 || Instant::now() > deadline {
            return matched;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn match_outcomes(p: &Pipeline, mark: usize, sends: &[(String, Instant)]) -> (Samples, Samples, usize) {
    let o = p.outcomes.lock().unwrap_or_else(|e| e.into_inner());
    let mut by_employee: HashMap<&str, Vec<(Instant, i64)>> = HashMap::new();
    for (at, o) in &o[mark.min(o.len())..] {
        if o.outcome() == Outcome::Applied {
            by_employee.entry(o.employee_uuid.as_str()).or_default().push((*at, o.latency_ms));
        }
    }
    let (mut lat, mut writer, mut lost) = (Samples::default(), Samples::default(), 0);
    for (e, t0) in sends {
        match by_employee.get(e.as_str()).and_then(|v| v.iter().find(|(at, _)| *at >= *t0)) {
            Some((at, ms)) => {
                lat.push(*at - *t0);
                writer.push(Duration::from_millis((*ms).max(0) as u64));
            }
            None => lost += 1,
        }
    }
    (lat, writer, lost)
}

/// The baseline: publish to stream 1; a consumer moves each message to stream 2 (publish,
/// await the ack, then ack), another to stream 3, a third consumes it there. The payload
/// carries its send time.
struct Chain {
    js: jetstream::Context,
    prefix: String,
    client: async_nats::Client,
}

impl Chain {
    async fn create(js: &jetstream::Context, client: &async_nats::Client) -> anyhow::Result<Chain> {
        let prefix = mlc_testkit::unique("chain");
        for i in 1..=3 {
            js.create_stream(stream::Config {
                name: format!("{}_S{i}", prefix.to_uppercase()),
                subjects: vec![format!("{prefix}.s{i}.>")],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await?;
        }
        Ok(Chain { js: js.clone(), prefix, client: client.clone() })
    }

    async fn run(&self, rate: u32, seconds: u64) -> anyhow::Result<Samples> {
        let run_id = mlc_testkit::unique("r");
        let n = rate as u64 * seconds;
        let samples = Arc::new(Mutex::new(Samples::default()));
        let mut stages = Vec::new();
        for i in 1..=3u32 {
            let s = self.js.get_stream(format!("{}_S{i}", self.prefix.to_uppercase())).await?;
            let consumer: jetstream::consumer::PullConsumer = s
                .create_consumer(pull::Config {
                    durable_name: Some(format!("{run_id}-{i}")),
                    filter_subject: format!("{}.s{i}.{run_id}", self.prefix),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            let js = self.js.clone();
            let next = format!("{}.s{}.{run_id}", self.prefix, i + 1);
            let samples = samples.clone();
            stages.push(tokio::spawn(async move {
                let mut seen = 0u64;
                while seen < n {
                    let m = match messages.next().await {
                        None => break,
                        Some(Err(_)) => continue,
                        Some(Ok(m)) => m,
                    };
                    seen += 1;
                    if i < 3 {
                        let mut h = async_nats::HeaderMap::new();
                        let id = m
                            .headers
                            .as_ref()
                            .and_then(|h| h.get("Nats-Msg-Id"))
                            .map(|v| v.to_string())
                            .unwrap_or_default();
                        h.insert("Nats-Msg-Id", id.as_str());
                        if let Ok(ack) = js.publish_with_headers(next.clone(), h, m.payload.clone()).await {
                            let _ = ack.await;
                        }
                    } else {
                        let sent = u64::from_be_bytes(m.payload[..8].try_into().unwrap_or([0; 8]));
                        samples
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Duration::from_micros(now_us().saturating_sub(sent)));
                    }
                    let _ = m.ack().await;
                }
            }));
        }
        let first = format!("{}.s1.{run_id}", self.prefix);
        let start = tokio::time::Instant::now();
        let mut pubs = Vec::new();
        for k in 0..n {
            tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate as f64)).await;
            let js = self.js.clone();
            let subject = first.clone();
            pubs.push(tokio::spawn(async move {
                let mut payload = vec![0u8; 480];
                payload[..8].copy_from_slice(&now_us().to_be_bytes());
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string().as_str());
                if let Ok(ack) = js.publish_with_headers(subject, h, Bytes::from(payload)).await {
                    let _ = ack.await;
                }
            }));
        }
        for p in pubs {
            let _ = p.await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while samples.lock().unwrap_or_else(|e| e.into_inner()).len() < n as usize
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for s in stages {
            s.abort();
        }
        let _ = self.client.flush().await;
        let out = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(out)
    }
}
