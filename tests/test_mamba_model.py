"""MambaEncoder vs HF MambaModel on tiny random configs (fp32, CPU), loading, saving, errors, training step."""
from __future__ import annotations

import json

import pytest
import torch

from longapps.models.mamba import MambaEncoder, check_mamba_folder, mamba_config
from longapps.resources import LongappsError


def _cfg(**kw):
    base = dict(hidden_size=32, num_hidden_layers=2, state_size=8, vocab_size=120, expand=2, time_step_rank=4)
    return mamba_config(**(base | kw))


@pytest.fixture(scope="module")
def pair():
    from transformers import MambaModel
    torch.manual_seed(0)
    hf = MambaModel(_cfg()).eval()
    with torch.no_grad():  # non-trivial A/D/dt bias so a wrong formula shows
        for layer in hf.layers:
            layer.mixer.A_log.add_(torch.randn_like(layer.mixer.A_log) * 0.3)
            layer.mixer.D.add_(torch.randn_like(layer.mixer.D))
    return hf, MambaEncoder.from_hf(hf).eval()


@pytest.mark.parametrize("L", [1, 33, 300])
def test_matches_hf(pair, L):
    hf, ours = pair
    ids = torch.randint(0, 120, (2, L))
    with torch.no_grad():
        a, b = hf(ids).last_hidden_state, ours(ids)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


def test_matches_hf_with_padding_mask(pair):
    hf, ours = pair
    ids = torch.randint(0, 120, (2, 40))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 25:] = 0
    with torch.no_grad():
        a, b = hf(ids, attention_mask=mask).last_hidden_state, ours(ids, mask)
        c = ours(ids)  # causal: right padding leaves the real tokens alone
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert torch.allclose(c[1, :25], b[1, :25], atol=1e-5)


def test_residual_in_fp32_false_and_reference_backend():
    from transformers import MambaModel
    torch.manual_seed(1)
    hf = MambaModel(_cfg(residual_in_fp32=False, use_conv_bias=False)).eval()
    ours = MambaEncoder.from_hf(hf, backend="reference").eval()
    ids = torch.randint(0, 120, (1, 20))
    with torch.no_grad():
        assert torch.allclose(hf(ids).last_hidden_state, ours(ids), atol=1e-4)


def test_state_dict_round_trip_and_save(tmp_path, pair):
    from transformers import MambaModel
    hf, ours = pair
    ours.save_pretrained(tmp_path / "m")
    again = MambaEncoder.from_pretrained(tmp_path / "m").eval()
    hf2 = MambaModel.from_pretrained(tmp_path / "m").eval()  # our folder is an HF checkpoint too
    ids = torch.randint(0, 120, (1, 17))
    with torch.no_grad():
        assert torch.allclose(again(ids), ours(ids), atol=1e-6)
        assert torch.allclose(hf2(ids).last_hidden_state, ours(ids), atol=1e-4)


def test_loads_causal_lm_checkpoint_names(tmp_path):
    from transformers import MambaForCausalLM
    torch.manual_seed(2)
    lm = MambaForCausalLM(_cfg()).eval()
    sd = {("backbone.embedding." + k[len("backbone.embeddings."):] if k.startswith("backbone.embeddings.") else k): v
          for k, v in lm.state_dict().items()}
    ours = MambaEncoder(_cfg())
    ours.load_hf_state_dict(sd)  # 'backbone.' prefix, original 'embedding.' name, lm_head ignored
    ids = torch.randint(0, 120, (1, 9))
    with torch.no_grad():
        assert torch.allclose(lm.backbone(ids).last_hidden_state, ours(ids), atol=1e-4)
    with pytest.raises(LongappsError, match="does not match"):
        MambaEncoder(_cfg(hidden_size=16)).load_hf_state_dict(sd)


def test_not_a_mamba_checkpoint(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(LongappsError, match="not a Mamba checkpoint"):
        MambaEncoder.from_pretrained(tmp_path / "bert")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LongappsError, match="no config.json"):
        check_mamba_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(LongappsError, match="not valid JSON"):
        check_mamba_folder(tmp_path / "bad")
    with pytest.raises(LongappsError, match="not found"):
        MambaEncoder.from_pretrained("./no/such/folder")


def test_training_step_and_checkpointing(pair):
    _, ours = pair
    model = MambaEncoder(ours.config)
    model.load_state_dict(ours.state_dict())
    model.train()
    ids = torch.randint(0, 120, (2, 24))
    loss = model(ids)[:, -1].pow(2).mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["layers.0.mixer.A_log"].abs().sum() > 0 and grads["layers.1.mixer.conv1d.weight"].abs().sum() > 0
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(ids)[:, -1].pow(2).mean().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[n], atol=1e-5, rtol=1e-4), n


def test_cuda_graph_needs_cuda(pair):
    with pytest.raises(ValueError, match="CUDA"):
        pair[1].cuda_graph(torch.zeros(1, 4, dtype=torch.long))
