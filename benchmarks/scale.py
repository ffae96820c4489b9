"""Scale-out benchmarks (issue 17). Two parts, each prints a table and writes JSON to benchmarks/results/:

  python benchmarks/scale.py dense [--n 1000000]   # query latency flat vs IVF / HNSW, recall@10 vs exact
  python benchmarks/scale.py ray   [--blocks 2000] # encoding throughput: Ray (local cluster) vs in-process

dense: synthetic unit vectors from a Gaussian mixture (1,000 clusters, cos ~0.49 to their centre, dim 384 as
all-MiniLM) -- real embeddings cluster too; uniform random vectors would be the worst case for any ANN index.
Queries are fresh draws from the same mixture (not in the index); truth = exact inner-product top-10.

ray: the code blocks of a repository (default: this package's own source, repeated with a varying prefix so no
block is a cache hit) encoded by the packaged all-MiniLM-L6-v2, in-process vs through `RayEncodeBackend` on a
local Ray started by the script, same texts, same model, fresh caches. Reports per-block cost and the Ray
overhead (start-up, and per block in steady state).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(), "note": "2-core box shared with other jobs: timings are under load"}


# -- dense ------------------------------------------------------------------------------------------------

def mixture(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, spread: float = 1.8) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        c = centres[rng.integers(0, len(centres), m)]
        noise = rng.standard_normal((m, dim), dtype=np.float32)
        noise *= spread / np.linalg.norm(noise, axis=1, keepdims=True)
        x = c + noise
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latency_ms(index, queries: np.ndarray, k: int = 10) -> dict:
    ts = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None, :], k)
        ts.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.median(ts)), 2), "p90_ms": round(float(np.percentile(ts, 90)), 2)}


def run_dense(args: argparse.Namespace) -> dict:
    import faiss

    from longapps.index.dense import DenseIndex, exact_top_k, recall_at_k

    rng = np.random.default_rng(0)
    dim = args.dim
    centres = rng.standard_normal((1000, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    t = time.perf_counter()
    x = mixture(args.n, dim, centres, rng, args.spread)
    queries = mixture(args.queries, dim, centres, np.random.default_rng(1), args.spread)
    print(f"data: {args.n:,} x {dim} in {time.perf_counter() - t:.1f} s", flush=True)
    truth = exact_top_k(x, queries, 10)
    lat_q = queries[:args.latency_queries]
    rows = []
    # flat: where does one query pass 100 ms?
    for n in [s for s in args.flat_sizes if s <= args.n]:
        flat = DenseIndex.build(x[:n], kind="flat")
        rows.append({"index": "flat", "n": n, "param": "-", "build_s": 0.0, "recall_at_10": 1.0 if n == args.n else None,
                     **latency_ms(flat, lat_q)})
        print(rows[-1], flush=True)
        del flat
    for kind in args.kinds:
        t = time.perf_counter()
        idx = DenseIndex.build(x, kind=kind)
        build = time.perf_counter() - t
        chosen = idx.index.nprobe if kind == "ivf" else idx.index.hnsw.efSearch
        sweep = (1, 2, 4, 8, 16, 32, 64, 128) if kind == "ivf" else (16, 32, 64, 128, 256)
        for v in sorted(set(sweep) | {chosen}):
            if kind == "ivf":
                idx.index.nprobe = v
            else:
                idx.index.hnsw.efSearch = v
            rec = recall_at_k(idx.index.search(queries, 10)[1], truth)
            rows.append({"index": kind, "n": args.n, "param": f"{'nprobe' if kind == 'ivf' else 'efSearch'}={v}"
                         + (" (auto)" if v == chosen else ""), "build_s": round(build, 1),
                         "recall_at_10": round(rec, 4), "build_recall_at_10": round(idx.recall or 0, 4),
                         **latency_ms(idx, lat_q)})
            print(rows[-1], flush=True)
        if kind == "ivf":
            rows[-1]["nlist"] = idx.index.nlist
        del idx
    print(f"\n{'index':6} {'vectors':>10} {'setting':>22} {'build s':>8} {'recall@10':>9} {'p50 ms':>8} {'p90 ms':>8}")
    for r in rows:
        rec = "-" if r["recall_at_10"] is None else f"{r['recall_at_10']:.4f}"
        print(f"{r['index']:6} {r['n']:>10,} {r['param']:>22} {r['build_s']:>8} {rec:>9} {r['p50_ms']:>8} {r['p90_ms']:>8}")
    return {"part": "dense", "dim": dim, "n": args.n, "spread": args.spread, "queries": args.queries, "latency_queries": args.latency_queries,
            "faiss": faiss.__version__, "omp_threads": faiss.omp_get_max_threads(), "rows": rows, "machine": machine()}


# -- ray --------------------------------------------------------------------------------------------------

def block_texts(n: int, enc) -> list[str]:
    """Real code blocks (this package's source through the search-code splitter), repeated with a prefix."""
    from longapps.adapters.code_split import split_code
    from longapps.index.files import read_source, walk_repo
    from longapps.pipelines.code_search import _unit_dict, encoder_texts

    units = []
    for f in walk_repo(ROOT / "longapps").files:
        text, _ = read_source(f.path)
        if text is not None:
            units += [_unit_dict(u) for u in split_code(text, f.rel, max_tokens=enc.max_tokens - 32,
                                                        count_tokens=enc.count_tokens)]
        if len(units) > n:
            break
    base, _ = encoder_texts(units, "path+name")
    return [f"# copy {i // len(base)}\n{base[i % len(base)]}" for i in range(n)]


def run_ray(args: argparse.Namespace) -> dict:
    import tempfile

    import torch

    os.environ["LONGAPPS_CACHE"] = tempfile.mkdtemp(prefix="longapps-scale-")
    from longapps.adapters.encode import CachedEncoder, EmbeddingCache, load_encoder
    from longapps.distributed.ray_encode import RayConfig, RayEncodeBackend, connect

    enc = load_encoder(cache=False)
    texts = block_texts(args.blocks, enc)
    tokens = sum(enc.count_tokens(texts))
    runs: list[dict] = []
    ref: list[np.ndarray] = []

    def timed(label: str, c: CachedEncoder, **extra) -> None:
        first: list[float] = []
        t = time.perf_counter()
        vecs = c.encode(texts, progress=lambda n: first.append(time.perf_counter()) if not first else None)
        total = time.perf_counter() - t
        ref.append(vecs) if not ref else None
        steady = (total - (first[0] - t)) / max(1, len(texts) - min(args.batch, c.chunk))
        runs.append({"path": label, "total_s": round(total, 2), "ms_per_block": round(total / len(texts) * 1000, 2),
                     "first_batch_s": round(first[0] - t, 2), "steady_ms_per_block": round(steady * 1000, 2),
                     "max_abs_diff_vs_first": float(np.abs(vecs - ref[0]).max()),
                     "loadavg": round(os.getloadavg()[0], 1), **extra})
        print(runs[-1], flush=True)

    def fresh(name: str) -> CachedEncoder:
        return CachedEncoder(enc, EmbeddingCache(Path(os.environ["LONGAPPS_CACHE"]) / f"{name}-{len(runs)}.sqlite",
                                                 enc.dim), chunk=args.batch)

    def in_process(threads: int) -> None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            timed(f"in-process, {threads} thread(s)", fresh("local"))
        finally:
            torch.set_num_threads(before)

    in_process(2)
    in_process(1)
    t = time.perf_counter()
    connect(RayConfig(address="local", num_cpus=os.cpu_count()))
    init_s = time.perf_counter() - t
    for workers in args.workers:
        c = fresh(f"ray{workers}")
        c.remote = RayEncodeBackend.for_encoder(enc, RayConfig(workers=workers, batch_size=args.batch))
        unit = "1 GPU" if c.remote.plan()["num_gpus"] else "1 CPU"
        timed(f"ray, {workers} actor(s) x {unit}", c, workers=workers)
    in_process(1)  # again: the box's load drifts, so the in-process cost is taken before and after
    print(f"\n{'path':26} {'total s':>8} {'blocks/s':>9} {'ms/block':>9} {'1st batch s':>11} {'steady ms/block':>16} {'load':>5}")
    for r in runs:
        print(f"{r['path']:26} {r['total_s']:>8.1f} {len(texts) / r['total_s']:>9.2f} {r['ms_per_block']:>9.1f} "
              f"{r['first_batch_s']:>11.1f} {r['steady_ms_per_block']:>16.1f} {r['loadavg']:>5}")
    print(f"ray.init (local, {os.cpu_count()} CPUs): {init_s:.1f} s; {tokens:,} tokens in {len(texts)} blocks "
          f"(batch {args.batch})")
    return {"part": "ray", "blocks": len(texts), "tokens": tokens, "batch": args.batch, "ray_init_s": round(init_s, 2),
            "runs": runs, "model": enc.name, "machine": machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    d = sub.add_parser("dense")
    d.add_argument("--n", type=int, default=1_000_000)
    d.add_argument("--dim", type=int, default=384)
    d.add_argument("--queries", type=int, default=200)
    d.add_argument("--latency-queries", type=int, default=50)
    d.add_argument("--kinds", nargs="+", default=["ivf", "hnsw"])
    d.add_argument("--spread", type=float, default=1.8,
                   help="noise norm around a cluster centre (1.8: cos ~0.49 to it; larger = harder for ANN)")
    d.add_argument("--flat-sizes", type=int, nargs="*", default=[100_000, 250_000, 500_000, 1_000_000, 2_000_000])
    r = sub.add_parser("ray")
    r.add_argument("--blocks", type=int, default=2000)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    r.add_argument("--out", default=None)
    d.add_argument("--out", default=None)
    args = ap.parse_args()
    res = run_dense(args) if args.part == "dense" else run_ray(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"scale_{args.part}.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
