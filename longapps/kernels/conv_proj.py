"""Mamba's input side fused for inference: causal conv + SiLU, then x_proj and dt_proj, in one Triton kernel.

Unfused, a Mamba layer runs three kernels between ``in_proj`` and the scan (the conv, the x_proj GEMM with a
split-K memset, the dt_proj GEMM with its K = dt_rank of 48) and re-reads the conv output from memory. Here one
program takes ``BT`` tokens across all channels: for each block of ``BC`` channels it computes the conv + SiLU tile,
stores it (the scan's ``u``) and accumulates ``u @ x_proj.T`` on the tensor cores; then it multiplies the
(bf16-rounded, as the unfused path rounds it) dt_rank columns by ``dt_proj.T`` block by block and stores ``dt``
(without its bias: the scan adds it). No autograd: training keeps the unfused, differentiable kernels.

    u    = silu(conv(x))                          (batch, length, d_inner)   [* mask]
    xdbl = u @ x_proj.weight.T                    (batch, length, dt_rank + 2 d_state)
    dt   = xdbl[..., :dt_rank] @ dt_proj.weight.T (batch, length, d_inner)
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, dot_dtype, interpreting
from .causal_conv1d import reference_causal_conv1d

# tokens per program, channels per step, warps, pipeline stages of the channel loops; benchmarks/mamba_gpu.py
# compares launch shapes on the whole model ("enabled": False makes MambaMixer use the unfused kernels)
CONV_PROJ_DEFAULTS = {"enabled": True, "BT": 32, "BC": 64, "num_warps": 4, "stages": 2}


def reference_conv_proj(x: torch.Tensor, conv_weight: torch.Tensor, conv_bias: Optional[torch.Tensor],
                        x_proj_weight: torch.Tensor, dt_proj_weight: torch.Tensor,
                        mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unfused composition in PyTorch: (u, xdbl, dt) in x's dtype."""
    u = reference_causal_conv1d(x, conv_weight, conv_bias, "silu")
    if mask is not None:
        u = u * mask[..., None].to(u.dtype)
    xdbl = F.linear(u, x_proj_weight.to(u.dtype))
    dt = F.linear(xdbl[..., :dt_proj_weight.shape[1]], dt_proj_weight.to(u.dtype))
    return u, xdbl, dt


if HAS_TRITON:
    import triton
    import triton.language as tl

    from .causal_conv1d import _pre

    @triton.jit
    def _conv_proj_kernel(X, Wc, Bc, M, U, Wx, XD, Wdt, DT, L, Dm, NXR, R,
                          sx_b, sx_l, sx_c, sm_b, sm_l,
                          K: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, BT: tl.constexpr,
                          BC: tl.constexpr, NX: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
                          STAGES: tl.constexpr):
        """One program: BT tokens x all channels. Outputs are contiguous: U, DT (b, L, Dm), XD (b, L, NXR)."""
        bi64 = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1) * BT + tl.arange(0, BT)
        rows64 = rows.to(tl.int64)
        rmask = rows < L
        offs_x = tl.arange(0, NX)
        xmask = offs_x < NXR
        keep = tl.full([BT], 1.0, tl.float32)
        if HAS_MASK:
            keep = tl.load(M + bi64 * sm_b + rows64 * sm_l, mask=rmask, other=0.0).to(tl.float32)
        acc = tl.zeros([BT, NX], dtype=tl.float32)
        for c0 in tl.range(0, Dm, BC, num_stages=STAGES):
            offs_c = c0 + tl.arange(0, BC)
            cmask = offs_c < Dm
            pre = _pre(X, Wc, Bc, bi64, rows, offs_c, cmask, L, sx_b, sx_l, sx_c, K, HAS_BIAS, BT, BC)
            u = (pre * tl.sigmoid(pre) * keep[:, None]).to(U.dtype.element_ty)
            tl.store(U + (bi64 * L + rows64[:, None]) * Dm + offs_c[None, :], u,
                     mask=rmask[:, None] & cmask[None, :])
            w = tl.load(Wx + offs_x[None, :] * Dm + offs_c[:, None], mask=cmask[:, None] & xmask[None, :],
                        other=0.0)                                            # (BC, NX) = x_proj.T block
            acc = tl.dot(u.to(DOT), w.to(DOT), acc, input_precision=PREC)
        xd = acc.to(XD.dtype.element_ty)
        tl.store(XD + (bi64 * L + rows64[:, None]) * NXR + offs_x[None, :], xd, mask=rmask[:, None] & xmask[None, :])
        xr = xd.to(DOT)
        rank = offs_x < R
        for c0 in tl.range(0, Dm, BC, num_stages=STAGES):
            offs_c = c0 + tl.arange(0, BC)
            cmask = offs_c < Dm
            w = tl.load(Wdt + offs_c[None, :] * R + offs_x[:, None], mask=rank[:, None] & cmask[None, :],
                        other=0.0)                                            # (NX, BC) = dt_proj.T, rank rows
            dt = tl.dot(xr, w.to(DOT), input_precision=PREC)
            tl.store(DT + (bi64 * L + rows64[:, None]) * Dm + offs_c[None, :], dt.to(DT.dtype.element_ty),
                     mask=rmask[:, None] & cmask[None, :])


def conv_proj_forward(x: torch.Tensor, conv_weight: torch.Tensor, conv_bias: Optional[torch.Tensor],
                      x_proj_weight: torch.Tensor, dt_proj_weight: torch.Tensor,
                      mask: Optional[torch.Tensor] = None, **cfg_over) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton (CUDA, or CPU under ``TRITON_INTERPRET=1``): (u, xdbl, dt) as ``reference_conv_proj`` returns them,
    contiguous, in x's dtype. x: (batch, length, d_inner), any strides; conv_weight (d_inner, K);
    x_proj_weight (dt_rank + 2 d_state, d_inner); dt_proj_weight (d_inner, dt_rank); mask (batch, length) or None.
    No gradient flows through it."""
    bsz, L, d = x.shape
    nxr, rank = x_proj_weight.shape[0], dt_proj_weight.shape[1]
    if conv_weight.shape[0] != d or x_proj_weight.shape[1] != d or dt_proj_weight.shape[0] != d or rank > nxr:
        raise ValueError(f"conv_proj: shapes do not fit: x {tuple(x.shape)}, conv {tuple(conv_weight.shape)}, "
                         f"x_proj {tuple(x_proj_weight.shape)}, dt_proj {tuple(dt_proj_weight.shape)}")
    cfg = {**CONV_PROJ_DEFAULTS, **{k: v for k, v in cfg_over.items() if v is not None}}
    cfg.pop("enabled")
    if interpreting() and not x.is_cuda:
        cfg.update(BT=16, BC=16)
    dev, dtype = x.device, x.dtype
    u = torch.empty((bsz, L, d), dtype=dtype, device=dev)
    dt = torch.empty((bsz, L, d), dtype=dtype, device=dev)
    xdbl = torch.empty((bsz, L, nxr), dtype=dtype, device=dev)
    if L == 0 or bsz == 0:
        return u, xdbl, dt
    w = (conv_weight.to(dtype).contiguous(), x_proj_weight.to(dtype).contiguous(), dt_proj_weight.to(dtype).contiguous())
    m = mask if mask is not None else x
    sm = (mask.stride(0), mask.stride(1)) if mask is not None else (0, 0)
    grid = (bsz, triton.cdiv(L, cfg["BT"]))
    _conv_proj_kernel[grid](x, w[0], conv_bias if conv_bias is not None else w[0], m, u, w[1], xdbl, w[2], dt,
                            L, d, nxr, rank, *x.stride(), *sm,
                            K=conv_weight.shape[1], HAS_BIAS=conv_bias is not None, HAS_MASK=mask is not None,
                            BT=cfg["BT"], BC=cfg["BC"], NX=max(16, triton.next_power_of_2(nxr)),
                            DOT=dot_dtype(dtype), PREC="ieee" if dtype == torch.float32 else "tf32",
                            STAGES=cfg["stages"], num_warps=cfg["num_warps"])
    return u, xdbl, dt


__all__ = ["conv_proj_forward", "reference_conv_proj", "CONV_PROJ_DEFAULTS"]
