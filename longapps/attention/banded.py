"""Band patterns (sliding window, window + global tokens, sinks + window) in plain PyTorch, in
O(N * (block + 2W)) time and memory instead of the dense reference's O(N^2): each block of queries
scores only the keys of its band plus the few global / sink keys (gathered once). Global query rows
(they attend every key) are computed separately over all keys. The same function as
``reference_attention`` (rows with no visible key give 0), differentiable, on any device: the CPU
path of ``attention()`` for these patterns.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from .patterns import Pattern, SinksWindow, SlidingWindow, WindowGlobal
from .reference import dense_global_rows, gather_positions, put_rows

BAND_PATTERNS = (SlidingWindow, WindowGlobal, SinksWindow)


def default_block(window: int) -> int:
    """Queries per block: about the window (the scored keys are block + 2W), within [64, 512]."""
    return max(64, min(512, window))


def _extra_keys(pattern: Pattern, nk: int, device: torch.device) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Positions (B|1, G) of the keys every query may see beyond its band (global tokens or sinks) and
    which of them are real (-1 padding of a 2-D global index), or None."""
    if isinstance(pattern, WindowGlobal) and pattern.global_idx.numel():
        gi = pattern.global_idx.to(device)
        if gi.dim() == 1:
            gi = torch.unique(gi)[None]
        gi = torch.where(gi < 0, nk, gi).sort(dim=1).values  # per row: sorted, padding (-1) last
        valid = gi < nk
        valid[:, 1:] &= gi[:, 1:] != gi[:, :-1]  # a repeated index counts once
        return torch.where(valid, gi, 0), valid
    if isinstance(pattern, SinksWindow) and pattern.sinks > 0:
        pos = torch.arange(min(pattern.sinks, nk), device=device)[None]
        return pos, torch.ones_like(pos, dtype=torch.bool)
    return None


def _in_band(qpos: torch.Tensor, kpos: torch.Tensor, window: int, causal: bool) -> torch.Tensor:
    d = qpos - kpos
    return (d >= 0) & (d <= window) if causal else d.abs() <= window


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern,
                     key_padding_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                     block: Optional[int] = None) -> torch.Tensor:
    """Attention of q (B, H, Nq, D) over k, v (B, H, Nk, D) for a band pattern (queries end-aligned when
    Nq < Nk); computes in float32 (float64 for float64 inputs) and returns the input dtype."""
    if not isinstance(pattern, BAND_PATTERNS):
        raise ValueError(f"banded_attention needs one of {[p.__name__ for p in BAND_PATTERNS]}, got {type(pattern).__name__}")
    B, H, nq, D = q.shape
    nk = k.shape[2]
    off = nk - nq
    W = pattern.window
    causal = isinstance(pattern, SinksWindow) or pattern.causal
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    cd = torch.float64 if q.dtype == torch.float64 else torch.float32
    qc, kc, vc = q.to(cd), k.to(cd), v.to(cd)
    kpm = key_padding_mask.to(device=q.device, dtype=torch.bool) if key_padding_mask is not None else None
    extra = _extra_keys(pattern, nk, q.device)
    if extra is not None:
        epos, evalid = extra
        ek, ev = gather_positions(kc, epos), gather_positions(vc, epos)
        if kpm is not None:
            evalid = evalid & torch.gather(kpm, 1, epos.expand(B, -1))
    c = block or default_block(W)
    outs = []
    for s in range(0, nq, c):
        e = min(nq, s + c)
        qpos = torch.arange(off + s, off + e, device=q.device)[:, None]
        klo = max(0, off + s - W)
        khi = off + e if causal else min(nk, off + e + W)
        kpos = torch.arange(klo, khi, device=q.device)[None, :]
        ok = _in_band(qpos, kpos, W, causal)[None, None]  # (1, 1, c, L)
        if kpm is not None:
            ok = ok & kpm[:, None, None, klo:khi]
        sc = torch.matmul(qc[:, :, s:e], kc[:, :, klo:khi].transpose(-1, -2)) * scale
        sc = sc.masked_fill(~ok, float("-inf"))
        vb = vc[:, :, klo:khi]
        if extra is not None:  # global / sink keys outside this query's band (inside it they are local keys)
            eok = ~_in_band(qpos[None], epos[:, None, :], W, causal) & evalid[:, None, :]  # (B|1, c, G)
            if causal:
                eok = eok & (epos[:, None, :] <= qpos[None])
            se = torch.matmul(qc[:, :, s:e], ek.transpose(-1, -2)) * scale
            sc = torch.cat([se.masked_fill(~eok[:, None], float("-inf")), sc], dim=-1)
            vb = torch.cat([ev, vb], dim=2)
        p = torch.nan_to_num(torch.softmax(sc, dim=-1), nan=0.0)  # fully masked rows give 0
        outs.append(torch.matmul(p, vb))
    o = torch.cat(outs, dim=2)
    if isinstance(pattern, WindowGlobal) and extra is not None:
        o = _with_global_rows(o, qc, kc, vc, epos, extra[1], kpm, causal, scale)
    return o.to(q.dtype)


def _with_global_rows(o: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gpos: torch.Tensor,
                      gvalid: torch.Tensor, kpm: Optional[torch.Tensor], causal: bool, scale: float) -> torch.Tensor:
    """``o`` with the global query rows replaced by attention over every key (Nq == Nk)."""
    og = dense_global_rows(gather_positions(q, gpos), k, v, gpos, kpm, causal, scale)
    return put_rows(o, gpos, gvalid, og)
