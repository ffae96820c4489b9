"""``y = x @ w.T`` where one side is small (Mamba's two projections around the rank-48 bottleneck), Triton kernels.

- ``lowrank_linear``: a small inner dimension (dt_proj: dt_rank 48 -> d_inner). With K <= 128 the whole inner
  dimension fits one tensor-core dot per output tile, so the kernel is a single load of x and w tiles and a store:
  bound by writing y. cuBLAS treats it as a general GEMM (tiles sized for a long K).
- ``narrow_linear``: a small output (x_proj: d_inner -> dt_rank + 2 d_state = 80). One program takes ``BM`` rows and
  every output column, walking K with pipelined loads: x is read once, no split-K (cuBLAS splits K for this shape and
  needs a memset of the output first).

No autograd: ``MambaMixer`` uses them for inference only; ``F.linear`` is the reference and the fallback.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, dot_dtype, interpreting, triton_or_fallback

# output tile and warps; benchmarks/mamba_gpu.py compares them (and "enabled": False, cuBLAS) on the whole model
LOWRANK_DEFAULTS = {"enabled": True, "BM": 64, "BN": 128, "num_warps": 4}
MAX_K = 128
# rows per program, K step, pipeline stages, warps of narrow_linear; "enabled": False = cuBLAS (A/B in mamba_gpu.py)
NARROW_DEFAULTS = {"enabled": True, "BM": 32, "BK": 64, "stages": 4, "num_warps": 4}
MAX_N = 128

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _lowrank_kernel(X, W, Y, M, N, K, sx_m, sx_k, sw_n, sw_k,
                        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, DOT: tl.constexpr,
                        PREC: tl.constexpr):
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rn = tl.program_id(1) * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        kmask = rk < K
        x = tl.load(X + rm.to(tl.int64)[:, None] * sx_m + rk[None, :] * sx_k,
                    mask=(rm < M)[:, None] & kmask[None, :], other=0.0)
        w = tl.load(W + rn[None, :] * sw_n + rk[:, None] * sw_k, mask=kmask[:, None] & (rn < N)[None, :], other=0.0)
        y = tl.dot(x.to(DOT), w.to(DOT), input_precision=PREC)
        tl.store(Y + rm.to(tl.int64)[:, None] * N + rn[None, :], y.to(Y.dtype.element_ty),
                 mask=(rm < M)[:, None] & (rn < N)[None, :])

    @triton.jit
    def _narrow_kernel(X, W, Y, M, N, K, sx_m, sx_k, sw_n, sw_k,
                       BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, STAGES: tl.constexpr,
                       EVEN_K: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr):
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rm64 = rm.to(tl.int64)
        rn = tl.arange(0, BN)
        mmask = rm < M
        nmask = rn < N
        acc = tl.zeros([BM, BN], dtype=tl.float32)
        for k0 in tl.range(0, K, BK, num_stages=STAGES):
            rk = k0 + tl.arange(0, BK)
            if EVEN_K:
                xm = mmask[:, None]
                wm = nmask[None, :]
            else:
                xm = mmask[:, None] & (rk < K)[None, :]
                wm = (rk < K)[:, None] & nmask[None, :]
            x = tl.load(X + rm64[:, None] * sx_m + rk[None, :] * sx_k, mask=xm, other=0.0)
            w = tl.load(W + rn[None, :] * sw_n + rk[:, None] * sw_k, mask=wm, other=0.0)
            acc = tl.dot(x.to(DOT), w.to(DOT), acc, input_precision=PREC)
        tl.store(Y + rm64[:, None] * N + rn[None, :], acc.to(Y.dtype.element_ty), mask=mmask[:, None] & nmask[None, :])


def lowrank_linear(x: torch.Tensor, weight: torch.Tensor, **cfg_over) -> torch.Tensor:
    """x (..., K) any strides with K <= 128, weight (N, K) -> (..., N) contiguous in x's dtype (Triton: CUDA, or
    CPU under ``TRITON_INTERPRET=1``)."""
    K, N = x.shape[-1], weight.shape[0]
    if weight.shape[1] != K or K > MAX_K:
        raise ValueError(f"lowrank_linear: x (..., {K}) and weight {tuple(weight.shape)} do not fit (K <= {MAX_K})")
    cfg = {**LOWRANK_DEFAULTS, **{k: v for k, v in cfg_over.items() if v is not None}}
    if interpreting() and not x.is_cuda:
        cfg.update(BM=16, BN=16)
    x2 = x.reshape(-1, K)  # a view for xdbl[..., :rank]
    w = weight.to(x.dtype)
    y = torch.empty((x2.shape[0], N), dtype=x.dtype, device=x.device)
    if x2.shape[0] == 0:
        return y.view(*x.shape[:-1], N)
    grid = (triton.cdiv(x2.shape[0], cfg["BM"]), triton.cdiv(N, cfg["BN"]))
    _lowrank_kernel[grid](x2, w, y, x2.shape[0], N, K, *x2.stride(), *w.stride(),
                          BM=cfg["BM"], BN=cfg["BN"], BK=max(16, triton.next_power_of_2(K)), DOT=dot_dtype(x.dtype),
                          PREC="ieee" if x.dtype == torch.float32 else "tf32", num_warps=cfg["num_warps"])
    return y.view(*x.shape[:-1], N)


def narrow_linear(x: torch.Tensor, weight: torch.Tensor, **cfg_over) -> torch.Tensor:
    """x (..., K) any strides, weight (N, K) with N <= 128 -> (..., N) contiguous in x's dtype (Triton: CUDA, or CPU
    under ``TRITON_INTERPRET=1``)."""
    K, N = x.shape[-1], weight.shape[0]
    if weight.shape[1] != K or N > MAX_N:
        raise ValueError(f"narrow_linear: x (..., {K}) and weight {tuple(weight.shape)} do not fit (N <= {MAX_N})")
    cfg = {**NARROW_DEFAULTS, **{k: v for k, v in cfg_over.items() if v is not None}}
    if interpreting() and not x.is_cuda:
        cfg.update(BM=16, BK=16)
    x2 = x.reshape(-1, K)
    w = weight.to(x.dtype)
    y = torch.empty((x2.shape[0], N), dtype=x.dtype, device=x.device)
    if x2.shape[0] == 0:
        return y.view(*x.shape[:-1], N)
    _narrow_kernel[(triton.cdiv(x2.shape[0], cfg["BM"]),)](
        x2, w, y, x2.shape[0], N, K, *x2.stride(), *w.stride(), BM=cfg["BM"], BN=max(16, triton.next_power_of_2(N)),
        BK=cfg["BK"], STAGES=cfg["stages"], EVEN_K=K % cfg["BK"] == 0, DOT=dot_dtype(x.dtype),
        PREC="ieee" if x.dtype == torch.float32 else "tf32", num_warps=cfg["num_warps"])
    return y.view(*x.shape[:-1], N)


def _inference_kernel(x: torch.Tensor, weight: torch.Tensor, defaults: dict, fits: bool) -> bool:
    return (x.is_cuda and HAS_TRITON and not interpreting() and defaults["enabled"] and fits
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))


def lowrank_linear_auto(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The Triton kernel for inference on CUDA (no gradient wanted, K <= 128, ``LOWRANK_DEFAULTS["enabled"]``),
    ``F.linear`` otherwise and if the kernel fails to build."""
    if _inference_kernel(x, weight, LOWRANK_DEFAULTS, x.shape[-1] <= MAX_K):
        return triton_or_fallback("lowrank_linear", lambda: lowrank_linear(x, weight),
                                  lambda: reference_lowrank_linear(x, weight))
    return reference_lowrank_linear(x, weight)


def narrow_linear_auto(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``narrow_linear`` for inference on CUDA (no gradient wanted, N <= 128, ``NARROW_DEFAULTS["enabled"]``),
    ``F.linear`` otherwise and if the kernel fails to build."""
    if _inference_kernel(x, weight, NARROW_DEFAULTS, weight.shape[0] <= MAX_N):
        return triton_or_fallback("narrow_linear", lambda: narrow_linear(x, weight),
                                  lambda: reference_lowrank_linear(x, weight))
    return reference_lowrank_linear(x, weight)


def reference_lowrank_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PyTorch: ``F.linear`` in x's dtype."""
    return F.linear(x, weight.to(x.dtype))


__all__ = ["lowrank_linear", "lowrank_linear_auto", "narrow_linear", "narrow_linear_auto", "reference_lowrank_linear",
           "LOWRANK_DEFAULTS", "NARROW_DEFAULTS"]
