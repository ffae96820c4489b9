"""Causal linear attention, Lightning Attention-2 style (no softmax, no decay).

o_i = scale * sum_{j <= i} (q_i . k_j) v_j

Chunked form over blocks of BL tokens: intra-block ``((Q K^T) * causal) V`` plus inter-block
``Q S`` with the running state ``S = sum K^T V`` (D x D, fp32). To fill the GPU the sequence is
split into super-chunks (at most 2 programs per SM, ``_n_super``); one program per (super-chunk, head)
starts from the sum of the earlier super-chunks' K^T V and walks the blocks of its super-chunk.
No host-side scan; two ways to get the start states:

- fused (``fused=True``, one launch, decoupled look-back): each program takes a ticket from an atomic counter
  and maps it chunk-major to (super-chunk, head), so every program it waits on has a smaller ticket and
  is already running (no deadlock, whatever order the hardware starts blocks in). Phase 1: sum K^T V over
  its own super-chunk, store it to a workspace slot, publish a flag (CTA barrier, then release atomic).
  Phase 2: read the flags of its predecessors (acquire, FB at a time, spinning while one is unset), add
  their slots (loaded past L1) to the start state, then walk its blocks. With ``lookback="prefix"`` a
  program also publishes its inclusive prefix (flag 2) and a look-back stops at the nearest one; with
  ``"all"`` it adds every predecessor's aggregate. The last program to finish (done counter) zeroes the
  flags and counters, so the persistent per-(device, stream, size) workspace needs no memset per call and
  the launch is CUDA-graph capturable.
- two launches (the default): kernel 1 sums K^T V per super-chunk, kernel 2 adds up the earlier
  sums and walks the blocks.

Backward is the same machinery three times:
dQ = fwd(dO, V, K), dK = rev(V, dO, Q), dV = rev(K, Q, dO) where ``rev`` is anti-causal (super-chunks
scanned from the end).

``reference_lightning`` (quadratic) and ``chunked_lightning_torch`` (O(N) memory) are the
PyTorch references/fallbacks.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._common import HAS_TRITON, BoundLaunch, KernelLauncher, default_blocks, dot_dtype, interpreting

if HAS_TRITON:
    import triton
    import triton.language as tl

    from ._common import head_ptr


def reference_lightning(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
                        reverse: bool = False, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Quadratic reference: ((Q K^T) * causal mask) V (``reverse``: anti-causal, j >= i)."""
    n = q.shape[2]
    s = torch.matmul(q.to(compute_dtype), k.to(compute_dtype).transpose(-1, -2)) * (1.0 if scale is None else scale)
    tri = torch.ones(n, n, dtype=torch.bool, device=q.device)
    tri = tri.triu() if reverse else tri.tril()
    return torch.matmul(s.masked_fill(~tri, 0.0), v.to(compute_dtype)).to(q.dtype)


def chunked_lightning_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
                            block: int = 256) -> torch.Tensor:
    """O(N)-memory PyTorch version of the chunked algorithm (CPU fallback), differentiable."""
    B, H, N, D = q.shape
    cd = torch.float64 if q.dtype == torch.float64 else torch.float32
    state = q.new_zeros(B, H, D, v.shape[-1], dtype=cd)
    outs = []
    for s in range(0, N, block):
        qb, kb, vb = q[:, :, s:s + block].to(cd), k[:, :, s:s + block].to(cd), v[:, :, s:s + block].to(cd)
        a = torch.matmul(qb, kb.transpose(-1, -2)).tril()
        outs.append(torch.matmul(a, vb) + torch.matmul(qb, state))
        state = state + torch.matmul(kb.transpose(-1, -2), vb)
    o = torch.cat(outs, 2) * (1.0 if scale is None else scale)
    return o.to(q.dtype)


if HAS_TRITON:

    @triton.jit
    def _kv_sum(xb, yb, sxn, syn, lo, hi, BL: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr):
        """sum over tokens [lo, hi) of X^T Y (fp32, D x D); ``xb``/``yb`` point at one (batch, head)."""
        offs_d = tl.arange(0, BLOCK_D)
        acc = tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.float32)
        for start in range(lo, hi, BL):
            offs = start + tl.arange(0, BL)
            ok = offs < hi
            xT = tl.load(xb + offs[None, :] * sxn + offs_d[:, None], mask=ok[None, :], other=0.0).to(DT)
            y = tl.load(yb + offs[:, None] * syn + offs_d[None, :], mask=ok[:, None], other=0.0).to(DT)
            acc += tl.dot(xT, y)
        return acc

    @triton.jit
    def _walk_blocks(qb, kb, vb, ob, state, sqn, skn, svn, son, lo, hi, scale,
                     REVERSE: tl.constexpr, BL: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr):
        """Walk the BL-token blocks of tokens [lo, hi) (backwards when REVERSE) from the start ``state``:
        o = scale * (((Q K^T) * causal) V + Q state), then state += K^T V."""
        offs_d = tl.arange(0, BLOCK_D)
        offs_l = tl.arange(0, BL)
        nblk = tl.cdiv(hi - lo, BL)
        if REVERSE:
            tri = offs_l[:, None] <= offs_l[None, :]
        else:
            tri = offs_l[:, None] >= offs_l[None, :]
        for i in range(0, nblk):
            if REVERSE:
                start = lo + (nblk - 1 - i) * BL
            else:
                start = lo + i * BL
            offs = start + offs_l
            ok = offs < hi
            q = tl.load(qb + offs[:, None] * sqn + offs_d[None, :], mask=ok[:, None], other=0.0).to(DT)
            kT = tl.load(kb + offs[None, :] * skn + offs_d[:, None], mask=ok[None, :], other=0.0).to(DT)
            v = tl.load(vb + offs[:, None] * svn + offs_d[None, :], mask=ok[:, None], other=0.0).to(DT)
            a = tl.dot(q, kT)
            a = tl.where(tri, a, 0.0)
            o = tl.dot(a.to(DT), v) + tl.dot(q, state.to(DT))
            tl.store(ob + offs[:, None] * son + offs_d[None, :], (o * scale).to(ob.dtype.element_ty), mask=ok[:, None])
            state += tl.dot(kT, v)

    @triton.jit
    def _super_chunk_program(BLOCK_D: tl.constexpr):
        """Two-launch path: this program's (batch*head, super-chunk), the number of super-chunks and the
        offsets over D."""
        return tl.program_id(0), tl.program_id(1), tl.num_programs(1), tl.arange(0, BLOCK_D)

    @triton.jit
    def _state_kernel(X, Y, S, sxb, sxh, sxn, syb, syh, syn, H, N, CS,
                      BL: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr):
        """Two-launch path, kernel 1: S[bh, s] = sum over super-chunk s of X^T Y (fp32, D x D)."""
        bh, s, ns, offs_d = _super_chunk_program(BLOCK_D)
        xb = head_ptr(X, bh, H, sxb, sxh)
        yb = head_ptr(Y, bh, H, syb, syh)
        lo = s * CS
        acc = _kv_sum(xb, yb, sxn, syn, lo, tl.minimum(N, lo + CS), BL, BLOCK_D, DT)
        out = (bh.to(tl.int64) * ns + s) * BLOCK_D * BLOCK_D
        tl.store(S + out + offs_d[:, None] * BLOCK_D + offs_d[None, :], acc)

    @triton.jit
    def _lightning_kernel(Q, K, V, O, S, sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
                          H, N, CS, scale,
                          REVERSE: tl.constexpr, BL: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr):
        """Two-launch path, kernel 2: start state = sum of the earlier super-chunks' S, then walk the blocks."""
        bh, s, ns, offs_d = _super_chunk_program(BLOCK_D)
        qb = head_ptr(Q, bh, H, sqb, sqh)
        kb = head_ptr(K, bh, H, skb, skh)
        vb = head_ptr(V, bh, H, svb, svh)
        ob = head_ptr(O, bh, H, sob, soh)
        # starting state: sum of the other super-chunks' K^T V (before s; after s when REVERSE)
        state = tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.float32)
        if REVERSE:
            j_lo = s + 1
            j_hi = ns
        else:
            j_lo = 0
            j_hi = s
        for j in range(j_lo, j_hi):
            st_off = (bh.to(tl.int64) * ns + j) * BLOCK_D * BLOCK_D
            state += tl.load(S + st_off + offs_d[:, None] * BLOCK_D + offs_d[None, :])
        lo = s * CS
        _walk_blocks(qb, kb, vb, ob, state, sqn, skn, svn, son, lo, tl.minimum(N, lo + CS), scale,
                     REVERSE, BL, BLOCK_D, DT)

    @triton.jit
    def _flag_scan(FLAGS, offs, inwin, c, sentinel, REVERSE: tl.constexpr, PREFIX: tl.constexpr):
        """Read (acquire) the flags of the predecessors at distances ``offs`` from chunk ``c`` (one head's
        flags at FLAGS). Returns (dstar, missing): the nearest distance whose inclusive prefix is published
        (``sentinel`` when none, or when not PREFIX) and how many nearer ones have not published anything."""
        if REVERSE:
            j = c + offs
        else:
            j = c - offs
        j = tl.where(inwin, j, c)
        f = tl.atomic_add(FLAGS + j, 0, mask=inwin, sem="acquire", scope="gpu")
        f = tl.where(inwin, f, 0)
        if PREFIX:
            dstar = tl.min(tl.where(f == 2, offs, sentinel))
        else:
            dstar = sentinel
        missing = tl.sum(tl.where(inwin & (offs < dstar) & (f == 0), 1, 0))
        return dstar, missing

    @triton.jit
    def _add_slots(WS, slot0, c, d_lo, d_hi, offs2d, REVERSE: tl.constexpr, U: tl.constexpr,
                   BLOCK_D: tl.constexpr):
        """Sum of the D x D fp32 slots ``slot0 + j`` for the chunks j at distances [d_lo, d_hi) from ``c``,
        U loads in flight, bypassing L1 (other programs wrote them during this launch)."""
        acc = tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.float32)
        for d in range(d_lo, d_hi, U):
            for u in tl.static_range(U):
                dd = d + u
                ok = dd < d_hi
                if REVERSE:
                    j = c + dd
                else:
                    j = c - dd
                j = tl.where(ok, j, c)
                off = (slot0 + j).to(tl.int64) * (BLOCK_D * BLOCK_D)
                ok2 = (tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.int32) + dd) < d_hi  # full-shape mask (interpreter)
                acc += tl.load(WS + off + offs2d, mask=ok2, other=0.0, cache_modifier=".cg")
        return acc

    @triton.jit
    def _lightning_fused_kernel(Q, K, V, O, WS, SYNC, sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
                                H, BH, N, CS, NS, scale,
                                REVERSE: tl.constexpr, PREFIX_EVERY: tl.constexpr, FB: tl.constexpr,
                                U: tl.constexpr, BL: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr):
        """Single-launch path (decoupled look-back); one program per (super-chunk, head), see the module doc.
        WS: fp32 [2, BH * NS, D, D] (aggregates, inclusive prefixes); SYNC: int32 [BH * NS + 2] (flags,
        ticket counter, done counter), all zero on entry and left zero on exit."""
        total = BH * NS
        t = tl.atomic_add(SYNC + total, 1)  # ticket: launch order, not hardware block order
        P = t // BH  # scan position = number of predecessors (chunks before c; after c when REVERSE)
        bh = t % BH
        if REVERSE:
            c = NS - 1 - P
        else:
            c = P
        offs_d = tl.arange(0, BLOCK_D)
        offs2d = offs_d[:, None] * BLOCK_D + offs_d[None, :]
        qb = head_ptr(Q, bh, H, sqb, sqh)
        kb = head_ptr(K, bh, H, skb, skh)
        vb = head_ptr(V, bh, H, svb, svh)
        ob = head_ptr(O, bh, H, sob, soh)
        fbase = bh * NS
        lo = c * CS
        hi = tl.minimum(N, lo + CS)
        # phase 1: own aggregate (skipped by the last chunk in scan order: nobody reads it), published with
        # release semantics after a CTA barrier so all threads' stores are ordered before the flag
        if P < NS - 1:
            agg = _kv_sum(kb, vb, skn, svn, lo, hi, BL, BLOCK_D, DT)
            kind = 0  # 0: aggregate slot, flag 1; 1: inclusive slot, flag 2 (first chunk: prefix == aggregate)
            if PREFIX_EVERY > 0:
                kind = (P == 0).to(tl.int32)
            tl.store(WS + (kind * total + fbase + c).to(tl.int64) * (BLOCK_D * BLOCK_D) + offs2d, agg)
            tl.debug_barrier()
            tl.atomic_xchg(SYNC + fbase + c, kind + 1, sem="release", scope="gpu")
        # phase 2: look back over windows of FB predecessors; every predecessor has a smaller ticket, so it
        # is resident and finishes phase 1 without waiting: the spins end
        state = tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.float32)
        d0 = 1
        while d0 <= P:
            offs = d0 + tl.arange(0, FB)
            inwin = offs <= P
            sentinel = d0 + FB
            dstar, missing = _flag_scan(SYNC + fbase, offs, inwin, c, sentinel, REVERSE, PREFIX_EVERY > 0)
            while missing > 0:
                dstar, missing = _flag_scan(SYNC + fbase, offs, inwin, c, sentinel, REVERSE, PREFIX_EVERY > 0)
            tl.debug_barrier()  # the acquiring threads' view -> every thread of the program
            state += _add_slots(WS, fbase, c, d0, tl.minimum(dstar, P + 1), offs2d, REVERSE, U, BLOCK_D)
            if dstar < sentinel:  # inclusive prefix found: done
                state += _add_slots(WS, total + fbase, c, dstar, dstar + 1, offs2d, REVERSE, 1, BLOCK_D)
                d0 = P + 1
            else:
                d0 = sentinel
        if PREFIX_EVERY > 0:
            if (P > 0) & (P < NS - 1) & (P % PREFIX_EVERY == 0):
                # inclusive = look-back + own aggregate, re-read (L2) rather than kept live in registers
                own = tl.load(WS + (fbase + c).to(tl.int64) * (BLOCK_D * BLOCK_D) + offs2d, cache_modifier=".cg")
                tl.store(WS + (total + fbase + c).to(tl.int64) * (BLOCK_D * BLOCK_D) + offs2d, state + own)
                tl.debug_barrier()
                tl.atomic_xchg(SYNC + fbase + c, 2, sem="release", scope="gpu")
        _walk_blocks(qb, kb, vb, ob, state, sqn, skn, svn, son, lo, hi, scale, REVERSE, BL, BLOCK_D, DT)
        # the last program to finish leaves the flags and counters zero for the next launch
        done = tl.atomic_add(SYNC + total + 1, 1, sem="acq_rel", scope="gpu")
        if done == total - 1:
            for r in range(0, total + 2, 256):
                offs_r = r + tl.arange(0, 256)
                tl.store(SYNC + offs_r, 0, mask=offs_r < total + 2)


# launch defaults (H200 sweep): block tokens, max blocks per super-chunk (more super-chunks = more parallel
# programs, more state sums to add up), warps, stages; ``fused``: one launch with decoupled look-back instead of
# two launches; ``lookback``: "prefix" (programs also publish inclusive prefixes, a look-back stops at the
# nearest one) or "all" (add up every earlier super-chunk's aggregate). H200 run 13 (B=1 H=16 D=64 bf16,
# ns/token at 4k/16k/64k): two-launch 6.50/4.46/3.62, fused prefix 7.11/4.41/3.53, fused all 6.90/4.28/3.58:
# the look-back waits cost about what the second launch does, so the simpler two-launch path is the default.
LIGHTNING_DEFAULTS = {"block": 128, "max_blocks_per_chunk": 64, "num_warps": 4, "num_stages": 2,
                      "fused": False, "lookback": "prefix"}

# flags the fused look-back reads at once (fixed: one compile for any number of super-chunks)
_LOOKBACK_WINDOW = 32
if HAS_TRITON:  # launched without Triton's per-call binding once compiled (see KernelLauncher)
    _STATE_LAUNCH = KernelLauncher(_state_kernel)
    _WALK_LAUNCH = KernelLauncher(_lightning_kernel)

# (device type, device index, stream, programs, head dim) -> (fp32 [2, programs, D, D], int32 [programs + 2])
_WORKSPACES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _n_super(BH: int, nblocks: int, device: torch.device, max_blocks: int) -> int:
    if interpreting():
        return max(1, min(nblocks, max(2, -(-nblocks // max_blocks))))
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 8
    # at most 2 programs per SM (what fits: ~240 registers/thread, 104 KB shared memory): one wave. Rounding
    # up instead (17 x 16 heads = 272 > 264 programs on 132 SMs) left a second wave of a few programs that
    # walk a whole super-chunk each (H200 run 20: 4.1-4.3 instead of 3.4 ns/token at 16k-32k tokens per head)
    target = max(max(1, 2 * sms // BH), -(-nblocks // max_blocks))
    return max(1, min(nblocks, target))


def _fused_workspace(device: torch.device, programs: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Persistent (slots, sync) workspace of the fused kernel for the current stream of ``device``.

    Zeroed once on creation; the kernel leaves the flags and counters zero when it finishes, so a call does
    no allocation or memset (CUDA-graph capturable). Calls on different streams get different workspaces,
    so they may run concurrently; calls on one stream run in order and share it. Created during a graph
    capture, the zero-fill is captured too (harmless: it is zero between calls anyway). Graphs captured on
    the same stream share a workspace: do not replay them concurrently on different streams."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (device.type, device.index, stream, programs, d)
    ws = _WORKSPACES.get(key)
    if ws is None:
        ws = (torch.zeros(2, programs, d, d, dtype=torch.float32, device=device),
              torch.zeros(programs + 2, dtype=torch.int32, device=device))
        _WORKSPACES[key] = ws
    return ws


def clear_lightning_workspaces() -> None:
    """Drop the cached fused-kernel workspaces (no launch may be in flight or captured in a live graph)."""
    _WORKSPACES.clear()


def _pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def lightning_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
                      reverse: bool = False, block: Optional[int] = None, max_blocks_per_chunk: Optional[int] = None,
                      num_warps: Optional[int] = None, num_stages: Optional[int] = None,
                      fused: Optional[bool] = None, lookback: Optional[str] = None, n_super: Optional[int] = None,
                      _prefix_every: Optional[int] = None, _lookback_window: Optional[int] = None) -> torch.Tensor:
    """Run the chunked Triton kernels (no autograd). ``reverse``: anti-causal (j >= i).

    ``fused`` (default ``LIGHTNING_DEFAULTS["fused"]``): one launch with decoupled look-back, else the
    two-launch path; ``lookback`` ("prefix" / "all") picks the fused look-back; ``n_super`` overrides the
    number of super-chunks (otherwise about 2 programs per SM, at most ``max_blocks_per_chunk`` blocks each).
    ``_prefix_every`` / ``_lookback_window`` are test knobs: only every k-th super-chunk publishes an
    inclusive prefix; flags read this many at a time."""
    B, H, N, D = q.shape
    if D not in (16, 32, 64, 128) or v.shape[-1] != D:
        raise ValueError(f"lightning kernel needs head dim 16/32/64/128 for q, k and v, got {D}, {v.shape[-1]}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dimension")
    BL = block or default_blocks(q, LIGHTNING_DEFAULTS["block"], 64)[0]
    DT = dot_dtype(q.dtype)
    nblocks = -(-N // BL)
    if n_super:
        ns = max(1, min(nblocks, int(n_super)))
    else:
        ns = _n_super(B * H, nblocks, q.device, max_blocks_per_chunk or LIGHTNING_DEFAULTS["max_blocks_per_chunk"])
    CS = -(-nblocks // ns) * BL
    ns = -(-N // CS)
    sc = 1.0 if scale is None else float(scale)
    ex = {} if interpreting() else {"num_warps": num_warps or LIGHTNING_DEFAULTS["num_warps"],
                                    "num_stages": num_stages or LIGHTNING_DEFAULTS["num_stages"]}
    strides = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
               v.stride(0), v.stride(1), v.stride(2))
    o = torch.empty(B, H, N, D, dtype=q.dtype, device=q.device)
    fused = LIGHTNING_DEFAULTS["fused"] if fused is None else fused
    if fused:
        lookback = lookback or LIGHTNING_DEFAULTS["lookback"]
        if lookback not in ("prefix", "all"):
            raise ValueError(f"lookback must be 'prefix' or 'all', got {lookback!r}")
        every = 0 if lookback == "all" else (_prefix_every or 1)
        ws, sync = _fused_workspace(q.device, B * H * ns, D)
        if interpreting() and bool(sync.any()):  # a bad reset would make the next launch spin forever
            raise RuntimeError("lightning fused workspace left non-zero by an earlier launch")
        fb = _pow2(_lookback_window or _LOOKBACK_WINDOW)
        _lightning_fused_kernel[(B * H * ns,)](
            q, k, v, o, ws, sync, *strides, o.stride(0), o.stride(1), o.stride(2), H, B * H, N, CS, ns, sc,
            REVERSE=reverse, PREFIX_EVERY=every, FB=fb, U=max(1, min(4, 16384 // (D * D))), BL=BL, BLOCK_D=D,
            DT=DT, **ex)
        return o
    S = torch.empty(B * H, ns, D, D, dtype=torch.float32, device=q.device)
    aligned = not ((q.data_ptr() | k.data_ptr() | v.data_ptr()) & 15)  # (o and S: fresh allocations)
    key = (q.device.index, q.dtype, q.shape, strides, ns, CS, reverse, BL, tuple(ex.items())) if aligned else None
    _STATE_LAUNCH(key, (B * H, ns), (k, v, S, *strides[3:], H, N, CS, BL, D, DT), ex)
    _WALK_LAUNCH(key, (B * H, ns), (q, k, v, o, S, *strides, o.stride(0), o.stride(1), o.stride(2), H, N, CS, sc,
                                    reverse, BL, D, DT), ex)
    return o


class LightningRunner:
    """``lightning_forward(q, k, v, scale)`` (two-launch path, default settings) bound to one call signature
    (shapes, strides, dtype, device): super-chunk split, grids and every non-tensor argument fixed when it is
    made; a call allocates the output (the chunk-state scratch is cached per stream outside graph capture)
    and launches (``BoundLaunch``). Unaligned data pointers, or settings other than the two-launch default,
    go to ``lightning_forward``."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float]) -> None:
        B, H, N, D = q.shape
        self.scale = scale
        self.fused = bool(LIGHTNING_DEFAULTS["fused"])
        BL = default_blocks(q, LIGHTNING_DEFAULTS["block"], 64)[0]
        DT = dot_dtype(q.dtype)
        nblocks = -(-N // BL)
        ns = _n_super(B * H, nblocks, q.device, LIGHTNING_DEFAULTS["max_blocks_per_chunk"])
        CS = -(-nblocks // ns) * BL
        ns = -(-N // CS)
        sc = 1.0 if scale is None else float(scale)
        ex = {} if interpreting() else {"num_warps": LIGHTNING_DEFAULTS["num_warps"],
                                        "num_stages": LIGHTNING_DEFAULTS["num_stages"]}
        strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3])
        o_strides = (H * N * D, N * D, D)
        key = (q.device.index, q.dtype, q.shape, strides, ns, CS, False, BL, tuple(ex.items()))
        self.shape, self.dtype, self.device = (B, H, N, D), q.dtype, q.device
        self.s_shape = (B * H, ns, D, D)
        self.is_cuda = q.is_cuda
        self.index = (q.device.index if q.device.index is not None else torch.cuda.current_device()) if q.is_cuda else 0
        self.state = BoundLaunch(_STATE_LAUNCH, key, (B * H, ns), (*strides[3:], H, N, CS, BL, D, DT), ex)
        self.walk = BoundLaunch(_WALK_LAUNCH, key, (B * H, ns), (*strides, *o_strides, H, N, CS, sc, False, BL, D, DT),
                                ex)
        self.scratch: dict = {}

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.fused or (q.data_ptr() | k.data_ptr() | v.data_ptr()) & 15:
            return lightning_forward(q, k, v, self.scale)
        o = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        if self.is_cuda:
            raw = torch._C._cuda_getCurrentRawStream(self.index)
            capturing = torch._C._cuda_isCurrentStreamCapturing()
        else:
            raw, capturing = None, False
        S = None if capturing else self.scratch.get(raw)
        if S is None:  # written by the state launch, read by the walk launch: per stream, calls run in order
            S = torch.empty(self.s_shape, dtype=torch.float32, device=self.device)
            if not capturing:
                self.scratch[raw] = S
        self.state((k, v, S), raw)
        self.walk((q, k, v, o, S), raw)
        return o


class _LightningFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale):  # type: ignore[override]
        ctx.save_for_backward(q, k, v)
        ctx.scale = scale
        return lightning_forward(q, k, v, scale)

    @staticmethod
    def backward(ctx, do):  # type: ignore[override]
        q, k, v = ctx.saved_tensors
        sc = ctx.scale
        do = do.contiguous()
        dq = lightning_forward(do, v, k, sc)
        dk = lightning_forward(v, do, q, sc, reverse=True)
        dv = lightning_forward(k, q, do, sc, reverse=True)
        return dq, dk, dv, None


def lightning_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
    """Causal linear attention on the Triton kernels, differentiable. Layout (B, H, N, D)."""
    return _LightningFn.apply(q, k, v, scale)
