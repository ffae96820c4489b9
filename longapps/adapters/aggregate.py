"""Aggregate stage: many chunk vectors -> one vector per item, and many rankings -> one ranking."""
from __future__ import annotations

from typing import Sequence

import numpy as np

POOLINGS = ("mean", "max", "attention", "first")


def _normalize(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def pool(vectors: np.ndarray, method: str = "mean", *, temperature: float = 0.05,
         weights: np.ndarray | None = None) -> np.ndarray:
    """Pool (n, d) chunk vectors into one unit-length (d,) vector.

    - mean: the centroid; max: element-wise max; first: the first chunk.
    - attention: SEA-style attention pooling without trained parameters: each chunk is weighted by
      softmax(cos(chunk, centroid) / temperature), so blocks typical of the unit count more than
      outliers (boilerplate, long literals). `weights` (optional, per chunk, e.g. token counts)
      are multiplied into the attention as a prior.
    """
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError("vectors: expected a non-empty (n, d) array")
    if method == "mean":
        w = np.ones(len(vectors)) if weights is None else np.asarray(weights, dtype=np.float64)
        return _normalize((vectors * w[:, None]).sum(0))
    if method == "max":
        return _normalize(vectors.max(0))
    if method == "first":
        return _normalize(vectors[0])
    if method == "attention":
        centroid = _normalize(vectors.mean(0))
        logits = vectors @ centroid / temperature
        if weights is not None:
            logits = logits + np.log(np.maximum(np.asarray(weights, dtype=np.float64), 1e-9))
        a = np.exp(logits - logits.max())
        a /= a.sum()
        return _normalize((vectors * a[:, None]).sum(0))
    raise ValueError(f"method: unknown pooling '{method}' (choose from {', '.join(POOLINGS)})")


def pool_groups(vectors: np.ndarray, groups: Sequence[int], method: str = "mean", *,
                weights: Sequence[float] | None = None, temperature: float = 0.05) -> np.ndarray:
    """Pool rows of `vectors` that share a group id (ids 0..G-1, rows grouped in any order) -> (G, d)."""
    groups = np.asarray(groups)
    if len(groups) != len(vectors):
        raise ValueError("groups: one group id per vector expected")
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    out = np.zeros((n_groups, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(n_groups + 1))
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    for g in range(n_groups):
        rows = order[bounds[g]:bounds[g + 1]]
        if len(rows):
            out[g] = pool(vectors[rows], method, temperature=temperature,
                          weights=None if w is None else w[rows])
    return out


def rrf(rankings: Sequence[Sequence[int]], k: float = 60.0, weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal rank fusion: score(item) = sum_r w_r / (k + rank_r(item)), ranks from 1."""
    scores: dict[int, float] = {}
    for r, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[r]
        for pos, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + w / (k + pos + 1)
    return scores


def fuse_scores(score_lists: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Convex combination of per-item scores after z-normalising each list (robust to scale differences).

    Each array holds one score per item (same item order); NaN marks "not retrieved" and becomes the list's min.
    """
    total = np.zeros(len(score_lists[0]), dtype=np.float64)
    for s, w in zip(score_lists, weights):
        s = np.asarray(s, dtype=np.float64)
        s = np.where(np.isnan(s), np.nanmin(s) if np.isfinite(np.nanmin(s)) else 0.0, s)
        sd = s.std()
        total += w * ((s - s.mean()) / sd if sd > 1e-12 else np.zeros_like(s))
    return total


def hybrid_scores(dense: np.ndarray, lexical: np.ndarray | None, lexical_weight: float) -> np.ndarray:
    """Fuse one query's dense and BM25 scores over all items (z-normalised weighted sum); dense alone when
    the weight is 0 or no query word occurs in the collection."""
    if lexical is None or lexical_weight <= 0 or not np.any(lexical > 0):
        return dense.astype(np.float64)
    return fuse_scores([dense, lexical], [1.0 - lexical_weight, lexical_weight])
