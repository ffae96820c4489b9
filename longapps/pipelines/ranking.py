"""Full-list ranking of long passages: a hybrid first stage (BM25 + chunked dense) and optional LLM reranking,
either the whole top-N list in one prompt (llm-full) or RankGPT's sliding window (llm-window) as the baseline.

    from longapps.pipelines.ranking import Ranker, RankerConfig, load_passages
    passages, warnings = load_passages("passages/")
    for r in Ranker().rank("how do I parse command-line options?", passages, k=5):
        print(r.rank, r.id, r.score)

First stage (any number of passages): each passage is cut into sentence-packed chunks the encoder reads whole
(at most `max_chunks`), the query is compared with the first chunk (what truncation would see) and the best
chunk (where the answer is), the two are fused, and the result is fused with BM25 over the passage text.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from longapps.adapters.aggregate import hybrid_scores
from longapps.adapters.encode import CachedEncoder, Encoder, UsesEncoder
from longapps.adapters.passages import PassageChunks, chunk_passages, chunk_scores, fuse_first_best
from longapps.index.files import decode_bytes, read_source
from longapps.index.lexical import BM25Index, tokenize
from longapps.progress import Progress
from longapps.resources import LongappsError

log = logging.getLogger(__name__)

METHODS = ("hybrid", "dense", "bm25", "llm-full", "llm-window")
LLM_METHODS = ("llm-full", "llm-window")
DEFAULT_READ_BYTES = 4_000_000      # a passage file is read up to this many bytes (the rest is ignored)
MAX_LEXICAL_CHARS = 1_000_000       # BM25 sees at most this much of a passage
PREVIEW_CHARS = 200


# -- inputs ---------------------------------------------------------------------------------------

@dataclass
class Passage:
    """One candidate: an id (file path relative to the folder, or the JSONL id) and its text."""

    id: str
    text: str
    note: str = ""          # 'non-utf8', 'truncated' ...


def read_passage_file(path: Path, max_bytes: int = DEFAULT_READ_BYTES) -> tuple[str | None, str]:
    """(text, note): text None for unreadable/binary files; reads at most `max_bytes` bytes."""
    text, note = read_source(path, max_bytes)
    if text is None:
        return None, note
    if "truncated" in note:
        size = f"{max_bytes // 1_000_000 or max_bytes} {'MB' if max_bytes >= 1_000_000 else 'bytes'}"
        note = note.replace("truncated", f"truncated to {size}")
    return text, note


_ID_KEYS = ("id", "docid", "doc_id", "pid", "_id")
_TEXT_KEYS = ("text", "contents", "content", "body", "passage")


def _jsonl_passages(path: Path, max_bytes: int, warnings: list[str]) -> list[Passage]:
    out: list[Passage] = []
    try:
        f = open(path, "rb")
    except OSError as err:
        raise LongappsError(f"cannot read {path}: {err.strerror}") from err
    with f:
        for ln, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            line, _ = decode_bytes(raw, False)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                warnings.append(f"{path.name}:{ln}: not JSON, skipped")
                continue
            if not isinstance(obj, dict):
                warnings.append(f"{path.name}:{ln}: not an object, skipped")
                continue
            pid = next((obj[k] for k in _ID_KEYS if obj.get(k) not in (None, "")), None)
            text = next((obj[k] for k in _TEXT_KEYS if isinstance(obj.get(k), str)), None)
            if text is None:
                warnings.append(f"{path.name}:{ln}: no 'text' field, skipped")
                continue
            if isinstance(obj.get("title"), str) and obj["title"].strip():
                text = obj["title"].strip() + "\n" + text
            note = ""
            if len(text) > max_bytes:
                text, note = text[:max_bytes], "truncated"
            if not text.strip():
                warnings.append(f"{path.name}:{ln}: empty text, skipped")
                continue
            out.append(Passage(str(pid) if pid is not None else f"line{ln}", text, note))
    return out


def _list_files(root: Path) -> list[Path]:
    """Regular files under root, sorted; hidden files/folders skipped, symlinked folders not followed."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            if not name.startswith(".") and p.is_file():
                found.append(p)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def load_passages(source: str | Path, *, max_bytes: int = DEFAULT_READ_BYTES,
                  progress: bool = False) -> tuple[list[Passage], list[str]]:
    """Passages from a folder of text files (recursively; hidden files skipped) or a JSONL file of
    {"id", "text"} objects. Returns (passages, warnings); raises LongappsError when there is nothing to rank."""
    path = Path(source)
    warnings: list[str] = []
    if not path.exists():
        raise LongappsError(f"passages not found: {source}")
    if path.is_file():
        if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
            raise LongappsError(f"{source}: expected a folder of text files or a JSONL file of {{id, text}} "
                                f"objects")
        passages = _jsonl_passages(path, max_bytes, warnings)
        if not passages:
            raise LongappsError(f"no passages in {source}" + (f" ({len(warnings)} lines skipped)" if warnings else ""))
    else:
        files = _list_files(path)
        if not files:
            raise LongappsError(f"no passage files in {source}: put one text file per passage there")
        passages = []
        with Progress("reading passages", total=len(files), enabled=progress and len(files) > 200) as bar:
            for f in files:
                rel = f.relative_to(path).as_posix()
                text, note = read_passage_file(f, max_bytes)
                bar.advance()
                if text is None:
                    warnings.append(f"skipped {rel}: {note}")
                    continue
                if not text.strip():
                    warnings.append(f"skipped {rel}: empty")
                    continue
                if note:
                    warnings.append(f"{rel}: " + note.replace("non-utf8",
                                                              "not UTF-8, read with replacement characters"))
                passages.append(Passage(rel, text, note))
        if not passages:
            raise LongappsError(f"no readable text passages in {source} ({len(warnings)} files skipped: "
                                f"{warnings[0].removeprefix('skipped ')}{', ...' if len(warnings) > 1 else ''})")
    seen: dict[str, int] = {}
    for p in passages:  # duplicate ids would make the output ambiguous
        if p.id in seen:
            seen[p.id] += 1
            p.id = f"{p.id}#{seen[p.id]}"
        else:
            seen[p.id] = 1
    return passages, warnings


def read_query(query: str | None = None, query_file: str | Path | None = None) -> str:
    """The query text from a string or a file; LongappsError when it is empty."""
    if query is None and query_file is not None:
        try:
            with open(query_file, "rb") as f:
                data = f.read(100_000)
        except OSError as err:
            raise LongappsError(f"cannot read query file {query_file}: {err.strerror or err}") from err
        if b"\x00" in data:
            raise LongappsError(f"query file {query_file} is binary")
        query = decode_bytes(data, True)[0]
    query = " ".join((query or "").split())
    if not query:
        raise LongappsError("empty query: give a query file with text in it, or --query \"...\"")
    return query


def as_passages(passages: Iterable[Any]) -> list[Passage]:
    """Accept Passage objects, plain strings (ids '1', '2', ...), (id, text) pairs or {id, text} dicts."""
    out: list[Passage] = []
    for i, p in enumerate(passages):
        if isinstance(p, Passage):
            out.append(p)
        elif isinstance(p, str):
            out.append(Passage(str(i + 1), p))
        elif isinstance(p, dict):
            out.append(Passage(str(p.get("id", i + 1)), str(p.get("text", ""))))
        else:
            pid, text = p
            out.append(Passage(str(pid), str(text)))
    return out


# -- outputs --------------------------------------------------------------------------------------

@dataclass
class Ranked:
    """One passage in the final ranking."""

    rank: int
    id: str
    score: float                # higher is better; for LLM methods 1 - (rank-1)/n
    first_stage_rank: int
    first_stage_score: float
    dense: float
    lexical: float
    preview: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RankStats:
    """Cost accounting of one `rank` call (LLM fields stay 0 for first-stage methods)."""

    method: str
    passages: int = 0
    chunks: int = 0
    truncated_passages: int = 0
    reranked: int = 0                 # candidates the LLM ordered
    passage_tokens: int = 0           # LLM token budget per passage
    llm_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    parsed_ids: int = 0               # ids taken from LLM output (the rest were repaired)
    repaired_ids: int = 0
    first_stage_s: float = 0.0
    llm_s: float = 0.0
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the pipeline ---------------------------------------------------------------------------------

@dataclass
class RankerConfig:
    """Defaults chosen on the dev benchmark (benchmarks/RESULTS.md, 'Ranking (issue 4)')."""

    method: str = "hybrid"
    model: str | None = None            # encoder: HF id / local folder; None = packaged all-MiniLM-L6-v2
    llm: str | None = None              # causal LM: HF id / folder / .gguf; None = packaged SmolLM2-135M-Instruct
    lexical_weight: float = 0.3         # BM25 share in the hybrid score
    best_weight: float = 0.25           # dense = (1-b) * first chunk + b * best chunk
    mean_weight: float = 0.0            # optional share of the mean-chunk-vector similarity
    chunk_tokens: int | None = None     # encoder chunk size (default: encoder limit - 16)
    max_chunks: int = 16                # chunks encoded per passage (the rest of a huge passage is skipped)
    rerank_top: int = 100               # LLM methods: how many first-stage candidates the LLM orders
    window: int = 20                    # llm-window: window size and step (RankGPT)
    step: int = 10
    passage_tokens: int | None = None   # LLM budget per passage (default: from the context length)
    max_passage_tokens: int = 128       # cap on the automatic budget
    context: int | None = None          # LLM context to plan for (default: the model's)
    passage_view: str = "first+best"    # what the LLM reads of a long passage: first | first+best
    stall_tokens: int = 24              # stop generating after this many tokens without a new id
    constrained: bool = True            # decode with a grammar: only '[id] > [id]...', distinct ids in range

    def check(self) -> None:
        if self.method not in METHODS:
            raise LongappsError(f"unknown method '{self.method}' (choose from {', '.join(METHODS)})")
        if self.window < 2 or not 0 < self.step <= self.window:
            raise LongappsError("window must be >= 2 and 0 < step <= window")
        if self.rerank_top < 1:
            raise LongappsError("rerank_top must be >= 1")
        if self.passage_view not in ("first", "first+best"):
            raise LongappsError("passage_view: first | first+best")


@dataclass
class FirstStage:
    """First-stage scores of every passage for one query (arrays in passage order)."""

    score: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    best_chunk: np.ndarray
    chunks: PassageChunks


class Ranker(UsesEncoder):
    """`Ranker(RankerConfig(method=...)).rank(query, passages, k)` -> list[Ranked]; `.stats` after each call."""

    def __init__(self, config: RankerConfig | None = None, *, encoder: Encoder | None = None, lm: Any = None,
                 progress: bool = False, **overrides: Any) -> None:
        self.config = config or RankerConfig()
        for key, value in overrides.items():
            if not hasattr(self.config, key):
                raise TypeError(f"unknown option {key}")
            setattr(self.config, key, value)
        self.config.check()
        self._encoder = encoder
        self._lm = lm
        self.show_progress = progress
        self.stats = RankStats(self.config.method)

    @property
    def lm(self) -> Any:
        if self._lm is None:
            from longapps.models.causal_lm import load_causal_lm

            self._lm = load_causal_lm(self.config.llm)
        return self._lm

    @property
    def chunk_tokens(self) -> int:
        return self.config.chunk_tokens or max(32, self.encoder.max_tokens - 16)

    # first stage ----------------------------------------------------------------------------------
    def encode_passages(self, texts: Sequence[str]) -> tuple[PassageChunks, np.ndarray]:
        """Chunk and encode passages (vectors come from the embedding cache when seen before)."""
        enc = self.encoder
        with Progress("chunking", total=len(texts), enabled=self.show_progress and len(texts) > 200) as bar:
            chunks = chunk_passages(texts, max_tokens=self.chunk_tokens, max_chunks=self.config.max_chunks,
                                    count_tokens=enc.count_tokens, progress=bar.advance)
        with Progress("encoding passages", total=len(chunks.texts),
                      enabled=self.show_progress and len(chunks.texts) > 64) as bar:
            vecs = enc.encode(chunks.texts, progress=bar.advance) if chunks.texts else \
                np.zeros((0, enc.dim), dtype=np.float32)
        return chunks, vecs

    def encode_query(self, query: str) -> np.ndarray:
        enc = self.encoder
        inner = enc.inner if isinstance(enc, CachedEncoder) else enc
        return inner.encode([query])[0]

    def first_stage(self, query: str, texts: Sequence[str], *, method: str | None = None,
                    encoded: tuple[PassageChunks, np.ndarray] | None = None) -> FirstStage:
        """Score every passage: bm25, dense (first/best chunk fusion) or hybrid (both, z-fused)."""

        method = method or self.config.method
        cfg = self.config
        n = len(texts)
        need_dense = method != "bm25"
        need_lex = method != "dense" and (method == "bm25" or cfg.lexical_weight > 0)
        lexical = np.zeros(n, dtype=np.float32)
        if need_lex:
            bm25 = BM25Index().fit(tokenize(t[:MAX_LEXICAL_CHARS]) for t in texts)
            lexical = bm25.scores(tokenize(query))
        if need_dense:
            chunks, vecs = encoded if encoded is not None else self.encode_passages(texts)
            feats = chunk_scores(self.encode_query(query), vecs, chunks)
            dense = fuse_first_best(feats, cfg.best_weight, cfg.mean_weight)
            best = feats.best_chunk
        else:
            chunks = PassageChunks([], np.zeros(0, np.int64), np.full(n, -1), np.zeros(n, np.int64))
            dense = np.zeros(n, dtype=np.float64)
            best = np.full(n, -1, dtype=np.int64)
        if method == "bm25":
            score = lexical.astype(np.float64)
        elif method == "dense":
            score = dense
        else:
            score = hybrid_scores(dense, lexical, cfg.lexical_weight)
        return FirstStage(score, dense.astype(np.float32), lexical.astype(np.float32), best, chunks)

    # ranking --------------------------------------------------------------------------------------
    def rank(self, query: str, passages: Iterable[Any], k: int | None = None) -> list[Ranked]:
        """Rank `passages` for `query`; returns the top k (all when k is None). Costs are in `self.stats`."""
        t0 = time.perf_counter()
        query = read_query(query)
        items = as_passages(passages)
        if not items:
            raise LongappsError("no passages to rank")
        cfg = self.config
        stats = RankStats(cfg.method, passages=len(items))
        self.stats = stats
        texts = [p.text for p in items]
        fs = self.first_stage(query, texts, method="hybrid" if cfg.method in LLM_METHODS else cfg.method)
        stats.chunks, stats.truncated_passages = len(fs.chunks.texts), fs.chunks.truncated
        order = [int(i) for i in np.argsort(-fs.score, kind="stable")]
        stats.first_stage_s = time.perf_counter() - t0
        scores: dict[int, float]
        if cfg.method in LLM_METHODS and len(order) > 1:
            top = order[: cfg.rerank_top]
            views = self.llm_views(items, fs, top)
            t1 = time.perf_counter()
            if cfg.method == "llm-full":
                new_top = self.rerank_full(query, views, stats)
            else:
                new_top = self.rerank_window(query, views, stats)
            stats.llm_s = time.perf_counter() - t1
            order = [top[i] for i in new_top] + order[len(top):]
            scores = {p: 1.0 - r / len(order) for r, p in enumerate(order)}
        else:
            scores = {p: float(fs.score[p]) for p in order}
        fs_rank = {p: r + 1 for r, p in enumerate(np.argsort(-fs.score, kind="stable").tolist())}
        out = []
        for r, p in enumerate(order[: k if k else None]):
            out.append(Ranked(rank=r + 1, id=items[p].id, score=round(scores[p], 4), first_stage_rank=fs_rank[p],
                              first_stage_score=round(float(fs.score[p]), 4), dense=round(float(fs.dense[p]), 4),
                              lexical=round(float(fs.lexical[p]), 4), preview=preview(items[p].text)))
        stats.wall_s = time.perf_counter() - t0
        return out

    # LLM reranking --------------------------------------------------------------------------------
    def llm_views(self, items: Sequence[Passage], fs: FirstStage, top: Sequence[int]) -> list[tuple[str, str]]:
        """(head, best chunk) text per candidate: what the LLM is shown of a long passage."""
        views = []
        for p in top:
            text = items[p].text
            head = text[:4000]
            best = ""
            if self.config.passage_view == "first+best" and fs.best_chunk[p] >= 0 and fs.chunks.first[p] >= 0 \
                    and fs.best_chunk[p] != fs.chunks.first[p]:
                best = fs.chunks.texts[fs.best_chunk[p]]
            views.append((head, best))
        return views

    def _passage_texts(self, views: Sequence[tuple[str, str]], budget: int) -> list[str]:
        from longapps.pipelines.rank_prompt import clean_passage, truncate_tokens

        tok = self.lm.tokenizer
        out = []
        for head, best in views:
            if best:
                b_head = max(1, budget // 2)
                t = clean_passage(truncate_tokens(clean_passage(head), b_head, tok)) + " ... " + \
                    clean_passage(truncate_tokens(clean_passage(best), max(1, budget - b_head - 2), tok))
            else:
                t = truncate_tokens(clean_passage(head), budget, tok)
            out.append(t)
        return out

    def _overhead(self, query: str) -> int:
        from longapps.pipelines.rank_prompt import ANSWER_PREFIX, SYSTEM, user_message

        return len(self.lm.chat_ids(SYSTEM, user_message(query, []), ANSWER_PREFIX)) + 8

    def plan(self, query: str, n: int) -> Any:
        """Token budget for a prompt of n passages (honours config.passage_tokens / context)."""
        from longapps.pipelines.rank_prompt import plan_budget

        lm = self.lm
        context = self.config.context or lm.context_length
        budget = plan_budget(n, context, self._overhead(_cap_query(query, lm)), lm.count_tokens,
                             max_passage_tokens=self.config.max_passage_tokens)
        if self.config.passage_tokens:
            budget.passage_tokens = self.config.passage_tokens
        return budget

    def _llm_order(self, query: str, views: Sequence[tuple[str, str]], budget: int, max_new: int,
                   stats: RankStats) -> list[int]:
        """One LLM call: order `views` (returns a permutation of their indices)."""
        from longapps.pipelines.rank_prompt import (ANSWER_PREFIX, SYSTEM, PermutationGrammar, make_stopping,
                                                    parse_permutation, user_message)

        lm = self.lm
        query = _cap_query(query, lm)
        context = self.config.context or lm.context_length
        n = len(views)
        for _ in range(6):
            ids = lm.chat_ids(SYSTEM, user_message(query, self._passage_texts(views, budget)), ANSWER_PREFIX)
            if len(ids) + max_new <= context or budget <= 4:
                break
            budget = max(4, int(budget * 0.85))  # tokenisation in context came out longer than planned
        stop = make_stopping(lm.tokenizer, len(ids), n, ANSWER_PREFIX, self.config.stall_tokens)
        grammar = PermutationGrammar(lm.tokenizer, len(ids), n, ANSWER_PREFIX) if self.config.constrained else None
        text, n_new = lm.generate(ids, max_new_tokens=max(8, min(max_new, max(8, context - len(ids)))),
                                  stopping=stop, processors=grammar)
        perm = parse_permutation(ANSWER_PREFIX + text, n)
        stats.llm_calls += 1
        stats.prompt_tokens += len(ids)
        stats.generated_tokens += n_new
        stats.parsed_ids += perm.parsed
        stats.repaired_ids += perm.missing
        stats.passage_tokens = stats.passage_tokens or budget
        log.debug("llm output (%d new tokens): %s", n_new, text[:300])
        return perm.order

    def rerank_full(self, query: str, views: Sequence[tuple[str, str]], stats: RankStats) -> list[int]:
        """All candidates in one prompt; those that do not fit keep first-stage order after the others."""
        budget = self.plan(query, len(views))
        n = budget.n
        if n < len(views):
            stats.notes.append(f"only {n} of {len(views)} candidates fit in the LLM context "
                               f"({budget.context} tokens); the rest keep first-stage order")
        stats.reranked = n
        perm = self._llm_order(query, views[:n], budget.passage_tokens, budget.output_tokens, stats)
        return perm + list(range(n, len(views)))

    def rerank_window(self, query: str, views: Sequence[tuple[str, str]], stats: RankStats) -> list[int]:
        """RankGPT sliding window: `window` passages per call, moving `step` from the back to the front."""
        cfg = self.config
        n_all = len(views)
        window = min(cfg.window, n_all)
        budget = self.plan(query, window)
        if budget.n < window:
            window = budget.n
            stats.notes.append(f"window shrunk to {window} passages to fit the LLM context")
        step = min(cfg.step, window)
        order = list(range(n_all))
        end = n_all
        n_windows = max(1, math.ceil(max(0, n_all - window) / step) + 1)
        with Progress("llm windows", total=n_windows, enabled=self.show_progress) as bar:
            while True:
                start = max(0, end - window)
                part = order[start:end]
                perm = self._llm_order(query, [views[i] for i in part], budget.passage_tokens,
                                       budget.output_tokens, stats)
                order[start:end] = [part[i] for i in perm]
                bar.advance()
                if start == 0:
                    break
                end -= step
        stats.reranked = n_all
        return order


def _cap_query(query: str, lm: Any) -> str:
    from longapps.pipelines.rank_prompt import MAX_QUERY_TOKENS, truncate_tokens

    return truncate_tokens(query, MAX_QUERY_TOKENS, lm.tokenizer)


def preview(text: str, chars: int = PREVIEW_CHARS) -> str:
    t = " ".join(text[: chars * 4].split())
    return t if len(t) <= chars else t[: chars - 3].rstrip() + "..."


def rank(query: str, passages: Iterable[Any], k: int | None = None, **options: Any) -> list[Ranked]:
    """One-shot helper: `rank("query", ["text a", "text b"], method="hybrid")`."""
    return Ranker(**options).rank(query, passages, k)
