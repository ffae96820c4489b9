"""Shared fixtures: an isolated cache folder per test session, a deterministic tiny encoder."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

# keep every test's caches (embeddings, indexes, LLM conversions) out of the user's ~/.cache
_CACHE = Path(os.environ.get("PYTEST_LONGAPPS_CACHE", "/tmp")) / f"longapps-test-cache-{os.getpid()}"
os.environ["LONGAPPS_CACHE"] = str(_CACHE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class HashingEncoder:
    """A deterministic bag-of-words encoder (feature hashing): real vectors, no model, for fast tests
    of everything around the model. Counts calls so tests can check what was (re-)encoded."""

    def __init__(self, dim: int = 64, max_tokens: int = 64) -> None:
        self.name, self.dim, self.max_tokens = f"hashing-{dim}", dim, max_tokens
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        self.encoded.extend(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        if progress:
            progress(len(texts))
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]


@pytest.fixture
def hashing_encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture(scope="session")
def minilm():
    """The real packaged all-MiniLM-L6-v2 (offline), loaded once per session."""
    from longapps.adapters.encode import load_encoder

    return load_encoder()


def pytest_collection_modifyitems(session, config, items) -> None:
    """Tell kernel_checks which interpreter children the selected wrappers need (run two at a time)."""
    import kernel_checks
    kernel_checks.SELECTED_SPECS[:] = [s for item in items for s in getattr(getattr(item, "function", None),
                                                                             "interp_specs", ())]
