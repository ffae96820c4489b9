"""Long-document matching benchmark: SMITH (untrained / self-supervised / fine-tuned on pairs) against BM25 and
MiniLM baselines on the dev set of `benchmarks/match_data.py`, plus CPU indexing speed and `--doc` latency.

Tasks (test split: packages never seen in pair training):
- related documents: every test document queries the other test documents; relevant = same package.
  MAP and recall@10.
- pair classification: the test pairs (same package = 1; half of the negatives from the same library).
  Accuracy and F1 at a threshold chosen on one half of the pairs and applied to the other (2-fold, averaged),
  the same procedure for every method; ROC AUC needs no threshold.

Every method reads the same beginning of each document: SMITH and BM25 its first --max-blocks sentence blocks
(64 x 32 tokens by default), MiniLM the first 256 tokens or round(max_blocks * 32 / 240) chunks of 240 tokens.

    python benchmarks/match_data.py                       # builds benchmarks/data/match (once)
    python benchmarks/match.py [--ssl-minutes 8] [--pairs-minutes 16] [--speed-docs 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longapps.adapters.aggregate import hybrid_scores, pool_groups  # noqa: E402
from longapps.adapters.documents import DocPair, load_pairs  # noqa: E402
from longapps.adapters.passages import chunk_passages  # noqa: E402
from longapps.index.lexical import BM25Index, tokenize  # noqa: E402
from longapps.pipelines.doc_match import BM25_PARAMS, Matcher, MatchConfig  # noqa: E402
from longapps.pipelines.match_train import MatchTrainConfig, SmithTrainer, auc  # noqa: E402


# -- metrics -------------------------------------------------------------------------------------

def retrieval_metrics(S: np.ndarray, groups: list[str], k: int = 10) -> dict[str, float]:
    """MAP and recall@k of ranking each row's other documents by S (self excluded)."""
    aps, recalls = [], []
    g = np.asarray(groups)
    for i in range(len(S)):
        rel = (g == g[i])
        rel[i] = False
        if not rel.any():
            continue
        scores = S[i].astype(np.float64).copy()
        scores[i] = -np.inf
        order = np.argsort(-scores, kind="stable")[:-1]
        hits = rel[order]
        prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float((prec * hits).sum() / hits.sum()))
        recalls.append(float(hits[:k].sum() / rel.sum()))
    return {"MAP": float(np.mean(aps)), f"R@{k}": float(np.mean(recalls))}


def _best_threshold(s: np.ndarray, y: np.ndarray) -> float:
    cands = np.unique(s)
    accs = [((s >= t) == y).mean() for t in cands]
    return float(cands[int(np.argmax(accs))])


def pair_metrics(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Accuracy / F1 at a threshold tuned on the other half (2-fold), and ROC AUC."""
    idx = np.arange(len(scores))
    random.Random(seed).shuffle(idx)
    halves = [idx[: len(idx) // 2], idx[len(idx) // 2:]]
    accs, f1s = [], []
    for tune, test in [(halves[0], halves[1]), (halves[1], halves[0])]:
        t = _best_threshold(scores[tune], labels[tune])
        pred = scores[test] >= t
        y = labels[test].astype(bool)
        tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
        accs.append(float((pred == y).mean()))
        f1s.append(float(2 * tp / max(1, 2 * tp + fp + fn)))
    return {"acc": float(np.mean(accs)), "F1": float(np.mean(f1s)), "AUC": auc(scores, labels)}


# -- methods -------------------------------------------------------------------------------------

def bm25_matrix(texts: list[str]) -> np.ndarray:
    bm = BM25Index(**BM25_PARAMS).fit(tokenize(t) for t in texts)
    return np.stack([bm.scores(tokenize(t)) for t in texts]).astype(np.float64)


def bm25_pair_matrix(S: np.ndarray) -> np.ndarray:
    """A symmetric, self-normalised BM25 similarity for pairs: mean of s(a->b)/s(a->a) and s(b->a)/s(b->b)."""
    d = np.maximum(np.diag(S), 1e-9)
    N = S / d[:, None]
    return 0.5 * (N + N.T)


def fused_matrix(dense: np.ndarray, lexical: np.ndarray, w: float) -> np.ndarray:
    """Each query row fused as `longapps match --corpus` does (z-normalised, self excluded)."""
    out = np.zeros_like(dense, dtype=np.float64)
    for i in range(len(dense)):
        keep = np.arange(len(dense)) != i
        out[i, keep] = hybrid_scores(dense[i, keep], lexical[i, keep], w)
        out[i, i] = np.inf
    return out


def minilm_vectors(texts: list[str], log, max_chunks: int = 8) -> dict[str, np.ndarray]:
    """MiniLM on the first 256 tokens, and mean / max over 240-token sentence chunks (max_chunks x 240 ~ the
    tokens SMITH reads), through our adapters and the embedding cache."""
    from longapps.adapters.encode import load_encoder

    enc = load_encoder(max_tokens=256)
    t = time.perf_counter()
    first = enc.encode(texts)
    chunks = chunk_passages(texts, max_tokens=240, max_chunks=max_chunks, count_tokens=enc.count_tokens)
    cv = enc.encode(chunks.texts)
    log(f"MiniLM encodings: {len(texts)} docs + {len(chunks.texts)} chunks in {time.perf_counter() - t:.0f}s")
    return {"first": first, "mean": pool_groups(cv, chunks.groups, "mean"), "max": pool_groups(cv, chunks.groups, "max")}


def evaluate(name: str, S_ret: np.ndarray, S_pair: np.ndarray, groups: list[str], pair_idx: np.ndarray,
             labels: np.ndarray) -> dict:
    r = retrieval_metrics(S_ret, groups)
    p = pair_metrics(S_pair[pair_idx[:, 0], pair_idx[:, 1]], labels)
    return {"method": name, **r, **p}


# -- speed ---------------------------------------------------------------------------------------

def speed_corpus(folder: Path, n: int, data: Path) -> None:
    """n short documents: the NCBI-disease abstracts, topped up with the first paragraphs of dev documents."""
    folder.mkdir(parents=True, exist_ok=True)
    src = Path("/work/shared/data/ncbi-disease/standoff")
    files = sorted(src.rglob("*.txt")) if src.exists() else []
    k = 0
    for f in files[:n]:
        (folder / f"ncbi-{f.stem}-{k}.txt").write_text(f.read_text())
        k += 1
    for f in sorted((data / "docs").glob("*.txt")):
        if k >= n:
            break
        (folder / f"doc-{f.stem}.txt").write_text(f.read_text()[:1500])
        k += 1


def speed(n_docs: int, data: Path, log) -> dict:
    """Fresh cache: index n_docs documents on CPU (tokens/s), then `--doc` queries (in-process and CLI)."""
    tmp = Path(tempfile.mkdtemp(prefix="match-speed-"))
    env_before = os.environ.get("LONGAPPS_CACHE")
    os.environ["LONGAPPS_CACHE"] = str(tmp / "cache")
    try:
        corpus = tmp / "corpus"
        speed_corpus(corpus, n_docs, data)
        m = Matcher(MatchConfig(), progress=False)
        _ = m.encoder  # model load is not indexing
        t = time.perf_counter()
        s = m.index(corpus, index_dir=tmp / "idx")
        index_s = time.perf_counter() - t
        log(f"speed: indexed {s.docs} docs, {s.blocks} blocks, {s.tokens} tokens in {index_s:.1f}s")
        docs = sorted(corpus.glob("*.txt"))
        rng = random.Random(0)
        queries = rng.sample(docs, 20)
        lat = []
        for q in queries:  # what a second `longapps match --corpus DIR --doc X` does after its imports
            t = time.perf_counter()
            m2 = Matcher(MatchConfig())
            m2.index(corpus, index_dir=tmp / "idx")
            m2.related(q, 10)
            lat.append(time.perf_counter() - t)
        cli = []
        for q in queries[:3]:
            t = time.perf_counter()
            r = subprocess.run([str(ROOT / ".venv/bin/longapps"), "match", "--corpus", str(corpus), "--doc", str(q),
                                "--index-dir", str(tmp / "idx"), "--json"], capture_output=True, text=True)
            cli.append(time.perf_counter() - t)
            assert r.returncode == 0, r.stderr
        return {"docs": s.docs, "blocks": s.blocks, "tokens": s.tokens, "index_s": round(index_s, 1),
                "tokens_per_s": round(s.tokens / index_s, 1), "docs_per_s": round(s.docs / index_s, 2),
                "query_latency_median_s": round(statistics.median(lat), 3),
                "query_latency_max_s": round(max(lat), 3), "cli_wall_median_s": round(statistics.median(cli), 2)}
    finally:
        if env_before is None:
            os.environ.pop("LONGAPPS_CACHE", None)
        else:
            os.environ["LONGAPPS_CACHE"] = env_before
        shutil.rmtree(tmp, ignore_errors=True)


# -- main ----------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "benchmarks/data/match"))
    ap.add_argument("--ssl-minutes", type=float, default=8.0)
    ap.add_argument("--pairs-minutes", type=float, default=16.0, help="split between siamese and contrastive")
    ap.add_argument("--ssl-epochs", type=int, default=4)
    ap.add_argument("--pairs-epochs", type=int, default=3)
    ap.add_argument("--speed-docs", type=int, default=1000, help="0 = skip the speed part")
    ap.add_argument("--only-speed", action="store_true", help="run only the speed part (JSON to --out)")
    ap.add_argument("--pairs-init", choices=["untrained", "ssl"], default="untrained",
                    help="start of pair fine-tuning: the untrained (identity) model or the self-supervised one")
    ap.add_argument("--max-blocks", type=int, default=64, help="blocks of 32 tokens read per document (all methods "
                                                                "read the same bounded text)")
    ap.add_argument("--models", default=str(ROOT / "benchmarks/data/match-models"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/match.json"))
    args = ap.parse_args()
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", file=sys.stderr, flush=True)

    data = Path(args.data)
    if args.only_speed:
        spd = speed(args.speed_docs, data, log)
        print(json.dumps(spd))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"speed": spd, "machine": {"cpus": os.cpu_count(),
                                              "load": os.getloadavg()}}, indent=1))
        return
    meta = [json.loads(x) for x in open(data / "docs.jsonl")]
    mcfg = lambda: MatchConfig(max_blocks=args.max_blocks)  # noqa: E731
    base = Matcher(mcfg())
    bounded = {d["path"]: (data / d["path"]).read_bytes()[: base.max_doc_bytes].decode("utf-8", "ignore")
               for d in meta}
    test = [d for d in meta if d["split"] == "test"]
    groups = [d["group"] for d in test]
    texts = [bounded[d["path"]] for d in test]
    row = {d["path"]: i for i, d in enumerate(test)}
    test_pairs = [json.loads(x) for x in open(data / "pairs_test.jsonl")]
    pair_idx = np.array([[row[p["a"]], row[p["b"]]] for p in test_pairs])
    labels = np.array([p["label"] for p in test_pairs])
    log(f"{len(meta)} documents ({len(test)} test, {len(set(groups))} test packages), {len(test_pairs)} test pairs")

    results = []
    # BM25 reads what SMITH reads (the document's blocks), as `longapps match --corpus` indexes it
    S_bm25 = bm25_matrix([" ".join(base.blocks(t)[0]) for t in texts])
    results.append(evaluate("BM25", S_bm25, bm25_pair_matrix(S_bm25), groups, pair_idx, labels))
    log("BM25 done")
    for name, V in minilm_vectors(texts, log, max(1, round(args.max_blocks * 32 / 240))).items():
        label = {"first": "MiniLM first 256 tokens", "mean": "MiniLM mean over chunks",
                 "max": "MiniLM max over chunks"}[name]
        S = V @ V.T
        results.append(evaluate(label, S, S, groups, pair_idx, labels))

    # SMITH: block vectors once (embedding cache), then each document encoder
    trainer = SmithTrainer(MatchTrainConfig(max_blocks=args.max_blocks), matcher=base)
    t = time.perf_counter()
    all_blocks = trainer.block_data([bounded[d["path"]] for d in meta])
    log(f"SMITH blocks: {sum(len(b) for b in all_blocks)} block vectors in {time.perf_counter() - t:.0f}s")
    test_blocks = [all_blocks[meta.index(d)] for d in test]

    def smith_rows(matcher: Matcher, name: str) -> None:
        flat = np.concatenate(test_blocks)
        V = matcher.doc_vectors(flat, [len(b) for b in test_blocks])
        S = V @ V.T
        results.append(evaluate(name, S, S, groups, pair_idx, labels))
        w = matcher.config.lexical_weight
        results.append(evaluate(f"{name} + BM25 ({w})", fused_matrix(S, S_bm25, w), S, groups, pair_idx, labels))

    smith_rows(base, "SMITH untrained")
    models = Path(args.models)
    train_info = {}
    # self-supervised on the whole corpus (no labels)
    cfg = MatchTrainConfig(epochs=args.ssl_epochs, time_budget_s=args.ssl_minutes * 60, patience=3, seed=0,
                           max_blocks=args.max_blocks)
    ssl = SmithTrainer(cfg, matcher=Matcher(mcfg()))
    r = ssl.train_blocks(all_blocks, models / "ssl")
    train_info["self-supervised"] = {k: v for k, v in r.__dict__.items() if k != "history"} | {"history": r.history}
    log(f"self-supervised: {r.steps} steps, {r.epochs} epochs ({r.stopped}), best masked-block acc {r.best_dev:.3f}, "
        f"{r.seconds:.0f}s")
    smith_rows(Matcher.load(models / "ssl", config=mcfg()), "SMITH self-supervised")

    # fine-tuned on pairs of the train packages (dev pairs: other packages), from --pairs-init
    def read_pairs(name: str) -> list[DocPair]:
        out = []
        for x in open(data / name):
            p = json.loads(x)
            out.append(DocPair(bounded[p["a"]], bounded[p["b"]], p["a"], p["b"], p["label"], 0))
        return out

    train_pairs, dev_pairs = read_pairs("pairs_train.jsonl"), read_pairs("pairs_dev.jsonl")
    for objective, label in [("pairs", "SMITH fine-tuned on pairs (siamese)"),
                             ("contrastive", "SMITH fine-tuned on pairs (contrastive)")]:
        init = str(models / "ssl") if args.pairs_init == "ssl" else None
        cfg = MatchTrainConfig(init=init, epochs=args.pairs_epochs, lr=1e-4, max_blocks=args.max_blocks,
                               time_budget_s=args.pairs_minutes * 60 / 2, patience=3, seed=0)
        tr = SmithTrainer(cfg, matcher=Matcher.load(init, config=mcfg()) if init else Matcher(mcfg()))
        r = tr.train_pairs(train_pairs, models / objective, objective, dev_pairs)
        train_info[label] = {k: v for k, v in r.__dict__.items() if k != "history"} | {"history": r.history}
        log(f"{label}: {r.steps} steps, {r.epochs} epochs ({r.stopped}), best dev AUC {r.best_dev:.3f}, "
            f"{r.seconds:.0f}s")
        smith_rows(Matcher.load(models / objective, config=mcfg()), label)

    spd = speed(args.speed_docs, data, log) if args.speed_docs else None

    cols = ["MAP", "R@10", "acc", "F1", "AUC"]
    print(f"\n{'method':<48}" + "".join(f"{c:>8}" for c in cols))
    for r in results:
        print(f"{r['method']:<48}" + "".join(f"{r[c]:8.3f}" for c in cols))
    if spd:
        print(f"\nspeed (CPU, {spd['docs']} docs): indexing {spd['tokens_per_s']} tokens/s "
              f"({spd['docs_per_s']} docs/s), --doc latency median {spd['query_latency_median_s']}s "
              f"max {spd['query_latency_max_s']}s, CLI wall {spd['cli_wall_median_s']}s")
    out = {"results": results, "training": train_info, "speed": spd,
           "data": {"docs": len(meta), "test_docs": len(test), "test_packages": len(set(groups)),
                    "test_pairs": len(test_pairs), "train_pairs": len(train_pairs), "dev_pairs": len(dev_pairs)},
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
           "args": vars(args), "seconds": round(time.perf_counter() - t_start)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
