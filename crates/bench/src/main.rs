use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// ml-connector benchmarks: every figure against a baseline measured in the same run.
#[derive(Parser)]
#[command(name = "mlc-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Exit 1 when a judged row misses its target.
    #[arg(long, global = true)]
    strict: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Gateway accepted/s and latency against raw JetStream publishes (issue 5).
    Ingest(mlc_bench::ingest::IngestArgs),
    /// Webhook -> Visma outcome latency at fixed rates against a 3-stream JetStream chain (issue 10).
    Freshness(mlc_bench::freshness::FreshnessArgs),
    /// A 1,000-employee reorg: time to in-sync and Gusto calls against the strictly needed calls.
    Budget(mlc_bench::budget::BudgetArgs),
    /// EMPLOYEE_STATE replay through the mapping path against the raw consume rate.
    Replay(mlc_bench::replay::ReplayArgs),
    /// RSS of gateway, projector and writer as processes, idle and at peak.
    Footprint(mlc_bench::footprint::FootprintArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let report = match &cli.command {
        Command::Ingest(a) => mlc_bench::ingest::run(a),
        Command::Freshness(a) => mlc_bench::freshness::run(a),
        Command::Budget(a) => mlc_bench::budget::run(a),
        Command::Replay(a) => mlc_bench::replay::run(a),
        Command::Footprint(a) => mlc_bench::footprint::run(a),
    };
    match report {
        Ok(r) => {
            r.print();
            if cli.strict && !r.passed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("mlc-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
