//! A test process that dies without running `Drop` leaves no nats-server behind, and no
//! grandchild of a tethered child either.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "MLC_TESTKIT_ORPHAN_PIDFILE";

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
        .unwrap_or(false)
}

/// Runs only as the child of `a_killed_test_leaves_no_nats_server`: starts a server,
/// says its pid, and waits to be killed.
#[test]
#[ignore = "started by a_killed_test_leaves_no_nats_server"]
fn orphan_child() {
    let Ok(pidfile) = std::env::var(CHILD_ENV) else { return };
    let server = mlc_testkit::NatsServer::start();
    // A child with a child of its own, as chromedriver starts Chromium.
    let grandchild_file = format!("{pidfile}.grandchild");
    let _parent = mlc_testkit::Tethered::spawn(Command::new("sh").args([
        "-c",
        &format!(
            "sleep 120 & echo $! > {grandchild_file}.tmp; mv {grandchild_file}.tmp {grandchild_file}; wait"
        ),
    ]))
    .expect("spawn sh");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&grandchild_file).exists() {
        assert!(Instant::now() < deadline, "the grandchild did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&pidfile, server.pid().expect("running").to_string()).expect("write pid file");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_test_leaves_no_nats_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile: PathBuf = dir.path().join("nats.pid");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "orphan_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &pidfile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child test");
    let deadline = Instant::now() + Duration::from_secs(20);
    let nats_pid: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the child test did not start its nats-server within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(alive(nats_pid), "nats-server {nats_pid} should run while its test runs");
    let grandchild: u32 = std::fs::read_to_string(dir.path().join("nats.pid.grandchild"))
        .expect("grandchild pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(alive(grandchild), "the grandchild {grandchild} should run while its test runs");

    // SIGKILL: no Drop, no unwinding, as when nextest's timeout ends a test.
    child.kill().expect("kill the child test");
    child.wait().expect("reap the child test");

    let killed_at = Instant::now();
    while alive(nats_pid) || alive(grandchild) {
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "nats-server {nats_pid} (alive: {}) or the grandchild {grandchild} (alive: {}) outlived its killed \
             test by 5 s",
            alive(nats_pid),
            alive(grandchild)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "nats-server {nats_pid} and grandchild {grandchild} gone {} ms after their test was killed",
        killed_at.elapsed().as_millis()
    );
}
