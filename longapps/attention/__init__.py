"""Efficient attention backend: ``attention(q, k, v, pattern, ...)`` with patterns as data.

Dispatch: Triton kernel on CUDA when the pattern has one (window/global, sinks/window, linear),
else FlexAttention / SDPA with a mask; on CPU the banded PyTorch path for the window patterns, else the
plain dense-mask reference.
"""
from .dispatch import BACKENDS, attention, choose_backend, triton_supports
from .patterns import BlockSparse, Causal, Full, Linear, Pattern, SinksWindow, SlidingWindow, WindowGlobal
from .reference import dense_mask, reference_attention

__all__ = ["attention", "choose_backend", "triton_supports", "BACKENDS", "Full", "Causal", "SlidingWindow",
           "WindowGlobal", "SinksWindow", "BlockSparse", "Linear", "Pattern", "dense_mask", "reference_attention"]
