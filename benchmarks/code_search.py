"""Dev benchmark for SEA code search: MRR of each split/aggregation/fusion variant, on all queries and on
long functions (>= 25 lines), per language; plus indexing throughput and warm query latency.

    python benchmarks/codesearch_data.py python benchmarks/data/python     # build a dev set (once)
    python benchmarks/code_search.py python java javascript                # table + benchmarks/results/code_search.json

Every variant uses the same units (from longapps' AST splitter) and the same encoder
(all-MiniLM-L6-v2); vectors come from the embedding cache after the first run.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from longapps.adapters.aggregate import hybrid_scores, pool_groups  # noqa: E402
from longapps.adapters.chunk import split_lines  # noqa: E402
from longapps.adapters.encode import load_encoder  # noqa: E402
from longapps.index.lexical import BM25Index, tokenize  # noqa: E402
from longapps.pipelines.code_search import (BM25_PARAMS, CodeSearch, block_max, encoder_texts,  # noqa: E402
                                            lexical_text)


def load_set(lang: str) -> tuple[Path, list[dict]]:
    d = ROOT / "data" / lang
    if not (d / "queries.jsonl").exists():
        from codesearch_data import build

        build(lang, d)
    return d / "repo", [json.loads(line) for line in open(d / "queries.jsonl")]


def find_targets(units: list[dict], queries: list[dict]) -> list[int]:
    by_path: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        by_path.setdefault(u["path"], []).append(i)
    targets = []
    for q in queries:
        cands = [i for i in by_path.get(q["path"], []) if units[i]["kind"] in ("function", "method")
                 and units[i]["start"] <= q["line"] <= units[i]["end"]]
        targets.append(min(cands, key=lambda i: units[i]["end"] - units[i]["start"]) if cands else -1)
    return targets


def mrr(scores: np.ndarray, targets: list[int], mask: np.ndarray) -> float:
    rr = []
    for qi, t in enumerate(targets):
        if t < 0 or not mask[qi]:
            continue
        rank = int((scores[qi] > scores[qi, t]).sum()) + 1
        rr.append(1.0 / rank)
    return float(np.mean(rr)) if rr else float("nan")


def run_language(lang: str, enc, lex_weights: list[float]) -> dict:
    repo, queries = load_set(lang)
    cs = CodeSearch(repo, index_dir=ROOT / "data" / lang / "index", encoder=enc)
    t0 = time.perf_counter()
    cs.index()
    index_s = time.perf_counter() - t0
    units = [u for _, us in cs.store.all_units() for u in us]
    targets = find_targets(units, queries)
    found = [t >= 0 for t in targets]
    long_mask = np.array([q["n_lines"] >= 25 for q in queries])
    all_mask = np.ones(len(queries), bool)
    qtexts = [q["query"] for q in queries]
    inner = enc.inner if hasattr(enc, "inner") else enc
    qv = inner.encode(qtexts)

    # chunk stage variants --------------------------------------------------------------------------
    trunc_vecs = enc.encode([u["text"] for u in units])                      # one vector, first 256 tokens
    trunc_head_vecs = enc.encode([f"{u['path']} {u['name']}\n{u['text']}" for u in units])  # same + context line
    win_texts, win_groups = [], []
    budget = cs.block_tokens
    for ui, u in enumerate(units):
        for c in split_lines(u["text"], max_lines=30, max_tokens=budget, count_tokens=enc.count_tokens):
            win_texts.append(c.text)
            win_groups.append(ui)
    win_vecs = enc.encode(win_texts)
    ast_texts, ast_groups = encoder_texts(units, "path+name")
    ast_vecs = enc.encode(ast_texts)
    ast_groups = np.asarray(ast_groups)

    bm25 = BM25Index(**BM25_PARAMS).fit(tokenize(lexical_text(u)) for u in units)
    lex = np.stack([bm25.scores(tokenize(q)) for q in qtexts])

    dense: dict[str, np.ndarray] = {
        "dense truncation (first 256 tokens)": qv @ trunc_vecs.T,
        "dense truncation + path/name line": qv @ trunc_head_vecs.T,
        "line windows + mean": qv @ pool_groups(win_vecs, win_groups, "mean").T,
    }
    for pooling in ("mean", "max", "attention", "first"):
        dense[f"AST blocks + {pooling}"] = qv @ pool_groups(ast_vecs, ast_groups, pooling).T
    bmax = block_max(qv @ ast_vecs.T, ast_groups, len(units))
    dense["AST blocks + block-max (query-time)"] = bmax
    dense["AST blocks + mean/block-max blend"] = 0.5 * dense["AST blocks + mean"] + 0.5 * bmax

    rows = [{"variant": "BM25 alone", "all": mrr(lex, targets, all_mask), "long": mrr(lex, targets, long_mask)}]
    for name, s in dense.items():
        rows.append({"variant": name, "all": mrr(s, targets, all_mask), "long": mrr(s, targets, long_mask)})
    for name in ("dense truncation (first 256 tokens)", "dense truncation + path/name line", "AST blocks + mean",
                 "AST blocks + attention",
                 "AST blocks + max", "AST blocks + mean/block-max blend"):
        for w in lex_weights:
            fused = np.stack([hybrid_scores(dense[name][i], lex[i], w) for i in range(len(qtexts))])
            rows.append({"variant": f"hybrid: {name} + BM25 (w={w})", "all": mrr(fused, targets, all_mask),
                         "long": mrr(fused, targets, long_mask)})

    # warm query latency through the real API (index loaded, model loaded)
    cs.search(qtexts[0])
    lat = []
    for q in qtexts[:50]:
        t = time.perf_counter()
        cs.search(q, 10)
        lat.append(time.perf_counter() - t)
    return {"language": lang, "units": len(units), "queries": len(queries), "found": int(sum(found)),
            "long_queries": int(long_mask.sum()), "index_s_warm_cache": round(index_s, 2),
            "warm_query_ms_median": round(1000 * statistics.median(lat), 1), "rows": rows}


def throughput(lang: str) -> dict:
    """Index a dev repo from scratch with an empty embedding cache: tokens/s of the whole pipeline."""
    import os
    import tempfile

    repo, _ = load_set(lang)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LONGAPPS_CACHE"] = tmp
        enc = load_encoder()
        cs = CodeSearch(repo, index_dir=Path(tmp) / "index", encoder=enc)
        t = time.perf_counter()
        s = cs.index()
        dt = time.perf_counter() - t
        units = [u for _, us in cs.store.all_units() for u in us]
        texts, _ = encoder_texts(units, cs.config.header)
        tokens = sum(enc.count_tokens(texts))
        t = time.perf_counter()
        s2 = cs.index()
        second = time.perf_counter() - t
        # the CLI in a fresh process: 200 queries from a file, JSON lines out, one model load
        import subprocess

        qfile = Path(tmp) / "q.txt"
        qs = [q["query"] for q in load_set(lang)[1]]
        qfile.write_text("\n".join((qs * 3)[:200]) + "\n")
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "longapps.cli", "search-code", str(repo), "--queries", str(qfile),
                            "--index-dir", str(Path(tmp) / "index"), "-k", "10"], capture_output=True, text=True,
                           env=dict(os.environ, LONGAPPS_CACHE=tmp))
        cli_s = time.perf_counter() - t
        del os.environ["LONGAPPS_CACHE"]
    return {"language": lang, "files": s.files, "blocks": s.blocks, "tokens": tokens, "seconds": round(dt, 1),
            "tokens_per_s": round(tokens / dt), "second_run_s": round(second, 2),
            "second_run_encoded": s2.encoded, "cli_200_queries_s": round(cli_s, 1),
            "cli_200_queries_ok": r.returncode == 0 and len(r.stdout.splitlines()) == 200,
            "repo_mb": round(sum(f.stat().st_size for f in repo.rglob("*") if f.is_file()) / 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("languages", nargs="*", default=["python", "java", "javascript"])
    ap.add_argument("--lexical-weights", default="0.2,0.3,0.4,0.5")
    ap.add_argument("--throughput", action="store_true", help="also index one set cold (slow)")
    ap.add_argument("--out", default=str(ROOT / "results" / "code_search.json"), help="JSON output file")
    args = ap.parse_args()
    enc = load_encoder()
    weights = [float(w) for w in args.lexical_weights.split(",")]
    results = [run_language(lang, enc, weights) for lang in args.languages]
    out = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                      f"{__import__('os').cpu_count()} cores", "encoder": enc.name, "languages": results}
    if args.throughput:
        out["throughput"] = throughput(args.languages[0])
    names = [r["variant"] for r in results[0]["rows"]]
    head = "| variant | " + " | ".join(f"{r['language']} all | {r['language']} long" for r in results) + " |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(results)))
    for i, n in enumerate(names):
        print(f"| {n} | " + " | ".join(f"{r['rows'][i]['all']:.3f} | {r['rows'][i]['long']:.3f}" for r in results) + " |")
    for r in results:
        print(f"{r['language']}: {r['units']} units, {r['queries']} queries ({r['found']} matched, "
              f"{r['long_queries']} long), warm query {r['warm_query_ms_median']} ms")
    if "throughput" in out:
        print("throughput:", out["throughput"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
