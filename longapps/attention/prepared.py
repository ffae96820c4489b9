"""Per-pattern preparation, done once and reused by every call with the same pattern object.

A ``WindowGlobal`` pattern's index is sorted, de-duplicated, padded with -1 and copied to the device
once per (pattern, device) and its value range is read once (for validation), so ``attention()`` reads
no device tensor and launches no index kernel per call. Patterns are frozen dataclasses: the cache is
keyed by the pattern object (weakly, so it goes away with the pattern); an index tensor changed in place
after the first call is not seen again (make a new pattern instead).
"""
from __future__ import annotations

import weakref
from typing import Dict, Optional, Tuple

import torch

from .patterns import WindowGlobal

_BOUNDS: "weakref.WeakKeyDictionary[WindowGlobal, Tuple[int, int, int]]" = weakref.WeakKeyDictionary()
_TABLES: "weakref.WeakKeyDictionary[WindowGlobal, Dict[Tuple[str, Optional[int]], torch.Tensor]]" = \
    weakref.WeakKeyDictionary()


def global_bounds(pattern: WindowGlobal) -> Tuple[int, int, int]:
    """(numel, min, max) of ``pattern.global_idx`` (min = max = 0 when empty), read once per pattern."""
    b = _BOUNDS.get(pattern)
    if b is None:
        gi = pattern.global_idx
        if gi.numel():
            lo, hi = torch.aminmax(gi)
            b = (gi.numel(), int(lo), int(hi))
        else:
            b = (0, 0, 0)
        _BOUNDS[pattern] = b
    return b


def global_table(pattern: WindowGlobal, device: torch.device) -> Optional[torch.Tensor]:
    """The kernels' index table for ``pattern`` on ``device``: (1|B, G) int32, sorted, de-duplicated, -1
    padded (``window_global.prepare_global_idx``); None when the pattern has no global tokens."""
    if global_bounds(pattern)[0] == 0:
        return None
    per_dev = _TABLES.get(pattern)
    if per_dev is None:
        per_dev = _TABLES[pattern] = {}
    key = (device.type, device.index)
    t = per_dev.get(key)
    if t is None:
        from ..kernels.window_global import prepare_global_idx
        t = per_dev[key] = prepare_global_idx(pattern.global_idx, device)
    return t


__all__ = ["global_bounds", "global_table"]
