#!/usr/bin/env bash
# The quick start: builds ml-connector and runs `mlc demo`, the whole sync on embedded
# defaults (SQLite, a local nats-server, the bundled Gusto and Visma simulators).
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/lib.sh

ensure_rust
ensure_nats_server
log "building (first time: a few minutes)"
cargo build --release --locked -p mlc -q
exec ./target/release/mlc demo "$@"
