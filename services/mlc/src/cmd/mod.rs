//! The operator's commands, one module each; `crate::cli` parses and dispatches to them.

pub mod backfill;
pub mod check;
pub mod company;
pub mod connect;
pub mod dlq;
pub mod explain;
pub mod mapping;
pub mod replay;
pub mod retry;
pub mod sim;
pub mod status;
pub mod subscribe;

use crate::ctx::Ctx;
use crate::exit::{CliError, Code};
use mlc_runtime::Access;

/// The context of a read-only command (`status`, `explain`, `dlq list|show`, `replay
/// --dry-run`): creates and changes no stream or consumer ([`Access::ReadOnly`]). A missing
/// stream is a configuration error (exit 78) that names the prefix and the prefixes this
/// server does hold, so a typo in `nats.stream_prefix` is seen for what it is.
pub async fn read_only(cfg: mlc_config::Config, name: &str) -> anyhow::Result<Ctx> {
    let nats = cfg.nats.clone();
    let prefix = cfg.nats.stream_prefix.clone();
    match Ctx::connect_as(cfg, name, Access::ReadOnly).await {
        Ok(ctx) => Ok(ctx),
        Err(e) if e.chain().any(|c| matches!(c.downcast_ref(), Some(mlc_bus::BusError::Topology(_)))) => {
            let known = match mlc_bus::connect_now(&nats, name).await {
                Ok(c) => crate::status::known_prefixes(&async_nats::jetstream::new(c)).await,
                Err(_) => "unknown".into(),
            };
            Err(e.context(CliError {
                code: Code::Config,
                message: format!(
                    "nothing to read under the stream prefix `{prefix}` (nats.stream_prefix / \
                     MLC_STREAM_PREFIX); prefixes with streams on this server: {known}; nothing was created"
                ),
            }))
        }
        Err(e) => Err(e),
    }
}
