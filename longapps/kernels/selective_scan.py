"""Mamba-1 selective scan: Triton forward/backward (chunked over the sequence) + PyTorch versions.

All tensors are token-major (batch, length, channels), any strides:

    u, delta, z : (b, l, d)      A : (d, n)      B, C : (b, l, n)      D, delta_bias : (d,)

    dt_t = softplus(delta_t + delta_bias)               (softplus optional)
    h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t   (per channel d and state n, h_{-1} = 0)
    y_t  = (sum_n C_t h_t + D * u_t) * silu(z_t)        (D and z optional)

- ``reference_selective_scan``: the recurrence one token at a time (the definition tests compare against).
- ``chunked_selective_scan``: the CPU path. Without autograd the fused C kernel of ``selective_scan_cpu`` (one
  pass, state in L1; built once with the system compiler). Otherwise (or without a compiler) PyTorch,
  two-level (a loop over ``chunk`` positions that runs every chunk of a
  block at once, twice, and a loop over the block's chunks for the carry); about ``2 chunk + block/chunk``
  Python steps per block instead of one per token, and no (length, d, n) tensor. Differentiable by autograd.
- Triton (CUDA, or CPU under ``TRITON_INTERPRET=1``), forward ``impl="seq"`` (default): each program owns
  ``BD`` channels x all states in registers and walks its tokens one by one (the next token's inputs loaded
  before the current one is computed); ``impl="tile"``: tiles of ``T`` tokens with a ``tl.associative_scan``
  over (decay, input) pairs. Either way the sequence is also cut into segments so that small batches fill
  the GPU: a first launch runs every segment from a zero state and keeps only its end state (with the walk's
  default ``fold="last"``, the last program of each channel block to finish, found by an atomic ticket, then turns
  those end states into every segment's start state in one pass), the second starts from that state (or, with
  ``fold="inline"``, folds all earlier end states itself) and writes ``y``. The backward walks the tiles in
  reverse with a reverse scan for the adjoint state, recomputing each tile's states from the tile-start states
  the forward saved.
"""
from __future__ import annotations

import math
import os
from typing import Optional

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, interpreting, triton_or_fallback, triton_usable

# tile sizes and launch shape; the GPU benchmark (benchmarks/mamba_gpu.py) measures alternatives
# impl "seq": sequential in-register walk (`_scan_seq_kernel`); "tile": tiles of T tokens with an associative scan
# (`_scan_fwd_kernel`). T is also the backward's tile (the forward saves the state every T tokens).
# Run 51 (H200, 1 x 4096 x 1536): seq BD 64 / 2 warps / 8 programs per SM was the best walk; runs 54 and 56
# compared launch shapes, loads of 2-4 tokens in flight, batched segment folds and a closed-form first pass on
# the whole model: none was faster (benchmarks/RESULTS.md, "Runs 52-54"), so the walk stays this simple.
# Run 59 (MUFU softplus, offsets advanced per token): BD 32 / 1 warp / 16 programs per SM best on the whole
# model (5.188 vs 5.259 ms for 64 / 2 / 8). One thread per channel (all states in-thread) was slower (runs 57-58).
# Runs 62-68 (session 10), all slower than this walk on the whole model: a separate fold launch (10 us per layer
# as an associative scan, still slower with its loads in flight), BD 16, more programs per SM (18-28), the tile
# laid out 1 state x 16 channels per thread, softplus(dt_proj) precomputed by its own kernel (no change).
# Session 11 (runs 70-71): the segment fold done once by the last program of each channel block (fold "last", its
# loads 3 stages deep) instead of by every segment (fold "inline", O(S^2) L2 reads): -0.105 ms on the whole model.
# Slower there: the walk's loop unrolled 2 / 4 (+0.36 / +0.29 ms), its B / C loads pipelined by Triton with dt, u, z
# loaded at their token (+0.83 ms; +1.5 ms at 24 programs per SM), fold_stages 5 / 8 (+0.07 / +0.32 ms).
SCAN_DEFAULTS = {"impl": "seq", "BD": 32, "T": 32, "num_warps": 1, "programs_per_sm": 16, "fold_stages": 3,
                 "fold": "last", "seg_unit": 1}
TILE_SCAN_DEFAULTS = {"impl": "tile", "BD": 8, "T": 32, "num_warps": 4, "programs_per_sm": 8}


def _env_scan_config(value: str) -> dict:
    """``LONGAPPS_SCAN="impl=seq,BD=32,num_warps=1,programs_per_sm=16"`` -> the forward scan's launch config
    (how a benchmark hands its measured best to other processes); ``impl=tile`` alone picks the tile defaults."""
    over: dict = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        key, _, val = part.partition("=")
        if key not in SCAN_DEFAULTS:
            raise ValueError(f"LONGAPPS_SCAN: unknown key '{key}' ({', '.join(SCAN_DEFAULTS)})")
        over[key] = val if key in ("impl", "fold") else float(val) if key == "programs_per_sm" else int(val)
    base = TILE_SCAN_DEFAULTS if over.get("impl") == "tile" else SCAN_DEFAULTS
    return {**base, **over}


if os.environ.get("LONGAPPS_SCAN"):
    SCAN_DEFAULTS = _env_scan_config(os.environ["LONGAPPS_SCAN"])
SCAN_BWD_DEFAULTS = {"BD": 8, "T": 32, "num_warps": 4}


def _dt(delta: torch.Tensor, delta_bias: Optional[torch.Tensor], softplus: bool) -> torch.Tensor:
    dt = delta if delta.dtype == torch.float64 else delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)
    return F.softplus(dt) if softplus else dt


def _finish(y: torch.Tensor, u: torch.Tensor, D: Optional[torch.Tensor], z: Optional[torch.Tensor]) -> torch.Tensor:
    if D is not None:
        y = y + u.to(y.dtype) * D.to(y.dtype)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def reference_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
                             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The recurrence token by token in ``dtype`` (float64 for tests); returns ``dtype``."""
    dt = _dt(delta, delta_bias, delta_softplus).to(dtype)
    A, B, C, uu = A.to(dtype), B.to(dtype), C.to(dtype), u.to(dtype)
    h = torch.zeros(u.shape[0], u.shape[2], A.shape[1], dtype=dtype, device=u.device)
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * uu[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1) if ys else uu.new_zeros(uu.shape)
    return _finish(y, uu, None if D is None else D.to(dtype), None if z is None else z.to(dtype))


CPU_CHUNK = 64          # tokens per closed-form chunk (benchmarks/mamba_cpu.py --chunk measures others)
CPU_SPAN_LIMIT = 40.0   # max |A| * (sum of dt) inside a chunk: exp(+-40) stays far inside fp32's range


def chunked_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True,
                           chunk: Optional[int] = None, block: int = 8192, method: str = "auto") -> torch.Tensor:
    """Fast CPU scan (fp32 math, output in u's dtype); see the module docstring.

    method "auto": the fused C kernel (``selective_scan_cpu``) on CPU when no gradient is wanted and it could be
    built, else "steps"; "steps": the two-pass position loop over blocks (PyTorch, differentiable);
    "closed": chunks of ``chunk`` tokens, each in closed form at once (cumsum of the log decays, one cumsum of
    the rescaled inputs, the contraction with C), a chunk cut shorter where its decay span would leave the
    float range (PyTorch, differentiable; measured slower than "steps" on one core: kept as an alternative)."""
    bsz, L, d = u.shape
    n = A.shape[1]
    ct = torch.float64 if u.dtype == torch.float64 else torch.float32
    if method == "auto" and ct == torch.float32 and u.device.type == "cpu" and n <= 64 and not (
            torch.is_grad_enabled() and any(x is not None and x.requires_grad
                                            for x in (u, delta, A, B, C, D, z, delta_bias))):
        from . import selective_scan_cpu as cpu

        if cpu.available():  # the fused C kernel (inference); see selective_scan_cpu.py
            return cpu.selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    A = A.to(ct)
    dt = _dt(delta, delta_bias, delta_softplus).to(ct) if ct == torch.float32 else \
        _dt(delta.to(ct), None if delta_bias is None else delta_bias.to(ct), delta_softplus)
    h = u.new_zeros(bsz, d, n, dtype=ct)
    if method == "closed":
        y = _closed_form_scan(u.to(ct), dt, A, B.to(ct), C.to(ct), h, chunk or CPU_CHUNK)
        return _finish(y, u.to(ct), D, z).to(u.dtype)
    if method not in ("auto", "steps"):
        raise ValueError(f"method: unknown '{method}' (auto, steps, closed)")
    outs = []
    for s in range(0, L, block):
        e = min(L, s + block)
        y, h = _scan_block(u[:, s:e].to(ct), dt[:, s:e], A, B[:, s:e].to(ct), C[:, s:e].to(ct), h, chunk)
        outs.append(y)
    y = torch.cat(outs, 1) if outs else u.new_zeros(u.shape, dtype=ct)
    return _finish(y, u.to(ct), D, z).to(u.dtype)


def _chunk_plan(dt: torch.Tensor, A: torch.Tensor, chunk: int, limit: float = CPU_SPAN_LIMIT) -> list[tuple[int, int]]:
    """Chunk boundaries [(start, stop)]: ``chunk`` tokens, halved (repeatedly) where the chunk's decay span
    max_{b,d} max_n |A| * sum(dt over the chunk's tokens after its first) exceeds `limit` (one token always
    fits: its own decay never enters an exponent). One host sync per halving round."""
    L = dt.shape[1]
    if L == 0:
        return []
    cum = torch.cumsum(dt, 1)                                   # (b, L, d) inclusive
    amax = A.abs().amax(1)                                      # (d,)
    todo = [(s, min(L, s + chunk)) for s in range(0, L, chunk)]
    done: list[tuple[int, int]] = []
    while todo:
        st = torch.tensor([a for a, _ in todo])
        en = torch.tensor([b - 1 for _, b in todo])
        span = ((cum[:, en] - cum[:, st]) * amax).amax(dim=(0, 2)).tolist()   # (chunks,)
        nxt = []
        for (a, b), sp in zip(todo, span):
            if sp <= limit or b - a == 1:
                done.append((a, b))
            else:
                mid = a + (b - a) // 2
                nxt += [(a, mid), (mid, b)]
        todo = nxt
    return sorted(done)


def _closed_form_scan(u, dt, A, B, C, h, chunk):
    """y (b, L, d) without D/z. Per chunk, with c_t = A * (dt_1 + .. + dt_t) (t counted from the chunk's first
    token, so c_0 = 0) and v_t = dt_t u_t B_t:

        h_t = exp(c_t) * (exp(A dt_0) h_in + sum_{s<=t} v_s exp(-c_s))

    exp(-c_s) <= exp(span) by the plan, and the weights of the sum grow with s, so the rounding stays that of a
    plain sum. Work is on (b, d, n, T) tensors with the chunk's tokens innermost (PyTorch's cumsum is ~5x
    faster along the last dimension): a dozen Python steps per chunk, none per token, and the (L, d, n) tensor
    of the whole sequence is never built."""
    ys = []
    l2e = 1.4426950408889634
    A2 = (A * l2e)[None, :, :, None]                              # (1, d, n, 1), exp2 is faster than exp
    uT, dtT, BT, CT = (x.transpose(1, 2) for x in (u, dt, B, C))   # (b, d|n, L) views
    for s, e in _chunk_plan(dt.detach(), A.detach(), chunk):
        dtc = dtT[..., s:e]                                       # (b, d, T)
        cum = torch.cumsum(dtc, -1) - dtc[..., :1]                # 0 at the chunk's first token
        E = torch.exp2(cum[:, :, None, :] * A2)                   # (b, d, n, T) <= 1
        v = (dtc * uT[..., s:e])[:, :, None, :] * BT[:, None, :, s:e]
        H = E * (torch.cumsum(v / E, -1) + (torch.exp2(dtc[:, :, None, :1] * A2) * h[..., None]))
        ys.append((H * CT[:, None, :, s:e]).sum(2))              # (b, d, T)
        h = H[..., -1]
    return torch.cat(ys, -1).transpose(1, 2) if ys else u.new_zeros(u.shape)


def _scan_block(u, dt, A, B, C, h0, chunk):
    """One block: (b, m, d) inputs, h0 (b, d, n) -> y (b, m, d) without D/z, end state.

    Pass 1 runs every chunk from a zero state at once (position by position) and keeps only the chunk-end
    states; the carry loop turns them into each chunk's start state (a chunk's decay is exp(A * sum dt));
    pass 2 re-runs the positions from the right start states and contracts with C. No (m, d, n) tensor is
    ever materialised: every step works on (b, chunks, d, n)."""
    bsz, m, d = u.shape
    T = min(chunk or max(8, int(math.sqrt(m / 2))), m)
    nc = -(-m // T)
    pad = nc * T - m
    if pad:  # padded positions: dt = 0 -> decay 1, input 0: the state passes through unchanged
        u, dt, B, C = (F.pad(x, (0, 0, 0, pad)) for x in (u, dt, B, C))
    if not (torch.is_grad_enabled() and any(x.requires_grad for x in (u, dt, A, B, C, h0))):
        return _scan_block_inplace(u, dt, A, B, C, h0, T, nc, m)
    dtv = dt.view(bsz, nc, T, d, 1)
    xv = (dt * u).view(bsz, nc, T, d, 1)
    Bv = B.view(bsz, nc, T, 1, -1)
    Cv = C.view(bsz, nc, T, -1, 1)

    def step(t: int, state: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(xv[:, :, t] * Bv[:, :, t], torch.exp(dtv[:, :, t] * A), state)

    cur = torch.zeros(bsz, nc, d, A.shape[1], dtype=u.dtype, device=u.device)
    for t in range(T):
        cur = step(t, cur)
    tot = torch.exp(dtv.sum(2) * A)                          # (b, nc, d, n) decay over each chunk
    starts = []
    carry = h0
    for c in range(nc):
        starts.append(carry)
        carry = torch.addcmul(cur[:, c], tot[:, c], carry)
    cur = torch.stack(starts, 1)
    ys = []
    for t in range(T):
        cur = step(t, cur)
        ys.append(torch.matmul(cur, Cv[:, :, t]).squeeze(-1))
    y = torch.stack(ys, 2).reshape(bsz, nc * T, d)[:, :m]
    return y, carry


def _scan_block_inplace(u, dt, A, B, C, h0, T, nc, m):
    """`_scan_block` without autograd: the same steps in place on preallocated buffers, every step's inputs
    made contiguous once (position-major). (Keeping all decays exp(dt A) for both passes was slower: memory.)"""
    bsz, _, d = u.shape
    n = A.shape[1]

    def pos_major(x: torch.Tensor) -> torch.Tensor:  # (b, nc*T, k) -> (T, b, nc, k)
        return x.reshape(bsz, nc, T, -1).permute(2, 0, 1, 3).contiguous()

    dtT = pos_major(dt).unsqueeze(-1)                 # (T, b, nc, d, 1)
    xT = pos_major(dt * u).unsqueeze(-1)
    BT = pos_major(B).unsqueeze(-2)                   # (T, b, nc, 1, n)
    CT = pos_major(C).unsqueeze(-2)
    cur = torch.zeros(bsz, nc, d, n, dtype=u.dtype, device=u.device)
    dec = torch.empty_like(cur)

    def step(t: int) -> None:
        torch.mul(dtT[t], A, out=dec).exp_()
        cur.mul_(dec).addcmul_(xT[t], BT[t])

    for t in range(T):
        step(t)
    tot = torch.exp(dtT.sum(0) * A)                   # (b, nc, d, n) decay over each chunk
    ends = cur.clone()
    carry = h0
    for c in range(nc):
        cur[:, c] = carry
        carry = torch.addcmul(ends[:, c], tot[:, c], carry)
    ys = torch.empty(T, bsz, nc, d, dtype=u.dtype, device=u.device)
    tmp = torch.empty_like(cur)
    for t in range(T):
        step(t)
        torch.sum(torch.mul(cur, CT[t], out=tmp), -1, out=ys[t])
    y = ys.permute(1, 2, 0, 3).reshape(bsz, nc * T, d)[:, :m]
    return y, carry


# ---------------------------------------------------------------------------------------------------------
# Triton
# ---------------------------------------------------------------------------------------------------------
if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _combine(a1, b1, a2, b2):
        return a1 * a2, a2 * b1 + b2

    @triton.jit
    def _softplus_dt(dt_raw, bias, SOFTPLUS: tl.constexpr):
        x = dt_raw + bias[None, :]
        if SOFTPLUS:
            x = _softplus(x, False)
        return x

    @triton.jit
    def _softplus(x, FAST_LOG: tl.constexpr):
        """softplus(x) = ln(1 + e^x) (x for x > 20); with FAST_LOG the log is one MUFU lg2.approx instead of
        libdevice's polynomial (absolute error ~1e-7; e^x < 2^-10 takes ln(1 + e) ~ e - e^2 / 2 instead, so small
        dt keep their relative accuracy)."""
        e = tl.exp2(x * 1.4426950408889634)
        if FAST_LOG:
            lg = tl.inline_asm_elementwise("lg2.approx.f32 $0, $1;", "=r,r", [1.0 + e], dtype=tl.float32,
                                           is_pure=True, pack=1) * 0.6931471805599453
        else:
            lg = tl.log2(1.0 + e) * 0.6931471805599453
        lg = tl.where(e < 0.0009765625, e - 0.5 * e * e, lg)
        return tl.where(x <= 20.0, lg, x)

    @triton.jit
    def _tile(X, bi64, rows64, cols, s_b, s_l, s_c, mask):
        """A (rows, cols) tile of a (batch, length, channels) tensor, in fp32 (0 where masked)."""
        return tl.load(X + bi64 * s_b + rows64[:, None] * s_l + cols[None, :] * s_c, mask=mask, other=0.0).to(tl.float32)

    @triton.jit
    def _channel_params(A, DB, Dv, offs_d, offs_n, dmask, dn_mask, N, HAS_DB: tl.constexpr, HAS_D: tl.constexpr,
                        BD: tl.constexpr):
        """A (natural log base), the dt bias and the D skip of a block of channels, fp32 (zeros when absent)."""
        Anat = tl.load(A + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
        bias = tl.zeros([BD], dtype=tl.float32)
        dskip = tl.zeros([BD], dtype=tl.float32)
        if HAS_DB:
            bias = tl.load(DB + offs_d, mask=dmask, other=0.0).to(tl.float32)
        if HAS_D:
            dskip = tl.load(Dv + offs_d, mask=dmask, other=0.0).to(tl.float32)
        return Anat, bias, dskip

    @triton.jit
    def _scan_fwd_kernel(U, DT, A, Bm, Cm, Dv, Z, DB, Y, Hend, Dsum, Hsave,
                         L, Dm, N, NDB, S, SEG_LEN, n_tiles,
                         su_b, su_l, su_d, sd_b, sd_l, sd_d, sb_b, sb_l, sb_n, sc_b, sc_l, sc_n,
                         sz_b, sz_l, sz_d, sy_b, sy_l, sy_d,
                         MODE: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                         HAS_DB: tl.constexpr, SAVE: tl.constexpr,
                         BD: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
        """MODE 0: scan one segment from zero, store its end state and sum of dt. MODE 1: fold the earlier
        segments into the start state, scan, write y (and, if SAVE, every tile's start state)."""
        pid = tl.program_id(0)
        seg = tl.program_id(1)
        bi = pid // NDB
        offs_d = (pid % NDB) * BD + tl.arange(0, BD)
        offs_n = tl.arange(0, NP)
        offs_t = tl.arange(0, T)
        dmask = offs_d < Dm
        nmask = offs_n < N
        dn_mask = dmask[:, None] & nmask[None, :]
        Anat, bias, dskip = _channel_params(A, DB, Dv, offs_d, offs_n, dmask, dn_mask, N, HAS_DB, HAS_D, BD)
        A2 = Anat * 1.4426950408889634
        bi64 = bi.to(tl.int64)
        h = tl.zeros([BD, NP], dtype=tl.float32)
        st_off = offs_d[:, None] * NP + offs_n[None, :]
        if MODE == 1:
            for s in range(0, seg):  # fold the end states of the earlier segments
                base = (bi64 * S + s)
                ds = tl.load(Dsum + base * Dm + offs_d, mask=dmask, other=0.0)
                hs = tl.load(Hend + base * Dm * NP + st_off, mask=dn_mask, other=0.0)
                h = tl.exp2(A2 * ds[:, None]) * h + hs
        dsum = tl.zeros([BD], dtype=tl.float32)
        start = seg * SEG_LEN
        stop = tl.minimum(start + SEG_LEN, L)
        for t0 in range(start, stop, T):
            rows = t0 + offs_t
            rmask = rows < L
            m2 = rmask[:, None] & dmask[None, :]
            rows64 = rows.to(tl.int64)
            dt = _tile(DT, bi64, rows64, offs_d, sd_b, sd_l, sd_d, m2)
            dt = tl.where(m2, _softplus_dt(dt, bias, SOFTPLUS), 0.0)
            u = _tile(U, bi64, rows64, offs_d, su_b, su_l, su_d, m2)
            bm = _tile(Bm, bi64, rows64, offs_n, sb_b, sb_l, sb_n, rmask[:, None] & nmask[None, :])
            if MODE == 0:
                # only the end state: h_end = exp(A * sum dt) h + sum_t exp(A * (sum dt - cumsum dt_t)) dt_t u_t B_t
                # (every weight <= 1; no scan over the states needed)
                cs = tl.cumsum(dt, 0)
                tot = tl.sum(dt, 0)
                w = tl.exp2(A2[None, :, :] * (tot[None, :] - cs)[:, :, None])
                h = tl.exp2(A2 * tot[:, None]) * h + tl.sum(w * ((dt * u)[:, :, None] * bm[:, None, :]), 0)
                dsum += tot
            else:
                a = tl.exp2(dt[:, :, None] * A2[None, :, :])
                b = (dt * u)[:, :, None] * bm[:, None, :]
                acum, hl = tl.associative_scan((a, b), 0, _combine)
                hh = hl + acum * h[None, :, :]
                if SAVE:
                    tile = t0 // T
                    tl.store(Hsave + (bi64 * n_tiles + tile) * Dm * NP + st_off, h, mask=dn_mask)
                cm = _tile(Cm, bi64, rows64, offs_n, sc_b, sc_l, sc_n, rmask[:, None] & nmask[None, :])
                y = tl.sum(hh * cm[:, None, :], 2)
                if HAS_D:
                    y += dskip[None, :] * u
                if HAS_Z:
                    zz = _tile(Z, bi64, rows64, offs_d, sz_b, sz_l, sz_d, m2)
                    y = y * zz * tl.sigmoid(zz)
                tl.store(Y + bi64 * sy_b + rows64[:, None] * sy_l + offs_d[None, :] * sy_d,
                         y.to(Y.dtype.element_ty), mask=m2)
                h = tl.sum(tl.where((offs_t == T - 1)[:, None, None], hh, 0.0), 0)
        if MODE == 0:
            base = bi64 * S + seg
            tl.store(Hend + base * Dm * NP + st_off, h, mask=dn_mask)
            tl.store(Dsum + base * Dm + offs_d, dsum, mask=dmask)

    @triton.jit
    def _tok(X, base, cols, s_c, mask):
        """One token's row of a (batch, length, channels) tensor at `base` (int64 offset), fp32."""
        return tl.load(X + base + cols * s_c, mask=mask, other=0.0).to(tl.float32)

    @triton.jit
    def _scan_seq_kernel(U, DT, A, Bm, Cm, Dv, Z, DB, Y, Hend, Dsum, Hsave, Count,
                         L, Dm, N, NDB, S, SEG_LEN, n_tiles, TS,
                         su_b, su_l, su_d, sd_b, sd_l, sd_d, sb_b, sb_l, sb_n, sc_b, sc_l, sc_n,
                         sz_b, sz_l, sz_d, sy_b, sy_l, sy_d,
                         MODE: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                         HAS_DB: tl.constexpr, SAVE: tl.constexpr, BD: tl.constexpr, NP: tl.constexpr,
                         FAST_LOG: tl.constexpr, FOLD_STAGES: tl.constexpr = 1,
                         FOLD_LAST: tl.constexpr = False):
        """Sequential walk (mamba-ssm style): the program's state, an (NP states x BD channels) tile, stays in
        registers and is advanced one token at a time (no scan tree); the next token's inputs are loaded before
        the current one is computed. (Triton 3.6 gives each thread 4 states x 4 channels, the C contraction ends
        in two shuffles; layouts with all states of a channel in one thread measured slower, runs 57-58.)
        MODE 0: one segment from zero -> its end state and sum of dt (FOLD_LAST: the last program of a channel
        block to finish, found by an atomic ticket in Count, replaces the block's end states by the prefix states
        in one O(S) pass); MODE 1: fold the earlier segments' end states into the start state (FOLD_LAST: load
        the prefix state), walk, write y (fused softplus(dt + bias), exp(dt A), D skip, silu(z)
        gate), and, if SAVE, the state at every TS-th token (the backward's tile start states)."""
        pid = tl.program_id(0)
        seg = tl.program_id(1)
        bi = pid // NDB
        offs_d = (pid % NDB) * BD + tl.arange(0, BD)
        offs_n = tl.arange(0, NP)
        dmask = offs_d < Dm
        nmask = offs_n < N
        nd_mask = nmask[:, None] & dmask[None, :]
        A2 = tl.load(A + offs_d[None, :] * N + offs_n[:, None], mask=nd_mask, other=0.0).to(tl.float32) \
            * 1.4426950408889634                                  # (NP, BD)
        bias = tl.zeros([BD], dtype=tl.float32)
        dskip = tl.zeros([BD], dtype=tl.float32)
        if HAS_DB:
            bias = tl.load(DB + offs_d, mask=dmask, other=0.0).to(tl.float32)
        if HAS_D:
            dskip = tl.load(Dv + offs_d, mask=dmask, other=0.0).to(tl.float32)
        bi64 = bi.to(tl.int64)
        h = tl.zeros([NP, BD], dtype=tl.float32)
        st_off = offs_d[None, :] * NP + offs_n[:, None]           # state memory layout (.., d, NP)
        if MODE == 1 and FOLD_LAST:
            if seg > 0:
                h = tl.load(Hend + (bi64 * S + seg - 1) * Dm * NP + st_off, mask=nd_mask, other=0.0)
        elif MODE == 1:
            # fold the end states of the earlier segments (FOLD_STAGES > 1: Triton prefetches the next segments'
            # end states with cp.async, so the fold does not wait one L2 round trip per segment); O(S^2) L2 reads
            # over a channel block's programs: it is bound by the SMs' L2 bandwidth (session 11)
            for s in tl.range(0, seg, num_stages=FOLD_STAGES):
                base = (bi64 * S + s)
                ds = tl.load(Dsum + base * Dm + offs_d, mask=dmask, other=0.0)
                hs = tl.load(Hend + base * Dm * NP + st_off, mask=nd_mask, other=0.0)
                h = tl.exp2(A2 * ds[None, :]) * h + hs
        dsum = tl.zeros([BD], dtype=tl.float32)
        start = seg * SEG_LEN
        stop = tl.minimum(start + SEG_LEN, L)
        # every segment is non-empty (the host makes S = cdiv(L, SEG_LEN)); the offsets of the next token are
        # advanced by one stride per step (no per-token index arithmetic); the prefetch past the last token of
        # the sequence is masked off (the masks are vectors: the interpreter rejects scalar ones)
        o_d = bi64 * sd_b + start * sd_l
        o_u = bi64 * su_b + start * su_l
        o_b = bi64 * sb_b + start * sb_l
        o_c = bi64 * sc_b + start * sc_l
        o_z = bi64 * sz_b + start * sz_l
        o_y = bi64 * sy_b + start * sy_l
        dt_n = _tok(DT, o_d, offs_d, sd_d, dmask)
        u_n = _tok(U, o_u, offs_d, su_d, dmask)
        b_n = _tok(Bm, o_b, offs_n, sb_n, nmask)
        c_n = b_n
        z_n = u_n
        if MODE == 1:
            c_n = _tok(Cm, o_c, offs_n, sc_n, nmask)
            if HAS_Z:
                z_n = _tok(Z, o_z, offs_d, sz_d, dmask)
        for t in range(start, stop):
            dt_raw, u, bv, cv, zz = dt_n, u_n, b_n, c_n, z_n
            # prefetch token t + 1
            more = (offs_n * 0 + t + 1) < L
            more_d = (offs_d * 0 + t + 1) < L
            o_d += sd_l
            o_u += su_l
            o_b += sb_l
            dt_n = _tok(DT, o_d, offs_d, sd_d, dmask & more_d)
            u_n = _tok(U, o_u, offs_d, su_d, dmask & more_d)
            b_n = _tok(Bm, o_b, offs_n, sb_n, nmask & more)
            if MODE == 1:
                o_c += sc_l
                c_n = _tok(Cm, o_c, offs_n, sc_n, nmask & more)
                if HAS_Z:
                    o_z += sz_l
                    z_n = _tok(Z, o_z, offs_d, sz_d, dmask & more_d)
            x = dt_raw
            if HAS_DB:
                x = x + bias
            if SOFTPLUS:
                x = _softplus(x, FAST_LOG)
            dt = tl.where(dmask, x, 0.0)
            if SAVE:
                if t % TS == 0:
                    tl.store(Hsave + (bi64 * n_tiles + t // TS) * Dm * NP + st_off, h, mask=nd_mask)
            h = tl.exp2(dt[None, :] * A2) * h + bv[:, None] * (dt * u)[None, :]
            if MODE == 0:
                dsum += dt
            else:
                y = tl.sum(h * cv[:, None], 0)
                if HAS_D:
                    y += dskip * u
                if HAS_Z:
                    y = y * zz * tl.sigmoid(zz)
                tl.store(Y + o_y + offs_d * sy_d, y.to(Y.dtype.element_ty), mask=dmask)
                o_y += sy_l
        if MODE == 0:
            base = bi64 * S + seg
            tl.store(Hend + base * Dm * NP + st_off, h, mask=nd_mask)
            tl.store(Dsum + base * Dm + offs_d, dsum, mask=dmask)
            if FOLD_LAST:
                tl.debug_barrier()  # every thread's stores before the release
                ticket = tl.atomic_add(Count + pid, 1, sem="acq_rel", scope="gpu")
                if ticket == S - 2:  # the last of the block's S - 1 programs: all end states are written
                    tl.store(Count + pid, 0)  # leave the counter zeroed for the next call
                    h = tl.zeros([NP, BD], dtype=tl.float32)
                    for s in tl.range(0, S - 1, num_stages=FOLD_STAGES):
                        base = (bi64 * S + s)
                        ds = tl.load(Dsum + base * Dm + offs_d, mask=dmask, other=0.0, cache_modifier=".cg")
                        hs = tl.load(Hend + base * Dm * NP + st_off, mask=nd_mask, other=0.0, cache_modifier=".cg")
                        h = tl.exp2(A2 * ds[None, :]) * h + hs
                        tl.store(Hend + base * Dm * NP + st_off, h, mask=nd_mask)

    @triton.jit
    def _scan_bwd_kernel(U, DT, A, Bm, Cm, Dv, Z, DB, G, Hsave,
                         dU, dDT, dZ, dA, dBm, dCm, dDv, dDB,
                         L, Dm, N, NDB, n_tiles,
                         su_b, su_l, su_d, sd_b, sd_l, sd_d, sb_b, sb_l, sb_n, sc_b, sc_l, sc_n,
                         sz_b, sz_l, sz_d, sg_b, sg_l, sg_d,
                         SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr,
                         BD: tl.constexpr, NP: tl.constexpr, T: tl.constexpr):
        """Tiles in reverse: recompute the tile's states from its saved start state, reverse-scan the
        adjoint state, write du, ddelta, dz; accumulate dB, dC (atomics over channel blocks), dA, dD,
        d(delta_bias) per (batch, channel)."""
        pid = tl.program_id(0)
        bi = pid // NDB
        bi64 = bi.to(tl.int64)
        offs_d = (pid % NDB) * BD + tl.arange(0, BD)
        offs_n = tl.arange(0, NP)
        offs_t = tl.arange(0, T)
        dmask = offs_d < Dm
        nmask = offs_n < N
        dn_mask = dmask[:, None] & nmask[None, :]
        Anat, bias, dskip = _channel_params(A, DB, Dv, offs_d, offs_n, dmask, dn_mask, N, HAS_DB, HAS_D, BD)
        A2 = Anat * 1.4426950408889634
        st_off = offs_d[:, None] * NP + offs_n[None, :]
        carry = tl.zeros([BD, NP], dtype=tl.float32)
        dA_acc = tl.zeros([BD, NP], dtype=tl.float32)
        dD_acc = tl.zeros([BD], dtype=tl.float32)
        dDB_acc = tl.zeros([BD], dtype=tl.float32)
        for i in range(0, n_tiles):
            tile = n_tiles - 1 - i
            rows = tile * T + offs_t
            rmask = rows < L
            m2 = rmask[:, None] & dmask[None, :]
            mn = rmask[:, None] & nmask[None, :]
            rows64 = rows.to(tl.int64)
            dt_raw = _tile(DT, bi64, rows64, offs_d, sd_b, sd_l, sd_d, m2)
            dt = tl.where(m2, _softplus_dt(dt_raw, bias, SOFTPLUS), 0.0)
            nrows = rows + 1
            nm2 = (nrows < L)[:, None] & dmask[None, :]
            dt_next = _tile(DT, bi64, nrows.to(tl.int64), offs_d, sd_b, sd_l, sd_d, nm2)
            dt_next = tl.where(nm2, _softplus_dt(dt_next, bias, SOFTPLUS), 0.0)
            u = _tile(U, bi64, rows64, offs_d, su_b, su_l, su_d, m2)
            bm = _tile(Bm, bi64, rows64, offs_n, sb_b, sb_l, sb_n, mn)
            cm = _tile(Cm, bi64, rows64, offs_n, sc_b, sc_l, sc_n, mn)
            g = _tile(G, bi64, rows64, offs_d, sg_b, sg_l, sg_d, m2)
            h0 = tl.load(Hsave + (bi64 * n_tiles + tile) * Dm * NP + st_off, mask=dn_mask, other=0.0)
            a = tl.exp2(dt[:, :, None] * A2[None, :, :])
            b = (dt * u)[:, :, None] * bm[:, None, :]
            acum, hl = tl.associative_scan((a, b), 0, _combine)
            hh = hl + acum * h0[None, :, :]
            if HAS_Z:
                zz = _tile(Z, bi64, rows64, offs_d, sz_b, sz_l, sz_d, m2)
                ys = tl.sum(hh * cm[:, None, :], 2)
                if HAS_D:
                    ys += dskip[None, :] * u
                sz = tl.sigmoid(zz)
                dz = g * ys * sz * (1.0 + zz * (1.0 - sz))
                tl.store(dZ + bi64 * sg_b + rows64[:, None] * sg_l + offs_d[None, :] * sg_d, dz, mask=m2)
                gy = g * zz * sz
            else:
                gy = g
            tl.atomic_add(dCm + bi64 * L * NP + rows64[:, None] * NP + offs_n[None, :],
                          tl.sum(gy[:, :, None] * hh, 1), mask=mn)
            # adjoint: dh_t = gy_t C_t + a_{t+1} dh_{t+1}
            a_next = tl.exp2(dt_next[:, :, None] * A2[None, :, :])
            x = gy[:, :, None] * cm[:, None, :]
            racum, dhl = tl.associative_scan((a_next, x), 0, _combine, reverse=True)
            dh = dhl + racum * carry[None, :, :]
            carry = tl.sum(tl.where((offs_t == 0)[:, None, None], dh, 0.0), 0)
            prev = hh - b  # a_t * h_{t-1}
            ddt = tl.sum(dh * (u[:, :, None] * bm[:, None, :] + prev * Anat[None, :, :]), 2)
            du = tl.sum(dh * (dt[:, :, None] * bm[:, None, :]), 2)
            if HAS_D:
                du += gy * dskip[None, :]
                dD_acc += tl.sum(gy * u, 0)
            tl.atomic_add(dBm + bi64 * L * NP + rows64[:, None] * NP + offs_n[None, :],
                          tl.sum(dh * (dt * u)[:, :, None], 1), mask=mn)
            dA_acc += tl.sum(dh * prev * dt[:, :, None], 0)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(dt_raw + bias[None, :])
            ddt = tl.where(m2, ddt, 0.0)
            dDB_acc += tl.sum(ddt, 0)
            tl.store(dDT + bi64 * sg_b + rows64[:, None] * sg_l + offs_d[None, :] * sg_d, ddt, mask=m2)
            tl.store(dU + bi64 * sg_b + rows64[:, None] * sg_l + offs_d[None, :] * sg_d, du, mask=m2)
        tl.store(dA + bi64 * Dm * NP + st_off, dA_acc, mask=dn_mask)
        tl.store(dDv + bi64 * Dm + offs_d, dD_acc, mask=dmask)
        tl.store(dDB + bi64 * Dm + offs_d, dDB_acc, mask=dmask)


def _strides3(x: torch.Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


_TICKETS: dict = {}


def _fold_tickets(device: torch.device, n: int) -> torch.Tensor:
    """n zeroed int32 tickets for the walk's last-program fold. The kernel leaves them zeroed, so one buffer per
    (device, stream) is kept and reused: no memset per call (run 70: a fresh zeroed buffer per call cost ~1.4 us per
    layer), and kernels on one stream never use it at once. While a CUDA graph is captured on a stream that has no
    buffer yet, a fresh zeroed one (captured with its memset); warm up on the capture stream to avoid it."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (str(device), stream)
    buf = _TICKETS.get(key)
    if buf is not None and buf.numel() >= n:
        return buf
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return torch.zeros(n, dtype=torch.int32, device=device)
    buf = _TICKETS[key] = torch.zeros(max(n, 1024), dtype=torch.int32, device=device)
    return buf


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


def _blocks(u: torch.Tensor, defaults: dict, **over) -> dict:
    """Launch config: `defaults` updated with the given overrides (the tile kernel's own defaults when
    ``impl="tile"`` is asked for over the sequential default); small tiles under the interpreter."""
    if defaults is SCAN_DEFAULTS and over.get("impl") == "tile" and SCAN_DEFAULTS.get("impl") != "tile":
        defaults = TILE_SCAN_DEFAULTS
    cfg = dict(defaults)
    cfg.update({k: v for k, v in over.items() if v is not None})
    if interpreting() and not u.is_cuda:
        cfg["BD"], cfg["T"] = min(cfg["BD"], 4), min(cfg["T"], 8)
    return cfg


def selective_scan_forward(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True, *,
                           save_states: bool = False, segments: Optional[int] = None, **cfg_over):
    """Triton forward. Returns (y in u's dtype, tile start states (b, n_tiles, d, NP) fp32 or None, T)."""
    bsz, L, d = u.shape
    n = A.shape[1]
    cfg = _blocks(u, SCAN_DEFAULTS, **cfg_over)
    BD, T = cfg["BD"], cfg["T"]
    NP = max(2, triton.next_power_of_2(n))
    ndb = triton.cdiv(d, BD)
    n_tiles = max(1, triton.cdiv(L, T))
    # segments start at multiples of `unit` tokens: whole tiles for the tile kernel; `seg_unit` tokens for the walk
    # (1, the default: every segment count is possible, so the programs fill the resident slots exactly: 44 segments
    # of 94 tokens at 1 x 4,096 instead of 43 of 96 on an 8-token grid, run 77: 5.015 vs 5.059 ms on the model)
    unit = T if cfg.get("impl", "seq") == "tile" else max(1, min(T, int(cfg.get("seg_unit", 1))))
    n_units = max(1, triton.cdiv(L, unit))
    if segments is None:  # enough programs to fill the GPU
        want = int(cfg["programs_per_sm"] * _sm_count(u.device))  # programs_per_sm may be fractional
        segments = min(n_units, max(1, -(-want // (bsz * ndb))))
    S = max(1, min(segments, n_units))
    seg_len = triton.cdiv(n_units, S) * unit
    S = triton.cdiv(max(L, 1), seg_len)
    dev = u.device
    y = torch.empty(u.shape, dtype=u.dtype, device=dev)
    f32 = dict(dtype=torch.float32, device=dev)
    hend = torch.empty(bsz * S * d * NP if S > 1 else 1, **f32)
    dsum = torch.empty(bsz * S * d if S > 1 else 1, **f32)
    hsave = torch.empty((bsz, n_tiles, d, NP), **f32) if save_states else hend
    zt = z if z is not None else u
    dummy = A
    args = (u, delta, A.contiguous(), B, C, D if D is not None else dummy, zt,
            delta_bias if delta_bias is not None else dummy)
    strides = (*_strides3(u), *_strides3(delta), *_strides3(B), *_strides3(C), *_strides3(zt), *_strides3(y))
    flags = dict(SOFTPLUS=bool(delta_softplus), HAS_D=D is not None, HAS_Z=z is not None,
                 HAS_DB=delta_bias is not None, BD=BD, NP=NP, T=T, num_warps=cfg["num_warps"])
    if L == 0:
        return y, (hsave if save_states else None), T
    if cfg.get("impl", "seq") == "seq":
        flags.pop("T")
        flags["FAST_LOG"] = u.is_cuda and not interpreting()
        flags["FOLD_STAGES"] = int(cfg.get("fold_stages", 1))
        fold = cfg.get("fold", "inline")
        if fold not in ("inline", "last"):
            raise ValueError(f"fold: unknown '{fold}' (inline, last)")
        flags["FOLD_LAST"] = fold == "last" and S > 1
        count = _fold_tickets(dev, bsz * ndb) if flags["FOLD_LAST"] else dummy
        bufs = (y, hend, dsum, hsave, count)
        kern, extra = _scan_seq_kernel, (T,)
    elif cfg["impl"] == "tile":
        bufs = (y, hend, dsum, hsave)
        kern, extra = _scan_fwd_kernel, ()
    else:
        raise ValueError(f"impl: unknown '{cfg['impl']}' (seq, tile)")
    if S > 1:  # end states of every segment but the last (nothing folds the last one in)
        kern[(bsz * ndb, S - 1)](*args, *bufs, L, d, n, ndb, S, seg_len, n_tiles, *extra, *strides,
                                 MODE=0, SAVE=False, **flags)
    kern[(bsz * ndb, S)](*args, *bufs, L, d, n, ndb, S, seg_len, n_tiles, *extra, *strides,
                         MODE=1, SAVE=save_states, **flags)
    return y, (hsave if save_states else None), T


def selective_scan_backward(g, u, delta, A, B, C, D, z, delta_bias, delta_softplus, hsave, T, **cfg_over):
    """Triton backward: gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias) in fp32 (None where absent)."""
    bsz, L, d = u.shape
    n = A.shape[1]
    cfg = _blocks(u, SCAN_BWD_DEFAULTS, **cfg_over)
    BD = cfg["BD"]
    NP = hsave.shape[-1]
    ndb = triton.cdiv(d, BD)
    n_tiles = hsave.shape[1]
    dev = u.device
    f32 = dict(dtype=torch.float32, device=dev)
    g = g.contiguous() if g.stride(-1) != 1 else g
    du = torch.empty((bsz, L, d), **f32)
    ddt = torch.empty((bsz, L, d), **f32)
    dz = torch.empty((bsz, L, d), **f32) if z is not None else du
    dA = torch.empty((bsz, d, NP), **f32)
    dB = torch.zeros((bsz, L, NP), **f32)
    dC = torch.zeros((bsz, L, NP), **f32)
    dD = torch.empty((bsz, d), **f32)
    dDB = torch.empty((bsz, d), **f32)
    zt = z if z is not None else u
    dummy = A
    # du/ddt/dz share g's layout if it is contiguous (b, l, d); they are allocated contiguous, so pass
    # contiguous strides for all four
    sg = (L * d, d, 1)
    if g.stride() != sg:
        g = g.contiguous()
    _scan_bwd_kernel[(bsz * ndb,)](
        u, delta, A.contiguous(), B, C, D if D is not None else dummy, zt,
        delta_bias if delta_bias is not None else dummy, g, hsave,
        du, ddt, dz, dA, dB, dC, dD, dDB, L, d, n, ndb, n_tiles,
        *_strides3(u), *_strides3(delta), *_strides3(B), *_strides3(C), *_strides3(zt), *sg,
        SOFTPLUS=bool(delta_softplus), HAS_D=D is not None, HAS_Z=z is not None, HAS_DB=delta_bias is not None,
        BD=BD, NP=NP, T=T, num_warps=cfg["num_warps"])
    return (du, ddt, dA.sum(0)[:, :n], dB[..., :n], dC[..., :n], dD.sum(0) if D is not None else None,
            dz if z is not None else None, dDB.sum(0) if delta_bias is not None else None)


class _SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, fallback=False):
        ctx.fallback = fallback
        need = ctx.needs_input_grad
        save = torch.is_grad_enabled() or any(need)
        y, hsave, T = selective_scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states=save)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, hsave)
        ctx.softplus, ctx.T = delta_softplus, T
        return y

    @staticmethod
    def backward(ctx, g):
        u, delta, A, B, C, D, z, delta_bias, hsave = ctx.saved_tensors
        inputs = (u, delta, A, B, C, D, z, delta_bias)
        if ctx.fallback:
            grads = triton_or_fallback(
                "selective_scan_backward",
                lambda: selective_scan_backward(g, *inputs, ctx.softplus, hsave, ctx.T),
                lambda: _torch_grads(g, inputs, ctx.softplus))
        else:
            grads = selective_scan_backward(g, *inputs, ctx.softplus, hsave, ctx.T)
        cast = lambda gr, ref: None if gr is None or ref is None else gr.to(ref.dtype)  # noqa: E731
        return (*(cast(gr, ref) for gr, ref in zip(grads, inputs)), None, None)


def _torch_grads(g, inputs, softplus):
    """Gradients through the chunked PyTorch scan (the fallback of the Triton backward)."""
    leaves = [x.detach().requires_grad_() if x is not None else None for x in inputs]
    with torch.enable_grad():
        y = chunked_selective_scan(*leaves, delta_softplus=softplus)
    present = [x for x in leaves if x is not None]
    got = iter(torch.autograd.grad(y, present, g, allow_unused=True))
    return tuple(next(got) if x is not None else None for x in leaves)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus: bool = True,
                   backend: str = "auto") -> torch.Tensor:
    """Mamba-1 selective scan (see the module docstring); differentiable.

    backend: "auto" (Triton on CUDA, the chunked PyTorch scan elsewhere), "triton" (also on CPU under
    ``TRITON_INTERPRET=1``), "torch" (chunked PyTorch) or "reference" (token by token).
    """
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if backend == "auto":
        if u.is_cuda and HAS_TRITON and not interpreting():
            return triton_or_fallback("selective_scan", lambda: _SelectiveScanFn.apply(*args, True),
                                      lambda: chunked_selective_scan(*args))
        backend = "torch"
    if backend == "triton":
        if not triton_usable(u):
            raise ValueError("backend='triton' needs a CUDA tensor (or TRITON_INTERPRET=1 on CPU)")
        return _SelectiveScanFn.apply(*args)
    if backend == "torch":
        return chunked_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if backend == "reference":
        return reference_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus).to(u.dtype)
    raise ValueError(f"backend: unknown '{backend}' (auto, triton, torch, reference)")


def scan_bytes(u: torch.Tensor, n: int, has_z: bool = True) -> int:
    """HBM bytes one forward scan must move at least: read u, delta, (z), B, C; write y."""
    bsz, L, d = u.shape
    e = u.element_size()
    return bsz * L * (d * e * (3 + int(has_z)) + 2 * n * e)


__all__ = ["selective_scan", "reference_selective_scan", "chunked_selective_scan", "selective_scan_forward",
           "selective_scan_backward", "scan_bytes", "SCAN_DEFAULTS", "SCAN_BWD_DEFAULTS"]
