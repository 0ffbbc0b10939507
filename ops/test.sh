#!/usr/bin/env bash
# The one test command: formatting, lints, the whole test suite against a real
# nats-server and a real PostgreSQL, and the deployment files.
#
#   bash ops/test.sh           # the CI form: long suites in their bounded short form
#   MLC_FULL=1 bash ops/test.sh  # long suites in full (fault, load, fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/lib.sh

ensure_rust
ensure_nats_server
ensure_postgres
ensure_chromium

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The deployment check asks the binary which variables it reads (`mlc config env`), and the
# end-to-end tests run it as separate processes: build it first.
log "build mlc"
cargo build -p mlc --locked -q
if [ -x ops/check-deploy.sh ] || [ -f ops/check-deploy.sh ]; then
  log "deployment files (compose, Kubernetes)"
  bash ops/check-deploy.sh
fi
log "tests"
# The full forms run longer than the ci profile lets a test run.
profile=ci
if [ "${MLC_FULL:-}" = 1 ]; then profile=full; fi
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile "$profile"
else
  cargo test --workspace --locked
fi
