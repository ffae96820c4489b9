"""The public attention() call path (issue 11), CPU side: patterns prepared once, validation from cached
bounds, torch.compile safety, the Longformer's mask preparation. GPU-side checks (no sync, graph capture,
direct launches, automatic Longformer graphs): tests/test_kernels_gpu.py."""
from __future__ import annotations

import pytest
import torch

from longapps.attention import SlidingWindow, WindowGlobal, attention
from longapps.attention.prepared import global_bounds, global_table


def _qkv(B=2, H=2, N=70, D=16):
    return [torch.randn(B, H, N, D) for _ in range(3)]


def test_pattern_prepared_once_per_device():
    pat = WindowGlobal(8, [40, 3, 3, 12])
    t1 = global_table(pat, torch.device("cpu"))
    assert t1.dtype == torch.int32 and t1.tolist() == [[3, 12, 40]]
    assert global_table(pat, torch.device("cpu")) is t1  # cached, not rebuilt
    assert global_bounds(pat) == (4, 3, 40)
    assert global_table(WindowGlobal(8, []), torch.device("cpu")) is None
    two = WindowGlobal(8, torch.tensor([[5, -1, 2], [1, 1, 60]]))
    assert global_table(two, torch.device("cpu")).tolist() == [[2, 5, -1], [1, -1, 60]]  # duplicate -> -1 slot


def test_validation_uses_cached_bounds():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"global_idx out of range \[0, 70\): min 3, max 70"):
        attention(q, k, v, WindowGlobal(8, [3, 70]))
    with pytest.raises(ValueError, match="out of range"):
        attention(q, k, v, WindowGlobal(8, torch.tensor([[1, -2], [3, 4]])))
    ok = WindowGlobal(8, [0, 69])
    for _ in range(2):  # second call: bounds from the cache
        ref = attention(q, k, v, ok, backend="reference")
        assert float((attention(q, k, v, ok) - ref).abs().max()) < 1e-5


@pytest.mark.parametrize("pat", [WindowGlobal(8, [0, 33]), SlidingWindow(5, causal=True)])
def test_attention_under_torch_compile(pat):
    """A compiled function calling attention(): the call is one graph break run eagerly, same result."""
    def f(q, k, v):
        return (attention(q * 2.0, k, v, pat) + 1.0).sum(-1)

    cf = torch.compile(f, backend="aot_eager")
    for _ in range(2):
        q, k, v = _qkv()
        assert torch.allclose(cf(q, k, v), f(q, k, v), atol=1e-5)


def test_longformer_prepare_masks():
    """Global index table (globals first, -1 padded; rounded to a power of two on request), padding mask only
    when there is padding; CPU masks need no device work."""
    from longapps.models.longformer import FastLongformerModel
    am = torch.ones(2, 10, dtype=torch.long)
    gm = torch.zeros(2, 10, dtype=torch.long)
    gm[0, [0, 4, 9]] = 1
    gm[1, 2] = 1
    gidx, kpm = FastLongformerModel.prepare(am, gm, torch.device("cpu"))
    assert kpm is None and gidx.tolist() == [[0, 4, 9], [2, -1, -1]]
    am[0, 9] = 0  # a global token on padding is dropped
    gidx, kpm = FastLongformerModel.prepare(am, gm, torch.device("cpu"), round_globals=True)
    assert kpm is not None and kpm.dtype == torch.bool and not kpm[0, 9] and bool(kpm[1].all())
    assert gidx.tolist() == [[0, 4], [2, -1]]
    gm[1, [1, 3, 5]] = 1
    gidx, _ = FastLongformerModel.prepare(None, gm, torch.device("cpu"), round_globals=True)
    assert gidx.tolist() == [[0, 4, 9, -1], [1, 2, 3, 5]]
    assert FastLongformerModel.prepare(None, None, torch.device("cpu")) == (None, None)
