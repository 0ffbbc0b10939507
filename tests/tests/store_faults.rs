//! Faults of the store (issue 22): the connector's database goes away or stops taking
//! writes while webhooks keep coming, and the pipeline must come out of it whole.
//!
//! - **PostgreSQL stopped and restarted under load.** The fleet installation on a private
//!   PostgreSQL server ([`mlc_testkit::PgServer`]: `initdb` into a temp dir, a free port,
//!   tethered to this process). During the workload `pg_ctl stop -m immediate` takes it
//!   away for some seconds, then it starts again (crash recovery).
//! - **The SQLite store's disk full for a moment.** The SQLite file on a small tmpfs of its
//!   own; the tmpfs is filled to the last byte for some seconds, then freed. A read-only
//!   remount is tried too: Linux refuses it (`EBUSY`) while a process holds a file of the
//!   filesystem open for writing, as SQLite does, so a running store cannot be made
//!   read-only from outside; the test prints what the kernel said.
//!
//! What must hold: the services ride the outage out (no process exits), `/readyz` of the
//! projector and the writer says false while the store does not take writes and true again
//! after, the work is NAKed and retried, nothing is acked that was not recorded; then the
//! pipeline converges: Visma equals Gusto for every employee, no duplicates, every accepted
//! event hydrated or ignored (audit log), every command decided, and no dead letter (the
//! store's outage is not the events' fault). Each test prints its timeline and figures:
//! how long the store was away, how soon readiness followed, and the time to converge
//! after the store came back.
//!
//! ```text
//! cargo build -p mlc && cargo nextest run -p mlc-e2e --test store_faults --no-capture
//! ```

use mlc_e2e::chaos::{converge, print_table, reconcile_all, within, workload, Ledger, Timeline, WorkCompany};
use mlc_e2e::{FleetOptions, Stack};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COMPANIES: usize = 3;
const EMPLOYEES: usize = 10;
/// Webhook events the workload emits, and how fast.
const EVENTS: usize = 360;
const RATE: f64 = 30.0;
/// How long the store is away.
const DOWN: Duration = Duration::from_secs(6);
/// When the fault starts, after the workload started.
const FAULT_AT: Duration = Duration::from_secs(3);
const CONVERGE: Duration = Duration::from_secs(90);

fn seed() -> u64 {
    std::env::var("MLC_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(22)
}

/// When a service's readiness changed, and to what.
type Change = (Instant, &'static str, bool);

/// The `/readyz` of the projector and the writer, polled every 200 ms; each change is put on
/// the timeline and kept.
struct Readiness {
    changes: Arc<Mutex<Vec<Change>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Readiness {
    fn watch(stack: &Stack, timeline: Arc<Timeline>) -> Readiness {
        let urls: Vec<(&'static str, String)> = ["projector", "writer"]
            .into_iter()
            .map(|s| (s, format!("http://{}/readyz", stack.metrics_addr(s))))
            .collect();
        let changes = Arc::new(Mutex::new(Vec::new()));
        let kept = changes.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut last: Vec<Option<bool>> = vec![None; urls.len()];
            loop {
                for (i, (service, url)) in urls.iter().enumerate() {
                    let probe = client.get(url).timeout(Duration::from_secs(2)).send().await;
                    let ready = probe.is_ok_and(|r| r.status().is_success());
                    if last[i] != Some(ready) {
                        if last[i].is_some() {
                            timeline.mark(format_args!("{service} /readyz: {ready}"));
                        }
                        last[i] = Some(ready);
                        kept.lock().unwrap_or_else(|p| p.into_inner()).push((
                            Instant::now(),
                            *service,
                            ready,
                        ));
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Readiness { changes, task }
    }

    /// When `service` first said `ready` at or after `since`.
    fn first(&self, service: &str, ready: bool, since: Instant) -> Option<Instant> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(at, s, r)| *s == service && *r == ready && *at >= since)
            .map(|(at, _, _)| *at)
    }

    /// Waits (bounded) until both services say they are ready.
    async fn both_ready(&self, limit: Duration) {
        within("the projector and the writer to be ready again", limit, async {
            loop {
                let ready = |s: &str| {
                    let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
                    changes.iter().rev().find(|(_, n, _)| *n == s).is_some_and(|(_, _, r)| *r)
                };
                if ready("projector") && ready("writer") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ms_between(from: Instant, to: Option<Instant>) -> String {
    to.map_or("never".to_string(), |t| format!("{} ms", t.saturating_duration_since(from).as_millis()))
}

/// The fleet on `store_url`, backfilled and in sync before anything goes wrong.
async fn day_one(store_url: String, timeline: &Timeline) -> Stack {
    timeline.mark("starting the installation");
    let stack = within(
        "the installation to start",
        Duration::from_secs(180),
        Stack::start_fleet(FleetOptions {
            companies: COMPANIES,
            employees_per_company: EMPLOYEES,
            gusto: sim_gusto::SimConfig {
                seed: seed(),
                webhooks: sim_gusto::WebhookConfig {
                    retry_base: Duration::from_millis(200),
                    retry_max: Duration::from_secs(5),
                    ..Default::default()
                },
                ..Default::default()
            },
            store_url: Some(store_url),
            ..Default::default()
        }),
    )
    .await;
    timeline.mark("backfill");
    for c in stack.companies.clone() {
        within(
            &format!("mlc backfill of company {}", c.info.company_uuid),
            Duration::from_secs(120),
            stack.mlc_ok(&["backfill", "--company", &c.info.company_uuid]),
        )
        .await;
    }
    stack.settle().await;
    for (company, ok, text) in reconcile_all(&stack).await {
        assert!(ok, "{company} not in sync after the backfill: {text}");
    }
    stack
}

/// What `mlc status` says (exit code and its first lines) while the store is away.
async fn status_now(stack: &Stack) -> (Option<i32>, String) {
    let out = within("mlc status", Duration::from_secs(60), stack.mlc(&["status"])).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // The first line, and what it says of the services.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
    let services = text.lines().filter(|l| l.contains("projector ") || l.contains("writer ")).take(2);
    let lines: Vec<String> = std::iter::once(first)
        .chain(services.map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    (out.status.code(), lines.join(" / "))
}

/// Lines of the services' logs that contain `needle`.
fn log_lines(stack: &Stack, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in ["gateway", "projector", "writer"] {
        let text = std::fs::read_to_string(stack.dir.path().join(format!("{s}.log"))).unwrap_or_default();
        out.extend(text.lines().filter(|l| l.contains(needle)).map(|l| format!("{s}: {l}")));
    }
    out
}

/// The end of every store fault test: no service exited, the pipeline converges, the books
/// are sound and hold no dead letter; the figures and the timeline are printed.
async fn converge_and_check(
    mut stack: Stack,
    timeline: &Timeline,
    store_back: Instant,
    before: (usize, usize),
    mut rows: Vec<(String, String)>,
    title: &str,
) {
    for s in ["gateway", "projector", "writer"] {
        if let Some(status) = stack.service_exit(s) {
            panic!("the {s} exited during the store's outage ({status}){}", stack.logs());
        }
    }
    timeline.mark("converging");
    within("convergence", CONVERGE + Duration::from_secs(60), converge(&stack, before.0, before.1, CONVERGE))
        .await;
    let converged = store_back.elapsed();
    for s in ["projector", "writer"] {
        assert!(stack.is_ready(s).await, "the {s} is not ready after the store came back{}", stack.logs());
    }
    timeline
        .mark(format_args!("converged: in sync {:.1} s after the store came back", converged.as_secs_f64()));
    if let Ok(to) = std::env::var("MLC_FAULT_LOGS") {
        let _ = std::fs::create_dir_all(&to);
        for name in ["gateway", "projector", "writer"] {
            let _ = std::fs::copy(stack.dir.path().join(format!("{name}.log")), format!("{to}/{name}.log"));
        }
        if let Some(db) = stack.store_url.strip_prefix("sqlite://") {
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::copy(format!("{db}{ext}"), format!("{to}/mlc.db{ext}"));
            }
        }
    }
    let ledger = Ledger::read(&stack, before.0, before.1).await;
    rows.push((
        "time to converge after the store came back".into(),
        format!("{:.1} s", converged.as_secs_f64()),
    ));
    rows.push((
        "writer NAKs for the store".into(),
        stack.metric("writer", "mlc_writer_naks_total", "reason=\"store\"").await.to_string(),
    ));
    rows.extend(ledger.rows());
    print_table(title, &rows);
    for l in ledger.letters.iter().take(5) {
        println!("dead letter: stage {} id {} reason: {}", l.stage, l.original_id, l.reason);
    }
    timeline.print();
    ledger.assert_sound();
    assert!(ledger.letters.is_empty(), "a store outage made {} dead letters", ledger.letters.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_under_load() {
    let timeline = Arc::new(Timeline::new());
    let t0 = Instant::now();
    let mut pg = tokio::task::block_in_place(mlc_testkit::PgServer::start);
    timeline.mark(format_args!(
        "private PostgreSQL on port {} ({:.1} s to initdb and start)",
        pg.port(),
        t0.elapsed().as_secs_f64()
    ));
    let stack = day_one(pg.url(), &timeline).await;
    let before = (stack.gusto.events().len(), stack.gusto.deliveries().len());
    let readiness = Readiness::watch(&stack, timeline.clone());

    timeline.mark(format_args!("workload: {EVENTS} events at {RATE} per second"));
    let work = tokio::spawn(workload(stack.gusto.sim(), WorkCompany::of(&stack), seed(), EVENTS, RATE));
    tokio::time::sleep(FAULT_AT).await;

    timeline.mark(format_args!("pg_ctl stop -m immediate, down for {} s", DOWN.as_secs()));
    let down_at = Instant::now();
    tokio::task::block_in_place(|| pg.stop_immediate());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status_code, status_text) = status_now(&stack).await;
    timeline.mark(format_args!("mlc status while the store is down: exit {status_code:?}: {status_text}"));
    tokio::time::sleep(DOWN.saturating_sub(down_at.elapsed())).await;
    tokio::task::block_in_place(|| pg.start_again());
    let back_at = Instant::now();
    timeline.mark("PostgreSQL started again");
    readiness.both_ready(Duration::from_secs(60)).await;

    let work =
        within("the workload to emit its events", Duration::from_secs(120), work).await.expect("workload");
    timeline.mark(format_args!(
        "workload done ({} events in {:.1} s)",
        work.emitted,
        work.took.as_secs_f64()
    ));

    let store_lines = log_lines(&stack, "store");
    let mut rows = vec![
        (
            "PostgreSQL down (pg_ctl stop -m immediate)".to_string(),
            format!("{} ms", back_at.duration_since(down_at).as_millis()),
        ),
        ("mlc status while down: exit code".into(), format!("{status_code:?}")),
    ];
    for s in ["projector", "writer"] {
        rows.push((
            format!("{s} /readyz false after the stop"),
            ms_between(down_at, readiness.first(s, false, down_at)),
        ));
        rows.push((
            format!("{s} /readyz true after the start"),
            ms_between(back_at, readiness.first(s, true, back_at)),
        ));
    }
    rows.push(("service log lines naming the store".into(), store_lines.len().to_string()));
    for l in store_lines.iter().take(3) {
        println!("{l}");
    }
    drop(readiness);
    converge_and_check(
        stack,
        &timeline,
        back_at,
        before,
        rows,
        "PostgreSQL stopped and restarted under load",
    )
    .await;
    assert!(status_code != Some(0), "mlc status said all is well while the store was down");
    assert!(pg.log().contains("database system is ready"), "PostgreSQL's log shows no start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_disk_full_for_a_moment() {
    let timeline = Arc::new(Timeline::new());
    let tmpfs = match mlc_testkit::Tmpfs::mount("24m") {
        Ok(t) => t,
        Err(e) if !mlc_testkit::running_as_root() => {
            eprintln!("skipped: mounting a tmpfs needs root ({e}); ops/test.sh runs as root");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let url = format!("sqlite://{}", tmpfs.path().join("mlc.db").display());
    let stack = day_one(url, &timeline).await;
    let before = (stack.gusto.events().len(), stack.gusto.deliveries().len());
    let readiness = Readiness::watch(&stack, timeline.clone());

    timeline.mark(format_args!("workload: {EVENTS} events at {RATE} per second"));
    let work = tokio::spawn(workload(stack.gusto.sim(), WorkCompany::of(&stack), seed(), EVENTS, RATE));
    tokio::time::sleep(FAULT_AT).await;

    let full_at = Instant::now();
    let (filler, filled) = tokio::task::block_in_place(|| tmpfs.fill());
    timeline.mark(format_args!(
        "the store's filesystem is full ({} KiB written to fill it), for {} s",
        filled / 1024,
        DOWN.as_secs()
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status_code, status_text) = status_now(&stack).await;
    timeline.mark(format_args!("mlc status while the disk is full: exit {status_code:?}: {status_text}"));
    tokio::time::sleep(DOWN.saturating_sub(full_at.elapsed())).await;
    std::fs::remove_file(&filler).expect("free the filesystem");
    let freed_at = Instant::now();
    timeline.mark("the filesystem has room again");
    readiness.both_ready(Duration::from_secs(60)).await;

    // Read-only for a moment: what Linux says to a remount while SQLite holds the file.
    let (ro, said) = tokio::task::block_in_place(|| tmpfs.remount("ro"));
    timeline.mark(format_args!(
        "mount -o remount,ro: {}",
        if ro { "done".to_string() } else { format!("refused: {said}") }
    ));
    let mut back_at = freed_at;
    if ro {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (rw, said) = tokio::task::block_in_place(|| tmpfs.remount("rw"));
        assert!(rw, "mount -o remount,rw failed: {said}");
        back_at = Instant::now();
        timeline.mark("read-write again");
        readiness.both_ready(Duration::from_secs(60)).await;
    }

    let work =
        within("the workload to emit its events", Duration::from_secs(120), work).await.expect("workload");
    timeline.mark(format_args!(
        "workload done ({} events in {:.1} s)",
        work.emitted,
        work.took.as_secs_f64()
    ));
    let full_lines = log_lines(&stack, "disk is full");
    let mut rows = vec![
        ("filesystem full".to_string(), format!("{} ms", freed_at.duration_since(full_at).as_millis())),
        ("mlc status while full: exit code".into(), format!("{status_code:?}")),
        ("remount read-only".into(), if ro { "done".into() } else { format!("refused ({said})") }),
    ];
    for s in ["projector", "writer"] {
        rows.push((
            format!("{s} /readyz false after the fill"),
            ms_between(full_at, readiness.first(s, false, full_at)),
        ));
        rows.push((
            format!("{s} /readyz true after the free"),
            ms_between(freed_at, readiness.first(s, true, freed_at)),
        ));
    }
    rows.push(("service log lines saying 'disk is full'".into(), full_lines.len().to_string()));
    for l in full_lines.iter().take(3) {
        println!("{l}");
    }
    drop(readiness);
    converge_and_check(stack, &timeline, back_at, before, rows, "the SQLite store's disk full for a moment")
        .await;
    assert!(!full_lines.is_empty(), "no service log line names the full disk");
}
