//! `sim-visma`: runs the Visma.net ERP simulator until interrupted.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "sim-visma", about = "Visma.net ERP API simulator")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SIM_VISMA_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Requests per rate window per (tenant, client).
    #[arg(long, default_value_t = 15_000)]
    hourly_limit: u32,
    /// Answer creates with `200 {}` (Spec 2025) instead of `201` + ETag.
    #[arg(long)]
    create_200: bool,
    /// Seed of the fault-injection RNG.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Load the demo setup (departments ADMIN/SALES/ENG, branch 1, class EMPSTD, calendar MAIN)
    /// into the default tenant.
    #[arg(long)]
    demo_seed: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    let cfg = sim_visma::SimConfig {
        listen: Some(args.listen),
        hourly_limit: args.hourly_limit,
        create_style: if args.create_200 {
            sim_visma::CreateStyle::Ok200
        } else {
            sim_visma::CreateStyle::Created201
        },
        seed: args.seed,
        ..sim_visma::SimConfig::default()
    };
    let handle = sim_visma::start(cfg).await?;
    if args.demo_seed {
        handle.seed(sim_visma::DEFAULT_TENANT, &sim_visma::demo_seed())?;
    }
    println!("{}", handle.base_url());
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}
