"""Fused residual add + RMSNorm for the Mamba encoder (inference): one read of each input, one write each.

    r' = r + y                       (the residual stream, fp32 when residual_in_fp32; y absent for layer 0)
    h  = w * rms_normalize(r')       (HF MambaRMSNorm semantics: the stream is first rounded to `norm_dtype`,
                                      normalised in fp32, rounded again, then scaled by w)

``reference_add_rmsnorm`` is the PyTorch version (and the fallback off CUDA or with autograd). ``embed_rmsnorm``
is the first layer's form: the stream is gathered from the embedding table by token id inside the same kernel
(no separate gather and fp32 cast); ``add_rmsnorm(..., keep_sum=False)`` skips writing the stream (the final norm).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, interpreting, triton_or_fallback

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _add_rmsnorm_kernel(R, Y, W, Rout, H, IDS, sr, sy, so, sh, C, eps, HAS_Y: tl.constexpr, ROUND: tl.constexpr,
                            BLOCK: tl.constexpr, HAS_IDS: tl.constexpr = False, WRITE_R: tl.constexpr = True):
        """One row: r' = r + y (HAS_Y) or r' = R[IDS[row]] in Rout's dtype (HAS_IDS: R is the embedding table), stored
        if WRITE_R; h = w * rms_normalize(r')."""
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        m = cols < C
        src = row
        if HAS_IDS:
            src = tl.load(IDS + row).to(tl.int64)
        r = tl.load(R + src * sr + cols, mask=m, other=0.0)
        if HAS_Y:
            r = (r.to(tl.float32) + tl.load(Y + row * sy + cols, mask=m, other=0.0).to(tl.float32)).to(Rout.dtype.element_ty)
        elif HAS_IDS:
            r = r.to(Rout.dtype.element_ty)
        if (HAS_Y or HAS_IDS) and WRITE_R:
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


def _fused(*tensors: Optional[torch.Tensor]) -> bool:
    """The Triton kernel applies: CUDA, not interpreting, and no gradient wanted through any of ``tensors``."""
    first = tensors[0]
    return HAS_TRITON and first.is_cuda and not interpreting() and not (torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors))


def add_rmsnorm(r: torch.Tensor, y: Optional[torch.Tensor], weight: torch.Tensor, eps: float,
                norm_dtype: torch.dtype, keep_sum: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Fused on CUDA without autograd (one Triton kernel), the PyTorch reference otherwise. ``keep_sum=False``:
    the stream r + y is not needed afterwards (the final norm); the kernel does not write it and None is returned
    in its place."""
    def reference() -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        h, rr = reference_add_rmsnorm(r, y, weight, eps, norm_dtype)
        return h, (rr if keep_sum else None)

    if not _fused(r, y, weight):
        return reference()
    return triton_or_fallback("add_rmsnorm", lambda: _add_rmsnorm_triton(r, y, weight, eps, norm_dtype, keep_sum),
                              reference)


def embed_rmsnorm(ids: torch.Tensor, table: torch.Tensor, weight: torch.Tensor, eps: float, norm_dtype: torch.dtype,
                  residual_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, r) for the first layer: r = ``table[ids]`` in ``residual_dtype`` (the stream), h = RMSNorm(r) as
    ``add_rmsnorm(r, None, ...)`` computes it. One Triton kernel on CUDA without autograd (no separate gather and
    cast), ``F.embedding`` + the reference otherwise (ids on another device: PyTorch's own error)."""
    def reference() -> tuple[torch.Tensor, torch.Tensor]:
        return reference_add_rmsnorm(F.embedding(ids, table).to(residual_dtype), None, weight, eps, norm_dtype)

    if not _fused(table, weight) or ids.device != table.device:
        return reference()
    return triton_or_fallback("embed_rmsnorm", lambda: _embed_rmsnorm_triton(ids, table, weight, eps, norm_dtype,
                                                                            residual_dtype), reference)


def _launch(src, y, ids, weight, rout, h, sr, C, eps, round_: bool, **flags) -> None:
    _add_rmsnorm_kernel[(h.shape[0],)](src, y, weight, rout, h, ids, sr, y.stride(0), rout.stride(0), h.stride(0), C,
                                       eps, ROUND=round_, BLOCK=triton.next_power_of_2(C), num_warps=4, **flags)


def _add_rmsnorm_triton(r, y, weight, eps, norm_dtype, keep_sum: bool = True):
    out_dtype = torch.promote_types(weight.dtype, norm_dtype)
    C = r.shape[-1]
    r2 = r.reshape(-1, C)
    y2 = y.reshape(-1, C) if y is not None else r2
    if r2.stride(-1) != 1 or y2.stride(-1) != 1:
        r2, y2 = r2.contiguous(), y2.contiguous()
    write = y is not None and keep_sum
    rout = torch.empty_like(r2) if write else r2
    h = torch.empty(r2.shape, dtype=out_dtype, device=r.device)
    _launch(r2, y2, r2, weight, rout, h, r2.stride(0), C, eps, norm_dtype != torch.float32 or r.dtype != torch.float32,
            HAS_Y=y is not None, WRITE_R=write)
    if not keep_sum:
        return h.view(r.shape), None
    return h.view(r.shape), rout.view(r.shape)


def _embed_rmsnorm_triton(ids, table, weight, eps, norm_dtype, residual_dtype):
    C = table.shape[1]
    if table.stride(1) != 1:
        table = table.contiguous()
    flat = ids.reshape(-1)
    rout = torch.empty((flat.shape[0], C), dtype=residual_dtype, device=table.device)
    h = torch.empty((flat.shape[0], C), dtype=torch.promote_types(weight.dtype, norm_dtype), device=table.device)
    if flat.shape[0]:
        _launch(table, rout, flat, weight, rout, h, table.stride(0), C, eps,
                norm_dtype != torch.float32 or residual_dtype != torch.float32, HAS_Y=False, HAS_IDS=True)
    return h.view(*ids.shape, C), rout.view(*ids.shape, C)
