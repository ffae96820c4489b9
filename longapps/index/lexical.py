"""Lexical scoring: identifier-aware tokenisation + BM25 (bm25s), saved without pickle."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# English function words; language keywords that say nothing about what code does
STOPWORDS = frozenset("""
a an and are as at be but by for if in into is it its of on or such that the their then there these they
this to was will with from which when where who whom why how all any both each few more most other some
than too very can just should now do does did doing done has have had having i me my we our you your he
him his she her them what would could shall may might must also not no nor only own same so s t
self cls this def return var let const function func fn pub static public private protected final void
new null none true false nil import from package include using namespace else elif while try catch
except finally throw throws raise struct impl mut int char bool string float double long unsigned
""".split())


@lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # optional: without it, words are used as they are
        return None


def split_identifier(word: str) -> list[str]:
    """`parseHTTPResponse_v2` -> ['parse', 'http', 'response', 'v', '2'] (camelCase, snake_case, digits)."""
    parts: list[str] = []
    for piece in word.split("_"):
        parts.extend(m.group(0).lower() for m in _CAMEL.finditer(piece))
    return parts


def tokenize(text: str, *, stem: bool = True) -> list[str]:
    """Identifier-aware tokens: each identifier's sub-words (and the whole identifier when compound),
    lower-cased, stop words dropped, stemmed (Snowball) when PyStemmer is installed."""
    out: list[str] = []
    for m in _WORD.finditer(text):
        word = m.group(0)
        parts = split_identifier(word)
        if len(parts) > 1:
            whole = word.lower().strip("_")
            if whole and whole not in STOPWORDS:
                out.append(whole)
        out.extend(p for p in parts if p not in STOPWORDS and (len(p) > 1 or p.isdigit()))
    st = _stemmer() if stem else None
    return st.stemWords(out) if st and out else out


class BM25Index:
    """BM25 over pre-tokenised documents; `scores(query)` gives one score per document."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._bm25 = None
        self.vocab: dict[str, int] = {}
        self.n_docs = 0

    def fit(self, docs: Iterable[Sequence[str]]) -> "BM25Index":
        """Index token lists (one list per document)."""
        import bm25s
        from bm25s.tokenization import Tokenized

        ids: list[list[int]] = []
        vocab: dict[str, int] = {"": 0}
        for doc in docs:
            ids.append([vocab.setdefault(t, len(vocab)) for t in doc] or [0])
        self.vocab, self.n_docs = vocab, len(ids)
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b)
        if ids:
            self._bm25.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)
        return self

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the query tokens (zeros when no token is known)."""
        known = [t for t in query_tokens if t in self.vocab and t != ""]
        if not known or self._bm25 is None or self.n_docs == 0:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)

    def save(self, folder: Path) -> None:
        """Write the index as .npy/.json files (never pickle)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._bm25 is not None and self.n_docs:
            self._bm25.save(str(folder / "bm25"), allow_pickle=False)
        (folder / "bm25_meta.json").write_text(json.dumps({"k1": self.k1, "b": self.b, "n_docs": self.n_docs,
                                                           "vocab": self.vocab}))

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        import bm25s

        folder = Path(folder)
        meta = json.loads((folder / "bm25_meta.json").read_text())
        idx = cls(meta["k1"], meta["b"])
        idx.vocab, idx.n_docs = meta["vocab"], meta["n_docs"]
        if idx.n_docs:
            # memory-mapped: a large index is paged in on demand, not read whole at load
            idx._bm25 = bm25s.BM25.load(str(folder / "bm25"), allow_pickle=False, mmap=True)
        return idx
