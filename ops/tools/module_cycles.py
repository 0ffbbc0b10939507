#!/usr/bin/env python3
"""Module cycles inside each crate of the workspace, from its `crate::` / `super::` paths.

A node is a source file's module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`); an edge
a -> b means a names an item of b (directly, or through a `pub use` of the crate root or of
a parent module). Edges between a module and its ancestors are left out: a parent declares
its children, and a child may use what its parent holds. Everything else must be a DAG.

Usage: module_cycles.py [REPO]   (exit 1 and a list when a cycle exists)
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::\s*[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)::([^;]*);", re.S)
PUB_USE = re.compile(r"\bpub\s+use\s+(?:self::)?([a-z_][a-z0-9_]*)::([^;]*);", re.S)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def module_of(src, f):
    rel = f.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def expand_group(prefix, body):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e'] (enough for resolving)."""
    body = re.sub(r"\s+", "", body)
    out = []

    def walk(pre, s):
        depth, start, items = 0, 0, []
        for i, ch in enumerate(s + ","):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(s[start:i])
                start = i + 1
        for it in filter(None, items):
            if "{" in it:
                head, rest = it.split("{", 1)
                walk(pre + head, rest[:-1])
            else:
                out.append(pre + it)

    walk(prefix, body)
    return out


def crate_graph(src):
    files = [f for f in src.rglob("*.rs") if "bin" not in f.relative_to(src).parts]
    mods = {module_of(src, f): f for f in files}
    # Re-exports: (module, name) -> the module the name comes from.
    reexports = {}
    for m, f in mods.items():
        text = strip_comments(f.read_text())
        for head, body in PUB_USE.findall(text):
            for path in expand_group(head + "::", body):
                name = path.split("::")[-1].split(" as ")[-1]
                target = resolve(m + tuple(path.split("::")[:-1]), mods)
                if target is not None and target != m:
                    reexports[(m, name)] = target
    edges = {}
    for m, f in mods.items():
        text = strip_comments(f.read_text())
        paths = []
        for kind, body in USE_GROUP.findall(text):
            paths += [(kind, p) for p in expand_group("", body)]
        paths += [(k, p.replace(" ", "").strip(":")) for k, p in PATH.findall(text)]
        for kind, p in paths:
            segs = [s for s in p.split("::") if s and s != "self"]
            base = () if kind == "crate" else (m[:-1] if kind == "super" else m)
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
            full = base + tuple(segs)
            target = resolve(full, mods)
            if target is None:
                continue
            if len(full) > len(target):
                target = reexports.get((target, full[len(target)]), target)
            if target == m or is_ancestor(target, m) or is_ancestor(m, target):
                continue
            edges.setdefault(m, set()).add(target)
    return mods, edges


def resolve(path, mods):
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return None


def is_ancestor(a, b):
    return len(a) < len(b) and b[: len(a)] == a


def cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    found = 0
    crates = sorted(p.parent for p in repo.glob("*/*/Cargo.toml") if (p.parent / "src").is_dir())
    crates += [repo / "tests"] if (repo / "tests/src").is_dir() else []
    for crate in crates:
        mods, edges = crate_graph(crate / "src")
        for comp in cycles(edges):
            found += 1
            names = ["::".join(c) for c in sorted(comp)]
            detail = ", ".join(
                f"{'::'.join(a)} -> {'::'.join(b)}" for a in sorted(comp) for b in sorted(edges[a]) if b in comp
            )
            print(f"{crate.relative_to(repo)}: cycle between {', '.join(names)} ({detail})")
    if found:
        sys.exit(1)
    print(f"no module cycle in {len(crates)} crates")


if __name__ == "__main__":
    main()
