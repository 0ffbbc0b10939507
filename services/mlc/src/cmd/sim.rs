//! `mlc sim gusto|visma`: a bundled simulator on a local port, with its credentials printed
//! as a configuration section ready to paste into `mlc.toml`.

use crate::ctx::shutdown_signal;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
pub enum Simulator {
    /// Gusto's API, OAuth and webhooks.
    Gusto,
    /// Visma.net ERP's API and Visma Connect's token endpoint.
    Visma,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum VismaSeed {
    /// The departments, branches, employee classes, calendar and office segment values that
    /// `schemas/examples/mapping.example.toml` names.
    Nordic,
}

#[derive(Args)]
pub struct SimArgs {
    /// Which simulator: gusto or visma.
    #[arg(value_enum)]
    pub which: Simulator,
    /// The address to listen on (port 0: any free port, printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Gusto: seed one company ("Acme AS") with this many employees (0: none).
    #[arg(long, default_value_t = 20)]
    pub employees: usize,
    /// Visma: load setup data into the tenant.
    #[arg(long, value_enum)]
    pub seed: Option<VismaSeed>,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    match args.which {
        Simulator::Gusto => {
            let handle =
                sim_gusto::start(sim_gusto::SimConfig { listen: Some(args.listen), ..Default::default() })
                    .await?;
            let cfg = handle.sim().config().clone();
            outln!("sim-gusto listening on {}", handle.base_url());
            if args.employees > 0 {
                let c = handle.sim().seed_named_company("Acme AS", args.employees);
                outln!("company Acme AS ({}) with {} employees", c.company_uuid, args.employees);
            }
            let (url, id, secret) = (handle.base_url(), cfg.client_id, cfg.client_secret);
            outln!(
                "\n# in mlc.toml, in place of its [gusto] section:\n[gusto]\nbase_url = \"{url}\"\n\
                 client_id = \"{id}\"\nclient_secret = \"{secret}\"\n\
                 # the gateway's callback (gateway.listen); the simulator accepts any redirect URI\n\
                 redirect_uri = \"http://127.0.0.1:8080/oauth/callback\"\n\
                 \n# or in the shell that runs mlc:\nexport MLC_GUSTO_BASE_URL={url} MLC_GUSTO_CLIENT_ID={id} \
                 MLC_GUSTO_CLIENT_SECRET={secret}\n"
            );
            shutdown_signal().await;
            handle.shutdown().await;
        }
        Simulator::Visma => {
            let handle =
                sim_visma::start(sim_visma::SimConfig { listen: Some(args.listen), ..Default::default() })
                    .await?;
            outln!("sim-visma listening on {}", handle.base_url());
            if let Some(VismaSeed::Nordic) = args.seed {
                handle
                    .seed(sim_visma::DEFAULT_TENANT, &sim_visma::nordic_seed())
                    .map_err(|e| anyhow::anyhow!("seeding the tenant: {e}"))?;
                outln!(
                    "tenant seeded with the example mapping's departments, branches, classes and segments"
                );
            }
            let (url, token) = (handle.base_url(), handle.token_url());
            let (id, secret, tenant) =
                (sim_visma::DEFAULT_CLIENT_ID, sim_visma::DEFAULT_CLIENT_SECRET, sim_visma::DEFAULT_TENANT);
            outln!(
                "\n# in mlc.toml, in place of its [visma] section:\n[visma]\nbase_url = \"{url}\"\n\
                 token_url = \"{token}\"\n\n[visma.tenants.nordic]\nclient_id = \"{id}\"\n\
                 client_secret = \"{secret}\"\ntenant_id = \"{tenant}\"\n\
                 \n# or in the shell that runs mlc:\nexport MLC_VISMA_BASE_URL={url} MLC_VISMA_TOKEN_URL={token} \
                 MLC_VISMA_TENANTS__NORDIC__CLIENT_ID={id} MLC_VISMA_TENANTS__NORDIC__CLIENT_SECRET={secret} \
                 MLC_VISMA_TENANTS__NORDIC__TENANT_ID={tenant}\n"
            );
            shutdown_signal().await;
        }
    }
    Ok(())
}
