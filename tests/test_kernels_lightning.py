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
@pytest.mark.parametrize("dt,N", [(torch.float32, 75), (torch.bfloat16, 75), (torch.float16, 50), (torch.float32, 16),
                                  (torch.bfloat16, 3)])
def test_forward(dt, N):
    from longapps.kernels.lightning import lightning_forward
    q, k, v = _qkv(2, 2, N, 16, dt)
    assert rel(lightning_forward(q, k, v, 0.5), reference_lightning(q, k, v, 0.5)) < TOL[dt]
    assert rel(lightning_forward(q, k, v, reverse=True), reference_lightning(q, k, v, reverse=True)) < TOL[dt]


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
