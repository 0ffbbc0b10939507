//! One bounded smoke run of the ingest benchmark: it runs and produces numbers. Not timed
//! pass/fail: the figures belong to `mlc-bench`, on a quiet machine.

use std::time::{Duration, Instant};

#[test]
fn ingest_quick_runs_and_produces_numbers() {
    let started = Instant::now();
    let args = mlc_bench::ingest::IngestArgs { requests: 300, ..mlc_bench::ingest::IngestArgs::quick() };
    let report = mlc_bench::ingest::run(&args).expect("ingest benchmark ran");
    report.print();
    let tput = &report.rows[0];
    assert!(tput.metric.starts_with("accepted/s"));
    assert!(tput.baseline.is_some_and(|b| b > 0.0), "raw publish rate measured");
    assert!(tput.ours > 0.0, "gateway rate measured");
    assert!(report.rows.iter().all(|r| r.ours.is_finite()), "every row has a number");
    let failed = report.rows.iter().find(|r| r.metric.starts_with("failed")).expect("failure row");
    assert_eq!(failed.ours, 0.0, "every request was accepted");
    assert!(started.elapsed() < Duration::from_secs(20), "smoke run stays bounded");
}
