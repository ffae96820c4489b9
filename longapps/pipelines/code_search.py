"""SEA code search: split code by AST -> encode blocks -> aggregate to one vector per unit, + BM25 fusion.

    cs = CodeSearch("path/to/repo")
    for hit in cs.search("parse a config file", k=5):
        print(hit.location, hit.score)
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from longapps.adapters.aggregate import hybrid_scores, pool_groups
from longapps.adapters.encode import CachedEncoder, Encoder, UsesEncoder, with_cache
from longapps.index.dense import DenseIndex
from longapps.index.files import DEFAULT_MAX_BYTES, SourceFile, walk_repo
from longapps.index.incremental import encode_counted, fresh_manifest, reset_if_changed, sync_files
from longapps.index.lexical import BM25Index, tokenize
from longapps.index.store import IndexStore
from longapps.resources import LongappsError, cache_dir

log = logging.getLogger(__name__)

SPLITTER_VERSION = "1"
PREVIEW_LINES = 20


@dataclass
class CodeSearchConfig:
    """What decides the index and the scoring. Defaults were chosen on the dev benchmark (RESULTS.md)."""

    model: str | None = None            # HF id / local path; None = packaged all-MiniLM-L6-v2
    pooling: str = "mean"               # block vectors -> unit vector: mean | max | attention | first
    block_max_weight: float = 0.0       # blend in max-over-blocks similarity (query-time aggregation)
    lexical_weight: float = 0.2         # BM25 share in the hybrid score; 0 = dense only
    header: str = "path+name"           # context put in front of each block: none | name | path+name
    block_tokens: int | None = None     # token budget per block (default: encoder limit - 32)
    max_file_bytes: int = DEFAULT_MAX_BYTES

    def index_key(self, encoder_name: str, block_tokens: int) -> str:
        """Hash of everything that changes what is stored per file (not the scoring knobs)."""
        return hashlib.sha1(f"{SPLITTER_VERSION}|{encoder_name}|{block_tokens}|{self.header}".encode()).hexdigest()[:16]


@dataclass
class CodeHit:
    """One search result: a function/method/class (or line window) and its score."""

    rank: int
    path: str
    start: int
    end: int
    name: str
    kind: str
    language: str
    score: float
    dense: float
    lexical: float
    preview: str

    @property
    def location(self) -> str:
        return f"{self.path}:{self.start}-{self.end}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IndexSummary:
    """What an indexing pass did; `skipped` maps reason -> count, `skipped_files` lists them."""

    files: int = 0
    parsed: int = 0
    reused: int = 0
    removed: int = 0
    units: int = 0
    blocks: int = 0
    encoded: int = 0
    cached: int = 0
    rebuilt: bool = False
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)


# -- the three stages, as plain functions the benchmark reuses ------------------------------------

def qualified_name(unit: dict[str, Any]) -> str:
    """The splitter already qualifies names ('Class.method')."""
    return unit["name"]


def block_header(unit: dict[str, Any], mode: str) -> str:
    """Context line put in front of every block so a block far down a function still says whose it is."""
    if mode == "none":
        return ""
    name = qualified_name(unit)
    if mode == "name":
        return name
    return f"{unit['path']} {name}"


def encoder_texts(units: Sequence[dict[str, Any]], header: str) -> tuple[list[str], list[int]]:
    """Chunk stage output -> encoder inputs: (block texts with their context header, unit index per block)."""
    texts: list[str] = []
    groups: list[int] = []
    for u, unit in enumerate(units):
        head = block_header(unit, header)
        sig = unit.get("signature", "")
        for b, block in enumerate(unit["blocks"]):
            body = block["text"]
            if b > 0 and sig:  # later blocks carry the signature too
                body = f"{sig}\n{body}"
            texts.append(f"{head}\n{body}" if head else body)
            groups.append(u)
    return texts, groups


# BM25 for code: milder length normalisation than prose (long functions are not less relevant) and the
# unit's name counted three times (a name field, weighted) -- both chosen on the dev sets (RESULTS.md)
BM25_PARAMS = {"k1": 1.2, "b": 0.5}
NAME_REPEAT = 3


def lexical_text(unit: dict[str, Any]) -> str:
    """What BM25 indexes for a unit: path, qualified name (boosted) and the code."""
    name = qualified_name(unit)
    return f"{unit['path']} {' '.join([name] * NAME_REPEAT)} {unit.get('text', '')}"


def block_max(block_scores: np.ndarray, block_unit: np.ndarray, n_units: int) -> np.ndarray:
    """Max block similarity per unit: (n_queries, n_blocks) -> (n_queries, n_units). Blocks sorted by unit."""
    out = np.full((block_scores.shape[0], n_units), -1.0, dtype=np.float32)
    if block_scores.shape[1]:
        starts = np.flatnonzero(np.r_[True, block_unit[1:] != block_unit[:-1]])
        out[:, block_unit[starts]] = np.maximum.reduceat(block_scores, starts, axis=1)
    return out


# -- the pipeline ---------------------------------------------------------------------------------

def default_index_dir(repo: Path) -> Path:
    """Indexes live in the XDG cache (never inside the user's repo): ~/.cache/longapps/index/<name>-<hash>."""
    key = hashlib.sha1(str(repo.resolve()).encode()).hexdigest()[:12]
    return cache_dir("index") / f"{repo.resolve().name}-{key}"


class CodeSearch(UsesEncoder):
    """Natural-language search over a repository: `CodeSearch(repo).search(query, k)`."""

    def __init__(self, repo: str | Path, *, config: CodeSearchConfig | None = None,
                 index_dir: str | Path | None = None, encoder: Encoder | None = None,
                 progress: bool = False, ray: Any = None) -> None:
        """`ray`: encode new blocks on a Ray cluster (an address, True for $RAY_ADDRESS / local, or a
        `longapps.distributed.RayConfig`); vectors land in the same embedding cache. None = in this process."""
        self.repo = Path(repo)
        if not self.repo.exists():
            raise LongappsError(f"repository not found: {repo}")
        if not self.repo.is_dir():
            raise LongappsError(f"not a directory: {repo}")
        self.config = config or CodeSearchConfig()
        self.store = IndexStore(index_dir or default_index_dir(self.repo))
        self.ray = ray
        self._encoder = with_cache(encoder, ray=ray) if encoder is not None else None
        self.show_progress = progress
        self._snapshot: dict[str, Any] | None = None
        self.summary: IndexSummary | None = None

    @property
    def block_tokens(self) -> int:
        return self.config.block_tokens or max(32, self.encoder.max_tokens - 32)

    # indexing -------------------------------------------------------------------------------------
    def index(self, reindex: bool = False) -> IndexSummary:
        """Bring the on-disk index up to date with the repo; only new or changed files are re-split and
        only blocks never seen before are encoded."""
        from longapps.adapters.code_split import split_code

        summary = IndexSummary()
        with self.store.lock():
            key = self.config.index_key(self.encoder.name, self.block_tokens)
            reset_if_changed(self.store, key, reindex)
            walk = walk_repo(self.repo, max_bytes=self.config.max_file_bytes)

            def split(text: str, f: SourceFile) -> list[dict[str, Any]]:
                return [_unit_dict(u) for u in split_code(text, f.rel, max_tokens=self.block_tokens,
                                                          count_tokens=self.encoder.count_tokens)]

            sync = sync_files(self.store, walk.files, split, show_progress=self.show_progress)
            summary.files, summary.parsed, summary.reused, summary.removed = sync.files, sync.parsed, sync.reused, \
                sync.removed
            summary.notes = sync.notes
            summary.skipped_files = list(walk.skipped) + sync.skipped_files
            for _, reason in summary.skipped_files:
                summary.skipped[reason] = summary.skipped.get(reason, 0) + 1
            manifest = fresh_manifest(self.store, sync.digest, scoring=self._scoring_key(), index_key=key)
            if manifest is None:
                self._publish(summary, key, sync.digest)
            else:
                summary.units, summary.blocks = manifest["units"], manifest["blocks"]
        self._snapshot = None
        self.summary = summary
        return summary

    def _scoring_key(self) -> str:
        return f"{self.config.pooling}|bm25:{BM25_PARAMS['k1']},{BM25_PARAMS['b']},{NAME_REPEAT}"

    def _publish(self, summary: IndexSummary, key: str, digest: str) -> None:
        units: list[dict[str, Any]] = []
        for _, file_units in self.store.all_units():
            units.extend(file_units)
        texts, groups = encoder_texts(units, self.config.header)
        enc = self.encoder
        block_vecs, summary.encoded, summary.cached = encode_counted(enc, texts, show_progress=self.show_progress)
        groups_arr = np.asarray(groups, dtype=np.int64)
        unit_vecs = pool_groups(block_vecs, groups_arr, self.config.pooling) if units else \
            np.zeros((0, enc.dim), np.float32)
        bm25 = BM25Index(**BM25_PARAMS).fit(tokenize(lexical_text(u)) for u in units)
        summary.units, summary.blocks, summary.rebuilt = len(units), len(texts), True

        def write(folder: Path) -> dict[str, Any]:
            meta = [{k: u[k] for k in ("path", "language", "kind", "name", "signature", "start", "end", "parents")}
                    | {"preview": "\n".join(u["text"].splitlines()[:PREVIEW_LINES])} for u in units]
            (folder / "units.json").write_text(json.dumps(meta))
            DenseIndex.build(unit_vecs).save(folder / "units.faiss")
            DenseIndex.build(block_vecs).save(folder / "blocks.faiss")
            np.save(folder / "block_unit.npy", groups_arr, allow_pickle=False)
            bm25.save(folder / "bm25")
            return {"version": 1, "index_key": key, "scoring": self._scoring_key(), "model": enc.name,
                    "state_digest": digest,
                    "units": len(units), "blocks": len(texts), "dim": enc.dim}

        self.store.publish(write)

    # searching -----------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if self._snapshot is None:
            if self.summary is None:
                self.index()
            cur = self.store.current()
            if cur is None:
                raise LongappsError("index is missing; run again with --reindex")
            self._snapshot = {
                "units": json.loads((cur / "units.json").read_text()),
                "unit_index": DenseIndex.load(cur / "units.faiss"),
                "block_index": DenseIndex.load(cur / "blocks.faiss") if self.config.block_max_weight > 0 else None,
                "block_unit": np.load(cur / "block_unit.npy", allow_pickle=False),
                "bm25": BM25Index.load(cur / "bm25"),
            }
        return self._snapshot

    def search(self, query: str, k: int = 10) -> list[CodeHit]:
        """Top-k units for a natural-language (or code) query."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 10,
                    progress: Callable[[int], None] | None = None) -> list[list[CodeHit]]:
        """Answer many queries with one model load and one batched encode."""
        for q in queries:
            if not q or not q.strip():
                raise LongappsError("empty query: say what the code should do, e.g. \"parse a date string\"")
        snap = self._load()
        units = snap["units"]
        if not units:
            return [[] for _ in queries]
        enc = self.encoder.inner if isinstance(self.encoder, CachedEncoder) else self.encoder
        qvecs = enc.encode(list(queries))
        dense = snap["unit_index"].all_scores(qvecs)
        w = self.config.block_max_weight
        if w > 0 and snap["block_index"] is not None:
            bmax = block_max(snap["block_index"].all_scores(qvecs), snap["block_unit"], len(units))
            dense = (1 - w) * dense + w * bmax
        results = []
        for qi, query in enumerate(queries):
            lex = snap["bm25"].scores(tokenize(query)) if self.config.lexical_weight > 0 else None
            fused = hybrid_scores(dense[qi], lex, self.config.lexical_weight)
            top = np.argsort(-fused, kind="stable")[:k]
            results.append([CodeHit(rank=r + 1, path=units[i]["path"], start=units[i]["start"], end=units[i]["end"],
                                    name=qualified_name(units[i]), kind=units[i]["kind"],
                                    language=units[i]["language"], score=round(float(fused[i]), 4),
                                    dense=round(float(dense[qi, i]), 4),
                                    lexical=round(float(lex[i]), 4) if lex is not None else 0.0,
                                    preview=units[i]["preview"]) for r, i in enumerate(top)])
            if progress:
                progress(1)
        return results


def _unit_dict(unit: Any) -> dict[str, Any]:
    return {"path": unit.path, "language": unit.language, "kind": unit.kind, "name": unit.name,
            "signature": unit.signature, "start": unit.start, "end": unit.end, "text": unit.text,
            "parents": list(unit.parents),
            "blocks": [{"text": b.text, "start": b.start, "end": b.end} for b in unit.blocks]}
