"""Triton kernels for efficient attention, each beside a plain PyTorch reference.

- ``window_global``: sliding window + global tokens (Longformer), sinks + window (StreamingLLM)
- ``sinks_decode``: single-query decode over a sinks + window KV cache (split-K)
- ``lightning``: causal linear attention, Lightning Attention-2 style
"""
from ._common import HAS_TRITON, interpreting, triton_usable

__all__ = ["HAS_TRITON", "interpreting", "triton_usable"]
