"""Long-document matching with SMITH: how related are two documents, and which documents of a corpus are
related to one.

    m = Matcher.load("my-smith", corpus="corpus/")  # or Matcher(): the untrained hierarchy over all-MiniLM-L6-v2
    m.score(Path("a.txt"), Path("b.txt"))            # cosine of the two document vectors (a str is the text)
    m.related(Path("corpus/x.txt"), k=10)            # [RelatedHit(path, score, dense, lexical), ...]
    m.index("other-corpus/")                         # attach another corpus (cached, incremental index)

The three stages:
1. chunk     -- each document -> greedy sentence blocks of `block_tokens` (at most `max_blocks`; the rest is
                dropped with a note), `adapters.chunk.sentence_blocks`;
2. encode    -- every block -> the block encoder through the content-hash embedding cache (a block seen once is
                never encoded again, by any command);
3. aggregate -- the block vectors of a document -> SMITH's document encoder -> one unit vector
                (`models.smith.DocumentEncoder`); for corpus retrieval the cosine is fused with BM25.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from longapps.adapters.aggregate import hybrid_scores
from longapps.adapters.chunk import CHARS_PER_TOKEN, sentence_blocks
from longapps.adapters.documents import DOC_EXTENSIONS, read_document
from longapps.adapters.encode import Encoder, _model_key, make_encoder, with_cache
from longapps.index.dense import DenseIndex
from longapps.index.files import SourceFile, read_source, walk_repo
from longapps.index.incremental import encode_counted, fresh_manifest, reset_if_changed, sync_files
from longapps.index.lexical import BM25Index, tokenize
from longapps.index.store import IndexStore
from longapps.resources import LongappsError, cache_dir, resolve_model

BLOCKING_VERSION = "1"
BM25_PARAMS = {"k1": 1.2, "b": 0.75}
Doc = str | Path   # a Path is read from disk; a str is the document's text


@dataclass
class MatchConfig:
    """Matching settings (the model's own sizes come from its folder)."""

    model: str | None = None            # SMITH model folder; None = untrained hierarchy (mean of MiniLM blocks)
    block_encoder: str | None = None    # untrained only: block encoder id/folder (None = packaged MiniLM)
    block_tokens: int | None = None     # None = the model's (32)
    max_blocks: int | None = None       # None = the model's (64); more runs the document encoder windowed
    lexical_weight: float = 0.3         # BM25 share in corpus retrieval (0 = dense only)
    batch_docs: int = 16                # documents per document-encoder batch


@dataclass
class DocEmbedding:
    """One document's vector and how it was cut."""

    vector: np.ndarray
    blocks: int
    dropped: bool        # blocks beyond max_blocks were dropped
    note: str = ""       # read note: truncated / non-utf8


@dataclass
class RelatedHit:
    rank: int
    path: str
    score: float
    dense: float
    lexical: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CorpusSummary:
    """What an indexing pass did (see search-code's IndexSummary)."""

    files: int = 0
    parsed: int = 0
    reused: int = 0
    removed: int = 0
    docs: int = 0
    blocks: int = 0
    tokens: int = 0
    encoded: int = 0
    cached: int = 0
    rebuilt: bool = False
    truncated: list[str] = field(default_factory=list)      # documents whose blocks beyond the limit were dropped
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def load_smith_model(folder: str | Path) -> tuple[Any, Any, str]:
    """(SmithConfig, DocumentEncoder, block encoder path) of a saved model; one clear line when damaged."""
    from longapps.models.smith import block_encoder_path, load_doc_encoder, read_config

    cfg = read_config(folder)
    return cfg, load_doc_encoder(folder, cfg), block_encoder_path(folder, cfg)


class Matcher:
    """SMITH document matching: `score(a, b)`, `embed(docs)`, and `related(doc, k)` over an indexed corpus."""

    def __init__(self, config: MatchConfig | None = None, *, encoder: Encoder | None = None,
                 corpus: str | Path | None = None, progress: bool = False, ray: Any = None) -> None:
        """`ray`: encode the corpus's new blocks on a Ray cluster (an address, True, or a
        `longapps.distributed.RayConfig`); vectors land in the same embedding cache. None = in this process."""
        from longapps.models.smith import SmithConfig

        self.config = config or MatchConfig()
        if self.config.model:
            self.smith, self.doc_encoder, self.block_path = load_smith_model(self.config.model)
        else:
            self.smith = SmithConfig(block_encoder=self.config.block_encoder or "default")
            self.block_path = self.smith.block_encoder
            self.doc_encoder = None  # built when the block encoder's size is known
        if self.config.block_tokens:
            self.smith.block_tokens = self.config.block_tokens
        if self.config.max_blocks:
            if self.config.max_blocks > self.smith.max_positions:
                raise LongappsError(f"--max-blocks {self.config.max_blocks} exceeds the model's "
                                    f"{self.smith.max_positions} block positions")
            self.smith.max_blocks = self.config.max_blocks
        self.ray = ray
        self._encoder = with_cache(encoder, ray=ray) if encoder is not None else None
        self.show_progress = progress
        self.corpus: DocCorpus | None = None
        self._corpus_folder = corpus  # indexed on the first `related` call

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> "Matcher":
        """A trained SMITH model folder (from `longapps match-train`)."""
        config = kwargs.pop("config", None) or MatchConfig()
        config.model = str(folder)
        return cls(config, **kwargs)

    # -- the block encoder (loaded on first use) --------------------------------------------------
    @property
    def block_encoder_name(self) -> str:
        """The embedding-cache key of the block encoder, known without loading it."""
        if self._encoder is not None:
            return self._encoder.name
        if self.smith.block_key:
            return f"smith-blocks-{self.smith.block_key}-{self.smith.block_tokens + 2}"
        return _model_key(resolve_model(self.block_path), self.smith.block_tokens + 2)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            enc = make_encoder(self.block_path, max_tokens=self.smith.block_tokens + 2, batch_size=64)
            enc.name = self.block_encoder_name
            self._encoder = with_cache(enc, ray=self.ray)
        return self._encoder

    def document_encoder(self) -> Any:
        """SMITH's document encoder (untrained = identity layers: the mean of the block vectors)."""
        if self.doc_encoder is None:
            from longapps.models.smith import DocumentEncoder

            self.smith.dim = self.smith.out_dim = self.encoder.dim
            if self.smith.dim % self.smith.heads:
                self.smith.heads = 1
            self.doc_encoder = DocumentEncoder(self.smith).eval()
        return self.doc_encoder

    def scoring_key(self) -> str:
        """Hash of the document encoder's weights + lexical settings (what decides the published vectors)."""
        spec = self.smith.to_json()
        if not self.config.model:  # untrained = the mean of the block vectors: sizes and weights do not matter
            spec = {k: v for k, v in spec.items() if k not in ("dim", "out_dim", "heads")}
        h = hashlib.sha1(json.dumps(spec, sort_keys=True).encode())
        if self.doc_encoder is not None and self.config.model:
            for k, v in sorted(self.doc_encoder.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().numpy().tobytes())
        h.update(json.dumps(BM25_PARAMS, sort_keys=True).encode())
        return h.hexdigest()[:16]

    # -- stage 1: chunk ---------------------------------------------------------------------------
    @property
    def max_doc_bytes(self) -> int:
        """How much of a file is read: enough bytes for max_blocks full blocks (UTF-8 up to 4 bytes a char)."""
        return self.smith.block_tokens * self.smith.max_blocks * CHARS_PER_TOKEN * 4

    def blocks(self, text: str) -> tuple[list[str], bool]:
        """A document's sentence blocks (texts) and whether blocks beyond max_blocks were dropped."""
        chunks, dropped = sentence_blocks(text, block_tokens=self.smith.block_tokens,
                                          max_blocks=self.smith.max_blocks, count_tokens=self.encoder.count_tokens)
        return [c.text for c in chunks], dropped

    def read(self, doc: Doc) -> tuple[str, str]:
        """(text, note): a Path is read (bounded), a str is the text itself."""
        if isinstance(doc, Path):
            return read_document(doc, self.max_doc_bytes)
        if not isinstance(doc, str) or not doc.strip():
            raise LongappsError("empty document")
        return doc, ""

    # -- stages 2 + 3: encode blocks, aggregate per document ----------------------------------------
    def doc_vectors(self, block_vecs: np.ndarray, counts: Sequence[int]) -> np.ndarray:
        """Block vectors (rows grouped by document, `counts[i]` rows each) -> document vectors (n, out_dim)."""
        import torch

        from longapps.models.smith import pad_blocks

        model = self.document_encoder()
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        out = np.zeros((len(counts), self.smith.out_dim), dtype=np.float32)
        order = sorted(range(len(counts)), key=lambda i: counts[i])  # similar lengths batch together
        bs = max(1, self.config.batch_docs)
        with torch.no_grad():
            for s in range(0, len(order), bs):
                idx = [i for i in order[s:s + bs] if counts[i] > 0]
                if not idx:
                    continue
                vecs, mask = pad_blocks([block_vecs[starts[i]:starts[i + 1]] for i in idx], self.smith.dim)
                out[idx] = model(vecs, mask).numpy()
        return out

    def embed_texts(self, texts: Sequence[str]) -> list[DocEmbedding]:
        """Embed document texts (chunk -> encode -> aggregate)."""
        cut = [self.blocks(t) for t in texts]
        flat = [b for blocks, _ in cut for b in blocks]
        vecs, _, _ = encode_counted(self.encoder, flat, label="encoding blocks", show_progress=self.show_progress)
        doc_vecs = self.doc_vectors(vecs, [len(b) for b, _ in cut])
        return [DocEmbedding(v, len(b), d) for v, (b, d) in zip(doc_vecs, cut)]

    def embed(self, docs: Sequence[Doc]) -> list[DocEmbedding]:
        """Embed documents given as Paths (read, bounded) or texts."""
        read = [self.read(d) for d in docs]
        out = self.embed_texts([t for t, _ in read])
        for e, (_, note) in zip(out, read):
            e.note = note
        return out

    def score(self, a: Doc, b: Doc) -> float:
        """Cosine of the two documents' SMITH vectors (in [-1, 1]; higher = more related)."""
        ea, eb = self.embed([a, b])
        return float(ea.vector @ eb.vector)

    def probability(self, cosine: float | np.ndarray) -> float | np.ndarray | None:
        """P(related) from the pair classifier of a model fine-tuned on pairs (None otherwise)."""
        if self.smith.objective != "pairs":
            return None
        model = self.document_encoder()
        z = float(model.logit_scale.detach()) * np.asarray(cosine) + float(model.logit_bias.detach())
        return 1.0 / (1.0 + np.exp(-z))

    # -- corpus ------------------------------------------------------------------------------------
    def index(self, folder: str | Path, *, index_dir: str | Path | None = None, reindex: bool = False) -> CorpusSummary:
        """Attach a corpus folder and bring its index up to date (incremental, cached)."""
        self.corpus = DocCorpus(self, folder, index_dir=index_dir)
        return self.corpus.index(reindex=reindex)

    def related(self, doc: Doc, k: int = 10) -> list[RelatedHit]:
        """The k documents of the attached corpus most related to `doc` (a corpus file, any file, or text)."""
        if self.corpus is None and self._corpus_folder is not None:
            self.index(self._corpus_folder)
        if self.corpus is None:
            raise LongappsError("no corpus: pass corpus=FOLDER or call Matcher.index(folder) first")
        return self.corpus.related(doc, k)


def default_index_dir(corpus: Path) -> Path:
    key = hashlib.sha1(str(corpus.resolve()).encode()).hexdigest()[:12]
    return cache_dir("index") / f"match-{corpus.resolve().name}-{key}"


class DocCorpus:
    """A folder of documents indexed for `related` queries: the per-file blocks live in the shared
    `IndexStore` (SQLite state + atomically published snapshots); block vectors in the embedding cache."""

    def __init__(self, matcher: Matcher, folder: str | Path, *, index_dir: str | Path | None = None) -> None:
        self.matcher = matcher
        self.folder = Path(folder)
        if not self.folder.exists():
            raise LongappsError(f"corpus folder not found: {folder}")
        if not self.folder.is_dir():
            raise LongappsError(f"not a folder: {folder} (--corpus takes a folder of text documents)")
        self.store = IndexStore(index_dir or default_index_dir(self.folder))
        self._snap: dict[str, Any] | None = None
        self.summary: CorpusSummary | None = None

    def index_key(self) -> str:
        m = self.matcher.smith
        spec = f"{BLOCKING_VERSION}|{self.matcher.block_encoder_name}|{m.block_tokens}|{m.max_blocks}"
        return hashlib.sha1(spec.encode()).hexdigest()[:16]

    def index(self, reindex: bool = False) -> CorpusSummary:
        """Re-block new/changed files, encode only blocks never seen, publish doc vectors + BM25 atomically."""
        m = self.matcher
        summary = CorpusSummary()
        with self.store.lock():
            key = self.index_key()
            reset_if_changed(self.store, key, reindex)
            walk = walk_repo(self.folder, max_bytes=1 << 62, extensions=DOC_EXTENSIONS)

            def cut(text: str, f: SourceFile) -> list[dict[str, Any]]:
                blocks, dropped = m.blocks(text) if text.strip() else ([], False)
                return [{"blocks": blocks, "dropped": dropped}]

            sync = sync_files(self.store, walk.files, cut, read=lambda p: read_source(p, max_bytes=m.max_doc_bytes),
                              label="blocking", show_progress=m.show_progress)
            summary.files, summary.parsed, summary.reused, summary.removed = sync.files, sync.parsed, sync.reused, \
                sync.removed
            summary.skipped_files = list(walk.skipped) + sync.skipped_files
            manifest = fresh_manifest(self.store, sync.digest, index_key=key, scoring=m.scoring_key())
            if manifest is None:
                self._publish(summary, key, sync.digest)
            else:
                summary.docs, summary.blocks = manifest["docs"], manifest["blocks"]
                summary.truncated = manifest.get("truncated", [])
        empty = [(rel, "empty") for rel, units in self.store.all_units()
                 if units and not units[0]["blocks"]] if summary.rebuilt else []
        summary.skipped_files += empty
        for _, reason in summary.skipped_files:
            summary.skipped[reason] = summary.skipped.get(reason, 0) + 1
        self._snap = None
        self.summary = summary
        return summary

    def _publish(self, summary: CorpusSummary, key: str, digest: str) -> None:
        m = self.matcher
        rels, blocks, dropped = [], [], []
        for rel, units in self.store.all_units():
            if units and units[0]["blocks"]:
                rels.append(rel)
                blocks.append(units[0]["blocks"])
                dropped.append(units[0]["dropped"])
        flat = [b for bl in blocks for b in bl]
        vecs, summary.encoded, summary.cached = encode_counted(m.encoder, flat, label="encoding blocks",
                                                               show_progress=m.show_progress)
        doc_vecs = m.doc_vectors(vecs, [len(b) for b in blocks]) if rels else np.zeros((0, m.smith.out_dim), np.float32)
        bm25 = BM25Index(**BM25_PARAMS).fit(tokenize(" ".join(bl)) for bl in blocks)
        summary.docs, summary.blocks, summary.rebuilt = len(rels), len(flat), True
        summary.tokens = int(sum(m.encoder.count_tokens(flat))) if summary.encoded else 0
        summary.truncated = [r for r, d in zip(rels, dropped) if d]

        def write(folder: Path) -> dict[str, Any]:
            (folder / "docs.json").write_text(json.dumps({"paths": rels, "blocks": [len(b) for b in blocks]}))
            DenseIndex.build(doc_vecs).save(folder / "docs.faiss")
            bm25.save(folder / "bm25")
            return {"version": 1, "index_key": key, "scoring": m.scoring_key(), "state_digest": digest,
                    "docs": len(rels), "blocks": len(flat), "truncated": summary.truncated}

        self.store.publish(write)

    # -- queries -----------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if self._snap is None:
            if self.summary is None:
                self.index()
            cur = self.store.current()
            if cur is None:
                raise LongappsError("corpus index is missing; run again with --reindex")
            meta = json.loads((cur / "docs.json").read_text())
            index = DenseIndex.load(cur / "docs.faiss")
            vecs = index.index.reconstruct_n(0, len(index)) if len(index) else np.zeros((0, 1), np.float32)
            self._snap = {"paths": meta["paths"], "vecs": vecs, "bm25": BM25Index.load(cur / "bm25"),
                          "row": {p: i for i, p in enumerate(meta["paths"])}}
        return self._snap

    def _rel(self, doc: Doc) -> str | None:
        """The corpus-relative path of `doc` when it is a file of this corpus."""
        if not isinstance(doc, Path):
            return None
        try:
            return doc.resolve().relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return None

    def related(self, doc: Doc, k: int = 10) -> list[RelatedHit]:
        """Top-k related corpus documents (the document itself excluded)."""
        snap = self._load()
        rel = self._rel(doc)
        if rel is not None and rel in snap["row"]:
            row = snap["row"][rel]
            qvec = snap["vecs"][row]
            text = " ".join(self.store.units_of(rel)[0]["blocks"])
        else:
            emb = self.matcher.embed([doc])[0]
            row, qvec = None, emb.vector
            text = self.matcher.read(doc)[0][: self.matcher.max_doc_bytes]
        return self._rank(qvec, text, row, k)

    def related_all(self, k: int = 10, progress: Callable[[int], None] | None = None
                    ) -> list[tuple[str, list[RelatedHit]]]:
        """(path, top-k) for every document of the corpus."""
        snap = self._load()
        out = []
        for rel, row in snap["row"].items():
            text = " ".join(self.store.units_of(rel)[0]["blocks"])
            out.append((rel, self._rank(snap["vecs"][row], text, row, k)))
            if progress:
                progress(1)
        return out

    def _rank(self, qvec: np.ndarray, text: str, row: int | None, k: int) -> list[RelatedHit]:
        snap = self._load()
        if not snap["paths"]:
            return []
        dense = snap["vecs"] @ qvec
        w = self.matcher.config.lexical_weight
        lex = snap["bm25"].scores(tokenize(text)) if w > 0 else None
        keep = np.ones(len(dense), dtype=bool)
        if row is not None:
            keep[row] = False
        idx = np.flatnonzero(keep)
        if not len(idx):
            return []
        fused = hybrid_scores(dense[idx], lex[idx] if lex is not None else None, w)
        top = idx[np.argsort(-fused, kind="stable")[:k]]
        pos = {int(i): j for j, i in enumerate(idx)}
        return [RelatedHit(rank=r + 1, path=snap["paths"][i], score=round(float(fused[pos[int(i)]]), 4),
                           dense=round(float(dense[i]), 4),
                           lexical=round(float(lex[i]), 4) if lex is not None else 0.0)
                for r, i in enumerate(top)]
