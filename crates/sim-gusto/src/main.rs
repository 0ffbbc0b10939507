//! `sim-gusto --listen 127.0.0.1:8081 --seed 42 [--employees 40]`: runs the simulator
//! with one seeded company and prints its URL.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Gusto API simulator")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Employees of the seeded company (0: no company).
    #[arg(long, default_value_t = 40)]
    employees: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    let cfg = sim_gusto::SimConfig { listen: Some(args.listen), seed: args.seed, ..Default::default() };
    let sim = sim_gusto::start(cfg).await?;
    if args.employees > 0 {
        let c = sim.seed_company(args.employees);
        println!("company_uuid={}", c.company_uuid);
    }
    println!("{}", sim.base_url());
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
