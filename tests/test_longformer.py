"""FastLongformer vs HF transformers' LongformerModel (random-init small config) on CPU."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from kernel_checks import child, interpreter_test  # noqa: E402
from longapps.models.longformer import FastLongformerForTokenClassification, FastLongformerModel  # noqa: E402


def _cfg(**kw):
    base = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                attention_window=[8, 16], max_position_embeddings=256, pad_token_id=1, type_vocab_size=1)
    base.update(kw)
    return transformers.LongformerConfig(**base)


def _inputs(B=2, N=45):
    ids = torch.randint(2, 120, (B, N))
    am = torch.ones(B, N, dtype=torch.long)
    am[1, N - 8:] = 0
    ids[1, N - 8:] = 1
    gm = torch.zeros(B, N, dtype=torch.long)
    gm[0, 0] = 1
    gm[1, [0, 5, 20]] = 1
    return ids, am, gm


def _compare(backend, N=45, global_mode="auto"):
    torch.manual_seed(0)
    hf = transformers.LongformerModel(_cfg()).eval()
    fast = FastLongformerModel.from_hf(hf, backend=backend, global_mode=global_mode).eval()
    worst = 0.0
    for trial in range(2):  # the second: fresh ids and other global positions through the same signatures
        ids, am, gm = _inputs(N=N)
        if trial:
            gm = gm.roll(7, dims=1) * am
        with torch.no_grad():
            for a, g in ((am, gm), (None, None), (am, None), (None, gm)):
                r = hf(input_ids=ids, attention_mask=a, global_attention_mask=g).last_hidden_state
                o = fast(input_ids=ids, attention_mask=a, global_attention_mask=g).last_hidden_state
                assert torch.isfinite(o).all()
                worst = max(worst, float((o - r).abs().max()))
    return worst


def test_matches_hf_reference_path():
    assert _compare("auto") < 1e-4


def test_matches_hf_length_not_multiple_of_window():
    for mode in ("auto", "kernel", "hidden"):
        for backend in ("reference", "banded"):
            assert _compare(backend, N=37, global_mode=mode) < 1e-4, (mode, backend)


def test_token_classification_matches_hf():
    torch.manual_seed(1)
    hf = transformers.LongformerForTokenClassification(_cfg(num_labels=5)).eval()
    fast = FastLongformerForTokenClassification.from_hf(hf).eval()
    ids, am, gm = _inputs()
    labels = torch.randint(0, 5, ids.shape)
    labels[1, -8:] = -100  # padding: ignored by the loss
    with torch.no_grad():
        r = hf(input_ids=ids, attention_mask=am, global_attention_mask=gm, labels=labels)
        out = fast(input_ids=ids, attention_mask=am, global_attention_mask=gm, labels=labels)
        loss, logits = out  # unpacks like a (loss, logits) tuple
    assert out.logits is logits and logits.shape == (2, ids.shape[1], 5)
    assert float((logits - r.logits).abs().max()) < 1e-4
    assert abs(float(loss) - float(r.loss)) < 1e-5
    assert fast(input_ids=ids, attention_mask=am, global_attention_mask=gm).loss is None


def _token_logits(model, ids, am, gm):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=am, global_attention_mask=gm).logits


def test_token_classification_save_load_roundtrip(tmp_path):
    """save_pretrained writes a plain HF folder: ours and HF's LongformerForTokenClassification both load it
    and give the saved model's logits; the label maps survive."""
    torch.manual_seed(2)
    cfg = _cfg(num_labels=3, id2label={0: "O", 1: "B-Disease", 2: "I-Disease"},
               label2id={"O": 0, "B-Disease": 1, "I-Disease": 2})
    fast = FastLongformerForTokenClassification.from_config(cfg).eval()
    with torch.no_grad():  # move the weights off HF's initialisation so a missed tensor shows
        for p in fast.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ids, am, gm = _inputs()
    want = _token_logits(fast, ids, am, gm)
    fast.save_pretrained(str(tmp_path / "m"))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    back = FastLongformerForTokenClassification.from_pretrained(str(tmp_path / "m")).eval()
    assert back.config.id2label[1] == "B-Disease" and back.num_labels == 3
    assert float((_token_logits(back, ids, am, gm) - want).abs().max()) < 1e-5
    hf = transformers.LongformerForTokenClassification.from_pretrained(str(tmp_path / "m")).eval()
    assert float((_token_logits(hf, ids, am, gm) - want).abs().max()) < 1e-4


def test_token_classification_from_base_checkpoint(tmp_path):
    """A base LongformerModel folder loads with a fresh head of the requested labels; the encoder is the base's."""
    torch.manual_seed(3)
    base = transformers.LongformerModel(_cfg(), add_pooling_layer=False).eval()
    base.save_pretrained(tmp_path / "base")
    id2label = {0: "O", 1: "B-X", 2: "I-X", 3: "B-Y"}
    fast = FastLongformerForTokenClassification.from_pretrained(
        str(tmp_path / "base"), num_labels=4, id2label=id2label, label2id={v: k for k, v in id2label.items()}).eval()
    assert fast.num_labels == 4 and fast.config.label2id["B-Y"] == 3
    ids, am, gm = _inputs()
    assert _token_logits(fast, ids, am, gm).shape == (2, ids.shape[1], 4)
    with torch.no_grad():
        r = base(input_ids=ids, attention_mask=am, global_attention_mask=gm).last_hidden_state
        h = fast.longformer(input_ids=ids, attention_mask=am, global_attention_mask=gm).last_hidden_state
    assert float((h - r).abs().max()) < 1e-4


@pytest.mark.parametrize("checkpointing", [False, True])
def test_token_classification_training_lowers_loss(checkpointing):
    """AdamW steps on one batch (CPU: autograd through the banded attention, dropout on) lower the loss;
    gradient checkpointing gives the same gradients as the plain backward (dropout off)."""
    torch.manual_seed(5)
    fast = FastLongformerForTokenClassification.from_config(_cfg(num_labels=4)).train()
    if checkpointing:
        fast.gradient_checkpointing_enable()
    ids, am, gm = _inputs()
    labels = torch.randint(0, 4, ids.shape)
    labels[1, -8:] = -100
    opt = torch.optim.AdamW(fast.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = fast(input_ids=ids, attention_mask=am, global_attention_mask=gm, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    if checkpointing:  # same gradients with and without recomputation (dropout off: deterministic)
        fast.eval()
        fast.longformer.train()
        for mod in fast.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
        grads = {}
        for on in (True, False):
            fast.longformer.gradient_checkpointing = on
            fast.zero_grad()
            fast(input_ids=ids, attention_mask=am, global_attention_mask=gm, labels=labels).loss.backward()
            grads[on] = [p.grad.clone() for p in fast.parameters() if p.grad is not None]
        assert len(grads[True]) == len(grads[False]) > 10
        assert max(float((a - b).abs().max()) for a, b in zip(grads[True], grads[False])) < 1e-6


def _training_grad_gap(backend: str, seed: int) -> float:
    """Worst relative difference between the layer-parameter gradients of a training step (one layer,
    no dropout) on ``backend`` and on the dense reference attention."""
    torch.manual_seed(seed)
    hf = transformers.LongformerModel(_cfg(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                           num_hidden_layers=1, attention_window=[8]))
    ids, am, gm = _inputs(N=40)
    w = torch.randn(2, 40, 64)
    grads = {}
    for be in (backend, "reference"):
        fast = FastLongformerModel.from_hf(hf, backend=be).train()
        out = fast(input_ids=ids, attention_mask=am, global_attention_mask=gm).last_hidden_state
        params = [p for n, p in fast.named_parameters() if n.startswith("layers.")]
        grads[be] = torch.autograd.grad((out * w).sum(), params)
    return max(float((a - b).norm() / b.norm()) for a, b in zip(grads[backend], grads["reference"]))


def test_training_gradients_banded_match_reference():
    """CPU training path (autograd through the banded attention) gives the dense reference's gradients."""
    assert _training_grad_gap("banded", seed=4) < 1e-5


test_triton_path_under_interpreter = interpreter_test(
    __file__ + "::test_child_triton_path", __file__ + "::test_child_triton_training_gradients_match_reference")


@child
def test_child_triton_path():
    assert _compare("triton") < 1e-4
    assert _compare("triton", global_mode="hidden") < 1e-4


@child
def test_child_triton_training_gradients_match_reference():
    """Training path (autograd through the kernels, separate global projections) vs reference path."""
    assert _training_grad_gap("triton", seed=3) < 1e-4


def test_missing_weights_are_one_clear_error(tmp_path, monkeypatch):
    """A hub id that is not cached offline, or a folder without weights: ModelNotFoundError, one line."""
    from longapps.resources import ModelNotFoundError
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="not available offline") as e:
        FastLongformerModel.from_pretrained("allenai/longformer-base-4096")
    assert "\n" not in str(e.value)
    with pytest.raises(ModelNotFoundError, match="cannot load Longformer weights"):
        FastLongformerForTokenClassification.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_from_pretrained_local_folder(tmp_path, backend):
    torch.manual_seed(0)
    hf = transformers.LongformerModel(_cfg()).eval()
    hf.save_pretrained(tmp_path / "lf")
    fast = FastLongformerModel.from_pretrained(str(tmp_path / "lf"), backend=backend).eval()
    ids, am, gm = _inputs()
    with torch.no_grad():
        r = hf(input_ids=ids, attention_mask=am, global_attention_mask=gm).last_hidden_state
        o = fast(input_ids=ids, attention_mask=am, global_attention_mask=gm).last_hidden_state
    assert float((o - r).abs().max()) < 1e-4


def test_unreachable_hub_fails_fast_without_retries(monkeypatch):
    """Without HF_HUB_OFFLINE and without network, an id that is not cached fails at once (one TCP connect
    attempt), never entering the hub client's retry loop."""
    import socket

    from longapps import resources
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def refuse(*a, **k):
        raise OSError("no route")
    monkeypatch.setattr(socket, "create_connection", refuse)
    calls = []

    def load(local_only):
        calls.append(local_only)
        raise OSError("not in the cache")
    with pytest.raises(resources.ModelNotFoundError, match="not reachable"):
        resources.load_offline_first("org/some-model", load)
    assert calls == [True]
