"""NER end to end on a tiny random encoder: train -> save -> load -> predict (windows shorter than the
documents), strict metrics, the CLI (train / predict / eval, output formats) and bad inputs."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from ner_tiny import tiny_base

from longapps.adapters.ner_formats import Document, Span, read_brat, read_jsonl, write_brat, write_jsonl
from longapps.cli import main
from longapps.pipelines.ner import NER, span_metrics
from longapps.training import TrainConfig

DISEASES = ["fever", "asthma", "renal failure", "colon cancer", "anemia"]
FILLER = ["the", "patient", "was", "seen", "today", "and", "reports", "no", "history", "of", "a", "mild"]


def make_docs(n: int, seed: int, words: int = 60) -> list[Document]:
    rng = random.Random(seed)
    docs = []
    for k in range(n):
        text, spans = "", []
        while len(text.split()) < words:
            if rng.random() < 0.15:
                d = rng.choice(DISEASES)
                start = len(text)
                text += d
                spans.append(Span(start, start + len(d), "Disease", d))
            else:
                text += rng.choice(FILLER)
            text += rng.choice([" ", " ", ", ", "\r\n", "\t"])
        docs.append(Document(f"doc{seed}-{k}", text + "é.", spans))
    return docs


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ner")
    base = tiny_base(root / "base", "bert", max_positions=64)
    out = root / "model"
    cfg = TrainConfig(epochs=12, lr=5e-3, batch_size=8, seed=0, patience=3, device="cpu")
    ner, rep = NER.train(make_docs(24, 0), out=out, dev_docs=make_docs(6, 1), model=base, max_length=32,
                         attention_window=16, config=cfg)
    assert rep.result.best_metric is not None and rep.result.best_metric > 0.9
    assert rep.windows > 24  # documents longer than the 32-token windows were split
    return base, out


def test_train_save_load_predict(trained) -> None:
    _, out = trained
    ner = NER.load(out)
    assert ner.labels == ["O", "B-Disease", "I-Disease"] and ner.max_length == 32
    test = make_docs(5, 7, words=150)  # ~170 tokens: six windows per document
    res = ner.evaluate(test)
    assert res["micro"]["f1"] > 0.9 and res["unseen_labels"] == []
    spans = ner.predict(test[0].text)
    assert spans and all(s.text == test[0].text[s.start:s.end] for s in spans)
    assert all(0.0 <= s.score <= 1.0 for s in spans)
    # the model reads windows longer than its trained length too
    whole = NER.load(out, max_length=512)  # positions copied out further on load
    assert whole.max_length == 512 and whole.predict(test[0].text)


def test_span_metrics_strict() -> None:
    g = [Document("a", "x" * 30, [Span(0, 5, "D"), Span(10, 15, "D"), Span(20, 25, "G")])]
    p = [Document("a", "x" * 30, [Span(0, 5, "D"), Span(10, 14, "D"), Span(20, 25, "D")])]
    r = span_metrics(g, p)
    assert r["micro"]["correct"] == 1 and r["micro"]["gold"] == 3 and r["micro"]["predicted"] == 3
    assert r["micro"]["f1"] == pytest.approx(1 / 3)
    assert r["per_type"]["G"]["recall"] == 0.0
    assert r["per_type"]["D"]["precision"] == pytest.approx(1 / 3) and r["per_type"]["D"]["recall"] == 0.5
    assert r["macro"]["f1"] == pytest.approx((0.4 + 0.0) / 2)  # D: F1 = 2 * (1/3) * (1/2) / (5/6)


def test_cli_train_predict_eval(trained, tmp_path: Path) -> None:
    base, model = trained
    runner = CliRunner()
    train, gold = tmp_path / "train.jsonl", tmp_path / "gold"
    write_jsonl(make_docs(8, 3), train)
    write_brat(make_docs(3, 4), gold)
    r = runner.invoke(main, ["ner", "train", str(train), "--out", str(tmp_path / "m"), "--model", base,
                             "--max-length", "32", "--epochs", "1", "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output.strip().splitlines()[-1])
    assert rep["epochs"] == 1 and rep["steps"] == -(-rep["windows"] // 4)  # batch 4 (default)
    assert (tmp_path / "m" / "model.safetensors").exists()
    r = runner.invoke(main, ["ner", "predict", str(gold), "--model", str(model), "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.strip().splitlines()]
    texts = {d.id: d.text for d in read_brat(gold)}
    assert len(lines) == 3 and lines[0]["spans"]
    for obj in lines:
        for s in obj["spans"]:
            assert texts[obj["id"]][s["start"]:s["end"]] == s["text"] and set(s) >= {"label", "score"}
    r = runner.invoke(main, ["ner", "predict", str(gold), "--model", str(model), "--format", "brat",
                             "--out", str(tmp_path / "pred")])
    assert r.exit_code == 0, r.output
    assert len(read_brat(tmp_path / "pred")) == 3
    r = runner.invoke(main, ["ner", "predict", str(gold), "--model", str(model), "--format", "conll"])
    assert r.exit_code == 0 and "B-Disease" in r.output
    r = runner.invoke(main, ["ner", "eval", str(gold), "--model", str(model), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["micro"]["f1"] > 0.9 and "Disease" in res["per_type"]
    r = runner.invoke(main, ["ner", "eval", str(gold), "--model", str(model)])
    assert r.exit_code == 0 and "micro" in r.output and "macro" in r.output


def test_cli_bad_inputs(trained, tmp_path: Path) -> None:
    _, model = trained
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(main, list(args))
        return r.exit_code, r.output

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, out = run("ner", "predict", str(empty), "--model", str(model))
    assert code == 2 and out.strip().splitlines() == [f"error: {empty}: empty file"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Fi\u00e8vre".encode("latin-1"))
    code, out = run("ner", "predict", str(latin), "--model", str(model))
    assert code == 2 and "not UTF-8" in out and len(out.strip().splitlines()) == 1
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(50 * 2**20)
    code, out = run("ner", "predict", str(big), "--model", str(model))
    assert code == 2 and "50 MB is over the 16 MB limit" in out
    note = tmp_path / "note.txt"
    note.write_text("the patient has fever", encoding="utf-8")
    code, out = run("ner", "predict", str(note), "--model", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in out
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    code, out = run("ner", "predict", str(note), "--model", str(corrupt))
    assert code == 2 and out.startswith("error: cannot load a model from") and len(out.strip().splitlines()) == 1
    brat = tmp_path / "brat"
    brat.mkdir()
    (brat / "a.txt").write_text("fever here", encoding="utf-8")
    (brat / "a.ann").write_text("T1\tDisease 0 5\tfever\nT2\tDisease 6 99\there\n", encoding="utf-8")
    code, out = run("ner", "eval", str(brat), "--model", str(model))
    assert code == 2 and "a.ann:2" in out and "out of range" in out
    # a label the model never saw: a warning line, its spans count as missed, exit 0
    unseen = tmp_path / "unseen.jsonl"
    write_jsonl([Document("u", "the patient has fever and gout", [Span(16, 21, "Disease"), Span(26, 30, "Gout")])],
                unseen)
    r = runner.invoke(main, ["ner", "eval", str(unseen), "--model", str(model), "--json"])
    assert r.exit_code == 0
    assert "gold labels the model never saw in training" in r.stderr and "Gout" in r.stderr
    assert json.loads(r.stdout)["per_type"]["Gout"]["recall"] == 0.0
    # train into an existing folder that fails: the old model is untouched, no temp folder left
    code, out = run("ner", "train", str(empty), "--out", str(model))
    assert code == 2 and "empty" in out
    assert NER.load(model).labels == ["O", "B-Disease", "I-Disease"]
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".model")]


def test_load_precision_on_cpu(trained) -> None:
    """CPU load of a made-long BERT: the transformers-free model; ``precision`` sets its linear layers' dtype
    (fp32 / bf16; auto follows the CPU's native bf16); bf16 predicts the same spans here; bad values refused."""
    from longapps.models.fast_bert import FastBertTagger, cpu_has_bf16
    from longapps.resources import LongappsError

    _, out = trained
    docs = make_docs(4, 5, words=120)
    got = {}
    for prec in ("fp32", "bf16", "auto"):
        ner = NER.load(out, device="cpu", precision=prec)
        assert isinstance(ner.clf.model, FastBertTagger)
        low = [layer.low is not None for layer in ner.clf.model.bert.encoder.layer]
        assert low == [prec == "bf16" or (prec == "auto" and cpu_has_bf16())] * len(low)
        got[prec] = [[(s.start, s.end, s.label) for s in d.spans] for d in ner.predict_documents(docs)]
    assert got["fp32"] and got["bf16"] == got["fp32"]
    with pytest.raises(LongappsError, match="precision"):
        NER.load(out, device="cpu", precision="fp16")
