"""Gather a few rows per batch item: ``y[b * G + g] = x[b, idx[b, g]]`` (-1 entries read row 0).

The Longformer's global query rows: their ``query_global`` projection runs on these G rows only. One Triton
program per output row (vectorized copy over the channels), launched through a ``BoundLaunch`` (so the native
eager layers can launch it directly). ``reference_gather_rows`` is the PyTorch version and the fallback.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._common import HAS_TRITON, BoundLaunch, KernelLauncher, interpreting, triton_usable

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _gather_rows_kernel(X, IDX, Y, sxb, sxn, sib, G, C, BLOCK_C: tl.constexpr):
        pid = tl.program_id(0)
        b = pid // G
        row = tl.maximum(tl.load(IDX + b * sib + pid % G), 0).to(tl.int64)
        src = X + b.to(tl.int64) * sxb + row * sxn
        dst = Y + pid.to(tl.int64) * C
        cols = tl.arange(0, BLOCK_C)
        for c0 in range(0, C, BLOCK_C):
            m = c0 + cols < C
            tl.store(dst + c0 + cols, tl.load(src + c0 + cols, mask=m), mask=m)

    _GATHER = KernelLauncher(_gather_rows_kernel)


def reference_gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """PyTorch reference: (B * G, C) rows ``x[b, max(idx[b, g], 0)]``; ``idx`` (B or 1, G)."""
    B, G = x.shape[0], idx.shape[1]
    i = idx.long().clamp_min(0).expand(B, G)
    return torch.gather(x, 1, i[:, :, None].expand(B, G, x.shape[2])).reshape(B * G, x.shape[2])


def bound_gather_rows(x: torch.Tensor, idx: torch.Tensor) -> BoundLaunch:
    """The bound launch for this signature (head = (x, idx, y)); x (B, N, C) with unit channel stride,
    idx int32 (B or 1, G) with unit stride along G, all 16-byte aligned."""
    B, _, C = x.shape
    G = idx.shape[1]
    sib = idx.stride(0) if idx.shape[0] > 1 else 0
    key = (x.device.index, x.dtype, idx.dtype, tuple(x.shape), x.stride(0), x.stride(1), sib, G, interpreting())
    b = _BOUND.get(key)
    if b is None:
        if len(_BOUND) > 256:
            _BOUND.clear()
        block = min(1024, triton.next_power_of_2(C))
        b = _BOUND[key] = BoundLaunch(_GATHER, key, (B * G,), (x.stride(0), x.stride(1), sib, G, C, block),
                                      {} if interpreting() else {"num_warps": 4})
    return b


def gather_rows(x: torch.Tensor, idx: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B * G, C) rows ``x[b, max(idx[b, g], 0)]`` (``idx``: (B or 1, G) int32, -1 padded); Triton where it
    runs (CUDA, or CPU under the interpreter), else PyTorch."""
    B, _, C = x.shape
    G = idx.shape[1]
    y = out if out is not None else torch.empty(B * G, C, dtype=x.dtype, device=x.device)
    ok = (triton_usable(x) and x.stride(2) == 1 and idx.dtype == torch.int32 and idx.stride(-1) == 1
          and idx.device == x.device and y.is_contiguous() and idx.shape[0] in (1, B)
          and not ((x.data_ptr() | idx.data_ptr() | y.data_ptr()) & 15))
    if not ok:
        y.copy_(reference_gather_rows(x, idx))
        return y
    raw = torch._C._cuda_getCurrentRawStream(x.device.index) if x.is_cuda else None
    bound_gather_rows(x, idx)((x, idx, y), raw)
    return y


_BOUND: dict = {}


__all__ = ["gather_rows", "reference_gather_rows", "bound_gather_rows"]
