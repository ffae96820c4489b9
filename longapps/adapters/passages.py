"""Long passages for a short-context encoder: chunk each one, encode the chunks, fuse per-passage scores.

`chunk_passages` cuts every passage into sentence-packed chunks of at most the encoder's budget (only the
first `max_chunks` are kept, so a 100 MB passage costs what a long one costs); `chunk_scores` turns the
query-chunk similarities into per-passage features: the first chunk (what plain truncation sees), the
best chunk (where the answer is), and the mean of the chunk vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from longapps.adapters.chunk import CHARS_PER_TOKEN, CountTokens, split_bounded  # noqa: F401 (re-exported)


@dataclass
class PassageChunks:
    """Flat chunk list over many passages: `texts[j]` belongs to passage `groups[j]`; `first[p]` is the
    row of passage p's first chunk; `counts[p]` its number of chunks (0 for an empty passage)."""

    texts: list[str]
    groups: np.ndarray
    first: np.ndarray
    counts: np.ndarray
    truncated: int = 0   # passages whose text went past max_chunks


def chunk_passages(passages: Sequence[str], *, max_tokens: int, max_chunks: int = 16,
                   count_tokens: CountTokens | None = None, prefix: str = "",
                   progress: Callable[[int], None] | None = None) -> PassageChunks:
    """Chunk each passage (sentence-packed, `max_tokens` each, at most `max_chunks`). `prefix` (e.g. a
    title) is put in front of every chunk so a chunk far down still says whose it is."""
    texts: list[str] = []
    groups: list[int] = []
    first = np.full(len(passages), -1, dtype=np.int64)
    counts = np.zeros(len(passages), dtype=np.int64)
    truncated = 0
    for p, text in enumerate(passages):
        chunks, dropped = split_bounded(text, max_tokens=max_tokens, max_chunks=max_chunks, count_tokens=count_tokens)
        truncated += dropped
        if chunks:
            first[p] = len(texts)
            counts[p] = len(chunks)
        for c in chunks:
            texts.append(prefix + c.text if prefix else c.text)
            groups.append(p)
        if progress:
            progress(1)
    return PassageChunks(texts, np.asarray(groups, dtype=np.int64), first, counts, truncated)


@dataclass
class ChunkFeatures:
    """Per-passage dense features for one query (NaN-free; passages without chunks get the minimum)."""

    first: np.ndarray
    best: np.ndarray
    mean: np.ndarray
    best_chunk: np.ndarray   # row (into PassageChunks.texts) of each passage's best chunk, -1 if none


def chunk_scores(query_vec: np.ndarray, chunk_vecs: np.ndarray, chunks: PassageChunks) -> ChunkFeatures:
    """Cosine of the query with each passage's first chunk, best chunk and mean chunk vector."""
    n = len(chunks.first)
    sims = chunk_vecs @ query_vec if len(chunk_vecs) else np.zeros(0, dtype=np.float32)
    first = np.full(n, -1.0, dtype=np.float32)
    best = np.full(n, -1.0, dtype=np.float32)
    mean = np.full(n, -1.0, dtype=np.float32)
    best_row = np.full(n, -1, dtype=np.int64)
    has = chunks.first >= 0
    if has.any():
        first[has] = sims[chunks.first[has]]
        # chunks are stored passage by passage, so each passage's rows are one contiguous run
        starts = chunks.first[has]
        best[has] = np.maximum.reduceat(sims, starts)
        sums = np.add.reduceat(chunk_vecs, starts, axis=0)
        norms = np.linalg.norm(sums, axis=1)
        mean[has] = (sums @ query_vec) / np.maximum(norms, 1e-12)
        for p in np.flatnonzero(has):  # argmax within each run
            a = chunks.first[p]
            best_row[p] = a + int(np.argmax(sims[a:a + chunks.counts[p]]))
    return ChunkFeatures(first, best, mean, best_row)


def fuse_first_best(features: ChunkFeatures, best_weight: float, mean_weight: float = 0.0) -> np.ndarray:
    """Dense passage score: (1 - b - m) * first + b * best + m * mean."""
    w_first = 1.0 - best_weight - mean_weight
    return (w_first * features.first + best_weight * features.best + mean_weight * features.mean).astype(np.float64)


def select_chunks(chunks: PassageChunks, vecs: np.ndarray, passages: Sequence[int]) -> tuple[PassageChunks, np.ndarray]:
    """The chunks (and their vectors) of a subset of passages, in the given order: encode a collection
    once, then rank any candidate list drawn from it."""
    texts: list[str] = []
    rows: list[int] = []
    groups: list[int] = []
    first = np.full(len(passages), -1, dtype=np.int64)
    counts = np.zeros(len(passages), dtype=np.int64)
    for new, p in enumerate(passages):
        a, c = int(chunks.first[p]), int(chunks.counts[p])
        if a < 0 or c == 0:
            continue
        first[new], counts[new] = len(rows), c
        rows.extend(range(a, a + c))
        groups.extend([new] * c)
        texts.extend(chunks.texts[a:a + c])
    sub = PassageChunks(texts, np.asarray(groups, dtype=np.int64), first, counts, 0)
    return sub, (vecs[rows] if rows else np.zeros((0, vecs.shape[1]), dtype=vecs.dtype))
