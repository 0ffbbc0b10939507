//! `mlc run gateway|projector|writer|console|all`: telemetry for the process, then
//! [`crate::startup::start`] until Ctrl-C or SIGTERM.

use crate::ctx::shutdown_signal;
use crate::startup::{self, Role};
use mlc_config::Config;

/// The services `mlc run` starts.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Service {
    Gateway,
    Projector,
    Writer,
    /// The operator console (`console.listen`, docs/CONSOLE.md).
    Console,
    /// Gateway, projector, writer and console in one process.
    All,
}

impl Service {
    pub fn roles(self) -> &'static [Role] {
        match self {
            Service::Gateway => &[Role::Gateway],
            Service::Projector => &[Role::Projector],
            Service::Writer => &[Role::Writer],
            Service::Console => &[Role::Console],
            Service::All => &Role::ALL,
        }
    }
}

pub async fn run(cfg: Config, service: Service) -> anyhow::Result<()> {
    let name = match service.roles() {
        [one] => one.name(),
        _ => "mlc",
    };
    let _telemetry = mlc_telemetry::init(&mlc_telemetry::TelemetrySettings {
        service_name: format!("mlc-{name}"),
        log_format: cfg.telemetry.log_format.clone(),
        log_filter: cfg.telemetry.log_filter.clone(),
        otlp_endpoint: cfg.telemetry.otlp_endpoint.clone(),
    })?;
    startup::start(cfg, service.roles(), shutdown_signal()).await
}
