//! The ml-connector command line: run, demo, replay, backfill, reconcile, status.
//!
//! The library holds everything the `mlc` binary does, so that the console, the bench and
//! the tests call the same code: the commands ([`cmd`], [`ops`], [`first_connect`],
//! [`reconcile`]), the services' start-up ([`startup`], driven by [`run`]), the first-connect matcher and review
//! file ([`matching`]) and the demo's story of a Visma company that already holds the
//! firm's people ([`scenario`]). `main.rs` only parses the command line and dispatches.

pub mod cmd;
pub mod console;
pub mod ctx;
pub mod demo;
pub mod first_connect;
pub mod gusto_version;
pub mod matching;
pub mod ops;
pub mod reconcile;
pub mod run;
pub mod scenario;
pub mod startup;
