//! The one place where a configuration becomes running services: `mlc run`, the bench
//! and the tests call [`start`] with the roles they want.
//!
//! Per role: settings from the configuration (`Settings::from_config`, pure), the
//! dependencies from [`mlc_runtime`], the service's own listener, its ops listener
//! (`/healthz`, `/readyz`, `/metrics` from [`mlc_telemetry::ops_router`]) and its run loop.
//! All of them stop together: on `shutdown`, or as soon as one stops on its own (an error).

use anyhow::Context as _;
use mlc_config::Config;
use mlc_runtime::{Access, Deps};
use mlc_telemetry::ReadyFlag;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio::task::JoinSet;

/// A part of the connector a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Projector,
    Writer,
    Console,
}

impl Role {
    /// What `mlc run all` starts.
    pub const ALL: [Role; 4] = [Role::Gateway, Role::Projector, Role::Writer, Role::Console];

    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Projector => "projector",
            Role::Writer => "writer",
            Role::Console => "console",
        }
    }
}

type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Runs `roles` until `shutdown` resolves (then lets each finish what it holds) or until
/// one of them stops on its own, which is an error and stops the others too.
pub async fn start(cfg: Config, roles: &[Role], shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let name = match roles {
        [one] => format!("mlc-{}", one.name()),
        _ => "mlc".to_string(),
    };
    // The gateway faces the internet: alone, it opens no store and needs no encryption key.
    let with_store = roles.iter().any(|r| *r != Role::Gateway);
    let deps = Arc::new(Deps::connect(cfg, &name, Access::Service, with_store).await?);
    tracing::info!(
        nats = %mlc_bus::redact_url(&deps.cfg.nats.url),
        prefix = %deps.cfg.nats.stream_prefix,
        roles = ?roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "starting"
    );

    let (stop_tx, _) = broadcast::channel::<()>(1);
    let mut tasks = JoinSet::new();
    for role in roles {
        let built = match role {
            Role::Gateway => gateway(&deps, &stop_tx).await?,
            Role::Projector => projector(&deps, &stop_tx).await?,
            Role::Writer => writer(&deps, &stop_tx).await?,
            Role::Console => console(&deps, &stop_tx).await?,
        };
        for task in built {
            tasks.spawn(task);
        }
    }

    let result = tokio::select! {
        _ = shutdown => Ok(()),
        Some(done) = tasks.join_next() => match done {
            // A service that stops on its own is an error: bring the others down too.
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a service task panicked: {e}")),
            Ok(Ok(())) => Err(anyhow::anyhow!("a service stopped unexpectedly")),
        },
    };
    let _ = stop_tx.send(());
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "stopped with an error");
        }
    }
    if let Some(store) = &deps.store {
        store.close().await;
    }
    tracing::info!("stopped");
    result
}

/// A future that resolves when `start` stops its services.
fn stop(tx: &broadcast::Sender<()>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = tx.subscribe();
    async move {
        let _ = rx.recv().await;
    }
}

async fn bind(addr: &str, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {key} {addr}"))
}

/// Serves `router` on `listener` until `stop`.
fn serve_ops(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    what: &'static str,
) -> Task {
    Box::pin(async move { axum::serve(listener, router).with_graceful_shutdown(stop).await.context(what) })
}

async fn gateway(deps: &Deps, stop_tx: &broadcast::Sender<()>) -> anyhow::Result<Vec<Task>> {
    let cfg = &deps.cfg;
    // A connection is a descriptor: take what the hard limit allows.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the descriptor limit");
    }
    let settings = mlc_gateway::Settings::from_config(cfg);
    let gw = mlc_gateway::Gateway::new(deps.publisher.clone(), deps.topo.clone(), &settings);
    tokio::spawn(gw.clone().watch_readiness(deps.nats.clone()));
    tokio::spawn(gw.clone().watch_keys(deps.js.clone()));
    let listener = mlc_gateway::bind(&cfg.gateway.listen)
        .with_context(|| format!("binding gateway.listen {}", cfg.gateway.listen))?;
    let ops = bind(&cfg.gateway.ops_listen, "gateway.ops_listen").await?;
    tracing::info!(listen = %cfg.gateway.listen, ops_listen = %cfg.gateway.ops_listen, "gateway listening");
    let (s, g) = (stop(stop_tx), gw.clone());
    let ops: Task =
        Box::pin(async move { mlc_gateway::serve_ops(ops, g, s).await.context("gateway ops listener") });
    let (s, limits) = (stop(stop_tx), settings.limits);
    let serve: Task =
        Box::pin(async move { mlc_gateway::serve(listener, gw, limits, s).await.context("gateway") });
    Ok(vec![ops, serve])
}

async fn projector(deps: &Deps, stop_tx: &broadcast::Sender<()>) -> anyhow::Result<Vec<Task>> {
    let cfg = &deps.cfg;
    let store = deps.store()?.clone();
    let settings = mlc_projector::ProjectorSettings::from_config(cfg)?;
    let gusto = mlc_runtime::clients::shared_gusto_client(cfg, store.clone(), &deps.js, &deps.topo).await?;
    let p = mlc_projector::Projector::new(
        deps.js.clone(),
        deps.publisher.clone(),
        store.clone(),
        gusto,
        settings,
    );
    let ready = ReadyFlag::new(
        "NATS not connected, GUSTO_EVENTS missing, or the store not answering or refusing writes",
    );
    tokio::spawn(mlc_bus::watch_ready(
        deps.nats.clone(),
        Some(deps.topo.stream(mlc_bus::StreamKind::GustoEvents)),
        move || {
            let store = store.clone();
            async move { mlc_runtime::store_answers(&store).await }
        },
        ready.clone(),
    ));
    let listener = bind(&cfg.projector.metrics_listen, "projector.metrics_listen").await?;
    let metrics = p.clone();
    let router = mlc_telemetry::ops_router(move || metrics.metrics().encode(), ready);
    let ops = serve_ops(listener, router, stop(stop_tx), "projector metrics");
    let s = stop(stop_tx);
    let run: Task = Box::pin(async move { p.run(s).await.context("projector") });
    Ok(vec![ops, run])
}

async fn writer(deps: &Deps, stop_tx: &broadcast::Sender<()>) -> anyhow::Result<Vec<Task>> {
    let cfg = &deps.cfg;
    let store = deps.store()?.clone();
    let settings = mlc_writer::WriterSettings::from_config(cfg, mlc_runtime::clients::visma_clients(cfg)?)?;
    let listener = bind(&cfg.writer.metrics_listen, "writer.metrics_listen").await?;
    let ops =
        serve_ops(listener, mlc_writer::router(settings.metrics.clone()), stop(stop_tx), "writer metrics");
    let (s, nats) = (stop(stop_tx), deps.nats.clone());
    let run: Task =
        Box::pin(async move { mlc_writer::run(nats, store, settings, s).await.context("writer") });
    Ok(vec![ops, run])
}

/// The operator console (docs/CONSOLE.md): refuses to start off loopback without a login.
async fn console(deps: &Deps, stop_tx: &broadcast::Sender<()>) -> anyhow::Result<Vec<Task>> {
    let settings = crate::console::Settings::from_config(&deps.cfg)?;
    let listener = bind(&settings.listen, "console.listen").await?;
    tracing::info!(listen = %settings.listen, login = !settings.open, "console listening");
    let serve = crate::console::serve(listener, deps, settings, stop(stop_tx))?;
    Ok(vec![Box::pin(serve)])
}
