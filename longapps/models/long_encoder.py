"""Make a short BERT/RoBERTa-family encoder long, the way the Longformer paper did.

1. **Positions**: the learned position embeddings are copied out to the new length (the 512 trained rows
   repeated; RoBERTa's two reserved rows kept in front), so a 4,096-token input starts from positions the
   model already knows locally.
2. **Attention**: every self-attention layer runs ``longapps.attention.attention(q, k, v,
   WindowGlobal(window, global_idx=[0]))`` — a sliding window plus the first token ([CLS] / <s>) global —
   on our backend: the banded PyTorch path on CPU, the Triton window+global kernel on CUDA. The model's own
   q/k/v projections are used (no separate global projections), so with a window covering the whole input
   the outputs equal the short model's.

The switch is a registered transformers attention implementation (``"longapps_window"``): the HF module
tree and its weight names are unchanged, so ``save_pretrained`` writes a plain HF folder whose config
carries ``longapps_attention_window``; ``apply_window_attention`` re-arms a model loaded from it.
Attention-probability dropout is not applied on this path (the other dropouts are).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from ..attention import Full, WindowGlobal, attention

ATTN_IMPL = "longapps_window"
_registered = False


def _window_global_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None,
                             dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers attention-interface function: (B, H, N, D) in, (B, N, H, D) out, no weights."""
    half = int(getattr(module.config, "longapps_attention_window", 512)) // 2
    kpm = None
    if attention_mask is not None:
        kpm = attention_mask.bool() if attention_mask.dim() == 2 else None
        if kpm is not None and bool(kpm.all()):
            kpm = None
    if query.shape[2] - 1 <= half:  # the window covers every pair: plain (SDPA) attention is the same function
        o = attention(query, key, value, Full(), key_padding_mask=kpm, scale=scaling, backend="sdpa")
    else:
        o = attention(query, key, value, WindowGlobal(window=max(half, 1), global_idx=[0]), key_padding_mask=kpm,
                      scale=scaling)
    return o.transpose(1, 2).contiguous(), None


def _padding_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                  mask_function: Any = None, attention_mask: Optional[torch.Tensor] = None, **kwargs: Any):
    """Mask interface: hand the 2-D padding mask (True = token) through; never build an N x N mask."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()


def register() -> None:
    """Register the ``longapps_window`` attention and mask implementations with transformers (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_IMPL, _window_global_attention)
    AttentionMaskInterface.register(ATTN_IMPL, _padding_mask)
    _registered = True


def _position_offset(config: Any) -> int:
    """Rows reserved before position 0 (RoBERTa family: padding_idx + 1 = 2; BERT: 0)."""
    return int(config.pad_token_id) + 1 if config.model_type in ("roberta", "xlm-roberta", "camembert", "longformer",
                                                                 "xlm_roberta") else 0


def max_tokens(config: Any) -> int:
    """How many tokens (special tokens included) the model's position table covers."""
    return int(config.max_position_embeddings) - _position_offset(config)


def _embeddings(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)
    emb = getattr(base, "embeddings", None)
    if emb is None or not hasattr(emb, "position_embeddings"):
        raise ValueError(f"{type(model).__name__} has no learned position embeddings to extend")
    return emb


def extend_positions(model: nn.Module, length: int) -> None:
    """Copy the learned position embeddings out to ``length`` tokens (in place; no-op when long enough)."""
    config = model.config
    off = _position_offset(config)
    old = _embeddings(model).position_embeddings
    n_old = old.weight.shape[0] - off
    if length <= n_old:
        return
    emb = _embeddings(model)
    new = nn.Embedding(length + off, old.weight.shape[1], padding_idx=old.padding_idx)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight[:off] = old.weight[:off]
        for k in range(0, length, n_old):
            m = min(n_old, length - k)
            new.weight[off + k: off + k + m] = old.weight[off: off + m]
    emb.position_embeddings = new
    for name in ("position_ids", "token_type_ids"):  # registered buffers sized to the old length
        buf = getattr(emb, name, None)
        if isinstance(buf, torch.Tensor) and buf.dim() == 2:
            if name == "position_ids":
                fresh = torch.arange(length + off, device=buf.device, dtype=buf.dtype)[None]
            else:
                fresh = torch.zeros(1, length + off, device=buf.device, dtype=buf.dtype)
            emb.register_buffer(name, fresh, persistent=False)
    config.max_position_embeddings = length + off


def apply_window_attention(model: nn.Module, attention_window: int) -> nn.Module:
    """Switch every self-attention layer to window (``attention_window`` wide, |i-j| <= w/2) + global [CLS]."""
    if attention_window < 2:
        raise ValueError(f"attention_window must be >= 2, got {attention_window}")
    register()
    model.config.longapps_attention_window = int(attention_window)
    model.set_attn_implementation(ATTN_IMPL)
    return model


def make_long(model: nn.Module, max_length: int, attention_window: int = 512) -> nn.Module:
    """Positions copied out to ``max_length`` and window + global attention: any BERT reads ``max_length``
    tokens. Returns the same model (changed in place)."""
    extend_positions(model, max_length)
    return apply_window_attention(model, attention_window)


def is_long(config: Any) -> bool:
    """Whether a (saved) config was made long by ``make_long``."""
    return getattr(config, "longapps_attention_window", None) is not None


__all__ = ["make_long", "extend_positions", "apply_window_attention", "is_long", "max_tokens", "register",
           "ATTN_IMPL"]
