"""Longformer global query rows computed in hidden space: no key/value_global projection of every token.

A global token attends to every key through the ``key_global`` / ``value_global`` projections. For global row
``g`` and head ``h`` (``q = query_global(x_g)`` scaled, ``Wk_h, bk_h, Wv_h, bv_h`` the head's rows):

    q . (Wk_h x_j + bk_h) = (Wk_h^T q) . x_j + q . bk_h      (the last term is constant over j: softmax drops it)
    sum_j p_j (Wv_h x_j + bv_h) = Wv_h (sum_j p_j x_j) + bv_h

so the rows need only ``u = Wk_h^T q`` (one C-vector per global row and head) and one pass over the hidden
states ``x``, instead of a (tokens x 2C) projection GEMM (2/5 of the layer's input GEMM) and a pass over it.
Four Triton launches (``BoundLaunch``, so the native eager layers can launch them directly), none of them
looping serially over weights (the first version's per-row programs took 20-30 us a call at batch 4, run 87):

1. ``_hq_kernel`` (H, column blocks): for every global row at once (tl.dot over 16-row tiles), q_h = (Wq_h x_g
   + bq_h) * scale * log2(e), then its block of ``u = Wk_h^T q_h`` (B, G*H, C).
2. ``_hs_kernel`` (chunks, B, row tiles): per chunk of tokens, scores ``u . x_j`` (one tl.dot over C), the
   chunk's max and exp2-sum, and the weighted sum of its x rows (fp32 partials; flash-decoding split).
3. ``_hz_kernel`` (rows of u, column blocks): merges the chunks: ``z = sum_j p_j x_j / sum_j p_j``.
4. ``_ho_kernel`` (H): ``Wv_h z + bv_h`` for every global row (tl.dot), written into the head's slice of the
   attention output at the global token's row (slots with index -1 are skipped).

``reference_hidden_global_rows`` is the same algebra in PyTorch (CPU path and the tests' reference).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ._common import HAS_TRITON, LOG2E, BoundLaunch, KernelLauncher, dot_dtype, interpreting, triton_usable

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _global_tile(GIDX, sgb, G, BG, r0, BLOCK_G: tl.constexpr):
        """Rows [r0, r0 + BLOCK_G) of the (b, g) list of global rows: (row, in range, b, token index or -1)."""
        rows = r0 + tl.arange(0, BLOCK_G)
        r_ok = rows < BG
        b = rows // G
        gi = tl.load(GIDX + b * sgb + rows % G, mask=r_ok, other=-1)
        return rows, r_ok, b, gi

    @triton.jit
    def _rows_times_head(A, r_ok, W, wrow, C, BLOCK_G: tl.constexpr, D: tl.constexpr, BLOCK_K: tl.constexpr,
                         DT: tl.constexpr):
        """(BLOCK_G, D) fp32: the rows starting at pointers ``A`` (unit stride over C) times W_h^T, W_h = the rows
        of W at offsets ``wrow``."""
        acc = tl.zeros([BLOCK_G, D], dtype=tl.float32)
        for k0 in range(0, C, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < C
            a = tl.load(A[:, None] + ks[None, :], mask=r_ok[:, None] & k_ok[None, :], other=0.0).to(DT)
            w = tl.load(W + wrow[None, :] + ks[:, None], mask=k_ok[:, None], other=0.0).to(DT)  # (BLOCK_K, D)
            acc += tl.dot(a, w)
        return acc

    @triton.jit
    def _hq_kernel(X, GIDX, WQ, BQ, WK, U, sxb, sxn, sgb, G, BG, C, scale,
                   H: tl.constexpr, D: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr,
                   BLOCK_U: tl.constexpr, DT: tl.constexpr):
        """Columns [cb*BLOCK_U, +BLOCK_U) of u[b, g*H + h] = Wk_h^T ((Wq_h x[b, gidx[b, g]] + bq_h) * scale) for
        every global row (b, g) (zeros for -1 slots): two tl.dot, BLOCK_G rows at a time."""
        h = tl.program_id(0)
        offs_u = tl.program_id(1) * BLOCK_U + tl.arange(0, BLOCK_U)
        u_ok = offs_u < C
        offs_d = tl.arange(0, D)
        wrow = (h * D + offs_d).to(tl.int64) * C
        wk = tl.load(WK + wrow[:, None] + offs_u[None, :], mask=u_ok[None, :], other=0.0).to(DT)  # (D, BLOCK_U)
        bq = tl.load(BQ + h * D + offs_d).to(tl.float32)
        for r0 in range(0, BG, BLOCK_G):
            rows, r_ok, b, gi = _global_tile(GIDX, sgb, G, BG, r0, BLOCK_G)
            xrow = X + b.to(tl.int64) * sxb + tl.maximum(gi, 0).to(tl.int64) * sxn
            acc = _rows_times_head(xrow, r_ok, WQ, wrow, C, BLOCK_G, D, BLOCK_K, DT)
            q = tl.where((r_ok & (gi >= 0))[:, None], (acc + bq[None, :]) * scale, 0.0)
            u = tl.dot(q.to(DT), wk)
            tl.store(U + (rows * H + h).to(tl.int64)[:, None] * C + offs_u[None, :], u.to(U.dtype.element_ty),
                     mask=r_ok[:, None] & u_ok[None, :])

    @triton.jit
    def _hs_kernel(X, U, KPM, PZ, PML, sxb, sxn, skpb, N, C, R, NCHUNK,
                   HAS_KPM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                   DT: tl.constexpr):
        """One chunk of BLOCK_N tokens for BLOCK_R rows of u: scores, max, exp2-sum, sum_j p_j x_j (fp32)."""
        ch = tl.program_id(0)
        b = tl.program_id(1)
        offs_r = tl.program_id(2) * BLOCK_R + tl.arange(0, BLOCK_R)
        r_ok = offs_r < R
        offs_n = ch * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        xb = X + b.to(tl.int64) * sxb + offs_n.to(tl.int64)[:, None] * sxn
        ub = U + (b * R + offs_r).to(tl.int64)[:, None] * C
        s = tl.zeros([BLOCK_R, BLOCK_N], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            cm = cols < C
            u = tl.load(ub + cols[None, :], mask=r_ok[:, None] & cm[None, :], other=0.0).to(DT)
            x = tl.load(xb + cols[None, :], mask=n_ok[:, None] & cm[None, :], other=0.0).to(DT)
            s += tl.dot(u, tl.trans(x))
        key_ok = n_ok
        if HAS_KPM:
            key_ok = key_ok & (tl.load(KPM + b.to(tl.int64) * skpb + offs_n, mask=n_ok, other=0) != 0)
        s = tl.where(key_ok[None, :], s, float("-inf"))
        m = tl.maximum(tl.max(s, axis=1), -1.0e30)  # a chunk with no allowed key: p = 0, l = 0
        p = tl.math.exp2(s - m[:, None])
        l = tl.sum(p, axis=1)
        prow = ((b * R + offs_r) * NCHUNK + ch).to(tl.int64)
        for c0 in range(0, C, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            cm = cols < C
            x = tl.load(xb + cols[None, :], mask=n_ok[:, None] & cm[None, :], other=0.0).to(DT)
            z = tl.dot(p.to(DT), x)
            tl.store(PZ + prow[:, None] * C + cols[None, :], z, mask=r_ok[:, None] & cm[None, :])
        tl.store(PML + prow * 2, m, mask=r_ok)
        tl.store(PML + prow * 2 + 1, l, mask=r_ok)

    @triton.jit
    def _hz_kernel(PZ, PML, Z, C, NCHUNK, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
        """Merge the chunks of one row of u (program 0: row, 1: column block): Z = sum_j p_j x_j / sum_j p_j."""
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        cm = cols < C
        base = row * NCHUNK
        ks = tl.arange(0, BLOCK_K)
        mx = tl.full([BLOCK_K], -1.0e30, dtype=tl.float32)
        for k0 in range(0, NCHUNK, BLOCK_K):
            mx = tl.maximum(mx, tl.load(PML + (base + k0 + ks) * 2, mask=k0 + ks < NCHUNK, other=-1.0e30))
        big = tl.max(mx, axis=0)
        lsum = tl.zeros([BLOCK_K], dtype=tl.float32)
        z = tl.zeros([BLOCK_C], dtype=tl.float32)
        for k0 in range(0, NCHUNK, BLOCK_K):
            k_ok = k0 + ks < NCHUNK
            w = tl.where(k_ok, tl.math.exp2(tl.load(PML + (base + k0 + ks) * 2, mask=k_ok, other=0.0) - big), 0.0)
            lsum += w * tl.load(PML + (base + k0 + ks) * 2 + 1, mask=k_ok, other=0.0)
            pz = tl.load(PZ + (base + k0 + ks)[:, None] * C + cols[None, :], mask=k_ok[:, None] & cm[None, :],
                         other=0.0)
            z += tl.sum(pz * w[:, None], axis=0)
        total = tl.sum(lsum, axis=0)
        z = z / tl.where(total > 0, total, 1.0)
        tl.store(Z + row * C + cols, z.to(Z.dtype.element_ty), mask=cm)

    @triton.jit
    def _ho_kernel(Z, GIDX, WV, BV, O, sgb, sob, son, soh, G, BG, C,
                   H: tl.constexpr, D: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr,
                   DT: tl.constexpr):
        """Head h of every global row: O[b, gidx[b, g], h] = Wv_h Z[b, g*H + h] + bv_h (-1 slots skipped)."""
        h = tl.program_id(0)
        offs_d = tl.arange(0, D)
        wrow = (h * D + offs_d).to(tl.int64) * C
        bv = tl.load(BV + h * D + offs_d).to(tl.float32)
        for r0 in range(0, BG, BLOCK_G):
            rows, r_ok, b, gi = _global_tile(GIDX, sgb, G, BG, r0, BLOCK_G)
            acc = _rows_times_head(Z + (rows * H + h).to(tl.int64) * C, r_ok, WV, wrow, C, BLOCK_G, D, BLOCK_K, DT)
            ok = r_ok & (gi >= 0)
            dst = O + b.to(tl.int64) * sob + tl.maximum(gi, 0).to(tl.int64) * son + h * soh
            tl.store(dst[:, None] + offs_d[None, :], (acc + bv[None, :]).to(O.dtype.element_ty), mask=ok[:, None])

    _HQ = KernelLauncher(_hq_kernel)
    _HS = KernelLauncher(_hs_kernel)
    _HZ = KernelLauncher(_hz_kernel)
    _HO = KernelLauncher(_ho_kernel)


def reference_hidden_global_rows(x: torch.Tensor, gidx: torch.Tensor, kpm: Optional[torch.Tensor],
                                 w_q: torch.Tensor, b_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor,
                                 b_v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """PyTorch version: the global rows' attention outputs (B, G, C) in ``gidx`` order (``gidx``: (B or 1, G),
    -1 slots read row 0; ``kpm``: (B, N) bool, True = key allowed). A handful of small GEMMs, no N x C
    intermediate (the key bias is not needed: shift invariance)."""
    B, N, C = x.shape
    H = num_heads
    D = C // H
    G = gidx.shape[1]
    gsel = gidx.long().clamp_min(0).expand(B, G)[:, :, None].expand(B, G, C)
    xg = torch.gather(x, 1, gsel).reshape(B * G, C)
    sc = 1.0 / math.sqrt(D)
    qg = torch.addmm(b_q, xg, w_q.t(), beta=sc, alpha=sc)                  # (BG, C) = (BG, H*D), scaled
    u = torch.bmm(qg.view(B * G, H, D).transpose(0, 1), w_k.view(H, D, C))  # (H, BG, C)
    u = u.view(H, B, G, C).permute(1, 2, 0, 3).reshape(B, G * H, C)
    s = torch.bmm(u, x.transpose(1, 2))                                     # (B, G*H, N)
    if kpm is not None:
        s = s.masked_fill(~kpm[:, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)  # fp32 math inside for half inputs
    z = torch.bmm(p, x).view(B, G, H, C).permute(2, 0, 1, 3).reshape(H, B * G, C)
    og = torch.baddbmm(b_v.view(H, 1, D), z, w_v.view(H, D, C).transpose(1, 2))  # (H, BG, D)
    return og.view(H, B, G, D).permute(1, 2, 0, 3).reshape(B, G, C)


class HiddenRowsPlan:
    """The four bound launches of one signature and the scratch they use (byte offsets ``off_u``, ``off_pz``,
    ``off_pml``, ``off_z`` in one buffer of ``scratch_bytes``). Heads: ``hq`` (x, gidx, w_q, b_q, w_k, u),
    ``hs`` (x, u, kpm, pz, pml), ``hz`` (pz, pml, z), ``ho`` (z, gidx, w_v, b_v, out)."""

    def __init__(self, hq: BoundLaunch, hs: BoundLaunch, hz: BoundLaunch, ho: BoundLaunch, sizes: tuple) -> None:
        self.hq, self.hs, self.hz, self.ho = hq, hs, hz, ho
        offs, total = [], 0
        for n in sizes:
            offs.append(total)
            total += -(-n // 256) * 256
        self.off_u, self.off_pz, self.off_pml, self.off_z = offs
        self.scratch_bytes = total


def plan_hidden_global_rows(x: torch.Tensor, gidx: torch.Tensor, kpm8: Optional[torch.Tensor], skpb: int,
                            out_strides: tuple, num_heads: int) -> HiddenRowsPlan:
    """Plan (cached per signature) for x (B, N, C) with unit channel stride, gidx int32 (B or 1, G), the int8
    key mask (or None) with row stride ``skpb`` and an output (B, N, H, D) of these strides (the last is 1)."""
    B, N, C = x.shape
    H = num_heads
    D = C // H
    G = gidx.shape[1]
    sgb = gidx.stride(0) if gidx.shape[0] > 1 else 0
    so = tuple(out_strides)
    interp = interpreting()
    key = (x.device.index, x.dtype, tuple(x.shape), x.stride(0), x.stride(1), G, sgb, kpm8 is not None, skpb,
           tuple(so), H, interp)
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    if len(_PLANS) > 64:
        _PLANS.clear()
    R = G * H
    block_r = 16 if interp else min(64, max(16, triton.next_power_of_2(R)))
    rt = triton.cdiv(R, block_r)
    if interp:
        block_n = 16
    else:  # about two programs per SM, 32..256 tokens each
        from .window_global import _num_sms
        want = triton.cdiv(B * N * rt, 2 * _num_sms(x.device))
        block_n = min(256, max(32, triton.next_power_of_2(want)))
    nchunk = triton.cdiv(N, block_n)
    block_c = 16 if interp else 64
    dt = dot_dtype(x.dtype)
    opts = {} if interp else {"num_warps": 4}
    scale = LOG2E / math.sqrt(D)
    BG = B * G
    block_u = 16 if interp else 128
    block_k = 16 if interp else 64
    hq = BoundLaunch(_HQ, key + ("hq",), (H, triton.cdiv(C, block_u)),
                     (x.stride(0), x.stride(1), sgb, G, BG, C, scale, H, D, 16, block_k, block_u, dt),
                     opts if interp else {"num_warps": 4, "num_stages": 3})
    hs = BoundLaunch(_HS, key + ("hs",), (nchunk, B, rt), (x.stride(0), x.stride(1), skpb, N, C, R, nchunk,
                                                          kpm8 is not None, block_r, block_n, block_c, dt), opts)
    hz = BoundLaunch(_HZ, key + ("hz",), (B * R, triton.cdiv(C, block_u)), (C, nchunk, 16 if interp else 32, block_u),
                     opts)
    ho = BoundLaunch(_HO, key + ("ho",), (H,), (sgb, so[0], so[1], so[2], G, BG, C, H, D, 16, block_k, dt),
                     opts if interp else {"num_warps": 4, "num_stages": 3})
    sizes = (B * R * C * x.element_size(), B * R * nchunk * C * 4, B * R * nchunk * 2 * 4, B * R * C * x.element_size())
    plan = _PLANS[key] = HiddenRowsPlan(hq, hs, hz, ho, sizes)
    return plan


class PendingRows:
    """The global rows between ``begin_hidden_global_rows`` (u, the chunk scores and their merge: they read only
    the layer input, so they may run on a side stream beside the input GEMM and the band kernel) and ``finish``
    (the value projection, written into the attention output: after the band kernel wrote its rows, or on the
    side stream beside a band kernel that leaves the global rows alone)."""
    __slots__ = ("plan", "scratch", "z", "gidx", "w_v", "b_v", "side", "main", "og")

    def finish(self, out: torch.Tensor, beside: bool = False) -> None:
        """Write the rows into ``out`` (B, N, H, D) (the strides given to ``begin_hidden_global_rows``).
        ``beside``: launch on the side stream (begun with one) and leave the join to ``join()``: only when
        nothing else writes those rows meanwhile (``window_global_forward(..., global_rows="skip")``)."""
        if self.og is not None:  # PyTorch path
            B, G = out.shape[0], self.gidx.shape[1]
            gi = self.gidx.long().expand(B, G)
            for b, g in (gi >= 0).nonzero().tolist():
                out[b, gi[b, g]] = self.og[b, g].view(out.shape[2], out.shape[3])
            return
        if beside and self.side is not None:
            self.plan.ho((self.z, self.gidx, self.w_v, self.b_v, out), self.side.cuda_stream, self.side)
            return
        self.join()
        raw = torch._C._cuda_getCurrentRawStream(out.device.index) if out.is_cuda else None
        self.plan.ho((self.z, self.gidx, self.w_v, self.b_v, out), raw)

    def join(self) -> None:
        """The current stream waits for the side stream's launches (once; nothing without a side stream)."""
        if self.side is not None:
            from ._common import join_from
            join_from(self.main, self.side)
            self.side = None


def begin_hidden_global_rows(x: torch.Tensor, gidx: torch.Tensor, kpm: Optional[torch.Tensor], w_q: torch.Tensor,
                             b_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, b_v: torch.Tensor,
                             num_heads: int, out_strides: tuple, side: Optional["torch.cuda.Stream"] = None
                             ) -> PendingRows:
    """Launch the first three kernels of the global rows (on ``side`` when given: forked from the current stream,
    joined in ``PendingRows.finish`` or ``join``); see ``hidden_global_rows``. The output's strides fix the plan."""
    B, N, C = x.shape
    H = num_heads
    D = C // H
    if any(w.dtype != x.dtype for w in (w_q, b_q, w_k, w_v, b_v)):  # fp32 weights under autocast
        w_q, b_q, w_k, w_v, b_v = (w.to(x.dtype) for w in (w_q, b_q, w_k, w_v, b_v))
    weights = (w_q, b_q, w_k, w_v, b_v)
    kpm8, skpb = None, 0
    if kpm is not None and kpm.dtype == torch.bool and kpm.stride(-1) == 1 and kpm.device == x.device:
        kpm8, skpb = kpm.view(torch.int8), kpm.stride(0)
    p = PendingRows()
    p.gidx, p.w_v, p.b_v, p.side, p.og = gidx, w_v, b_v, None, None
    ok = (triton_usable(x) and x.stride(2) == 1 and gidx.dtype == torch.int32 and gidx.stride(-1) == 1
          and gidx.device == x.device and gidx.shape[0] in (1, B) and out_strides[3] == 1 and D in (16, 32, 64, 128)
          and (kpm is None or kpm8 is not None) and all(w.is_contiguous() for w in weights)
          and not (x.data_ptr() & 15))
    if not ok:
        p.og = reference_hidden_global_rows(x, gidx, kpm, w_q, b_q, w_k, w_v, b_v, H)
        return p
    plan = p.plan = plan_hidden_global_rows(x, gidx, kpm8, skpb, out_strides, H)
    scratch = p.scratch = torch.empty(plan.scratch_bytes, dtype=torch.uint8, device=x.device)
    u = scratch[plan.off_u:].view(x.dtype)
    pz = scratch[plan.off_pz:].view(torch.float32)
    pml = scratch[plan.off_pml:].view(torch.float32)
    p.z = scratch[plan.off_z:].view(x.dtype)
    km = kpm8 if kpm8 is not None else gidx  # placeholder pointer (HAS_KPM off)
    if side is not None:
        from ._common import fork_to
        p.side, p.main = side, torch.cuda.current_stream(x.device)
        fork_to(side, p.main)
        raw = side.cuda_stream
    else:
        raw = torch._C._cuda_getCurrentRawStream(x.device.index) if x.is_cuda else None
    plan.hq((x, gidx, w_q, b_q, w_k, u), raw, side)
    plan.hs((x, u, km, pz, pml), raw, side)
    plan.hz((pz, pml, p.z), raw, side)
    return p


def hidden_global_rows(x: torch.Tensor, gidx: torch.Tensor, kpm: Optional[torch.Tensor], w_q: torch.Tensor,
                       b_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, b_v: torch.Tensor,
                       num_heads: int, out: torch.Tensor) -> None:
    """Write the global rows' attention output into ``out`` (B, N, H, D): for each slot of ``gidx`` (prepared
    int32 (B or 1, G), -1 = none) ``out[b, gidx[b, g]]``. Triton where it runs (four launches, no host sync,
    CUDA-graph capturable), else the PyTorch reference. ``kpm``: (B, N) bool key mask (True = keep) or None.
    Weights of another dtype than ``x`` (fp32 weights under autocast) are cast to it."""
    if gidx.shape[1] == 0:
        return
    begin_hidden_global_rows(x, gidx, kpm, w_q, b_q, w_k, w_v, b_v, num_heads, out.stride()).finish(out)


_PLANS: dict = {}


__all__ = ["hidden_global_rows", "begin_hidden_global_rows", "PendingRows", "reference_hidden_global_rows",
           "plan_hidden_global_rows", "HiddenRowsPlan"]
