"""Band patterns (sliding window, window + global tokens, sinks + window) in plain PyTorch, in
O(N * (block + 2W)) time and memory instead of the dense reference's O(N^2).

Blocked sliding-window attention with no Python loop over blocks or tokens: queries are cut into blocks of
``c`` (default: the window W, within [16, 128]); block b's keys are the band [b*c - W, b*c + c + W) (causal:
[b*c - W, b*c + c)), taken from the zero-padded keys as one strided view (``unfold``), so one batched
matmul scores every block against its band and one against the few global / sink keys (gathered once).
The band mask is the same (c, L) pattern for every block (plus the padded / out-of-range keys), so the
masks are tiny. Global query rows (they attend every key) are computed separately over all keys. The same
function as ``reference_attention`` (rows with no visible key give 0), differentiable, on any device: the
CPU path of ``attention()`` for these patterns.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .patterns import Pattern, SinksWindow, SlidingWindow, WindowGlobal
from .reference import dense_global_rows, gather_positions, put_rows

BAND_PATTERNS = (SlidingWindow, WindowGlobal, SinksWindow)


def default_block(window: int) -> int:
    """Queries per block: the window within [16, 128] (the scored keys are c + 2W, c + W causal; c = 128 for
    W = 256 scores 640 keys per query for 513 in the band, and ran as fast as 256 on the CPU)."""
    return max(16, min(128, window))


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


def _blocks(x: torch.Tensor, size: int, step: int) -> torch.Tensor:
    """(B, H, T, D) -> (B, H, nb, size, D) overlapping views ``x[..., b*step : b*step + size, :]`` (no copy)."""
    return x.unfold(2, size, step).transpose(-1, -2)


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
    dev = q.device
    qc, kc, vc = q.to(cd), k.to(cd), v.to(cd)
    kpm = key_padding_mask.to(device=dev, dtype=torch.bool) if key_padding_mask is not None else None
    if W >= nk:  # the band is every key: one block
        W = nk
    c = max(1, min(block or default_block(W), nq))
    nb = -(-nq // c)
    L = c + W if causal else c + 2 * W  # keys scored per block (band)
    # keys at padded index off + b*c + j are positions off + b*c - W + j, j < L
    span = (nb - 1) * c + L  # padded keys the blocks reach, from padded index off
    right = max(0, off + span - (W + nk))
    kp = F.pad(kc, (0, 0, W, right))[:, :, off:off + span]
    vp = F.pad(vc, (0, 0, W, right))[:, :, off:off + span]
    kvalid = torch.ones(1, nk, dtype=torch.bool, device=dev) if kpm is None else kpm
    kvalid = F.pad(kvalid, (W, right), value=False)[:, off:off + span]  # (B|1, span)
    i = torch.arange(c, device=dev)[:, None]
    j = torch.arange(L, device=dev)[None, :]
    band = (j >= i) & (j <= i + (W if causal else 2 * W))  # (c, L): key j of query i's block is in its band
    ok = kvalid.unfold(1, L, c)[:, :, None, :] & band  # (B|1, nb, c, L)
    extra = _extra_keys(pattern, nk, dev)
    if _FLASH_CPU is not None and dev.type == "cpu" and cd == torch.float32 and not (
            torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)):
        return _inference_cpu(qc, kc, vc, kp, vp, ok, extra, kpm, pattern, W, c, nb, L, off, causal, scale).to(q.dtype)
    # (B, H, nb, L, D) strided views -> (B, nb, H, L, D) blocks, one per query block
    kb = _blocks(kp, L, c).permute(0, 2, 1, 3, 4)
    vb = _blocks(vp, L, c).permute(0, 2, 1, 3, 4)
    if extra is not None:  # global / sink keys outside the query's band (inside it they are band keys)
        epos, ek, ev, eok = _extra_scores_inputs(extra, kc, vc, kpm, W, c, nb, off, causal)
        G = ek.shape[2]
        kb = torch.cat([ek[:, None].expand(B, nb, H, G, D), kb], dim=3)
        vb = torch.cat([ev[:, None].expand(B, nb, H, G, D), vb], dim=3)
        nbat = max(eok.shape[0], ok.shape[0])
        ok = torch.cat([eok.expand(nbat, -1, c, -1), ok.expand(nbat, -1, -1, -1)], dim=-1)
    K = kb.shape[3]
    kb = kb.reshape(B * nb, H, K, D)
    vb = vb.reshape(B * nb, H, K, D)
    qb = F.pad(qc, (0, 0, 0, nb * c - nq)).view(B, H, nb, c, D).transpose(1, 2).reshape(B * nb, H, c, D)
    any_ok = ok.any(-1, keepdim=True)  # (B|1, nb, c, 1): rows with no visible key give 0
    full = bool(any_ok.all())
    if not full:
        ok = ok | ~any_ok  # such rows attend something finite, then are zeroed (no NaN, no NaN gradient)
    ok = ok.expand(B, -1, -1, -1).reshape(B * nb, 1, c, K)
    o = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=ok, scale=scale)  # (B*nb, H, c, D)
    o = o.view(B, nb, H, c, D)
    if not full:
        o = o.masked_fill(~any_ok.expand(B, -1, -1, -1)[:, :, None], 0.0)
    o = o.transpose(1, 2).reshape(B, H, nb * c, D)[:, :, :nq]
    if isinstance(pattern, WindowGlobal) and extra is not None:
        o = _with_global_rows(o, qc, kc, vc, epos, extra[1], kpm, causal, scale)
    return o.to(q.dtype)


def _extra_scores_inputs(extra, kc, vc, kpm, W, c, nb, off, causal):
    """Positions (B|1, G), keys / values (B, H, G, D) of the extra (global / sink) keys and which query
    (B|1, nb, c, G) sees each one outside its band."""
    epos, evalid = extra
    B = kc.shape[0]
    ek, ev = gather_positions(kc, epos), gather_positions(vc, epos)
    if kpm is not None:
        evalid = evalid & torch.gather(kpm, 1, epos.expand(B, -1))
    qpos = (off + torch.arange(nb * c, device=kc.device)).view(1, nb, c, 1)
    ep = epos[:, None, None, :]  # (B|1, 1, 1, G)
    eok = ~_in_band(qpos, ep, W, causal) & evalid[:, None, None, :]
    if causal:
        eok = eok & (ep <= qpos)
    return epos, ek, ev, eok


def _flash_cpu_op():
    try:
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    except (AttributeError, RuntimeError):  # pragma: no cover - older torch
        return None


_FLASH_CPU = _flash_cpu_op()


def _inference_cpu(q, k, v, kp, vp, ok, extra, kpm, pattern, W, c, nb, L, off, causal, scale):
    """No-autograd float32 CPU path: the band keys are passed to the CPU flash kernel as overlapping strided
    views of the padded keys (no copy of the 1 + 2W/c times larger key blocks); the global / sink keys are
    merged in afterwards through the kernel's log-sum-exp (online-softmax merge); global query rows are
    written in place. Output (B, H, Nq, D) is a transposed view of a (B, Nq, H, D) buffer (what HF's
    attention interface returns next), so the caller's transpose is free."""
    B, H, nq, D = q.shape
    any_ok = ok.any(-1)  # (B|1, nb, c): a visible band key
    bias = torch.zeros(ok.shape, dtype=q.dtype).masked_fill_(~(ok | ~any_ok[..., None]), float("-inf"))
    if nq % c:
        q = torch.nn.functional.pad(q, (0, 0, 0, nb * c - nq))
    out = torch.empty(B, nb * c, H, D, dtype=q.dtype)
    ov = out.view(B, nb, c, H, D).permute(0, 1, 3, 2, 4)  # (B, nb, H, c, D) view of the output buffer
    if extra is not None:
        epos, ek, ev, eok = _extra_scores_inputs(extra, k, v, kpm, W, c, nb, off, causal)
    for b in range(B):  # over the batch only (a handful of windows)
        qb = q[b].unflatten(1, (nb, c)).transpose(0, 1)  # (nb, H, c, D) view
        kb = kp[b].unfold(1, L, c).permute(1, 0, 3, 2)  # (nb, H, L, D) overlapping view
        vb = vp[b].unfold(1, L, c).permute(1, 0, 3, 2)
        mb = bias[b if bias.shape[0] > 1 else 0][:, None]  # (nb, 1, c, L)
        o, lse = _FLASH_CPU(qb, kb, vb, 0.0, False, attn_mask=mb, scale=scale)  # (nb, H, c, D), (nb, H, c)
        band_any = any_ok[b if any_ok.shape[0] > 1 else 0][:, None]  # (nb, 1, c)
        lse = lse.masked_fill(~band_any, float("-inf"))
        if extra is None:
            ov[b] = o.masked_fill_(~band_any[..., None], 0.0)
            continue
        se = torch.matmul(qb, ek[b].transpose(-1, -2)[None]) * scale  # (nb, H, c, G)
        se = se.masked_fill_(~eok[b if eok.shape[0] > 1 else 0][:, None], float("-inf"))
        m = torch.maximum(lse, se.amax(-1))
        m = torch.where(torch.isinf(m), torch.zeros_like(m), m)  # no visible key at all: weights 0 -> output 0
        wb = torch.exp(lse - m)
        wg = torch.exp(se - m[..., None])
        den = (wb + wg.sum(-1)).clamp_min_(torch.finfo(q.dtype).tiny)[..., None]
        ov[b] = (o * wb[..., None] + torch.matmul(wg, ev[b][None])).div_(den)
    res = out[:, :nq].transpose(1, 2)  # (B, H, nq, D)
    if isinstance(pattern, WindowGlobal) and extra is not None:
        gpos, gvalid = extra
        og = dense_global_rows(gather_positions(q[:, :, :nq], gpos), k, v, gpos, kpm, causal, scale)  # (B, H, G, D)
        for b in range(B):
            sel = gvalid[b if gvalid.shape[0] > 1 else 0]
            pos = gpos[b if gpos.shape[0] > 1 else 0][sel]
            res[b][:, pos] = og[b][:, sel]
    return res


def _with_global_rows(o: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gpos: torch.Tensor,
                      gvalid: torch.Tensor, kpm: Optional[torch.Tensor], causal: bool, scale: float) -> torch.Tensor:
    """``o`` with the global query rows replaced by attention over every key (Nq == Nk)."""
    og = dense_global_rows(gather_positions(q, gpos), k, v, gpos, kpm, causal, scale)
    return put_rows(o, gpos, gvalid, og)
