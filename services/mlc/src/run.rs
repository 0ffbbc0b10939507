//! `mlc run gateway|projector|writer|all` and `mlc sim`.

use crate::ctx::{self, shutdown_signal};
use anyhow::Context as _;
use mlc_bus::Publisher;
use mlc_config::Config;
use std::sync::Arc;
use std::time::Duration;

/// The services `mlc run` starts.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Service {
    Gateway,
    Projector,
    Writer,
    All,
}

pub async fn run(cfg: Config, service: Service) -> anyhow::Result<()> {
    let name = match service {
        Service::Gateway => "gateway",
        Service::Projector => "projector",
        Service::Writer => "writer",
        Service::All => "mlc",
    };
    let _telemetry = mlc_telemetry::init(&mlc_telemetry::TelemetrySettings {
        service_name: format!("mlc-{name}"),
        log_format: cfg.telemetry.log_format.clone(),
        log_filter: cfg.telemetry.log_filter.clone(),
        otlp_endpoint: cfg.telemetry.otlp_endpoint.clone(),
    })?;
    // The gateway faces the internet: it opens no store and needs no encryption key.
    let store = match service {
        Service::Gateway => None,
        _ => Some(Arc::new(ctx::open_store(&cfg).await?)),
    };
    let client = mlc_bus::connect(&cfg.nats, &format!("mlc-{name}")).await?;
    let topo = ctx::topology(&cfg)?;
    let js = async_nats::jetstream::new(client.clone());
    mlc_bus::ensure_topology(&js, &topo).await.context("creating the JetStream topology")?;
    tracing::info!(service = name, nats = %mlc_bus::redact_url(&cfg.nats.url), prefix = %cfg.nats.stream_prefix, "starting");

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stop = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    if matches!(service, Service::Gateway | Service::All) {
        // A connection is a descriptor: take what the hard limit allows.
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            tracing::warn!(error = %e, "cannot raise the descriptor limit");
        }
        let publisher = Publisher::new(client.clone(), Duration::from_millis(cfg.nats.publish_timeout_ms));
        let settings = mlc_gateway::Settings::from_config(&cfg.gateway);
        let gw = mlc_gateway::Gateway::new(publisher, topo.clone(), &settings);
        tokio::spawn(gw.clone().watch_readiness(client.clone()));
        tokio::spawn(gw.clone().watch_keys(js.clone()));
        let listener = mlc_gateway::bind(&cfg.gateway.listen)
            .with_context(|| format!("binding gateway.listen {}", cfg.gateway.listen))?;
        let ops = tokio::net::TcpListener::bind(&cfg.gateway.ops_listen)
            .await
            .with_context(|| format!("binding gateway.ops_listen {}", cfg.gateway.ops_listen))?;
        tracing::info!(listen = %cfg.gateway.listen, ops_listen = %cfg.gateway.ops_listen, "gateway listening");
        let s = stop(&stop_tx);
        let g = gw.clone();
        tasks.spawn(async move { mlc_gateway::serve_ops(ops, g, s).await.context("gateway ops listener") });
        let s = stop(&stop_tx);
        let limits = settings.limits;
        tasks.spawn(async move { mlc_gateway::serve(listener, gw, limits, s).await.context("gateway") });
    }
    if matches!(service, Service::Projector | Service::All) {
        let store = store.clone().context("the projector needs the store")?;
        let gusto = ctx::shared_gusto_client(&cfg, store.clone(), &js, &topo).await?;
        let mut settings = mlc_projector::ProjectorSettings::new(topo.clone());
        settings.fetch_concurrency = cfg.projector.workers.clamp(1, 64);
        settings.burst_threshold = cfg.projector.burst_threshold;
        settings.mappings_dir = cfg.projector.mappings_dir.clone();
        if cfg.nats.partitions > 1 {
            settings.leases = Some(mlc_bus::lease::LeaseConfig {
                role: "projector".into(),
                replica: cfg.replica_id(),
                ttl: Duration::from_millis(cfg.nats.lease_ttl_ms),
            });
        }
        settings.catch_up_every =
            (cfg.projector.catch_up_secs > 0).then(|| Duration::from_secs(cfg.projector.catch_up_secs));
        let publisher = Publisher::new(client.clone(), Duration::from_millis(cfg.nats.publish_timeout_ms));
        let p = mlc_projector::Projector::new(js.clone(), publisher, store.clone(), gusto, settings);
        let listener = tokio::net::TcpListener::bind(&cfg.projector.metrics_listen)
            .await
            .with_context(|| format!("binding projector.metrics_listen {}", cfg.projector.metrics_listen))?;
        let router = mlc_projector::router(p.clone());
        let s = stop(&stop_tx);
        tasks.spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(s).await.context("projector metrics")
        });
        let s = stop(&stop_tx);
        tasks.spawn(async move { p.run(s).await.context("projector") });
    }
    if matches!(service, Service::Writer | Service::All) {
        let settings = mlc_writer::WriterSettings::from_config(&cfg)?;
        let listener = tokio::net::TcpListener::bind(&cfg.writer.metrics_listen)
            .await
            .with_context(|| format!("binding writer.metrics_listen {}", cfg.writer.metrics_listen))?;
        let router = mlc_writer::router(settings.metrics.clone());
        let s = stop(&stop_tx);
        tasks.spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(s).await.context("writer metrics")
        });
        let s = stop(&stop_tx);
        let store = store.clone().context("the writer needs the store")?;
        let client = client.clone();
        tasks.spawn(async move { mlc_writer::run(client, store, settings, s).await.context("writer") });
    }

    tokio::select! {
        _ = shutdown_signal() => {}
        Some(done) = tasks.join_next() => {
            // A service that stops on its own is an error: bring the others down too.
            let _ = stop_tx.send(());
            match done {
                Ok(Err(e)) => return Err(e),
                Err(e) => anyhow::bail!("a service task panicked: {e}"),
                Ok(Ok(())) => anyhow::bail!("a service stopped unexpectedly"),
            }
        }
    }
    let _ = stop_tx.send(());
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "stopped with an error");
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}
