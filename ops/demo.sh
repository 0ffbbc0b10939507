#!/usr/bin/env bash
# The quick start: builds ml-connector and runs `mlc demo`, the whole sync on embedded
# defaults (SQLite, a local nats-server, the bundled Gusto and Visma simulators).
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/lib.sh

ensure_rust
ensure_nats_server
log "building (first time: several minutes; cargo shows its progress)"
build_started=$(date +%s)
cargo build --release --locked -p mlc
log "built in $(( $(date +%s) - build_started )) s"
exec ./target/release/mlc demo "$@"
