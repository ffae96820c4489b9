"""Dense retrieval over long documents: a Mamba bi-encoder reads each document whole (cost linear in length);
without a Mamba model, the hybrid first stage (chunked MiniLM + BM25) answers instead.

    r = Retriever("docs/", model="my-mamba-retriever")      # model=None: hybrid (packaged MiniLM + BM25)
    for hit in r.search("how do I rotate the logs?", k=10):
        print(hit.rank, hit.id, hit.score)
    print(r.encoder_description)                            # says which encoder answered

Stages: chunk (Mamba: none, the whole document up to ``max_tokens``; hybrid: sentence-packed chunks) ->
encode (content-hash embedding cache: unchanged documents are never re-encoded) -> aggregate (Mamba: one
vector per document, cosine; hybrid: first/best chunk cosine fused with BM25). The index lives in the same
store search-code uses (``index.store.IndexStore``: a lock, per-document state, snapshots published by an
atomic rename, so a run killed at any point leaves a usable index and the next run finishes the work).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from longapps.adapters.aggregate import hybrid_scores
from longapps.adapters.encode import CachedEncoder, Encoder, load_encoder, with_cache
from longapps.adapters.passages import chunk_passages, chunk_scores, fuse_first_best
from longapps.index.files import read_source
from longapps.index.dense import DenseIndex
from longapps.index.lexical import BM25Index, tokenize
from longapps.index.store import IndexStore
from longapps.pipelines.ranking import DEFAULT_READ_BYTES, Passage, as_passages, load_passages
from longapps.progress import Progress
from longapps.resources import LongappsError, cache_dir

INDEX_VERSION = "1"
PREVIEW_CHARS = 240
# hybrid first stage: the ranking pipeline's weights (chosen on its dev set, RESULTS.md)
HYBRID_BEST_WEIGHT = 0.25
HYBRID_LEXICAL_WEIGHT = 0.3
HYBRID_MAX_CHUNKS = 16


@dataclass
class RetrieverConfig:
    """What decides the index and the scoring."""

    model: Optional[str] = None           # Mamba retriever folder; None = hybrid first stage
    pooling: Optional[str] = None         # eos | mean (default: the model folder's retriever.json, else eos)
    max_tokens: Optional[int] = None      # document tokens the Mamba encoder reads (default: retriever.json)
    lexical_weight: Optional[float] = None  # BM25 share (default: 0 with Mamba, 0.3 hybrid)
    teacher: Optional[str] = None         # hybrid encoder (default: packaged all-MiniLM-L6-v2)
    max_bytes: int = DEFAULT_READ_BYTES   # bytes read per document file
    device: Optional[str] = None


@dataclass
class RetrievalHit:
    rank: int
    id: str
    score: float
    dense: float
    lexical: float
    preview: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IndexSummary:
    documents: int = 0
    new: int = 0
    changed: int = 0
    removed: int = 0
    encoded: int = 0
    cached: int = 0
    rebuilt: bool = False
    warnings: list[str] = field(default_factory=list)


def default_index_dir(corpus: Path, encoder_name: str) -> Path:
    key = hashlib.sha1(f"{corpus.resolve()}|{encoder_name}".encode()).hexdigest()[:12]
    return cache_dir("index") / f"retrieve-{corpus.resolve().name}-{key}"


def doc_sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


class Retriever:
    """Top-k documents of a corpus (folder of text files, JSONL of {id, text}, or a list) for a query."""

    def __init__(self, corpus: str | Path | Sequence[Any], *, model: Optional[str] = None,
                 config: Optional[RetrieverConfig] = None, encoder: Optional[Encoder] = None,
                 index_dir: str | Path | None = None, progress: bool = False, hybrid: bool = False,
                 ray: Any = None) -> None:
        self.config = config or RetrieverConfig()
        self.ray = ray  # an address / True / RayConfig: cache misses are encoded on a Ray cluster
        if model is not None:
            self.config.model = model
        self.show_progress = progress
        self._docs: Optional[list[Passage]] = None
        self.warnings: list[str] = []
        if isinstance(corpus, (str, Path)):
            self.corpus_path: Optional[Path] = Path(corpus)
            if not self.corpus_path.exists():
                raise LongappsError(f"corpus not found: {corpus}")
        else:
            self.corpus_path = None
            self._docs = as_passages(corpus)
            if not any(d.text.strip() for d in self._docs):
                raise LongappsError("empty corpus: no document has any text")
        self._encoder = with_cache(encoder, ray=ray) if encoder is not None else None
        # an injected encoder stands for the whole-document encoder unless hybrid=True
        self.mode = "mamba" if (self.config.model or (encoder is not None and not hybrid)) else "hybrid"
        self._index_dir = Path(index_dir) if index_dir else None
        self._snapshot: Optional[dict[str, Any]] = None
        self.summary: Optional[IndexSummary] = None

    # -- the encoder ----------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            if self.config.model:
                from longapps.adapters.mamba_encode import MambaEmbedder

                self._encoder = with_cache(MambaEmbedder(self.config.model, pooling=self.config.pooling,
                                                         max_tokens=self.config.max_tokens, device=self.config.device),
                                           ray=self.ray)
            else:
                self._encoder = load_encoder(self.config.teacher, device=self.config.device, ray=self.ray)
        return self._encoder

    @property
    def encoder_description(self) -> str:
        """One line saying which encoder answers (printed by the CLI, in the JSON output too)."""
        enc = self.encoder
        if self.mode == "mamba":
            return f"mamba: {enc.name} (whole documents up to {enc.max_tokens} tokens" + \
                (f", + BM25 {self.lexical_weight:g})" if self.lexical_weight > 0 else ")")
        return (f"hybrid first stage: {enc.name} over chunks of {self.chunk_tokens} tokens (first/best chunk) "
                f"+ BM25 {self.lexical_weight:g} (no Mamba model given: --model DIR)")

    @property
    def lexical_weight(self) -> float:
        if self.config.lexical_weight is not None:
            return self.config.lexical_weight
        return 0.0 if self.mode == "mamba" else HYBRID_LEXICAL_WEIGHT

    @property
    def chunk_tokens(self) -> int:
        return max(32, self.encoder.max_tokens - 16)

    # -- documents --------------------------------------------------------------------------------------
    def documents(self) -> list[Passage]:
        if self._docs is None:
            assert self.corpus_path is not None
            self._docs, self.warnings = load_passages(self.corpus_path, max_bytes=self.config.max_bytes,
                                                      progress=self.show_progress)
        return self._docs

    @property
    def store(self) -> IndexStore:
        if not hasattr(self, "_store"):
            folder = self._index_dir
            if folder is None:
                base = self.corpus_path if self.corpus_path is not None else Path("in-memory")
                folder = default_index_dir(base, self.encoder.name)
            self._store = IndexStore(folder)
        return self._store

    def _index_key(self) -> str:
        extra = f"chunks:{self.chunk_tokens}:{HYBRID_MAX_CHUNKS}" if self.mode == "hybrid" else "doc"
        return f"{INDEX_VERSION}|{self.mode}|{self.encoder.name}|{extra}"

    # -- indexing ---------------------------------------------------------------------------------------
    def index(self, reindex: bool = False) -> IndexSummary:
        """Bring the index up to date: only documents whose text is new are encoded (content-hash cache);
        an unchanged corpus reuses the published snapshot without any model work."""
        docs = self.documents()
        summary = IndexSummary(documents=len(docs), warnings=list(self.warnings))
        store = self.store
        with store.lock():
            key = self._index_key()
            if reindex or store.get_meta("index_key") != key:
                store.clear()
                store.set_meta("index_key", key)
            states = store.file_states()
            shas = {d.id: doc_sha(d.text) for d in docs}
            rows = []
            for d in docs:
                old = states.get(d.id)
                if old is None or old[2] != shas[d.id]:
                    summary.new += old is None
                    summary.changed += old is not None
                    rows.append((d.id, len(d.text), 0, shas[d.id], []))
            removed = [r for r in states if r not in shas]
            store.put_files(rows)
            store.delete_files(removed)
            summary.removed = len(removed)
            digest = hashlib.sha1(json.dumps(sorted(shas.items())).encode()).hexdigest()
            manifest = _safe_manifest(store)
            fresh = (not reindex and manifest is not None and manifest.get("state_digest") == digest
                     and manifest.get("index_key") == key)
            if not fresh:
                self._publish(docs, summary, key, digest)
        self._snapshot = None
        self.summary = summary
        return summary

    def _encode(self, texts: list[str], label: str, summary: IndexSummary) -> np.ndarray:
        enc = self.encoder
        before = (enc.hits, enc.misses) if isinstance(enc, CachedEncoder) else (0, 0)
        with Progress(label, total=len(texts), enabled=self.show_progress and len(texts) > 20) as bar:
            vecs = enc.encode(texts, progress=bar.advance)
        if isinstance(enc, CachedEncoder):
            summary.cached += enc.hits - before[0]
            summary.encoded += enc.misses - before[1]
        else:
            summary.encoded += len(texts)
        return vecs

    def _publish(self, docs: list[Passage], summary: IndexSummary, key: str, digest: str) -> None:
        summary.rebuilt = True
        if self.mode == "mamba":
            doc_vecs = self._encode([d.text for d in docs], "encoding documents", summary)
            chunks = None
        else:
            chunks = chunk_passages([d.text for d in docs], max_tokens=self.chunk_tokens, max_chunks=HYBRID_MAX_CHUNKS,
                                    count_tokens=self.encoder.count_tokens)
            doc_vecs = self._encode(chunks.texts, "encoding chunks", summary)
        bm25 = BM25Index().fit(tokenize(d.text) for d in docs)

        def write(folder: Path) -> dict[str, Any]:
            meta = [{"id": d.id, "chars": len(d.text), "preview": " ".join(d.text[:PREVIEW_CHARS * 2].split())[:PREVIEW_CHARS]}
                    for d in docs]
            (folder / "docs.json").write_text(json.dumps(meta))
            DenseIndex.build(doc_vecs).save(folder / "vectors.faiss")
            if chunks is not None:
                np.save(folder / "chunk_first.npy", chunks.first, allow_pickle=False)
                np.save(folder / "chunk_counts.npy", chunks.counts, allow_pickle=False)
            bm25.save(folder / "bm25")
            return {"version": INDEX_VERSION, "index_key": key, "state_digest": digest, "mode": self.mode,
                    "encoder": self.encoder.name, "documents": len(docs), "vectors": int(len(doc_vecs))}

        self.store.publish(write)

    # -- searching --------------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if self._snapshot is None:
            if self.summary is None:
                self.index()
            cur = self.store.current()
            if cur is None:
                raise LongappsError(f"index at {self.store.folder} is missing; run again with --reindex")
            try:
                snap: dict[str, Any] = {"docs": json.loads((cur / "docs.json").read_text()),
                                        "vectors": DenseIndex.load(cur / "vectors.faiss"),
                                        "bm25": BM25Index.load(cur / "bm25")}
                if self.mode == "hybrid":
                    snap["first"] = np.load(cur / "chunk_first.npy", allow_pickle=False)
                    snap["counts"] = np.load(cur / "chunk_counts.npy", allow_pickle=False)
                    snap["chunk_vecs"] = snap["vectors"].index.reconstruct_n(0, len(snap["vectors"]))
            except Exception as err:  # noqa: BLE001 - faiss raises RuntimeError, numpy ValueError, json ...
                raise LongappsError(f"index at {self.store.folder} is corrupt ({type(err).__name__}); "
                                    f"run again with --reindex") from err
            self._snapshot = snap
        return self._snapshot

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        enc = self.encoder.inner if isinstance(self.encoder, CachedEncoder) else self.encoder
        return enc.encode(list(queries))

    def dense_scores(self, qvecs: np.ndarray) -> np.ndarray:
        """(n_queries, n_docs) dense scores: cosine with the document vector (Mamba) or the fused
        first/best chunk cosine (hybrid)."""
        snap = self._load()
        if self.mode == "mamba":
            return snap["vectors"].all_scores(qvecs)
        from longapps.adapters.passages import PassageChunks

        chunks = PassageChunks([], np.zeros(0, np.int64), snap["first"], snap["counts"])
        return np.stack([fuse_first_best(chunk_scores(q, snap["chunk_vecs"], chunks), HYBRID_BEST_WEIGHT)
                         for q in qvecs]) if len(qvecs) else np.zeros((0, len(snap["docs"])))

    def search(self, query: str, k: int = 10) -> list[RetrievalHit]:
        """Top-k documents for one query."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 10,
                    progress: Callable[[int], None] | None = None) -> list[list[RetrievalHit]]:
        """Answer many queries with one model load and one batched query encode."""
        for q in queries:
            if not q or not q.strip():
                raise LongappsError("empty query: say what you are looking for, e.g. \"rotate the log files\"")
        snap = self._load()
        docs = snap["docs"]
        dense = self.dense_scores(self.query_vectors(queries))
        out = []
        for qi, q in enumerate(queries):
            lex = snap["bm25"].scores(tokenize(q)) if self.lexical_weight > 0 else None
            fused = hybrid_scores(dense[qi], lex, self.lexical_weight)
            top = np.argsort(-fused, kind="stable")[:k]
            out.append([RetrievalHit(rank=r + 1, id=docs[i]["id"], score=round(float(fused[i]), 4),
                                     dense=round(float(dense[qi, i]), 4),
                                     lexical=round(float(lex[i]), 4) if lex is not None else 0.0,
                                     preview=docs[i]["preview"]) for r, i in enumerate(top)])
            if progress:
                progress(1)
        return out


def _safe_manifest(store: IndexStore) -> Optional[dict[str, Any]]:
    try:
        return store.manifest()
    except Exception:  # noqa: BLE001 - an unreadable snapshot means: rebuild it
        return None


MAX_QUERIES_BYTES = 64 << 20  # a --queries file larger than this is refused (64 MB of queries)


def read_queries(path: str | Path) -> list[tuple[str, str]]:
    """(id, query) pairs from a text file (one query per line) or JSONL ({"id", "query"|"text"})."""
    p = Path(path)
    if not p.is_file():
        raise LongappsError(f"--queries file not found: {path}")
    text, note = read_source(p, max_bytes=MAX_QUERIES_BYTES)
    if text is None:
        raise LongappsError(f"--queries file {path}: {note} file, not text (one query per line, or JSONL)")
    if note == "truncated":
        raise LongappsError(f"--queries file {path}: over {MAX_QUERIES_BYTES >> 20} MB; split it")
    lines = text.splitlines()
    out: list[tuple[str, str]] = []
    jsonl = p.suffix.lower() in (".jsonl", ".ndjson", ".json")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise LongappsError(f"{path}:{n}: not JSON") from err
            text = obj.get("query") or obj.get("text") if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise LongappsError(f"{path}:{n}: no 'query' text")
            out.append((str(obj.get("id", n)), text.strip()))
        else:
            out.append((str(n), line.strip()))
    if not out:
        raise LongappsError(f"no queries in {path}")
    return out


__all__ = ["Retriever", "RetrieverConfig", "RetrievalHit", "IndexSummary", "read_queries"]
