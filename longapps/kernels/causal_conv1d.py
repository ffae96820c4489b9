"""Causal depthwise conv1d (Mamba's short convolution), optionally with SiLU: Triton forward/backward + PyTorch.

Token-major layout: x (batch, length, channels), any strides; weight (channels, K); bias (channels,).

    y[b, t, c] = act(bias[c] + sum_k weight[c, k] * x[b, t - (K - 1) + k, c])      (x before 0 is 0)

``reference_causal_conv1d`` is PyTorch's grouped conv1d (the CPU path with autograd; without it, the compiled
token-major kernel of ``selective_scan_cpu``). Two Triton forwards (``CONV_DEFAULTS["impl"]``): "walk" (K <= 4)
steps through ``T`` tokens of ``BC`` channels with the last K-1 rows kept in registers, so each input row is read
once (plus a K-1 row halo per program); "tile" reads ``K`` shifted tiles of ``T`` tokens x ``BC`` channels (any K).
The backward first forms g * act'(pre) (recomputing the pre-activation) and the weight/bias gradients (atomics per
tile), then dx with the anti-causal taps.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, interpreting, triton_or_fallback, triton_usable

# impl: the forward kernel; T / BC / num_warps: the tile kernels' shape (forward "tile" and the backward);
# walk_*: the walk forward's shape (tokens per program, channels per program = 32 lanes x warps x channels per lane).
# Run 80 (mamba-130m 1 x 4,096, whole model, interleaved): tile 5.022 ms; walk 8 x 128 / 1 warp 4.973, 16 x 128
# 4.978, 8 x 256 5.094, 16 x 256 5.130 (182 registers: fewer resident programs), 16 x 512 / 2 warps 5.122; run 81:
# tile 4.993, every walk shape with <= 4 channels per lane 4.937-4.966 (8 x 128 / 1 warp 4.948)
CONV_DEFAULTS = {"impl": "walk", "T": 64, "BC": 64, "num_warps": 4, "walk_T": 8, "walk_BC": 128, "walk_warps": 1}
WALK_MAX_K = 4


def reference_causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                            activation: Optional[str] = "silu") -> torch.Tensor:
    """PyTorch: grouped conv1d with K-1 zeros on the left; output in x's dtype."""
    d, k = weight.shape
    xt = x.transpose(1, 2)
    y = F.conv1d(xt.to(weight.dtype), weight.unsqueeze(1), bias, padding=k - 1, groups=d)[..., :x.shape[1]]
    if activation == "silu":
        y = F.silu(y)
    elif activation is not None:
        raise ValueError(f"activation: unknown '{activation}' (silu or None)")
    return y.transpose(1, 2).to(x.dtype)


if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _pre(X, W, Bias, bi64, rows, offs_c, cmask, L, sx_b, sx_l, sx_c,
             K: tl.constexpr, HAS_BIAS: tl.constexpr, T: tl.constexpr, BC: tl.constexpr):
        acc = tl.zeros([T, BC], dtype=tl.float32)
        if HAS_BIAS:
            acc += tl.load(Bias + offs_c, mask=cmask, other=0.0).to(tl.float32)[None, :]
        for k in tl.static_range(K):
            r = rows - (K - 1) + k
            m = ((r >= 0) & (r < L))[:, None] & cmask[None, :]
            xk = tl.load(X + bi64 * sx_b + r.to(tl.int64)[:, None] * sx_l + offs_c[None, :] * sx_c, mask=m,
                         other=0.0).to(tl.float32)
            wk = tl.load(W + offs_c * K + k, mask=cmask, other=0.0).to(tl.float32)
            acc += xk * wk[None, :]
        return acc

    @triton.jit
    def _conv_fwd_kernel(X, W, Bias, Y, L, Cn, sx_b, sx_l, sx_c, sy_b, sy_l, sy_c,
                         K: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
                         T: tl.constexpr, BC: tl.constexpr):
        bi64 = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1) * T + tl.arange(0, T)
        offs_c = tl.program_id(2) * BC + tl.arange(0, BC)
        cmask = offs_c < Cn
        acc = _pre(X, W, Bias, bi64, rows, offs_c, cmask, L, sx_b, sx_l, sx_c, K, HAS_BIAS, T, BC)
        if SILU:
            acc = acc * tl.sigmoid(acc)
        m = (rows < L)[:, None] & cmask[None, :]
        tl.store(Y + bi64 * sy_b + rows.to(tl.int64)[:, None] * sy_l + offs_c[None, :] * sy_c,
                 acc.to(Y.dtype.element_ty), mask=m)

    @triton.jit
    def _tap(W, offs_c, cmask, K: tl.constexpr, j: tl.constexpr):
        """Weight of the tap j rows back (0 = the current row) as fp32, 0 where K <= j."""
        if j < K:
            return tl.load(W + offs_c * K + (K - 1 - j), mask=cmask, other=0.0).to(tl.float32)
        return tl.zeros(offs_c.shape, dtype=tl.float32)

    @triton.jit
    def _conv_fwd_walk_kernel(X, W, Bias, Y, L, Cn, sx_b, sx_l, sx_c, sy_b, sy_l, sy_c,
                              K: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
                              T: tl.constexpr, BC: tl.constexpr):
        """y rows t0..t0+T-1 of BC channels; x_{t-1..t-3} carried in registers (K <= 4, missing taps are 0)."""
        bi64 = tl.program_id(0).to(tl.int64)
        t0 = tl.program_id(1) * T
        offs_c = tl.program_id(2) * BC + tl.arange(0, BC)
        cmask = offs_c < Cn
        xp = X + bi64 * sx_b + offs_c * sx_c
        yp = Y + bi64 * sy_b + offs_c * sy_c
        w0 = _tap(W, offs_c, cmask, K, 0)
        w1 = _tap(W, offs_c, cmask, K, 1)
        w2 = _tap(W, offs_c, cmask, K, 2)
        w3 = _tap(W, offs_c, cmask, K, 3)
        if HAS_BIAS:
            bias = tl.load(Bias + offs_c, mask=cmask, other=0.0).to(tl.float32)
        else:
            bias = tl.zeros([BC], dtype=tl.float32)
        tv = tl.zeros([BC], dtype=tl.int32) + t0  # the row index as a vector (masks stay vectors)
        x1 = tl.load(xp + (t0 - 1).to(tl.int64) * sx_l, mask=cmask & (tv >= 1), other=0.0).to(tl.float32)
        x2 = tl.load(xp + (t0 - 2).to(tl.int64) * sx_l, mask=cmask & (tv >= 2), other=0.0).to(tl.float32)
        x3 = tl.load(xp + (t0 - 3).to(tl.int64) * sx_l, mask=cmask & (tv >= 3), other=0.0).to(tl.float32)
        rows = ()  # every row's load is issued before the first store (the stores could alias x otherwise)
        for i in tl.static_range(T):
            rows = rows + (tl.load(xp + (t0 + i).to(tl.int64) * sx_l, mask=cmask & (tv + i < L), other=0.0),)
        for i in tl.static_range(T):
            t = t0 + i
            x0 = rows[i].to(tl.float32)
            acc = bias + w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
            if SILU:
                acc = acc * tl.sigmoid(acc)
            tl.store(yp + t.to(tl.int64) * sy_l, acc.to(Y.dtype.element_ty), mask=cmask & (tv + i < L))
            x3 = x2
            x2 = x1
            x1 = x0

    @triton.jit
    def _conv_bwd_gp_kernel(X, W, Bias, G, GP, dW, dB, L, Cn, sx_b, sx_l, sx_c, sg_b, sg_l, sg_c,
                            K: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
                            T: tl.constexpr, BC: tl.constexpr):
        """gp = g * act'(pre) (fp32, contiguous), and this tile's share of dW, dBias (atomics)."""
        bi64 = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1) * T + tl.arange(0, T)
        offs_c = tl.program_id(2) * BC + tl.arange(0, BC)
        cmask = offs_c < Cn
        m = (rows < L)[:, None] & cmask[None, :]
        g = tl.load(G + bi64 * sg_b + rows.to(tl.int64)[:, None] * sg_l + offs_c[None, :] * sg_c, mask=m,
                    other=0.0).to(tl.float32)
        if SILU:
            pre = _pre(X, W, Bias, bi64, rows, offs_c, cmask, L, sx_b, sx_l, sx_c, K, HAS_BIAS, T, BC)
            s = tl.sigmoid(pre)
            g = g * s * (1.0 + pre * (1.0 - s))
        g = tl.where(m, g, 0.0)
        tl.store(GP + bi64 * L * Cn + rows.to(tl.int64)[:, None] * Cn + offs_c[None, :], g, mask=m)
        if HAS_BIAS:
            tl.atomic_add(dB + offs_c, tl.sum(g, 0), mask=cmask)
        for k in tl.static_range(K):
            r = rows - (K - 1) + k
            mk = ((r >= 0) & (r < L))[:, None] & cmask[None, :]
            xk = tl.load(X + bi64 * sx_b + r.to(tl.int64)[:, None] * sx_l + offs_c[None, :] * sx_c, mask=mk,
                         other=0.0).to(tl.float32)
            tl.atomic_add(dW + offs_c * K + k, tl.sum(g * xk, 0), mask=cmask)

    @triton.jit
    def _conv_bwd_dx_kernel(GP, W, DX, L, Cn, sd_b, sd_l, sd_c, K: tl.constexpr, T: tl.constexpr,
                            BC: tl.constexpr):
        """dx[t] = sum_k w[k] * gp[t + K - 1 - k]."""
        bi64 = tl.program_id(0).to(tl.int64)
        rows = tl.program_id(1) * T + tl.arange(0, T)
        offs_c = tl.program_id(2) * BC + tl.arange(0, BC)
        cmask = offs_c < Cn
        acc = tl.zeros([T, BC], dtype=tl.float32)
        for k in tl.static_range(K):
            r = rows + (K - 1) - k
            m = (r < L)[:, None] & cmask[None, :]
            gk = tl.load(GP + bi64 * L * Cn + r.to(tl.int64)[:, None] * Cn + offs_c[None, :], mask=m, other=0.0)
            wk = tl.load(W + offs_c * K + k, mask=cmask, other=0.0).to(tl.float32)
            acc += gk * wk[None, :]
        m = (rows < L)[:, None] & cmask[None, :]
        tl.store(DX + bi64 * sd_b + rows.to(tl.int64)[:, None] * sd_l + offs_c[None, :] * sd_c,
                 acc.to(DX.dtype.element_ty), mask=m)


def _cfg(x: torch.Tensor, walk: bool = False) -> dict:
    d = CONV_DEFAULTS
    cfg = dict(T=d["walk_T"], BC=d["walk_BC"], num_warps=d["walk_warps"]) if walk else dict(d)
    if interpreting() and not x.is_cuda:
        cfg["T"], cfg["BC"] = 8, 8
    return cfg


def causal_conv1d_forward(x, weight, bias=None, silu: bool = True, out: Optional[torch.Tensor] = None,
                          impl: Optional[str] = None):
    """Triton forward; returns y (x's dtype, contiguous unless `out` is given). impl: "walk" (K <= 4) or "tile";
    None = ``CONV_DEFAULTS["impl"]`` (the tile kernel where the walk does not apply)."""
    bsz, L, c = x.shape
    k = weight.shape[1]
    impl = impl or CONV_DEFAULTS["impl"]
    if impl not in ("walk", "tile"):
        raise ValueError(f"impl: unknown '{impl}' (walk or tile)")
    walk = impl == "walk" and k <= WALK_MAX_K
    cfg = _cfg(x, walk)
    y = out if out is not None else torch.empty((bsz, L, c), dtype=x.dtype, device=x.device)
    if L == 0:
        return y
    grid = (bsz, triton.cdiv(L, cfg["T"]), triton.cdiv(c, cfg["BC"]))
    kernel = _conv_fwd_walk_kernel if walk else _conv_fwd_kernel
    kernel[grid](x, weight.contiguous(), bias if bias is not None else weight, y, L, c,
                 *x.stride(), *y.stride(), K=k, HAS_BIAS=bias is not None, SILU=silu,
                 T=cfg["T"], BC=cfg["BC"], num_warps=cfg["num_warps"])
    return y


def causal_conv1d_backward(g, x, weight, bias=None, silu: bool = True):
    """Triton backward: (dx in x's dtype, dweight fp32, dbias fp32 or None)."""
    bsz, L, c = x.shape
    k = weight.shape[1]
    cfg = _cfg(x)
    f32 = dict(dtype=torch.float32, device=x.device)
    gp = torch.empty((bsz, L, c), **f32)
    dw = torch.zeros((c, k), **f32)
    db = torch.zeros((c,), **f32)
    dx = torch.empty((bsz, L, c), dtype=x.dtype, device=x.device)
    if L == 0:
        return dx, dw, (db if bias is not None else None)
    grid = (bsz, triton.cdiv(L, cfg["T"]), triton.cdiv(c, cfg["BC"]))
    w = weight.contiguous()
    _conv_bwd_gp_kernel[grid](x, w, bias if bias is not None else w, g, gp, dw, db, L, c, *x.stride(), *g.stride(),
                              K=k, HAS_BIAS=bias is not None, SILU=silu, T=cfg["T"], BC=cfg["BC"],
                              num_warps=cfg["num_warps"])
    _conv_bwd_dx_kernel[grid](gp, w, dx, L, c, *dx.stride(), K=k, T=cfg["T"], BC=cfg["BC"],
                              num_warps=cfg["num_warps"])
    return dx, dw, (db if bias is not None else None)


class _CausalConv1dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, silu, fallback=False):
        ctx.save_for_backward(x, weight, bias)
        ctx.silu, ctx.fallback = silu, fallback
        return causal_conv1d_forward(x, weight, bias, silu)

    @staticmethod
    def backward(ctx, g):
        x, weight, bias = ctx.saved_tensors
        if ctx.fallback:
            dx, dw, db = triton_or_fallback("causal_conv1d_backward",
                                            lambda: causal_conv1d_backward(g, x, weight, bias, ctx.silu),
                                            lambda: _torch_grads(g, x, weight, bias, ctx.silu))
        else:
            dx, dw, db = causal_conv1d_backward(g, x, weight, bias, ctx.silu)
        return dx, dw.to(weight.dtype), (db.to(bias.dtype) if bias is not None else None), None, None


def _torch_grads(g, x, weight, bias, silu):
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, weight, bias)]
    with torch.enable_grad():
        y = reference_causal_conv1d(leaves[0], leaves[1], leaves[2], "silu" if silu else None)
    present = [t for t in leaves if t is not None]
    got = iter(torch.autograd.grad(y, present, g))
    return tuple(next(got) if t is not None else None for t in leaves)


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  activation: Optional[str] = "silu", backend: str = "auto") -> torch.Tensor:
    """Causal depthwise conv over (batch, length, channels); differentiable.
    backend: "auto" (Triton on CUDA, PyTorch elsewhere), "triton" (CUDA or the interpreter), "torch"."""
    if activation not in ("silu", None):
        raise ValueError(f"activation: unknown '{activation}' (silu or None)")
    if backend == "auto":
        if x.is_cuda and HAS_TRITON and not interpreting():
            return triton_or_fallback("causal_conv1d", lambda: _CausalConv1dFn.apply(x, weight, bias, activation == "silu", True),
                                      lambda: reference_causal_conv1d(x, weight, bias, activation))
        backend = "torch"
    if backend == "torch":
        if x.device.type == "cpu" and x.dtype != torch.float64 and not (torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in (x, weight, bias))):
            from . import selective_scan_cpu as cpu

            if cpu.available():  # compiled token-major kernel (inference): no transposes, no copies
                return cpu.causal_conv1d_cpu(x, weight, bias, activation == "silu")
        return reference_causal_conv1d(x, weight, bias, activation)
    if backend != "triton":
        raise ValueError(f"backend: unknown '{backend}' (auto, triton, torch)")
    if not triton_usable(x):
        raise ValueError("backend='triton' needs a CUDA tensor (or TRITON_INTERPRET=1 on CPU)")
    return _CausalConv1dFn.apply(x, weight, bias, activation == "silu")


__all__ = ["causal_conv1d", "reference_causal_conv1d", "causal_conv1d_forward", "causal_conv1d_backward",
           "CONV_DEFAULTS"]
