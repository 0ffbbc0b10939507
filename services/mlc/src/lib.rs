//! The ml-connector command line: run, demo, replay, backfill, reconcile, status.
//!
//! The library holds everything the `mlc` binary does, so that the console, the bench and
//! the tests call the same code: the command line itself ([`cli`]: clap's definitions and
//! the dispatch), the commands ([`cmd`], [`first_connect`], [`reconcile`]), the status
//! model the console renders too ([`status`]), the one output writer ([`output`]) and the
//! exit statuses ([`exit`]), the services' start-up ([`startup`], driven by [`run`]), the first-connect matcher
//! and review file ([`matching`]) and the demo's story of a Visma company that already
//! holds the firm's people ([`scenario`]). `main.rs` only parses the command line and
//! dispatches.

// First: its `out!`/`outln!` macros are used by every module below.
#[macro_use]
pub mod output;

pub mod cli;
pub mod cmd;
pub mod console;
pub mod ctx;
pub mod demo;
pub mod docs;
pub mod exit;
pub mod first_connect;
pub mod gusto_version;
pub mod matching;
pub mod reconcile;
pub mod run;
pub mod scenario;
pub mod startup;
pub mod status;
