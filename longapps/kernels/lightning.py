"""Causal linear attention, Lightning Attention-2 style (no softmax, no decay).

o_i = scale * sum_{j <= i} (q_i . k_j) v_j

Chunked form over blocks of BL tokens: intra-block ``((Q K^T) * causal) V`` plus inter-block
``Q S`` with the running state ``S = sum K^T V`` (D x D, fp32). To fill the GPU the sequence is
split into super-chunks: kernel 1 sums K^T V per super-chunk (parallel), kernel 2 adds up the
earlier super-chunks' sums into its starting state and walks the blocks of its super-chunk
(parallel over super-chunks and heads). Two launches, no host-side scan. Backward is the same machinery three times:
dQ = fwd(dO, V, K), dK = rev(V, dO, Q), dV = rev(K, Q, dO) where ``rev`` is anti-causal.

``reference_lightning`` (quadratic) and ``chunked_lightning_torch`` (O(N) memory) are the
PyTorch references/fallbacks.
"""
from __future__ import annotations

from typing import Optional

import torch

from ._common import HAS_TRITON, default_blocks, dot_dtype, interpreting

if HAS_TRITON:
    import triton
    import triton.language as tl


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
    def _state_kernel(X, Y, S, sxb, sxh, sxn, syb, syh, syn, H, N, CS,
                      BL: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr):
        """S[bh, s] = sum over super-chunk s of X^T Y (fp32, D x D)."""
        bh = tl.program_id(0)
        s = tl.program_id(1)
        ns = tl.num_programs(1)
        b = bh // H
        h = bh % H
        offs_d = tl.arange(0, BLOCK_D)
        xb = X + b.to(tl.int64) * sxb + h.to(tl.int64) * sxh
        yb = Y + b.to(tl.int64) * syb + h.to(tl.int64) * syh
        acc = tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.float32)
        lo = s * CS
        hi = tl.minimum(N, lo + CS)
        for start in range(lo, hi, BL):
            offs = start + tl.arange(0, BL)
            ok = offs < hi
            xT = tl.load(xb + offs[None, :] * sxn + offs_d[:, None], mask=ok[None, :], other=0.0).to(DT)
            y = tl.load(yb + offs[:, None] * syn + offs_d[None, :], mask=ok[:, None], other=0.0).to(DT)
            acc += tl.dot(xT, y)
        out = (bh.to(tl.int64) * ns + s) * BLOCK_D * BLOCK_D
        tl.store(S + out + offs_d[:, None] * BLOCK_D + offs_d[None, :], acc)

    @triton.jit
    def _lightning_kernel(Q, K, V, O, S, sqb, sqh, sqn, skb, skh, skn, svb, svh, svn, sob, soh, son,
                          H, N, CS, scale,
                          REVERSE: tl.constexpr, BL: tl.constexpr, BLOCK_D: tl.constexpr, DT: tl.constexpr):
        bh = tl.program_id(0)
        s = tl.program_id(1)
        ns = tl.num_programs(1)
        b = bh // H
        h = bh % H
        offs_d = tl.arange(0, BLOCK_D)
        offs_l = tl.arange(0, BL)
        qb = Q + b.to(tl.int64) * sqb + h.to(tl.int64) * sqh
        kb = K + b.to(tl.int64) * skb + h.to(tl.int64) * skh
        vb = V + b.to(tl.int64) * svb + h.to(tl.int64) * svh
        ob = O + b.to(tl.int64) * sob + h.to(tl.int64) * soh
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
        hi = tl.minimum(N, lo + CS)
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
            tl.store(ob + offs[:, None] * son + offs_d[None, :], (o * scale).to(O.dtype.element_ty), mask=ok[:, None])
            state += tl.dot(kT, v)


# launch defaults (H200 sweep): block tokens, max blocks per super-chunk (more super-chunks = more parallel
# programs, more state sums to add up), warps, stages
LIGHTNING_DEFAULTS = {"block": 128, "max_blocks_per_chunk": 64, "num_warps": 4, "num_stages": 2}


def _n_super(BH: int, nblocks: int, device: torch.device, max_blocks: int) -> int:
    if interpreting():
        return max(1, min(nblocks, 2))
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 8
    target = max(-(-2 * sms // BH), -(-nblocks // max_blocks))
    return max(1, min(nblocks, target))


def lightning_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
                      reverse: bool = False, block: Optional[int] = None, max_blocks_per_chunk: Optional[int] = None,
                      num_warps: Optional[int] = None, num_stages: Optional[int] = None) -> torch.Tensor:
    """Run the chunked Triton kernels (no autograd). ``reverse``: anti-causal (j >= i)."""
    B, H, N, D = q.shape
    if D not in (16, 32, 64, 128) or v.shape[-1] != D:
        raise ValueError(f"lightning kernel needs head dim 16/32/64/128 for q, k and v, got {D}, {v.shape[-1]}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dimension")
    BL = block or default_blocks(q, LIGHTNING_DEFAULTS["block"], 64)[0]
    DT = dot_dtype(q.dtype)
    nblocks = -(-N // BL)
    ns = _n_super(B * H, nblocks, q.device, max_blocks_per_chunk or LIGHTNING_DEFAULTS["max_blocks_per_chunk"])
    CS = -(-nblocks // ns) * BL
    ns = -(-N // CS)
    S = torch.empty(B * H, ns, D, D, dtype=torch.float32, device=q.device)
    ex = {} if interpreting() else {"num_warps": num_warps or LIGHTNING_DEFAULTS["num_warps"],
                                    "num_stages": num_stages or LIGHTNING_DEFAULTS["num_stages"]}
    _state_kernel[(B * H, ns)](k, v, S, k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
                               H, N, CS, BL=BL, BLOCK_D=D, DT=DT, **ex)
    o = torch.empty(B, H, N, D, dtype=q.dtype, device=q.device)
    _lightning_kernel[(B * H, ns)](q, k, v, o, S, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1),
                                   k.stride(2), v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1),
                                   o.stride(2), H, N, CS, 1.0 if scale is None else float(scale),
                                   REVERSE=reverse, BL=BL, BLOCK_D=D, DT=DT, **ex)
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
