"""SMITH document matching: blocking, masking, losses, the document encoder, save/load, the corpus index,
pairs files and the CLI (tiny configs; the CLI tests use the packaged MiniLM on tiny documents)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import HashingEncoder
from longapps.adapters.chunk import approx_tokens, sentence_blocks
from longapps.adapters.documents import load_pairs, read_document
from longapps.models.smith import (DocumentEncoder, SmithConfig, choose_masked, contrastive_loss, load_doc_encoder,
                                   masked_block_loss, pad_blocks, read_config, save_smith, siamese_loss)
from longapps.pipelines.doc_match import Matcher, MatchConfig
from longapps.resources import LongappsError, ModelNotFoundError

TOPICS = {
    "cats": "The cat sleeps on the warm mat. A kitten chases the mouse. Cats purr when they are happy. "
            "The cat drinks milk from a bowl. Kittens play with yarn all day.",
    "ships": "The ship sails across the ocean. Sailors raise the anchor at dawn. The harbour is full of boats. "
             "A storm rocks the ship at sea. The captain steers toward the port.",
    "bread": "Knead the dough for ten minutes. The bread rises in a warm oven. Flour, water and yeast make dough. "
             "Bake the loaf until the crust is brown. Fresh bread smells of yeast.",
}


def tiny_cfg(**kw) -> SmithConfig:
    base = dict(dim=16, out_dim=16, heads=2, ffn=32, layers=2, max_positions=64, dense_blocks=8, window=2,
                dropout=0.0)
    base.update(kw)
    return SmithConfig(**base)


# -- blocking ---------------------------------------------------------------------------------------

def test_sentence_blocks_pack_whole_sentences_within_budget():
    text = " ".join(f"Sentence number {i} has a few words in it." for i in range(40))
    blocks, dropped = sentence_blocks(text, block_tokens=24, max_blocks=100)
    assert not dropped and len(blocks) > 5
    assert all(n <= 24 for n in approx_tokens([b.text for b in blocks]))
    assert all(b.text.startswith("Sentence") and b.text.endswith(".") for b in blocks)  # whole sentences
    assert " ".join(b.text for b in blocks) == text
    assert [b.meta["index"] for b in blocks] == list(range(len(blocks)))


def test_sentence_blocks_split_long_sentences_and_drop_beyond_max():
    run_on = " ".join(["word"] * 300) + "."
    blocks, _ = sentence_blocks(run_on, block_tokens=32, max_blocks=100)
    assert len(blocks) >= 300 // 32 and all(n <= 32 for n in approx_tokens([b.text for b in blocks]))
    text = " ".join(f"Short sentence {i}." for i in range(500))
    blocks, dropped = sentence_blocks(text, block_tokens=8, max_blocks=10)
    assert dropped and len(blocks) == 10 and blocks[0].text.startswith("Short sentence 0")


def test_sentence_blocks_bounded_on_a_huge_input():
    huge = "A long document sentence goes on here. " * 2_500_000  # ~100 MB
    t = time.perf_counter()
    blocks, dropped = sentence_blocks(huge, block_tokens=32, max_blocks=64)
    assert dropped and len(blocks) == 64
    assert time.perf_counter() - t < 30  # looks at a bounded prefix only (generous: shared CI cores)


def test_read_document_rejects_binary_empty_missing(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "big.txt").write_text("x. " * 10_000)
    for name, msg in [("bin.txt", "binary"), ("empty.txt", "empty"), ("nope.txt", "not found")]:
        with pytest.raises(LongappsError, match=msg):
            read_document(tmp_path / name, 1000)
    text, note = read_document(tmp_path / "big.txt", 1000)
    assert len(text) == 1000 and note == "truncated"


# -- masking and losses -----------------------------------------------------------------------------

def test_choose_masked_picks_distinct_real_blocks():
    mask = torch.zeros(4, 6, dtype=torch.bool)
    for b, n in enumerate([6, 3, 2, 1]):
        mask[b, :n] = True
    rows, cols = choose_masked(mask, 2, generator=torch.Generator().manual_seed(0))
    per_doc = {b: cols[rows == b].tolist() for b in range(4)}
    assert len(per_doc[0]) == 2 and len(set(per_doc[0])) == 2
    assert len(per_doc[1]) == 2 and all(c < 3 for c in per_doc[1])
    assert len(per_doc[2]) == 1 and per_doc[3] == []  # one block always stays visible
    assert bool(mask[rows, cols].all())


def test_masked_block_loss_learns():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = DocumentEncoder(cfg)
    # documents whose blocks repeat a per-document theme: a masked block is predictable from its neighbours
    themes = torch.randn(16, cfg.dim)
    docs = [themes[i] + 0.3 * torch.randn(6, cfg.dim) for i in range(16)]
    vecs, mask = pad_blocks(docs, cfg.dim)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(80):
        rows, cols = choose_masked(mask, 2, generator=g)
        loss = masked_block_loss(model, vecs, mask, rows, cols)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


def test_siamese_and_contrastive_losses():
    model = DocumentEncoder(tiny_cfg())
    a = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    y = torch.tensor([1, 0, 1, 0, 1.0])
    z = 10.0 * (a * b).sum(-1) - 5.0
    manual = -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()
    assert torch.allclose(siamese_loss(model, a, b, y), manual, atol=1e-5)
    assert float(contrastive_loss(a, a)) < float(contrastive_loss(a, b))


# -- the document encoder ---------------------------------------------------------------------------

def test_untrained_document_encoder_is_mean_of_blocks_and_ignores_padding():
    cfg = tiny_cfg()
    model = DocumentEncoder(cfg).eval()
    docs = [torch.randn(5, 16), torch.randn(2, 16)]
    vecs, mask = pad_blocks(docs, 16)
    out = model(vecs, mask)
    for d, o in zip(docs, out):
        mean = torch.nn.functional.normalize(torch.nn.functional.normalize(d, dim=-1).mean(0), dim=0)
        assert torch.allclose(o, mean, atol=1e-5)
    alone = model(*pad_blocks(docs[1:], 16))
    assert torch.allclose(alone[0], out[1], atol=1e-5)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_long_documents_run_windowed_attention():
    torch.manual_seed(0)
    cfg = tiny_cfg(dense_blocks=8, window=40)
    model = DocumentEncoder(cfg).eval()
    for p in model.parameters():  # leave the identity start: make attention matter
        torch.nn.init.normal_(p, std=0.2)
    from longapps.attention.patterns import Full, SlidingWindow

    assert isinstance(model.pattern(8), Full) and isinstance(model.pattern(9), SlidingWindow)
    vecs, mask = pad_blocks([torch.randn(30, 16), torch.randn(12, 16)], 16)
    windowed = model(vecs, mask)  # 30 blocks > dense_blocks: sliding window (40 covers the whole document)
    model.cfg.dense_blocks = 64
    full = model(vecs, mask)
    assert torch.allclose(windowed, full, atol=1e-4)
    model.cfg.dense_blocks, model.cfg.window = 8, 2
    assert not torch.allclose(model(vecs, mask), full, atol=1e-3)  # a narrow window changes the result


def test_save_load_roundtrip_and_corrupt_folders(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg(objective="pairs")
    model = DocumentEncoder(cfg).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    save_smith(tmp_path / "m", cfg, model)
    cfg2 = read_config(tmp_path / "m")
    assert cfg2 == cfg
    loaded = load_doc_encoder(tmp_path / "m", cfg2)
    vecs, mask = pad_blocks([torch.randn(4, 16)], 16)
    assert torch.allclose(loaded(vecs, mask), model(vecs, mask), atol=1e-6)

    with pytest.raises(ModelNotFoundError, match="not found"):
        read_config(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="smith.json"):
        read_config(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "smith.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="corrupt model folder"):
        read_config(bad)
    (tmp_path / "m" / "doc_encoder.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ModelNotFoundError, match="corrupt model folder") as err:
        load_doc_encoder(tmp_path / "m", cfg2)
    assert "\n" not in str(err.value)


# -- the pipeline (hashing encoder: real vectors, no model) ------------------------------------------

def make_corpus(folder: Path, per_topic: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for topic, text in TOPICS.items():
        for i in range(per_topic):
            sents = text.split(". ")
            (folder / f"{topic}{i}.txt").write_text(". ".join(sents[i:] + sents[:i]))
    return folder


def test_matcher_scores_related_documents_higher():
    m = Matcher(encoder=HashingEncoder(dim=64))
    s_rel = m.score(TOPICS["cats"], TOPICS["cats"].replace("mat", "rug"))
    s_unrel = m.score(TOPICS["cats"], TOPICS["ships"])
    assert s_rel > s_unrel
    with pytest.raises(LongappsError, match="empty"):
        m.score("   ", TOPICS["cats"])


def test_corpus_index_is_incremental_and_related_finds_topic(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    (corpus / "binary.txt").write_bytes(b"\x00\x00\x00")
    (corpus / "empty.md").write_text("")
    enc = HashingEncoder(dim=64)
    m = Matcher(encoder=enc)
    s = m.index(corpus, index_dir=tmp_path / "idx")
    assert s.docs == 9 and s.encoded + s.cached == s.blocks and s.encoded > 0 and s.rebuilt
    assert dict(s.skipped) == {"binary": 1, "empty": 1}
    hits = m.related(corpus / "cats0.txt", k=2)
    assert [h.path[:4] for h in hits] == ["cats", "cats"] and "cats0.txt" not in [h.path for h in hits]
    # second run: nothing re-blocked, nothing encoded, same snapshot
    n = len(enc.encoded)
    m2 = Matcher(encoder=enc)
    s2 = m2.index(corpus, index_dir=tmp_path / "idx")
    assert s2.parsed == 0 and not s2.rebuilt and len(enc.encoded) == n
    assert [h.path for h in m2.related(corpus / "cats0.txt", k=2)] == [h.path for h in hits]
    # one changed file: only it is re-blocked, only its new blocks are encoded
    (corpus / "ships1.txt").write_text(TOPICS["ships"] + " A lighthouse guides the ships home.")
    s3 = Matcher(encoder=enc).index(corpus, index_dir=tmp_path / "idx")
    assert s3.parsed == 1 and s3.rebuilt and 0 < s3.encoded < s.encoded
    # a text query from outside the corpus
    hits = m2.related(TOPICS["bread"] + " Rye bread is dense.", k=3)
    assert all(h.path.startswith("bread") for h in hits)


def test_pairs_file_errors_name_the_line(tmp_path):
    (tmp_path / "a.txt").write_text(TOPICS["cats"])
    (tmp_path / "b.txt").write_text(TOPICS["ships"])
    good = '{"a": "a.txt", "b": "b.txt", "label": 1}\n{"a_text": "inline doc.", "b": "b.txt", "label": "false"}\n'
    (tmp_path / "p.jsonl").write_text(good)
    pairs = load_pairs(tmp_path / "p.jsonl", need_labels=True)
    assert [p.label for p in pairs] == [1, 0] and pairs[1].a_name == "<inline>"
    cases = {
        '{"a": "a.txt", "b": "missing.txt", "label": 1}': "line 2: file not found: missing.txt",
        '{"a": "a.txt", "b": "b.txt", "label": "maybe"}': "line 2: label must be 0 or 1",
        '{"a": "a.txt", "b": "b.txt", "label": 3}': "line 2: label must be 0 or 1",
        '{"a": "a.txt"': "line 2: not valid JSON",
        '{"a": "a.txt", "b": "b.txt"}': "line 2: missing \"label\"",
    }
    for line, msg in cases.items():
        (tmp_path / "bad.jsonl").write_text('{"a": "a.txt", "b": "b.txt", "label": 0}\n' + line + "\n")
        with pytest.raises(LongappsError, match=msg.replace('"', '.')):
            load_pairs(tmp_path / "bad.jsonl", need_labels=True)


def test_training_blocks_then_pairs_with_the_shared_loop(tmp_path):
    from longapps.pipelines.match_train import MatchTrainConfig, SmithTrainer, auc

    corpus = make_corpus(tmp_path / "c", per_topic=4)
    texts = [p.read_text() for p in sorted(corpus.glob("*.txt"))]
    cfg = MatchTrainConfig(layers=1, epochs=2, batch_size=4, dev_fraction=0.25, block_tokens=8, seed=0)
    m = Matcher(MatchConfig(block_tokens=8), encoder=HashingEncoder(dim=32))
    trainer = SmithTrainer(cfg, matcher=m)
    res = trainer.train_blocks(trainer.block_data(texts), tmp_path / "ssl")
    assert res.steps > 0 and res.best_dev is not None and 0 <= res.best_dev <= 1
    saved = read_config(tmp_path / "ssl")
    assert saved.objective == "blocks" and saved.layers == 1 and saved.block_tokens == 8
    assert json.loads((tmp_path / "ssl" / "training.json").read_text())["history"]

    from longapps.adapters.documents import DocPair

    names = sorted(corpus.glob("*.txt"))
    pairs = [DocPair(a.read_text(), b.read_text(), a.name, b.name, int(a.name[:4] == b.name[:4]), 0)
             for i, a in enumerate(names) for b in names[i + 1:]]
    m2 = Matcher(MatchConfig(model=str(tmp_path / "ssl")), encoder=HashingEncoder(dim=32))
    t2 = SmithTrainer(MatchTrainConfig(init=str(tmp_path / "ssl"), epochs=3, batch_size=8, seed=0, lr=1e-3), m2)
    res2 = t2.train_pairs(pairs, tmp_path / "ft")
    losses = [h["loss"] for h in res2.history if "loss" in h]
    assert res2.best_dev is not None and losses[-1] < losses[0]
    # the starting model is evaluated too (epoch 0): training keeps it unless an epoch beats it on dev
    assert res2.history[0]["epoch"] == 0 and res2.best_dev >= res2.history[0]["dev AUC"]
    m3 = Matcher.load(tmp_path / "ft", encoder=HashingEncoder(dim=32))
    embs = m3.embed_texts([p.a for p in pairs] + [p.b for p in pairs])
    scores = [float(embs[i].vector @ embs[i + len(pairs)].vector) for i in range(len(pairs))]
    assert auc(scores, [p.label for p in pairs]) > 0.9
    assert m3.smith.objective == "pairs" and m3.probability(0.9) is not None
    assert m3.score(TOPICS["cats"], TOPICS["cats"]) > m3.score(TOPICS["cats"], TOPICS["bread"])


# -- CLI (packaged MiniLM, tiny documents) ------------------------------------------------------------

def run(args: list[str]):
    from longapps.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.slow
def test_cli_match_modes(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_topic=2)
    r = run(["match", str(corpus / "cats0.txt"), str(corpus / "cats1.txt"), "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output.strip().splitlines()[-1])
    assert row["score"] > 0.5 and row["blocks"][0] >= 1
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps({"a": "corpus/cats0.txt", "b": "corpus/cats1.txt", "label": 1}) + "\n"
        + json.dumps({"a": "corpus/cats0.txt", "b_text": TOPICS["ships"]}) + "\n")
    r = run(["match", "--pairs", str(tmp_path / "pairs.jsonl"), "--json"])
    rows = [json.loads(x) for x in r.output.strip().splitlines()]
    assert r.exit_code == 0 and len(rows) == 2 and rows[0]["score"] > rows[1]["score"] and rows[0]["label"] == 1
    args = ["match", "--corpus", str(corpus), "--doc", str(corpus / "ships0.txt"), "-k", "2", "--json",
            "--index-dir", str(tmp_path / "idx")]
    r = run(args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["doc"].endswith("ships0.txt") and out["hits"][0]["path"] == "ships1.txt"
    assert "indexed 6 documents" in r.output
    r = run(args)  # second run: nothing indexed again
    assert r.exit_code == 0 and "indexed" not in r.output
    r = run(["match", "--corpus", str(corpus), "--all", "-k", "1", "--json", "--index-dir", str(tmp_path / "idx")])
    assert len([x for x in r.output.splitlines() if x.startswith("{")]) == 6


@pytest.mark.slow
def test_cli_bad_input_one_line(tmp_path):
    (tmp_path / "a.txt").write_text(TOPICS["cats"])
    (tmp_path / "bin.txt").write_bytes(b"\x00\xff" * 100)
    (tmp_path / "p.jsonl").write_text('{"a": "a.txt", "b": "gone.txt", "label": 1}\n')
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "smith.json").write_text('{"format": "longapps-smith", "dim": 384, "heads": 6}')
    for args, msg in [
        (["match", str(tmp_path / "a.txt"), str(tmp_path / "bin.txt")], "binary file"),
        (["match", "--pairs", str(tmp_path / "p.jsonl")], "p.jsonl line 1: file not found: gone.txt"),
        (["match", "--model", str(tmp_path / "model"), str(tmp_path / "a.txt"), str(tmp_path / "a.txt")],
         "corrupt model folder"),
        (["match", str(tmp_path / "a.txt")], "exactly two documents"),
        (["match-train", "--out", str(tmp_path / "o"), "--pairs", str(tmp_path / "p.jsonl")], "file not found"),
    ]:
        r = CliRunner().invoke(__import__("longapps.cli", fromlist=["main"]).main, args)
        assert r.exit_code == 2, (args, r.output)
        errors = [x for x in r.output.splitlines() if x.startswith("error:")]
        assert len(errors) == 1 and msg in errors[0], r.output


@pytest.mark.slow
def test_cli_match_train_then_match(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", per_topic=3)
    r = run(["match-train", "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--epochs", "1",
             "--layers", "1", "--batch-size", "4", "--block-tokens", "16", "--dev-fraction", "0.25", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["objective"] == "blocks" and res["steps"] >= 1
    r = run(["match", "--model", str(tmp_path / "m"), str(corpus / "cats0.txt"), str(corpus / "cats1.txt")])
    assert r.exit_code == 0 and -1 <= float(r.output.strip().splitlines()[-1]) <= 1


@pytest.mark.slow
def test_train_block_encoder_end_to_end_and_reload(tmp_path):
    """--train-block-encoder: the block encoder gets gradients, is saved in the model folder and gets its
    own embedding-cache key."""
    from longapps.models.smith import BLOCK_DIR
    from longapps.pipelines.match_train import MatchTrainConfig, SmithTrainer

    texts = [TOPICS[t] for t in TOPICS] * 2
    cfg = MatchTrainConfig(layers=1, epochs=1, batch_size=3, dev_fraction=0.34, block_tokens=16,
                           train_block_encoder=True, lr=1e-3)
    trainer = SmithTrainer(cfg)
    data = trainer.block_data(texts)
    assert isinstance(data[0][0], str)  # block texts: the block encoder runs inside every step
    vecs, mask = trainer._vectors(data[:2])
    vecs.sum().backward()
    grads = [p.grad is not None for p in trainer.block_module.parameters()]
    assert sum(grads) > len(grads) // 2  # (the unused BERT pooler gets none)
    trainer.block_module.zero_grad(set_to_none=True)
    res = trainer.train_blocks(data, tmp_path / "m")
    assert res.steps >= 1
    cfg_saved = read_config(tmp_path / "m")
    assert cfg_saved.block_encoder == BLOCK_DIR and len(cfg_saved.block_key) == 16
    m = Matcher.load(tmp_path / "m")
    assert m.block_encoder_name.startswith("smith-blocks-") and m.encoder.name == m.block_encoder_name
    assert -1 <= m.score(TOPICS["cats"], TOPICS["ships"]) <= 1
