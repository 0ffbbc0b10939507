#!/usr/bin/env python3
"""Writes ops/grafana/ml-connector.json (Grafana 10+/11 dashboard, schemaVersion 39) from the
panel list below. Edit here, then run `python3 ops/grafana/build_dashboard.py`; the JSON is
committed so it can be imported as is (Dashboards > Import, or a provisioning folder).

Series come from services/*/src/metrics.rs (prometheus-client: counters end in `_total`,
histograms in `_bucket`); ops/grafana/check_dashboard.py fails when a series used here is no
longer registered there.
"""

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
panels = []
_y = 0


def row(title):
    global _y
    # Close a partly filled line of panels first.
    _y += max((p["gridPos"]["h"] for p in panels if p["gridPos"]["y"] == _y and p["type"] != "row"), default=0)
    panels.append({"type": "row", "title": title, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": _y}, "panels": []})
    _y += 1


def panel(title, targets, unit="short", w=8, h=8, kind="timeseries", desc="", x=None):
    global _y
    used = sum(p["gridPos"]["w"] for p in panels if p["gridPos"]["y"] == _y and p["type"] != "row")
    if x is None:
        x = used
    if x + w > 24:
        _y += h
        x = 0
    p = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": x, "y": _y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area"}
    panels.append(p)
    if x + w >= 24:
        _y += h


def q(p, metric, by="le"):
    return f"histogram_quantile({p}, sum by ({by}) (rate({metric}_bucket[{RI}])))"


# --- overview ---------------------------------------------------------------------------------
row("Overview")
panel("Webhooks accepted /s", [(f"sum(rate(mlc_gateway_webhooks_accepted_total{{duplicate=\"false\"}}[{RI}]))", "new")],
      unit="reqps", w=4, h=4, kind="stat")
panel("Dead letters (1h, all stages)", [(
    "sum(increase(mlc_gateway_dead_letters_total[1h])) + sum(increase(mlc_projector_dead_letters_total[1h]))"
    " + sum(increase(mlc_writer_dead_letters_total[1h]))", "dead letters")],
    w=4, h=4, kind="stat", desc="Everything parked in DEAD_LETTERS: `mlc dlq list` (docs/RUNBOOK.md)")
panel("DEAD_LETTERS depth", [("max(mlc_projector_dead_letter_depth)", "messages")], w=4, h=4, kind="stat",
      desc="Messages in the DEAD_LETTERS stream now (all stages), read by the projector every 2 s")
panel("Webhook → Visma p99", [(q(0.99, "mlc_writer_e2e_latency_seconds"), "p99")], unit="s", w=4, h=4, kind="stat")
panel("Consumer lag (max)", [(
    "max(max by (consumer) (mlc_projector_consumer_pending) or max by (consumer) (mlc_writer_consumer_pending))",
    "pending")], w=4, h=4, kind="stat", desc="Largest backlog of the hydrate, map and writer consumers")
panel("Gusto 429s (5m)", [("sum(increase(mlc_projector_gusto_rate_limited_total[5m]))", "429s")], w=4, h=4,
      kind="stat", desc="Our scheduler should keep this at 0 (invariant 5)")

# --- gateway ----------------------------------------------------------------------------------
row("Gateway")
panel("Webhooks accepted /s", [(f"sum by (duplicate) (rate(mlc_gateway_webhooks_accepted_total[{RI}]))",
                                 "duplicate={{duplicate}}")], unit="reqps")
panel("Webhooks refused /s by reason", [(f"sum by (reason) (rate(mlc_gateway_webhooks_refused_total[{RI}]))",
                                         "{{reason}}")], unit="reqps",
      desc="wrong_signature spikes after a token rotation that missed a replica")
panel("503 (no JetStream ack) and dead letters /s", [
    (f"sum(rate(mlc_gateway_webhooks_unavailable_total[{RI}]))", "unavailable (503, Gusto retries)"),
    (f"sum(rate(mlc_gateway_dead_letters_total[{RI}]))", "dead letters"),
    (f"sum(rate(mlc_gateway_verification_handshakes_total[{RI}]))", "verification handshakes"),
], unit="reqps")
panel("Publish → JetStream ack", [(q(0.5, "mlc_gateway_publish_seconds"), "p50"),
                                   (q(0.99, "mlc_gateway_publish_seconds"), "p99")], unit="s", w=12)
panel("Requests in flight", [("sum by (pod) (mlc_gateway_in_flight)", "{{pod}}")], w=12)

# --- projector --------------------------------------------------------------------------------
row("Projector (Gusto)")
panel("Consumer lag (pending messages)", [("max by (consumer) (mlc_projector_consumer_pending)", "{{consumer}}")])
panel("Events /s by result", [(f"sum by (result) (rate(mlc_projector_events_total[{RI}]))", "{{result}}")], unit="ops")
panel("Snapshots /s: appended vs unchanged", [(f"sum by (result) (rate(mlc_projector_snapshots_total[{RI}]))",
                                                "{{result}}")], unit="ops")
panel("Gusto calls /s per company", [(f"sum by (company) (rate(mlc_projector_gusto_calls_total[{RI}]))",
                                      "{{company}}")], unit="reqps")
panel("Gusto 429s per company (5m)", [(
    "sum by (company) (increase(mlc_projector_gusto_rate_limited_total[5m]))", "{{company}}")],
    desc="Every 429 answer, retries included. Our scheduler should keep this at 0 (invariant 5)")
panel("Gusto rate budget left per company", [(
    "min by (company) (mlc_projector_rate_budget_left)", "{{company}}")],
    desc="Requests left in the rolling window, per replica's limiter (the lowest replica shown)")
panel("Gusto answers /s by status", [(f"sum by (status) (rate(mlc_projector_gusto_responses_total[{RI}]))",
                                      "{{status}}")], unit="reqps",
      desc="Every HTTP answer, retries included; 0 = no answer (transport failure)")
panel("Gusto token refreshes per company (1h)", [(
    "sum by (company) (increase(mlc_projector_gusto_token_refreshes_total[1h]))", "{{company}}")],
    desc="About one per grant per access-token lifetime; a burst means tokens are being rejected (401)")
panel("Gusto errors /s by kind", [(f"sum by (call) (rate(mlc_projector_gusto_errors_total[{RI}]))", "{{call}}")],
      unit="ops", desc="needs_reauth: `mlc company add` again (docs/RUNBOOK.md)")
panel("Parked events per company (1h)", [("sum by (company) (increase(mlc_projector_parked_events_total[1h]))",
                                          "{{company}}")],
      desc="Held back: company paused or needs re-authorisation (`mlc status`)")
panel("Commands /s by result", [(f"sum by (result) (rate(mlc_projector_commands_total[{RI}]))", "{{result}}"),
                                (f"sum(rate(mlc_projector_dead_letters_total[{RI}]))", "dead letters")], unit="ops")

# --- writer -----------------------------------------------------------------------------------
row("Writer (Visma)")
panel("Commands /s by outcome", [(f"sum by (outcome) (rate(mlc_writer_commands_total[{RI}]))", "{{outcome}}")],
      unit="ops")
panel("Visma calls /s by status", [(f"sum by (status) (rate(mlc_writer_visma_calls_total[{RI}]))", "{{status}}")],
      unit="reqps")
panel("Webhook received → Visma outcome", [(q(0.5, "mlc_writer_e2e_latency_seconds"), "p50"),
                                            (q(0.9, "mlc_writer_e2e_latency_seconds"), "p90"),
                                            (q(0.99, "mlc_writer_e2e_latency_seconds"), "p99")], unit="s")
panel("Dead letters by reason (1h)", [("sum by (reason) (increase(mlc_writer_dead_letters_total[1h]))",
                                       "{{reason}}")])
panel("Retries (naks) /s by reason", [(f"sum by (reason) (rate(mlc_writer_naks_total[{RI}]))", "{{reason}}")],
      unit="ops")
panel("Consumer lag (pending commands)", [("max by (consumer) (mlc_writer_consumer_pending)", "{{consumer}}")])
panel("Waiting for first connect / pacing", [
    ("sum(mlc_writer_waiting_first_connect)", "employees waiting for first-connect review"),
    (f"sum(rate(mlc_writer_pacing_waits_total[{RI}]))", "pacing waits /s (Visma window)"),
])

dashboard = {
    "uid": "ml-connector",
    "title": "ml-connector",
    "description": "Gusto webhooks → gateway → JetStream → projector → writer → Visma.net ERP",
    "tags": ["ml-connector"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "graphTooltip": 1,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1},
    ]},
    "annotations": {"list": []},
    "links": [],
    "panels": [dict(p, id=i + 1) for i, p in enumerate(panels)],
}

out = Path(__file__).with_name("ml-connector.json")
out.write_text(json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {out} ({len(panels)} panels)")
