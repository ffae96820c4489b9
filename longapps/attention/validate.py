"""Input checks shared by every backend: clear ValueErrors that name the argument."""
from __future__ import annotations

from typing import Optional

import torch

from .patterns import BlockSparse, Causal, Full, Linear, Pattern, SinksWindow, SlidingWindow, WindowGlobal
from .prepared import global_bounds

_PATTERNS = (Full, Causal, SlidingWindow, WindowGlobal, SinksWindow, BlockSparse, Linear)


def validate_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern,
                    key_padding_mask: Optional[torch.Tensor]) -> None:
    """Raise ValueError (naming the argument) unless the call is well formed. Reads no device tensor: shapes,
    dtypes and devices only (a ``WindowGlobal`` index's range is read once per pattern)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (B, H, N, D), got {tuple(t.shape)}")
        if not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be floating point, got {t.dtype}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share a dtype: q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v must be on one device: q {q.device}, k {k.device}, v {v.device}")
    B, H, Nq, D = q.shape
    if Nq == 0 or k.shape[2] == 0:
        raise ValueError(f"q and k need at least one position, got Nq={Nq}, Nk={k.shape[2]}")
    if k.shape[0] != B or k.shape[1] != H or k.shape[3] != D:
        raise ValueError(f"k shape {tuple(k.shape)} does not match q shape {tuple(q.shape)} in B, H or D")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v shape {tuple(v.shape)} does not match k shape {tuple(k.shape)} in B, H, N")
    Nk = k.shape[2]
    if Nq > Nk:
        raise ValueError(f"q has more positions ({Nq}) than k ({Nk})")
    if not isinstance(pattern, _PATTERNS):
        raise ValueError(f"pattern must be one of {[p.__name__ for p in _PATTERNS]}, got {type(pattern).__name__}")
    if isinstance(pattern, (Full,)) and Nq != Nk:
        pass  # allowed: cross attention style
    if isinstance(pattern, (WindowGlobal, BlockSparse)) or (isinstance(pattern, SlidingWindow) and not pattern.causal):
        if Nq != Nk:
            raise ValueError(f"{type(pattern).__name__} needs q and k of equal length, got {Nq} and {Nk}")
    if isinstance(pattern, Linear) and Nq != Nk:
        raise ValueError(f"Linear needs q and k of equal length, got {Nq} and {Nk}")
    if isinstance(pattern, WindowGlobal):
        gi = pattern.global_idx
        if gi.dim() == 2 and gi.shape[0] != B:
            raise ValueError(f"global_idx has batch {gi.shape[0]}, q has batch {B}")
        n, lo, hi = global_bounds(pattern)  # read once per pattern, not per call
        if n and (hi >= Nk or lo < (-1 if gi.dim() == 2 else 0)):
            raise ValueError(f"global_idx out of range [0, {Nk}): min {lo}, max {hi}")
    if isinstance(pattern, BlockSparse):
        bm, bs = pattern.block_mask, pattern.block_size
        nqb, nkb = -(-Nq // bs), -(-Nk // bs)
        if tuple(bm.shape[-2:]) != (nqb, nkb):
            raise ValueError(f"block_mask must have last dims ({nqb}, {nkb}) for N={Nq}, block_size={bs}; got {tuple(bm.shape)}")
        if bm.dim() == 4 and (bm.shape[0] not in (1, B) or bm.shape[1] not in (1, H)):
            raise ValueError(f"block_mask batch/head dims {tuple(bm.shape[:2])} do not match (B={B}, H={H})")
    if key_padding_mask is not None:
        if isinstance(pattern, Linear):
            raise ValueError("key_padding_mask is not supported with Linear attention")
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.shape != (B, Nk):
            shape = tuple(key_padding_mask.shape) if isinstance(key_padding_mask, torch.Tensor) else type(key_padding_mask).__name__
            raise ValueError(f"key_padding_mask must be a (B, Nk) = ({B}, {Nk}) tensor (True = real token), got {shape}")
        if key_padding_mask.device != q.device:
            raise ValueError(f"key_padding_mask is on {key_padding_mask.device}, q on {q.device}")
