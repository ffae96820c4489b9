"""The search-code pipeline: incremental index, atomic snapshots, API results."""
from __future__ import annotations

import json
import os
import time

import pytest

from longapps.pipelines.code_search import CodeSearch, CodeSearchConfig, block_max, encoder_texts
from longapps.resources import LongappsError

PY = '''
def read_config(path):
    with open(path) as fh:
        return parse_lines(fh.read().splitlines())


def parse_lines(lines):
    out = {}
    for line in lines:
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


class Matrix:
    def transpose(self):
        return [list(row) for row in zip(*self.rows)]
'''
GO = '''package geo

func Haversine(lat1, lon1, lat2, lon2 float64) float64 {
	dlat := (lat2 - lat1) * 0.0174533
	dlon := (lon2 - lon1) * 0.0174533
	return 6371 * 2 * (dlat*dlat + dlon*dlon)
}
'''


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    (r / "pkg").mkdir(parents=True)
    (r / "pkg" / "conf.py").write_text(PY)
    (r / "geo.go").write_text(GO)
    return r


def make(repo, tmp_path, enc, **cfg):
    return CodeSearch(repo, config=CodeSearchConfig(**cfg), index_dir=tmp_path / "idx", encoder=enc)


def test_search_finds_function_and_returns_typed_hits(repo, tmp_path, hashing_encoder):
    cs = make(repo, tmp_path, hashing_encoder)
    s = cs.index()
    assert s.files == 2 and s.units >= 4 and s.rebuilt
    hits = cs.search("transpose matrix rows", k=3)
    assert hits[0].name.endswith("transpose") and hits[0].path == "pkg/conf.py"
    assert hits[0].location == f"pkg/conf.py:{hits[0].start}-{hits[0].end}"
    assert json.loads(json.dumps(hits[0].to_dict()))["rank"] == 1
    assert cs.search("haversine distance", k=1)[0].language == "go"


def test_second_run_encodes_nothing_and_changes_are_incremental(repo, tmp_path, hashing_encoder):
    make(repo, tmp_path, hashing_encoder).index()
    n = len(hashing_encoder.encoded)
    s = make(repo, tmp_path, hashing_encoder).index()
    assert len(hashing_encoder.encoded) == n and not s.rebuilt and s.parsed == 0
    # touch without change: re-read, not re-split or re-encoded
    os.utime(repo / "geo.go", ns=(time.time_ns(), time.time_ns() + 10**9))
    s = make(repo, tmp_path, hashing_encoder).index()
    assert s.parsed == 0 and len(hashing_encoder.encoded) == n
    # edit one file: only its new blocks are encoded
    (repo / "geo.go").write_text(GO.replace("6371", "6371.0088"))
    s = make(repo, tmp_path, hashing_encoder).index()
    assert s.parsed == 1 and s.rebuilt and 0 < s.encoded <= 2
    # delete a file: its units leave the index
    (repo / "geo.go").unlink()
    cs = make(repo, tmp_path, hashing_encoder)
    s = cs.index()
    assert s.removed == 1 and all(h.path != "geo.go" for h in cs.search("haversine", k=10))


def test_config_change_rebuilds_snapshot_from_cache(repo, tmp_path, hashing_encoder):
    make(repo, tmp_path, hashing_encoder).index()
    n = len(hashing_encoder.encoded)
    s = make(repo, tmp_path, hashing_encoder, pooling="max").index()
    assert s.rebuilt and s.encoded == 0 and s.cached == s.blocks and len(hashing_encoder.encoded) == n


def test_interrupted_publish_keeps_old_snapshot(repo, tmp_path, hashing_encoder, monkeypatch):
    cs = make(repo, tmp_path, hashing_encoder)
    cs.index()
    before = cs.store.current()
    (repo / "geo.go").write_text(GO + "\nfunc Extra() int { return 1 }\n")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("longapps.index.lexical.BM25Index.save", boom)
    with pytest.raises(KeyboardInterrupt):
        make(repo, tmp_path, hashing_encoder).index()
    monkeypatch.undo()
    cs2 = make(repo, tmp_path, hashing_encoder)
    assert cs2.store.current() == before  # the half-written snapshot was never published
    cs2.index()
    assert any(h.name == "Extra" for h in cs2.search("extra", k=5))


def test_bad_inputs(tmp_path, hashing_encoder):
    with pytest.raises(LongappsError, match="not found"):
        CodeSearch(tmp_path / "nope", encoder=hashing_encoder)
    f = tmp_path / "file.py"
    f.write_text("x = 1\n")
    with pytest.raises(LongappsError, match="not a directory"):
        CodeSearch(f, encoder=hashing_encoder)
    empty = tmp_path / "empty"
    empty.mkdir()
    cs = make(empty, tmp_path, hashing_encoder)
    assert cs.index().units == 0 and cs.search("anything") == []
    with pytest.raises(LongappsError, match="empty query"):
        cs.search("   ")


def test_block_text_carries_context_and_block_max():
    import numpy as np

    unit = {"path": "a/b.py", "name": "C.run", "signature": "def run(self, x)",
            "blocks": [{"text": "def run(self, x):\n    y = 1"}, {"text": "    return y"}]}
    texts, groups = encoder_texts([unit], "path+name")
    assert texts[0].startswith("a/b.py C.run\n") and "def run(self, x)\n    return y" in texts[1]
    assert groups == [0, 0]
    bm = block_max(np.array([[0.1, 0.5, 0.2]]), np.array([0, 0, 1]), 2)
    assert np.allclose(bm, [[0.5, 0.2]])
