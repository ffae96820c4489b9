"""Sinks + window single-query decode kernel (split-K) vs reference and vs the prefill kernel."""
from __future__ import annotations

import pytest
import torch

from kernel_checks import TOL, child, interpreter_test, rel




test_under_interpreter = interpreter_test(__file__)


@child
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("nk,sinks,window", [(100, 4, 37), (30, 4, 50), (200, 0, 10), (9, 3, 2), (70, 10, 7)])
def test_decode(dt, nk, sinks, window):
    from longapps.kernels.sinks_decode import reference_sinks_decode, sinks_window_decode
    q = torch.randn(2, 3, 1, 32).to(dt)
    k, v = [torch.randn(2, 3, nk, 32).to(dt) for _ in range(2)]
    assert rel(sinks_window_decode(q, k, v, sinks, window), reference_sinks_decode(q, k, v, sinks, window)) < TOL[dt]


@child
def test_decode_equals_last_prefill_row():
    from longapps.attention import SinksWindow, attention
    q, k, v = [torch.randn(1, 2, 57, 16) for _ in range(3)]
    full = attention(q, k, v, SinksWindow(4, 12), backend="triton")
    last = attention(q[:, :, -1:], k, v, SinksWindow(4, 12), backend="triton")
    assert rel(last, full[:, :, -1:]) < 1e-5
    ref = attention(q[:, :, -1:], k, v, SinksWindow(4, 12), backend="reference")
    assert rel(last, ref) < 1e-4


@child
def test_decode_rejects_many_queries():
    from longapps.kernels.sinks_decode import sinks_window_decode
    with pytest.raises(ValueError, match="single query"):
        sinks_window_decode(torch.randn(1, 1, 2, 16), torch.randn(1, 1, 5, 16), torch.randn(1, 1, 5, 16), 1, 2)
