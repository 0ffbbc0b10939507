#!/usr/bin/env python3
"""Project rules on rendered manifests and on docker-compose.yml, beyond schema validation.

    python3 policy.py k8s OVERLAY_NAME RENDERED.yaml ENV_TABLE
    python3 policy.py compose COMPOSE_YML DOCKERFILE ENV_TABLE

Prints one line per violation and exits 1 if there is any. ENV_TABLE is what `mlc config env`
prints (one `NAME  key` line per variable the connector reads): every MLC_* variable we set
must be one of them (plus MLC_CONFIG, the configuration file, read by the mlc command line).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

EXTRA_ENV = {"MLC_CONFIG"}
# Each service's health and metrics port (the gateway's ops listener, not its webhook port 8080).
SERVICES = {"gateway": 9100, "projector": 9101, "writer": 9102}


class KnownEnv(set):
    """The variables of `mlc config env`, plus its one pattern,
    `MLC_VISMA_TENANTS__NAME__FIELD (FIELD: A, B, ...)`, as `prefix` and `fields`."""

    prefix: str = ""
    fields: tuple[str, ...] = ()

    def __contains__(self, name: object) -> bool:
        if set.__contains__(self, name):
            return True
        if not (self.prefix and isinstance(name, str) and name.startswith(self.prefix)):
            return False
        rest = name[len(self.prefix) :]
        return any(rest.endswith("__" + f) and len(rest) > len(f) + 2 for f in self.fields)


def known_env(env_table: Path) -> KnownEnv:
    names = KnownEnv(EXTRA_ENV)
    for line in env_table.read_text().splitlines():
        words = line.split()
        if not words or not re.fullmatch(r"(MLC|OTEL)_[A-Z0-9_]+", words[0]):
            continue
        if "__NAME__" in words[0]:
            names.prefix = words[0].split("NAME__")[0]
            m = re.search(r"\(FIELD: ([A-Z0-9_, ]+)\)", line)
            names.fields = tuple(f.strip() for f in m.group(1).split(",")) if m else ()
        else:
            names.add(words[0])
    if len(names) == len(EXTRA_ENV):
        raise SystemExit(f"policy: no environment variables in {env_table} (the output of `mlc config env`)")
    return names


def check_k8s(overlay: str, rendered: Path, env_table: Path) -> list[str]:
    errs: list[str] = []
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    envs = known_env(env_table)
    cm = by.get(("ConfigMap", "mlc-config"))
    if not cm:
        return [f"{overlay}: ConfigMap mlc-config missing"]
    for k in cm.get("data", {}):
        if k not in envs:
            errs.append(f"{overlay}: ConfigMap mlc-config sets {k}, which `mlc config env` does not list")
    want_replicas = {"dev": "1", "prod": "3"}.get(overlay)
    if want_replicas and cm["data"].get("MLC_NATS_REPLICAS") != want_replicas:
        errs.append(f"{overlay}: MLC_NATS_REPLICAS must be {want_replicas}")
    secret = by.get(("Secret", "mlc-secrets"))
    if overlay == "prod" and secret:
        errs.append("prod: must not ship the Secret mlc-secrets (created out of band)")
    if overlay == "dev" and not secret:
        errs.append("dev: the placeholder Secret mlc-secrets is missing")
    secret_keys = set((secret or {}).get("stringData", {})) | set((secret or {}).get("data", {}))
    for svc, port in SERVICES.items():
        dep = by.get(("Deployment", svc))
        if not dep:
            errs.append(f"{overlay}: Deployment {svc} missing")
            continue
        pod = dep["spec"]["template"]
        labels = pod["metadata"].get("labels", {})
        sel = dep["spec"]["selector"]["matchLabels"]
        if any(labels.get(k) != v for k, v in sel.items()):
            errs.append(f"{overlay}: {svc}: selector does not match the pod labels")
        ann = pod["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(port):
            errs.append(f"{overlay}: {svc}: prometheus.io annotations missing or wrong port")
        spec = pod["spec"]
        psc = spec.get("securityContext", {})
        if not (psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001
                and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
            errs.append(f"{overlay}: {svc}: pod securityContext must be runAsNonRoot, 10001, seccomp RuntimeDefault")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            if not (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                    and sc.get("capabilities", {}).get("drop") == ["ALL"]):
                errs.append(f"{overlay}: {svc}/{c['name']}: container securityContext too weak")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                p = c.get(probe, {}).get("httpGet", {})
                ports = {x.get("name"): x["containerPort"] for x in c.get("ports", [])}
                if p.get("path") != path or ports.get(p.get("port"), p.get("port")) != port:
                    errs.append(f"{overlay}: {svc}: {probe} must GET {path} on {port}")
            r = c.get("resources", {})
            if not (r.get("requests") and r.get("limits")):
                errs.append(f"{overlay}: {svc}: resources requests and limits required")
            if c.get("args", [])[:2] != ["run", svc]:
                errs.append(f"{overlay}: {svc}: args must be `run {svc}`")
            for e in c.get("env", []):
                if e["name"] not in envs:
                    errs.append(f"{overlay}: {svc}: env {e['name']} is not listed by `mlc config env`")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    if ref["name"] != "mlc-secrets":
                        errs.append(f"{overlay}: {svc}: secretKeyRef to unknown Secret {ref['name']}")
                    elif secret and ref["key"] not in secret_keys:
                        errs.append(f"{overlay}: {svc}: Secret key {ref['key']} not in the placeholder Secret")
                elif "value" in e and re.search(r"SECRET|TOKEN|KEY|STORE_URL|PASSWORD|SEED", e["name"]):
                    errs.append(f"{overlay}: {svc}: {e['name']} looks secret but is not a secretKeyRef")
            for src in c.get("envFrom", []):
                name = src.get("configMapRef", {}).get("name")
                if name and ("ConfigMap", name) not in by:
                    errs.append(f"{overlay}: {svc}: envFrom ConfigMap {name} missing")
        for v in spec.get("volumes", []):
            if "secret" in v and secret:
                for item in v["secret"].get("items", []):
                    if item["key"] not in secret_keys:
                        errs.append(f"{overlay}: {svc}: volume key {item['key']} not in the placeholder Secret")
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in by:
                errs.append(f"{overlay}: {svc}: ConfigMap {v['configMap']['name']} missing")
        pdb = by.get(("PodDisruptionBudget", svc))
        if not pdb or any(pdb["spec"]["selector"]["matchLabels"].get(k) != v for k, v in sel.items()):
            errs.append(f"{overlay}: {svc}: PodDisruptionBudget missing or not selecting the pods")
    for d in docs:
        if d["kind"] == "Service":
            sel = d["spec"].get("selector", {})
            if not any(all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
                       for (kind, _), dep in by.items() if kind == "Deployment"):
                errs.append(f"{overlay}: Service {d['metadata']['name']} selects no Deployment")
        if d["kind"] == "ServiceMonitor":
            ports = {p.get("name") for s in docs if s["kind"] == "Service" for p in s["spec"]["ports"]}
            for ep in d["spec"].get("endpoints", []):
                if ep.get("port") not in ports:
                    errs.append(f"{overlay}: ServiceMonitor endpoint port {ep.get('port')} on no Service")
    # Security review 2026-12-01, findings 2 and 7: every pod under a default deny, a policy of
    # its own, and its own NATS user.
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    def selects(pol, labels):
        ml = pol["spec"].get("podSelector", {}).get("matchLabels", {})
        return all(labels.get(k) == v for k, v in ml.items())
    for svc in SERVICES:
        dep = by.get(("Deployment", svc))
        if not dep:
            continue
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        mine = [p for p in policies if selects(p, labels)]
        if not any(set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
                   and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in mine):
            errs.append(f"{overlay}: {svc}: no default-deny NetworkPolicy selects it")
        if not any(p["metadata"]["name"] == svc for p in mine):
            errs.append(f"{overlay}: {svc}: NetworkPolicy {svc} missing")
        users = [e.get("value") for c in dep["spec"]["template"]["spec"]["containers"]
                 for e in c.get("env", []) if e["name"] == "MLC_NATS_USER"]
        if users != [svc]:
            errs.append(f"{overlay}: {svc}: must log in to NATS as its own user (MLC_NATS_USER={svc})")
        inboxes = [e.get("value") for c in dep["spec"]["template"]["spec"]["containers"]
                   for e in c.get("env", []) if e["name"] == "MLC_NATS_INBOX_PREFIX"]
        if inboxes != [f"_INBOX.{svc}"]:
            errs.append(f"{overlay}: {svc}: MLC_NATS_INBOX_PREFIX must be _INBOX.{svc} (auth.conf lets it read only those)")
    gw = by.get(("NetworkPolicy", "gateway"))
    if gw:
        for rule in gw["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "ipBlock" in peer or not peer.get("namespaceSelector", {}).get("matchLabels"):
                    errs.append(f"{overlay}: gateway NetworkPolicy admits more than named namespaces")
    hpa = by.get(("HorizontalPodAutoscaler", "gateway"))
    if not hpa or hpa["apiVersion"] != "autoscaling/v2" or hpa["spec"]["scaleTargetRef"]["name"] != "gateway":
        errs.append(f"{overlay}: autoscaling/v2 HPA for the gateway missing")
    for d in docs:
        if d["kind"] in ("StatefulSet",):
            errs.append(f"{overlay}: no hand-made StatefulSet (NATS and PostgreSQL come from their charts)")
    return errs


def check_compose(compose: Path, dockerfile: Path, env_table: Path) -> list[str]:
    errs: list[str] = []
    c = yaml.safe_load(compose.read_text())
    envs = known_env(env_table)
    targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.M | re.I))
    services = c.get("services", {})
    for name in ("nats", "postgres", "jaeger", "gateway", "projector", "writer", "sim-gusto", "sim-visma", "seed"):
        if name not in services:
            errs.append(f"compose: service {name} missing")
    for name, s in services.items():
        b = s.get("build")
        if b:
            if b.get("dockerfile") != "ops/docker/Dockerfile" or b.get("target") not in targets:
                errs.append(f"compose: {name}: build target {b.get('target')} not in the Dockerfile")
        env = s.get("environment", {})
        if isinstance(env, dict):
            for k in env:
                if k.startswith(("MLC_", "OTEL_")) and k not in envs:
                    errs.append(f"compose: {name}: {k} is not listed by `mlc config env`")
        one_shot = s.get("restart") == "no"
        if not one_shot and "healthcheck" not in s:
            errs.append(f"compose: {name}: no healthcheck")
        if name in ("sim-gusto", "sim-visma", "seed") and s.get("profiles") != ["sandbox"]:
            errs.append(f"compose: {name}: must be in the sandbox profile only")
        for dep, cond in (s.get("depends_on") or {}).items():
            if dep not in services:
                errs.append(f"compose: {name} depends on unknown {dep}")
            if services.get(dep, {}).get("profiles") and not s.get("profiles"):
                errs.append(f"compose: {name} (always on) depends on profile-only {dep}")
    for name, port in SERVICES.items():
        s = services.get(name, {})
        test = " ".join(s.get("healthcheck", {}).get("test", []))
        if f"/{port}" not in test or "/healthz" not in test:
            errs.append(f"compose: {name}: healthcheck must GET /healthz on {port}")
        deps = s.get("depends_on", {})
        for d in ("nats", "postgres"):
            if deps.get(d, {}).get("condition") != "service_healthy":
                errs.append(f"compose: {name}: depends_on {d} must be service_healthy")
    if services.get("jaeger", {}).get("environment", {}).get("COLLECTOR_OTLP_ENABLED") != "true":
        errs.append("compose: jaeger: COLLECTOR_OTLP_ENABLED must be true")
    # Security review 2026-12-01, findings 6, 7, 14: no published secret defaults, every port on
    # loopback unless asked, NATS with users and not as root.
    text = compose.read_text()
    for var in re.findall(r"\$\{([A-Z0-9_]*(?:PASSWORD|SECRET|TOKENS|ENCRYPTION_KEY|STORE_URL)):?-", text):
        errs.append(f"compose: ${{{var}}} has a default; secrets must be required (${{{var}:?...}})")
    for name, s in services.items():
        for port in s.get("ports", []):
            p = str(port)
            if not (p.startswith("127.0.0.1:") or re.match(r"^\$\{[A-Z0-9_]+:-127\.0\.0\.1:", p)):
                errs.append(f"compose: {name}: port {p} must be bound to 127.0.0.1 (or a variable defaulting to it)")
    nats = services.get("nats", {})
    if str(nats.get("user", "0")).split(":")[0] in ("0", "root"):
        errs.append("compose: nats must not run as root (user: \"1000:1000\")")
    if "/etc/nats/auth.conf" not in nats.get("command", []):
        errs.append("compose: nats must run with ops/nats/auth.conf (one user per service)")
    for name in SERVICES:
        env = services.get(name, {}).get("environment", {})
        if not isinstance(env, dict) or env.get("MLC_NATS_USER") != name:
            errs.append(f"compose: {name} must log in to NATS as its own user {name}")
        elif env.get("MLC_NATS_INBOX_PREFIX") != f"_INBOX.{name}":
            errs.append(f"compose: {name}: MLC_NATS_INBOX_PREFIX must be _INBOX.{name}")
    # Finding 13: the internet-facing gateway holds no store, no grant key, no Gusto
    # application secret and no Visma tenant file, not even unread in its environment.
    gw = services.get("gateway", {})
    gw_env = gw.get("environment", {}) if isinstance(gw.get("environment"), dict) else {}
    for k in ("MLC_STORE_URL", "MLC_STORE_ENCRYPTION_KEY", "MLC_GUSTO_CLIENT_SECRET", "MLC_CONFIG"):
        if k in gw_env:
            errs.append(f"compose: gateway must not get {k}")
    if gw.get("volumes"):
        errs.append("compose: gateway must not mount the config file (it holds the Visma tenants)")
    return errs


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[1] == "k8s":
        errs = check_k8s(argv[2], Path(argv[3]), Path(argv[4]))
    elif len(argv) == 5 and argv[1] == "compose":
        errs = check_compose(Path(argv[2]), Path(argv[3]), Path(argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for e in errs:
        print(f"policy: {e}")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
