"""The GPU decode path of `longapps chat` on CPU: decode attention over the bounded cache through
longapps.attention's Triton kernel (sinks_decode) under TRITON_INTERPRET=1, against transformers' SDPA."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from kernel_checks import child, interpreter_test  # noqa: E402

test_under_interpreter = interpreter_test(__file__)


@child
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_backend_decode_equals_sdpa_after_evictions(family, monkeypatch):
    from chat_models import tiny_lm

    from longapps.kernels import sinks_decode
    from longapps.models import cache_attention
    from longapps.pipelines.dialogue import StreamingChat

    calls = {"n": 0}
    real = sinks_decode.sinks_window_decode

    def counting(*a, **k):  # the Triton decode kernel itself
        calls["n"] += 1
        return real(*a, **k)

    lm = tiny_lm(family, layers=2, hidden=64, mute_stops=True)  # head_dim 16: a kernel size
    ref = StreamingChat(lm, cache_size=48, recent=8, max_new_tokens=5)
    lines = ["Hello there!", "My code is 4417.", "What is it?"]
    ref_replies = [ref.say(x).text for x in lines]
    ref_logp = ref._last_logp.clone()

    monkeypatch.setenv("LONGAPPS_DECODE_BACKEND", "triton")
    monkeypatch.setattr(sinks_decode, "sinks_window_decode", counting)
    assert cache_attention.use_backend_attention(lm.model)
    chat = StreamingChat(lm, cache_size=48, recent=8, max_new_tokens=5)
    replies = [chat.say(x).text for x in lines]
    assert chat.cache.evictions >= 1 and calls["n"] > 0
    assert replies == ref_replies
    assert torch.allclose(chat._last_logp, ref_logp, atol=1e-4)
