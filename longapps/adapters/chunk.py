"""Chunk stage: cut long inputs into pieces an encoder can read whole.

Domain splitters live beside this module (`code_split` for AST blocks); the generic ones are here:
token windows for prose, line windows for any text (and code in unknown languages).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

CountTokens = Callable[[Sequence[str]], list[int]]


@dataclass
class Chunk:
    """A piece of a longer input: its text, where it came from, and its span there.

    `start`/`end` are 1-based inclusive line numbers for line-oriented splitters, or character offsets
    (`meta["unit"] == "char"`) for prose splitters.
    """

    text: str
    source: str
    start: int
    end: int
    meta: dict[str, Any] = field(default_factory=dict)


def approx_tokens(texts: Sequence[str]) -> list[int]:
    """A tokenizer-free estimate (word pieces ~ words + punctuation) for when no tokenizer is at hand."""
    return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]


def split_lines(text: str, source: str = "", *, max_lines: int = 40, overlap: int = 0,
                max_tokens: int | None = None, count_tokens: CountTokens | None = None,
                first_line: int = 1) -> list[Chunk]:
    """Fixed windows of `max_lines` lines (stepping `max_lines - overlap`), shrunk to fit `max_tokens`."""
    lines = text.splitlines()
    if not lines:
        return []
    step = max(1, max_lines - overlap)
    count = count_tokens or approx_tokens
    chunks: list[Chunk] = []
    i = 0
    while i < len(lines):
        j = min(len(lines), i + max_lines)
        if max_tokens:
            # shrink the window until it fits (binary search on the end line)
            lo, hi = i + 1, j
            if count(["\n".join(lines[i:hi])])[0] > max_tokens:
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if count(["\n".join(lines[i:mid])])[0] <= max_tokens:
                        lo = mid
                    else:
                        hi = mid - 1
                j = max(lo, i + 1)
        body = "\n".join(lines[i:j])
        if body.strip():
            chunks.append(Chunk(body, source, first_line + i, first_line + j - 1, {"kind": "lines"}))
        if j >= len(lines):
            break
        i = j if (j - i) < step else i + step
    return chunks


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n\s*\n")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences/paragraphs (a light rule-based splitter, no model)."""
    spans, start = [], 0
    for m in _SENT.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text) and text[start:].strip():
        spans.append((start, len(text)))
    return spans


def split_tokens(text: str, source: str = "", *, max_tokens: int = 200, overlap_sentences: int = 0,
                 count_tokens: CountTokens | None = None) -> list[Chunk]:
    """Pack whole sentences into chunks of at most `max_tokens` (a sentence longer than that is cut by words).

    Offsets are characters into `text`; each chunk's meta has `index` (its order in the document).
    """
    count = count_tokens or approx_tokens
    spans = split_sentences(text)
    if not spans:
        return []
    sizes = count([text[a:b] for a, b in spans])
    pieces: list[tuple[int, int, int]] = []
    for (a, b), n in zip(spans, sizes):
        if n <= max_tokens:
            pieces.append((a, b, n))
            continue
        # a run-on sentence: cut at word boundaries into ~max_tokens pieces
        words = [m.span() for m in re.finditer(r"\S+", text[a:b])]
        per = max(1, int(len(words) * max_tokens / max(n, 1) * 0.9))
        for w in range(0, len(words), per):
            ws = words[w:w + per]
            pa, pb = a + ws[0][0], a + ws[-1][1]
            pieces.append((pa, pb, count([text[pa:pb]])[0]))
    chunks: list[Chunk] = []
    cur: list[tuple[int, int, int]] = []
    total = 0
    for p in pieces:
        if cur and total + p[2] > max_tokens:
            chunks.append(_chunk_of(text, source, cur, len(chunks)))
            cur = cur[-overlap_sentences:] if overlap_sentences else []
            total = sum(x[2] for x in cur)
        cur.append(p)
        total += p[2]
    if cur:
        chunks.append(_chunk_of(text, source, cur, len(chunks)))
    return chunks


def _chunk_of(text: str, source: str, pieces: list[tuple[int, int, int]], index: int) -> Chunk:
    a, b = pieces[0][0], pieces[-1][1]
    return Chunk(text[a:b], source, a, b, {"kind": "sentences", "unit": "char", "index": index})


# characters looked at per token of budget: enough for any real text, bounded for pathological input
CHARS_PER_TOKEN = 8


def split_bounded(text: str, source: str = "", *, max_tokens: int, max_chunks: int,
                  count_tokens: CountTokens | None = None) -> tuple[list[Chunk], bool]:
    """The first `max_chunks` sentence-packed chunks of `text` (see `split_tokens`) and whether anything was
    dropped. Only the first `max_tokens * max_chunks * CHARS_PER_TOKEN` characters are looked at, so a
    100 MB input costs what a long one costs."""
    limit = max_tokens * max_chunks * CHARS_PER_TOKEN
    head = text[:limit]
    chunks = split_tokens(head, source, max_tokens=max_tokens, count_tokens=count_tokens) if head.strip() else []
    return chunks[:max_chunks], len(chunks) > max_chunks or len(text) > limit


def sentence_blocks(text: str, source: str = "", *, block_tokens: int = 32, max_blocks: int = 64,
                    count_tokens: CountTokens | None = None) -> tuple[list[Chunk], bool]:
    """SMITH's sentence blocks: greedy blocks of whole sentences of at most `block_tokens` tokens (a longer
    sentence is cut at word boundaries), at most `max_blocks` of them; returns (blocks, dropped_any)."""
    blocks, dropped = split_bounded(text, source, max_tokens=block_tokens, max_chunks=max_blocks,
                                    count_tokens=count_tokens)
    for b in blocks:
        b.meta["kind"] = "block"
    return blocks, dropped
