"""Attention patterns as data.

Conventions (all patterns): layout (B, H, N, D); query i and key j are *positions*.
When Nq < Nk (decode / chunked prefill), queries are aligned to the end of the keys:
query row r has position ``Nk - Nq + r``.

``window`` is always the largest allowed distance: a key j is inside the window of query i
when ``|i - j| <= window`` (symmetric) or ``0 <= i - j <= window`` (causal). HF Longformer's
``attention_window=512`` is ``window=256`` here (256 keys each side + the token itself).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import torch

IndexLike = Union[torch.Tensor, Sequence[int]]


def _check_window(window: object, name: str = "window") -> int:
    if isinstance(window, bool) or not isinstance(window, int):
        raise ValueError(f"{name} must be a positive int, got {window!r}")
    if window <= 0:
        raise ValueError(f"{name} must be > 0, got {window}")
    return window


@dataclass(frozen=True)
class Full:
    """Every query attends every key."""


@dataclass(frozen=True)
class Causal:
    """Query i attends keys j <= i."""


@dataclass(frozen=True)
class SlidingWindow:
    """Local band: |i - j| <= window (or 0 <= i - j <= window when causal)."""

    window: int
    causal: bool = False

    def __post_init__(self) -> None:
        _check_window(self.window)


@dataclass(frozen=True, eq=False)
class WindowGlobal:
    """Longformer pattern: sliding window plus global tokens.

    ``global_idx`` lists positions (1-D, shared by the batch; or 2-D (B, G) padded with -1)
    that attend to every key and are attended by every query. With ``causal`` everything is
    additionally restricted to j <= i.
    """

    window: int
    global_idx: IndexLike = field(default_factory=list)
    causal: bool = False

    def __post_init__(self) -> None:
        _check_window(self.window)
        gi = self.global_idx
        if not isinstance(gi, torch.Tensor):
            try:
                gi = torch.as_tensor(list(gi), dtype=torch.long)
            except (TypeError, ValueError) as e:
                raise ValueError(f"global_idx must be a sequence of ints or an integer tensor: {e}") from None
        if gi.dtype.is_floating_point or gi.dtype == torch.bool:
            raise ValueError(f"global_idx must be an integer tensor, got dtype {gi.dtype}")
        if gi.dim() not in (1, 2):
            raise ValueError(f"global_idx must be 1-D (G,) or 2-D (B, G), got shape {tuple(gi.shape)}")
        object.__setattr__(self, "global_idx", gi.long())


@dataclass(frozen=True)
class SinksWindow:
    """StreamingLLM: causal; keys j < sinks always visible, plus 0 <= i - j <= window."""

    sinks: int
    window: int

    def __post_init__(self) -> None:
        if isinstance(self.sinks, bool) or not isinstance(self.sinks, int) or self.sinks < 0:
            raise ValueError(f"sinks must be an int >= 0, got {self.sinks!r}")
        _check_window(self.window)


@dataclass(frozen=True, eq=False)
class BlockSparse:
    """Block mask (nqb, nkb) or (B, H, nqb, nkb), bool; block (qb, kb) covers
    queries [qb*bs, (qb+1)*bs) and keys [kb*bs, (kb+1)*bs)."""

    block_mask: torch.Tensor
    block_size: int

    def __post_init__(self) -> None:
        _check_window(self.block_size, "block_size")
        bm = self.block_mask
        if not isinstance(bm, torch.Tensor) or bm.dim() not in (2, 4):
            raise ValueError("block_mask must be a bool tensor of shape (nqb, nkb) or (B, H, nqb, nkb)")
        object.__setattr__(self, "block_mask", bm.bool())


@dataclass(frozen=True)
class Linear:
    """Causal linear attention (Lightning Attention-2 form, no softmax, no decay):
    o_i = sum_{j<=i} scale * (q_i . k_j) v_j. ``scale`` defaults to 1."""

    scale: Optional[float] = None


Pattern = Union[Full, Causal, SlidingWindow, WindowGlobal, SinksWindow, BlockSparse, Linear]

__all__ = ["Full", "Causal", "SlidingWindow", "WindowGlobal", "SinksWindow", "BlockSparse", "Linear", "Pattern"]
