"""`longapps chat` on a CUDA GPU (skipped without one): the packaged SmolLM2 in bf16, decode attention over the
bounded cache through the longapps backend (Triton sinks_decode kernel) vs transformers' SDPA, eviction vs a
from-scratch recompute, and GPU memory flat over many turns.

    .venv/bin/python -m pytest tests/test_chat_gpu.py -q
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
sys.path.insert(0, str(Path(__file__).parent))

LINES = ["Hello! My name is Ada and my locker code is 4417.", "What is the tallest mountain in Europe?",
         "Tell me something about rivers.", "Which city has the most bridges?", "What is my locker code?"]


@pytest.fixture(scope="module")
def lm():
    from longapps.models.causal_lm import load_causal_lm

    return load_causal_lm(None, dtype="bfloat16", device="cuda")


def _logp_next(chat, backend: str, monkeypatch) -> torch.Tensor:
    """Log-probs after one more token, from a copy of the chat state, with decode attention on ``backend``."""
    monkeypatch.setenv("LONGAPPS_DECODE_BACKEND", backend)
    state = chat.checkpoint()
    tok = int(torch.argmax(chat._last_logp))
    chat._feed([tok])
    out = chat._last_logp.float().clone()
    chat.restore(state)
    return out


def test_backend_decode_matches_sdpa_after_evictions(lm, monkeypatch):
    from longapps.kernels import sinks_decode
    from longapps.pipelines.dialogue import StreamingChat

    calls = {"n": 0}
    real = sinks_decode.sinks_window_decode

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)
    monkeypatch.setattr(sinks_decode, "sinks_window_decode", counting)
    chat = StreamingChat(lm, cache_size=256, recent=32, max_new_tokens=24)
    assert lm.model.config._attn_implementation == "longapps"
    for line in LINES * 3:
        chat.say(line)
    assert chat.cache.evictions >= 2 and calls["n"] > 0
    a = _logp_next(chat, "auto", monkeypatch)
    b = _logp_next(chat, "off", monkeypatch)
    assert int(a.argmax()) == int(b.argmax())
    assert (a.exp() - b.exp()).abs().max() < 2e-2


def test_eviction_first_layer_matches_recompute_on_gpu(lm):
    from transformers import DynamicCache

    from longapps.models.causal_lm import cache_kwarg
    from longapps.pipelines.dialogue import StreamingChat

    chat = StreamingChat(lm, cache_size=128, recent=16, max_new_tokens=16)
    for line in LINES * 2:
        chat.say(line)
    assert chat.cache.evictions >= 2
    ref = DynamicCache(config=lm.model.config)
    with torch.inference_mode():
        lm.model(input_ids=chat.cache.ids[None].cuda(), **{cache_kwarg(lm.model): ref}, use_cache=True)
    got, exp = chat.cache.layers[0].keys.float(), ref.layers[0].keys.float()
    assert ((got - exp).norm() / exp.norm()) < 2e-2  # bf16: one rounding of the re-rotated key


def test_gpu_memory_flat_over_many_turns(lm):
    from longapps.pipelines.dialogue import StreamingChat

    chat = StreamingChat(lm, cache_size=256, recent=32, max_new_tokens=4)
    for i in range(40):
        chat.say(LINES[i % len(LINES)])
    torch.cuda.synchronize()
    m40 = torch.cuda.memory_allocated()
    for i in range(400):
        chat.say(LINES[i % len(LINES)])
    torch.cuda.synchronize()
    assert chat.cache.length <= 256
    assert torch.cuda.memory_allocated() <= m40 * 1.02 + (1 << 20)
