"""Build the long-document matching dev set (benchmarks/data/match/) from real material on this machine.

Documents: the docstrings of one Python module (module, class and function docstrings in source order, each
under its qualified name, as rendered API docs read) from the standard library and installed scientific
packages (scipy, scikit-learn, sympy, networkx, pandas, numpy). Relatedness comes from the real package
structure: two modules are related when they live in the same (sub)package (`scipy.signal`,
`sklearn.linear_model`, `email`, `sympy.polys`, ...). The manual pages are NOT used (held-out check).

Splits: packages (groups) are split into `train` and `test` (disjoint packages), so fine-tuning on train pairs
is measured on unseen topics. Output:
    docs/<id>.txt                  one document per module
    docs.jsonl                     {"id", "path", "group", "library", "split", "words"}
    pairs_train.jsonl / pairs_dev.jsonl / pairs_test.jsonl   {"a", "b", "label"} (paths relative to docs/..)

    python benchmarks/match_data.py [--out benchmarks/data/match] [--per-group 6] [--seed 0]
"""
from __future__ import annotations

import argparse
import ast
import json
import random
import re
import shutil
import sysconfig
from collections import defaultdict
from pathlib import Path

LIBRARIES = ["scipy", "sklearn", "sympy", "networkx", "pandas", "numpy"]
STDLIB_SKIP = {"test", "idlelib", "lib2to3", "ensurepip", "turtledemo", "site-packages", "distutils", "pydoc_data",
               "tkinter", "config-3.11-x86_64-linux-gnu"}
MIN_WORDS = 400          # long documents only (~600+ tokens)
MAX_CHARS = 60_000       # a module's docstrings beyond this add nothing (the encoder reads 2,048 tokens)


def module_text(path: Path, dotted: str) -> str:
    """The docstrings of one module as a document: module docstring, then each documented class/function."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    parts: list[str] = []
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(doc)

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if child.name.startswith("_") and child.name != "__init__":
                    continue
                name = f"{prefix}{child.name}"
                d = ast.get_docstring(child)
                if d and len(d.split()) >= 8:
                    parts.append(f"{name}\n{d}")
                if isinstance(child, ast.ClassDef):
                    walk(child, name + ".")
    walk(tree, "")
    return "\n\n".join(parts)[:MAX_CHARS]


def candidates() -> list[tuple[str, Path, str]]:
    """(dotted module name, file, library) for every module of the chosen libraries."""
    import importlib.util

    out = []
    roots = [(Path(sysconfig.get_paths()["stdlib"]), "stdlib", None)]
    for lib in LIBRARIES:
        spec = importlib.util.find_spec(lib)
        if spec and spec.submodule_search_locations:
            roots.append((Path(list(spec.submodule_search_locations)[0]), lib, lib))
    for root, lib, top in roots:
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            if any(p in ("tests", "test", "testing", "_testing", "benchmarks", "conftest", "__main__", "vendored",
                         "_vendor", "externals", "_lib") or p.startswith("test_") for p in parts):
                continue
            if lib == "stdlib" and (parts[0] in STDLIB_SKIP or len(parts) == 1):
                continue  # single-file stdlib modules have no package to relate to
            if parts[-1] == "__init__":
                parts = parts[:-1]
            dotted = ".".join(([top] if top else []) + parts)
            out.append((dotted, f, lib))
    return out


def group_of(dotted: str, lib: str) -> str:
    """The package a module belongs to: its parent package, at most two levels below the library."""
    parts = dotted.split(".")
    depth = 1 if lib == "stdlib" else 2
    return ".".join(parts[:min(depth, len(parts) - 1)]) if len(parts) > 1 else parts[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/data/match")
    ap.add_argument("--per-group", type=int, default=6, help="at most this many documents per package")
    ap.add_argument("--min-group", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "docs").mkdir(parents=True)

    groups: dict[str, list[dict]] = defaultdict(list)
    seen_texts: set[int] = set()
    for dotted, f, lib in candidates():
        text = module_text(f, dotted)
        words = len(re.findall(r"\w+", text))
        if words < MIN_WORDS or hash(text) in seen_texts:
            continue
        seen_texts.add(hash(text))
        g = group_of(dotted, lib)
        groups[g].append({"module": dotted, "library": lib, "group": g, "text": text, "words": words})
    kept = {g: docs for g, docs in groups.items() if len(docs) >= args.min_group and g not in LIBRARIES}
    names = sorted(kept)
    rng.shuffle(names)
    test_groups = set(names[: len(names) // 2])
    docs: list[dict] = []
    for g in sorted(kept):
        members = kept[g]
        rng.shuffle(members)
        for d in members[: args.per_group]:
            d["id"] = f"{len(docs):04d}-{d['module']}"
            d["path"] = f"docs/{d['id']}.txt"
            d["split"] = "test" if g in test_groups else "train"
            (out / d["path"]).write_text(d["text"])
            docs.append(d)
    with open(out / "docs.jsonl", "w") as fh:
        for d in docs:
            fh.write(json.dumps({k: d[k] for k in ("id", "path", "module", "group", "library", "split", "words")}) + "\n")

    # pairs: every positive (same package) pair, and as many negatives: half from the same library
    # (hard: scipy.signal vs scipy.stats), half from anywhere
    def pairs_for(subset: list[dict]) -> list[dict]:
        by_group: dict[str, list[dict]] = defaultdict(list)
        for d in subset:
            by_group[d["group"]].append(d)
        pos = [(a, b) for g in by_group.values() for i, a in enumerate(g) for b in g[i + 1:]]
        neg = set()
        while len(neg) < len(pos):
            a = rng.choice(subset)
            pool = [d for d in subset if d["group"] != a["group"]
                    and (len(neg) % 2 == 1 or d["library"] == a["library"])]
            if not pool:
                pool = [d for d in subset if d["group"] != a["group"]]
            b = rng.choice(pool)
            neg.add((min(a["id"], b["id"]), max(a["id"], b["id"])))
        byid = {d["id"]: d for d in subset}
        rows = [{"a": a["path"], "b": b["path"], "label": 1} for a, b in pos]
        rows += [{"a": byid[a]["path"], "b": byid[b]["path"], "label": 0} for a, b in sorted(neg)]
        rng.shuffle(rows)
        return rows

    train_docs = [d for d in docs if d["split"] == "train"]
    train_groups = sorted({d["group"] for d in train_docs})
    rng.shuffle(train_groups)
    dev_groups = set(train_groups[: max(2, len(train_groups) // 6)])
    splits = {"train": [d for d in train_docs if d["group"] not in dev_groups],
              "dev": [d for d in train_docs if d["group"] in dev_groups],
              "test": [d for d in docs if d["split"] == "test"]}
    for name, subset in splits.items():
        rows = pairs_for(subset)
        with open(out / f"pairs_{name}.jsonl", "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        print(f"{name}: {len(subset)} docs in {len({d['group'] for d in subset})} packages, {len(rows)} pairs")
    total_words = sum(d["words"] for d in docs)
    print(f"{len(docs)} documents, {len(kept)} packages, {total_words} words (mean {total_words // max(1, len(docs))})"
          f" -> {out}")


if __name__ == "__main__":
    main()
