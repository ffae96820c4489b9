"""Dense vectors in faiss (inner product on unit-length vectors = cosine), saved atomically.

Small and medium collections use an exact flat index. Past `FLAT_MAX_SCALARS` (vectors x dimensions: where one
flat query stops meeting the 100 ms goal on a 2-core box, `benchmarks/scale.py`) `DenseIndex.build` switches to
an approximate index -- IVF (default) or HNSW -- and tunes its search breadth (nprobe / efSearch) on a
sample of queries until recall@10 against exact search reaches `target_recall`; the measured recall is kept
with the index (`.recall`, saved beside it).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import faiss
import numpy as np

# one flat query scans vectors x dims floats on one thread. On the shared 2-core box (load 9) 100k x 384 took
# 64 ms and 250k x 384 142 ms (benchmarks/RESULTS.md, "Scale-out"): 100 ms is passed near 65M scalars, so
# past that (~170k vectors of 384 dims) the index is IVF (1M vectors: 0.16 ms, recall@10 0.976)
FLAT_MAX_SCALARS = 64_000_000
TARGET_RECALL = 0.95
ANN_CANDIDATES = 1000   # all_scores on an ANN index: exact scores for this many nearest, a floor elsewhere
RECALL_QUERIES = 200


class DenseIndex:
    """A faiss inner-product index: flat (exact) or, for large collections, IVF / HNSW (tuned for recall)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.index: faiss.Index = faiss.IndexFlatIP(dim)
        self.recall: float | None = None  # recall@10 vs exact search measured at build time (ANN only)

    @classmethod
    def build(cls, vectors: np.ndarray, *, kind: str = "auto", target_recall: float = TARGET_RECALL,
              max_scalars: int | None = None, seed: int = 0) -> "DenseIndex":
        """Index unit-length vectors. kind: auto (flat while n*dim <= max_scalars, else ivf) | flat | ivf | hnsw."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1
        idx = cls(dim)
        n = len(vectors)
        if kind == "auto":
            kind = "ivf" if n * dim > (FLAT_MAX_SCALARS if max_scalars is None else max_scalars) else "flat"
        if kind not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"unknown dense index kind '{kind}' (auto, flat, ivf, hnsw)")
        if kind == "flat" or n == 0:
            if n:
                idx.index.add(vectors)
            return idx
        idx.index = _build_ivf(vectors, seed) if kind == "ivf" else _build_hnsw(vectors)
        idx.recall = idx._tune(vectors, target_recall, seed)
        return idx

    @property
    def kind(self) -> str:
        if isinstance(self.index, faiss.IndexIVF):
            return "ivf"
        if isinstance(self.index, faiss.IndexHNSW):
            return "hnsw"
        return "flat"

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k items exist."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self))) if len(self) else 1
        if not len(self):
            return np.full((len(q), 1), -np.inf, np.float32), np.full((len(q), 1), -1, np.int64)
        return self.index.search(q, k)

    def vectors(self) -> np.ndarray:
        """All stored vectors, (n, dim) float32 (a view without copying for a flat index)."""
        n = len(self)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        if self.exact:
            return faiss.rev_swig_ptr(self.index.get_xb(), n * self.dim).reshape(n, self.dim)
        return self.index.reconstruct_n(0, n)

    def all_scores(self, queries: np.ndarray) -> np.ndarray:
        """Scores of every item for every query: (n_queries, n_items). Exact for a flat index; for an ANN index
        the `ANN_CANDIDATES` nearest get their exact score and every other item the lowest of those."""
        n = len(self)
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if n == 0:
            return np.zeros((len(q), 0), dtype=np.float32)
        if self.exact:
            return q @ self.vectors().T
        scores, ids = self.search(q, ANN_CANDIDATES)
        out = np.empty((len(q), n), dtype=np.float32)
        for r in range(len(q)):
            ok = ids[r] >= 0
            out[r] = scores[r][ok].min() if ok.any() else -1.0
            out[r, ids[r][ok]] = scores[r][ok]
        return out

    def _tune(self, vectors: np.ndarray, target: float, seed: int) -> float:
        """Widen the ANN search until recall@10 vs exact search on held-out-like queries reaches `target`."""
        queries = recall_queries(vectors, RECALL_QUERIES, seed)
        truth = exact_top_k(vectors, queries, 10)
        kth = np.einsum("qd,qd->q", queries, vectors[truth[:, -1]])  # the 10th best exact score per query
        if isinstance(self.index, faiss.IndexIVF):
            knobs, setter = _powers_of_two(self.index.nlist), lambda v: setattr(self.index, "nprobe", v)
        else:
            knobs, setter = [16, 32, 64, 128, 256, 512, 1024], lambda v: setattr(self.index.hnsw, "efSearch", v)
        recall = 0.0
        for v in knobs:
            setter(v)
            recall = recall_at_k(self.index.search(queries, 10)[1], truth, vectors, queries, kth)
            if recall >= target:
                break
        return recall

    def save(self, path: Path) -> None:
        """Write to a temporary file then rename, so a reader never sees half an index."""
        path = Path(path)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        if self.recall is not None:
            meta = path.with_name(path.name + ".json")
            tmp = meta.with_name(meta.name + f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"kind": self.kind, "recall_at_10": self.recall}))
            os.replace(tmp, meta)

    @classmethod
    def load(cls, path: Path) -> "DenseIndex":
        index = faiss.read_index(str(path))
        obj = cls(index.d)
        obj.index = index
        meta = Path(path).with_name(Path(path).name + ".json")
        if meta.exists():
            obj.recall = json.loads(meta.read_text()).get("recall_at_10")
        return obj


def _build_ivf(vectors: np.ndarray, seed: int) -> faiss.Index:
    n, dim = vectors.shape
    # sqrt(n) lists (1,000 for 1M vectors): k-means on 64 points per list trains in about a minute on 2 cores
    nlist = int(min(65536, max(16, math.sqrt(n))))
    nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per centroid
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))]
    index.cp.seed = seed
    index.train(sample)
    index.add(vectors)
    index.make_direct_map()  # reconstruct(id) for vectors() and callers that read stored vectors
    return index


def _build_hnsw(vectors: np.ndarray, m: int = 32) -> faiss.Index:
    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(vectors)
    return index


def _powers_of_two(limit: int) -> list[int]:
    out, v = [], 1
    while v < limit:
        out.append(v)
        v *= 2
    return out + [limit]


def recall_queries(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Query-like probes: stored vectors moved by noise of their own size (cos ~0.7 to the original), unit length."""
    rng = np.random.default_rng(seed + 1)
    base = vectors[rng.choice(len(vectors), size=min(n, len(vectors)), replace=False)]
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    q = base + noise
    return np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True), dtype=np.float32)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 131_072) -> np.ndarray:
    """Ids of the exact top-k by inner product, best first (chunked matrix products: no copy of the vectors)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for s in range(0, len(vectors), chunk):
        scores = queries @ vectors[s:s + chunk].T
        kk = min(k, scores.shape[1])
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
        best_i = np.concatenate([best_i, top + s], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray, vectors: np.ndarray | None = None,
                queries: np.ndarray | None = None, kth: np.ndarray | None = None) -> float:
    """Mean share of each query's true top-k that the approximate top-k found. With `vectors`, `queries` and
    `kth` (each query's k-th best exact score) ties count: a found item scoring >= the k-th best is a hit
    (collections with duplicate vectors have many equally right answers)."""
    k = truth.shape[1]
    if vectors is None or queries is None or kth is None:
        return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))
    hits = 0
    for q, f, floor in zip(queries, found[:, :k], kth):
        ok = f[f >= 0]
        hits += int(np.sum(vectors[ok] @ q >= floor - 1e-5))
    return hits / (k * len(found))
