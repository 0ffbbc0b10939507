//! `mlc`: the one binary of ml-connector. Runs the services, drives the demo, and gives
//! the operator replay, backfill, reconcile, dead-letter and status commands.

use clap::{Parser, Subcommand};
use mlc::run::Service;
use mlc::{cmd, ctx, demo, first_connect, ops, reconcile, run};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "mlc", version, about = "ml-connector: Gusto employees into Visma.net ERP")]
struct Cli {
    /// Configuration file (TOML); `MLC_*` environment variables override it.
    #[arg(long, global = true, env = "MLC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a service (or all three in one process, for small installs).
    Run {
        #[arg(value_enum)]
        service: Service,
    },
    /// The whole sync on embedded defaults with the bundled simulators: no credentials.
    Demo(demo::DemoArgs),
    /// Shows or helps write the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Companies the connector serves.
    Company {
        #[command(subcommand)]
        command: ops::CompanyCommand,
    },
    /// Creates the Gusto webhook subscription, or (--verify) finishes its handshake with the
    /// token the gateway received.
    Subscribe(ops::SubscribeArgs),
    /// First connect: proposes links between Gusto's employees and those Visma already
    /// holds (review file, CSV); with --apply stores the approved ones and ends the review.
    Match(first_connect::MatchArgs),
    /// Initial full sync of a company from Gusto's paged employee list.
    Backfill {
        #[arg(long)]
        company: String,
    },
    /// Re-reads a stream from an offset through the same code path.
    Replay(ops::ReplayArgs),
    /// Compares Gusto and Visma field by field; with --repair emits the fixes.
    Reconcile(reconcile::ReconcileArgs),
    /// Dead letters: list, show, retry, drop.
    Dlq {
        #[command(subcommand)]
        command: ops::DlqCommand,
    },
    /// Consumer lag, companies and grants, parked work, last outcomes.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Every event, snapshot, command and outcome of one employee, with trace ids.
    Explain {
        #[arg(long)]
        employee: String,
        #[arg(long)]
        json: bool,
    },
    /// Preflight: NATS, store, the Gusto application, every Visma tenant, and (with
    /// --company, or --mapping and --visma-tenant) every Visma target the mapping names.
    /// One line per check; exit 1 when any fails.
    Check(cmd::check::CheckArgs),
    /// Mapping files: check one offline, or preview what it would do to Visma.
    Mapping {
        #[command(subcommand)]
        command: cmd::mapping::MappingCommand,
    },
    /// Runs a bundled simulator and prints its credentials as a config section.
    Sim(cmd::sim::SimArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Writes a commented configuration with every key, its default and its variable.
    Init {
        /// Where to write it; `-` for standard output.
        #[arg(default_value = "mlc.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Prints the effective configuration, secrets redacted, each value with its origin
    /// (default, file, env).
    Print,
    /// Prints a new random store encryption key (base64 of 32 bytes).
    GenKey,
    /// Lists the environment variables and the keys they set.
    Env,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", mlc_telemetry::redact(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let load = || mlc_config::Config::load(cli.config.as_deref());
    match cli.command {
        Command::Run { service } => {
            let cfg = load()?;
            run::run(cfg, service).await?;
        }
        Command::Demo(args) => return demo::demo(args, cli.config.as_deref()).await,
        Command::Config { command } => match command {
            ConfigCommand::Init { path, force } => {
                if path.as_os_str() == "-" {
                    print!("{}", mlc_config::DEFAULTS_TOML);
                } else if path.exists() && !force {
                    anyhow::bail!("{} exists; --force overwrites it", path.display());
                } else {
                    std::fs::write(&path, mlc_config::DEFAULTS_TOML)?;
                    println!(
                        "wrote {}: every key with its default; edit it, then `mlc check`",
                        path.display()
                    );
                }
            }
            ConfigCommand::Print => {
                let env: Vec<(String, String)> = std::env::vars().collect();
                let (cfg, origins) = mlc_config::Config::load_with_origins(cli.config.as_deref(), &env)?;
                if cli.config.is_none() {
                    println!("# no config file (--config / MLC_CONFIG): built-in defaults and environment");
                }
                print!("{}", cfg.to_redacted_toml_with_origins(&origins));
            }
            ConfigCommand::GenKey => println!("{}", mlc_store::EncryptionKey::generate_base64()),
            ConfigCommand::Env => {
                for (env, key) in mlc_config::Config::env_keys() {
                    println!("{env:<32} {key}");
                }
                println!("{:<32} visma.tenants.NAME.FIELD (FIELD: CLIENT_ID, CLIENT_SECRET, TENANT_ID, IPP_COMPANY_ID)", "MLC_VISMA_TENANTS__NAME__FIELD");
            }
        },
        Command::Company { command } => ops::company(load()?, command).await?,
        Command::Subscribe(args) => ops::subscribe(load()?, args).await?,
        Command::Backfill { company } => {
            let ctx = ctx::Ctx::connect(load()?, "mlc-backfill").await?;
            let n = ops::backfill(&ctx, &company, true).await?;
            println!("backfill of {company}: {n} employees queued for hydration");
        }
        Command::Match(args) => {
            let ctx = ctx::Ctx::connect(load()?, "mlc-match").await?;
            first_connect::run(&ctx, &args).await?;
        }
        Command::Replay(args) => ops::replay(load()?, args).await?,
        Command::Reconcile(args) => {
            let ctx = ctx::Ctx::connect(load()?, "mlc-reconcile").await?;
            let report = reconcile::reconcile(&ctx, &args).await?;
            // Drift fails the command, unless it was just repaired.
            if !report.in_sync() && !args.repair {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Dlq { command } => ops::dlq(load()?, command).await?,
        Command::Status { json } => ops::status(load()?, json).await?,
        Command::Explain { employee, json } => ops::explain(load()?, &employee, json).await?,
        Command::Check(args) => return cmd::check::check(load()?, args).await,
        Command::Mapping { command } => {
            // `check` is offline: it must work without any configuration.
            let cfg = match &command {
                cmd::mapping::MappingCommand::Check { .. } => None,
                _ => Some(load()?),
            };
            return cmd::mapping::run(cfg, command).await;
        }
        Command::Sim(args) => cmd::sim::run(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}
