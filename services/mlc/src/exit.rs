//! Exit statuses, decided in one place at the edge (`main`) from the error a command
//! returned, so scripts and init containers can tell a bad configuration from an outage
//! from drift. The codes follow sysexits(3) where one fits.

use std::process::ExitCode;

/// What the process reports. `mlc --help` and `docs/CLI.md` list these ([`EXIT_STATUS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The command did what it was asked.
    Ok = 0,
    /// It failed (a refused request, an unknown company, a failed check, ...).
    Error = 1,
    /// The command line is wrong (clap's own code for usage errors).
    Usage = 2,
    /// `reconcile` found drift between Gusto and Visma.
    Drift = 3,
    /// A dependency cannot be reached: NATS, the store, Gusto or Visma (EX_UNAVAILABLE).
    Unavailable = 69,
    /// The configuration is invalid or names something that does not exist, e.g. a stream
    /// prefix with no streams (EX_CONFIG).
    Config = 78,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> ExitCode {
        ExitCode::from(c as u8)
    }
}

/// The EXIT STATUS section of `mlc --help` (and of docs/CLI.md, generated from it).
pub const EXIT_STATUS: &str = "\
EXIT STATUS:
   0  ok
   1  error (a refused request, an unknown company, a failed check)
   2  usage: the command line is wrong
   3  drift: `reconcile` found Gusto and Visma apart
  69  unavailable: NATS, the store, Gusto or Visma cannot be reached (sysexits EX_UNAVAILABLE)
  78  configuration: invalid, or naming what does not exist, e.g. a stream prefix without
      streams (sysexits EX_CONFIG)
A closed standard output (`mlc ... | head -1`) is not an error: the command finishes and
exits with its own status.";

/// An error that carries its exit status; other errors are classified by [`classify`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: Code,
    pub message: String,
}

/// A command-line mistake that clap cannot see (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    CliError { code: Code::Usage, message: message.into() }.into()
}

/// The configuration names something that is not there (exit 78).
pub fn config(message: impl Into<String>) -> anyhow::Error {
    CliError { code: Code::Config, message: message.into() }.into()
}

/// A dependency cannot be reached (exit 69).
pub fn unavailable(message: impl Into<String>) -> anyhow::Error {
    CliError { code: Code::Unavailable, message: message.into() }.into()
}

/// The exit status of a failed command: the first cause that says what kind of failure it
/// was decides; anything else is a plain error (1).
pub fn classify(e: &anyhow::Error) -> Code {
    // A `CliError` given as context is found here (the chain yields it only as text).
    if let Some(c) = e.downcast_ref::<CliError>() {
        return c.code;
    }
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<CliError>() {
            return c.code;
        }
        if cause.downcast_ref::<mlc_config::ConfigError>().is_some() {
            return Code::Config;
        }
        if let Some(b) = cause.downcast_ref::<mlc_bus::BusError>() {
            if matches!(b, mlc_bus::BusError::Connect { .. }) {
                return Code::Unavailable;
            }
        }
        if let Some(s) = cause.downcast_ref::<mlc_store::StoreError>() {
            match s {
                mlc_store::StoreError::BadUrl(_) | mlc_store::StoreError::NoKey => return Code::Config,
                mlc_store::StoreError::Database(d) if unreachable_db(d) => return Code::Unavailable,
                mlc_store::StoreError::Unreachable(_) => return Code::Unavailable,
                _ => {}
            }
        }
        if let Some(d) = cause.downcast_ref::<sqlx::Error>() {
            if unreachable_db(d) {
                return Code::Unavailable;
            }
        }
        if let Some(r) = cause.downcast_ref::<reqwest::Error>() {
            if r.is_connect() || r.is_timeout() {
                return Code::Unavailable;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionRefused | ConnectionReset | TimedOut | HostUnreachable) {
                return Code::Unavailable;
            }
        }
    }
    Code::Error
}

fn unreachable_db(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_decide_the_code() {
        let e = anyhow::Error::new(mlc_config::ConfigError::File { path: "x".into(), reason: "gone".into() });
        assert_eq!(classify(&e.context("loading")), Code::Config);
        let e = anyhow::Error::new(mlc_bus::BusError::Connect {
            url: "nats://x".into(),
            reason: "refused".into(),
        });
        assert_eq!(classify(&e.context("status")), Code::Unavailable);
        assert_eq!(classify(&usage("give --all or --filter")), Code::Usage);
        assert_eq!(classify(&anyhow::anyhow!("unknown company x")), Code::Error);
        let e = anyhow::anyhow!("stream X missing")
            .context(CliError { code: Code::Config, message: "prefix".into() });
        assert_eq!(classify(&e), Code::Config);
    }
}
