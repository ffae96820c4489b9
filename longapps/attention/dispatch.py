"""One entry point: ``attention(q, k, v, pattern, ...)`` dispatching to Triton / Flex / SDPA / reference."""
from __future__ import annotations

import functools
import warnings
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
    if _is_compiling():
        return _attention_not_traced(q, k, v, pattern, key_padding_mask, scale, backend)
    try:  # the call's signature: everything validation and planning depend on (not the data)
        key = (pattern, scale, backend, q.shape, k.shape, v.shape, q.stride(), k.stride(), v.stride(), q.dtype,
               k.dtype, v.dtype, q.device, k.device, v.device, None if key_padding_mask is None else
               (key_padding_mask.shape, key_padding_mask.stride(), key_padding_mask.dtype, key_padding_mask.device))
        run = _CALLS.get(key)
    except (AttributeError, TypeError):  # not tensors / an unhashable pattern: the checked path says why
        return _attention(q, k, v, pattern, key_padding_mask, scale, backend)
    grad = _grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if run and not grad:
        return run(q, k, v, key_padding_mask)
    out = _attention(q, k, v, pattern, key_padding_mask, scale, backend)
    if run is None and not grad:  # a valid call (it ran): plan its signature for the next ones
        _plan_call(key, q, k, v, pattern, key_padding_mask, scale, backend)
    return out


# call signature -> planned call (validated once; see make_plan), or False (not planned: the checked path).
# Patterns are immutable, so the pattern object (by value for the dataclasses compared by value) is in the key.
_CALLS: dict = {}


def _plan_call(key: tuple, q, k, v, pattern, kpm, scale, backend) -> None:
    if q.is_cuda and torch.cuda.is_current_stream_capturing():
        return  # planned on an eager call (a runner's placeholders must be filled)
    if (q.data_ptr() | k.data_ptr() | v.data_ptr()) & 15:
        return  # planned on an aligned call (the plan's TMA layout is chosen from the first call's tensors)
    try:
        run = make_plan(q, k, v, pattern, kpm, scale, backend)
    except Exception as err:  # noqa: BLE001 (never fail a call that worked: keep the checked path for it)
        warnings.warn(f"attention(): could not plan this call signature ({err!r:.200}); using the checked path",
                      RuntimeWarning, stacklevel=3)
        run = None
    if len(_CALLS) >= MAX_PLANS:
        _CALLS.clear()
    _CALLS[key] = run if run is not None else False
MAX_PLANS = 256
_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled


def clear_plans() -> None:
    """Forget every planned call (they are rebuilt on the next calls). A plan keeps the launch settings of
    the time it was made: after changing ``window_global.FWD_DEFAULTS`` or ``lightning.LIGHTNING_DEFAULTS``
    call this (``window_global_forward`` itself reads them on every call)."""
    _CALLS.clear()


def make_plan(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern,
              kpm: Optional[torch.Tensor], scale: Optional[float], backend: str):
    """A callable ``run(q, k, v, kpm) -> out`` for later calls with the same signature as this (valid, already
    made) one, doing no validation or dispatch: a ``WindowRunner`` / ``LightningRunner`` (launches planned
    once) for the Triton kernels on CUDA, the chosen backend's function otherwise. None when the call should
    not be planned (under CUDA-graph capture: a runner's placeholders must be filled eagerly; the sinks decode
    kernel; padding masks that are not bool with a contiguous last dimension)."""
    if q.is_cuda and torch.cuda.is_current_stream_capturing():
        return None
    be = choose_backend(q, k, pattern, backend)
    if be != "triton":
        return functools.partial(_run_backend, be, pattern, scale)
    if not q.is_cuda and not interpreting():  # pragma: no cover (the checked path raised already)
        return None
    if kpm is not None and (kpm.dtype != torch.bool or kpm.stride(-1) != 1):
        return None
    if isinstance(pattern, Linear):
        from ..kernels.lightning import LightningRunner
        r = LightningRunner(q, k, v, pattern.scale)
        return lambda q, k, v, kpm: r(q, k, v)
    if q.shape[-1] not in (16, 32, 64, 128) or q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        return None
    from ..kernels.window_global import WindowRunner
    if isinstance(pattern, WindowGlobal):
        return WindowRunner(q, k, v, pattern.window, global_table(pattern, q.device), pattern.causal, kpm, scale)
    if isinstance(pattern, SlidingWindow):
        return WindowRunner(q, k, v, pattern.window, None, pattern.causal, kpm, scale)
    if isinstance(pattern, SinksWindow) and q.shape[2] == k.shape[2]:
        return WindowRunner(q, k, v, pattern.window, None, True, kpm, scale, sinks=pattern.sinks)
    return None


def _run_backend(be: str, pattern: Pattern, scale: Optional[float], q, k, v, kpm):
    """A validated call's backend (not the Triton kernels)."""
    if be == "flex":
        return flex_path(q, k, v, pattern, kpm, scale)
    if be == "sdpa":
        return sdpa_path(q, k, v, pattern, kpm, scale)
    if be == "banded":
        return banded_attention(q, k, v, pattern, kpm, scale)
    if isinstance(pattern, Linear):
        from ..kernels.lightning import chunked_lightning_torch
        return chunked_lightning_torch(q, k, v, pattern.scale)
    return reference_attention(q, k, v, pattern, kpm, scale)


def _attention(q, k, v, pattern, key_padding_mask, scale, backend):
    validate_inputs(q, k, v, pattern, key_padding_mask)
    be = choose_backend(q, k, pattern, backend)
    if be == "triton":
        return _triton_path(q, k, v, pattern, key_padding_mask, scale)
    if be == "flex" and isinstance(pattern, Linear):
        raise ValueError("backend='flex' cannot run Linear attention")
    return _run_backend(be, pattern, scale, q, k, v, key_padding_mask)


def _attention_not_traced(q, k, v, pattern, key_padding_mask, scale, backend):
    """``_attention`` run eagerly under ``torch.compile`` (one graph break). The ``torch.compiler.disable``
    wrapper is made on first use: making it imports torch._dynamo (~1 s on a 2-core box), which the eager
    callers (CPU NER predict) never need."""
    global _not_traced
    if _not_traced is None:
        _not_traced = torch.compiler.disable(_attention)
    return _not_traced(q, k, v, pattern, key_padding_mask, scale, backend)


_not_traced = None


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
