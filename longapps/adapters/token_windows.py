"""Token windows over long documents and the stitching of per-window token labels back into one sequence.

Chunk: a document is tokenised once (sub-tokens with character offsets and word ids), very long texts in
character segments cut at paragraph/line/sentence/space boundaries (bounded memory); each segment's
sub-tokens are covered by overlapping windows of ``max_length - 2`` tokens (the model adds [CLS]/[SEP]).

Aggregate: every sub-token takes its prediction from the window where it sits **most central** (largest
distance to that window's nearer edge; ties: the earlier window). Labels are decoded into spans only after
stitching, over the whole segment, so a span crossing a window edge is neither cut nor duplicated.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

SEGMENT_CHARS = 200_000  # texts longer than this are tokenised segment by segment


@dataclass
class Encoded:
    """Sub-tokens of one text segment: ids, char offsets (absolute in the document), word index per token."""

    ids: np.ndarray       # (T,) int64
    offsets: np.ndarray   # (T, 2) int64, absolute character offsets
    words: np.ndarray     # (T,) int64, word index within the segment (-1: none)


def segment_bounds(text: str, max_chars: int = SEGMENT_CHARS) -> list[tuple[int, int]]:
    """Cut ``text`` into pieces of at most ``max_chars`` characters, preferring a blank line, then a line
    break, a sentence end, a space (the piece's second half is searched); a hard cut only with none of them."""
    bounds, start, n = [], 0, len(text)
    while n - start > max_chars:
        lo, hi = start + max_chars // 2, start + max_chars
        cut = -1
        for pat in ("\n\n", "\n", ". ", " "):
            k = text.rfind(pat, lo, hi)
            if k >= 0:
                cut = k + len(pat)
                break
        cut = cut if cut > start else hi
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


def encode_segment(tokenizer: Any, text: str, start: int, end: int) -> Encoded:
    """Tokenise ``text[start:end]`` without special tokens; offsets shifted to document positions."""
    enc = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2) + start
    words = np.asarray([-1 if w is None else w for w in enc.word_ids()], dtype=np.int64)
    return Encoded(ids, offsets, words)


def iter_segments(tokenizer: Any, text: str, max_chars: int = SEGMENT_CHARS) -> Iterator[Encoded]:
    """``encode_segment`` over ``segment_bounds`` (one segment in memory at a time)."""
    for a, b in segment_bounds(text, max_chars):
        yield encode_segment(tokenizer, text, a, b)


def window_starts(n_tokens: int, size: int, stride: int) -> list[int]:
    """Starts of windows of ``size`` tokens every ``stride`` tokens; the last window ends at ``n_tokens``."""
    if size <= 0 or stride <= 0:
        raise ValueError("size and stride must be positive")
    if n_tokens <= size:
        return [0]
    starts = list(range(0, n_tokens - size, stride))
    starts.append(n_tokens - size)
    return starts


def even_windows(n_tokens: int, size: int, overlap: int) -> tuple[list[int], int]:
    """The fewest windows of at most ``size`` tokens that cover ``n_tokens`` with neighbours sharing at least
    ``overlap`` tokens, all of one length, starts spread evenly: (starts, length). For 16,645 tokens, size
    4,094 and overlap 512 that is 5 windows of 3,739 tokens (18.7k tokens run) instead of 5 x 4,094 with the
    last one ending at the end (20.5k)."""
    if size <= 0 or overlap < 0 or overlap >= size:
        raise ValueError("need size > overlap >= 0")
    if n_tokens <= size:
        return [0], max(n_tokens, 0)
    k = -(-(n_tokens - overlap) // (size - overlap))
    length = -(-(n_tokens + (k - 1) * overlap) // k)  # <= size; k * length >= n + (k-1) * overlap
    return [(i * (n_tokens - length)) // (k - 1) for i in range(k)], length


def default_stride(size: int) -> int:
    """Windows overlap by a quarter (at least one token): every token has >= size/8 context on both sides
    in the window it is taken from."""
    return max(1, size - max(1, size // 4))


def stitch(n_tokens: int, starts: Sequence[int], window_outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Per-token rows from the window where each token is most central.

    ``window_outputs[i]`` holds (len_i, ...) rows for tokens ``starts[i] .. starts[i] + len_i``; returns
    (n_tokens, ...). Centrality of token t in window [s, e) is ``min(t - s, e - 1 - t)``; ties keep the earlier
    window."""
    first = window_outputs[0]
    out = np.zeros((n_tokens,) + first.shape[1:], dtype=first.dtype)
    best = np.full(n_tokens, -1, dtype=np.int64)
    for s, rows in zip(starts, window_outputs):
        n = rows.shape[0]
        t = np.arange(s, s + n)
        cent = np.minimum(t - s, s + n - 1 - t)
        take = cent > best[s:s + n]
        out[s:s + n][take] = rows[take]
        best[s:s + n][take] = cent[take]
    if (best < 0).any():
        raise ValueError("windows do not cover every token")
    return out


_TAG = re.compile(r"^([BI])-(.+)$")


def word_tags(enc: Encoded, token_labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(word char start, word char end, label id of the word's first sub-token) per word, in order."""
    out: list[tuple[int, int, int]] = []
    last_word = -2
    for i, w in enumerate(enc.words.tolist()):
        if w < 0:
            continue
        a, b = int(enc.offsets[i, 0]), int(enc.offsets[i, 1])
        if w != last_word:
            out.append((a, b, int(token_labels[i])))
            last_word = w
        else:
            pa, _, lab = out[-1]
            out[-1] = (pa, b, lab)
    return out


def decode_spans(words: list[tuple[int, int, int]], id2label: dict[int, str],
                 scores: Sequence[float] | None = None) -> list[tuple[int, int, str, float]]:
    """BIO word tags -> (start, end, label, mean score) spans; an ``I-X`` that does not continue an ``X`` span
    opens one (so no predicted token is lost)."""
    spans: list[tuple[int, int, str, float]] = []
    cur: list | None = None  # [start, end, label, score sum, count]
    for k, (a, b, lab) in enumerate(words):
        m = _TAG.match(id2label[lab])
        sc = float(scores[k]) if scores is not None else 1.0
        if m and m.group(1) == "I" and cur is not None and cur[2] == m.group(2):
            cur[1] = b
            cur[3] += sc
            cur[4] += 1
            continue
        if cur is not None:
            spans.append((cur[0], cur[1], cur[2], cur[3] / cur[4]))
            cur = None
        if m:
            cur = [a, b, m.group(2), sc, 1]
    if cur is not None:
        spans.append((cur[0], cur[1], cur[2], cur[3] / cur[4]))
    return spans


def word_labels(enc: Encoded, spans: Sequence[tuple[int, int, str]], label2id: dict[str, int],
                ignore: int = -100) -> np.ndarray:
    """Training labels per sub-token: the first sub-token of each word gets B-/I-/O from the (flat, sorted)
    gold spans it overlaps; other sub-tokens ``ignore``."""
    labels = np.full(len(enc.ids), ignore, dtype=np.int64)
    k = 0
    prev_span = -1
    last_word = -2
    word_start = word_end = 0
    firsts: list[int] = []
    ranges: list[tuple[int, int]] = []
    for i, w in enumerate(enc.words.tolist()):
        if w < 0:
            continue
        if w != last_word:
            firsts.append(i)
            ranges.append((int(enc.offsets[i, 0]), int(enc.offsets[i, 1])))
            last_word = w
        else:
            ranges[-1] = (ranges[-1][0], int(enc.offsets[i, 1]))
    for i, (word_start, word_end) in zip(firsts, ranges):
        while k < len(spans) and spans[k][1] <= word_start:
            k += 1
        if k < len(spans) and spans[k][0] < word_end:
            tag = ("I-" if prev_span == k else "B-") + spans[k][2]
            prev_span = k
        else:
            tag = "O"
        labels[i] = label2id[tag]
    return labels


__all__ = ["Encoded", "segment_bounds", "encode_segment", "iter_segments", "window_starts", "even_windows",
           "default_stride", "stitch", "word_tags", "decode_spans", "word_labels", "SEGMENT_CHARS"]
