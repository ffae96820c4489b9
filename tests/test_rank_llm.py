"""LLM reranking and rank-train on a tiny random Llama (char tokenizer) on CPU: grammar-constrained decoding,
full-list vs sliding window costs, context overflow, importance-aware loss, checkpoint reload, CLI."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from longapps.cli import main
from longapps.models.causal_lm import CausalLM, load_causal_lm
from longapps.pipelines.rank_prompt import PermutationGrammar
from longapps.pipelines.rank_train import (TrainConfig, TrainExample, build_sample, load_examples, position_weights,
                                           target_order, target_text, token_weights, train, weighted_loss)
from longapps.pipelines.ranking import Passage, Ranker, RankerConfig
from longapps.resources import LongappsError


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<pad>": 1, "<eos>": 2}
    for c in [chr(i) for i in range(32, 127)] + ["\n"]:
        vocab[c] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def tiny_lm(seed: int = 0) -> CausalLM:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = char_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=None, eos_token_id=2, pad_token_id=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    return CausalLM(model, tok, "tiny", 4096)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm()


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-llm")
    m = tiny_lm()
    m.model.save_pretrained(d, safe_serialization=True)
    m.tokenizer.save_pretrained(d)
    return d


def passages(n: int) -> list[Passage]:
    topics = ["sorting lists", "parsing dates", "reading csv files", "http requests", "regular expressions"]
    return [Passage(f"p{i}", f"Passage {i} explains {topics[i % 5]} with examples and caveats. " * 3)
            for i in range(n)]


# -- grammar ---------------------------------------------------------------------------------------

def test_grammar_allows_only_valid_continuations(lm):
    tok = lm.tokenizer
    g = PermutationGrammar(tok, 0, 12)

    def allowed(text):
        return {tok.decode([i]) if i != tok.eos_token_id else "EOS" for i in g.allowed(text)}

    assert allowed("[") == set("123456789")
    assert allowed("[1") == {"0", "1", "2", "]"}
    assert allowed("[1]") == {" ", "EOS"}
    assert allowed("[1] >") == {" "}
    assert allowed("[1] > [") == set("123456789")
    assert allowed("[1] > [1") == {"0", "1", "2"}            # [1] is used: only 10, 11, 12
    done = "[" + "] > [".join(str(i) for i in range(1, 13)) + "]"
    assert allowed(done) == {"EOS"}


def test_constrained_generation_is_a_valid_permutation(lm):
    r = Ranker(RankerConfig(method="llm-full", rerank_top=15, passage_tokens=20, max_passage_tokens=20),
               encoder=_Hash(), lm=lm)
    out = r.rank("parsing dates", passages(15))
    s = r.stats
    assert sorted(x.id for x in out) == sorted(p.id for p in passages(15))
    assert s.llm_calls == 1 and s.prompt_tokens > 15 * 20 and s.generated_tokens > 0
    # the grammar never lets a duplicate or out-of-range id through; ids not named are repaired, not lost
    assert s.parsed_ids + s.repaired_ids == 15


class _Hash:
    """Small stand-in encoder (the conftest one is function-scoped)."""

    def __init__(self):
        from conftest import HashingEncoder

        self._e = HashingEncoder()
        self.name, self.dim, self.max_tokens = self._e.name, self._e.dim, self._e.max_tokens

    def encode(self, texts, progress=None):
        return self._e.encode(texts, progress=progress)

    def count_tokens(self, texts):
        return self._e.count_tokens(texts)


def test_full_list_costs_less_than_window(lm):
    cfg = dict(rerank_top=30, passage_tokens=20, window=10, step=5, stall_tokens=8)
    full = Ranker(RankerConfig(method="llm-full", **cfg), encoder=_Hash(), lm=lm)
    win = Ranker(RankerConfig(method="llm-window", **cfg), encoder=_Hash(), lm=lm)
    full.rank("reading csv files", passages(30))
    win.rank("reading csv files", passages(30))
    assert full.stats.llm_calls == 1 and win.stats.llm_calls == 5      # windows end at 30, 25, 20, 15, 10
    assert full.stats.prompt_tokens <= 0.6 * win.stats.prompt_tokens
    assert full.stats.reranked == 30 and win.stats.reranked == 30


def test_more_passages_than_fit_in_context(lm):
    r = Ranker(RankerConfig(method="llm-full", rerank_top=80, context=1600, passage_tokens=None,
                            max_passage_tokens=40), encoder=_Hash(), lm=lm)
    out = r.rank("http requests", passages(80))
    assert len(out) == 80 and 0 < r.stats.reranked < 80
    assert any("fit in the LLM context" in n for n in r.stats.notes)
    assert r.stats.prompt_tokens <= 1600


def test_unconstrained_garbage_output_is_repaired(lm):
    r = Ranker(RankerConfig(method="llm-window", constrained=False, rerank_top=12, window=6, step=3,
                            passage_tokens=10, stall_tokens=6), encoder=_Hash(), lm=lm)
    out = r.rank("sorting lists", passages(12))
    assert sorted(x.id for x in out) == sorted(p.id for p in passages(12))


def test_llm_methods_with_one_passage(lm):
    out = Ranker(RankerConfig(method="llm-full"), encoder=_Hash(), lm=lm).rank("q", passages(1))
    assert [x.id for x in out] == ["p0"]


# -- rank-train ------------------------------------------------------------------------------------

def test_target_order_by_grade_then_teacher():
    ex = TrainExample("q", [Passage(x, x) for x in "abcdef"], qrels={"e": 1, "c": 2, "a": 1},
                      teacher=["f", "e", "d", "a"])
    # relevant by grade (c=2, then e and a in teacher order), then the teacher's rest, then input order
    assert target_order(ex) == [2, 4, 0, 5, 3, 1]
    assert target_text([2, 4, 0]) == "3] > [5] > [1]"


def test_position_weights_decrease():
    for schedule in ("inverse", "log"):
        w = position_weights(10, 1.0, schedule)
        assert all(a > b for a, b in zip(w, w[1:])) and w[-1] > 1.0
    assert position_weights(5, 0.0) == [1.0] * 5
    with pytest.raises(LongappsError):
        position_weights(3, 1.0, "nope")


def test_token_weights_follow_ids(lm):
    text = target_text([2, 0, 11])            # '3] > [1] > [12]'
    ids, w = token_weights(lm.tokenizer, text, [2, 0, 11], [3.0, 2.0, 1.5])
    chars = [lm.tokenizer.decode([i]) for i in ids]
    assert "".join(chars) == text
    by_char = list(zip(chars, w))
    assert by_char[0] == ("3", 3.0) and by_char[1] == ("]", 3.0) and by_char[2] == (" ", 1.0)
    assert ("1", 2.0) in by_char and by_char[-1] == ("]", 1.5) and by_char[-3] == ("1", 1.5)


def test_weighted_loss_equals_lm_loss_with_unit_weights():
    logits = torch.randn(1, 6, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6]])
    ones = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    ref = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    assert torch.allclose(weighted_loss(logits, labels, ones), ref, atol=1e-6)


def _examples(n=3):
    out = []
    for k in range(n):
        ps = passages(6)
        out.append(TrainExample(f"query {k} about {['csv', 'dates', 'http'][k % 3]}", ps,
                                qrels={f"p{(k + 2) % 6}": 2, f"p{(k + 4) % 6}": 1}))
    return out


def test_train_loss_goes_down_and_checkpoint_reloads(tmp_path):
    lm = tiny_lm(seed=1)
    sample = build_sample(lm, _examples(1)[0], TrainConfig(passage_tokens=12))
    assert len(sample.input_ids) == len(sample.labels) == len(sample.weights)
    assert sum(1 for x in sample.labels if x != -100) == sum(1 for w in sample.weights if w > 0)
    res = train(_examples(3), tmp_path / "ckpt", TrainConfig(epochs=8, lr=3e-3, passage_tokens=12, alpha=2.0), lm=lm)
    assert res.steps == 24 and len(res.losses) == 24
    first, last = sum(res.losses[:3]) / 3, sum(res.losses[-3:]) / 3
    assert last < 0.7 * first, res.losses
    saved = tmp_path / "ckpt"
    assert (saved / "model.safetensors").exists() and not list(saved.glob("*.bin"))
    again = load_causal_lm(saved)
    x = torch.tensor([sample.input_ids[:200]])
    with torch.no_grad():
        assert torch.allclose(lm.model(x).logits, again.model(x).logits, atol=1e-5)


def run(args):
    return CliRunner().invoke(main, args)


def test_cli_rank_with_llm_folder(lm_dir, tmp_path, monkeypatch):
    import longapps.pipelines.ranking as ranking

    monkeypatch.setattr("longapps.adapters.encode.load_encoder", lambda model=None, **kw: _Hash())
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"id": p.id, "text": p.text}) for p in passages(12)))
    for method in ("llm-full", "llm-window"):
        r = run(["rank", "-q", "parsing dates", str(f), "--method", method, "--llm", str(lm_dir), "--top-n", "12",
                 "--passage-tokens", "12", "--window", "6", "--step", "3", "--stats", "-k", "0"])
        assert r.exit_code == 0, r.output
        assert len(r.stdout.strip().splitlines()) == 12
        assert "LLM: " in r.stderr and "prompt tokens" in r.stderr


def test_cli_rank_train_end_to_end(lm_dir, tmp_path, monkeypatch):
    import longapps.pipelines.ranking as ranking

    monkeypatch.setattr("longapps.adapters.encode.load_encoder", lambda model=None, **kw: _Hash())
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"query": ex.query, "passages": [{"id": p.id, "text": p.text}
                                                                           for p in ex.passages],
                                          "qrels": ex.qrels, "teacher": ["p5", "p4"]}) for ex in _examples(2)))
    out = tmp_path / "trained"
    r = run(["rank-train", str(data), "-o", str(out), "--llm", str(lm_dir), "--epochs", "2", "--lr", "1e-3",
             "--passage-tokens", "10"])
    assert r.exit_code == 0, r.output
    assert "loss" in r.stdout and (out / "model.safetensors").exists() and (out / "rank_train.json").exists()
    q = tmp_path / "q.txt"
    q.write_text("parsing dates\n")
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"id": p.id, "text": p.text}) for p in passages(6)))
    r = run(["rank", str(q), str(f), "--method", "llm-full", "--llm", str(out), "--passage-tokens", "10"])
    assert r.exit_code == 0, r.output


def test_cli_rank_train_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "passages": [{"id": "a", "text": "x"}]}\n')
    for args, msg in ((["rank-train", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "o")], "not found"),
                      (["rank-train", str(bad), "-o", str(tmp_path / "o")], "at least 2 passages")):
        r = run(args)
        assert r.exit_code == 2 and msg in r.stderr, r.output
    with pytest.raises(LongappsError):
        load_examples(bad)


def test_missing_llm_is_one_line_error(tmp_path):
    with pytest.raises(LongappsError, match="GGUF file not found"):
        load_causal_lm(tmp_path / "nope.gguf")
    with pytest.raises(LongappsError):
        load_causal_lm("no-such-org/no-such-model-xyz")
    with pytest.raises(LongappsError, match="LLM folder not found"):   # a path, not a hub id: no download hint
        load_causal_lm(tmp_path / "missing" / "model")
