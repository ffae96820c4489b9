"""Mamba's time-step projection with its softplus fused: ``dt = softplus(x W^T + b)`` (Triton + PyTorch).

    x : (batch, length, rank), any strides (the model passes a view of the x_proj output)
    W : (channels, rank)      b : (channels,) or None      ->  dt : (batch, length, channels), x's dtype

One GEMM tile per program (the rank is small: 48 for mamba-130m, 160 for mamba-2.8b) with the bias and the
softplus in its epilogue, rounded once to x's dtype. The selective scan then reads ready time steps
(``delta_softplus=False``, no bias): each of its two passes saves the softplus (two MUFU ops and ~13
instructions per token in the y pass; benchmarks/RESULTS.md, session 10). Inference only (no backward): the
model uses it on CUDA without autograd and keeps ``F.linear`` + the scan's own softplus when training.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, dot_dtype, interpreting

DT_PROJ_DEFAULTS = {"BM": 64, "BN": 128, "BK": 64, "num_warps": 4}


def reference_dt_proj(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """PyTorch: softplus of the projection computed in fp32, rounded once to x's dtype."""
    b = bias.float() if bias is not None else None
    return F.softplus(F.linear(x.float(), weight.float(), b)).to(x.dtype)


if HAS_TRITON:
    import triton
    import triton.language as tl

    from .selective_scan import _softplus

    @triton.jit
    def _dt_proj_kernel(X, W, Bias, Y, L, N, K, sx_b, sx_l, sx_k, sw_n, sw_k, sy_b, sy_l, sy_n,
                        HAS_BIAS: tl.constexpr, FAST_LOG: tl.constexpr, DOT: tl.constexpr,
                        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BN + tl.arange(0, BN)
        bi64 = tl.program_id(2).to(tl.int64)
        rmask = rows < L
        cmask = cols < N
        acc = tl.zeros([BM, BN], dtype=tl.float32)
        for k0 in range(0, K, BK):
            ks = k0 + tl.arange(0, BK)
            kmask = ks < K
            a = tl.load(X + bi64 * sx_b + rows.to(tl.int64)[:, None] * sx_l + ks[None, :] * sx_k,
                        mask=rmask[:, None] & kmask[None, :], other=0.0)
            w = tl.load(W + cols[None, :] * sw_n + ks[:, None] * sw_k, mask=kmask[:, None] & cmask[None, :], other=0.0)
            acc = tl.dot(a.to(DOT), w.to(DOT), acc)
        if HAS_BIAS:
            acc += tl.load(Bias + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        y = _softplus(acc, FAST_LOG)
        tl.store(Y + bi64 * sy_b + rows.to(tl.int64)[:, None] * sy_l + cols[None, :] * sy_n,
                 y.to(Y.dtype.element_ty), mask=rmask[:, None] & cmask[None, :])


def dt_proj_softplus(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     **cfg_over) -> torch.Tensor:
    """Triton: ``softplus(x @ weight.T + bias)`` in one launch (CUDA, or CPU under ``TRITON_INTERPRET=1``)."""
    if x.dim() != 3 or weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"dt_proj_softplus: x (b, l, {weight.shape[1]}) expected, got {tuple(x.shape)}")
    cfg = {**DT_PROJ_DEFAULTS, **cfg_over}
    if interpreting() and not x.is_cuda:
        cfg.update(BM=16, BN=16, BK=16)
    bsz, L, K = x.shape
    N = weight.shape[0]
    y = torch.empty((bsz, L, N), dtype=x.dtype, device=x.device)
    if y.numel() == 0:
        return y
    grid = (triton.cdiv(L, cfg["BM"]), triton.cdiv(N, cfg["BN"]), bsz)
    _dt_proj_kernel[grid](x, weight, bias if bias is not None else weight, y, L, N, K,
                          x.stride(0), x.stride(1), x.stride(2), weight.stride(0), weight.stride(1),
                          y.stride(0), y.stride(1), y.stride(2), HAS_BIAS=bias is not None,
                          FAST_LOG=x.is_cuda and not interpreting(), DOT=dot_dtype(x.dtype),
                          BM=cfg["BM"], BN=cfg["BN"], BK=cfg["BK"], num_warps=cfg["num_warps"])
    return y
