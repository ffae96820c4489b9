"""Build the ranking dev set from this machine's Python standard library documentation (pydoc text).

Documents are long: the pydoc page of a module (up to 200k characters) or of a class. The query is the
summary line of the object's docstring, which is removed from the document. Each query gets 100
candidates: the relevant document plus 99 hard negatives, taken alternately from BM25's and the dense
encoder's (truncation) top hits over the whole collection.

    python benchmarks/rank_data.py [benchmarks/data/rank]      # writes docs.jsonl, queries.jsonl
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import pkgutil
import random
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

SKIP = set("""antigravity this idlelib tkinter turtle turtledemo test lib2to3 ensurepip pydoc_data __main__
msilib winreg winsound nt xxsubtype xxlimited sre_compile sre_parse sre_constants distutils
_pydecimal pty tty curses nturl2path ntpath macpath encodings ctypes sqlite3.dump""".split())
PACKAGES = ("email", "xml", "json", "urllib", "http", "concurrent", "importlib", "logging", "multiprocessing",
            "unittest", "asyncio", "collections", "dbm", "xmlrpc", "wsgiref", "os", "html", "zoneinfo",
            "xml.etree", "xml.dom", "xml.sax", "xml.parsers", "email.mime", "concurrent.futures")
MAX_DOC_CHARS = 200_000
MAX_CLASSES_PER_MODULE = 3
CANDIDATES = 100
SEED = 13


def _clean(text: str) -> str:
    """pydoc plain text without machine-specific sections (FILE, MODULE REFERENCE) or DATA/VERSION tails."""
    import pydoc

    keep, skip = [], False
    for ln in pydoc.plain(text).splitlines():
        if ln and not ln[0].isspace():
            skip = ln.strip() in ("FILE", "MODULE REFERENCE", "DATA", "VERSION", "AUTHOR", "CREDITS", "DATE")
        if not skip:
            keep.append(ln.rstrip())
    return "\n".join(keep)


def _summary(obj) -> str | None:
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    first = re.sub(r"\s+", " ", first)
    words = first.split()
    if len(words) < 5 or len(first) > 300:
        return None
    return first


def _drop_summary(text: str, summary: str) -> str:
    """Remove the summary (which may be wrapped over several lines) from the rendered page."""
    words = [re.escape(w) for w in summary.split()]
    pattern = r"\s+".join(words)
    return re.sub(pattern, " ", text, count=3)


def module_names() -> list[str]:
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in SKIP)
    extra = []
    for pkg in PACKAGES:
        try:
            mod = importlib.import_module(pkg)
        except Exception:  # noqa: BLE001
            continue
        for info in pkgutil.iter_modules(getattr(mod, "__path__", []) or []):
            if not info.name.startswith("_"):
                extra.append(f"{pkg}.{info.name}")
    return sorted(set(names) | {e for e in extra if e not in SKIP and not e.startswith("test")})


def collect() -> list[dict]:
    import pydoc

    docs = []
    seen_summary: set[str] = set()
    for name in module_names():
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                mod = importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - platform modules that do not import here
            continue
        objs = [(name, mod, "module")]
        n_cls = 0
        for cname, cls in sorted(vars(mod).items()):
            if n_cls >= MAX_CLASSES_PER_MODULE:
                break
            if cname.startswith("_") or not inspect.isclass(cls) or getattr(cls, "__module__", "") != name:
                continue
            if cls.__doc__ is None or "__doc__" not in vars(cls):
                continue  # an inherited docstring says nothing about this class
            objs.append((f"{name}.{cname}", cls, "class"))
            n_cls += 1
        for oid, obj, kind in objs:
            summary = _summary(obj)
            if summary is None or summary.lower() in seen_summary:
                continue
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    page = _clean(pydoc.render_doc(obj, renderer=pydoc.plaintext, title="%s"))
            except BaseException:  # noqa: BLE001
                continue
            page = _drop_summary(page[: MAX_DOC_CHARS + 2000], summary)[:MAX_DOC_CHARS]
            if len(page.split()) < 150:
                continue
            seen_summary.add(summary.lower())
            docs.append({"id": oid, "kind": kind, "summary": summary, "text": page})
    return docs


def mine_candidates(docs: list[dict], queries: list[dict]) -> None:
    """Per query: the relevant doc + negatives alternately from BM25 and dense (first-chunk) top hits."""
    import numpy as np

    from longapps.adapters.encode import load_encoder
    from longapps.index.lexical import BM25Index, tokenize

    bm25 = BM25Index().fit(tokenize(d["text"][:200_000]) for d in docs)
    enc = load_encoder()
    dvec = enc.encode([d["text"][:2000] for d in docs])
    inner = getattr(enc, "inner", enc)
    qvec = inner.encode([q["query"] for q in queries])
    ids = [d["id"] for d in docs]
    for qi, q in enumerate(queries):
        lex = np.argsort(-bm25.scores(tokenize(q["query"])), kind="stable")
        den = np.argsort(-(dvec @ qvec[qi]), kind="stable")
        cands = [q["relevant"]]
        seen = {q["relevant"]}
        for a, b in zip(lex, den):
            for i in (a, b):
                if ids[i] not in seen and len(cands) < CANDIDATES:
                    seen.add(ids[i])
                    cands.append(ids[i])
            if len(cands) >= CANDIDATES:
                break
        rng = random.Random(f"{SEED}-{q['qid']}")
        rng.shuffle(cands)  # the input order carries no signal
        q["candidates"] = cands


def build(out: Path = ROOT / "data" / "rank") -> None:
    out.mkdir(parents=True, exist_ok=True)
    docs = collect()
    rng = random.Random(SEED)
    order = list(range(len(docs)))
    rng.shuffle(order)
    queries = [{"qid": f"q{n}", "query": docs[i]["summary"], "relevant": docs[i]["id"], "kind": docs[i]["kind"],
                "split": "tune" if n % 5 < 2 else "test"} for n, i in enumerate(order)]
    mine_candidates(docs, queries)
    with open(out / "docs.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "kind": d["kind"], "text": d["text"]}) + "\n")
    with open(out / "queries.jsonl", "w") as f:
        for q in queries:
            f.write(json.dumps(q) + "\n")
    lens = sorted(len(d["text"]) for d in docs)
    print(f"{len(docs)} documents (median {lens[len(lens) // 2]} chars, max {lens[-1]}), {len(queries)} queries "
          f"-> {out}")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "data" / "rank")
