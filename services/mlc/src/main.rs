//! `mlc`: the one binary of ml-connector. Parses the command line and dispatches to the
//! library ([`mlc::cli`]); the exit status is decided here, once, from the result
//! ([`mlc::exit::classify`]).

use clap::Parser;
use mlc::exit::Code;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mlc::cli::Cli::parse();
    mlc::output::set_json(cli.json);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Code::Error.into();
        }
    };
    let result = rt.block_on(mlc::cli::dispatch(cli));
    let written = mlc::output::finish();
    match (result, written) {
        (Ok(code), Ok(())) => code,
        (Ok(_), Err(e)) => {
            eprintln!("error: {e}");
            Code::Error.into()
        }
        (Err(e), _) => {
            eprintln!("error: {}", mlc_telemetry::redact(&format!("{e:#}")));
            mlc::exit::classify(&e).into()
        }
    }
}
