//! The ml-connector command line: run, demo, replay, backfill, reconcile, status.
//!
//! The library half holds the pure parts the `mlc` binary and its end-to-end tests share:
//! the first-connect matcher and review file ([`matching`]) and the demo's story of a Visma
//! company that already holds the firm's people ([`scenario`]).

pub mod matching;
pub mod scenario;
