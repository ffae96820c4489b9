"""Longformer/RoBERTa embeddings at inference in one launch: word + position + token-type rows, then LayerNorm.

HF's ``LongformerEmbeddings`` runs about ten kernels per call (position ids from the token ids: compare,
cumsum, multiply, add; three row gathers; two adds; LayerNorm): ~0.13 ms of a 4 x 4,096 Longformer-base graph
replay on an H200 and as many graph nodes. Here the position ids come from one cumulative count of non-pad
tokens (``torch.cumsum``) and one Triton program per ``ROWS`` tokens gathers the three rows, adds them in fp32
and normalizes. Positions follow HF: a pad token gets ``padding_idx``, the others ``padding_idx`` + their rank
among the sequence's non-pad tokens; the token type is 0 (no ``token_type_ids``).

``reference_embed_layernorm`` is the PyTorch version (and the path off CUDA / without Triton).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import HAS_TRITON, KernelLauncher, interpreting, triton_usable

if HAS_TRITON:
    import triton
    import triton.language as tl

    from .layernorm import layernorm_rows

    @triton.jit
    def _embed_ln_kernel(IDS, CNT, WORD, POS, TYPE, W, Bias, Y, M, C, V, pad, eps,
                         ROWS: tl.constexpr, BLOCK: tl.constexpr):
        """``ROWS`` tokens: LN(word[id] + pos[position] + type[0]) * w + b (fp32 math). An id outside
        [0, V) reads no memory (a zero word row; HF's embedding raises on it)."""
        rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        rok = rows < M
        cm = cols < C
        m = rok[:, None] & cm[None, :]
        ids = tl.load(IDS + rows, mask=rok, other=0).to(tl.int64)
        cnt = tl.load(CNT + rows, mask=rok, other=0).to(tl.int64)
        pos = tl.where(ids != pad, cnt, 0) + pad
        wm = m & ((ids >= 0) & (ids < V))[:, None]
        x = tl.load(WORD + ids[:, None] * C + cols[None, :], mask=wm, other=0.0).to(tl.float32)
        x += tl.load(POS + pos[:, None] * C + cols[None, :], mask=m, other=0.0).to(tl.float32)
        x += tl.load(TYPE + cols, mask=cm, other=0.0).to(tl.float32)[None, :]
        y = layernorm_rows(x, m, cols, C, W, Bias, eps)
        tl.store(Y + rows[:, None] * C + cols[None, :], y.to(Y.dtype.element_ty), mask=m)

    _EMBED_LN = KernelLauncher(_embed_ln_kernel)

EMBED_DEFAULTS = {"rows": 4, "num_warps": 4}  # tokens per program (a power of two) and warps


def position_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """HF's positions: ``padding_idx`` for pad tokens, ``padding_idx`` + rank among non-pad tokens otherwise."""
    mask = input_ids.ne(padding_idx)
    return torch.cumsum(mask, dim=1, dtype=torch.int64) * mask + padding_idx


def reference_embed_layernorm(input_ids: torch.Tensor, word: torch.Tensor, pos: torch.Tensor, token_type: torch.Tensor,
                              weight: torch.Tensor, bias: torch.Tensor, eps: float, padding_idx: int) -> torch.Tensor:
    """PyTorch reference: layer_norm(word[ids] + pos[positions] + token_type[0]) in fp32, cast to ``word``'s dtype."""
    x = word[input_ids].float() + pos[position_ids(input_ids, padding_idx)].float() + token_type[0].float()
    return F.layer_norm(x, (x.shape[-1],), weight.float(), bias.float(), eps).to(word.dtype)


def embed_layernorm(input_ids: torch.Tensor, word: torch.Tensor, pos: torch.Tensor, token_type: torch.Tensor,
                    weight: torch.Tensor, bias: torch.Tensor, eps: float, padding_idx: int) -> torch.Tensor:
    """(B, N) token ids -> (B, N, C) normalized embeddings in ``word``'s dtype; one Triton launch after a
    cumulative count on CUDA (no host sync: graph-capturable), else ``reference_embed_layernorm``. Raises
    ``ValueError`` when N tokens could reach past the position table (HF raises an index error there)."""
    B, N = input_ids.shape
    if padding_idx + N >= pos.shape[0]:
        raise ValueError(f"{N} tokens need {padding_idx + N + 1} position embeddings; the model has {pos.shape[0]}")
    if not (HAS_TRITON and triton_usable(input_ids)) or (input_ids.is_cuda and interpreting()):
        return reference_embed_layernorm(input_ids, word, pos, token_type, weight, bias, eps, padding_idx)
    C = word.shape[1]
    tables = [t if t.is_contiguous() else t.contiguous() for t in (word, pos, token_type)]
    ids = input_ids if input_ids.is_contiguous() else input_ids.contiguous()
    cnt = torch.cumsum(ids.ne(padding_idx), dim=1, dtype=torch.int32)
    y = torch.empty(B, N, C, dtype=word.dtype, device=word.device)
    M, rows, warps = B * N, EMBED_DEFAULTS["rows"], EMBED_DEFAULTS["num_warps"]
    ptrs = (ids, cnt, *tables, weight, bias, y)
    key = None if interpreting() else (word.device, tuple(t.dtype for t in ptrs), tuple(t.data_ptr() % 16 == 0
                                       for t in ptrs), M, C, word.shape[0], eps, padding_idx, rows, warps)
    _EMBED_LN(key, (triton.cdiv(M, rows),), (*ptrs, M, C, word.shape[0], padding_idx, eps, rows,
                                             triton.next_power_of_2(C)), {"num_warps": warps})
    return y
