"""Decode attention over the bounded KV cache through the longapps attention backend.

``use_backend_attention(model)`` registers an attention function named "longapps" with transformers and
switches the model to it. A single-query step (decode) attends over the whole compacted cache, which is a
StreamingLLM pattern with every key inside the window: on CUDA ``longapps.attention.attention`` runs it on
the split-K Triton decode kernel (``kernels/sinks_decode.py``). Prefill chunks, masked calls and features
the kernel lacks (softcap, attention sinks parameters) go to transformers' SDPA function unchanged.

``$LONGAPPS_DECODE_BACKEND`` picks the backend for decode steps: ``auto`` (default: the kernel on CUDA, SDPA
on CPU), ``off`` (transformers' SDPA everywhere: the baseline), or any ``longapps.attention`` backend name
(``triton`` also runs on CPU under TRITON_INTERPRET=1, which is how the CPU test checks this path).
"""
from __future__ import annotations

import os
from typing import Any

import torch

NAME = "longapps"


def _backend() -> str:
    return os.environ.get("LONGAPPS_DECODE_BACKEND", "auto")


def _fits_kernel(query: torch.Tensor, key: torch.Tensor, attention_mask: Any, kwargs: dict) -> bool:
    if _backend() == "off" or query.shape[2] != 1 or key.shape[2] < 2 or attention_mask is not None:
        return False
    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None or kwargs.get("sinks") is not None:
        return False
    if kwargs.get("sliding_window") is not None and kwargs["sliding_window"] < key.shape[2]:
        return False
    return query.is_cuda or _backend() != "auto"


def backend_attention_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: Any, dropout: float = 0.0, scaling: float | None = None,
                              **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers attention-function signature: q (B, H, Nq, D), k/v (B, Hkv, Nk, D) -> (B, Nq, H, D)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not _fits_kernel(query, key, attention_mask, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    from longapps.attention import SinksWindow, attention

    rep = query.shape[1] // key.shape[1]
    if rep > 1:  # grouped-query attention: head h reads kv head h // rep
        key = key.repeat_interleave(rep, dim=1)
        value = value.repeat_interleave(rep, dim=1)
    nk = key.shape[2]
    be = _backend()
    out = attention(query, key, value, SinksWindow(0, nk - 1), scale=scaling, backend="auto" if be == "auto" else be)
    return out.transpose(1, 2).contiguous(), None


def use_backend_attention(model: Any) -> bool:
    """Route the model's attention through ``backend_attention_forward``; False when the model's attention
    implementation is not SDPA/eager (e.g. flash-attention was asked for: left as it is)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    current = getattr(model.config, "_attn_implementation", None)
    if current not in (None, "sdpa", "eager", NAME):
        return False
    AttentionInterface.register(NAME, backend_attention_forward)
    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(NAME, sdpa_mask)
    model.config._attn_implementation = NAME
    for sub in ("text_config",):
        cfg = getattr(model.config, sub, None)
        if cfg is not None:
            cfg._attn_implementation = NAME
    return True


__all__ = ["backend_attention_forward", "use_backend_attention", "NAME"]
