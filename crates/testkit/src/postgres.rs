//! A private PostgreSQL server for one test: `initdb` into a temp dir, `postgres` on a free
//! loopback port, stopped the way an operator's or a crash's stop looks
//! (`pg_ctl stop -m immediate`) and started again on the same port with the same data.
//!
//! Why not the shared server on 5432 ([`crate::TestDb::postgres`]): a test that stops the
//! database must not take it away from every other test of the run.
//!
//! The server runs in a process group of its own, tethered to the test process
//! ([`crate::Tethered`]): a test that is killed takes its postmaster and backends with it.
//! PostgreSQL refuses to run as root, so when the tests run as root (CI) every command runs
//! as the `postgres` user through `runuser`, and the data directory belongs to it.

use crate::{free_port, running_as_root, Tethered};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The directory of `initdb`, `postgres` and `pg_ctl`: `MLC_POSTGRES_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `pg_config --bindir`.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("MLC_POSTGRES_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("postgres").exists().then_some(dir)
}

/// A private PostgreSQL server (user `postgres`, trust on loopback, database `postgres`).
pub struct PgServer {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    child: Option<Tethered>,
}

impl PgServer {
    /// `initdb` and a first start on a free port; panics naming what is missing.
    pub fn start() -> PgServer {
        let bin = postgres_bin_dir().unwrap_or_else(|| {
            panic!("no PostgreSQL server binaries (initdb, postgres): install them with `apt-get install postgresql` or set MLC_POSTGRES_BIN")
        });
        let dir = tempfile::tempdir().expect("temp dir for PostgreSQL");
        let as_postgres = running_as_root();
        if as_postgres {
            // The server's user must own its data directory and reach the socket directory.
            let status = Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown of {} to postgres failed",
                dir.path().display()
            );
        }
        let mut server = PgServer { port: free_port(), dir, bin, as_postgres, child: None };
        let data = server.data();
        let out = server
            .command("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last = String::new();
        for _ in 0..3 {
            match server.launch() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
            // The free port was taken before the server bound it.
            server.port = free_port();
        }
        panic!("{last}");
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `pg_ctl stop -m immediate`: every backend is told to quit at once, nothing is
    /// checkpointed, and the next start runs crash recovery, as after a power cut of the
    /// database host. Waits (bounded) until the server is gone.
    pub fn stop_immediate(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let out = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-t", "20", "-D"])
            .arg(self.data())
            .output();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Dropping the tether kills what is left of the group.
        drop(child);
        panic!("PostgreSQL did not stop within 20 s of `pg_ctl stop -m immediate` ({out:?})");
    }

    /// Starts the server again on the same port with the same data (crash recovery first
    /// after [`PgServer::stop_immediate`]).
    pub fn start_again(&mut self) {
        if let Err(e) = self.launch() {
            panic!("{e}");
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `program` of the server's binaries, as `postgres` when this process is root.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "PostgreSQL already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("PostgreSQL log file: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(self.data()).args(["-p", &self.port.to_string()]);
        // Loopback only; the socket in the private directory (not /var/run/postgresql, which
        // the system's server owns); no fsync, as the data need not survive the machine.
        cmd.args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.path().display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = Tethered::spawn(&mut cmd).map_err(|e| format!("cannot start postgres: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!(
                    "postgres exited ({status}) on port {}; its log ends:\n{}",
                    self.port,
                    tail(&self.log_path())
                ));
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = None;
        Err(format!(
            "PostgreSQL did not accept connections on port {} within 30 s; its log ends:\n{}",
            self.port,
            tail(&self.log_path())
        ))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // An immediate stop cleans up its shared memory; the tether kills whatever is left.
        if self.child.is_some() {
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-t", "10", "-D"])
                .arg(self.data())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.child = None;
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(10).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}
