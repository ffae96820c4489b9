"""One entry point: ``attention(q, k, v, pattern, ...)`` dispatching to Triton / Flex / SDPA / reference."""
from __future__ import annotations

from typing import Optional

import torch

from ..kernels._common import HAS_TRITON, interpreting
from .banded import BAND_PATTERNS, banded_attention
from .flex import flex_available, flex_path, sdpa_path
from .patterns import Causal, Full, Linear, Pattern, SinksWindow, SlidingWindow, WindowGlobal
from .prepared import global_table
from .reference import reference_attention
from .validate import validate_inputs

BACKENDS = ("auto", "triton", "flex", "sdpa", "banded", "reference")


def triton_supports(q: torch.Tensor, k: torch.Tensor, pattern: Pattern) -> bool:
    """Whether a Triton kernel covers this call (device aside)."""
    if not HAS_TRITON or q.shape[-1] not in (16, 32, 64, 128) or q.dtype == torch.float64:
        return False
    nq, nk = q.shape[2], k.shape[2]
    if isinstance(pattern, (WindowGlobal, SlidingWindow)):
        return nq == nk
    if isinstance(pattern, SinksWindow):
        return nq == nk or nq == 1
    if isinstance(pattern, Linear):
        return True
    return False


def choose_backend(q: torch.Tensor, k: torch.Tensor, pattern: Pattern, backend: str = "auto") -> str:
    """Resolve ``backend='auto'`` for this call."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if q.is_cuda:
        if triton_supports(q, k, pattern):
            return "triton"
        if isinstance(pattern, (Full, Causal)):
            return "sdpa"
        if isinstance(pattern, Linear):
            return "reference"
        return "flex" if flex_available() else "sdpa"
    return "banded" if isinstance(pattern, BAND_PATTERNS) else "reference"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern = Full(), *,
              key_padding_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
              backend: str = "auto") -> torch.Tensor:
    """Attention of q (B, H, Nq, D) over k, v (B, H, Nk, D) restricted by ``pattern``.

    ``key_padding_mask`` (B, Nk) bool, True = real token. ``scale`` defaults to 1/sqrt(D)
    (Linear: ``pattern.scale``, default 1). ``backend``: auto | triton | flex | sdpa | banded | reference;
    every backend computes the same function (rows with no visible key give 0). "banded" (the CPU default
    for window patterns) scores only each query block's band; "reference" is the dense-mask definition.

    The Triton path does no device sync and rebuilds nothing per call (a pattern's index is prepared once
    per pattern and device, launch set-ups are cached), so it can be captured in a CUDA graph; under
    ``torch.compile`` the call is one graph break, run eagerly.
    """
    if torch.compiler.is_compiling():
        return _attention_not_traced(q, k, v, pattern, key_padding_mask, scale, backend)
    return _attention(q, k, v, pattern, key_padding_mask, scale, backend)


def _attention(q, k, v, pattern, key_padding_mask, scale, backend):
    validate_inputs(q, k, v, pattern, key_padding_mask)
    be = choose_backend(q, k, pattern, backend)
    if be == "triton":
        return _triton_path(q, k, v, pattern, key_padding_mask, scale)
    if be == "flex":
        if isinstance(pattern, Linear):
            raise ValueError("backend='flex' cannot run Linear attention")
        return flex_path(q, k, v, pattern, key_padding_mask, scale)
    if be == "sdpa":
        return sdpa_path(q, k, v, pattern, key_padding_mask, scale)
    if be == "banded":
        return banded_attention(q, k, v, pattern, key_padding_mask, scale)
    if isinstance(pattern, Linear):
        from ..kernels.lightning import chunked_lightning_torch
        return chunked_lightning_torch(q, k, v, pattern.scale)
    return reference_attention(q, k, v, pattern, key_padding_mask, scale)


_attention_not_traced = torch.compiler.disable(_attention)


def _triton_path(q, k, v, pattern, kpm, scale):
    if not HAS_TRITON:
        raise ValueError("backend='triton' needs the triton package")
    if not (q.is_cuda or interpreting()):
        raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
    if not triton_supports(q, k, pattern):
        raise ValueError(f"no Triton kernel for {type(pattern).__name__} with q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"dtype {q.dtype}")
    if isinstance(pattern, Linear):
        from ..kernels.lightning import lightning_attention, lightning_forward
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            return lightning_attention(q, k, v, pattern.scale)
        return lightning_forward(q, k, v, pattern.scale)
    from ..kernels.window_global import sinks_window_attention, window_global_attention
    if isinstance(pattern, WindowGlobal):
        return window_global_attention(q, k, v, pattern.window, global_table(pattern, q.device), pattern.causal, kpm,
                                       scale, gidx_prepared=True)
    if isinstance(pattern, SlidingWindow):
        return window_global_attention(q, k, v, pattern.window, None, pattern.causal, kpm, scale)
    if isinstance(pattern, SinksWindow):
        if q.shape[2] == 1 and k.shape[2] > 1:
            if kpm is not None:
                raise ValueError("key_padding_mask is not supported by the sinks decode kernel")
            from ..kernels.sinks_decode import sinks_window_decode
            return sinks_window_decode(q, k, v, pattern.sinks, pattern.window, scale)
        return sinks_window_attention(q, k, v, pattern.sinks, pattern.window, kpm, scale)
    raise ValueError(f"no Triton kernel for {type(pattern).__name__}")  # pragma: no cover
