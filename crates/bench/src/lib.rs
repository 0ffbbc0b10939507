//! Benchmarks of ml-connector. Each prints a table of baseline, ours, ratio, target and
//! PASS/MISS, where the baseline is measured in the same run on the same machine.
//! See `docs/PERFORMANCE.md`.

pub mod budget;
pub mod common;
pub mod footprint;
pub mod freshness;
pub mod ingest;
pub mod pipeline;
pub mod replay;
pub mod stages;
