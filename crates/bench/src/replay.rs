//! `replay`: `EMPLOYEE_STATE` replay through the projector's mapping path
//! (`Projector::replay_state`, the code of `mlc replay employee-state`) against the raw
//! consume rate of the same stream (an ordered consumer decoding every snapshot).
//!
//! N snapshots are published straight to a private stream (N / per-employee employees).
//! A first replay emits the commands (the state the connector would be in); the measured
//! replay then runs with nothing changed and must emit no command: no Visma write.
//!
//! Both sides are judged by the stream they get through: snapshots in the stream per
//! second. The raw side reads every snapshot; `replay_state` from sequence 1 reads only
//! each employee's newest (the older ones are superseded by it), which is the point.

use crate::common::{self, Report, Row, Target, MAPPING, TENANT};
use futures::StreamExt;
use mlc_bus::{Publisher, StreamKind};
use mlc_projector::{MapOutcome, Projector, ProjectorSettings};
use mlc_proto::v1::{EmployeeContent, EmployeeSnapshot, EmploymentStatus, Location};
use prost::Message as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Snapshots in the stream.
    #[arg(long, default_value_t = 100_000)]
    pub snapshots: usize,
    /// Snapshots per employee (older ones are superseded).
    #[arg(long, default_value_t = 4)]
    pub per_employee: usize,
    /// Small and quick: 4,000 snapshots.
    #[arg(long)]
    pub quick: bool,
}

const COMPANY: &str = "7d2c8f10-0000-4000-8000-00000000c0de";
const DEPTS: [&str; 6] = ["Consulting", "Engineering", "Finance", "Sales", "People", "Operations"];
const CITIES: [&str; 5] = ["Oslo", "Stockholm", "Copenhagen", "Helsinki", "Reykjavik"];

fn snapshot(employee: usize, version: usize) -> EmployeeSnapshot {
    let content = EmployeeContent {
        first_name: format!("First{employee}"),
        last_name: format!("Last{employee}v{version}"),
        work_email: format!("e{employee}@bench.example"),
        job_title: "Consultant".into(),
        department_title: DEPTS[employee % DEPTS.len()].into(),
        work_location: Some(Location { city: CITIES[employee % CITIES.len()].into(), ..Default::default() }),
        status: EmploymentStatus::Active as i32,
        hire_date: "2024-01-15".into(),
        employee_code: format!("{employee:06x}"),
        ..Default::default()
    };
    EmployeeSnapshot {
        company_uuid: COMPANY.into(),
        employee_uuid: format!("00000000-0000-4000-8000-{employee:012}"),
        content_hash: mlc_domain::content_hash(&content),
        content: Some(content),
        fetched_at_ms: mlc_bus::now_ms(),
        ..Default::default()
    }
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<Report> {
    let mut a = args.clone();
    if a.quick {
        a.snapshots = a.snapshots.min(4_000);
    }
    let rt = common::runtime("replay", 2)?;
    rt.block_on(run_async(a))
}

async fn run_async(a: ReplayArgs) -> anyhow::Result<Report> {
    let per = a.per_employee.max(1);
    let employees = a.snapshots.div_ceil(per);
    let nats = mlc_testkit::NatsServer::start();
    let mut cfg = mlc_config::Config { nats: nats.config(), ..Default::default() };
    cfg.nats.stream_prefix = mlc_testkit::unique("r");
    // Replay never calls Gusto; the client points nowhere.
    cfg.gusto.base_url = "http://127.0.0.1:9".into();
    cfg.gusto.client_id = "unused".into();
    let client = mlc_bus::connect(&cfg.nats, "bench-replay").await?;
    let topo = mlc_runtime::topology(&cfg)?;
    let js = async_nats::jetstream::new(client.clone());
    mlc_bus::ensure_topology(&js, &topo).await?;
    let db = mlc_testkit::TestDb::sqlite();
    let store = Arc::new(db.store().await);
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("mapping.toml"), MAPPING)?;
    let mapping = dir.path().join("mapping.toml");
    store.put_company(&mlc_testkit::connected_company(COMPANY, TENANT, &mapping)).await?;
    let gusto = mlc_runtime::clients::gusto_client(&cfg, store.clone())?;
    let publisher = Publisher::new(client.clone(), Duration::from_secs(10));
    let projector =
        Projector::new(js.clone(), publisher, store.clone(), gusto, ProjectorSettings::from_config(&cfg)?);

    // Publish: version-major order, so every employee's newest snapshot comes last.
    let t = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut published = 0usize;
    'outer: for v in 0..per {
        for e in 0..employees {
            if published == a.snapshots {
                break 'outer;
            }
            let s = snapshot(e, v);
            let subject = topo.employee_state(COMPANY, &s.employee_uuid);
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", format!("{}:{v}", s.employee_uuid).as_str());
            acks.push(std::future::IntoFuture::into_future(
                js.publish_with_headers(subject, h, bytes::Bytes::from(s.encode_to_vec())).await?,
            ));
            published += 1;
            if acks.len() >= 512 {
                if let Some(r) = acks.next().await {
                    r?;
                }
            }
        }
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    let publish_secs = t.elapsed().as_secs_f64();
    let state_stream = topo.stream(StreamKind::EmployeeState);
    let commands_stream = topo.stream(StreamKind::VismaCommands);
    let count = |name: String| {
        let js = js.clone();
        async move {
            let mut s = js.get_stream(name).await?;
            anyhow::Ok(s.info().await?.state.messages)
        }
    };
    anyhow::ensure!(count(state_stream.clone()).await? as usize == a.snapshots, "not every snapshot stored");

    // Raw: the same stream through an ordered consumer, decoding every snapshot.
    let raw_secs = {
        let t = Instant::now();
        let mut r = mlc_bus::replay::Replay::open(
            &js,
            &state_stream,
            &topo.wildcard(StreamKind::EmployeeState),
            mlc_bus::replay::Start::Sequence(1),
        )
        .await?;
        let mut n = 0usize;
        while let Some(m) = r.next().await {
            let m = m?;
            let _s: EmployeeSnapshot = mlc_bus::decode(&m.subject, &m.payload)?;
            n += 1;
        }
        anyhow::ensure!(n == a.snapshots, "raw read {n} of {}", a.snapshots);
        t.elapsed().as_secs_f64()
    };

    // First replay: the commands the connector would hold (not judged).
    let t = Instant::now();
    let first = projector.replay_state(mlc_bus::replay::Start::Sequence(1), None, None, false).await?;
    let first_secs = t.elapsed().as_secs_f64();
    let first_kinds = kinds(&first);
    let commands_after_first = count(commands_stream.clone()).await?;

    // Measured: nothing changed.
    let t = Instant::now();
    let again = projector.replay_state(mlc_bus::replay::Start::Sequence(1), None, None, false).await?;
    let ours_secs = t.elapsed().as_secs_f64();
    let again_kinds = kinds(&again);
    let writes = count(commands_stream).await? - commands_after_first;

    let raw_rate = a.snapshots as f64 / raw_secs;
    // The stream's snapshots per second of replay (it reads each employee's newest only).
    let ours_rate = a.snapshots as f64 / ours_secs;
    let mut report = Report::new(format!(
        "replay: {} EMPLOYEE_STATE snapshots ({employees} employees x {per})",
        a.snapshots
    ));
    report.note(format!(
        "published in {publish_secs:.1} s; raw read {raw_secs:.2} s; measured replay {ours_secs:.2} s"
    ));
    report.note(format!("first replay (emits the commands, not judged): {first_secs:.1} s, {first_kinds:?}"));
    report.note(format!(
        "measured replay outcomes: {again_kinds:?} ({} snapshots mapped, {:.0}/s)",
        again.len(),
        again.len() as f64 / ours_secs
    ));
    report.row(Row::new(
        "stream snapshots/s (raw consume vs replay_state)",
        Some(raw_rate),
        ours_rate,
        Target::RatioAtLeast(0.5),
    ));
    report.row(Row::new(
        "commands emitted = Visma writes (nothing changed)",
        None,
        writes as f64,
        Target::ValueAtMost(0.0),
    ));
    Ok(report)
}

fn kinds(results: &[(u64, Result<MapOutcome, mlc_projector::Disposition>)]) -> HashMap<&'static str, usize> {
    let mut out = HashMap::new();
    for (_, r) in results {
        let k = match r {
            Ok(MapOutcome::Superseded) => "superseded",
            Ok(MapOutcome::Unchanged) => "unchanged",
            Ok(MapOutcome::Emitted(c)) if c.parked_reason.is_empty() => "emitted",
            Ok(MapOutcome::Emitted(_)) => "emitted_parked",
            Err(mlc_projector::Disposition::Dead { .. }) => "error_dead",
            Err(_) => "error_retry",
        };
        *out.entry(k).or_insert(0) += 1;
    }
    out
}
