"""Encoding on Ray (a local cluster started here): same index as in-process, a killed worker loses nothing."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from longapps.adapters.encode import EmbeddingCache
from longapps.distributed.ray_encode import RayConfig, ray_available
from longapps.index.dense import DenseIndex
from longapps.pipelines.code_search import CodeSearch
from longapps.resources import LongappsError

from conftest import HashingEncoder

needs_ray = pytest.mark.skipif(not ray_available(), reason="ray extra not installed: pip install 'longapps[ray]'")
DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_repo"


class LoggingEncoder(HashingEncoder):
    """HashingEncoder that appends sha1 of every text it encodes (and its pid) to a log file; optionally slow.
    Shipped to Ray workers by value, so every actor writes to the same file."""

    def __init__(self, log: Path, delay: float = 0.0) -> None:
        super().__init__()
        self.log, self.delay = str(log), delay

    def encode(self, texts, *, progress=None):
        time.sleep(self.delay)
        out = super().encode(texts)
        with open(self.log, "a") as fh:
            fh.write("".join(f"{os.getpid()} {hashlib.sha1(t.encode()).hexdigest()}\n" for t in texts))
        return out


def logged(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [(int(p), h) for p, h in (line.split() for line in log.read_text().splitlines())]


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU local Ray instance on 127.0.0.1 for this module, started by the test."""
    if not ray_available():
        pytest.skip("ray extra not installed: pip install 'longapps[ray]'")
    import ray
    from ray import cloudpickle  # Ray's own copy pickles the actor arguments

    from longapps.distributed.ray_encode import connect

    for mod in (sys.modules[__name__], sys.modules["conftest"]):
        cloudpickle.register_pickle_by_value(mod)  # the test encoders travel to the workers by value
    connect(RayConfig(address="local", num_cpus=2))
    yield ray
    ray.shutdown()


def make_repo(root: Path, helpers: int) -> Path:
    """A copy of the demo repository plus `helpers` generated functions."""
    import shutil

    r = root / "repo"
    shutil.copytree(DEMO, r)
    lines = [f"def helper_{i}(items, limit={i}):\n    \"\"\"Return the first {i} items, sorted by key {i}.\"\"\"\n"
             f"    return sorted(items, key=lambda x: x[{i % 7}])[:limit]\n\n" for i in range(helpers)]
    (r / "generated.py").write_text("".join(lines))
    return r


@pytest.fixture
def repo(tmp_path):
    """A few hundred blocks: enough for a worker to die with most of the run still to do."""
    return make_repo(tmp_path, 240)


def snapshot(index_dir: Path) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    cur = Path(index_dir) / "snapshots" / (Path(index_dir) / "CURRENT").read_text().strip()
    units = json.loads((cur / "units.json").read_text())
    vecs = {name: DenseIndex.load(cur / f"{name}.faiss") for name in ("units", "blocks")}
    return (units, vecs["units"].index.reconstruct_n(0, len(vecs["units"])),
            vecs["blocks"].index.reconstruct_n(0, len(vecs["blocks"])), np.load(cur / "block_unit.npy"))


def assert_same_index(a: Path, b: Path) -> None:
    ua, va, ba, ga = snapshot(a)
    ub, vb, bb, gb = snapshot(b)
    assert ua == ub and len(ua) > 50
    np.testing.assert_array_equal(ga, gb)
    np.testing.assert_allclose(va, vb, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ba, bb, atol=1e-6, rtol=0)


def cache_keys(enc_name: str, dim: int) -> set[str]:
    from longapps.resources import cache_dir

    c = EmbeddingCache(cache_dir("embeddings") / f"{enc_name}.sqlite", dim)
    keys = {bytes(h).hex() for (h,) in c._db.execute("SELECT h FROM vec")}
    c.close()
    return keys


@needs_ray
def test_ray_index_identical_to_in_process_real_model(ray_cluster, tmp_path, minilm, monkeypatch):
    """The packaged MiniLM: one load per actor on the workers; units and vectors as in-process (1e-6)."""
    repo = make_repo(tmp_path, 40)
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "cache_local"))
    local = CodeSearch(repo, index_dir=tmp_path / "local", encoder=minilm.inner)
    s_local = local.index()
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "cache_ray"))  # an empty cache: Ray encodes it all
    dist = CodeSearch(repo, index_dir=tmp_path / "ray", encoder=minilm.inner,
                      ray=RayConfig(workers=1, batch_size=32))
    s_ray = dist.index()
    assert s_local.encoded == s_ray.encoded == s_ray.blocks > 60 and s_ray.cached == 0
    assert_same_index(tmp_path / "local", tmp_path / "ray")
    assert [h.name for h in dist.search("sort items by key", k=5)] == \
        [h.name for h in local.search("sort items by key", k=5)]
    # a second run finds every vector in the cache and never starts a Ray job
    again = CodeSearch(repo, index_dir=tmp_path / "ray2", encoder=minilm.inner, ray=RayConfig(address="bad:1"))
    assert again.index().encoded == 0


@needs_ray
def test_killed_worker_then_rerun_encodes_nothing_twice(ray_cluster, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "cache"))
    ref = HashingEncoder()
    CodeSearch(repo, index_dir=tmp_path / "ref", encoder=ref).index()
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "cache_ray"))
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    killed: list[int] = []
    kill_a_worker = worker_killer(log1, killed)
    run1 = CodeSearch(repo, index_dir=tmp_path / "ray", encoder=LoggingEncoder(log1, delay=0.05),
                      ray=RayConfig(workers=2, batch_size=8, max_restarts=0))
    run1.encoder.encode = _with_progress(run1.encoder.encode, kill_a_worker)
    with pytest.raises(LongappsError, match="run again to resume"):
        run1.index()
    assert killed
    texts_total = ref.encoded
    in_cache = cache_keys(ref.name, ref.dim)
    assert 0 < len(in_cache) < len(set(texts_total))  # stopped mid-run, kept what came back

    run2 = CodeSearch(repo, index_dir=tmp_path / "ray", encoder=LoggingEncoder(log2),
                      ray=RayConfig(workers=2, batch_size=8))
    s2 = run2.index()
    encoded2 = [h for _, h in logged(log2)]
    assert len(encoded2) == len(set(encoded2)) == s2.encoded  # nothing twice within the run
    assert not set(encoded2) & in_cache  # nothing that came back in run 1 is encoded again
    assert set(encoded2) | in_cache == {hashlib.sha1(t.encode()).hexdigest() for t in texts_total}
    assert s2.cached == len(in_cache) and s2.encoded + s2.cached == s2.blocks
    assert_same_index(tmp_path / "ref", tmp_path / "ray")


@needs_ray
def test_killed_worker_is_restarted_and_the_run_completes(ray_cluster, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "run.log"
    killed: list[int] = []
    kill_a_worker = worker_killer(log, killed)
    cs = CodeSearch(repo, index_dir=tmp_path / "ray", encoder=LoggingEncoder(log, delay=0.05),
                    ray=RayConfig(workers=2, batch_size=8, max_restarts=2))
    cs.encoder.encode = _with_progress(cs.encoder.encode, kill_a_worker)
    s = cs.index()
    assert killed and s.encoded == s.blocks > 200
    CodeSearch(repo, index_dir=tmp_path / "ref", encoder=HashingEncoder()).index()
    assert_same_index(tmp_path / "ref", tmp_path / "ray")


def worker_killer(log: Path, killed: list[int]):
    """A driver-side progress hook: when the first batch is back, SIGKILL one worker that has logged work."""
    def hook(_n: int) -> None:
        pids = sorted({p for p, _ in logged(log)})
        if not killed and pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
    return hook


def _with_progress(encode, hook):
    """Wrap encode so the driver-side progress callback also calls `hook` (used to kill a worker)."""
    def wrapped(texts, *, progress=None):
        def both(n: int) -> None:
            hook(n)
            if progress:
                progress(n)
        return encode(texts, progress=both)
    return wrapped


def test_ray_option_values():
    assert RayConfig.from_option(None) is None and RayConfig.from_option(False) is None
    assert RayConfig.from_option(True).address is None and RayConfig.from_option("").address is None
    assert RayConfig.from_option("10.0.0.1:6379").address == "10.0.0.1:6379"


def test_ray_missing_is_one_clear_line(monkeypatch, tmp_path):
    import longapps.distributed.ray_encode as re_mod

    monkeypatch.setattr(re_mod, "ray_available", lambda: False)
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "cache"))
    cs = CodeSearch(DEMO, index_dir=tmp_path / "idx", encoder=HashingEncoder(), ray=True)
    with pytest.raises(LongappsError, match=r"pip install 'longapps\[ray\]'"):
        cs.index()


def test_cli_ray_option_rejects_a_swallowed_path():
    from click.testing import CliRunner

    from longapps.cli import main

    res = CliRunner().invoke(main, ["search-code", "--ray", str(DEMO), "query"])
    assert res.exit_code == 2 and "is not a Ray address" in res.output


@needs_ray
@pytest.mark.parametrize("resources, cfg, want", [
    ({"CPU": 32.0, "GPU": 4.0}, RayConfig(), {"workers": 4, "fits": 4, "num_gpus": 1.0}),
    ({"CPU": 16.0}, RayConfig(), {"workers": 16, "fits": 16, "num_gpus": 0.0}),
    ({"CPU": 16.0}, RayConfig(cpus_per_worker=4), {"workers": 4, "fits": 4, "num_gpus": 0.0}),
    ({"CPU": 8.0, "GPU": 1.0}, RayConfig(workers=3), {"workers": 3, "fits": 1, "num_gpus": 1.0}),
])
def test_actor_plan_uses_gpus_when_the_cluster_has_them(monkeypatch, resources, cfg, want):
    import ray

    from longapps.distributed.ray_encode import RayEncodeBackend

    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    plan = RayEncodeBackend(lambda: None, cfg).plan()
    assert {k: plan[k] for k in want} == want


def test_unreachable_cluster_is_one_line_at_once():
    """ray.init retries a dead address for minutes; longapps checks the port first."""
    from longapps.distributed.ray_encode import _check_reachable

    t = time.perf_counter()
    with pytest.raises(LongappsError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    with pytest.raises(LongappsError, match="cannot reach"):
        _check_reachable("ray://127.0.0.1:1")
    assert time.perf_counter() - t < 10
    _check_reachable("local")  # nothing to check


@needs_ray
def test_cli_joins_a_running_cluster_through_ray_address(ray_cluster, tmp_path):
    """A second process (the real CLI) joins the cluster this module started, found through $RAY_ADDRESS."""
    import subprocess

    address = ray_cluster.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_ADDRESS": address, "LONGAPPS_CACHE": str(tmp_path / "cache")}
    cli = Path(sys.executable).with_name("longapps")
    res = subprocess.run([str(cli), "search-code", str(DEMO), "parse a duration string like 1h30m", "-k", "1",
                          "--json", "--index-dir", str(tmp_path / "idx"), "--ray"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.splitlines()[0])["name"] == "parse_duration"
    assert "33 encoded, 0 from cache" in res.stderr


TOPICS = {"cats": "Cats sleep most of the day. A cat purrs when it is content and hunts mice at night.",
          "ships": "Ships cross the ocean with cargo. The harbour pilot guides each ship past the rocks.",
          "bread": "Bread needs flour, water, salt and yeast. The dough rises before it is baked."}


def _topic_corpus(tmp_path, per_topic: int):
    """A folder of small documents, ``per_topic`` per topic of TOPICS."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for topic, text in TOPICS.items():
        for i in range(per_topic):
            (corpus / f"{topic}{i}.txt").write_text(f"{text} Note {i}: {text.split('.')[i % 2]}.")
    return corpus


@needs_ray
def test_match_corpus_through_ray_same_index(ray_cluster, tmp_path, monkeypatch):
    """`Matcher(ray=...)` (what `match --corpus --ray` uses): same encoded blocks, same related documents."""
    from longapps.pipelines.doc_match import Matcher

    corpus = _topic_corpus(tmp_path, per_topic=3)
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "c_local"))
    local = Matcher(encoder=HashingEncoder(dim=64))
    s1 = local.index(corpus, index_dir=tmp_path / "local")
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "c_ray"))
    dist = Matcher(encoder=HashingEncoder(dim=64), ray=RayConfig(workers=2, batch_size=4))
    s2 = dist.index(corpus, index_dir=tmp_path / "ray")
    assert s1.encoded == s2.encoded == s2.blocks > 0 and s2.cached == 0
    want = [(h.path, round(h.score, 5)) for h in local.related(corpus / "cats0.txt", k=4)]
    assert [(h.path, round(h.score, 5)) for h in dist.related(corpus / "cats0.txt", k=4)] == want


@needs_ray
def test_video_index_through_ray_same_memory(ray_cluster, tmp_path, monkeypatch):
    """`VideoIndexer(ray=...)` (what `video-index --ray` uses): clip texts encoded on Ray, same vectors."""
    from longapps.adapters.video.synth import Part, write_video
    from longapps.pipelines.video_qa import VideoIndexer, VideoQAConfig

    video = tmp_path / "talk.mp4"
    write_video(video, [Part(seconds=30)], audio=False)
    (tmp_path / "talk.srt").write_text("1\n00:00:02,000 --> 00:00:05,000\nThe lighthouse keeper counted ships.\n\n"
                                       "2\n00:00:21,000 --> 00:00:25,000\nBread needs flour and yeast.\n")
    cfg = VideoQAConfig(describers=("subtitles",), clip_seconds=10)
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "c_local"))
    a = VideoIndexer(cfg, encoder=HashingEncoder()).index(video)
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "c_ray"))
    b = VideoIndexer(cfg, encoder=HashingEncoder(), ray=RayConfig(workers=1, batch_size=2)).index(video)
    assert not b.cached and [c.text() for c in b.memory.clips] == [c.text() for c in a.memory.clips]
    np.testing.assert_allclose(b.memory.vectors, a.memory.vectors, atol=1e-6)
    assert np.abs(b.memory.vectors).sum() > 0


@needs_ray
def test_retrieve_through_ray_same_index(ray_cluster, tmp_path, monkeypatch):
    """`Retriever(ray=...)` (what `retrieve --ray` uses): the chunks encoded on Ray, same hits as in-process."""
    from longapps.pipelines.retriever import Retriever

    corpus = _topic_corpus(tmp_path, per_topic=2)
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "c_local"))
    local = Retriever(corpus, encoder=HashingEncoder(dim=64), hybrid=True, index_dir=tmp_path / "local")
    s1 = local.index()
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "c_ray"))
    dist = Retriever(corpus, encoder=HashingEncoder(dim=64), hybrid=True, index_dir=tmp_path / "ray",
                     ray=RayConfig(workers=1, batch_size=4))
    s2 = dist.index()
    assert s1.encoded == s2.encoded > 0 and s2.cached == 0
    query = next(iter(TOPICS.values())).split(".")[0]
    want = [(h.id, round(h.score, 5)) for h in local.search(query, k=4)]
    assert [(h.id, round(h.score, 5)) for h in dist.search(query, k=4)] == want


def test_match_and_video_index_take_ray():
    from click.testing import CliRunner

    from longapps.cli import main

    for cmd in ("match", "video-index", "retrieve"):
        assert "--ray [ADDRESS]" in CliRunner().invoke(main, [cmd, "--help"]).output
    res = CliRunner().invoke(main, ["match", "a.txt", "b.txt", "--ray"])
    assert res.exit_code == 2 and "use it with --corpus" in res.output
