"""Lightning (causal linear) attention Triton kernels vs the float64 reference, under the interpreter."""
from __future__ import annotations

import pytest
import torch

from kernel_checks import TOL, child, interpreter_test, rel
from longapps.kernels.lightning import chunked_lightning_torch, reference_lightning




test_under_interpreter = interpreter_test(__file__)


def _qkv(B, H, N, D, dt, grad=False):
    t = [(torch.randn(B, H, N, D) * 0.3).to(dt) for _ in range(3)]
    return [x.requires_grad_(grad) for x in t]


@pytest.mark.parametrize("N", [1, 37, 130])
def test_chunked_torch_matches_quadratic(N):
    q, k, v = _qkv(2, 2, N, 8, torch.float64)
    assert rel(chunked_lightning_torch(q, k, v, 0.7, block=16), reference_lightning(q, k, v, 0.7)) < 1e-10


def test_reverse_reference_is_flipped_forward():
    q, k, v = _qkv(1, 2, 20, 4, torch.float64)
    f = lambda t: t.flip(2)  # noqa: E731
    assert rel(reference_lightning(q, k, v, reverse=True), f(reference_lightning(f(q), f(k), f(v)))) < 1e-12


@child
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("dt,N", [(torch.float32, 75), (torch.bfloat16, 75), (torch.float16, 50), (torch.float32, 16),
                                  (torch.bfloat16, 3)])
def test_forward(dt, N, fused):
    from longapps.kernels.lightning import lightning_forward
    q, k, v = _qkv(2, 2, N, 16, dt)
    assert rel(lightning_forward(q, k, v, 0.5, fused=fused), reference_lightning(q, k, v, 0.5)) < TOL[dt]
    assert rel(lightning_forward(q, k, v, reverse=True, fused=fused),
               reference_lightning(q, k, v, reverse=True)) < TOL[dt]


def _sync_all_zero() -> bool:
    from longapps.kernels.lightning import _WORKSPACES
    return all(int(sync.abs().sum()) == 0 for _, sync in _WORKSPACES.values())


# fused single launch, several super-chunks (max_blocks_per_chunk=1: one 16-token block each); the test knobs
# make only some super-chunks publish inclusive prefixes and read the flags a few at a time, so a look-back
# mixes aggregates, inclusive prefixes and several windows
@child
@pytest.mark.parametrize("dt,N,kw", [
    (torch.float32, 75, {}),
    (torch.bfloat16, 75, {"lookback": "all"}),
    (torch.float16, 50, {"_prefix_every": 2, "_lookback_window": 2}),
    (torch.float32, 130, {"_prefix_every": 3, "_lookback_window": 2}),
    (torch.float32, 97, {"lookback": "all", "_lookback_window": 4}),
    (torch.bfloat16, 17, {"_prefix_every": 2}),
])
def test_fused_super_chunks(dt, N, kw):
    from longapps.kernels.lightning import lightning_forward
    for reverse in (False, True):
        for _ in range(2):  # a second call on fresh inputs: flags and counters were reset by the first
            q, k, v = _qkv(2, 2, N, 16, dt)
            o = lightning_forward(q, k, v, 0.7, reverse=reverse, max_blocks_per_chunk=1, fused=True, **kw)
            assert rel(o, reference_lightning(q, k, v, 0.7, reverse=reverse)) < TOL[dt]
            assert _sync_all_zero()


@child
def test_fused_matches_two_launch_and_n_super():
    from longapps.kernels.lightning import lightning_forward
    q, k, v = _qkv(1, 3, 100, 32, torch.float32)
    two = lightning_forward(q, k, v, n_super=4, fused=False)
    for ns in (1, 3, 7):
        for lb in ("prefix", "all"):
            assert rel(lightning_forward(q, k, v, n_super=ns, fused=True, lookback=lb), two) < 1e-5
    with pytest.raises(ValueError):
        lightning_forward(q, k, v, fused=True, lookback="nope")


@child
def test_fused_backward_several_super_chunks(monkeypatch):
    from longapps.kernels import lightning as L
    monkeypatch.setitem(L.LIGHTNING_DEFAULTS, "max_blocks_per_chunk", 1)
    monkeypatch.setitem(L.LIGHTNING_DEFAULTS, "fused", True)
    q, k, v = _qkv(1, 2, 70, 16, torch.float32, grad=True)
    do = torch.randn_like(q)
    o = L.lightning_attention(q, k, v, 0.5)
    r = reference_lightning(q, k, v, 0.5)
    assert rel(o, r) < TOL[torch.float32]
    for a, b in zip(torch.autograd.grad(o, (q, k, v), do), torch.autograd.grad(r, (q, k, v), do)):
        assert rel(a, b) < TOL[torch.float32]
    assert _sync_all_zero()


@child
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16])
def test_backward(dt):
    from longapps.kernels.lightning import lightning_attention
    q, k, v = _qkv(1, 2, 53, 16, dt, grad=True)
    do = torch.randn_like(q)
    o = lightning_attention(q, k, v, 0.5)
    r = reference_lightning(q, k, v, 0.5)
    for a, b in zip(torch.autograd.grad(o, (q, k, v), do), torch.autograd.grad(r, (q, k, v), do)):
        assert rel(a, b) < TOL[dt]


@child
def test_dispatch_linear():
    from longapps.attention import Linear, attention
    q, k, v = _qkv(1, 3, 40, 32, torch.float32)
    a = attention(q, k, v, Linear(scale=0.25), backend="triton")
    b = attention(q, k, v, Linear(scale=0.25), backend="reference")
    assert rel(a, b) < 1e-4
