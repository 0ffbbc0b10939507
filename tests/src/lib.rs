//! The end-to-end tests' installation: [`mlc_testkit::install`] (a private nats-server, the
//! simulators, a SQLite store and `mlc run gateway|projector|writer` as real processes,
//! from one typed configuration), re-exported so the tests name it `mlc_e2e::Stack`.
//!
//! The `mlc` binary must be built first (`cargo build -p mlc`; `ops/test.sh` does it).

pub use mlc_testkit::install::*;

pub mod chaos;
