"""``y = x @ w.T`` for a small inner dimension (Mamba's dt_proj: dt_rank 48 -> d_inner), one Triton kernel.

With K <= 128 the whole inner dimension fits one tensor-core dot per output tile, so the kernel is a single load of
x and w tiles and a store: bound by writing y. cuBLAS treats it as a general GEMM (tiles sized for a long K). No
autograd: ``MambaMixer`` uses it for inference only; ``F.linear`` is the reference and the fallback. (The same idea
for x_proj, a small output over K = 1,536, measured 10.5 us per layer against cuBLAS's 5.6 in run 75: removed.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, dot_dtype, interpreting, triton_or_fallback

# output tile and warps; benchmarks/mamba_gpu.py compares them (and "enabled": False, cuBLAS) on the whole model
LOWRANK_DEFAULTS = {"enabled": True, "BM": 64, "BN": 128, "num_warps": 4}
MAX_K = 128

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


def lowrank_linear_auto(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The Triton kernel for inference on CUDA (no gradient wanted, K <= 128, ``LOWRANK_DEFAULTS["enabled"]``),
    ``F.linear`` otherwise and if the kernel fails to build."""
    if (x.is_cuda and HAS_TRITON and not interpreting() and LOWRANK_DEFAULTS["enabled"] and x.shape[-1] <= MAX_K
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return triton_or_fallback("lowrank_linear", lambda: lowrank_linear(x, weight),
                                  lambda: reference_lowrank_linear(x, weight))
    return reference_lowrank_linear(x, weight)


def reference_lowrank_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PyTorch: ``F.linear`` in x's dtype."""
    return F.linear(x, weight.to(x.dtype))


__all__ = ["lowrank_linear", "lowrank_linear_auto", "reference_lowrank_linear", "LOWRANK_DEFAULTS"]
