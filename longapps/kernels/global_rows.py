"""Longformer global query rows straight from the hidden states (inference), three small launches.

A global token ``g`` attends every token with its own projections (HF ``query_global``,
``key_global``, ``value_global``). Per head h, with x_j the hidden states:

    s_hj = q_h . (Wk_h x_j + bk_h) = u_h . x_j + c_h,   u_h = Wk_h^T q_h,  c_h = q_h . bk_h
    o_h  = sum_j p_hj (Wv_h x_j + bv_h) = Wv_h z_h + bv_h,   z_h = sum_j p_hj x_j

so the key/value_global projections of all N tokens (an N x 2C GEMM) are never formed:

1. ``_prep_kernel`` (one program per global row and head): q_h = Wq_h x_g + bq_h, u_h, c_h;
2. ``_scores_kernel`` (split over the tokens, all heads at once): s = U X^T, online softmax and
   z = P X for its chunk of tokens -> partial (m, l, z);
3. ``_out_kernel`` (per global row and head): merges the partials, o_h = Wv_h z_h + bv_h, written
   into the output rows of the global tokens.

``reference_global_rows`` is the same algebra in PyTorch (also the path off CUDA/Triton).
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch

from ._common import HAS_TRITON, LOG2E, dot_dtype, interpreting

if HAS_TRITON:
    import triton
    import triton.language as tl


def reference_global_rows(x: torch.Tensor, gidx: torch.Tensor, kpm: Optional[torch.Tensor],
                          w_q: torch.Tensor, b_q: torch.Tensor, w_k: torch.Tensor, b_k: torch.Tensor,
                          w_v: torch.Tensor, b_v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Outputs (B, G, H, D) of the global rows ``gidx`` (B|1, G; -1 = none) in hidden space."""
    B, N, C = x.shape
    H = num_heads
    D = C // H
    G = gidx.shape[1]
    gi = gidx.long().clamp_min(0).expand(B, -1)
    xg = torch.gather(x, 1, gi[:, :, None].expand(B, G, C))
    qg = torch.nn.functional.linear(xg, w_q, b_q).view(B * G, H, D).transpose(0, 1) / math.sqrt(D)  # (H, BG, D)
    u = torch.matmul(qg, w_k.view(H, D, C))                                # (H, BG, C)
    c0 = torch.matmul(qg, b_k.view(H, D, 1)).float()                       # (H, BG, 1)
    u = u.view(H, B, G, C).permute(1, 2, 0, 3).reshape(B, G * H, C)
    s = torch.matmul(u, x.transpose(1, 2)).float() + c0.view(H, B, G).permute(1, 2, 0).reshape(B, G * H, 1)
    if kpm is not None:
        s = s.masked_fill(~kpm[:, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1).to(x.dtype)                               # (B, G*H, N)
    z = torch.matmul(p, x).view(B, G, H, C).permute(2, 0, 1, 3).reshape(H, B * G, C)
    og = torch.matmul(z, w_v.view(H, D, C).transpose(1, 2)) + b_v.view(H, 1, D)  # (H, BG, D)
    return og.view(H, B, G, D).permute(1, 2, 0, 3)                         # (B, G, H, D)


if HAS_TRITON:

    @triton.jit
    def _prep_kernel(X, GIDX, WQ, BQ, WK, BK, U, C0, sxb, sxn, sgb, G, H, C, scale,
                     D: tl.constexpr, BLOCK_C: tl.constexpr):
        """q_h = (Wq_h x_g + bq_h) * scale; U[bg, h] = Wk_h^T q_h; C0[bg, h] = q_h . bk_h (fp32)."""
        bg = tl.program_id(0)
        h = tl.program_id(1)
        b = bg // G
        g = bg % G
        gi = tl.maximum(tl.load(GIDX + b.to(tl.int64) * sgb + g), 0)
        offs_d = tl.arange(0, D)
        rows = h * D + offs_d
        xrow = X + b.to(tl.int64) * sxb + gi.to(tl.int64) * sxn
        q = tl.zeros([D], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            cm = offs_c < C
            xc = tl.load(xrow + offs_c, mask=cm, other=0.0).to(tl.float32)
            w = tl.load(WQ + rows[:, None] * C + offs_c[None, :], mask=cm[None, :], other=0.0).to(tl.float32)
            q += tl.sum(w * xc[None, :], 1)
        q = (q + tl.load(BQ + rows).to(tl.float32)) * scale
        urow = U + (bg.to(tl.int64) * H + h) * C
        for c0 in range(0, C, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            cm = offs_c < C
            w = tl.load(WK + rows[:, None] * C + offs_c[None, :], mask=cm[None, :], other=0.0).to(tl.float32)
            tl.store(urow + offs_c, tl.sum(w * q[:, None], 0), mask=cm)
        c = tl.sum(q * tl.load(BK + rows).to(tl.float32), 0)
        tl.store(C0 + bg * H + h + offs_d * 0, q * 0.0 + c, mask=offs_d == 0)

    @triton.jit
    def _scores_kernel(X, KPM, U, C0, PZ, PM, PL, sxb, sxn, skpb, N, G, H, C, TPS, NS,
                       HAS_KPM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_CP: tl.constexpr,
                       BLOCK_N: tl.constexpr, DT: tl.constexpr):
        """Tokens [s*TPS, (s+1)*TPS) of one global row, all heads: online softmax of U X^T + c and
        z = P X -> partials (fp32; scores in log2 units)."""
        bg = tl.program_id(0)
        s_id = tl.program_id(1)
        b = bg // G
        offs_h = tl.arange(0, BLOCK_H)
        offs_c = tl.arange(0, BLOCK_CP)
        h_ok = offs_h < H
        c_ok = offs_c < C
        u = tl.load(U + (bg.to(tl.int64) * H + offs_h[:, None]) * C + offs_c[None, :],
                    mask=h_ok[:, None] & c_ok[None, :], other=0.0).to(DT)
        c0 = tl.load(C0 + bg * H + offs_h, mask=h_ok, other=0.0)
        m_i = tl.zeros([BLOCK_H], dtype=tl.float32) - 1.0e30
        l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
        z = tl.zeros([BLOCK_H, BLOCK_CP], dtype=tl.float32)
        xb = X + b.to(tl.int64) * sxb
        lo = s_id * TPS
        hi = tl.minimum(N, lo + TPS)
        for start in range(lo, hi, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            n_ok = offs_n < hi
            x = tl.load(xb + offs_n[:, None] * sxn + offs_c[None, :], mask=n_ok[:, None] & c_ok[None, :], other=0.0)
            s = tl.dot(u, tl.trans(x.to(DT)))
            s = (s + c0[:, None]) * 1.4426950408889634
            ok = n_ok
            if HAS_KPM:
                ok = ok & (tl.load(KPM + b.to(tl.int64) * skpb + offs_n, mask=n_ok, other=0) != 0)
            s = tl.where(ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            z = z * alpha[:, None]
            z = tl.dot(p.to(DT), x.to(DT), z)
            m_i = m_new
        row = (bg.to(tl.int64) * NS + s_id) * H + offs_h
        tl.store(PZ + row[:, None] * C + offs_c[None, :], z, mask=h_ok[:, None] & c_ok[None, :])
        tl.store(PM + row, m_i, mask=h_ok)
        tl.store(PL + row, l_i, mask=h_ok)

    @triton.jit
    def _out_kernel(PZ, PM, PL, GIDX, WV, BV, O, sgb, sob, son, G, H, C, NS,
                    D: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
        """Merge the NS partials of (global row, head h) and write o_h = Wv_h z_h + bv_h."""
        bg = tl.program_id(0)
        h = tl.program_id(1)
        b = bg // G
        g = bg % G
        gi = tl.load(GIDX + b.to(tl.int64) * sgb + g)
        offs_s = tl.arange(0, BLOCK_S)
        s_ok = offs_s < NS
        r = (bg.to(tl.int64) * NS + offs_s) * H + h
        m = tl.load(PM + r, mask=s_ok, other=-1.0e30)
        m_max = tl.max(m, 0)
        w = tl.where(s_ok, tl.math.exp2(m - m_max), 0.0)
        l_sum = tl.sum(w * tl.load(PL + r, mask=s_ok, other=0.0), 0)
        w = w / tl.where(l_sum == 0.0, 1.0, l_sum)
        offs_d = tl.arange(0, D)
        rows = h * D + offs_d
        o = tl.zeros([D], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            offs_c = c0 + tl.arange(0, BLOCK_C)
            cm = offs_c < C
            zc = tl.load(PZ + r[:, None] * C + offs_c[None, :], mask=s_ok[:, None] & cm[None, :], other=0.0)
            zc = tl.sum(zc * w[:, None], 0)
            wv = tl.load(WV + rows[:, None] * C + offs_c[None, :], mask=cm[None, :], other=0.0).to(tl.float32)
            o += tl.sum(wv * zc[None, :], 1)
        o += tl.load(BV + rows).to(tl.float32)
        tl.store(O + b.to(tl.int64) * sob + tl.maximum(gi, 0).to(tl.int64) * son + rows, o.to(O.dtype.element_ty),
                 mask=offs_d < tl.where(gi >= 0, D, 0))


# tokens per program of the score kernel (fewer, longer programs = fewer partials to merge); set
# from the H200 sweep (benchmarks/longformer.py --sweep-global-rows)
GLOBAL_ROWS_MIN_TOKENS = 128


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def global_rows_into(out: torch.Tensor, x: torch.Tensor, gidx: torch.Tensor, kpm: Optional[torch.Tensor],
                     w_q: torch.Tensor, b_q: torch.Tensor, w_k: torch.Tensor, b_k: torch.Tensor,
                     w_v: torch.Tensor, b_v: torch.Tensor, num_heads: int,
                     tokens_per_program: Optional[int] = None) -> None:
    """Write the global rows' attention outputs into ``out`` (B, N, C) at rows ``gidx`` (int32,
    (B|1, G), -1 = none) on the Triton kernels (no host sync: CUDA-graph capturable).
    Needs C <= 1024, head dim 16..128 (power of two), contiguous weights and last dims."""
    B, N, C = x.shape
    H = num_heads
    D = C // H
    G = gidx.shape[1]
    if C > 1024 or D * H != C or D not in (16, 32, 64, 128):
        raise ValueError(f"global-row kernels need hidden size <= 1024 split in heads of 16..128, got C={C}, H={H}")
    if x.stride(-1) != 1 or out.stride(-1) != 1:
        raise ValueError("x and out need a contiguous last dimension")
    sgb = gidx.stride(0) if gidx.shape[0] > 1 else 0
    dev = x.device
    DT = dot_dtype(x.dtype)
    interp = interpreting()
    BG = B * G
    u = torch.empty(BG, H, C, dtype=torch.float32, device=dev)
    c0 = torch.empty(BG, H, dtype=torch.float32, device=dev)
    BLOCK_C = 32 if interp else 128
    ex = {} if interp else {"num_warps": 4}
    _prep_kernel[(BG, H)](x, gidx, w_q, b_q, w_k, b_k, u, c0, x.stride(0), x.stride(1), sgb, G, H, C,
                          1.0 / math.sqrt(D), D=D, BLOCK_C=BLOCK_C, **ex)
    BLOCK_N = 16 if interp else 32
    if interp:
        tps = 2 * BLOCK_N
    elif tokens_per_program:
        tps = triton.cdiv(tokens_per_program, BLOCK_N) * BLOCK_N
    else:  # at most one program per SM for all global rows together, >= GLOBAL_ROWS_MIN_TOKENS each
        want = max(1, _sm_count(dev.index if dev.index is not None else torch.cuda.current_device()) // BG)
        tps = max(GLOBAL_ROWS_MIN_TOKENS, triton.cdiv(triton.cdiv(N, want), BLOCK_N) * BLOCK_N)
    ns = triton.cdiv(N, tps)
    pz = torch.empty(BG * ns * H, C, dtype=torch.float32, device=dev)
    pm = torch.empty(BG * ns * H, dtype=torch.float32, device=dev)
    pl = torch.empty_like(pm)
    if kpm is None:
        k8, skpb = pm, 0  # placeholder, not read
    else:
        k8 = kpm.to(device=dev, dtype=torch.int8).contiguous()
        skpb = k8.stride(0)
    _scores_kernel[(BG, ns)](x, k8, u, c0, pz, pm, pl, x.stride(0), x.stride(1), skpb, N, G, H, C, tps, ns,
                             HAS_KPM=kpm is not None, BLOCK_H=max(16, triton.next_power_of_2(H)),
                             BLOCK_CP=max(16, triton.next_power_of_2(C)), BLOCK_N=BLOCK_N, DT=DT,
                             **({} if interp else {"num_warps": 8, "num_stages": 2}))
    _out_kernel[(BG, H)](pz, pm, pl, gidx, w_v, b_v, out, sgb, out.stride(0), out.stride(1), G, H, C, ns,
                         D=D, BLOCK_S=max(16, triton.next_power_of_2(ns)), BLOCK_C=32, **ex)


__all__ = ["global_rows_into", "reference_global_rows"]
