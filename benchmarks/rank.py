"""Ranking dev benchmark (issue 4): nDCG@10 / MRR of bm25, dense truncation, chunked dense and the hybrid
first stage over ~440 stdlib-doc queries x 100 candidates; then llm-full vs llm-window (offline SmolLM2) on a
few queries, with their costs (prompt/generated tokens, calls, wall) measured in the same run.

    python benchmarks/rank_data.py                 # build benchmarks/data/rank (once, ~1.5 min)
    python benchmarks/rank.py [--llm-queries 3]    # table + benchmarks/results/rank.json

Defaults of RankerConfig (lexical_weight, best_weight) are picked on the 'tune' split (40% of queries) and
reported on the 'test' split (60%).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from longapps.adapters.passages import chunk_scores, select_chunks  # noqa: E402
from longapps.index.lexical import BM25Index, tokenize  # noqa: E402
from longapps.adapters.aggregate import hybrid_scores  # noqa: E402
from longapps.pipelines.ranking import MAX_LEXICAL_CHARS, Passage, Ranker, RankerConfig  # noqa: E402


def load(data: Path) -> tuple[list[dict], list[dict]]:
    if not (data / "queries.jsonl").exists():
        from rank_data import build

        build(data)
    docs = [json.loads(line) for line in open(data / "docs.jsonl")]
    queries = [json.loads(line) for line in open(data / "queries.jsonl")]
    return docs, queries


def rank_of(scores: np.ndarray, target: int) -> int:
    """1-based rank of `target` with ties broken pessimistically-stable (argsort order)."""
    order = np.argsort(-scores, kind="stable")
    return int(np.flatnonzero(order == target)[0]) + 1


def ndcg10(rank: int) -> float:
    return 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0


def summarize(ranks: list[int]) -> dict[str, float]:
    return {"ndcg@10": round(float(np.mean([ndcg10(r) for r in ranks])), 4),
            "mrr": round(float(np.mean([1.0 / r for r in ranks])), 4),
            "recall@10": round(float(np.mean([r <= 10 for r in ranks])), 4), "n": len(ranks)}


def first_stage_features(ranker: Ranker, docs: list[dict], queries: list[dict]) -> list[dict]:
    """Per query, per candidate: bm25, first-chunk, best-chunk and mean-chunk similarities."""
    texts = [d["text"] for d in docs]
    t0 = time.perf_counter()
    chunks, vecs = ranker.encode_passages(texts)
    t_enc = time.perf_counter() - t0
    print(f"encoded {len(texts)} documents as {len(chunks.texts)} chunks in {t_enc:.1f}s "
          f"({chunks.truncated} past {ranker.config.max_chunks} chunks)", file=sys.stderr)
    index = {d["id"]: i for i, d in enumerate(docs)}
    inner = getattr(ranker.encoder, "inner", ranker.encoder)
    qvecs = inner.encode([q["query"] for q in queries])
    doc_tokens: dict[int, list[str]] = {}
    feats = []
    for qi, q in enumerate(queries):
        cand = [index[c] for c in q["candidates"]]
        sub, sub_vecs = select_chunks(chunks, vecs, cand)
        f = chunk_scores(qvecs[qi], sub_vecs, sub)
        for i in cand:
            if i not in doc_tokens:
                doc_tokens[i] = tokenize(texts[i][:MAX_LEXICAL_CHARS])
        bm25 = BM25Index().fit(doc_tokens[i] for i in cand).scores(tokenize(q["query"]))
        feats.append({"bm25": bm25.astype(np.float64), "first": f.first.astype(np.float64),
                      "best": f.best.astype(np.float64), "mean": f.mean.astype(np.float64),
                      "target": q["candidates"].index(q["relevant"]), "cand": cand})
    return feats, {"encode_s": round(t_enc, 1), "chunks": len(chunks.texts), "documents": len(texts)}


def variant_scores(f: dict, lexical_weight: float, best_weight: float, mean_weight: float = 0.0) -> np.ndarray:
    dense = (1 - best_weight - mean_weight) * f["first"] + best_weight * f["best"] + mean_weight * f["mean"]
    return hybrid_scores(dense, f["bm25"], lexical_weight) if lexical_weight > 0 else dense


def evaluate(feats: list[dict], fn) -> dict[str, float]:
    return summarize([rank_of(fn(f), f["target"]) for f in feats])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "rank")
    ap.add_argument("--llm-queries", type=int, default=3, help="test queries for the LLM part (0 = skip)")
    ap.add_argument("--top-n", type=int, default=100, help="candidates the LLM reranks")
    ap.add_argument("--quality-queries", type=int, default=20,
                    help="extra test queries where llm-full reranks only the hybrid's top --quality-top-n")
    ap.add_argument("--quality-top-n", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "rank.json")
    args = ap.parse_args()

    docs, queries = load(args.data)
    cfg = RankerConfig()
    ranker = Ranker(cfg, progress=sys.stderr.isatty())
    t0 = time.perf_counter()
    feats, enc_info = first_stage_features(ranker, docs, queries)
    print(f"features in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    split = {s: [f for f, q in zip(feats, queries) if q["split"] == s] for s in ("tune", "test")}

    # grid on the tune split
    grid = []
    for lw in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        for bw in (0.0, 0.25, 0.5, 0.75, 1.0):
            for mw in (0.0, 0.25):
                if bw + mw > 1.0:
                    continue
                m = evaluate(split["tune"], lambda f: variant_scores(f, lw, bw, mw))
                grid.append({"lexical_weight": lw, "best_weight": bw, "mean_weight": mw, **m})
    best = max(grid, key=lambda g: (g["ndcg@10"], g["mrr"]))
    print(f"best on tune: {best}", file=sys.stderr)

    variants = {
        "bm25": lambda f: f["bm25"],
        "dense truncation (first 256 tokens)": lambda f: f["first"],
        "dense best chunk": lambda f: f["best"],
        f"dense first+best (b={cfg.best_weight})": lambda f: variant_scores(f, 0.0, cfg.best_weight, cfg.mean_weight),
        f"hybrid default (lw={cfg.lexical_weight}, b={cfg.best_weight})":
            lambda f: variant_scores(f, cfg.lexical_weight, cfg.best_weight, cfg.mean_weight),
        "hybrid, truncation only (lw=0.3, b=0)": lambda f: variant_scores(f, 0.3, 0.0),
        f"hybrid tune-best (lw={best['lexical_weight']}, b={best['best_weight']}, m={best['mean_weight']})":
            lambda f: variant_scores(f, best["lexical_weight"], best["best_weight"], best["mean_weight"]),
    }
    table = {name: {s: evaluate(split[s], fn) for s in ("test", "tune")} for name, fn in variants.items()}
    print("\n| method | nDCG@10 (test) | MRR (test) | R@10 (test) | nDCG@10 (tune) |")
    print("|---|---|---|---|---|")
    for name, r in table.items():
        print(f"| {name} | {r['test']['ndcg@10']:.4f} | {r['test']['mrr']:.4f} | {r['test']['recall@10']:.3f} "
              f"| {r['tune']['ndcg@10']:.4f} |")

    # check the pipeline path gives the same ranks as the feature path for the default (a few queries)
    by_id = {d["id"]: d for d in docs}
    test_q = [q for q in queries if q["split"] == "test"]
    for q in test_q[:5]:
        ps = [Passage(c, by_id[c]["text"]) for c in q["candidates"]]
        got = ranker.rank(q["query"], ps)
        f = feats[queries.index(q)]
        expect = rank_of(variant_scores(f, cfg.lexical_weight, cfg.best_weight, cfg.mean_weight), f["target"])
        pipe = next(r.rank for r in got if r.id == q["relevant"])
        assert pipe == expect, (q["qid"], pipe, expect)
    first_stage_ms = ranker.stats.first_stage_s * 1000

    # LLM part: llm-full vs llm-window on the hybrid's top-N, same passage budget, same run
    llm = {}
    if args.llm_queries > 0:
        from longapps.models.causal_lm import load_causal_lm, set_cpu_threads

        threads = set_cpu_threads()
        t_load = time.perf_counter()
        lm = load_causal_lm()
        load_s = time.perf_counter() - t_load
        threads = set_cpu_threads(threads)
        lranker = Ranker(RankerConfig(rerank_top=args.top_n), encoder=ranker.encoder, lm=lm)
        # what full-list mode gives each of N passages; "same budget" runs give window mode exactly that too, so
        # both read the same text; "default" runs let window mode fit its own (20-passage) prompts as users get it
        budget = lranker.plan(test_q[0]["query"], args.top_n)
        runs = {"hybrid": ("hybrid", None), "llm-full": ("llm-full", None),
                "llm-window (same budget)": ("llm-window", budget.passage_tokens),
                "llm-window (default budget)": ("llm-window", None)}
        rows = {m: [] for m in runs}
        for q in test_q[: args.llm_queries]:
            ps = [Passage(c, by_id[c]["text"]) for c in q["candidates"]]
            for label, (method, per) in runs.items():
                lranker.config.method = method
                lranker.config.passage_tokens = per
                got = lranker.rank(q["query"], ps)
                r = next(x.rank for x in got if x.id == q["relevant"])
                s = lranker.stats
                rows[label].append({"qid": q["qid"], "rank": r, "prompt_tokens": s.prompt_tokens,
                                    "generated_tokens": s.generated_tokens, "llm_calls": s.llm_calls,
                                    "llm_s": round(s.llm_s, 1), "wall_s": round(s.wall_s, 1),
                                    "parsed_ids": s.parsed_ids, "repaired_ids": s.repaired_ids,
                                    "passage_tokens": s.passage_tokens, "notes": s.notes})
                print(f"{q['qid']} {label}: rank {r}, {s.llm_calls} calls, {s.prompt_tokens} prompt + "
                      f"{s.generated_tokens} generated tokens, {s.passage_tokens} tokens/passage, "
                      f"{s.wall_s:.1f}s", file=sys.stderr)
        agg = {}
        for label, rs in rows.items():
            agg[label] = {**summarize([x["rank"] for x in rs]),
                          **{k: int(sum(x[k] for x in rs)) for k in ("prompt_tokens", "generated_tokens",
                                                                      "llm_calls", "parsed_ids")},
                          "passage_tokens": rs[0]["passage_tokens"],
                          "llm_s": round(sum(x["llm_s"] for x in rs), 1),
                          "wall_s": round(sum(x["wall_s"] for x in rs), 1)}
        full = agg["llm-full"]
        ratios = {}
        for label in ("llm-window (same budget)", "llm-window (default budget)"):
            win = agg[label]
            ratios[label] = {"prompt_tokens": round(full["prompt_tokens"] / max(1, win["prompt_tokens"]), 3),
                             "llm_wall": round(full["llm_s"] / max(1e-9, win["llm_s"]), 3)}
        llm = {"model": lm.name, "context": lm.context_length, "load_s": round(load_s, 1), "threads": threads,
               "top_n": args.top_n, "full_passage_tokens": budget.passage_tokens, "per_query": rows, "total": agg,
               "full_vs_window": ratios}
        print(f"\nLLM ({lm.name}, {args.llm_queries} test queries x {args.top_n} candidates, {threads} thread(s)):")
        print("| method | tokens/passage | nDCG@10 | MRR | LLM calls | prompt tokens | generated tokens | ids parsed "
              "| LLM wall (s) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, a in agg.items():
            print(f"| {label} | {a['passage_tokens'] or '-'} | {a['ndcg@10']:.4f} | {a['mrr']:.4f} | {a['llm_calls']} "
                  f"| {a['prompt_tokens']} | {a['generated_tokens']} | {a['parsed_ids']} | {a['llm_s']:.1f} |")
        for label, r in ratios.items():
            print(f"llm-full / {label}: prompt tokens x{r['prompt_tokens']}, LLM wall x{r['llm_wall']}")
        if args.quality_queries > 0:
            # LLM quality on more queries, cheaply: llm-full over the hybrid's top-20 only
            qr = Ranker(RankerConfig(method="llm-full", rerank_top=args.quality_top_n), encoder=ranker.encoder,
                        lm=lm)
            pool = test_q[args.llm_queries: args.llm_queries + args.quality_queries]
            ranks = {"hybrid": [], "llm-full": []}
            t_q = time.perf_counter()
            parsed = 0
            for q in pool:
                ps = [Passage(c, by_id[c]["text"]) for c in q["candidates"]]
                for method in ("hybrid", "llm-full"):
                    qr.config.method = method
                    got = qr.rank(q["query"], ps)
                    ranks[method].append(next(x.rank for x in got if x.id == q["relevant"]))
                parsed += qr.stats.parsed_ids
            llm["quality_top_n"] = {"queries": len(pool), "top_n": args.quality_top_n,
                                    "hybrid": summarize(ranks["hybrid"]), "llm-full": summarize(ranks["llm-full"]),
                                    "ids_parsed_per_query": round(parsed / max(1, len(pool)), 1),
                                    "wall_s": round(time.perf_counter() - t_q, 1)}
            print(f"quality, {len(pool)} queries, llm-full over the hybrid's top {args.quality_top_n}: "
                  f"{llm['quality_top_n']}")

    out = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "data": {"documents": len(docs), "queries": len(queries), "test": len(split["test"]),
                    "tune": len(split["tune"]), "candidates": len(queries[0]["candidates"]), **enc_info},
           "config": {"lexical_weight": cfg.lexical_weight, "best_weight": cfg.best_weight,
                      "mean_weight": cfg.mean_weight, "max_chunks": cfg.max_chunks,
                      "chunk_tokens": ranker.chunk_tokens},
           "first_stage_ms_per_query_100_cached": round(first_stage_ms, 1),
           "table": table, "grid_tune": grid, "best_tune": best, "llm": llm}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
