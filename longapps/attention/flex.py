"""FlexAttention / SDPA paths: the pattern becomes a mask_mod (Flex) or a dense bool mask (SDPA)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .patterns import BlockSparse, Causal, Full, Linear, Pattern, SinksWindow, SlidingWindow, WindowGlobal
from .reference import dense_mask, global_membership

_COMPILED: dict = {}


def flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
        return True
    except Exception:
        return False


def mask_mod_for(pattern: Pattern, nq: int, nk: int, device: torch.device,
                 key_padding_mask: Optional[torch.Tensor] = None) -> Optional[Callable]:
    """FlexAttention mask_mod for the pattern (None = no mask)."""
    off = nk - nq
    kpm = key_padding_mask.bool() if key_padding_mask is not None else None
    if isinstance(pattern, Full):
        base = None
    elif isinstance(pattern, Causal):
        def base(b, h, qi, kj):
            return qi + off >= kj
    elif isinstance(pattern, SlidingWindow):
        w, causal = pattern.window, pattern.causal
        if causal:
            def base(b, h, qi, kj):
                d = qi + off - kj
                return (d >= 0) & (d <= w)
        else:
            def base(b, h, qi, kj):
                d = qi + off - kj
                return (d <= w) & (d >= -w)
    elif isinstance(pattern, SinksWindow):
        w, s = pattern.window, pattern.sinks

        def base(b, h, qi, kj):
            d = qi + off - kj
            return (d >= 0) & ((d <= w) | (kj < s))
    elif isinstance(pattern, WindowGlobal) and pattern.global_idx.dim() == 1 and pattern.global_idx.numel() <= 8:
        # few shared global tokens: explicit comparisons (a table lookup per element is much slower)
        gl = sorted(set(int(x) for x in pattern.global_idx.tolist()))
        w, causal = pattern.window, pattern.causal

        def base(b, h, qi, kj):
            d = qi - kj
            m = (d <= w) & (d >= -w)
            for g in gl:
                m = m | (qi == g) | (kj == g)
            if causal:
                m = m & (d >= 0)
            return m
    elif isinstance(pattern, WindowGlobal):
        isg = global_membership(pattern.global_idx, nk, device).contiguous()
        bsel = (lambda b: b) if isg.shape[0] > 1 else (lambda b: 0)
        w, causal = pattern.window, pattern.causal

        def base(b, h, qi, kj):
            d = qi - kj
            m = ((d <= w) & (d >= -w)) | isg[bsel(b), kj] | isg[bsel(b), qi]
            if causal:
                m = m & (d >= 0)
            return m
    elif isinstance(pattern, BlockSparse):
        bm = pattern.block_mask.to(device)
        bs = pattern.block_size
        if bm.dim() == 2:
            def base(b, h, qi, kj):
                return bm[qi // bs, kj // bs]
        else:
            bb = (lambda b: b) if bm.shape[0] > 1 else (lambda b: 0)
            hh = (lambda h: h) if bm.shape[1] > 1 else (lambda h: 0)

            def base(b, h, qi, kj):
                return bm[bb(b), hh(h), qi // bs, kj // bs]
    else:
        raise ValueError(f"Flex path does not handle {type(pattern).__name__}")
    if kpm is None:
        return base
    if base is None:
        def mm(b, h, qi, kj):
            return kpm[b, kj]
        return mm

    def mm2(b, h, qi, kj):
        return base(b, h, qi, kj) & kpm[b, kj]
    return mm2


def flex_block_mask(pattern: Pattern, B: int, H: int, nq: int, nk: int, device: torch.device,
                    key_padding_mask: Optional[torch.Tensor] = None):
    """Build the FlexAttention BlockMask (None for Full without padding)."""
    from torch.nn.attention.flex_attention import create_block_mask
    mm = mask_mod_for(pattern, nq, nk, device, key_padding_mask)
    if mm is None:
        return None
    need_b = key_padding_mask is not None or (isinstance(pattern, WindowGlobal) and pattern.global_idx.dim() == 2) \
        or (isinstance(pattern, BlockSparse) and pattern.block_mask.dim() == 4 and pattern.block_mask.shape[0] > 1)
    need_h = isinstance(pattern, BlockSparse) and pattern.block_mask.dim() == 4 and pattern.block_mask.shape[1] > 1
    return create_block_mask(mm, B if need_b else None, H if need_h else None, nq, nk, device=device)


def flex_attention_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask, scale: Optional[float] = None,
                        compiled: bool = True) -> torch.Tensor:
    """flex_attention, compiled once per process on CUDA."""
    from torch.nn.attention.flex_attention import flex_attention
    fn = flex_attention
    if compiled and q.is_cuda:
        fn = _COMPILED.get("flex")
        if fn is None:
            fn = _COMPILED["flex"] = torch.compile(flex_attention, dynamic=False)
    return fn(q, k, v, block_mask=block_mask, scale=scale)


def flex_path(q, k, v, pattern, key_padding_mask=None, scale=None) -> torch.Tensor:
    bm = flex_block_mask(pattern, q.shape[0], q.shape[1], q.shape[2], k.shape[2], q.device, key_padding_mask)
    return flex_attention_call(q, k, v, bm, scale)


def sdpa_path(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern,
              key_padding_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None) -> torch.Tensor:
    """SDPA with is_causal (Causal, no padding) or a dense bool mask; fully masked rows give 0."""
    if isinstance(pattern, Linear):
        raise ValueError("SDPA path does not handle Linear attention")
    nq, nk = q.shape[2], k.shape[2]
    if key_padding_mask is None and isinstance(pattern, Full):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    if key_padding_mask is None and isinstance(pattern, Causal) and nq == nk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    m = dense_mask(pattern, nq, nk, q.device, key_padding_mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale)
    empty = ~m.any(-1, keepdim=True)
    if bool(empty.any()):
        out = out.masked_fill(empty, 0.0)
    return out
