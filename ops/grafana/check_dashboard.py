#!/usr/bin/env python3
"""Checks ops/grafana/ml-connector.json: valid JSON, unique panel ids, every panel has a query,
no overlapping grid cells, and every mlc_* series it queries is registered in
services/*/src/metrics.rs (prefix from `Registry::with_prefix`, name from `register("...")`).

    python3 check_dashboard.py DASHBOARD.json SERVICES_DIR
"""

import json
import re
import sys
from pathlib import Path

SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def registered(services: Path) -> set[str]:
    names = set()
    for f in services.glob("*/src/metrics.rs"):
        text = f.read_text()
        m = re.search(r'Registry::with_prefix\(\s*"([a-z0-9_]+)"', text)
        if not m:
            continue
        for n in re.findall(r'register\(\s*"([a-z0-9_]+)"', text):
            names.add(f"{m.group(1)}_{n}")
    return names


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    errs = []
    d = json.loads(Path(argv[1]).read_text())
    known = registered(Path(argv[2]))
    if not known:
        errs.append(f"no metrics found under {argv[2]}/*/src/metrics.rs")
    ids = [p["id"] for p in d["panels"]]
    if len(ids) != len(set(ids)):
        errs.append("duplicate panel ids")
    cells = set()
    used = set()
    for p in d["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    errs.append(f"panel {p['title']!r} overlaps another at {x},{y}")
                cells.add((x, y))
        if g["x"] + g["w"] > 24:
            errs.append(f"panel {p['title']!r} is wider than the grid")
        if p["type"] == "row":
            continue
        if not p.get("targets"):
            errs.append(f"panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            for s in re.findall(r"\bmlc_[a-z0-9_]+", t["expr"]):
                base = s
                for suf in SUFFIXES:
                    if base.endswith(suf) and base[: -len(suf)] in known:
                        base = base[: -len(suf)]
                        break
                used.add(base)
                if base not in known:
                    errs.append(f"panel {p['title']!r}: series {s} is not registered in services/*/src/metrics.rs")
    for e in errs:
        print(f"dashboard: {e}")
    unused = sorted(known - used)
    if unused:
        print(f"dashboard: note: registered but not charted: {', '.join(unused)}")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
