#!/usr/bin/env python3
"""A small renderer for the subset of kustomize that ops/k8s uses, for machines without
kustomize (or `kubectl kustomize`). It refuses any kustomization field it does not implement,
so the overlays cannot silently drift past what it understands; where a real kustomize exists,
ops/check-deploy.sh renders with both and requires the same objects.

Supported: `resources` (files and directories), `components` (kind: Component), `namespace`,
`patches` (entries with `path:` only; strategic merge patches whose target is the patch's own
kind and name), `images` (name/newName/newTag/digest), `replicas` (name/count).

    python3 kustomize_lite.py DIR            # prints the rendered multi-document YAML
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "components", "namespace", "patches", "images", "replicas"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService", "IngressClass", "RuntimeClass",
}
# Strategic-merge keys of the list fields the overlays patch (as in the Kubernetes OpenAPI).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
    "volumeMounts": "mountPath", "imagePullSecrets": "name", "ports": None,  # decided per item
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class RenderError(Exception):
    pass


def load_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def ident(doc: dict) -> tuple[str, str, str]:
    group = doc.get("apiVersion", "").rsplit("/", 1)[0] if "/" in doc.get("apiVersion", "") else ""
    return (group, doc.get("kind", ""), doc.get("metadata", {}).get("name", ""))


def _port_key(items: list) -> str:
    sample = [i for i in items if isinstance(i, dict)]
    return "containerPort" if any("containerPort" in i for i in sample) else "port"


def smp(base, patch, field: str = ""):
    """Strategic merge of `patch` into `base` (a new value is returned)."""
    if isinstance(patch, dict) and isinstance(base, dict):
        if patch.get("$patch") == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = smp(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field] or _port_key(base + patch)
        if not all(isinstance(i, dict) and key in i for i in base + patch):
            return copy.deepcopy(patch)
        out = [copy.deepcopy(i) for i in base]
        added = []
        for item in patch:
            for n, cur in enumerate(out):
                if cur[key] == item[key]:
                    if item.get("$patch") == "delete":
                        out.pop(n)
                    else:
                        out[n] = smp(cur, item, "")
                    break
            else:
                if item.get("$patch") != "delete":
                    added.append(copy.deepcopy(item))
        return added + out
    return copy.deepcopy(patch)


def pod_specs(doc: dict):
    kind = doc.get("kind")
    if kind in WORKLOADS:
        yield doc.get("spec", {}).get("template", {}).get("spec", {})
    elif kind == "CronJob":
        yield doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        yield doc.get("spec", {})


def split_image(image: str) -> tuple[str, str, str]:
    digest = ""
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = ""
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image, tag = image[:colon], image[colon + 1:]
    return image, tag, digest


def apply_images(docs: list[dict], images: list[dict]) -> None:
    for img in images:
        unknown = set(img) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise RenderError(f"images: unsupported fields {sorted(unknown)}")
        for doc in docs:
            for spec in pod_specs(doc):
                for c in spec.get("containers", []) + spec.get("initContainers", []):
                    name, tag, digest = split_image(c.get("image", ""))
                    if name != img["name"]:
                        continue
                    name = img.get("newName", name)
                    if "digest" in img:
                        c["image"] = f"{name}@{img['digest']}"
                    elif "newTag" in img:
                        c["image"] = f"{name}:{img['newTag']}"
                    else:
                        c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def apply_patches(docs: list[dict], patches: list[dict], root: Path) -> list[dict]:
    for entry in patches:
        if set(entry) != {"path"}:
            raise RenderError(f"{root}: patches: only `path:` entries are supported, got {sorted(entry)}")
        for patch in load_docs(root / entry["path"]):
            target = ident(patch)
            hits = [n for n, d in enumerate(docs) if ident(d) == target]
            if len(hits) != 1:
                raise RenderError(f"{root / entry['path']}: patch target {target} matches {len(hits)} objects")
            docs[hits[0]] = smp(docs[hits[0]], patch)
    return docs


def build(root: Path, docs: list[dict] | None = None, component: bool = False) -> list[dict]:
    kfile = root / "kustomization.yaml"
    if not kfile.exists():
        raise RenderError(f"{root}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        raise RenderError(f"{kfile}: unsupported fields {sorted(unknown)}")
    if component != (k.get("kind") == "Component"):
        raise RenderError(f"{kfile}: kind {k.get('kind')} where a {'Component' if component else 'Kustomization'} was expected")
    docs = list(docs or [])
    for r in k.get("resources", []):
        p = root / r
        docs += build(p) if p.is_dir() else load_docs(p)
    for c in k.get("components", []):
        docs = build(root / c, docs, component=True)
    docs = apply_patches(docs, k.get("patches", []), root)
    if "namespace" in k:
        for d in docs:
            if d.get("kind") not in CLUSTER_SCOPED:
                d.setdefault("metadata", {})["namespace"] = k["namespace"]
    apply_images(docs, k.get("images", []))
    for r in k.get("replicas", []):
        for d in docs:
            if d.get("kind") in WORKLOADS and d["metadata"]["name"] == r["name"]:
                d["spec"]["replicas"] = r["count"]
    seen = set()
    for d in docs:
        i = ident(d) + (d.get("metadata", {}).get("namespace", ""),)
        if i in seen:
            raise RenderError(f"{root}: object {i} defined twice")
        seen.add(i)
    return docs


def normalise(docs: list[dict]) -> list[dict]:
    """Order-insensitive form for comparing two renderings: objects sorted by identity, keyed
    lists (every item a mapping with `name`) sorted by name; YAML spellings of the same number
    (0440 / 288) compare equal because both are loaded."""

    def walk(v):
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            items = [walk(x) for x in v]
            if items and all(isinstance(x, dict) and "name" in x for x in items):
                items.sort(key=lambda x: str(x["name"]))
            return items
        return v

    return sorted((walk(d) for d in docs), key=lambda d: (ident(d), d.get("metadata", {}).get("namespace", "")))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        docs = build(Path(argv[1]))
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"kustomize_lite: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
