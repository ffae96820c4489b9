"""Retriever pipeline, Mamba document encoder, retrieve-train and the CLI (tiny random models, real assertions)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from longapps.resources import LongappsError

DOCS = {
    "logs.txt": "Log rotation\nThe daemon rotates log files every night. Old logs are compressed with gzip. " * 5,
    "net.txt": "Networking\nConfigure a static IP address and a default gateway for the interface. " * 5,
    "disk.txt": "Disks\nPartition the disk, create a filesystem and mount it at boot with fstab. " * 5,
    "mail.txt": "Mail\nThe mail server queues outgoing messages and retries delivery every hour. " * 5,
}


@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    for name, text in DOCS.items():
        (d / name).write_text(text)
    return d


@pytest.fixture(scope="module")
def tiny_retriever(tmp_path_factory):
    """A random tiny Mamba retriever folder with the packaged MiniLM tokenizer."""
    from transformers import AutoTokenizer

    from longapps.models.mamba import MambaEncoder, mamba_config
    from longapps.resources import resolve_model
    tok = AutoTokenizer.from_pretrained(resolve_model(None))
    folder = tmp_path_factory.mktemp("tiny") / "ret"
    model = MambaEncoder.from_config(mamba_config(hidden_size=32, num_hidden_layers=2, state_size=8,
                                                  vocab_size=len(tok)), seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(str(folder))
    (folder / "retriever.json").write_text(json.dumps({"pooling": "eos", "max_tokens": 256}))
    return folder


# -- pooling and the Mamba encoder -----------------------------------------------------------------------------

def test_pool_hidden_eos_and_mean():
    from longapps.adapters.mamba_encode import pool_hidden
    h = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 2])
    eos = pool_hidden(h, lengths, "eos")
    assert torch.allclose(eos[1], torch.nn.functional.normalize(h[1, 1], dim=0))
    mean = pool_hidden(h, lengths, "mean")
    assert torch.allclose(mean[1], torch.nn.functional.normalize(h[1, :2].mean(0), dim=0))
    with pytest.raises(LongappsError):
        pool_hidden(h, lengths, "max")


def test_mamba_embedder(tiny_retriever):
    from longapps.adapters.mamba_encode import MambaEmbedder
    enc = MambaEmbedder(tiny_retriever, device="cpu")
    texts = ["short text", "a much longer text " * 30, "short text"]
    v = enc.encode(texts)
    assert v.shape == (3, 32) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.allclose(v[0], v[2], atol=1e-6)  # batching/padding does not change a text's vector
    one = enc.encode(["a much longer text " * 30])
    assert np.allclose(one[0], v[1], atol=1e-5)
    mean = MambaEmbedder(tiny_retriever, device="cpu", pooling="mean").encode(texts)
    assert not np.allclose(mean, v)
    assert enc.name != MambaEmbedder(tiny_retriever, device="cpu", max_tokens=64).name


# -- the retriever ------------------------------------------------------------------------------------------

def test_hybrid_index_is_incremental(corpus, tmp_path, hashing_encoder):
    from longapps.pipelines.retriever import Retriever
    r = Retriever(corpus, encoder=hashing_encoder, hybrid=True, index_dir=tmp_path / "idx")
    s = r.index()
    assert s.documents == 4 and s.new == 4 and s.rebuilt and s.encoded > 0
    hits = r.search("compressed gzip logs", k=2)
    assert hits[0].id == "logs.txt" and len(hits) == 2
    assert "hybrid" in r.encoder_description
    n_before = len(hashing_encoder.encoded)
    r2 = Retriever(corpus, encoder=hashing_encoder, hybrid=True, index_dir=tmp_path / "idx")
    s2 = r2.index()
    assert not s2.rebuilt and len(hashing_encoder.encoded) == n_before  # nothing re-encoded
    (corpus / "net.txt").write_text("Networking\nRoutes and firewall rules for the gateway. " * 5)
    (corpus / "mail.txt").unlink()
    r3 = Retriever(corpus, encoder=hashing_encoder, hybrid=True, index_dir=tmp_path / "idx")
    s3 = r3.index()
    assert (s3.changed, s3.removed, s3.new) == (1, 1, 0) and s3.rebuilt
    assert all("Routes" in t for t in hashing_encoder.encoded[n_before:])  # only the changed document
    assert r3.search("firewall rules", k=1)[0].id == "net.txt"
    assert [h.id for h in r3.search("mail server", k=10)].count("mail.txt") == 0


def test_mamba_mode_search_and_queries(corpus, tmp_path, tiny_retriever):
    from longapps.pipelines.retriever import Retriever, read_queries
    r = Retriever(corpus, model=str(tiny_retriever), index_dir=tmp_path / "idx", config=None)
    r.config.device = "cpu"
    hits = r.search_many(["log rotation", "static ip"], k=3)
    assert [len(h) for h in hits] == [3, 3]
    assert r.encoder_description.startswith("mamba:")
    # the random model's own document vectors: each document is its own nearest neighbour
    vec = r._load()["vectors"]
    docs = r.documents()
    self_scores = vec.all_scores(r.encoder.encode([d.text for d in docs]))
    assert (self_scores.argmax(1) == np.arange(len(docs))).all()
    qf = tmp_path / "q.jsonl"
    qf.write_text('{"id": "a", "query": "disk"}\n\n{"id": "b", "text": "mail"}\n')
    assert read_queries(qf) == [("a", "disk"), ("b", "mail")]


def test_queries_file_errors(tmp_path):
    """A --queries file that is binary, missing or empty: one line each, nothing answered."""
    from longapps.pipelines.retriever import read_queries
    blob = tmp_path / "q.bin"
    blob.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(LongappsError, match="binary file, not text"):
        read_queries(blob)
    with pytest.raises(LongappsError, match="not found"):
        read_queries(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(LongappsError, match="no queries"):
        read_queries(tmp_path / "blank.txt")
    (tmp_path / "q.txt").write_text("rotate logs\n\nstatic ip\n")
    assert read_queries(tmp_path / "q.txt") == [("1", "rotate logs"), ("3", "static ip")]


def test_bad_inputs(tmp_path, hashing_encoder, tiny_retriever):
    from longapps.pipelines.retriever import Retriever
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LongappsError, match="no passage files"):
        Retriever(empty, encoder=hashing_encoder).index()
    (empty / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(LongappsError, match="no readable text"):
        Retriever(empty, encoder=hashing_encoder).index()
    with pytest.raises(LongappsError, match="not found"):
        Retriever(tmp_path / "nope")
    with pytest.raises(LongappsError, match="empty corpus"):
        Retriever(["", "  "])
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(LongappsError, match="not a Mamba checkpoint"):
        Retriever(["some text"], model=str(bert)).encoder
    r = Retriever(["alpha beta", "gamma delta"], encoder=hashing_encoder, index_dir=tmp_path / "idx")
    with pytest.raises(LongappsError, match="empty query"):
        r.search("  ")


def test_huge_document_is_read_bounded(tmp_path, hashing_encoder):
    from longapps.pipelines.retriever import Retriever, RetrieverConfig
    d = tmp_path / "c"
    d.mkdir()
    (d / "huge.txt").write_text("word " * 400_000)
    (d / "small.txt").write_text("tiny document about cats")
    r = Retriever(d, encoder=hashing_encoder, index_dir=tmp_path / "idx", config=RetrieverConfig(max_bytes=100_000))
    s = r.index()
    assert any("truncated" in w for w in s.warnings)
    assert r.search("cats", k=1)[0].id == "small.txt"


def test_corrupt_index_and_interrupted_indexing(corpus, tmp_path, hashing_encoder):
    from longapps.pipelines.retriever import Retriever

    class Dies:
        """Encodes one slice, then dies (as a process killed mid-indexing)."""
        name, dim, max_tokens = hashing_encoder.name, hashing_encoder.dim, hashing_encoder.max_tokens
        calls = 0

        def encode(self, texts, progress=None):
            Dies.calls += 1
            if Dies.calls > 1:
                raise KeyboardInterrupt
            return hashing_encoder.encode(texts)

        def count_tokens(self, texts):
            return hashing_encoder.count_tokens(texts)

    from longapps.adapters.encode import with_cache
    enc = with_cache(Dies())
    enc.chunk = 1  # commit every text separately, like a long run
    with pytest.raises(KeyboardInterrupt):
        Retriever(corpus, encoder=enc, index_dir=tmp_path / "idx").index()
    r = Retriever(corpus, encoder=hashing_encoder, index_dir=tmp_path / "idx")
    s = r.index()
    assert s.rebuilt and s.cached >= 1 and s.encoded == len(DOCS) - s.cached
    assert r.search("gzip compressed logs", k=1)[0].id == "logs.txt"
    cur = r.store.current()
    (cur / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(LongappsError, match="corrupt.*--reindex"):
        Retriever(corpus, encoder=hashing_encoder, index_dir=tmp_path / "idx").search("logs")
    r2 = Retriever(corpus, encoder=hashing_encoder, index_dir=tmp_path / "idx")
    r2.index(reindex=True)
    assert r2.search("gzip compressed logs", k=1)[0].id == "logs.txt"


def test_unreadable_state_and_embedding_cache_are_rebuilt(corpus, tmp_path, hashing_encoder, capsys):
    """The index's file-state database and the embedding cache only cache derived data: overwritten with garbage,
    the next run says so on stderr, rebuilds them and answers the same."""
    from longapps.adapters.encode import EmbeddingCache
    from longapps.pipelines.retriever import Retriever

    r = Retriever(corpus, encoder=hashing_encoder, index_dir=tmp_path / "idx")
    r.index()
    before = [h.id for h in r.search("gzip compressed logs", k=3)]
    r.store.db.close()
    (tmp_path / "idx" / "state.sqlite").write_bytes(b"\x07garbage" * 200)
    r2 = Retriever(corpus, encoder=hashing_encoder, index_dir=tmp_path / "idx")
    assert [h.id for h in r2.search("gzip compressed logs", k=3)] == before
    assert "state.sqlite is unreadable" in capsys.readouterr().err
    path = tmp_path / "emb.sqlite"
    cache = EmbeddingCache(path, 4)
    cache.put_many([(EmbeddingCache.key("a"), np.ones(4, np.float32))])
    cache.close()
    path.write_bytes(b"not a database" * 100)
    cache = EmbeddingCache(path, 4)
    assert len(cache) == 0 and "emb.sqlite is unreadable" in capsys.readouterr().err
    cache.put_many([(EmbeddingCache.key("a"), np.ones(4, np.float32))])
    assert len(cache.get_many([EmbeddingCache.key("a")])) == 1


# -- training ----------------------------------------------------------------------------------------------

def test_pseudo_queries():
    import random

    from longapps.pipelines.retriever_train import pseudo_queries
    text = ("Log rotation\nThe daemon rotates log files every night. Old logs are compressed with gzip today. "
            "Retention is configured in the main file here. A cron job triggers everything at midnight.")
    qs = pseudo_queries(text, random.Random(0), 3)
    assert qs[0] == "Log rotation" and qs[1].startswith("The daemon rotates") and len(qs) == 3
    assert all(q in " ".join(text.split()) for q in qs)


def _tiny_set(folder: Path, with_teacher: bool) -> Path:
    from transformers import AutoTokenizer

    from longapps.resources import resolve_model
    folder.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(resolve_model(None)).save_pretrained(str(folder / "tokenizer"))
    docs = list(DOCS.items())
    (folder / "docs.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in docs))
    ex = []
    for i, (_, t) in enumerate(docs):
        for q in (t.splitlines()[0], t.splitlines()[1][:40]):
            ex.append({"query": q, "pos": i, "neg": (i + 1) % len(docs), "split": "train"})
    ex.append({"query": "gzip", "pos": 0, "neg": 1, "split": "dev"})
    (folder / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ex))
    (folder / "set.json").write_text(json.dumps({"mode": "distill" if with_teacher else "pairs", "teacher": "t"}))
    if with_teacher:
        np.save(folder / "teacher.npy", np.random.RandomState(0).rand(len(ex), len(docs)).astype(np.float16))
    return folder


def test_loss_masks_duplicates_and_learns(tmp_path):
    from transformers import AutoTokenizer

    from longapps.pipelines.retriever_train import (Collate, RetrieverTrainConfig, TrainingSet, build_student,
                                                    retrieval_loss)
    folder = _tiny_set(tmp_path / "set", with_teacher=True)
    ts = TrainingSet.load(folder)
    tok = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    cfg = RetrieverTrainConfig(init="tiny", max_tokens=32, device="cpu")
    col = Collate(ts, tok, cfg)
    items = ts.split("train")[:4]  # two queries of doc 0, two of doc 1
    batch = col(items)
    assert batch["d_ids"].shape[0] == 8 and batch["teacher"].shape == (4, 8)
    assert batch["same"][0, 1] and batch["same"][1, 0] and not batch["same"][0, 0]  # same positive masked
    torch.manual_seed(0)
    model = build_student(cfg, tok, folder)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        loss = retrieval_loss(model, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_compact_training_set_files(tmp_path):
    """A device bundle's set: gzipped documents and the teacher's word embeddings only for the token ids that
    occur (int8 + per-row scale) load as the plain files do; the student starts from them (zeros elsewhere)."""
    import gzip

    from transformers import AutoTokenizer

    from longapps.pipelines.retriever_train import (RetrieverTrainConfig, TrainingSet, build_student,
                                                    teacher_word_embeddings)
    folder = _tiny_set(tmp_path / "set", with_teacher=True)
    plain = TrainingSet.load(folder).docs
    with gzip.open(folder / "docs.jsonl.gz", "wt") as f:
        f.write((folder / "docs.jsonl").read_text())
    (folder / "docs.jsonl").unlink()
    assert TrainingSet.load(folder).docs == plain
    tok = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    rng = np.random.RandomState(0)
    ids = np.array([0, 5, 101, 102, 2000], dtype=np.int32)
    rows = rng.randn(len(ids), 64).astype(np.float32)
    scale = np.abs(rows).max(1, keepdims=True) / 127.0
    np.savez(folder / "teacher_embeddings.npz", ids=ids, q=np.round(rows / scale).astype(np.int8), scale=scale,
             shape=np.array([len(tok), 64]))
    emb = teacher_word_embeddings(folder)
    assert emb.shape == (len(tok), 64) and np.abs(emb[ids] - rows).max() < 0.02 * np.abs(rows).max()
    assert not emb[np.setdiff1d(np.arange(len(tok)), ids)].any()
    model = build_student(RetrieverTrainConfig(init="tiny", device="cpu"), tok, folder)
    assert torch.allclose(model.embeddings.weight.detach(), torch.from_numpy(emb))


def test_train_from_set_saves_a_usable_retriever(tmp_path, corpus):
    from longapps.pipelines.retriever import Retriever
    from longapps.pipelines.retriever_train import RetrieverTrainConfig, train_from_set
    folder = _tiny_set(tmp_path / "set", with_teacher=False)
    cfg = RetrieverTrainConfig(init="tiny", max_tokens=32, epochs=1, batch_size=4, max_steps=2, device="cpu",
                               inference_max_tokens=64)
    report = train_from_set(folder, tmp_path / "out", cfg)
    assert report["steps"] == 2 and report["dev_examples"] == 1 and report["best_dev_ndcg10"] is not None
    meta = json.loads((tmp_path / "out" / "retriever.json").read_text())
    assert meta["pooling"] == "eos" and meta["max_tokens"] == 64
    r = Retriever(corpus, model=str(tmp_path / "out"), index_dir=tmp_path / "idx")
    r.config.device = "cpu"
    assert len(r.search("logs", k=2)) == 2


# -- CLI -----------------------------------------------------------------------------------------------------

def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "longapps.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_cli_retrieve_hybrid(corpus, tmp_path):
    p = _cli("retrieve", str(corpus), "compressed old logs", "-k", "2", "--json", "--index-dir", str(tmp_path / "i1"))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["hits"][0]["id"] == "logs.txt" and out["encoder"].startswith("hybrid first stage")


def test_cli_retrieve_train_then_retrieve(corpus, tmp_path):
    p = _cli("retrieve-train", "--corpus", str(corpus), "--out", str(tmp_path / "ret"), "--init", "tiny",
             "--max-tokens", "32", "--batch-size", "2", "--epochs", "1", "--max-steps", "1", "--device", "cpu",
             "--no-progress")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["mode"] == "distill" and report["steps"] == 1 and report["documents"] == 4
    qf = tmp_path / "q.txt"
    qf.write_text("log rotation\nstatic address\n")
    p = _cli("retrieve", str(corpus), "--queries", str(qf), "--model", str(tmp_path / "ret"), "--device", "cpu",
             "-k", "3", "--index-dir", str(tmp_path / "i2"))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert [r["query"] for r in rows] == ["log rotation", "static address"]
    assert all(len(r["hits"]) == 3 and r["encoder"].startswith("mamba:") for r in rows)


def test_cli_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = _cli("retrieve", str(empty), "anything")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "no passage files" in p.stderr
    (empty / "a.txt").write_text("hello world")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    p = _cli("retrieve", str(empty), "hello", "--model", str(bert))
    assert p.returncode == 2 and "not a Mamba checkpoint" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _cli("retrieve", str(empty))
    assert p.returncode == 2 and "empty query" in p.stderr
    p = _cli("retrieve-train", "--help")
    assert p.returncode == 0 and "pseudo-queries" in p.stdout


KILL_SCRIPT = r'''
import os, sys, time
sys.path.insert(0, sys.argv[3])
from conftest import HashingEncoder
os.environ["LONGAPPS_CACHE"] = sys.argv[4]  # the parent's cache (conftest set a per-process one)
from longapps.adapters.encode import with_cache
from longapps.pipelines.retriever import Retriever

class Slow(HashingEncoder):
    def encode(self, texts, progress=None):
        time.sleep(0.3)
        return super().encode(texts, progress=progress)

enc = with_cache(Slow())
enc.chunk = 1
Retriever(sys.argv[1], encoder=enc, index_dir=sys.argv[2]).index()
'''


def test_kill_9_during_indexing_recovers(tmp_path, hashing_encoder, monkeypatch):
    import os
    import signal
    import sqlite3
    import time

    from longapps.pipelines.retriever import Retriever
    d = tmp_path / "c"
    d.mkdir()
    for i in range(40):
        word = "".join(chr(ord("k") + int(c)) for c in f"{i:02d}")  # a distinct word per document
        (d / f"doc{i:02d}.txt").write_text(f"document about {word} " * 20)
    monkeypatch.setenv("LONGAPPS_CACHE", str(tmp_path / "cache"))  # an embedding cache of its own
    env = dict(os.environ)
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(d), str(tmp_path / "idx"), str(Path(__file__).parent),
                          env["LONGAPPS_CACHE"]],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache = Path(env["LONGAPPS_CACHE"]) / "embeddings" / f"{hashing_encoder.name}.sqlite"
    deadline = time.time() + 400  # the child imports torch & co. first: slow on a loaded machine
    rows = 0
    while time.time() < deadline and p.poll() is None:
        if cache.exists():
            try:
                rows = sqlite3.connect(str(cache)).execute("SELECT COUNT(*) FROM vec").fetchone()[0]
            except sqlite3.Error:
                rows = 0
            if rows >= 3:
                break
        time.sleep(0.1)
    assert p.poll() is None, p.stderr.read().decode()[-500:]
    assert rows >= 3, "the child did not start encoding in time"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    r = Retriever(d, encoder=hashing_encoder, index_dir=tmp_path / "idx")
    s = r.index()
    assert s.rebuilt and s.cached >= 3 and s.cached + s.encoded == 40  # the killed run's vectors were kept
    hits = r.search("document about lr", k=40)
    assert sorted(h.id for h in hits) == sorted(f"doc{i:02d}.txt" for i in range(40))


def test_pairs_and_bm25_negatives(tmp_path):
    import random

    from longapps.pipelines.retriever_train import _bm25_negatives, _read_pairs
    texts = [t for _, t in DOCS.items()]
    neg = _bm25_negatives(texts, ["gzip compressed logs", "zzz unknown"], [1, 0], random.Random(0))
    assert neg[0] == 0 and neg[1] != 0  # BM25's best non-positive; random when BM25 finds nothing
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"query": "rotate logs", "doc": "logs.txt"}\n\n')
    assert _read_pairs(f, {"logs.txt": 0}) == [("rotate logs", 0)]
    f.write_text('{"query": "rotate logs", "doc": "nope.txt"}\n')
    with pytest.raises(LongappsError, match="not in the corpus"):
        _read_pairs(f, {"logs.txt": 0})
    f.write_text("not json\n")
    with pytest.raises(LongappsError, match="not JSON"):
        _read_pairs(f, {"logs.txt": 0})


def test_cpu_training_budget_cuts_tokens_then_batch():
    """CPU retrieve-train fits the step into half the available memory: max_tokens halved first (down to 256),
    then the batch (down to 2), checkpointing on; a setting that fits is kept; nothing fits -> one clear error."""
    from longapps.pipelines.retriever_train import RetrieverTrainConfig, fit_cpu_budget
    from longapps.resources import LongappsError

    cfg = RetrieverTrainConfig(batch_size=16, max_tokens=2048)
    per_token = 768 * 16 * 32
    new, note = fit_cpu_budget(cfg, 768, 16, available=20 << 30)
    assert 2 * new.batch_size * new.max_tokens * per_token <= 10 << 30
    assert new.batch_size == 16 and new.max_tokens == 512 and new.grad_checkpointing is True
    assert "batch 16 x 512" in note
    small, note = fit_cpu_budget(cfg, 768, 16, available=2 << 30)
    assert small.max_tokens == 256 and small.batch_size == 4 and note
    same, note = fit_cpu_budget(RetrieverTrainConfig(batch_size=4, max_tokens=256), 64, 16, available=20 << 30)
    assert (same.batch_size, same.max_tokens, note) == (4, 256, None)
    with pytest.raises(LongappsError, match="not enough memory"):
        fit_cpu_budget(cfg, 768, 16, available=100 << 20)
