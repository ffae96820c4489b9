"""Longformer global rows from hidden states: Triton kernels (under the interpreter, in a child
process) vs the PyTorch algebra, and that algebra vs the plain definition (project, then attend)."""
from __future__ import annotations

import math

import pytest
import torch

from kernel_checks import TOL, child, interpreter_test, rel

test_under_interpreter = interpreter_test(__file__)


def _setup(B, N, C, H, dt, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, C, generator=g).to(dt)
    ws = [(torch.randn(C, C, generator=g) / math.sqrt(C)).to(dt) for _ in range(3)]
    bs = [(torch.randn(C, generator=g) * 0.1).to(dt) for _ in range(3)]
    return x, [ws[0], bs[0], ws[1], bs[1], ws[2], bs[2]]


def _definition(x, gidx, kpm, w, H):
    """Project every token with the global key/value weights, then softmax(q k^T / sqrt(D)) v."""
    wq, bq, wk, bk, wv, bv = [t.double() for t in w]
    x = x.double()
    B, N, C = x.shape
    D = C // H
    out = torch.zeros(B, gidx.shape[1], H, D, dtype=torch.float64)
    for b in range(B):
        k = (x[b] @ wk.T + bk).view(N, H, D)
        v = (x[b] @ wv.T + bv).view(N, H, D)
        for j, gi in enumerate(gidx[min(b, gidx.shape[0] - 1)].tolist()):
            if gi < 0:
                continue
            q = (x[b, gi] @ wq.T + bq).view(H, D) / math.sqrt(D)
            s = torch.einsum("hd,nhd->hn", q, k)
            if kpm is not None:
                s = s.masked_fill(~kpm[b][None], float("-inf"))
            out[b, j] = torch.einsum("hn,nhd->hd", torch.softmax(s, -1), v)
    return out


def test_reference_matches_definition():
    from longapps.kernels.global_rows import reference_global_rows
    x, w = _setup(2, 37, 32, 4, torch.float64)
    gidx = torch.tensor([[0, 36, -1], [5, 6, 20]])
    kpm = torch.ones(2, 37, dtype=torch.bool)
    kpm[1, 30:] = False
    got = reference_global_rows(x, gidx, kpm, *w, 4)
    exp = _definition(x, gidx, kpm, w, 4)
    ok = (gidx >= 0)[:, :, None, None].expand_as(exp)
    assert rel(got[ok], exp[ok]) < 1e-6  # scores are softmaxed in fp32


@child
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", ["1d", "2d_kpm"])
def test_kernels_match_reference(dt, case):
    from longapps.kernels.global_rows import global_rows_into
    B, N, C, H = 2, 75, 48, 3   # C not a power of two, odd N, several token chunks
    x, w = _setup(B, N, C, H, dt, seed=torch.seed() % 2**31)
    if case == "1d":
        gidx, kpm = torch.tensor([[0, 74]], dtype=torch.int32), None
    else:
        gidx = torch.tensor([[3, -1], [0, 60]], dtype=torch.int32)
        kpm = torch.ones(B, N, dtype=torch.bool)
        kpm[1, 64:] = False
    out = torch.full((B, N, C), float("nan"), dtype=dt)
    global_rows_into(out, x, gidx, kpm, *w, H)
    exp = _definition(x, gidx, kpm, w, H)
    for b in range(B):
        for j, gi in enumerate(gidx[min(b, gidx.shape[0] - 1)].tolist()):
            if gi >= 0:
                assert rel(out[b, gi].view(H, C // H), exp[b, j]) < TOL[dt]
    written = torch.zeros(B, N, dtype=torch.bool)
    for b in range(B):
        for gi in gidx[min(b, gidx.shape[0] - 1)].tolist():
            if gi >= 0:
                written[b, gi] = True
    assert torch.isnan(out[~written]).all(), "rows other than the global ones were written"


def test_bad_shapes():
    from longapps.kernels.global_rows import global_rows_into
    x, w = _setup(1, 8, 30, 3, torch.float32)  # head dim 10
    with pytest.raises(ValueError, match="hidden size"):
        global_rows_into(torch.empty_like(x), x, torch.tensor([[0]], dtype=torch.int32), None, *w, 3)
