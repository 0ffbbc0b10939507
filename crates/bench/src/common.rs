//! What every benchmark shares: latency statistics, the result table, a gateway on its own
//! runtime, and the Visma seed the example mapping expects.

use std::sync::Arc;
use std::time::Duration;

/// The verification token every benchmark signs its webhooks with.
pub const TOKEN: &str = "bench-6590f590-3dba-495e-9bea-c361e1e2efc0";
/// The example mapping (departments and offices of the simulator's seed).
pub const MAPPING: &str = include_str!("../../../schemas/examples/mapping.example.toml");
/// Name of the Visma tenant in the connector's configuration.
pub const TENANT: &str = "nordic";

/// Latency samples.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q`-quantile (0..=1, nearest rank) in milliseconds; NaN when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1].as_secs_f64() * 1e3
    }

    pub fn p50(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    pub fn p99(&self) -> f64 {
        self.quantile_ms(0.99)
    }

    pub fn max_ms(&self) -> f64 {
        self.quantile_ms(1.0)
    }
}

/// Median of a few values (the rounds of a benchmark).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// How a row is judged.
#[derive(Debug, Clone)]
pub enum Target {
    /// `ours / baseline` must be at least this.
    RatioAtLeast(f64),
    /// `ours / baseline` must be at most this.
    RatioAtMost(f64),
    /// `ours` itself must be below this.
    ValueBelow(f64),
    /// `ours` itself must be at most this.
    ValueAtMost(f64),
    /// Reported, not judged.
    Info,
}

/// One line of a result table.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    pub baseline: Option<f64>,
    pub ours: f64,
    pub target: Target,
}

impl Row {
    pub fn new(metric: impl Into<String>, baseline: Option<f64>, ours: f64, target: Target) -> Row {
        Row { metric: metric.into(), baseline, ours, target }
    }

    pub fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|b| *b != 0.0 && b.is_finite()).map(|b| self.ours / b)
    }

    /// `Some(true)` PASS, `Some(false)` MISS, `None` for information only.
    pub fn verdict(&self) -> Option<bool> {
        match self.target {
            Target::RatioAtLeast(t) => self.ratio().map(|r| r >= t),
            Target::RatioAtMost(t) => self.ratio().map(|r| r <= t),
            Target::ValueBelow(t) => Some(self.ours < t),
            Target::ValueAtMost(t) => Some(self.ours <= t),
            Target::Info => None,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::RatioAtLeast(t) => format!("ratio >= {t}"),
            Target::RatioAtMost(t) => format!("ratio <= {t}"),
            Target::ValueBelow(t) => format!("< {}", num(t)),
            Target::ValueAtMost(t) => format!("<= {}", num(t)),
            Target::Info => "-".into(),
        }
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if (v == v.trunc() && v.abs() < 1e12) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A benchmark's result: its title, a few notes and the rows.
#[derive(Debug, Clone)]
pub struct Report {
    pub title: String,
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Report {
        Report { title: title.into(), notes: Vec::new(), rows: Vec::new() }
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn row(&mut self, r: Row) {
        self.rows.push(r);
    }

    /// True when no judged row missed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.verdict() != Some(false))
    }

    pub fn print(&self) {
        println!();
        println!("== {} ==", self.title);
        for n in &self.notes {
            println!("   {n}");
        }
        let w = self.rows.iter().map(|r| r.metric.len()).max().unwrap_or(6).max(6);
        println!(
            "{:<w$} | {:>12} | {:>12} | {:>8} | {:<14} | verdict",
            "metric", "baseline", "ours", "ratio", "target"
        );
        println!("{}", "-".repeat(w + 68));
        for r in &self.rows {
            let verdict = match r.verdict() {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "info",
            };
            println!(
                "{:<w$} | {:>12} | {:>12} | {:>8} | {:<14} | {verdict}",
                r.metric,
                r.baseline.map(num).unwrap_or_else(|| "-".into()),
                num(r.ours),
                r.ratio().map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
                r.target_text(),
            );
        }
        let judged = self.rows.iter().filter(|r| r.verdict().is_some()).count();
        let missed: Vec<&str> =
            self.rows.iter().filter(|r| r.verdict() == Some(false)).map(|r| r.metric.as_str()).collect();
        if missed.is_empty() {
            println!("verdict: PASS ({judged} judged rows)");
        } else {
            println!("verdict: MISS ({} of {judged} judged rows: {})", missed.len(), missed.join("; "));
        }
    }
}

/// A Gusto webhook body as Gusto sends it.
pub fn webhook_body(event_uuid: &str, company: &str, employee: &str, event_type: &str) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        r#"{{"uuid":"{event_uuid}","event_type":"{event_type}","resource_type":"Company","resource_uuid":"{company}","entity_type":"Employee","entity_uuid":"{employee}","timestamp":{ts}}}"#
    )
}

/// An HTTP client for load: keep-alive, one pooled connection per concurrent task.
pub fn http_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// A multi-thread tokio runtime with `workers` threads.
pub fn runtime(name: &str, workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name(name.to_string())
        .enable_all()
        .build()?)
}

/// The gateway on a runtime of its own (its own threads), as `mlc run gateway` runs it,
/// minus the store (refusals are not audited here; every request is valid).
pub struct GatewayHandle {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GatewayHandle {
    pub fn start(
        nats_url: &str,
        topology: mlc_bus::Topology,
        workers: usize,
    ) -> anyhow::Result<GatewayHandle> {
        let rt = runtime("gateway", workers)?;
        let (url_tx, url_rx) = std::sync::mpsc::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let nats_url = nats_url.to_string();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let setup = async {
                    let client =
                        mlc_bus::connect(&mlc_bus::NatsConfig::at(nats_url), "bench-gateway").await?;
                    let publisher = mlc_bus::Publisher::new(client, Duration::from_secs(5));
                    let settings = mlc_gateway::Settings::with_tokens(vec![TOKEN.as_bytes().to_vec()]);
                    let gw = mlc_gateway::Gateway::new(publisher, topology, &settings);
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let url = format!("http://{}", listener.local_addr()?);
                    anyhow::Ok((gw, listener, url, settings.limits))
                };
                match setup.await {
                    Ok((gw, listener, url, limits)) => {
                        let _ = url_tx.send(Ok(url));
                        let _ = mlc_gateway::serve(listener, gw, limits, async {
                            let _ = stop_rx.await;
                        })
                        .await;
                    }
                    Err(e) => {
                        let _ = url_tx.send(Err(e));
                    }
                }
            });
        });
        let url = url_rx.recv()??;
        Ok(GatewayHandle { url, stop: Some(stop_tx), thread: Some(thread) })
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/webhooks/gusto", self.url)
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Posts one signed webhook; returns the status code.
pub async fn post_signed(http: &reqwest::Client, url: &str, body: String) -> anyhow::Result<u16> {
    let sig = gusto::webhook::sign(TOKEN.as_bytes(), body.as_bytes());
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .header(gusto::webhook::SIGNATURE_HEADER, sig)
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    Ok(status)
}

/// A value shared between tasks.
pub type Shared<T> = Arc<std::sync::Mutex<T>>;

/// CPU time (user + system, seconds) of this process's threads, by thread-name prefix,
/// and of other processes by pid: to tell who used the cores during a run.
pub fn thread_cpu_by_name() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name =
            stat[open + 1..close].trim_end_matches(|c: char| c.is_ascii_digit() || c == '-').to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // After the name: state is field 3, utime 14, stime 15 (1-based) => index 11, 12.
        let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(name).or_insert(0.0) += ticks / 100.0;
    }
    out
}

/// CPU seconds (user + system) of a process.
pub fn process_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / 100.0
}

/// CPU seconds of this process's threads (by name) and of nats-server, from [`CpuWindow::open`]
/// to [`CpuWindow::close`].
pub struct CpuWindow {
    threads: std::collections::BTreeMap<String, f64>,
    nats: f64,
    nats_pid: Option<u32>,
    at: std::time::Instant,
}

/// What a [`CpuWindow`] measured.
pub struct CpuUsed {
    pub wall: f64,
    /// CPU seconds per thread name (digits and dashes at the end dropped).
    pub threads: std::collections::BTreeMap<String, f64>,
    pub nats: f64,
}

impl CpuWindow {
    pub fn open(nats_pid: Option<u32>) -> CpuWindow {
        CpuWindow {
            threads: thread_cpu_by_name(),
            nats: nats_pid.map_or(0.0, process_cpu),
            nats_pid,
            at: std::time::Instant::now(),
        }
    }

    pub fn close(&self) -> CpuUsed {
        let threads = thread_cpu_by_name()
            .into_iter()
            .map(|(k, v)| {
                let before = self.threads.get(&k).copied().unwrap_or(0.0);
                (k, v - before)
            })
            .collect();
        CpuUsed {
            wall: self.at.elapsed().as_secs_f64(),
            threads,
            nats: self.nats_pid.map_or(0.0, process_cpu) - self.nats,
        }
    }
}

impl CpuUsed {
    /// CPU seconds of the threads whose name starts with `prefix`.
    pub fn of(&self, prefix: &str) -> f64 {
        self.threads.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum()
    }
}

/// The pid of the nats-server listening on `port` (found by its command line).
pub fn nats_pid(port: u16) -> Option<u32> {
    let needle = format!("-p\0{port}\0");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("nats-server") && cmd.contains(&needle) {
            return Some(pid);
        }
    }
    None
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
