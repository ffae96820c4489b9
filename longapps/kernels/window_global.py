"""Sliding window + global tokens (Longformer) and sinks + window (StreamingLLM): Triton kernels.

Mask (before key padding): query i attends key j iff ``band(i, j) or j in G or i in G``
(``and j <= i`` when causal), band = ``|i-j| <= W`` (causal: ``0 <= i-j <= W``).

Forward, one launch for the non-global rows: each query tile visits only the key tiles that
intersect its band (interior tiles without any elementwise mask, edge tiles masked) plus the
global keys gathered into one or two compact tiles (pairs already inside the band excluded, so
nothing is counted twice). Global query rows (they attend everything) are a second launch, a
split-K pass over all keys whose last split per row (atomic ticket) merges the partials in one
vectorized step; by default it runs on a side stream beside the band launch (which then leaves
those rows alone). Ticket counters live in a cached zeroed buffer that the kernels leave zeroed, so
a call launches no memset (CUDA-graph capturable with a prepared index).
Sinks are the special case "global keys = the prefix [0, S), no global rows".
On Hopper the band's Q, K, V tiles can come through TMA tensor descriptors (``FWD_DEFAULTS["tma"]``,
``_tma_layout``); the partial last key tile always takes pointer loads.

Backward: dK/dV per key tile over the queries of its band; dK/dV of the global keys from the
non-global queries outside their band (atomics into a compact buffer); dQ per query tile; the
global query rows (G x N, small) go through a dense PyTorch recomputation.

``reference_window_global`` is the plain PyTorch reference (dense mask).
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Tuple, Union

import torch

from ..attention.reference import dense_global_rows, gather_positions
from ._common import (HAS_TRITON, LOG2E, BoundLaunch, KernelLauncher, default_blocks, dot_dtype, fork_to, interpreting,
                      join_from, side_stream)

if HAS_TRITON:
    import triton
    import triton.language as tl

    from ._common import head_ptr

    try:  # host-side TMA descriptors (triton >= 3.4)
        from triton.tools.tensor_descriptor import TensorDescriptor
    except ImportError:  # pragma: no cover
        TensorDescriptor = None


# ----------------------------------------------------------------------------------------------
# reference
# ----------------------------------------------------------------------------------------------
def reference_window_global(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                            global_idx: Optional[torch.Tensor] = None, causal: bool = False,
                            key_padding_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                            sinks: int = 0, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Dense-mask PyTorch reference (``sinks`` > 0: the prefix [0, sinks) are global *keys* only)."""
    n, d = q.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    i = torch.arange(n, device=q.device)[:, None]
    j = torch.arange(n, device=q.device)[None, :]
    band = ((i - j) <= window) & ((i - j) >= (0 if causal else -window))
    m = band[None].expand(q.shape[0], n, n).clone()
    if global_idx is not None and global_idx.numel():
        gi = global_idx if global_idx.dim() == 2 else global_idx[None].expand(q.shape[0], -1)
        isg = torch.zeros(q.shape[0], n + 1, dtype=torch.bool, device=q.device)
        isg.scatter_(1, torch.where(gi < 0, n, gi), True)
        isg = isg[:, :n]
        m = m | isg[:, None, :] | isg[:, :, None]
    if sinks:
        m = m | (j < sinks)[None]
    if causal:
        m = m & (j <= i)[None]
    if key_padding_mask is not None:
        m = m & key_padding_mask.bool()[:, None, :]
    s = torch.matmul(q.to(compute_dtype), k.to(compute_dtype).transpose(-1, -2)) * scale
    s = s.masked_fill(~m[:, None], float("-inf"))
    p = torch.nan_to_num(torch.softmax(s, -1), nan=0.0)
    return torch.matmul(p, v.to(compute_dtype)).to(q.dtype)


# ----------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _in_band(diff, W, CAUSAL: tl.constexpr):
        """Pairs with query - key = ``diff`` inside the window (causal: 0 <= diff <= W)."""
        if CAUSAL:
            ok = (diff <= W) & (diff >= 0)
        else:
            ok = (diff <= W) & (diff >= -W)
        return ok

    @triton.jit
    def _outside_band(diff, W, CAUSAL: tl.constexpr):
        """Allowed pairs that the window does not cover (the global keys' and rows' share)."""
        if CAUSAL:
            ok = diff > W
        else:
            ok = (diff > W) | (diff < -W)
        return ok

    @triton.jit
    def _online_softmax_step(acc, l_i, m_i, qk, v, qk_scale, DT: tl.constexpr):
        """One key tile of flash attention: ``qk`` raw scores (masked pairs -inf), m in log2 units."""
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(DT), v.to(DT), acc)
        return acc, l_i, m_new

    @triton.jit
    def _fwd_band(acc, l_i, m_i, q, kbase, vbase, stride_kn, stride_vn, kpm_base, offs_m, offs_d,
                  lo, hi, N, W, qk_scale, n_sink, S, desc_k, desc_v, row0, col0,
                  MASKED: tl.constexpr, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, SINKS: tl.constexpr,
                  BLOCK_N: tl.constexpr, DT: tl.constexpr, TMA: tl.constexpr):
        """Online-softmax over key tiles: ``n_sink`` prefix tiles (keys < S, sinks) then [lo, hi).
        ``TMA``: K and V tiles come through tensor descriptors (rows ``row0 + key``, columns from
        ``col0``); the caller keeps such tiles below N (past N the rows belong to another head)."""
        offs_n0 = tl.arange(0, BLOCK_N)
        n_it = n_sink + tl.cdiv(hi - lo, BLOCK_N)
        for it in range(0, n_it):
            if SINKS:
                start_n = tl.where(it < n_sink, it * BLOCK_N, lo + (it - n_sink) * BLOCK_N)
            else:
                start_n = lo + it * BLOCK_N
            offs_n = start_n + offs_n0
            if TMA:  # whole tiles below N only (the caller's split): no row of another head
                k = desc_k.load([row0 + start_n, col0]).T
                v = desc_v.load([row0 + start_n, col0])
                kv_ok = offs_n < N
            elif MASKED:
                kv_ok = offs_n < N
                k = tl.load(kbase + offs_n[None, :] * stride_kn + offs_d[:, None], mask=kv_ok[None, :], other=0.0)
                v = tl.load(vbase + offs_n[:, None] * stride_vn + offs_d[None, :], mask=kv_ok[:, None], other=0.0)
            else:
                k = tl.load(kbase + offs_n[None, :] * stride_kn + offs_d[:, None])
                v = tl.load(vbase + offs_n[:, None] * stride_vn + offs_d[None, :])
            qk = tl.dot(q, k.to(DT))
            if MASKED:
                diff = offs_m[:, None] - offs_n[None, :]
                ok = _in_band(diff, W, CAUSAL)
                if SINKS:
                    ok = ok | ((offs_n[None, :] < S) & (diff >= 0))
                ok = ok & kv_ok[None, :]
                qk = tl.where(ok, qk, float("-inf"))
            if HAS_KPM:
                kp = tl.load(kpm_base + offs_n, mask=offs_n < N, other=0)
                qk = tl.where(kp[None, :] != 0, qk, float("-inf"))
            acc, l_i, m_i = _online_softmax_step(acc, l_i, m_i, qk, v, qk_scale, DT)
        return acc, l_i, m_i

    @triton.jit
    def _load_gidx(gbase, offs_g, G, GK_PREFIX: tl.constexpr):
        if GK_PREFIX:
            gval = offs_g < G
            gidx = offs_g
        else:
            gidx = tl.load(gbase + offs_g, mask=offs_g < G, other=-1)
            gval = gidx >= 0
        return tl.where(gval, gidx, 0), gval

    @triton.jit
    def _global_ok(offs_m, gidx, gval, W, CAUSAL: tl.constexpr):
        """Pair (row, global key) that is not already covered by the band."""
        return _outside_band(offs_m[:, None] - gidx[None, :], W, CAUSAL) & gval[None, :]

    @triton.jit
    def _band_program(Q, K, V, O, LSE, GIDX, KPM, DQ, DK, DV, t, bh,
                      sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son, sgb, skpb,
                      H, N, W, G, qk_scale, RB, RH, CH,
                      CAUSAL: tl.constexpr, HAS_GK: tl.constexpr, GK_PREFIX: tl.constexpr,
                      HAS_KPM: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr, BLOCK_GK: tl.constexpr,
                      SPLIT: tl.constexpr, SKIP_GROWS: tl.constexpr, TMA: tl.constexpr):
        """One query tile of non-global rows: band tiles + gathered global-key tile(s). ``SKIP_GROWS``: leave
        the global query rows of O and LSE alone (another program writes them). ``TMA``: Q, K, V band tiles
        through the 2-D descriptors DQ, DK, DV; head (b, h) starts at row b*RB + h*RH, column h*CH."""
        b = bh // H
        m0 = t * BLOCK_M
        offs_m = m0 + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        qbase = head_ptr(Q, bh, H, sqb, sqh)
        kbase = head_ptr(K, bh, H, skb, skh)
        vbase = head_ptr(V, bh, H, svb, svh)
        kpm_base = KPM + b.to(tl.int64) * skpb
        row0 = b * RB + (bh % H) * RH
        col0 = (bh % H) * CH
        if TMA:
            q = DQ.load([row0 + m0, col0]).to(DT)
        else:
            q = tl.load(qbase + offs_m[:, None] * sqn + offs_d[None, :], mask=offs_m[:, None] < N, other=0.0).to(DT)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30

        lo = (tl.maximum(m0 - W, 0) // BLOCK_N) * BLOCK_N
        if CAUSAL:
            hi = tl.minimum(N, m0 + BLOCK_M)
            e = m0
        else:
            hi = tl.minimum(N, m0 + BLOCK_M + W)
            e = m0 + W
        ilo = ((tl.maximum(m0 + BLOCK_M - 1 - W, 0) + BLOCK_N - 1) // BLOCK_N) * BLOCK_N
        ilo = tl.minimum(tl.maximum(ilo, lo), hi)
        ihi = tl.minimum(((e + 1) // BLOCK_N) * BLOCK_N, (N // BLOCK_N) * BLOCK_N)
        ihi = tl.maximum(ihi, ilo)
        # With TMA, masked loops stop at the last whole tile (nfull) and the partial tile past it, if any,
        # is a last pointer-load step (``tail``): descriptor tiles never reach another head's rows.
        if TMA:
            nfull = (N // BLOCK_N) * BLOCK_N
            tail = tl.maximum(lo, nfull)
        else:
            nfull = N
            tail = hi
        if SPLIT:  # interior tiles without elementwise masks, edges masked
            acc, l_i, m_i = _fwd_band(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, offs_m, offs_d,
                                      lo, tl.minimum(ilo, nfull), N, W, qk_scale, 0, 0, DK, DV, row0, col0,
                                      True, CAUSAL, HAS_KPM, False, BLOCK_N, DT, TMA)
            acc, l_i, m_i = _fwd_band(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, offs_m, offs_d,
                                      ilo, ihi, N, W, qk_scale, 0, 0, DK, DV, row0, col0,
                                      False, CAUSAL, HAS_KPM, False, BLOCK_N, DT, TMA)
            acc, l_i, m_i = _fwd_band(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, offs_m, offs_d,
                                      ihi, tl.minimum(hi, nfull), N, W, qk_scale, 0, 0, DK, DV, row0, col0,
                                      True, CAUSAL, HAS_KPM, False, BLOCK_N, DT, TMA)
        elif GK_PREFIX:  # one pipelined loop: sink tiles below the band, then the band
            n_sink = tl.minimum(tl.cdiv(G, BLOCK_N), lo // BLOCK_N)
            acc, l_i, m_i = _fwd_band(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, offs_m, offs_d,
                                      lo, tl.minimum(hi, nfull), N, W, qk_scale, n_sink, G, DK, DV, row0, col0,
                                      True, CAUSAL, HAS_KPM, True, BLOCK_N, DT, TMA)
        else:  # one pipelined loop over the band, masks on every tile
            acc, l_i, m_i = _fwd_band(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, offs_m, offs_d,
                                      lo, tl.minimum(hi, nfull), N, W, qk_scale, 0, 0, DK, DV, row0, col0,
                                      True, CAUSAL, HAS_KPM, False, BLOCK_N, DT, TMA)
        if TMA:  # the partial last key tile, if this band reaches it
            acc, l_i, m_i = _fwd_band(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, offs_m, offs_d,
                                      tail, hi, N, W, qk_scale, 0, 0, DK, DV, row0, col0,
                                      True, CAUSAL, HAS_KPM, False, BLOCK_N, DT, False)
        row_ok = offs_m < N
        if HAS_GK and (SPLIT or not GK_PREFIX):
            if GK_PREFIX:
                g_hi = tl.minimum(G, tl.maximum(m0 + BLOCK_M - 1 - W, 0))
            else:
                g_hi = G
            gbase = GIDX + b.to(tl.int64) * sgb
            for g0 in range(0, g_hi, BLOCK_GK):
                offs_g = g0 + tl.arange(0, BLOCK_GK)
                gidx, gval = _load_gidx(gbase, offs_g, G, GK_PREFIX)
                k = tl.load(kbase + gidx[None, :] * skn + offs_d[:, None], mask=gval[None, :], other=0.0)
                v = tl.load(vbase + gidx[:, None] * svn + offs_d[None, :], mask=gval[:, None], other=0.0)
                qk = tl.dot(q, k.to(DT))
                ok = _global_ok(offs_m, gidx, gval, W, CAUSAL)
                if HAS_KPM:
                    kp = tl.load(kpm_base + gidx, mask=gval, other=0)
                    ok = ok & (kp[None, :] != 0)
                qk = tl.where(ok, qk, float("-inf"))
                acc, l_i, m_i = _online_softmax_step(acc, l_i, m_i, qk, v, qk_scale, DT)
        if SKIP_GROWS:
            gb = GIDX + b.to(tl.int64) * sgb
            for g0 in range(0, G, 16):
                offs_g = g0 + tl.arange(0, 16)
                gi = tl.load(gb + offs_g, mask=offs_g < G, other=-1)
                row_ok = row_ok & (tl.max((offs_m[:, None] == gi[None, :]).to(tl.int32), 1) == 0)
        empty = l_i == 0.0
        out = acc / tl.where(empty, 1.0, l_i)[:, None]
        lse = tl.where(empty, float("inf"), m_i + tl.math.log2(tl.where(empty, 1.0, l_i)))
        obase = head_ptr(O, bh, H, sob, soh)
        tl.store(obase + offs_m[:, None] * son + offs_d[None, :], out.to(O.dtype.element_ty), mask=row_ok[:, None])
        tl.store(LSE + bh.to(tl.int64) * N + offs_m, lse, mask=row_ok)

    @triton.jit
    def _merge_row(PO, PML, row0, NPART, offs_d, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
        """Merge the NPART split-K partials (acc, m, l) stored at rows row0 .. row0+NPART-1 into one
        attention row; BLOCK_C partials per (vectorized) step. Returns (out, lse) as [BLOCK_D] vectors."""
        m_a = tl.zeros([BLOCK_D], dtype=tl.float32) - 1.0e30  # running max (all entries equal)
        l_a = tl.zeros([BLOCK_D], dtype=tl.float32)
        a_a = tl.zeros([BLOCK_D], dtype=tl.float32)
        for c0 in range(0, NPART, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            cm = offs_c < NPART
            r = row0 + offs_c
            m_c = tl.load(PML + r * 2, mask=cm, other=-1.0e30, cache_modifier=".cg")
            l_c = tl.load(PML + r * 2 + 1, mask=cm, other=0.0, cache_modifier=".cg")
            a_c = tl.load(PO + r[:, None] * BLOCK_D + offs_d[None, :], mask=cm[:, None], other=0.0,
                          cache_modifier=".cg")
            m_new = tl.maximum(m_a, tl.max(m_c, 0))
            w = tl.math.exp2(m_c - tl.max(m_new, 0))
            alpha = tl.math.exp2(m_a - m_new)
            a_a = a_a * alpha + tl.sum(a_c * w[:, None], 0)
            l_a = l_a * alpha + tl.sum(l_c * w, 0)
            m_a = m_new
        empty = l_a == 0.0
        out = a_a / tl.where(empty, 1.0, l_a)
        lse = tl.where(empty, float("inf"), m_a + tl.math.log2(tl.where(empty, 1.0, l_a)))
        return out, lse

    @triton.jit
    def _grow_keys(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, grow, gval, offs_d, lo, hi, N, qk_scale,
                   desc_k, desc_v, row0, col0, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr,
                   BLOCK_N: tl.constexpr, DT: tl.constexpr, TMA: tl.constexpr):
        """Global rows ``grow`` (where ``gval``) over the key tiles [lo, hi): online softmax. ``TMA``: tiles
        through the descriptors (whole tiles below N only, as in ``_fwd_band``)."""
        for start_n in range(lo, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kv_ok = offs_n < N
            if TMA:
                k = desc_k.load([row0 + start_n, col0]).T
                v = desc_v.load([row0 + start_n, col0])
            else:
                k = tl.load(kbase + offs_n[None, :] * skn + offs_d[:, None], mask=kv_ok[None, :], other=0.0)
                v = tl.load(vbase + offs_n[:, None] * svn + offs_d[None, :], mask=kv_ok[:, None], other=0.0)
            qk = tl.dot(q, k.to(DT))
            ok = kv_ok[None, :] & gval[:, None]
            if CAUSAL:
                ok = ok & (offs_n[None, :] <= grow[:, None])
            if HAS_KPM:
                kp = tl.load(kpm_base + offs_n, mask=kv_ok, other=0)
                ok = ok & (kp[None, :] != 0)
            qk = tl.where(ok, qk, float("-inf"))
            acc, l_i, m_i = _online_softmax_step(acc, l_i, m_i, qk, v, qk_scale, DT)
        return acc, l_i, m_i

    @triton.jit
    def _grow_program(QG, KG, VG, GIDX, KPM, PO, PML, CNT, O, LSE, t, bh,
                      sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son, sgb, skpb,
                      H, N, G, GP, qk_scale, KEYS_PER_SPLIT, NSPLIT,
                      CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, BLOCK_G: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr, QG_COMPACT: tl.constexpr,
                      BLOCK_C: tl.constexpr, DKG, DVG, RB, RH, CH, TMA: tl.constexpr):
        """Global query rows, split-K over the keys; the last split to finish merges the partials
        (atomic ticket) and writes the rows of O and LSE. ``QG_COMPACT``: QG holds only the global
        rows, (B, H, G, D) in ``GIDX`` order. ``TMA``: K and V tiles through the descriptors DKG, DVG
        (head (b, h) at row b*RB + h*RH, column h*CH)."""
        gt = t // NSPLIT
        s = t % NSPLIT
        b = bh // H
        offs_g = gt * BLOCK_G + tl.arange(0, BLOCK_G)
        offs_d = tl.arange(0, BLOCK_D)
        grow = tl.load(GIDX + b.to(tl.int64) * sgb + offs_g, mask=offs_g < G, other=-1)
        gval = grow >= 0
        grow_s = tl.where(gval, grow, 0)
        qbase = head_ptr(QG, bh, H, sqb, sqh)
        kbase = head_ptr(KG, bh, H, skb, skh)
        vbase = head_ptr(VG, bh, H, svb, svh)
        kpm_base = KPM + b.to(tl.int64) * skpb
        if QG_COMPACT:
            q = tl.load(qbase + offs_g[:, None] * sqn + offs_d[None, :], mask=gval[:, None], other=0.0).to(DT)
        else:
            q = tl.load(qbase + grow_s[:, None] * sqn + offs_d[None, :], mask=gval[:, None], other=0.0).to(DT)
        acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
        l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
        m_i = tl.zeros([BLOCK_G], dtype=tl.float32) - 1.0e30
        k_lo = s * KEYS_PER_SPLIT
        k_hi = tl.minimum(N, k_lo + KEYS_PER_SPLIT)
        if TMA:  # whole tiles through the descriptors, the partial last tile (if any) by pointer loads
            row0 = b * RB + (bh % H) * RH
            col0 = (bh % H) * CH
            nfull = (N // BLOCK_N) * BLOCK_N
            acc, l_i, m_i = _grow_keys(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, grow, gval, offs_d,
                                       k_lo, tl.minimum(k_hi, nfull), N, qk_scale, DKG, DVG, row0, col0,
                                       CAUSAL, HAS_KPM, BLOCK_N, DT, True)
            k_lo = tl.maximum(k_lo, nfull)
        acc, l_i, m_i = _grow_keys(acc, l_i, m_i, q, kbase, vbase, skn, svn, kpm_base, grow, gval, offs_d,
                                   k_lo, k_hi, N, qk_scale, DKG, DVG, 0, 0, CAUSAL, HAS_KPM, BLOCK_N, DT, False)
        row = (bh.to(tl.int64) * GP + offs_g) * NSPLIT + s
        tl.store(PO + row[:, None] * BLOCK_D + offs_d[None, :], acc)
        tl.store(PML + row * 2, m_i)
        tl.store(PML + row * 2 + 1, l_i)
        ticket = tl.atomic_add(CNT + bh * (GP // BLOCK_G) + gt, 1)  # acq_rel: partials visible
        if ticket == NSPLIT - 1:  # last split of this row tile: merge each valid row, splits vectorized
            obase = head_ptr(O, bh, H, sob, soh)
            for r in range(0, tl.minimum(G - gt * BLOCK_G, BLOCK_G)):
                gi = tl.load(GIDX + b.to(tl.int64) * sgb + gt * BLOCK_G + r)
                if gi >= 0:
                    out, lse = _merge_row(PO, PML, (bh.to(tl.int64) * GP + gt * BLOCK_G + r) * NSPLIT, NSPLIT,
                                          offs_d, BLOCK_C, BLOCK_D)
                    tl.store(obase + gi * son + offs_d, out.to(O.dtype.element_ty))
                    tl.store(LSE + bh.to(tl.int64) * N + gi + offs_d * 0, lse, mask=offs_d == 0)
            tl.atomic_xchg(CNT + bh * (GP // BLOCK_G) + gt, 0)  # ready for the next call

    @triton.jit
    def _wg_fwd_kernel(Q, K, V, O, LSE, GIDX, KPM, DQ, DK, DV,
                       sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son, sgb, skpb,
                       H, N, W, G, qk_scale, RB, RH, CH,
                       CAUSAL: tl.constexpr, HAS_GK: tl.constexpr, GK_PREFIX: tl.constexpr,
                       HAS_KPM: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr, BLOCK_GK: tl.constexpr,
                       SPLIT: tl.constexpr, TILE_MAJOR: tl.constexpr, SKIP_GROWS: tl.constexpr, TMA: tl.constexpr):
        """Band rows, one query tile per program (global rows: ``_wg_grow_kernel``)."""
        if TILE_MAJOR:
            t = tl.program_id(0)
            bh = tl.program_id(1)
        else:
            bh = tl.program_id(0)
            t = tl.program_id(1)
        _band_program(Q, K, V, O, LSE, GIDX, KPM, DQ, DK, DV, t, bh,
                      sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son, sgb, skpb,
                      H, N, W, G, qk_scale, RB, RH, CH, CAUSAL, HAS_GK, GK_PREFIX, HAS_KPM,
                      BLOCK_M, BLOCK_N, BLOCK_D, DT, BLOCK_GK, SPLIT, SKIP_GROWS, TMA)

    @triton.jit
    def _wg_grow_kernel(QG, KG, VG, GIDX, KPM, PO, PML, CNT, O, LSE, DKG, DVG,
                        gqb, gqh, gqn, gkb, gkh, gkn, gvb, gvh, gvn, sob, soh, son, sgb, skpb,
                        H, N, G, GP, qk_scale, KEYS_PER_SPLIT, NSPLIT, RB, RH, CH,
                        CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, BLOCK_G: tl.constexpr,
                        BLOCK_NG: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr, QG_COMPACT: tl.constexpr,
                        BLOCK_C: tl.constexpr, TMA: tl.constexpr):
        """Global rows as their own launch (beside or after the band launch)."""
        _grow_program(QG, KG, VG, GIDX, KPM, PO, PML, CNT, O, LSE, tl.program_id(1), tl.program_id(0),
                      gqb, gqh, gqn, gkb, gkh, gkn, gvb, gvh, gvn, sob, soh, son, sgb, skpb,
                      H, N, G, GP, qk_scale, KEYS_PER_SPLIT, NSPLIT,
                      CAUSAL, HAS_KPM, BLOCK_G, BLOCK_NG, BLOCK_D, DT, QG_COMPACT, BLOCK_C, DKG, DVG, RB, RH, CH, TMA)

    # ------------------------------------------------------------------ backward
    @triton.jit
    def _load_q_rows(qbase, dobase, LSE, DELTA, bh, N, offs_m, offs_d, q_ok, sqn, sdn, DT: tl.constexpr):
        """Query-side tiles of the backward pass: q, dO (operand dtype), lse and delta (fp32)."""
        q = tl.load(qbase + offs_m[:, None] * sqn + offs_d[None, :], mask=q_ok[:, None], other=0.0).to(DT)
        do = tl.load(dobase + offs_m[:, None] * sdn + offs_d[None, :], mask=q_ok[:, None], other=0.0).to(DT)
        lse = tl.load(LSE + bh.to(tl.int64) * N + offs_m, mask=q_ok, other=float("inf"))
        delta = tl.load(DELTA + bh.to(tl.int64) * N + offs_m, mask=q_ok, other=0.0)
        return q, do, lse, delta

    @triton.jit
    def _load_key_rows(kbase, vbase, kpm_base, rows, ok, skn, svn, offs_d, HAS_KPM: tl.constexpr, DT: tl.constexpr):
        """Key and value rows ``rows`` (where ``ok``) and which of them may be attended (key padding)."""
        k = tl.load(kbase + rows[:, None] * skn + offs_d[None, :], mask=ok[:, None], other=0.0).to(DT)
        v = tl.load(vbase + rows[:, None] * svn + offs_d[None, :], mask=ok[:, None], other=0.0).to(DT)
        key_ok = ok
        if HAS_KPM:
            key_ok = key_ok & (tl.load(kpm_base + rows, mask=ok, other=0) != 0)
        return k, v, key_ok

    @triton.jit
    def _bwd_key_tile(Q, K, V, DO, KPM, bh, H, rows, ok, sqb, sqh, skb, skh, skn, svb, svh, svn, sdb, sdh, skpb,
                      offs_d, HAS_KPM: tl.constexpr, DT: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_D: tl.constexpr):
        """Prologue of the dK/dV kernels for a tile of key rows ``rows`` (where ``ok``): the head bases of
        Q and dO, the K and V rows, which of them may be attended, and zeroed fp32 dK, dV."""
        qbase = head_ptr(Q, bh, H, sqb, sqh)
        dobase = head_ptr(DO, bh, H, sdb, sdh)
        k, v, key_ok = _load_key_rows(head_ptr(K, bh, H, skb, skh), head_ptr(V, bh, H, svb, svh),
                                      KPM + (bh // H).to(tl.int64) * skpb, rows, ok, skn, svn, offs_d, HAS_KPM, DT)
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        return qbase, dobase, k, v, key_ok, dk, dv

    @triton.jit
    def _bwd_kv_step(k, v, q, do, lse, delta, ok, qk_scale, dk, dv, DT: tl.constexpr):
        """One query tile's share of dK, dV for a key tile (FlashAttention-2 backward, keys as rows;
        ``ok``: allowed (key, query) pairs)."""
        pT = tl.where(ok, tl.math.exp2(tl.dot(k, tl.trans(q)) * qk_scale - lse[None, :]), 0.0)
        dv += tl.dot(pT.to(DT), do)
        dsT = pT * (tl.dot(v, tl.trans(do)) - delta[None, :])
        dk += tl.dot(dsT.to(DT), q)
        return dk, dv

    @triton.jit
    def _dkdv_over_queries(qbase, dobase, LSE, DELTA, bh, N, W, keys, key_ok, k, v, dk, dv, lo, hi, qk_scale,
                           offs_d, sqn, sdn, CAUSAL: tl.constexpr, IN_BAND: tl.constexpr, BLOCK_M: tl.constexpr,
                           DT: tl.constexpr):
        """dK, dV of the key rows ``keys`` from the query tiles in [lo, hi): the pairs inside the band
        (``IN_BAND``) or, for global keys, the pairs outside it."""
        for start_m in range(lo, hi, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            q_ok = offs_m < N
            q, do, lse, delta = _load_q_rows(qbase, dobase, LSE, DELTA, bh, N, offs_m, offs_d, q_ok, sqn, sdn, DT)
            diff = offs_m[None, :] - keys[:, None]
            if IN_BAND:
                ok = _in_band(diff, W, CAUSAL)
            else:
                ok = _outside_band(diff, W, CAUSAL)
            dk, dv = _bwd_kv_step(k, v, q, do, lse, delta, ok & key_ok[:, None] & q_ok[None, :], qk_scale, dk, dv, DT)
        return dk, dv

    @triton.jit
    def _wg_bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, KPM,
                            sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, skpb,
                            H, N, W, qk_scale,
                            CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, BLOCK_M: tl.constexpr,
                            BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr):
        """Band part of dK, dV (global rows carry dO = 0 here)."""
        bh = tl.program_id(0)
        t = tl.program_id(1)
        n0 = t * BLOCK_N
        offs_n = n0 + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        kv_ok = offs_n < N
        qbase, dobase, k, v, key_ok, dk, dv = _bwd_key_tile(
            Q, K, V, DO, KPM, bh, H, offs_n, kv_ok, sqb, sqh, skb, skh, skn, svb, svh, svn, sdb, sdh, skpb,
            offs_d, HAS_KPM, DT, BLOCK_N, BLOCK_D)
        if CAUSAL:
            lo = (n0 // BLOCK_M) * BLOCK_M
        else:
            lo = (tl.maximum(n0 - W, 0) // BLOCK_M) * BLOCK_M
        hi = tl.minimum(N, n0 + BLOCK_N + W)
        dk, dv = _dkdv_over_queries(qbase, dobase, LSE, DELTA, bh, N, W, offs_n, key_ok, k, v, dk, dv, lo, hi,
                                    qk_scale, offs_d, sqn, sdn, CAUSAL, True, BLOCK_M, DT)
        out = (bh.to(tl.int64) * N + offs_n)[:, None] * BLOCK_D + offs_d[None, :]
        tl.store(DK + out, dk, mask=kv_ok[:, None])
        tl.store(DV + out, dv, mask=kv_ok[:, None])

    @triton.jit
    def _wg_bwd_gk_kernel(Q, K, V, DO, LSE, DELTA, DKG, DVG, GIDX, KPM,
                          sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, sgb, skpb,
                          H, N, W, G, GP, qk_scale, ROWS_PER_SPLIT, NSPLIT,
                          CAUSAL: tl.constexpr, GK_PREFIX: tl.constexpr, HAS_KPM: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                          DT: tl.constexpr):
        """dK, dV of the global keys from queries outside their band (atomic add, fp32)."""
        bh = tl.program_id(0)
        pid = tl.program_id(1)
        gt = pid // NSPLIT
        s = pid % NSPLIT
        b = bh // H
        offs_g = gt * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        gidx, gval = _load_gidx(GIDX + b.to(tl.int64) * sgb, offs_g, G, GK_PREFIX)
        qbase, dobase, k, v, key_ok, dk, dv = _bwd_key_tile(
            Q, K, V, DO, KPM, bh, H, gidx, gval, sqb, sqh, skb, skh, skn, svb, svh, svn, sdb, sdh, skpb,
            offs_d, HAS_KPM, DT, BLOCK_N, BLOCK_D)
        r_lo = s * ROWS_PER_SPLIT
        r_hi = tl.minimum(N, r_lo + ROWS_PER_SPLIT)
        dk, dv = _dkdv_over_queries(qbase, dobase, LSE, DELTA, bh, N, W, gidx, key_ok, k, v, dk, dv, r_lo, r_hi,
                                    qk_scale, offs_d, sqn, sdn, CAUSAL, False, BLOCK_M, DT)
        out = (bh.to(tl.int64) * GP + offs_g)[:, None] * BLOCK_D + offs_d[None, :]
        tl.atomic_add(DKG + out, dk, mask=(offs_g < GP)[:, None])
        tl.atomic_add(DVG + out, dv, mask=(offs_g < GP)[:, None])

    @triton.jit
    def _bwd_q_step(q, do, k, v, lse, delta, ok, kpm_base, keys, key_valid, qk_scale, dq,
                    HAS_KPM: tl.constexpr, DT: tl.constexpr):
        """One key tile's share of dQ (FlashAttention-2 backward); ``ok``: allowed (query, key) pairs
        before key padding, ``keys``: the tile's key positions (``key_valid`` where they exist)."""
        if HAS_KPM:
            ok = ok & (tl.load(kpm_base + keys, mask=key_valid, other=0) != 0)[None, :]
        p = tl.where(ok, tl.math.exp2(tl.dot(q, tl.trans(k)) * qk_scale - lse[:, None]), 0.0)
        ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
        return dq + tl.dot(ds.to(DT), k)

    @triton.jit
    def _wg_bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, GIDX, KPM,
                          sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sdb, sdh, sdn, sgb, skpb,
                          H, N, W, G, qk_scale,
                          CAUSAL: tl.constexpr, HAS_GK: tl.constexpr, GK_PREFIX: tl.constexpr,
                          HAS_KPM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_D: tl.constexpr, DT: tl.constexpr):
        bh = tl.program_id(0)
        t = tl.program_id(1)
        b = bh // H
        m0 = t * BLOCK_M
        offs_m = m0 + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        q_ok = offs_m < N
        qbase = head_ptr(Q, bh, H, sqb, sqh)
        kbase = head_ptr(K, bh, H, skb, skh)
        vbase = head_ptr(V, bh, H, svb, svh)
        dobase = head_ptr(DO, bh, H, sdb, sdh)
        kpm_base = KPM + b.to(tl.int64) * skpb
        q, do, lse, delta = _load_q_rows(qbase, dobase, LSE, DELTA, bh, N, offs_m, offs_d, q_ok, sqn, sdn, DT)
        dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        lo = (tl.maximum(m0 - W, 0) // BLOCK_N) * BLOCK_N
        if CAUSAL:
            hi = tl.minimum(N, m0 + BLOCK_M)
        else:
            hi = tl.minimum(N, m0 + BLOCK_M + W)
        for start_n in range(lo, hi, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            kv_ok = offs_n < N
            k = tl.load(kbase + offs_n[:, None] * skn + offs_d[None, :], mask=kv_ok[:, None], other=0.0).to(DT)
            v = tl.load(vbase + offs_n[:, None] * svn + offs_d[None, :], mask=kv_ok[:, None], other=0.0).to(DT)
            ok = _in_band(offs_m[:, None] - offs_n[None, :], W, CAUSAL) & kv_ok[None, :]
            dq = _bwd_q_step(q, do, k, v, lse, delta, ok, kpm_base, offs_n, kv_ok, qk_scale, dq, HAS_KPM, DT)
        if HAS_GK:
            gbase = GIDX + b.to(tl.int64) * sgb
            for g0 in range(0, G, BLOCK_N):
                offs_g = g0 + tl.arange(0, BLOCK_N)
                gidx, gval = _load_gidx(gbase, offs_g, G, GK_PREFIX)
                k = tl.load(kbase + gidx[:, None] * skn + offs_d[None, :], mask=gval[:, None], other=0.0).to(DT)
                v = tl.load(vbase + gidx[:, None] * svn + offs_d[None, :], mask=gval[:, None], other=0.0).to(DT)
                dq = _bwd_q_step(q, do, k, v, lse, delta, _global_ok(offs_m, gidx, gval, W, CAUSAL), kpm_base,
                                 gidx, gval, qk_scale, dq, HAS_KPM, DT)
        out = (bh.to(tl.int64) * N + offs_m)[:, None] * BLOCK_D + offs_d[None, :]
        tl.store(DQ + out, dq, mask=q_ok[:, None])


# ----------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------
# Forward launch defaults (GPU); chosen from the H200 sweep in benchmarks/attention.py --sweep.
FWD_DEFAULTS = {"block_m": 64, "block_n": 64, "num_warps": 4, "num_stages": 3, "split": True, "tile_major": False,
                "keys_per_split": 1024, "grow_programs_per_sm": 2, "grow_block_n": 128, "grow_stages": 3,
                "grows": "first", "tma": "head-major", "tma_stages": 2, "maxnreg": "auto",
                "first_block_n": 32, "first_stages": 2, "side_priority": -1,
                "first_programs_per_sm": 1, "first_warps": 1, "first_tma": True,
                "first_pointer": (4, 64, 3)}
# TMA (the band's Q, K, V tiles through 2-D tensor descriptors; Hopper+, 16-bit dtypes, 16-byte aligned
# rows): "tma" = True (head-major and sequence-major layouts), "head-major" (default: (B, H, N, D)
# contiguous inputs only) or False. H200 runs 28-32 (B1 H16 D64 W256, bf16, head-major): band alone
# 0.1241 vs 0.1305 ms at 16k (1.05x), 0.457 vs 0.482 at 64k; sinks4+window512 64k 0.484 vs 0.509; with
# the global token the global-row pass decides (0.158 either way). Sequence-major (Longformer's fused
# projection, fp16, H12, 4096 tokens): encoder 2.244 ms with TMA vs 2.185 with pointer loads, hence
# not by default. 3 stages: slower than 2 everywhere; the probe (benchmarks/wg_band_probe.py, run 28):
# 128x64 / 128x128 / 64x128 tiles and Triton's warp specialization (tl.range(warp_specialize=True))
# slower than 64x64, 4 warps.
# Tried in run 29 and removed: the global rows' partial softmax over each band program's own key tile on
# the CUDA cores (fp32, no tensor cores), merged by the head's last program (atomic ticket): 16k 0.168 ms vs
# 0.156 with the side-stream launch (the latency-bound tail of every band program idles the tensor cores).
# Global query rows: a split-K launch (the last split of a row merges the partials, vectorized), in one
# of three places. grows="first" (default on CUDA): launched *ahead* of the band on a high-priority side
# stream (side_priority=-1), about one program per SM (first_programs_per_sm), each one warp streaming
# 32-key tiles through TMA descriptors (2 stages: 10 KB shared memory, <= 128 registers), so it sits beside
# five band programs (band capped at 96 registers: maxnreg="auto") and its HBM reads overlap the band.
# Without head-major TMA: first_pointer = (4 warps, 64-key tiles, 3 stages). grows="overlap": the same
# launch (grow_programs_per_sm, grow_block_n) issued after the band on the side stream (starts as the
# band drains); grows="launch": after the band, same stream. H200, B1 H16 D64 W256, bf16, graph ms,
# same run (run 43): 16k first 0.1342 (255 TFLOP/s) vs the run-40 "first" config (4 warps, 64-key
# tiles, 3 stages) 0.1372, overlap + cap 0.1415 (run 41), session 4 default (overlap, no cap) 0.1564;
# band without global rows 0.1243. 64k: 0.4910 vs 0.5004 vs 0.5330 vs 0.5656. Normal priority: "first"
# runs ahead only when the band has not filled the GPU yet (16k 0.1519 vs 0.1367, run 41). The cap
# alone: band 16k 0.1236-0.1285 vs 0.1317-0.1326, sinks 64k 0.479 vs 0.499 ms (runs 36-41; 96
# registers, no spills). Longformer-base 4096 tokens (pointer loads): 2.200-2.253 ms (runs 40, 42).
# Tried and dropped (session 5, RESULTS.md): global-row programs interleaved in the band launch in
# sequence order (K/V from L2; 133 registers -> 3 programs/SM, capped: 0.144-0.150 at 16k); each band
# program's own key tile inside the band loop (an `if` in the loop breaks its pipelining: 0.24 ms).
# Earlier (H200 runs 10-26, NOTES.md): global rows as extra programs of the band launch; each band
# program's share of its own key tile after its loop (ticket or merge launch); global keys as rank-1
# updates instead of a 16-key tile; interior tiles first and both edges in one loop; probabilities
# from a packed 16-bit exp2 (ex2.approx.f16x2 / bf16x2); 8 warps; 2 stages.

def _prep_global(global_idx: Optional[torch.Tensor], B: int, device: torch.device) -> Tuple[torch.Tensor, int]:
    """(B|1, G) int32, sorted, -1 padded, duplicates dropped; returns (gidx, batch stride)."""
    if global_idx is None or global_idx.numel() == 0:
        return _no_globals(device), 0
    gi = global_idx.to(device).long()
    if gi.dim() == 1:
        gi = torch.unique(gi, sorted=True)[None]
        return gi.to(torch.int32).contiguous(), 0
    big = torch.iinfo(torch.int64).max
    g = torch.where(gi < 0, big, gi).sort(dim=1).values
    dup = torch.zeros_like(g, dtype=torch.bool)
    dup[:, 1:] = g[:, 1:] == g[:, :-1]
    g = torch.where((g == big) | dup, -1, g).to(torch.int32).contiguous()
    return g, (g.stride(0) if g.shape[0] > 1 else 0)  # a (1, G) table is shared by the batch


_NO_GLOBALS: dict = {}


def _no_globals(device: torch.device) -> torch.Tensor:
    """A cached (1, 1) table holding -1 (no global tokens) per device (fresh during graph capture)."""
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    t = None if capturing else _NO_GLOBALS.get((device.type, device.index))
    if t is None:
        t = torch.full((1, 1), -1, dtype=torch.int32, device=device)
        if not capturing:
            _NO_GLOBALS[device.type, device.index] = t
    return t


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _num_sms(device: torch.device) -> int:
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device()) if device.type == "cuda" else 8


def prepare_global_idx(global_idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sorted, de-duplicated int32 (B|1, G) index table, -1 padded, for ``gidx_prepared=True``."""
    return _prep_global(global_idx, 1, device)[0]


_ZEROED: dict = {}


def _zeroed(device: torch.device, dtype: torch.dtype, n: int, stream=None) -> torch.Tensor:
    """A cached all-zero buffer of >= n elements for this device and stream (``stream``: the one the
    kernel runs on, default the current one): placeholder arguments and ticket counters (the kernels put
    the counters back to 0 when they finish), so a call launches no memset. During CUDA-graph capture a
    fresh buffer is made (capture does not run the zero fill)."""
    if device.type != "cuda":
        return torch.zeros(n, dtype=dtype, device=device)
    if torch.cuda.is_current_stream_capturing():  # the zero fill goes on the stream of the kernel that reads it
        if stream is None:
            return torch.zeros(n, dtype=dtype, device=device)
        with torch.cuda.stream(stream):
            return torch.zeros(n, dtype=dtype, device=device)
    key = (device.index if device.index is not None else torch.cuda.current_device(),
           (stream if stream is not None else torch.cuda.current_stream(device)).cuda_stream, dtype)
    buf = _ZEROED.get(key)
    if buf is None or buf.numel() < n:
        buf = torch.zeros(max(n, 256), dtype=dtype, device=device)
        _ZEROED[key] = buf
    return buf[:n]


_PLACEHOLDERS: dict = {}


def _placeholder(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A small buffer for a pointer argument the kernel does not read (a flag off): no fill kernel, so none in a
    captured graph either (a zero fill there is one more graph node per call)."""
    key = (device.type, device.index, dtype)
    buf = _PLACEHOLDERS.get(key)
    if buf is None:
        buf = torch.empty(16, dtype=dtype, device=device)
        if not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
            _PLACEHOLDERS[key] = buf
    return buf


def _kpm_arg(kpm: Optional[torch.Tensor], q: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """(int8 key mask, its row stride); a placeholder the kernels do not read when there is no mask."""
    if kpm is None:
        return _placeholder(q.device, torch.int8), 0
    if kpm.dtype == torch.bool and kpm.device == q.device and kpm.stride(-1) == 1:
        k8 = kpm.view(torch.int8)  # same bytes: no conversion kernel
    else:
        k8 = kpm.to(device=q.device, dtype=torch.int8).contiguous()
    return k8, k8.stride(0)


def _tma_geometry(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, setting=True):
    """The 2-D view that TMA descriptors of q, k, v take: (rows, cols, row stride, RB, RH, CH), head (b, h)
    starting at row b*RB + h*RH, column h*CH. None when the layout does not allow it (then pointer loads):
    q, k, v must share shape and strides, rows 16-byte aligned, either head-major ((B, H, N, D)
    contiguous up to row padding) or sequence-major (heads interleaved in a row: a view of a fused
    (B, N, ..., H, D) projection). GPU: Hopper or newer and a 16-bit dtype. ``setting``: True, False
    or "head-major" (only that layout)."""
    if TensorDescriptor is None or not setting:
        return None
    if q.is_cuda:
        if q.dtype not in (torch.float16, torch.bfloat16) or _capability(q.device.index) < 9:
            return None
    elif not interpreting():
        return None
    if not (q.shape == k.shape == v.shape and q.stride() == k.stride() == v.stride()):
        return None
    B, H, N, D = q.shape
    sb, sh, sn, _ = q.stride()
    es = q.element_size()
    if (sn * es) % 16 or any(t.data_ptr() % 16 for t in (q, k, v)):
        return None
    if (H == 1 or sh == N * sn) and (B == 1 or sb == H * N * sn):  # head-major
        return B * H * N, D, sn, H * N, N, 0
    if setting == "head-major":
        return None
    if (B == 1 or sb == N * sn) and (H == 1 or ((sh * es) % 16 == 0 and sh >= D and (H - 1) * sh + D <= sn)):
        return B * N, (H - 1) * sh + D, sn, N, 0, sh  # sequence-major
    return None


@functools.lru_cache(maxsize=None)
def _capability(index: Optional[int]) -> int:
    return torch.cuda.get_device_capability(index)[0]


def _desc(t: torch.Tensor, rows: int, cols: int, sn: int, block: int, D: int):
    """A TensorDescriptor over ``t`` as (rows, cols) with row stride ``sn``, tiles (block, D). Built without
    the dataclass's checks: the layout was checked once by ``_tma_geometry`` for this call's plan."""
    d = TensorDescriptor.__new__(TensorDescriptor)
    d.base, d.shape, d.strides, d.block_shape, d.padding = t, [rows, cols], [sn, 1], [block, D], "zero"
    return d


def _tma_layout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, BM: int, BN: int, setting=True):
    """Descriptors of q, k, v for tiles (BM | BN, D) and the head offsets: (dq, dk, dv, RB, RH, CH), or None
    (see ``_tma_geometry``)."""
    geo = _tma_geometry(q, k, v, setting)
    if geo is None:
        return None
    rows, cols, sn, rb, rh, ch = geo
    D = q.shape[3]
    return (*(TensorDescriptor(t, [rows, cols], [sn, 1], [bm, D]) for t, bm in ((q, BM), (k, BN), (v, BN))),
            rb, rh, ch)


def _check_last_dim(*ts: torch.Tensor) -> None:
    for t in ts:
        if t.stride(-1) != 1:
            raise ValueError("window_global kernels need the last (D) dimension contiguous")


class _GrowPlan:
    """Launch set-up of the global-row split-K pass for one call signature."""
    __slots__ = ("grid", "options", "const", "GP", "keys_per_split", "nsplit", "tma", "bn_g", "cnt", "rows")


class _FwdPlan:
    """Launch set-up of ``window_global_forward`` for one call signature (shapes, strides, flags, defaults)."""
    __slots__ = ("grid", "options", "const", "tma", "BM", "BN", "grow", "side", "ahead", "side_priority", "key",
                 "band_b", "grow_b", "side_s")


_PLANS: dict = {}
if HAS_TRITON:
    _BAND_LAUNCH = KernelLauncher(_wg_fwd_kernel)
    _GROW_LAUNCH = KernelLauncher(_wg_grow_kernel)


def window_global_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                          global_idx: Optional[torch.Tensor] = None, causal: bool = False,
                          key_padding_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                          sinks: int = 0, global_qkv: Optional[Tuple[torch.Tensor, ...]] = None,
                          out: Optional[torch.Tensor] = None, block_m: Optional[int] = None,
                          block_n: Optional[int] = None, num_warps: Optional[int] = None,
                          num_stages: Optional[int] = None, gidx_prepared: bool = False,
                          split: Optional[bool] = None, tile_major: Optional[bool] = None,
                          global_rows: Union[bool, str] = True, grows: Optional[str] = None,
                          tma: Optional[Union[bool, str]] = None,
                          plan_sink: Optional[list] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run the forward kernels; returns (out (B,H,N,D), lse (B,H,N) fp32 in log2 units).

    ``sinks > 0`` selects the StreamingLLM case (global keys = prefix, no global rows; needs
    causal and no ``global_idx``). ``global_qkv=(qg, kg, vg)``: global rows use these
    projections instead (Longformer); shapes as q, k, v. ``gidx_prepared``: ``global_idx`` is
    already ``prepare_global_idx``'s output (no host sync: CUDA-graph capturable).
    ``global_rows=False``: the caller computes the global query rows itself (their rows of the
    output then hold window attention only); ``"skip"``: the same, but the band programs leave those rows
    of the output and lse alone, so the caller may write them concurrently (another stream). ``grows``:
    where the global-row launch goes, "first", "overlap" or "launch", see ``FWD_DEFAULTS`` (None: the
    default). ``tma``: band tiles through TMA
    descriptors where the layout allows (True), pointer loads (False), or ``FWD_DEFAULTS["tma"]`` (None).
    ``plan_sink``: a list that gets this call's plan appended (its bound launches: ``band_b``, ``grow_b``).

    Host cost: everything that depends only on the call's signature (shapes, strides, dtypes, flags,
    ``FWD_DEFAULTS``) is planned once and cached (``_PLANS``), and the kernels are launched through
    ``KernelLauncher`` (no Triton argument binding per call); no device sync with a prepared index.
    """
    B, H, N, D = q.shape
    if D not in (16, 32, 64, 128):
        raise ValueError(f"head dim must be 16, 32, 64 or 128 for the Triton kernel, got {D}")
    if grows is not None and grows not in ("launch", "overlap", "first"):
        raise ValueError(f"grows must be 'launch', 'overlap' or 'first', got {grows!r}")
    _check_last_dim(q, k, v)
    dev = q.device
    o = out if out is not None else torch.empty(B, H, N, D, dtype=q.dtype, device=dev)
    lse = torch.empty(B, H, N, dtype=torch.float32, device=dev)
    kpm, skpb = _kpm_arg(key_padding_mask, q)
    if sinks:
        gidx, sgb, G, has_gk, prefix, has_grows = _zeroed(dev, torch.int32, 1), 0, sinks, True, True, False
    elif gidx_prepared and global_idx is not None:
        gidx, sgb = global_idx, (global_idx.stride(0) if global_idx.shape[0] > 1 else 0)
        G = gidx.shape[1]
        has_gk = has_grows = G > 0
        prefix = False
    else:
        gidx, sgb = _prep_global(global_idx, B, dev)
        G = gidx.shape[1]
        has_gk = has_grows = bool(global_idx is not None and global_idx.numel() > 0)
        prefix = False
    if global_rows not in (True, False, "skip"):
        raise ValueError(f"global_rows must be True, False or 'skip', got {global_rows!r}")
    skip = global_rows == "skip" and has_gk
    has_grows = has_grows and global_rows is True
    qg, kg, vg = global_qkv if (global_qkv is not None and has_grows) else (q, k, v)
    _check_last_dim(qg, kg, vg)
    aligned = not ((q.data_ptr() | k.data_ptr() | v.data_ptr() | o.data_ptr() | qg.data_ptr() | kg.data_ptr()
                    | vg.data_ptr() | gidx.data_ptr() | kpm.data_ptr()) & 15)
    key = (dev.index, q.dtype, q.shape, q.stride(), k.stride(), v.stride(), o.stride(), qg.shape, qg.stride(),
           kg.stride(), vg.stride(), window, G, sgb, skpb, causal, key_padding_mask is not None, scale, sinks,
           has_gk, prefix, has_grows, skip, block_m, block_n, num_warps, num_stages, split, tile_major, grows, tma,
           aligned, interpreting(), tuple(FWD_DEFAULTS.values()))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = _make_plan(key, q, k, v, qg, kg, vg, window, G, causal, key_padding_mask is not None,
                                        scale, has_gk, prefix, has_grows, block_m, block_n, num_warps, num_stages,
                                        split, tile_major, grows, tma, skip)
    if plan.band_b is None:  # the launches of this signature, every non-tensor argument fixed (the key pins them)
        _bind(plan, key if aligned else None, q, k, v, o, qg, kg, vg, window, G, sgb, skpb)
    if plan_sink is not None:
        plan_sink.append(plan)
    raw = _raw_stream(dev.index) if q.is_cuda else None
    main = side = None
    if plan.side:
        side = plan.side_s
        main = _stream_obj(raw, dev.index)
        fork_to(side, main)
    if has_grows and plan.ahead:
        _run_grow(plan, qg, kg, vg, gidx, kpm, o, lse, side)
    plan.band_b((q, k, v, o, lse, gidx, kpm, q, k, v), raw)
    if has_grows and side is not None:  # concurrent with the band launch, joined before returning
        if not plan.ahead:
            _run_grow(plan, qg, kg, vg, gidx, kpm, o, lse, side)
        join_from(main, side)
    elif has_grows and not plan.ahead:  # after the band launch (overwrites the global rows)
        _run_grow(plan, qg, kg, vg, gidx, kpm, o, lse, None)
    return o, lse


_STREAM_OBJS: dict = {}


def _stream_obj(raw: int, index: int) -> "torch.cuda.Stream":
    """The ``torch.cuda.Stream`` of the current raw stream (cached by handle: no Stream object per call)."""
    s = _STREAM_OBJS.get(raw)
    if s is None:
        s = torch.cuda.current_stream(index)
        if s.cuda_stream != raw:  # pragma: no cover (the current stream changed in between)
            return s
        if len(_STREAM_OBJS) > 64:
            _STREAM_OBJS.clear()
        _STREAM_OBJS[raw] = s
    return s


class WindowRunner:
    """``window_global_forward(q, k, v, window, table, causal, kpm, scale, sinks)[0]`` bound to one call
    signature (shapes, strides, dtype, device, padding-mask layout; defaults of every launch knob): the plan,
    the launch grids and every argument but the tensors are fixed when it is made, so a call only allocates
    the output (scratch: cached per stream outside graph capture), builds the TMA descriptors and launches
    (``BoundLaunch``). The caller guarantees the signature (``attention()`` keys its plan cache on it); data
    pointers not 16-byte aligned go to ``window_global_forward``. ``table``: ``prepare_global_idx``'s output
    or None. Make one outside CUDA-graph capture (its placeholders must be filled)."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, table: Optional[torch.Tensor],
                 causal: bool, kpm: Optional[torch.Tensor], scale: Optional[float], sinks: int = 0) -> None:
        B, H, N, D = q.shape
        _check_last_dim(q, k, v)
        dev = q.device
        self.args = (window, table, causal, scale, sinks)
        self.is_cuda = q.is_cuda
        self.index = dev.index if dev.index is not None else (torch.cuda.current_device() if q.is_cuda else 0)
        self.shape, self.lse_shape, self.dtype, self.device = (B, H, N, D), (B, H, N), q.dtype, dev
        kpm8, skpb = _kpm_arg(kpm, q)
        self.has_kpm = kpm is not None
        if self.has_kpm and kpm8 is not kpm and kpm8.data_ptr() != kpm.data_ptr():
            raise ValueError("WindowRunner needs a bool key_padding_mask on q's device with a contiguous last dim")
        self.kpm0 = None if self.has_kpm else kpm8  # the placeholder (cached, never written)
        if sinks:
            gidx, sgb, G, has_gk, prefix, has_grows = _zeroed(dev, torch.int32, 1), 0, sinks, True, True, False
        elif table is not None:
            gidx, sgb, G = table, (table.stride(0) if table.shape[0] > 1 else 0), table.shape[1]
            has_gk = has_grows = G > 0
            prefix = False
        else:
            gidx, sgb = _no_globals(dev), 0
            G, has_gk, has_grows, prefix = 1, False, False, False
        self.gidx = gidx
        o = torch.empty(B, H, N, D, dtype=q.dtype, device=dev)
        key = (dev.index, q.dtype, q.shape, q.stride(), k.stride(), v.stride(), o.stride(), q.shape,
               q.stride(), k.stride(), v.stride(), window, G, sgb, skpb, causal, self.has_kpm, scale, sinks,
               has_gk, prefix, has_grows, False, None, None, None, None, None, None, None, None, True,
               interpreting(), tuple(FWD_DEFAULTS.values()))
        plan = _PLANS.get(key)
        if plan is None:
            plan = _PLANS[key] = _make_plan(key, q, k, v, q, k, v, window, G, causal, self.has_kpm, scale, has_gk,
                                            prefix, has_grows, None, None, None, None, None, None, None, None)
        self.plan = plan
        if plan.band_b is None:
            _bind(plan, key, q, k, v, o, q, k, v, window, G, sgb, skpb)
        self.side = plan.side_s
        self.side_raw = self.side.cuda_stream if self.side is not None else None
        self.band, self.grow = plan.band_b, plan.grow_b
        self.ahead = bool(has_grows and plan.ahead)
        if has_grows:
            self.scratch_rows = plan.grow.rows
        self.scratch: dict = {}
        self.events: dict = {}  # raw main stream -> (fork, join) events

    def _scratch(self, raw: Optional[int], capturing: bool) -> tuple:
        """(lse, po, pml, cnt): per-call scratch, cached per stream (calls on one stream run in order); fresh
        while capturing a CUDA graph (the ticket counters' zero fill on the side stream, as ``_zeroed``)."""
        sc = None if capturing else self.scratch.get(raw)
        if sc is None:
            dev, D = self.device, self.shape[3]
            lse = torch.empty(self.lse_shape, dtype=torch.float32, device=dev)
            po = pml = cnt = None
            if self.grow is not None:
                po = torch.empty(self.scratch_rows, D, dtype=torch.float32, device=dev)
                pml = torch.empty(self.scratch_rows, 2, dtype=torch.float32, device=dev)
                cnt = _zeroed(dev, torch.int32, self.plan.grow.cnt, self.side)
            sc = (lse, po, pml, cnt)
            if not capturing:
                self.scratch[raw] = sc
        return sc

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 kpm: Optional[torch.Tensor] = None) -> torch.Tensor:
        if kpm is None:
            kpm8 = self.kpm0
            unaligned = (q.data_ptr() | k.data_ptr() | v.data_ptr()) & 15
        else:
            kpm8 = kpm.view(torch.int8)
            unaligned = (q.data_ptr() | k.data_ptr() | v.data_ptr() | kpm8.data_ptr()) & 15
        if unaligned:
            window, table, causal, scale, sinks = self.args
            return window_global_forward(q, k, v, window, table, causal, kpm, scale, sinks,
                                         gidx_prepared=table is not None)[0]
        o = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        if self.is_cuda:
            raw = _raw_stream(self.index)
            capturing = _capturing()
        else:
            raw, capturing = None, False
        side = self.side
        if side is not None:  # fork first: while capturing, the scratch's zero fill goes on the side stream
            main = _stream_obj(raw, self.index)
            ev = self.events.get(raw)
            if ev is None:
                ev = self.events[raw] = (torch.cuda.Event(), torch.cuda.Event())
            _ev_record(ev[0], main)
            _ev_wait(ev[0], side)
        lse, po, pml, cnt = self._scratch(raw, capturing)
        gidx = self.gidx
        grow = self.grow
        if grow is not None:  # (descriptor slots hold the tensors: BoundLaunch makes the descriptors)
            ghead = (q, k, v, gidx, kpm8, po, pml, cnt, o, lse, k, v)
        if side is not None:
            if self.ahead:
                grow(ghead, self.side_raw, side)
            self.band((q, k, v, o, lse, gidx, kpm8, q, k, v), raw)
            if not self.ahead:
                grow(ghead, self.side_raw, side)
            _ev_record(ev[1], side)
            _ev_wait(ev[1], main)
        else:
            self.band((q, k, v, o, lse, gidx, kpm8, q, k, v), raw)
            if grow is not None:
                grow(ghead, raw)
        return o


if HAS_TRITON and hasattr(torch._C, "_cuda_getCurrentRawStream"):
    _raw_stream = torch._C._cuda_getCurrentRawStream
    _capturing = torch._C._cuda_isCurrentStreamCapturing
    _EVB = getattr(torch._C, "_CudaEventBase", None)  # (event, stream): no Python wrapper per call
    _ev_record = getattr(_EVB, "record", None) or (lambda e, s: e.record(s))
    _ev_wait = getattr(_EVB, "wait", None) or (lambda e, s: e.wait(s))
else:  # CPU-only torch (the interpreter): never called with is_cuda
    _raw_stream = _capturing = _ev_record = _ev_wait = None  # type: ignore[assignment]


def _make_plan(key, q, k, v, qg, kg, vg, window, G, causal, has_kpm, scale, has_gk, prefix, has_grows,
               block_m, block_n, num_warps, num_stages, split, tile_major, grows, tma, skip=False) -> _FwdPlan:
    """Everything ``window_global_forward`` needs that depends only on the call signature ``key``. ``skip``: the
    band programs leave the global query rows alone (written elsewhere, maybe concurrently)."""
    B, H, N, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    bm_d, bn_d = default_blocks(q, FWD_DEFAULTS["block_m"], FWD_DEFAULTS["block_n"])
    BM = block_m or bm_d
    BN = block_n or bn_d
    DT = dot_dtype(q.dtype)
    qk_scale = scale * LOG2E
    nw = num_warps or FWD_DEFAULTS["num_warps"]
    ns = num_stages or FWD_DEFAULTS["num_stages"]
    if interpreting():
        extra = {}
    else:
        extra = {"num_warps": nw, "num_stages": ns}
        cap = FWD_DEFAULTS["maxnreg"]
        if cap == "auto":  # 96 registers: 5 band programs per SM (the shared memory allows 5), no spills
            cap = 96 if (BM == BN == 64 and nw == 4 and D <= 64 and q.element_size() == 2) else None
        if cap:
            extra["maxnreg"] = cap
    split = FWD_DEFAULTS["split"] if split is None else split
    tile_major = FWD_DEFAULTS["tile_major"] if tile_major is None else tile_major
    qg_compact = qg.shape[2] != N
    if qg_compact and qg.shape[2] != G:
        raise ValueError(f"global query tensor must have N={N} or G={G} rows, got {qg.shape[2]}")
    grows = FWD_DEFAULTS["grows"] if grows is None else grows
    if grows not in ("launch", "overlap", "first"):
        raise ValueError(f"grows must be 'launch', 'overlap' or 'first', got {grows!r}")
    overlap = has_grows and grows in ("overlap", "first")
    p = _FwdPlan()
    p.key = key
    p.band_b = p.grow_b = p.side_s = None
    p.side = overlap and q.is_cuda
    p.side_priority = FWD_DEFAULTS["side_priority"]
    p.ahead = has_grows and p.side and grows == "first"  # global rows ahead of the band, beside it
    p.grow = _grow_plan(qg, kg, vg, G, causal, has_kpm, qg_compact, DT, BN, grows == "first") if has_grows else None
    p.tma = _tma_geometry(q, k, v, FWD_DEFAULTS["tma"] if tma is None else tma)
    if p.tma is not None and not interpreting():
        extra["num_stages"] = num_stages or FWD_DEFAULTS["tma_stages"]
    NT = triton.cdiv(N, BM)
    p.grid = (NT, B * H) if tile_major else (B * H, NT)
    p.options = extra
    p.BM, p.BN = BM, BN
    # const: qk_scale, then the constexprs in signature order
    p.const = (qk_scale, causal, has_gk, prefix, has_kpm, BM, BN, D, DT,
               min(BN, max(16, triton.next_power_of_2(max(G, 1)))), split, tile_major, overlap or skip,
               p.tma is not None)
    return p


def _grow_plan(qg, kg, vg, G, causal, has_kpm, qg_compact, DT, BN, first) -> _GrowPlan:
    """Split-K launch of the global query rows (writes their rows of ``o`` and ``lse``). ``first``: the
    launch that goes ahead of the band launch (grows="first"): about one program per SM; with TMA
    (head-major K, V) one warp streaming small tiles, which fits beside five band programs on every SM
    (``FWD_DEFAULTS["first_*"]``), else ``FWD_DEFAULTS["first_pointer"]`` (warps, key tile, stages)."""
    B, H, N, D = kg.shape
    BG = 16
    GP = triton.cdiv(G, BG) * BG
    geo = None
    if first and FWD_DEFAULTS["first_tma"]:
        bn_g = BN if interpreting() else FWD_DEFAULTS["first_block_n"]
        geo = _tma_geometry(kg, kg, vg, "head-major")
    if interpreting():
        bn_g, extra = BN, {}
    elif geo is not None:
        extra = {"num_warps": FWD_DEFAULTS["first_warps"], "num_stages": FWD_DEFAULTS["first_stages"], "maxnreg": 128}
    elif first:
        nw_f, bn_g, ns_f = FWD_DEFAULTS["first_pointer"]
        extra = {"num_warps": nw_f, "num_stages": ns_f, "maxnreg": 128}
    else:
        bn_g = FWD_DEFAULTS["grow_block_n"]
        extra = {"num_warps": 4, "num_stages": FWD_DEFAULTS["grow_stages"]}
    if interpreting():
        keys_per_split = 2 * bn_g
    elif first:  # about one program per SM
        want = max(1, int(FWD_DEFAULTS["first_programs_per_sm"] * _num_sms(kg.device)) // (B * H * (GP // BG)))
        keys_per_split = max(256, triton.cdiv(triton.cdiv(N, want), bn_g) * bn_g)
    else:  # enough split-K programs to fill the GPU, 256..1024 keys each
        want = max(1, -(-FWD_DEFAULTS["grow_programs_per_sm"] * _num_sms(kg.device) // (B * H * (GP // BG))))
        keys_per_split = min(FWD_DEFAULTS["keys_per_split"], max(256, triton.cdiv(triton.cdiv(N, want), bn_g) * bn_g))
    nsplit = triton.cdiv(N, keys_per_split)
    g = _GrowPlan()
    g.grid = (B * H, (GP // BG) * nsplit)
    g.options = extra
    g.GP, g.keys_per_split, g.nsplit, g.tma, g.bn_g = GP, keys_per_split, nsplit, geo, bn_g
    g.cnt = B * H * (GP // BG)
    g.rows = B * H * GP * nsplit  # split-K partial rows
    g.const = (causal, has_kpm, BG, bn_g, D, DT, qg_compact, min(64, max(16, triton.next_power_of_2(nsplit))),
               geo is not None)
    return g


def _bind(plan: _FwdPlan, lkey, q, k, v, o, qg, kg, vg, window: int, G: int, sgb: int, skpb: int) -> None:
    """The plan's ``BoundLaunch`` objects: the band launch and the global-row launch with every argument that
    the plan's key fixes (strides, sizes, constexprs) bound; ``lkey``: the launcher key (None: unaligned)."""
    B, H, N, D = q.shape
    sq, sk, sv, so = q.stride(), k.stride(), v.stride(), o.stride()
    descs = None
    if plan.tma is not None:  # q, k, v tiles through TMA descriptors (head slots 7, 8, 9)
        rows, cols, sn, rb, rh, ch = plan.tma
        descs = {7: (rows, cols, sn, plan.BM, D), 8: (rows, cols, sn, plan.BN, D), 9: (rows, cols, sn, plan.BN, D)}
    else:
        rb = rh = ch = 0
    if plan.side and plan.side_s is None:
        plan.side_s = side_stream(q.device, plan.side_priority)
    g = plan.grow
    if g is not None:
        sqg, skg, svg = qg.stride(), kg.stride(), vg.stride()
        gdescs = None
        if g.tma is not None:  # k, v through TMA descriptors (head slots 10, 11)
            nrow, ncol, gsn, grb, grh, gch = g.tma
            gdescs = {10: (nrow, ncol, gsn, g.bn_g, D), 11: (nrow, ncol, gsn, g.bn_g, D)}
        else:
            grb = grh = gch = 0
        plan.grow_b = BoundLaunch(_GROW_LAUNCH, lkey, g.grid, (
            sqg[0], sqg[1], sqg[2], skg[0], skg[1], skg[2], svg[0], svg[1], svg[2], so[0], so[1], so[2], sgb, skpb,
            H, N, G, g.GP, plan.const[0], g.keys_per_split, g.nsplit, grb, grh, gch, *g.const), g.options, gdescs)
    plan.band_b = BoundLaunch(_BAND_LAUNCH, lkey, plan.grid, (
        sq[0], sq[1], sq[2], sk[0], sk[1], sk[2], sv[0], sv[1], sv[2], so[0], so[1], so[2], sgb, skpb,
        H, N, window, G, plan.const[0], rb, rh, ch, *plan.const[1:]), plan.options, descs)


def _run_grow(plan: _FwdPlan, qg, kg, vg, gidx, kpm, o, lse, stream) -> None:
    """Launch the planned global-row pass (on ``stream``, or the current stream when None). Its scratch is
    allocated on the current stream: the caller joins ``stream`` back before returning."""
    g = plan.grow
    D = kg.shape[3]
    rows = g.rows
    po = torch.empty(rows, D, dtype=torch.float32, device=kg.device)
    pml = torch.empty(rows, 2, dtype=torch.float32, device=kg.device)
    cnt = _zeroed(kg.device, torch.int32, g.cnt, stream)
    plan.grow_b((qg, kg, vg, gidx, kpm, po, pml, cnt, o, lse, kg, vg),
                stream.cuda_stream if stream is not None else (_raw_stream(kg.device.index) if kg.is_cuda else None),
                stream)


def _global_rows_dense(qg: torch.Tensor, kg: torch.Tensor, vg: torch.Tensor, gidx: torch.Tensor,
                       kpm: Optional[torch.Tensor], causal: bool, scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Outputs of the global rows (B, H, G, D) by a dense fp32 computation (G x N scores).
    ``qg`` is (B, H, N, D) or compact (B, H, G, D) in ``gidx`` order."""
    B, N = kg.shape[0], kg.shape[2]
    gi = gidx.long().expand(B, -1)
    gs = torch.where(gi >= 0, gi, 0)
    qr = gather_positions(qg.float(), gs) if qg.shape[2] == N else qg.float()
    return dense_global_rows(qr, kg.float(), vg.float(), gs, kpm, causal, scale), gs


class _WindowGlobalFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, qg, kg, vg, window, global_idx, causal, kpm, scale, sinks, prepared=False):  # type: ignore[override]
        sep = qg is not None
        if not prepared and not sinks and global_idx is not None and global_idx.numel():
            global_idx, prepared = _prep_global(global_idx, q.shape[0], q.device)[0], True
        o, lse = window_global_forward(q, k, v, window, global_idx, causal, kpm, scale, sinks,
                                       (qg, kg, vg) if sep else None, gidx_prepared=prepared)
        ctx.save_for_backward(q, k, v, o, lse, qg, kg, vg)
        ctx.cfg = (window, global_idx, causal, kpm, scale, sinks, sep)
        return o

    @staticmethod
    def backward(ctx, do):  # type: ignore[override]
        q, k, v, o, lse, qg, kg, vg = ctx.saved_tensors
        window, global_idx, causal, kpm, scale, sinks, sep = ctx.cfg
        dq, dk, dv, dqg, dkg, dvg = window_global_backward(
            do, q, k, v, o, lse, window, global_idx, causal, kpm, scale, sinks, (qg, kg, vg) if sep else None)
        return dq, dk, dv, dqg, dkg, dvg, None, None, None, None, None, None, None


def window_global_backward(do, q, k, v, o, lse, window, global_idx, causal, kpm, scale, sinks, global_qkv=None):
    """Gradients (dq, dk, dv, dqg, dkg, dvg); the last three are None unless ``global_qkv``."""
    B, H, N, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    BM, BN = default_blocks(q, 64, 64)
    DT = dot_dtype(q.dtype)
    ex = {} if interpreting() else {"num_warps": 4, "num_stages": 2}
    kpm8, skpb = _kpm_arg(kpm, q)
    has_kpm = kpm is not None
    do = do.contiguous()
    if sinks:
        gidx, sgb, G, has_gk, prefix, has_grows = torch.zeros(1, dtype=torch.int32, device=q.device), 0, sinks, True, True, False
    else:
        gidx, sgb = _prep_global(global_idx, B, q.device)
        G = gidx.shape[1]
        has_gk = has_grows = bool(global_idx is not None and global_idx.numel() > 0)
        prefix = False
    if has_grows:  # global rows: dO = 0 on the kernel path, dense path below
        gi = gidx.long().expand(B, -1)
        rows = torch.zeros(B, N + 1, dtype=torch.bool, device=q.device)
        rows.scatter_(1, torch.where(gi < 0, N, gi), True)
        do_k = do.masked_fill(rows[:, None, :N, None], 0)
    else:
        do_k = do
    delta = (do_k.float() * o.float()).sum(-1).contiguous()
    qk_scale = scale * LOG2E
    dk = torch.empty(B, H, N, D, dtype=torch.float32, device=q.device)
    dv = torch.empty_like(dk)
    dq = torch.empty_like(dk)
    strides = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
               v.stride(0), v.stride(1), v.stride(2), do_k.stride(0), do_k.stride(1), do_k.stride(2))
    _wg_bwd_dkdv_kernel[(B * H, triton.cdiv(N, BN))](
        q, k, v, do_k, lse, delta, dk, dv, kpm8, *strides, skpb, H, N, window, qk_scale,
        CAUSAL=causal, HAS_KPM=has_kpm, BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=D, DT=DT, **ex)
    _wg_bwd_dq_kernel[(B * H, triton.cdiv(N, BM))](
        q, k, v, do_k, lse, delta, dq, gidx, kpm8, *strides, sgb, skpb, H, N, window, G, qk_scale,
        CAUSAL=causal, HAS_GK=has_gk, GK_PREFIX=prefix, HAS_KPM=has_kpm,
        BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=D, DT=DT, **ex)
    if has_gk:
        GP = triton.cdiv(G, BN) * BN
        dkg_c = torch.zeros(B * H * GP, D, dtype=torch.float32, device=q.device)
        dvg_c = torch.zeros_like(dkg_c)
        rows_per_split = max(BM, triton.cdiv(triton.cdiv(N, 8), BM) * BM) if interpreting() else 1024
        nsplit = triton.cdiv(N, rows_per_split)
        _wg_bwd_gk_kernel[(B * H, (GP // BN) * nsplit)](
            q, k, v, do_k, lse, delta, dkg_c, dvg_c, gidx, kpm8, *strides, sgb, skpb,
            H, N, window, G, GP, qk_scale, rows_per_split, nsplit,
            CAUSAL=causal, GK_PREFIX=prefix, HAS_KPM=has_kpm, BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=D, DT=DT, **ex)
        if prefix:
            gi = torch.arange(G, device=q.device)[None].expand(B, -1)
        else:
            gi = gidx.long().expand(B, -1)
        gi = torch.where(gi < 0, N, gi)
        idx = gi[:, None, :, None].expand(B, H, gi.shape[1], D)
        dk_pad = torch.cat([dk, dk.new_zeros(B, H, 1, D)], 2)
        dv_pad = torch.cat([dv, dv.new_zeros(B, H, 1, D)], 2)
        dk_pad.scatter_add_(2, idx, dkg_c.view(B, H, GP, D)[:, :, :gi.shape[1]])
        dv_pad.scatter_add_(2, idx, dvg_c.view(B, H, GP, D)[:, :, :gi.shape[1]])
        dk, dv = dk_pad[:, :, :N], dv_pad[:, :, :N]
    dk = dk * scale
    dq = dq * scale
    dqg = dkg = dvg = None
    if has_grows:
        qg, kg, vg = global_qkv if global_qkv is not None else (q, k, v)
        with torch.enable_grad():
            qg_ = qg.detach().float().requires_grad_(True)
            kg_ = kg.detach().float().requires_grad_(True)
            vg_ = vg.detach().float().requires_grad_(True)
            og, gs = _global_rows_dense(qg_, kg_, vg_, gidx, kpm, causal, scale)
            valid = (gidx.long().expand(B, -1) >= 0)[:, None, :, None]
            do_rows = torch.gather(do.float(), 2, gs[:, None, :, None].expand(B, H, gs.shape[1], D)) * valid
            g_q, g_k, g_v = torch.autograd.grad(og, (qg_, kg_, vg_), do_rows)
        if global_qkv is None:
            dq, dk, dv = dq + g_q, dk + g_k, dv + g_v
        else:
            dqg, dkg, dvg = g_q.to(qg.dtype), g_k.to(kg.dtype), g_v.to(vg.dtype)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dqg, dkg, dvg


def window_global_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                            global_idx: Optional[torch.Tensor] = None, causal: bool = False,
                            key_padding_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                            global_qkv: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
                            gidx_prepared: bool = False) -> torch.Tensor:
    """Window + global attention on the Triton kernels, differentiable. Layout (B, H, N, D).
    ``gidx_prepared``: ``global_idx`` is ``prepare_global_idx``'s table. Without a gradient to compute the
    forward kernels run directly (no autograd node)."""
    qg, kg, vg = global_qkv if global_qkv is not None else (None, None, None)
    if not _needs_grad(q, k, v, qg, kg, vg):
        if not gidx_prepared and global_idx is not None and global_idx.numel():
            global_idx = _prep_global(global_idx, q.shape[0], q.device)[0]
        return window_global_forward(q, k, v, window, global_idx, causal, key_padding_mask, scale, 0, global_qkv,
                                     gidx_prepared=True)[0]
    return _WindowGlobalFn.apply(q, k, v, qg, kg, vg, window, global_idx, causal, key_padding_mask, scale, 0,
                                 gidx_prepared)


def _needs_grad(*ts: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def sinks_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: int, window: int,
                           key_padding_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None) -> torch.Tensor:
    """StreamingLLM prefill (causal; prefix [0, sinks) always visible), differentiable."""
    if not _needs_grad(q, k, v):
        return window_global_forward(q, k, v, window, None, True, key_padding_mask, scale, sinks)[0]
    if sinks == 0:
        return _WindowGlobalFn.apply(q, k, v, None, None, None, window, None, True, key_padding_mask, scale, 0)
    return _WindowGlobalFn.apply(q, k, v, None, None, None, window, None, True, key_padding_mask, scale, sinks)
