//! The SQLite store on a full disk: every write the store says it made is there, and
//! every write it could not make is an error (the services wait on errors; a write
//! reported as made is acked and never made again).
//!
//! Runs as root only (it mounts a small tmpfs); elsewhere it says so and passes.

use mlc_store::{AuditEntry, AuditKind, AuditQuery, Store};

#[tokio::test]
async fn an_audit_row_the_disk_had_no_room_for_is_an_error_not_a_lost_row() {
    let tmpfs = match mlc_testkit::Tmpfs::mount("4m") {
        Ok(t) => t,
        Err(e) if !mlc_testkit::running_as_root() => {
            eprintln!("skipped: mounting a tmpfs needs root ({e})");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let url = format!("sqlite://{}", tmpfs.path().join("mlc.db").display());
    let store = Store::connect(&url, None).await.expect("open the store");
    // Rows big enough that the WAL must grow for each.
    let detail = serde_json::json!({ "pad": "x".repeat(6_000) });
    let row = |i: usize| {
        AuditEntry::new(format!("event:e{i}"), AuditKind::EventHydrated).with_detail(detail.clone())
    };
    for i in 0..20 {
        store.append_audit(&row(i)).await.expect("append while there is room");
    }
    let (filler, _) = tmpfs.fill();
    let mut said_ok = Vec::new();
    let mut refused = 0;
    for i in 20..120 {
        match store.append_audit(&row(i)).await {
            Ok(_) => said_ok.push(format!("event:e{i}")),
            Err(e) => {
                assert!(e.to_string().contains("disk is full"), "the error names the full disk: {e}");
                refused += 1;
            }
        }
    }
    assert!(store.writes_failing() || refused == 0, "a refused write counts against readiness");
    std::fs::remove_file(filler).expect("free the disk");
    store.close().await;

    let store = Store::connect(&url, None).await.expect("open the store again");
    let stored: std::collections::HashSet<String> = store
        .audit(&AuditQuery { limit: 10_000, ..Default::default() })
        .await
        .expect("read the audit log")
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    let lost: Vec<&String> = said_ok.iter().filter(|id| !stored.contains(*id)).collect();
    println!(
        "on the full disk: {} appends said ok, {refused} refused, {} said ok but not stored",
        said_ok.len(),
        lost.len()
    );
    assert!(refused > 0, "the full disk refused no write: the test did not fill it");
    assert!(lost.is_empty(), "{} rows reported appended are not in the audit log: {lost:?}", lost.len());
}
