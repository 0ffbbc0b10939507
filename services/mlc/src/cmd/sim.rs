//! `mlc sim gusto|visma`: a bundled simulator on a local port, with its credentials printed
//! as a configuration section ready to paste into `mlc.toml`.

use crate::ctx::shutdown_signal;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
pub enum Simulator {
    Gusto,
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
    #[arg(value_enum)]
    pub which: Simulator,
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
            println!("sim-gusto listening on {}", handle.base_url());
            if args.employees > 0 {
                let c = handle.sim().seed_named_company("Acme AS", args.employees);
                println!("company Acme AS ({}) with {} employees", c.company_uuid, args.employees);
            }
            println!(
                "\n# paste into mlc.toml:\n[gusto]\nbase_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
                 # the gateway's callback (gateway.listen); the simulator accepts any redirect URI\n\
                 redirect_uri = \"http://127.0.0.1:8080/oauth/callback\"\n",
                handle.base_url(),
                cfg.client_id,
                cfg.client_secret
            );
            shutdown_signal().await;
            handle.shutdown().await;
        }
        Simulator::Visma => {
            let handle =
                sim_visma::start(sim_visma::SimConfig { listen: Some(args.listen), ..Default::default() })
                    .await?;
            println!("sim-visma listening on {}", handle.base_url());
            if let Some(VismaSeed::Nordic) = args.seed {
                handle
                    .seed(sim_visma::DEFAULT_TENANT, &sim_visma::nordic_seed())
                    .map_err(|e| anyhow::anyhow!("seeding the tenant: {e}"))?;
                println!(
                    "tenant seeded with the example mapping's departments, branches, classes and segments"
                );
            }
            println!(
                "\n# paste into mlc.toml:\n[visma]\nbase_url = \"{}\"\ntoken_url = \"{}\"\n\n[visma.tenants.nordic]\n\
                 client_id = \"{}\"\nclient_secret = \"{}\"\ntenant_id = \"{}\"\n",
                handle.base_url(),
                handle.token_url(),
                sim_visma::DEFAULT_CLIENT_ID,
                sim_visma::DEFAULT_CLIENT_SECRET,
                sim_visma::DEFAULT_TENANT
            );
            shutdown_signal().await;
        }
    }
    Ok(())
}
