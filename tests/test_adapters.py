"""The shared stages: chunking, the embedding cache, pooling and fusion."""
from __future__ import annotations

import numpy as np
import pytest

from longapps.adapters.aggregate import fuse_scores, pool, pool_groups, rrf
from longapps.adapters.chunk import split_lines, split_sentences, split_tokens
from longapps.adapters.encode import CachedEncoder, EmbeddingCache


def test_split_lines_covers_text_and_respects_budget():
    text = "\n".join(f"line {i} " + "word " * (i % 7) for i in range(100))
    chunks = split_lines(text, "f", max_lines=20, max_tokens=40)
    assert chunks[0].start == 1 and chunks[-1].end == 100
    for a, b in zip(chunks, chunks[1:]):
        assert b.start == a.end + 1  # no gaps, no overlap
    from longapps.adapters.chunk import approx_tokens

    assert all(approx_tokens([c.text])[0] <= 40 for c in chunks)


def test_split_lines_overlap_and_empty():
    assert split_lines("", "f") == []
    chunks = split_lines("\n".join(map(str, range(10))), "f", max_lines=4, overlap=2)
    assert [(c.start, c.end) for c in chunks][:3] == [(1, 4), (3, 6), (5, 8)]


def test_split_tokens_packs_sentences_with_offsets():
    text = " ".join(f"Sentence number {i} is here." for i in range(50))
    chunks = split_tokens(text, "doc", max_tokens=30)
    assert len(chunks) > 3
    for c in chunks:
        assert text[c.start:c.end] == c.text
    assert chunks[0].meta["index"] == 0
    assert split_sentences("One. Two three.") == [(0, 4), (5, 15)]


def test_split_tokens_cuts_run_on_sentence():
    text = "word " * 1000
    chunks = split_tokens(text, "doc", max_tokens=50)
    assert len(chunks) >= 20 and all(len(c.text.split()) <= 50 for c in chunks)


def test_pooling_methods():
    rng = np.random.default_rng()
    v = rng.normal(size=(5, 8)).astype(np.float32)
    for m in ("mean", "max", "attention", "first"):
        p = pool(v, m)
        assert p.shape == (8,) and abs(np.linalg.norm(p) - 1) < 1e-5
    mean = v.sum(0) / np.linalg.norm(v.sum(0))
    assert np.allclose(pool(v, "mean"), mean, atol=1e-6)
    # attention down-weights an outlier block relative to the mean
    base = np.tile(rng.normal(size=(1, 8)), (4, 1)) + 0.01 * rng.normal(size=(4, 8))
    outlier = -base[:1] * 3
    both = np.vstack([base, outlier]).astype(np.float32)
    centroid_dir = base.mean(0) / np.linalg.norm(base.mean(0))
    assert pool(both, "attention") @ centroid_dir > pool(both, "mean") @ centroid_dir
    with pytest.raises(ValueError, match="method"):
        pool(v, "median")


def test_pool_groups_any_order():
    rng = np.random.default_rng()
    v = rng.normal(size=(6, 4)).astype(np.float32)
    groups = [1, 0, 1, 2, 0, 2]
    out = pool_groups(v, groups, "mean")
    assert out.shape == (3, 4)
    assert np.allclose(out[0], pool(v[[1, 4]], "mean"), atol=1e-6)


def test_rrf_and_fuse():
    s = rrf([[1, 2, 3], [3, 2, 1]])
    assert s[2] > 0 and abs(s[1] - s[3]) < 1e-12
    fused = fuse_scores([np.array([1.0, 0.0, 0.5]), np.array([0.0, 10.0, 0.0])], [0.5, 0.5])
    assert fused.argmax() == 1 or fused.argmax() == 0
    assert np.isfinite(fuse_scores([np.array([1.0, 1.0])], [1.0])).all()


def test_embedding_cache_reuses_vectors(tmp_path, hashing_encoder):
    cache = EmbeddingCache(tmp_path / "c.sqlite", hashing_encoder.dim)
    enc = CachedEncoder(hashing_encoder, cache)
    a = enc.encode(["alpha beta", "gamma", "alpha beta"])
    assert hashing_encoder.encoded == ["alpha beta", "gamma"]  # duplicates encoded once
    b = enc.encode(["gamma", "delta"])
    assert hashing_encoder.encoded[-1:] == ["delta"] and np.allclose(a[1], b[0])
    # a new process (new cache object) still finds them
    enc2 = CachedEncoder(hashing_encoder, EmbeddingCache(tmp_path / "c.sqlite", hashing_encoder.dim))
    n = len(hashing_encoder.encoded)
    enc2.encode(["alpha beta", "gamma", "delta"])
    assert len(hashing_encoder.encoded) == n and enc2.hits == 3


def test_real_encoder_is_normalised_and_cached(minilm):
    v = minilm.encode(["def add(a, b): return a + b", "sort a list of numbers"])
    assert v.shape == (2, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert minilm.count_tokens(["hello world"]) == [2]
    assert minilm.max_tokens == 256


def test_transformers_backend_gives_the_sentence_transformers_vectors(minilm):
    """The packaged MiniLM runs on plain transformers (no sentence-transformers import): same vectors, same
    cache key and token counts as sentence-transformers, including truncation, whitespace and empty text."""
    from longapps.adapters.encode import SentenceTransformerEncoder, TransformersEncoder

    fast = minilm.inner
    assert isinstance(fast, TransformersEncoder)
    ref = SentenceTransformerEncoder()
    texts = ["  padded text  ", "", "word " * 400, "tabs\tand\nnewlines", "Ünïcödé café 東京", "x"]
    assert np.abs(fast.encode(texts) - ref.encode(texts)).max() < 1e-5
    assert np.abs(fast.encode(texts[:2]) - ref.encode(texts[:2])).max() < 1e-5  # the one-thread query path
    assert fast.name == ref.name and fast.max_tokens == ref.max_tokens and fast.dim == ref.dim
    assert fast.count_tokens(texts) == ref.count_tokens(texts)


def test_simple_layout_only_takes_plain_pooling_folders(tmp_path):
    import json
    import shutil

    from longapps.adapters.hf_encoder import simple_layout
    from longapps.resources import default_encoder_path

    src = default_encoder_path()
    assert simple_layout(src).pooling == "mean"
    folder = tmp_path / "m"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    assert simple_layout(folder) is None   # a Dense head: left to sentence-transformers
    (folder / "modules.json").write_text("{not json")
    assert simple_layout(folder) is None
    assert simple_layout(tmp_path / "missing") is None
