"""Single-query decode over a StreamingLLM (sinks + window) KV cache: split-K Triton kernel.

The query sits at position ``Nk - 1``; it sees keys ``j < sinks`` and ``Nk-1-window <= j``.
The band is cut into splits (one program each, the first also takes the sinks); each writes a
partial (acc, max, sum) and a small PyTorch log-sum-exp merge finishes. ``reference_sinks_decode``
is the plain PyTorch reference.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ._common import HAS_TRITON, LOG2E, interpreting

if HAS_TRITON:
    import triton
    import triton.language as tl

    from ._common import head_ptr


def reference_sinks_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: int, window: int,
                           scale: Optional[float] = None, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Plain reference: q (B, H, 1, D) at position Nk-1 against k, v (B, H, Nk, D)."""
    nk, d = k.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    j = torch.arange(nk, device=q.device)
    m = (j < sinks) | (nk - 1 - j <= window)
    s = torch.matmul(q.to(compute_dtype), k.to(compute_dtype).transpose(-1, -2)) * scale
    s = s.masked_fill(~m, float("-inf"))
    return torch.matmul(torch.softmax(s, -1), v.to(compute_dtype)).to(q.dtype)


if HAS_TRITON:

    @triton.jit
    def _softmax_step(q, kbase, vbase, offs, ok, offs_d, skn, svn, qk_scale, m_i, l_i, acc):
        """One online-softmax update of the running (max, sum, output) with the keys at `offs`."""
        k = tl.load(kbase + offs[:, None] * skn + offs_d[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
        v = tl.load(vbase + offs[:, None] * svn + offs_d[None, :], mask=ok[:, None], other=0.0).to(tl.float32)
        sc = tl.where(ok, tl.sum(k * q[None, :], 1) * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(sc, 0))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(sc - m_new)
        l_i = l_i * alpha + tl.sum(p, 0)
        acc = acc * alpha + tl.sum(p[:, None] * v, 0)
        return m_new, l_i, acc

    @triton.jit
    def _decode_kernel(Q, K, V, PO, PML, sqb, sqh, skb, skh, skn, svb, svh, svn,
                       H, NK, SINKS, BAND_LO, KEYS_PER_SPLIT, qk_scale,
                       BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
        bh = tl.program_id(0)
        s = tl.program_id(1)
        ns = tl.num_programs(1)
        offs_d = tl.arange(0, BLOCK_D)
        q = tl.load(head_ptr(Q, bh, H, sqb, sqh) + offs_d).to(tl.float32)
        kbase = head_ptr(K, bh, H, skb, skh)
        vbase = head_ptr(V, bh, H, svb, svh)
        m_i = -1.0e30
        l_i = 0.0
        acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        if s == 0:  # sinks not already inside the band
            for start in range(0, tl.minimum(SINKS, BAND_LO), BLOCK_N):
                offs = start + tl.arange(0, BLOCK_N)
                ok = offs < tl.minimum(SINKS, BAND_LO)
                m_i, l_i, acc = _softmax_step(q, kbase, vbase, offs, ok, offs_d, skn, svn, qk_scale, m_i, l_i, acc)
        lo = BAND_LO + s * KEYS_PER_SPLIT
        hi = tl.minimum(NK, lo + KEYS_PER_SPLIT)
        for start in range(lo, hi, BLOCK_N):
            offs = start + tl.arange(0, BLOCK_N)
            ok = offs < hi
            m_i, l_i, acc = _softmax_step(q, kbase, vbase, offs, ok, offs_d, skn, svn, qk_scale, m_i, l_i, acc)
        row = bh.to(tl.int64) * ns + s
        tl.store(PO + row * BLOCK_D + offs_d, acc)
        tl.store(PML + row * 2, m_i)
        tl.store(PML + row * 2 + 1, l_i)


def sinks_window_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: int, window: int,
                        scale: Optional[float] = None, keys_per_split: Optional[int] = None) -> torch.Tensor:
    """One decode step: q (B, H, 1, D) at position Nk-1 over the cache k, v (B, H, Nk, D)."""
    B, H, nq, D = q.shape
    if nq != 1:
        raise ValueError(f"q must hold a single query (B, H, 1, D), got {tuple(q.shape)}")
    if D not in (16, 32, 64, 128):
        raise ValueError(f"head dim must be 16/32/64/128, got {D}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dimension")
    NK = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    band_lo = max(0, NK - 1 - window)
    BN = 16 if interpreting() else 64
    kps = keys_per_split or (32 if interpreting() else 256)
    ns = max(1, -(-(NK - band_lo) // kps))
    po = torch.empty(B * H * ns, D, dtype=torch.float32, device=q.device)
    pml = torch.empty(B * H * ns, 2, dtype=torch.float32, device=q.device)
    ex = {} if interpreting() else {"num_warps": 4}
    _decode_kernel[(B * H, ns)](q, k, v, po, pml, q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2),
                                v.stride(0), v.stride(1), v.stride(2), H, NK, sinks, band_lo, kps, scale * LOG2E,
                                BLOCK_N=BN, BLOCK_D=D, **ex)
    po = po.view(B, H, ns, D)
    m = pml[:, 0].view(B, H, ns)
    lsum = pml[:, 1].view(B, H, ns)
    mx = m.max(-1, keepdim=True).values
    w = torch.exp2(m - mx)
    out = (po * w[..., None]).sum(2) / (lsum * w).sum(-1, keepdim=True)
    return out[:, :, None, :].to(q.dtype)
