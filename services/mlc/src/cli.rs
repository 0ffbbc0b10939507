//! The command line: clap's definitions and the dispatch to the commands. `main.rs`
//! parses with [`Cli`] and calls [`dispatch`]; the completions, the man page and
//! docs/CLI.md are generated from the same definitions ([`command`]).

use crate::exit::{self, Code};
use crate::run::Service;
use crate::{cmd, demo, first_connect, reconcile, run};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mlc",
    version,
    about = "ml-connector: Gusto employees into Visma.net ERP",
    long_about = "ml-connector: Gusto employees into Visma.net ERP, one way.\n\n\
                  Runs the services (gateway, projector, writer), drives the demo, and gives the \
                  operator status, explain, replay, backfill, reconcile and dead-letter commands. \
                  Every command reads the configuration from --config (TOML) and MLC_* variables.",
    after_help = "Example: mlc --config mlc.toml status --watch",
    after_long_help = exit::EXIT_STATUS,
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (TOML); `MLC_*` environment variables override it.
    #[arg(long, global = true, env = "MLC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print one JSON document on standard output instead of text (shapes: docs/CLI.md);
    /// no progress is shown.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Runs a service (or all of them in one process, for small installs).
    ///
    /// Example: mlc run all
    Run {
        /// Which service: gateway, projector, writer, console (the operator console,
        /// docs/CONSOLE.md), or all four.
        #[arg(value_enum)]
        service: Service,
    },
    /// The whole sync on embedded defaults with the bundled simulators: no credentials.
    ///
    /// Starts its own nats-server unless given --nats-url.
    ///
    /// Example: mlc demo --employees 150
    Demo(demo::DemoArgs),
    /// Shows or helps write the configuration.
    ///
    /// Example: mlc config print
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Companies the connector serves: connect, add, list, pause, resume.
    ///
    /// Example: mlc company list
    Company {
        #[command(subcommand)]
        command: cmd::company::CompanyCommand,
    },
    /// Creates the Gusto webhook subscription, or (--verify) finishes its handshake with the
    /// token the gateway received.
    ///
    /// Example: mlc subscribe --url https://connector.example.com/webhooks/gusto
    Subscribe(cmd::subscribe::SubscribeArgs),
    /// First connect: proposes links between Gusto's employees and those Visma already
    /// holds (review file, CSV); with --apply stores the approved ones and ends the review.
    ///
    /// Example: mlc match --company 7d1c0a52-... --out review.csv
    Match(first_connect::MatchArgs),
    /// Initial full sync of a company from Gusto's paged employee list; on a terminal it
    /// waits until every employee is applied in Visma and prints what happened.
    ///
    /// Example: mlc backfill --company 7d1c0a52-... --wait
    Backfill(cmd::backfill::BackfillArgs),
    /// Re-reads a stream from an offset through the same code path.
    ///
    /// Example: mlc replay employee-state --from-seq 1 --dry-run
    Replay(cmd::replay::ReplayArgs),
    /// Compares Gusto and Visma field by field; with --repair emits the fixes. Exit 3 on
    /// drift.
    ///
    /// Example: mlc reconcile --company 7d1c0a52-... --quiet
    Reconcile(reconcile::ReconcileArgs),
    /// Dead letters: list, show, retry, drop (one, a filter, or all).
    ///
    /// Example: mlc dlq list --stage writer
    Dlq {
        #[command(subcommand)]
        command: cmd::dlq::DlqCommand,
    },
    /// The operator's one screen: services, streams and their sequences, consumers, and per
    /// company the grant, Gusto budget, parked work, dead letters and last outcome. Reads
    /// only; a stream prefix without streams is an error (exit 78).
    ///
    /// Example: mlc status --watch 5
    Status(cmd::status::StatusArgs),
    /// One employee's timeline: events, snapshots, commands and Visma outcomes, with what
    /// changed and the trace ids.
    ///
    /// Example: mlc explain --employee 3f0e7c1a-...
    Explain(cmd::explain::ExplainArgs),
    /// Preflight: NATS, store, the Gusto application, every Visma tenant, and (with
    /// --company, or --mapping and --visma-tenant) every Visma target the mapping names.
    /// One line per check; exit 1 when any fails.
    ///
    /// Example: mlc check --mapping mapping.toml --visma-tenant nordic
    Check(cmd::check::CheckArgs),
    /// Mapping files: check one offline, or preview what it would do to Visma.
    ///
    /// Example: mlc mapping check mapping.toml
    Mapping {
        #[command(subcommand)]
        command: cmd::mapping::MappingCommand,
    },
    /// As the NATS admin: creates the JetStream streams, consumers and buckets, or brings
    /// them to the current configuration. Run it after installing and after an upgrade
    /// (the services' users may not create streams; read-only commands create nothing).
    ///
    /// Example: mlc setup   (with the admin NATS user: MLC_NATS_USER=admin)
    Setup,
    /// Runs a bundled simulator and prints its credentials as a config section.
    ///
    /// Example: mlc sim visma --seed nordic
    Sim(cmd::sim::SimArgs),
    /// Prints a shell completion script.
    ///
    /// Example: mlc completions bash > /etc/bash_completion.d/mlc
    Completions {
        /// The shell: bash, elvish, fish, powershell or zsh.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff), or writes one per command into a directory.
    ///
    /// Example: mlc man | man -l -
    Man {
        /// Write mlc.1, mlc-status.1, ... into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Prints docs/CLI.md, the command reference, generated from these definitions.
    ///
    /// Example: mlc docs > docs/CLI.md
    Docs,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Writes a commented configuration with every key, its default and its variable.
    ///
    /// Example: mlc config init mlc.toml
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
    ///
    /// Example: mlc --config mlc.toml config print
    Print,
    /// Prints a new random store encryption key (base64 of 32 bytes).
    ///
    /// Example: mlc config gen-key   (then MLC_STORE_ENCRYPTION_KEY=<that key>)
    GenKey,
    /// Lists the environment variables and the keys they set.
    ///
    /// Example: mlc config env
    Env,
}

/// The clap tree, for completions, the man page, docs/CLI.md and the tests.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Commands without a JSON answer: they run until stopped, or print a document of their own.
fn json_unsupported(c: &Command) -> Option<&'static str> {
    match c {
        Command::Run { .. } => Some("run"),
        Command::Demo(_) => Some("demo"),
        Command::Sim(_) => Some("sim"),
        Command::Completions { .. } => Some("completions"),
        Command::Man { .. } => Some("man"),
        Command::Docs => Some("docs"),
        Command::Company { command: cmd::company::CompanyCommand::Connect(_) } => Some("company connect"),
        _ => None,
    }
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.json {
        if let Some(name) = json_unsupported(&cli.command) {
            return Err(exit::usage(format!("`mlc {name}` has no --json output")));
        }
    }
    let load = || mlc_config::Config::load(cli.config.as_deref());
    let json = cli.json;
    match cli.command {
        Command::Run { service } => run::run(load()?, service).await?,
        Command::Demo(args) => return demo::demo(args, cli.config.as_deref()).await,
        Command::Config { command } => config(command, cli.config.as_deref(), json)?,
        Command::Company { command } => cmd::company::company(load()?, command).await?,
        Command::Subscribe(args) => cmd::subscribe::subscribe(load()?, args).await?,
        Command::Backfill(args) => cmd::backfill::run(load()?, args).await?,
        Command::Match(args) => {
            let ctx = crate::ctx::Ctx::connect(load()?, "mlc-match").await?;
            first_connect::run(&ctx, &args).await?;
        }
        Command::Replay(args) => cmd::replay::replay(load()?, args).await?,
        Command::Reconcile(args) => {
            // Comparing reads; only --repair emits.
            let ctx = if args.repair {
                crate::ctx::Ctx::connect(load()?, "mlc-reconcile").await?
            } else {
                cmd::read_only(load()?, "mlc-reconcile").await?
            };
            let report = reconcile::reconcile(&ctx, &args).await?;
            // Drift fails the command, unless it was just repaired.
            if !report.in_sync() && !args.repair {
                return Ok(Code::Drift.into());
            }
        }
        Command::Dlq { command } => return cmd::dlq::dlq(load()?, command).await,
        Command::Status(args) => cmd::status::run(load()?, args).await?,
        Command::Explain(args) => cmd::explain::run(load()?, args).await?,
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
        Command::Setup => setup(load()?).await?,
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut command(), "mlc", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
        }
        Command::Man { dir } => man(dir)?,
        Command::Docs => out!("{}", crate::docs::markdown(&command())),
    }
    Ok(ExitCode::SUCCESS)
}

fn config(command: ConfigCommand, file: Option<&std::path::Path>, json: bool) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Init { path, force } => {
            if path.as_os_str() == "-" {
                out!("{}", mlc_config::DEFAULTS_TOML);
            } else if path.exists() && !force {
                return Err(exit::usage(format!("{} exists; --force overwrites it", path.display())));
            } else {
                std::fs::write(&path, mlc_config::DEFAULTS_TOML)?;
                if json {
                    crate::output::json(&serde_json::json!({ "written": path }))?;
                } else {
                    outln!("wrote {}: every key with its default; edit it, then `mlc check`", path.display());
                }
            }
        }
        ConfigCommand::Print => {
            let env: Vec<(String, String)> = std::env::vars().collect();
            let (cfg, origins) = mlc_config::Config::load_with_origins(file, &env)?;
            if json {
                // The same redacted document as the text, as JSON.
                let text = cfg.to_redacted_toml_with_origins(&origins);
                let value: toml::Value = toml::from_str(&text)?;
                crate::output::json(&value)?;
            } else {
                if file.is_none() {
                    outln!("# no config file (--config / MLC_CONFIG): built-in defaults and environment");
                }
                out!("{}", cfg.to_redacted_toml_with_origins(&origins));
            }
        }
        ConfigCommand::GenKey => {
            let key = mlc_store::EncryptionKey::generate_base64();
            if json {
                crate::output::json(&serde_json::json!({ "key": key }))?;
            } else {
                outln!("{key}");
            }
        }
        ConfigCommand::Env => {
            let mut rows: Vec<(String, String)> =
                mlc_config::Config::env_keys().map(|(e, k)| (e.to_string(), k.to_string())).collect();
            rows.push((
                "MLC_VISMA_TENANTS__NAME__FIELD".into(),
                "visma.tenants.NAME.FIELD (FIELD: CLIENT_ID, CLIENT_SECRET, TENANT_ID, IPP_COMPANY_ID)"
                    .into(),
            ));
            if json {
                let v: Vec<_> = rows.iter().map(|(e, k)| serde_json::json!({"env": e, "key": k})).collect();
                crate::output::json(&v)?;
            } else {
                for (env, key) in rows {
                    outln!("{env:<32} {key}");
                }
            }
        }
    }
    Ok(())
}

/// `mlc setup`: the admin's topology step.
async fn setup(cfg: mlc_config::Config) -> anyhow::Result<()> {
    let ctx = crate::ctx::Ctx::connect(cfg, "mlc-setup").await?;
    let streams: Vec<String> = mlc_bus::StreamKind::ALL.iter().map(|k| ctx.topo.stream(*k)).collect();
    let consumers: Vec<String> =
        mlc_bus::ConsumerSpec::ALL.iter().flat_map(|s| ctx.topo.durables(s)).collect();
    if crate::output::json_mode() {
        return crate::output::json(&serde_json::json!({
            "prefix": ctx.topo.prefix(),
            "streams": streams,
            "consumers": consumers,
        }));
    }
    outln!(
        "topology under prefix `{}` is current: streams {}; consumers {}",
        ctx.topo.prefix(),
        streams.join(", "),
        consumers.join(", ")
    );
    Ok(())
}

fn man(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let cmd = command();
    match dir {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            out!("{}", String::from_utf8_lossy(&buf));
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
            outln!("man pages written to {}", dir.display());
        }
    }
    Ok(())
}
