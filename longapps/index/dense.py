"""Dense vectors in faiss (inner product on unit-length vectors = cosine), saved atomically."""
from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np


class DenseIndex:
    """A flat inner-product faiss index; exact, and fast enough for repository-sized collections."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.index = faiss.IndexFlatIP(dim)

    @classmethod
    def build(cls, vectors: np.ndarray) -> "DenseIndex":
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        idx = cls(vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1)
        if len(vectors):
            idx.index.add(vectors)
        return idx

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k items exist."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self))) if len(self) else 1
        if not len(self):
            return np.full((len(q), 1), -np.inf, np.float32), np.full((len(q), 1), -1, np.int64)
        return self.index.search(q, k)

    def all_scores(self, queries: np.ndarray) -> np.ndarray:
        """Scores of every item for every query: (n_queries, n_items)."""
        n = len(self)
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        out = np.zeros((len(q), n), dtype=np.float32)
        if n:
            scores, ids = self.index.search(q, n)
            np.put_along_axis(out, ids, scores, axis=1)
        return out

    def save(self, path: Path) -> None:
        """Write to a temporary file then rename, so a reader never sees half an index."""
        path = Path(path)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "DenseIndex":
        index = faiss.read_index(str(path))
        obj = cls(index.d)
        obj.index = index
        return obj
