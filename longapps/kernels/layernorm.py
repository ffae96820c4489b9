"""Fused residual add + LayerNorm (one read of each input, one write): ``LN(x + r) * w + b``.

Used by the Longformer encoder (inference). ``reference_add_layernorm`` is the PyTorch version
(and the fallback off CUDA).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, BoundLaunch, KernelLauncher, interpreting

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def layernorm_rows(x, m, cols, C, W, Bias, eps):
        """LayerNorm of the fp32 rows ``x`` [ROWS, BLOCK] (``m``: valid entries, ``cols``: column offsets,
        ``C`` columns), times ``W`` plus ``Bias``; fp32. Shared with ``embed_layernorm``."""
        mean = tl.sum(x, 1) / C
        d = tl.where(m, x - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(d * d, 1) / C + eps)
        cm = cols < C
        w = tl.load(W + cols, mask=cm, other=1.0).to(tl.float32)
        b = tl.load(Bias + cols, mask=cm, other=0.0).to(tl.float32)
        return d * rstd[:, None] * w[None, :] + b[None, :]

    @triton.jit
    def _add_ln_kernel(X, R, W, Bias, Y, sx, sr, sy, M, C, eps, ROWS: tl.constexpr, BLOCK: tl.constexpr):
        """``ROWS`` rows of ``LN(x + r) * w + b`` per program (fp32 math)."""
        rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        m = (rows[:, None] < M) & (cols[None, :] < C)
        x = tl.load(X + rows[:, None] * sx + cols[None, :], mask=m, other=0.0).to(tl.float32)
        x += tl.load(R + rows[:, None] * sr + cols[None, :], mask=m, other=0.0).to(tl.float32)
        y = layernorm_rows(x, m, cols, C, W, Bias, eps)
        tl.store(Y + rows[:, None] * sy + cols[None, :], y.to(Y.dtype.element_ty), mask=m)

    _ADD_LN = KernelLauncher(_add_ln_kernel)  # no Triton argument binding per launch once compiled


def reference_add_layernorm(x: torch.Tensor, r: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                            eps: float) -> torch.Tensor:
    """PyTorch reference: layer_norm(x + r)."""
    return F.layer_norm(x + r, (x.shape[-1],), weight, bias, eps)


def add_layernorm(x: torch.Tensor, r: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``layer_norm(x + r)`` over the last dim; one Triton kernel on CUDA (fp32 math), else PyTorch.

    Host cost matters here (an eager Longformer forward makes 24 of these calls): contiguous inputs go
    without reshapes, a bound launch per signature (rows, dtypes, device, eps) and Triton's C launch."""
    if not (HAS_TRITON and x.is_cuda and not interpreting()) or torch.is_grad_enabled() and (
            x.requires_grad or r.requires_grad or weight.requires_grad):
        return reference_add_layernorm(x, r, weight, bias, eps)
    C = x.shape[-1]
    if x.is_contiguous() and r.is_contiguous() and not (
            (x.data_ptr() | r.data_ptr() | weight.data_ptr() | bias.data_ptr()) & 15):
        b = bound_add_layernorm(x, r, weight, eps)
        y = torch.empty_like(x)
        b((x, r, weight, bias, y), torch._C._cuda_getCurrentRawStream(x.get_device()))
        return y
    x2, r2 = x.reshape(-1, C), r.reshape(-1, C)
    if x2.stride(-1) != 1 or r2.stride(-1) != 1:
        x2, r2 = x2.contiguous(), r2.contiguous()
    y = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    M, rows, warps = x2.shape[0], LN_DEFAULTS["rows"], LN_DEFAULTS["num_warps"]
    _ADD_LN(None, (triton.cdiv(M, rows),), (x2, r2, weight, bias, y, x2.stride(0), r2.stride(0), y.stride(0), M, C,
                                            eps, rows, triton.next_power_of_2(C)), {"num_warps": warps})
    return y.view(x.shape)


def bound_add_layernorm(x: torch.Tensor, r: torch.Tensor, weight: torch.Tensor, eps: float) -> BoundLaunch:
    """The bound launch of ``add_layernorm`` for contiguous 16-byte-aligned CUDA inputs of this signature
    (rows of C values; head = (x, r, weight, bias, y)); every non-tensor argument is fixed by the key."""
    C = x.shape[-1]
    M = x.numel() // C
    rows, warps = LN_DEFAULTS["rows"], LN_DEFAULTS["num_warps"]
    key = (x.get_device(), x.dtype, r.dtype, weight.dtype, M, C, eps, rows, warps)
    b = _BOUND.get(key)
    if b is None:
        if len(_BOUND) > 256:
            _BOUND.clear()
        b = _BOUND[key] = BoundLaunch(_ADD_LN, key, (triton.cdiv(M, rows),),
                                      (C, C, C, M, C, eps, rows, triton.next_power_of_2(C)), {"num_warps": warps})
    return b


_BOUND: dict = {}  # launcher key -> BoundLaunch
# rows per program (a power of two) and warps of the add+LayerNorm launch, part of every launch key; 2 rows: 2-3%
# over one (run 94, benchmarks/layernorm.py)
LN_DEFAULTS = {"rows": 2, "num_warps": 4}
