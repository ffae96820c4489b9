"""Dense index: flat below the threshold, IVF / HNSW above it with recall checked against exact search."""
from __future__ import annotations

import numpy as np
import pytest

from longapps.index.dense import DenseIndex, exact_top_k, recall_at_k, recall_queries
from longapps.index.lexical import BM25Index, tokenize


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    x = centres[rng.integers(0, 50, n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_small_collections_stay_flat_and_exact():
    x = clustered(500)
    idx = DenseIndex.build(x)
    assert idx.kind == "flat" and idx.exact and idx.recall is None
    q = x[:3] * 0.9 + x[3:6] * 0.1
    np.testing.assert_allclose(idx.all_scores(q), q @ x.T, atol=1e-5)
    np.testing.assert_array_equal(idx.search(q, 5)[1], np.argsort(-(q @ x.T), axis=1)[:, :5])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_large_collections_switch_to_ann_with_recall_checked(kind, tmp_path):
    x = clustered(8000)
    idx = DenseIndex.build(x, kind="auto" if kind == "ivf" else kind, max_scalars=100_000)
    assert idx.kind == kind and not idx.exact
    assert idx.recall is not None and idx.recall >= 0.95  # tuned at build time against exact search
    # independent check on other queries
    q = recall_queries(x, 100, seed=7)
    assert recall_at_k(idx.search(q, 10)[1], exact_top_k(x, q, 10)) >= 0.9
    idx.save(tmp_path / "v.faiss")
    back = DenseIndex.load(tmp_path / "v.faiss")
    assert back.kind == kind and back.recall == idx.recall and len(back) == len(x)
    np.testing.assert_array_equal(back.search(q, 10)[1], idx.search(q, 10)[1])  # search breadth saved too
    np.testing.assert_allclose(np.sort(back.vectors(), axis=0), np.sort(x, axis=0), atol=1e-6)


def test_ann_all_scores_exact_on_candidates_floor_elsewhere():
    x = clustered(6000)
    idx = DenseIndex.build(x, kind="ivf", max_scalars=1)
    q = recall_queries(x, 2, seed=3)
    got = idx.all_scores(q)
    exact = q @ x.T
    for r in range(len(q)):
        top = np.argsort(-got[r])[:10]
        np.testing.assert_allclose(got[r, top], exact[r, top], atol=1e-5)
        assert got[r].min() == pytest.approx(np.sort(got[r])[-1000 if len(x) > 1000 else 0], abs=1e-6)


def test_exact_top_k_matches_brute_force():
    x = clustered(3000, seed=2)
    q = recall_queries(x, 20, seed=1)
    np.testing.assert_array_equal(exact_top_k(x, q, 10, chunk=700), np.argsort(-(q @ x.T), axis=1)[:, :10])


def test_bm25_is_memory_mapped(tmp_path):
    docs = ["parse config file", "merge default settings", "retry with backoff"] * 10
    BM25Index().fit(tokenize(d) for d in docs).save(tmp_path / "bm25")
    back = BM25Index.load(tmp_path / "bm25")
    arrays = [v for v in vars(back._bm25).values() if isinstance(v, np.ndarray)]
    arrays += [v for v in getattr(back._bm25, "scores", {}).values() if isinstance(v, np.ndarray)]
    assert any(isinstance(a, np.memmap) for a in arrays)
    assert back.scores(tokenize("retry backoff")).argmax() == 2


def test_code_search_on_an_ann_index(tmp_path, monkeypatch, hashing_encoder):
    """Past the threshold search-code's snapshot holds IVF indexes and search still finds the function."""
    import longapps.index.dense as dense
    from longapps.pipelines.code_search import CodeSearch

    monkeypatch.setattr(dense, "FLAT_MAX_SCALARS", 1)
    repo = tmp_path / "repo"
    repo.mkdir()
    words = "alpha beta gamma delta kappa sigma omega lambda theta zeta".split()
    (repo / "gen.py").write_text("".join(f"def helper_{i}(items):\n    return {words[i % 10]}({words[i // 10 % 10]})\n\n"
                                         for i in range(300)) + "def transpose_matrix(rows):\n"
                                 "    return [list(r) for r in zip(*rows)]\n")
    cs = CodeSearch(repo, index_dir=tmp_path / "idx", encoder=hashing_encoder)
    cs.index()
    snap = cs._load()
    assert snap["unit_index"].kind == "ivf" and snap["unit_index"].recall >= 0.95
    assert cs.search("transpose matrix rows", k=3)[0].name == "transpose_matrix"
