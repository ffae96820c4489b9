"""Quality on the long-document dev set (benchmarks/retrieve_data.py): nDCG@10 and recall@100, overall and by
the length of the relevant document, for the distilled Mamba retriever vs its teacher (MiniLM) truncated to
256/512 tokens, the teacher over every chunk (best chunk), BM25 and the hybrid first stage.

The teacher's vectors, its best-chunk scores, BM25 scores and document lengths are in the bundle's eval.npz
(computed on the CPU by ``retrieve_data.py --bundle``); the students' vectors come from the device run
(``benchmarks/mamba_gpu.py train --vectors``), any number of them (one system per label).

    python benchmarks/retrieve_eval.py --data benchmarks/data/mamba_dev --vectors student_a.npz student_b.npz \
        --json quality.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

BUCKETS = [(0, 1024), (1024, 4096), (4096, 16384), (16384, 10**9)]


def metrics(scores: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: nDCG@10 (one relevant document) and recall@100."""
    ranks = (scores > scores[np.arange(len(rel)), rel][:, None]).sum(1)
    ndcg = np.where(ranks < 10, 1.0 / np.log2(ranks + 2), 0.0)
    return ndcg, (ranks < 100).astype(float)


def _corpus(data: Path) -> list[dict]:
    import gzip

    plain = data / "corpus.jsonl"
    f = open(plain) if plain.exists() else gzip.open(str(plain) + ".gz", "rt", encoding="utf-8")
    with f:
        return [json.loads(x) for x in f]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).parent / "data" / "mamba_dev"),
                    help="the device bundle (corpus, queries, eval.npz with the teacher's vectors and BM25)")
    ap.add_argument("--vectors", nargs="*", default=[], help=".npz files with student_<label>_* vectors")
    ap.add_argument("--json")
    args = ap.parse_args()
    from longapps.adapters.aggregate import hybrid_scores

    data = Path(args.data)
    docs = _corpus(data)
    queries = [json.loads(x) for x in open(data / "queries.jsonl")]
    ids = {d["id"]: i for i, d in enumerate(docs)}
    rel = np.array([ids[q["doc"]] for q in queries])
    v = dict(np.load(data / "eval.npz")) if (data / "eval.npz").exists() else {}
    for f in args.vectors:
        v.update(np.load(f))
    systems: dict[str, np.ndarray] = {}
    labels = sorted({k[len("student_"):-len("_queries")] for k in v if k.startswith("student_") and k.endswith("_queries")})
    for label in labels:
        for mt in (8192, 2048):
            if f"student_{label}_docs{mt}" in v:
                systems[f"Mamba distilled ({label}), {mt} tok"] = \
                    v[f"student_{label}_queries"] @ v[f"student_{label}_docs{mt}"].T
    for mt in (256, 512):
        if f"teacher{mt}_docs" in v:
            systems[f"MiniLM teacher, first {mt} tok"] = v["teacher_queries"] @ v[f"teacher{mt}_docs"].T
    if "teacher_bestchunk_scores" in v:
        systems["MiniLM teacher, best chunk (all chunks)"] = v["teacher_bestchunk_scores"]
    if "bm25_scores" in v:
        lex = v["bm25_scores"]
    else:  # computed here (needs bm25s)
        from longapps.index.lexical import BM25Index, tokenize

        bm25 = BM25Index().fit(tokenize(d["text"]) for d in docs)
        lex = np.stack([bm25.scores(tokenize(q["query"])) for q in queries])
    systems["BM25"] = lex
    if "teacher_bestchunk_scores" in v:
        systems["hybrid: best chunk + BM25 0.3"] = np.stack(
            [hybrid_scores(v["teacher_bestchunk_scores"][i], lex[i], 0.3) for i in range(len(queries))])
    if "MiniLM teacher, first 256 tok" in systems:
        systems["hybrid: MiniLM first 256 + BM25 0.3"] = np.stack(
            [hybrid_scores(systems["MiniLM teacher, first 256 tok"][i], lex[i], 0.3) for i in range(len(queries))])
    if "doc_len" in v:
        doc_len = v["doc_len"]
    else:
        from transformers import AutoTokenizer

        from longapps.resources import resolve_model

        tok = AutoTokenizer.from_pretrained(resolve_model(None))
        doc_len = np.array([len(x) for x in tok([d["text"] for d in docs], add_special_tokens=False)["input_ids"]])
    qlen = doc_len[rel]
    out = {"queries": len(queries), "documents": len(docs),
           "buckets": [f"{a}-{b if b < 10**9 else 'inf'}" for a, b in BUCKETS],
           "bucket_sizes": [int(((qlen >= a) & (qlen < b)).sum()) for a, b in BUCKETS], "systems": {}}
    head = "| system | nDCG@10 | recall@100 | " + " | ".join(f"nDCG@10 {b} tok (n={n})" for b, n in
                                                             zip(out["buckets"], out["bucket_sizes"])) + " |"
    print(head)
    print("|" + "---|" * (3 + len(BUCKETS)))
    for name, s in systems.items():
        ndcg, rec = metrics(np.asarray(s, dtype=np.float64), rel)
        by = [float(ndcg[(qlen >= a) & (qlen < b)].mean()) if ((qlen >= a) & (qlen < b)).any() else math.nan
              for a, b in BUCKETS]
        out["systems"][name] = {"ndcg10": float(ndcg.mean()), "recall100": float(rec.mean()), "ndcg10_by_length": by}
        print(f"| {name} | {ndcg.mean():.3f} | {rec.mean():.3f} | " + " | ".join(f"{x:.3f}" for x in by) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
