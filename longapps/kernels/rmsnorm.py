"""Fused residual add + RMSNorm for the Mamba encoder (inference): one read of each input, one write each.

    r' = r + y                       (the residual stream, fp32 when residual_in_fp32; y absent for layer 0)
    h  = w * rms_normalize(r')       (HF MambaRMSNorm semantics: the stream is first rounded to `norm_dtype`,
                                      normalised in fp32, rounded again, then scaled by w)

``reference_add_rmsnorm`` is the PyTorch version (and the fallback off CUDA or with autograd).
"""
from __future__ import annotations

from typing import Optional

import torch

from ._common import HAS_TRITON, interpreting, triton_or_fallback

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _add_rmsnorm_kernel(R, Y, W, Rout, H, sr, sy, so, sh, C, eps, HAS_Y: tl.constexpr, ROUND: tl.constexpr,
                            BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        m = cols < C
        r = tl.load(R + row * sr + cols, mask=m, other=0.0)
        if HAS_Y:
            r = (r.to(tl.float32) + tl.load(Y + row * sy + cols, mask=m, other=0.0).to(tl.float32)).to(Rout.dtype.element_ty)
            tl.store(Rout + row * so + cols, r, mask=m)
        if ROUND:
            x = r.to(H.dtype.element_ty).to(tl.float32)
        else:
            x = r.to(tl.float32)
        var = tl.sum(x * x, 0) / C
        xn = x * (1.0 / tl.sqrt(var + eps))
        if ROUND:
            xn = xn.to(H.dtype.element_ty).to(tl.float32)
        w = tl.load(W + cols, mask=m, other=0.0).to(tl.float32)
        tl.store(H + row * sh + cols, (w * xn).to(H.dtype.element_ty), mask=m)


def reference_add_rmsnorm(r: torch.Tensor, y: Optional[torch.Tensor], weight: torch.Tensor, eps: float,
                          norm_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, r + y): HF's block order -- residual add, then ``MambaRMSNorm(stream.to(norm_dtype))``."""
    if y is not None:
        r = r + y.to(r.dtype)
    x = r.to(norm_dtype)
    xf = x.float()
    xn = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xn.to(norm_dtype), r


def add_rmsnorm(r: torch.Tensor, y: Optional[torch.Tensor], weight: torch.Tensor, eps: float,
                norm_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused on CUDA without autograd (one Triton kernel), the PyTorch reference otherwise."""
    if not (HAS_TRITON and r.is_cuda and not interpreting()) or (torch.is_grad_enabled() and (
            r.requires_grad or weight.requires_grad or (y is not None and y.requires_grad))):
        return reference_add_rmsnorm(r, y, weight, eps, norm_dtype)
    return triton_or_fallback("add_rmsnorm", lambda: _add_rmsnorm_triton(r, y, weight, eps, norm_dtype),
                              lambda: reference_add_rmsnorm(r, y, weight, eps, norm_dtype))


def _add_rmsnorm_triton(r, y, weight, eps, norm_dtype):
    out_dtype = torch.promote_types(weight.dtype, norm_dtype)
    C = r.shape[-1]
    r2 = r.reshape(-1, C)
    y2 = y.reshape(-1, C) if y is not None else r2
    if r2.stride(-1) != 1 or y2.stride(-1) != 1:
        r2, y2 = r2.contiguous(), y2.contiguous()
    rout = torch.empty_like(r2) if y is not None else r2
    h = torch.empty(r2.shape, dtype=out_dtype, device=r.device)
    _add_rmsnorm_kernel[(r2.shape[0],)](r2, y2, weight, rout, h, r2.stride(0), y2.stride(0), rout.stride(0),
                                        h.stride(0), C, eps, HAS_Y=y is not None,
                                        ROUND=norm_dtype != torch.float32 or r.dtype != torch.float32,
                                        BLOCK=triton.next_power_of_2(C), num_warps=4)
    return h.view(r.shape), rout.view(r.shape)
