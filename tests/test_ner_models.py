"""Long-ification of short encoders (positions copied out, window + global attention on our backend) and the
token-classifier folders (save -> load gives the same outputs; Longformer checkpoints on FastLongformer)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ner_tiny import tiny_base

from longapps.models import long_encoder
from longapps.models.token_classifier import TokenClassifier
from longapps.resources import LongappsError, ModelNotFoundError

LABELS = ["O", "B-D", "I-D"]


def _inputs(n: int, b: int = 2, pad_from: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    ids = torch.randint(1000, 20000, (b, n), generator=g)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    if pad_from is not None:
        mask[-1, pad_from:] = 0
    return ids, mask


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_window_covering_the_input_gives_the_short_model(tmp_path: Path, kind: str) -> None:
    from transformers import AutoModelForTokenClassification

    base = tiny_base(tmp_path / kind, kind, max_positions=64)
    short = AutoModelForTokenClassification.from_pretrained(base, num_labels=3).eval()
    ids, mask = _inputs(60, pad_from=41)
    with torch.no_grad():
        ref = short(input_ids=ids, attention_mask=mask).logits
    long_encoder.make_long(short, 512, attention_window=128)  # |i-j| <= 64 covers all 60 tokens
    assert short.config._attn_implementation == long_encoder.ATTN_IMPL
    assert long_encoder.max_tokens(short.config) == 512
    with torch.no_grad():
        out = short(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(out[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)


def test_positions_are_copied_out_and_long_inputs_run(tmp_path: Path) -> None:
    from transformers import AutoModelForTokenClassification

    m = AutoModelForTokenClassification.from_pretrained(tiny_base(tmp_path / "b", "bert", 64), num_labels=3)
    old = m.bert.embeddings.position_embeddings.weight.detach().clone()
    long_encoder.make_long(m, 200, attention_window=16)
    new = m.bert.embeddings.position_embeddings.weight
    assert new.shape[0] == 200
    torch.testing.assert_close(new[:64], old)
    torch.testing.assert_close(new[64:128], old)
    torch.testing.assert_close(new[192:200], old[:8])
    ids, mask = _inputs(190, b=1)
    m.eval()
    with torch.no_grad():
        logits = m(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (1, 190, 3) and torch.isfinite(logits).all()
    # the window really restricts attention: a token far outside every window does not change position 100
    ids2 = ids.clone()
    ids2[0, 180] = 2000
    with torch.no_grad():
        l2 = m(input_ids=ids2, attention_mask=mask).logits
    # two layers of +-8 tokens (+ the global [CLS]) do not reach from 180 to 100
    torch.testing.assert_close(l2[0, 100], logits[0, 100])
    assert not torch.allclose(l2[0, 179], logits[0, 179])


@pytest.mark.parametrize("kind", ["bert", "longformer"])
def test_save_load_same_outputs_and_atomic(tmp_path: Path, kind: str) -> None:
    base = tiny_base(tmp_path / "base", kind, 64)
    if kind == "longformer":
        with pytest.raises(LongappsError, match="over this Longformer's 65 positions"):
            TokenClassifier.create(base, LABELS, max_length=256)
    n = 150 if kind == "bert" else 60
    clf = TokenClassifier.create(base, LABELS, max_length=256 if kind == "bert" else 64, attention_window=32).eval()
    assert clf.is_longformer == (kind == "longformer")
    ids, mask = _inputs(n, pad_from=n - 20)
    with torch.no_grad():
        ref = clf(ids, mask)
    out_dir = tmp_path / "model"
    clf.save(out_dir, {"note": "x"})
    assert {"config.json", "model.safetensors", "tokenizer.json", "longapps_ner.json"} <= {p.name for p in out_dir.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]  # no temp folders left
    back = TokenClassifier.load(out_dir).eval()
    assert back.labels == LABELS
    with torch.no_grad():
        got = back(ids, mask)
    torch.testing.assert_close(got[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)
    if kind == "longformer":  # the folder is a plain HF checkpoint: HF's own Longformer gives the same logits
        from transformers import LongformerForTokenClassification
        hf = LongformerForTokenClassification.from_pretrained(out_dir).eval()
        g = torch.zeros_like(mask)
        g[:, 0] = 1
        with torch.no_grad():
            hl = hf(input_ids=ids, attention_mask=mask, global_attention_mask=g).logits
        torch.testing.assert_close(hl[mask.bool()], ref[mask.bool()], atol=1e-4, rtol=1e-4)


def test_missing_or_corrupt_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        TokenClassifier.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        TokenClassifier.load(tmp_path / "empty")
    clf = TokenClassifier.create(tiny_base(tmp_path / "base", "bert", 64), LABELS, max_length=128)
    clf.save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelNotFoundError, match="cannot load a model from"):
        TokenClassifier.load(tmp_path / "m")


@pytest.mark.parametrize("n,window,block,pad_from", [(1100, 256, None, None), (1100, 256, None, 700),
                                                    (1029, 256, 128, 1000), (300, 64, 48, 250), (97, 200, None, 60)])
def test_banded_attention_equals_dense_on_fresh_inputs(n: int, window: int, block: int | None,
                                                       pad_from: int | None) -> None:
    """The blocked CPU path (SDPA per query block over its key band, [CLS] global) against the dense-mask
    reference on new random q/k/v every run (the NER shapes: head dim 32, window 256, padding in one row)."""
    from longapps.attention import WindowGlobal, reference_attention
    from longapps.attention.banded import banded_attention

    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 4, n, 32, generator=g) for _ in range(3))
    kpm = None
    if pad_from is not None:
        kpm = torch.ones(2, n, dtype=torch.bool)
        kpm[1, pad_from:] = False
    pat = WindowGlobal(window, global_idx=[0])
    got = banded_attention(q, k, v, pat, kpm, block=block)
    ref = reference_attention(q, k, v, pat, kpm)
    err = float((got - ref).abs().max())
    assert err < 2e-5, f"seed {seed}: max abs {err}"
    if kpm is not None:  # the real tokens of the padded row do not depend on what the padding holds
        q2, k2, v2 = (t.clone() for t in (q, k, v))
        for t in (q2, k2, v2):
            t[1, :, pad_from:] = torch.randn(4, n - pad_from, 32, generator=g)
        got2 = banded_attention(q2, k2, v2, pat, kpm, block=block)
        assert torch.allclose(got2[1, :, :pad_from], got[1, :, :pad_from], atol=1e-6), f"seed {seed}"


def test_banded_inference_and_autograd_paths_agree() -> None:
    """banded_attention has a no-grad CPU path (strided key views + log-sum-exp merge of the global keys) and
    an autograd path (key blocks copied, global keys in the same softmax): same outputs, both = dense."""
    from longapps.attention import SinksWindow, SlidingWindow, WindowGlobal, reference_attention
    from longapps.attention.banded import banded_attention

    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    g = torch.Generator().manual_seed(seed)
    n = 613
    x = [torch.randn(3, n, 4, 32, generator=g).transpose(1, 2) for _ in range(3)]  # HF's (B, H, N, D) views
    kpm = torch.ones(3, n, dtype=torch.bool)
    kpm[1, 500:] = False
    kpm[2, :3] = False
    pats = [WindowGlobal(64, global_idx=[0]), WindowGlobal(50, torch.tensor([[0, 300], [0, -1], [5, 612]])),
            SlidingWindow(40), SlidingWindow(33, causal=True), SinksWindow(4, 70)]
    for pat in pats:
        for mask in (None, kpm):
            ref = reference_attention(*x, pat, mask)
            with torch.no_grad():
                fast = banded_attention(*x, pat, mask)
            xg = [t.detach().clone().requires_grad_(True) for t in x]
            slow = banded_attention(*xg, pat, mask)
            assert float((fast - ref).abs().max()) < 2e-5, (seed, pat)
            assert float((slow.detach() - ref).abs().max()) < 2e-5, (seed, pat)
            slow.sum().backward()
            assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in xg)


def test_fast_load_same_tokens_and_logits_as_transformers(tmp_path: Path) -> None:
    """``TokenClassifier.load(fast=True)`` (tokenizers + safetensors into a plain-torch BERT, the CPU predict
    path) gives the transformers path's token ids / offsets / word ids and logits, also past the saved
    positions (``ensure_length``); it saves a folder the transformers path reads back; bf16 linears stay
    close; folders it does not cover (Longformer) load through transformers."""
    from longapps.models.fast_bert import FastBertTagger, supported

    base = tiny_base(tmp_path / "base", "bert", 64)
    TokenClassifier.create(base, LABELS, max_length=256, attention_window=32).save(tmp_path / "m")
    assert supported(tmp_path / "m") and not supported(base)  # base: not made long
    hf = TokenClassifier.load(tmp_path / "m").eval()
    fast = TokenClassifier.load(tmp_path / "m", fast=True).eval()
    assert isinstance(fast.model, FastBertTagger) and not isinstance(hf.model, FastBertTagger)
    assert fast.labels == LABELS and fast.max_length == 256
    text = "Ataxia-telangiectasia (A-T) is a  recessive disorder;\n\nBRCA1 muta\u00e9tions, caf\u00e9 \u4e2d\u6587" * 3
    a = hf.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    b = fast.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert list(a["input_ids"]) == list(b["input_ids"]) and len(b["input_ids"]) > 50
    assert [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]]
    assert list(a.word_ids()) == list(b.word_ids())
    assert (hf.tokenizer.cls_token_id, hf.tokenizer.sep_token_id, hf.tokenizer.pad_token_id) == \
        (fast.tokenizer.cls_token_id, fast.tokenizer.sep_token_id, fast.tokenizer.pad_token_id)
    for length in (256, 400):  # 400: positions copied out further on both paths
        hf.ensure_length(length)
        fast.ensure_length(length)
        ids, mask = _inputs(length - 10, pad_from=length - 40)
        with torch.no_grad():
            ref, got = hf(ids, mask), fast(ids, mask)
        torch.testing.assert_close(got[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)
    fast.model.use_bf16()
    with torch.no_grad():
        low = fast(ids, mask)
    assert float((low - got)[mask.bool()].abs().max()) < 0.05 * float(got.abs().max())
    assert not torch.equal(low, got)  # the bf16 path really ran
    fast.model.use_bf16(False)
    fast.save(tmp_path / "again")
    back = TokenClassifier.load(tmp_path / "again").eval()
    assert not isinstance(back.model, FastBertTagger)
    with torch.no_grad():
        torch.testing.assert_close(back(ids, mask)[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)
    lf = tiny_base(tmp_path / "lf", "longformer", 64)
    TokenClassifier.create(lf, LABELS, max_length=64, attention_window=32).save(tmp_path / "lfm")
    assert TokenClassifier.load(tmp_path / "lfm", fast=True).is_longformer
