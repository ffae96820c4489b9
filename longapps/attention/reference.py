"""Plain PyTorch reference for every pattern (dense mask; O(N^2) memory, chunked over queries)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from .patterns import BlockSparse, Causal, Full, Linear, Pattern, SinksWindow, SlidingWindow, WindowGlobal

def global_membership(global_idx: torch.Tensor, n: int, device: torch.device | str) -> torch.Tensor:
    """(B or 1, n) bool: which positions are global tokens (negative indices are padding and ignored)."""
    gi = global_idx.to(device)
    if gi.dim() == 1:
        gi = gi[None]
    isg = torch.zeros(gi.shape[0], n + 1, dtype=torch.bool, device=device)
    isg.scatter_(1, torch.where(gi < 0, n, gi), True)
    return isg[:, :n]


def gather_positions(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """x (B, H, N, D) at positions pos (B|1, G) -> (B, H, G, D)."""
    B, H, _, D = x.shape
    return torch.gather(x, 2, pos.expand(B, -1)[:, None, :, None].expand(B, H, pos.shape[1], D))


def put_rows(x: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x (B, H, N, D) with positions pos (B|1, G) replaced by rows (B, H, G, D) where ``valid``
    (out of place, differentiable; invalid slots write nowhere)."""
    B, H, n, D = x.shape
    at = torch.where(valid, pos, n).expand(B, -1)  # invalid slots go to a scratch row n
    idx = at[:, None, :, None].expand(B, H, at.shape[1], D)
    return torch.cat([x, x.new_zeros(B, H, 1, D)], dim=2).scatter(2, idx, rows.to(x.dtype))[:, :, :n]


def dense_global_rows(q_rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor,
                      key_padding_mask: Optional[torch.Tensor], causal: bool, scale: float) -> torch.Tensor:
    """Global query rows: ``q_rows`` (B, H, G, D) of positions ``pos`` (B|1, G) attend every key of k, v
    (B, H, N, D) (causal: keys <= their position; padding keys never); rows with no visible key give 0."""
    n = k.shape[2]
    s = torch.matmul(q_rows, k.transpose(-1, -2)) * scale  # (B, H, G, N)
    ok = torch.ones(1, 1, 1, n, dtype=torch.bool, device=k.device)
    if causal:
        ok = ok & (torch.arange(n, device=k.device)[None, None, None, :] <= pos[:, None, :, None])
    if key_padding_mask is not None:
        ok = ok & key_padding_mask.bool()[:, None, None, :]
    p = torch.nan_to_num(torch.softmax(s.masked_fill(~ok, float("-inf")), -1), nan=0.0)
    return torch.matmul(p, v)


def dense_mask(pattern: Pattern, nq: int, nk: int, device: torch.device | str = "cpu",
               key_padding_mask: Optional[torch.Tensor] = None,
               q_start: int = 0, q_len: Optional[int] = None) -> torch.Tensor:
    """Bool mask (B|1, H|1, q_len, nk), True = query may attend key.

    Rows ``q_start .. q_start+q_len`` of the full (nq, nk) mask; queries are end-aligned.
    """
    q_len = nq - q_start if q_len is None else q_len
    qi = torch.arange(q_start, q_start + q_len, device=device) + (nk - nq)
    kj = torch.arange(nk, device=device)
    i, j = qi[:, None], kj[None, :]
    if isinstance(pattern, Full):
        m = torch.ones(q_len, nk, dtype=torch.bool, device=device)
    elif isinstance(pattern, (Causal, Linear)):
        m = j <= i
    elif isinstance(pattern, SlidingWindow):
        m = (i - j <= pattern.window) & (j <= i) if pattern.causal else (i - j).abs() <= pattern.window
    elif isinstance(pattern, SinksWindow):
        m = (j <= i) & ((i - j <= pattern.window) | (j < pattern.sinks))
    elif isinstance(pattern, WindowGlobal):
        isg = global_membership(pattern.global_idx, nk, device)
        band = (i - j).abs() <= pattern.window
        m = band[None] | isg[:, None, :] | isg[:, qi][:, :, None]
        if pattern.causal:
            m = m & (j <= i)[None]
        m = m[:, None]
    elif isinstance(pattern, BlockSparse):
        bs = pattern.block_size
        bm = pattern.block_mask.to(device)
        if bm.dim() == 2:
            bm = bm[None, None]
        m = bm[:, :, (qi - (nk - nq)) // bs][:, :, :, j[0] // bs]
    else:  # pragma: no cover
        raise ValueError(f"unknown pattern {pattern!r}")
    while m.dim() < 4:
        m = m[None]
    if key_padding_mask is not None:
        m = m & key_padding_mask.to(device=device, dtype=torch.bool)[:, None, None, :]
    return m


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern = Full(),
                        key_padding_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                        compute_dtype: Optional[torch.dtype] = None, chunk: int = 1024) -> torch.Tensor:
    """Softmax attention with the pattern's dense mask; rows with no visible key give 0.

    Computes in ``compute_dtype`` (default: float32, or float64 if inputs are float64) and
    returns the input dtype. Differentiable (plain autograd).
    """
    if isinstance(pattern, Linear):
        return reference_linear_attention(q, k, v, scale=pattern.scale, compute_dtype=compute_dtype)
    cd = compute_dtype or (torch.float64 if q.dtype == torch.float64 else torch.float32)
    nq, nk, d = q.shape[2], k.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qc, kc, vc = q.to(cd), k.to(cd), v.to(cd)
    outs = []
    for s in range(0, nq, chunk):
        ln = min(chunk, nq - s)
        m = dense_mask(pattern, nq, nk, q.device, key_padding_mask, q_start=s, q_len=ln)
        sc = torch.matmul(qc[:, :, s:s + ln], kc.transpose(-1, -2)) * scale
        sc = sc.masked_fill(~m, float("-inf"))
        p = torch.softmax(sc, dim=-1)
        p = torch.nan_to_num(p, nan=0.0)  # fully masked rows
        outs.append(torch.matmul(p, vc))
    return torch.cat(outs, dim=2).to(q.dtype)


def reference_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
                               compute_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Causal linear attention o_i = scale * sum_{j<=i} (q_i.k_j) v_j, quadratic form."""
    cd = compute_dtype or (torch.float64 if q.dtype == torch.float64 else torch.float32)
    n = q.shape[2]
    s = torch.matmul(q.to(cd), k.to(cd).transpose(-1, -2)) * (1.0 if scale is None else scale)
    s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=q.device).tril(), 0.0)
    return torch.matmul(s, v.to(cd)).to(q.dtype)
