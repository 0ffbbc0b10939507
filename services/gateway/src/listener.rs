//! The listener: how many connections one client can hold, and for how long.
//!
//! The shape is mini-redis's `server.rs`: a [`Listener`] takes a permit from a semaphore
//! *before* it accepts, so open connections never exceed the cap, and each connection runs
//! in its own task that gives the permit back when it ends. What a connection may cost:
//!
//! - **Before its first byte** it holds a socket and a small task, no buffer (it waits for
//!   its first byte (a 1-byte `peek`) before hyper allocates one), and lives at most `idle_timeout`. When the
//!   cap is reached, the silent connection that has waited longest (at least 250 ms) is closed to make room
//!   (nginx closes idle keep-alive connections the same way when it runs out,
//!   `ngx_drain_connections`), so a crowd of silent sockets cannot keep Gusto out.
//! - **Reading its head** it holds hyper's read buffer (at most [`MAX_HEAD_BYTES`]) and
//!   lives at most `header_timeout` (hyper's own timer, which needs [`TokioTimer`]).
//! - **Reading its body** it holds a reservation of the shared body budget and lives at
//!   most `body_timeout` (both enforced by the handler, see `crate::budget`).
//! - **Between requests** on a kept-alive connection it lives at most `idle_timeout`.

use crate::metrics::GatewayMetrics;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// hyper's read buffer, and so the largest request head: Gusto's are under 2 KiB (nginx's
/// default limit is 8 KiB too). hyper answers 431 past it, and refuses less than 8 KiB.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The kernel's queue of connections not yet accepted (Linux caps it at `somaxconn`,
/// 4096 by default). tokio's `bind` asks for 1024; a burst of connections that the accept
/// loop cannot take at once (at the cap, or on a busy CPU) waits here instead of having its
/// handshake dropped.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` with [`BACKLOG`].
pub fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
}

impl Limits {
    /// The cap that the process's descriptor limit allows: a connection is a descriptor,
    /// and running out of them stalls `accept` for everyone (finding 1, case C03). Keeps 64
    /// for NATS, logs and the ops listener.
    pub fn clamped_to_descriptors(mut self) -> Self {
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            let room = usize::try_from(soft).unwrap_or(usize::MAX).saturating_sub(64).max(16);
            if room < self.max_connections {
                tracing::warn!(
                    configured = self.max_connections,
                    allowed = room,
                    "gateway.max_connections is above the descriptor limit (ulimit -n); using what it allows"
                );
                self.max_connections = room;
            }
        }
        self
    }
}

/// Accepts connections and hands each to its own task.
pub struct Listener {
    /// The bound socket.
    listener: TcpListener,
    /// One permit per open connection, taken before `accept` and given back when the
    /// connection's task ends: the descriptors and the memory of connections are bounded
    /// whatever clients do. At the cap the kernel's accept queue holds the rest.
    limit_connections: Arc<Semaphore>,
    /// Connections that have not sent a byte yet, oldest first, so the accept loop can
    /// close one when the cap is reached instead of letting silent sockets lock Gusto out.
    silent: Arc<Silent>,
    /// hyper's HTTP/1 settings. The timer is what makes `header_read_timeout` work at all:
    /// without one hyper switches it off (the bug of finding 1).
    http: hyper::server::conn::http1::Builder,
    limits: Limits,
    /// The routes served on this listener.
    router: Router,
    /// Where closed and evicted connections are counted (the webhook listener only).
    metrics: Option<Arc<GatewayMetrics>>,
    /// Fires once to stop: no new connections, and open ones finish their request.
    shutdown: broadcast::Sender<()>,
}

impl Listener {
    pub fn new(
        listener: TcpListener,
        router: Router,
        limits: Limits,
        metrics: Option<Arc<GatewayMetrics>>,
    ) -> Self {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let (shutdown, _) = broadcast::channel(1);
        Listener {
            listener,
            limit_connections: Arc::new(Semaphore::new(limits.max_connections)),
            silent: Arc::new(Silent::default()),
            http,
            limits,
            router,
            metrics,
            shutdown,
        }
    }

    /// Serves until `stop` resolves, then lets open connections finish the request in hand
    /// (up to 10 s) before returning.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
        let this = Arc::new(self);
        tokio::select! {
            r = this.clone().accept_loop() => r?,
            _ = stop => {}
        }
        let _ = this.shutdown.send(());
        // Every task holds a permit: all of them back means every connection is closed.
        let all = u32::try_from(this.limits.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(10), this.limit_connections.acquire_many(all)).await;
        Ok(())
    }

    async fn accept_loop(self: Arc<Self>) -> std::io::Result<()> {
        loop {
            let permit = loop {
                if let Ok(p) = self.limit_connections.clone().try_acquire_owned() {
                    break p;
                }
                // At the cap: make room by closing the oldest silent connection, once it has
                // been silent for MIN_SILENT (a client that is slow to write its first bytes
                // is not evicted at once); otherwise wait until a connection ends.
                let acquire = self.limit_connections.clone().acquire_owned();
                match self.silent.evict_oldest() {
                    Eviction::Done => {
                        if let Some(m) = &self.metrics {
                            m.connection_closed("evicted_silent");
                        }
                        break acquire.await.expect("the semaphore is never closed");
                    }
                    Eviction::NotYet(wait) => tokio::select! {
                        p = acquire => break p.expect("the semaphore is never closed"),
                        _ = tokio::time::sleep(wait) => {}
                    },
                    Eviction::NoneSilent => break acquire.await.expect("the semaphore is never closed"),
                }
            };
            let socket = self.accept().await?;
            let this = self.clone();
            tokio::spawn(async move { this.serve_connection(socket, permit).await });
        }
    }

    /// Accepts one connection. Running out of descriptors is survived (wait and retry), not
    /// returned: the cap below the descriptor limit should prevent it, but other parts of
    /// the process use descriptors too.
    async fn accept(&self) -> std::io::Result<TcpStream> {
        let mut backoff = Duration::from_millis(5);
        loop {
            match self.listener.accept().await {
                Ok((socket, _)) => {
                    let _ = socket.set_nodelay(true);
                    return Ok(socket);
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn serve_connection(self: Arc<Self>, socket: TcpStream, _permit: OwnedSemaphorePermit) {
        let mut shutdown = self.shutdown.subscribe();
        // 1. Silent: no buffer yet, evictable, at most idle_timeout.
        let (id, evicted) = self.silent.register();
        // `peek`, not `readable()`: tokio reports a fresh socket readable at once.
        let mut first = [0u8; 1];
        let first_byte = tokio::select! {
            // Data that is there wins over an eviction that raced with it.
            biased;
            r = tokio::time::timeout(self.limits.idle_timeout, socket.peek(&mut first)) => match r {
                Ok(Ok(n)) if n > 0 => Ok(()),
                Ok(_) => Err("reset"),
                Err(_) => Err("idle_timeout"),
            },
            _ = evicted.notified() => Err("evicted"),
            _ = shutdown.recv() => Err("shutdown"),
        };
        self.silent.remove(id);
        if let Err(reason) = first_byte {
            // Evictions are counted by the accept loop, which knows one happened.
            if reason == "idle_timeout" {
                if let Some(m) = &self.metrics {
                    m.connection_closed(reason);
                }
            }
            return;
        }

        // 2. HTTP/1 with hyper; the router sees each request. Boxed: a silent connection's
        // task then holds only the small future above, not hyper's connection state.
        Box::pin(self.serve_http(socket, shutdown)).await
    }

    async fn serve_http(&self, socket: TcpStream, mut shutdown: broadcast::Receiver<()>) {
        let activity = Arc::new(Activity::default());
        let router = self.router.clone();
        let act = activity.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut router = router.clone();
            let busy = act.begin();
            async move {
                let resp = tower_service::Service::call(&mut router, req).await;
                drop(busy);
                resp
            }
        });
        let conn = self.http.serve_connection(TokioIo::new(socket), service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        let reason = if e.is_timeout() { "header_timeout" } else { "http_error" };
                        if let Some(m) = &self.metrics {
                            m.connection_closed(reason);
                        }
                        tracing::debug!(error = %e, "connection closed");
                    }
                    return;
                }
                _ = activity.idle_expired(self.limits.idle_timeout), if !closing => {
                    if let Some(m) = &self.metrics {
                        m.connection_closed("idle_timeout");
                    }
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = shutdown.recv(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock)
        // EMFILE (24) and ENFILE (23): out of descriptors; ENOBUFS (105), ENOMEM (12).
        || matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// How long a connection must have been silent before it may be evicted.
pub const MIN_SILENT: Duration = Duration::from_millis(250);

/// Silent connections by age; each can be told to close.
#[derive(Default)]
struct Silent {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, (Instant, Arc<Notify>)>>,
}

enum Eviction {
    Done,
    /// The oldest silent connection may be evicted after this long.
    NotYet(Duration),
    NoneSilent,
}

impl Silent {
    fn register(&self) -> (u64, Arc<Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (Instant::now(), notify.clone()));
        (id, notify)
    }

    fn remove(&self, id: u64) {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Tells the oldest silent connection to close, if it has been silent for
    /// [`MIN_SILENT`]. `notify_one` keeps the wake-up for a task that is not waiting yet, so
    /// none is lost.
    fn evict_oldest(&self) -> Eviction {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let Some(oldest) = waiting.first_entry() else { return Eviction::NoneSilent };
        let age = oldest.get().0.elapsed();
        if age < MIN_SILENT {
            return Eviction::NotYet(MIN_SILENT - age);
        }
        oldest.remove().1.notify_one();
        Eviction::Done
    }
}

/// Whether a kept-alive connection has a request in progress, and since when it has not.
///
/// A request only touches atomics: the idle timer is checked when it fires and re-armed
/// from the last request's end, instead of being re-armed (and the connection's task woken)
/// twice per request.
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// When the last request ended, in µs after `born`.
    last_done_us: AtomicU64,
    born: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_done_us: AtomicU64::new(0),
            born: Instant::now(),
        }
    }
}

struct Busy(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Resolves once the connection has been without a request for `idle`, after its first
    /// one (before it, hyper's header timer is in charge). Never early: a request that
    /// ended while the timer ran moves the deadline on.
    async fn idle_expired(&self, idle: Duration) {
        loop {
            let idle_since = (self.in_flight.load(Ordering::SeqCst) == 0
                && self.served.load(Ordering::SeqCst) > 0)
                .then(|| self.born + Duration::from_micros(self.last_done_us.load(Ordering::SeqCst)));
            match idle_since {
                Some(since) if since + idle <= Instant::now() => return,
                Some(since) => tokio::time::sleep_until(since + idle).await,
                // In a request, or before the first: look again one `idle` later.
                None => tokio::time::sleep(idle).await,
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let us = u64::try_from(self.0.born.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.0.last_done_us.store(us, Ordering::SeqCst);
        self.0.served.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
