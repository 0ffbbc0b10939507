//! Test support that uses real parts: a private `nats-server -js` per test on a free
//! port, a private SQLite file or PostgreSQL database per test, a private PostgreSQL
//! server for a test that stops it ([`PgServer`]), the sandbox configuration
//! ([`sandbox_config`]) and a whole installation of real processes ([`install::Stack`]).
//!
//! Modelled on the `nats-server` helper crate of nats.rs: start in the test, kill and
//! clean up in `Drop`, so a failing test leaves nothing behind.

pub mod auth;
mod fixtures;
pub mod install;
pub mod netns;
pub mod postgres;
pub mod sandbox;
mod tmpfs;

pub use fixtures::{company, connected_company, Bus};
pub use postgres::PgServer;
pub use sandbox::{sandbox_config, write_config};
pub use tmpfs::{running_as_root, Tmpfs};

use mlc_config::NatsConfig;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where nats-server lives: `MLC_NATS_SERVER_BIN`, else Debian's path, else `$PATH`.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MLC_NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/sbin/nats-server");
    if debian.exists() {
        return debian.to_path_buf();
    }
    PathBuf::from("nats-server")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A private JetStream server. Stopping and starting keeps its port and its store, so a
/// test can take the broker away and bring it back.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Tethered>,
    /// The configuration file, for servers started from one ([`NatsServer::start_with`]).
    conf: Option<PathBuf>,
    /// How [`NatsServer::config`] connects: the URL plus any credentials.
    client: NatsConfig,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let port = free_port();
        let client = NatsConfig::at(format!("nats://127.0.0.1:{port}"));
        let mut server = NatsServer { port, dir, child: None, conf: None, client };
        server.first_start();
        server
    }

    /// Starts a server from a configuration file holding `conf` (users and permissions,
    /// an operator, `tls { }`...), on a free loopback port with JetStream (given as flags,
    /// which win over the file). `client` says how [`NatsServer::config`] authenticates (its `url` is
    /// replaced); `conf` may name files made with [`NatsServer::dir`].
    pub fn start_with(conf: &str, client: NatsConfig) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        Self::start_in(dir, conf, client)
    }

    /// As [`NatsServer::start_with`], in a directory the caller already filled (CA
    /// files, creds).
    pub fn start_in(dir: tempfile::TempDir, conf: &str, client: NatsConfig) -> NatsServer {
        let port = free_port();
        let path = dir.path().join("nats.conf");
        // Address, port and JetStream come from the command line, which wins over the
        // file: a shipped configuration can be used as it is.
        std::fs::write(&path, conf).expect("write nats.conf");
        let client = NatsConfig { url: format!("nats://127.0.0.1:{port}"), ..client };
        let mut server = NatsServer { port, dir, child: None, conf: Some(path), client };
        server.first_start();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// How to connect to this server: its URL and the credentials it was started with.
    pub fn config(&self) -> NatsConfig {
        self.client.clone()
    }

    /// The server's own directory (configuration, store, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server logged so far (authentication and permission errors among it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// What a failing test should know of this server: whether its process is alive, whether
    /// its port still greets with its own name, and the end of its log. ("nats: IO error"
    /// in every service of a test, once in a while, never said which of these it was.)
    pub fn report(&self) -> String {
        let name = self.name();
        let process = match self.pid() {
            None => "stopped by the test".to_string(),
            Some(pid) => match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(stat) => describe_stat(&stat),
                Err(_) => format!("pid {pid} gone"),
            },
        };
        let tail = |file: &str| last_lines(&self.dir.path().join(file), 10);
        format!(
            "nats-server on port {}: process {process}; port greets as {name}: {}; its stderr: {:?}; its log ends:\n{}",
            self.port,
            greets_as(self.port, &name),
            tail("nats.out"),
            tail("nats.log")
        )
    }

    /// The server's name (`-n`): this process's and the port's, so no other server has it.
    fn name(&self) -> String {
        format!("mlc-test-{}-{}", std::process::id(), self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the server (SIGKILL: the harshest way a broker can go).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn start_again(&mut self) {
        if let Err(e) = self.launch() {
            panic!("{e}");
        }
    }

    /// The first start, on a port from [`free_port`]: the kernel may hand that port to
    /// another process before nats-server binds it, and then nats-server exits while the
    /// other listener answers the readiness probe (every client of the test then sees
    /// "IO error"). Such a start is retried on another port.
    fn first_start(&mut self) {
        let mut last = String::new();
        for _ in 0..3 {
            match self.launch() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            self.port = free_port();
            self.client.url = format!("nats://127.0.0.1:{}", self.port);
        }
        panic!("{last}");
    }

    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "nats-server already running");
        let store = self.dir.path().join("store");
        let log = self.dir.path().join("nats.log");
        let bin = nats_server_bin();
        let mut cmd = Command::new(&bin);
        if let Some(conf) = &self.conf {
            cmd.arg("-c").arg(conf);
        }
        // A name of its own, so the readiness probe can tell this server from whatever
        // else may hold the port.
        let name = self.name();
        cmd.args(["-n", &name]);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"]).arg(&store);
        // A Go panic or a fatal error goes to stderr, not to the log file.
        let out =
            std::fs::File::create(self.dir.path().join("nats.out")).map(Stdio::from).unwrap_or(Stdio::null());
        cmd.arg("-l").arg(&log).stdin(Stdio::null()).stdout(Stdio::null()).stderr(out);
        let child = Tethered::spawn(&mut cmd).unwrap_or_else(|e| {
            panic!("cannot start {}: {e}; install it with `apt-get install nats-server`", bin.display())
        });
        self.child = Some(child);
        let log_tail = || last_lines(&log, 10);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Ready once the port greets with this server's own INFO: a port answered by
            // another process (the kernel gave it away before nats-server bound it, and a
            // slow nats-server then exits) passed the old "it answers, and the child is
            // still there 50 ms later", and every client of the test saw "IO error".
            if greets_as(self.port, &name) {
                // JetStream needs a moment after the listener opens.
                std::thread::sleep(Duration::from_millis(50));
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "nats-server exited ({status}) before it listened on port {} (another process may hold it); \
                     its log ends:\n{}",
                    self.port,
                    log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = None;
        Err(format!(
            "nats-server did not listen on port {} within 10 s; its log ends:\n{}",
            self.port,
            log_tail()
        ))
    }
}

/// The last `n` lines of a file (empty when it cannot be read).
pub(crate) fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().rev().take(n).collect();
    lines.reverse();
    lines.join("\n")
}

/// A process's state from its `/proc/<pid>/stat`; for a zombie, how it ended (field 52,
/// `exit_code`, as `waitpid` would give it).
fn describe_stat(stat: &str) -> String {
    let Some(close) = stat.rfind(')') else { return "?".into() };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let state = f.first().copied().unwrap_or("?");
    if state != "Z" {
        return format!("alive (state {state})");
    }
    // Fields after the name start at field 3, so field 52 is index 49.
    match f.get(49).and_then(|v| v.parse::<i32>().ok()) {
        Some(code) if code & 0x7f != 0 => format!("dead, killed by signal {}", code & 0x7f),
        Some(code) => format!("dead, exited with status {}", code >> 8),
        None => "dead".into(),
    }
}

/// Whether the server on `port` is the nats-server named `name`: its first line, INFO,
/// names it (sent in plain text before any TLS).
fn greets_as(port: u16, name: &str) -> bool {
    use std::io::{BufRead, Read};
    let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stream).take(64 * 1024);
    if reader.read_line(&mut line).is_err() {
        return false;
    }
    line.starts_with("INFO ") && line.contains(&format!("\"server_name\":\"{name}\""))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A three-node (or n-node) JetStream cluster: routes between the nodes, each with its own
/// store. Nodes can be stopped and started like [`NatsServer`]; on a cluster made with
/// [`NatsCluster::start_partitionable`], a node can also be cut off the network.
pub struct NatsCluster {
    dir: tempfile::TempDir,
    nodes: Vec<ClusterNode>,
    /// One network namespace per node, for partitions; `None` on loopback.
    net: Option<netns::Namespaces>,
}

struct ClusterNode {
    name: String,
    host: String,
    client_port: u16,
    route_port: u16,
    child: Option<Tethered>,
}

impl NatsCluster {
    /// `n` nodes on loopback.
    pub fn start(n: usize) -> NatsCluster {
        let nodes = (0..n)
            .map(|i| ClusterNode {
                name: format!("n{i}"),
                host: "127.0.0.1".into(),
                client_port: free_port(),
                route_port: free_port(),
                child: None,
            })
            .collect();
        Self::launch(nodes, None)
    }

    /// `n` nodes, each in its own network namespace ([`netns::Namespaces`]), so that
    /// [`NatsCluster::cut`] can partition one. Needs root and iproute2.
    pub fn start_partitionable(n: usize) -> Result<NatsCluster, String> {
        let net = netns::Namespaces::create(n)?;
        let nodes = (0..n)
            .map(|i| ClusterNode {
                name: format!("n{i}"),
                host: net.addr(i).to_string(),
                // Each namespace has its own ports.
                client_port: 4222,
                route_port: 6222,
                child: None,
            })
            .collect();
        Ok(Self::launch(nodes, Some(net)))
    }

    fn launch(nodes: Vec<ClusterNode>, net: Option<netns::Namespaces>) -> NatsCluster {
        let dir = tempfile::tempdir().expect("temp dir for the cluster");
        let n = nodes.len();
        let mut cluster = NatsCluster { dir, nodes, net };
        for i in 0..n {
            cluster.start_node(i);
        }
        cluster
    }

    /// All client URLs, comma-separated, as clients and `nats.url` take them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://{}:{}", n.host, n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How to connect to the cluster. In namespaces the nodes are off loopback but on
    /// this machine's private veth links, where plain text is what the test wants.
    pub fn config(&self) -> NatsConfig {
        let mut cfg = NatsConfig::at(self.url());
        cfg.allow_plaintext = self.net.is_some();
        cfg
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// SIGKILLs node `i`.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Cuts node `i` off the network (the other nodes and every client): it keeps running,
    /// and its connections hang rather than close. Only on a partitionable cluster.
    pub fn cut(&self, i: usize) {
        self.net.as_ref().expect("a cluster from start_partitionable").cut(i);
    }

    /// Ends node `i`'s partition.
    pub fn heal(&self, i: usize) {
        self.net.as_ref().expect("a cluster from start_partitionable").heal(i);
    }

    /// Node `i`'s log so far (for a failing test's report).
    pub fn node_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.nodes[i].name)))
            .unwrap_or_default()
    }

    /// Starts node `i` (again), with its routes to the others.
    pub fn start_node(&mut self, i: usize) {
        let routes = self
            .nodes
            .iter()
            .map(|n| format!("nats://{}:{}", n.host, n.route_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[i];
        let store = self.dir.path().join(&node.name);
        let log = self.dir.path().join(format!("{}.log", node.name));
        let bin = nats_server_bin();
        let mut cmd = match &self.net {
            Some(net) => net.command(i, &bin),
            None => Command::new(&bin),
        };
        cmd.args(["-a", &node.host, "-p", &node.client_port.to_string(), "-n", &node.name, "-js", "-sd"])
            .arg(&store)
            .args([
                "--cluster_name",
                "mlc",
                "--cluster",
                &format!("nats://{}:{}", node.host, node.route_port),
            ])
            .args(["--routes", &routes])
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            Tethered::spawn(&mut cmd).unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.nodes[i].child = Some(child);
        let (host, port) = (self.nodes[i].host.clone(), self.nodes[i].client_port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((host.as_str(), port)).is_err() {
            assert!(Instant::now() < deadline, "cluster node {i} did not listen on {host}:{port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
    }
}

/// `mlc --config <config> run <role>` as a command, its output appended to `log`: the one
/// way a test, a bench or `mlc demo` starts a service as a process. `MLC_CONFIG` is removed,
/// so the file alone configures it.
pub fn mlc_run(bin: &Path, config: &Path, role: &str, log: &Path) -> std::io::Result<Command> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .args(["run", role])
        .env_remove("MLC_CONFIG")
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(cmd)
}

/// Stops `child` as an orchestrator stops a service: SIGTERM, so it finishes the work in
/// hand (and `mlc run` flushes its spans), then SIGKILL once `grace` has passed. Whether it
/// exited on its own.
pub fn terminate(child: &mut Child, grace: Duration) -> bool {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// A process started for a run (`mlc demo`, a bench, a test), [`terminate`]d with 5 s of
/// grace when dropped.
pub struct StopOnDrop {
    pub name: &'static str,
    pub child: Child,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !terminate(&mut self.child, Duration::from_secs(5)) {
            eprintln!("{} did not stop on SIGTERM; killed it", self.name);
        }
    }
}

/// A child process that dies with this test process, and with it every process it
/// started.
///
/// `Drop` cannot stop a child for a test that is itself killed (nextest's timeout,
/// SIGKILL), and an orphaned nats-server or service keeps its port and its CPU for the
/// rest of the run. So a small watchdog process SIGKILLs the child once this process is
/// gone. Linux's `PR_SET_PDEATHSIG` would need `unsafe` in `pre_exec` (forbidden in
/// this workspace) and fires when the spawning *thread* ends, which for a Tokio blocking
/// thread comes too early. Dereferences to the [`Child`]; dropping it kills the child.
///
/// [`Tethered::spawn`] starts the child in a process group of its own and the watchdog
/// kills the whole group, so grandchildren (chromedriver's Chromium, a service's helpers)
/// go too. The watchdog sits in a group of its own as well: a signal to the test's group
/// (nextest's timeout) must not take the watchdog down and leave the children behind.
pub struct Tethered {
    child: Child,
    watchdog: Option<Child>,
    /// The child leads a process group of its own (its pid is the group id).
    group: bool,
}

impl Tethered {
    /// Spawns `cmd` in a process group of its own, tethered to this process.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Tethered> {
        use std::os::unix::process::CommandExt;
        let child = cmd.process_group(0).spawn()?;
        Ok(Self::tether(child, true))
    }

    /// Tethers a child spawned already (only the child is killed, not its children).
    pub fn new(child: Child) -> Tethered {
        Self::tether(child, false)
    }

    fn tether(child: Child, group: bool) -> Tethered {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        let target = if group { format!("-{}", child.id()) } else { child.id().to_string() };
        // A zombie parent still answers `kill -0`, so read its state instead. `env kill`:
        // the shell's own `kill` (dash) takes no `--` before a negative (group) id.
        let script = format!(
            "while [ -e /proc/{parent} ] && ! grep -qs '^State:[[:space:]]*Z' /proc/{parent}/status; \
             do sleep 0.5; done; env kill -9 -- {target} 2>/dev/null"
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok();
        Tethered { child, watchdog, group }
    }
}

impl std::ops::Deref for Tethered {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Tethered {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Tethered {
    fn drop(&mut self) {
        // The watchdog goes first, so it never signals a process id that the system
        // may hand out again once the child is reaped.
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        // The group while its leader is not reaped yet (so its id cannot be anyone else's).
        if self.group && self.child.try_wait().is_ok_and(|s| s.is_none()) {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{}", self.child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique name for streams, prefixes and databases.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())[..prefix.len() + 12].to_string()
}

/// The server that PostgreSQL tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("MLC_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A private database: a SQLite file in a temp dir, or a fresh PostgreSQL database
/// dropped at the end.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("mlc.db").display());
        TestDb { url, _dir: Some(dir), pg_name: None }
    }

    pub async fn postgres() -> TestDb {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let name = unique("mlc_test_");
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is not reachable ({e}); ops/test.sh starts it")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
        TestDb { url: format!("{base}/{name}"), _dir: None, pg_name: Some(name) }
    }

    /// Connects the store (running migrations) with a fixed test key.
    pub async fn store(&self) -> mlc_store::Store {
        mlc_store::Store::connect(&self.url, Some(mlc_store::EncryptionKey::from_bytes([7u8; 32])))
            .await
            .expect("connect test store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop on a thread of its own: Drop may run inside a runtime.
            let admin = postgres_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        use sqlx::Connection;
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race `first_start` exists for, made certain: the port is held by a listener
    /// that is not NATS, so nats-server cannot bind it although the port answers.
    #[test]
    fn a_start_on_a_port_someone_else_holds_moves_to_another_port() {
        let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = squatter.local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("temp dir");
        let client = NatsConfig::at(format!("nats://127.0.0.1:{taken}"));
        let mut server = NatsServer { port: taken, dir, child: None, conf: None, client };
        server.first_start();
        assert_ne!(server.port(), taken, "nats-server cannot have bound the held port");
        assert!(server.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none()), "running");
        assert!(server.config().url.ends_with(&format!(":{}", server.port())), "the client follows the port");
    }
}
