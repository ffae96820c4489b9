"""Encode stage for the Mamba retriever: whole documents (no chunking: the cost is linear in length) ->
one unit-length vector each, pooled at an appended EOS token (``eos``) or averaged over tokens (``mean``).

A retriever folder is an HF Mamba checkpoint (config.json + safetensors) + its tokenizer + ``retriever.json``
(pooling, max_tokens); ``MambaEmbedder`` follows the Encoder protocol of ``adapters.encode`` so the
content-hash embedding cache and the index store work unchanged.
"""
from __future__ import annotations

import functools

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from longapps.adapters.encode import pick_device
from longapps.resources import LongappsError

POOLINGS = ("eos", "mean")
RETRIEVER_FILE = "retriever.json"
DEFAULT_MAX_TOKENS = 8192


def pool_hidden(hidden: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """(b, L, h) hidden states of right-padded rows with `lengths` real tokens -> (b, h) L2-normalised.
    eos: the state at the last real token (the appended EOS); mean: the average over real tokens."""
    if pooling == "eos":
        vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), (lengths - 1).clamp(min=0)]
    elif pooling == "mean":
        mask = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
        vec = (hidden * mask[..., None]).sum(1) / lengths.clamp(min=1)[:, None].to(hidden.dtype)
    else:
        raise LongappsError(f"unknown pooling '{pooling}' (choose from {', '.join(POOLINGS)})")
    return torch.nn.functional.normalize(vec.float(), dim=-1)


def eos_id(tokenizer: Any) -> int:
    """The token appended to every text: the tokenizer's EOS, else its SEP (BERT-style vocabularies)."""
    for attr in ("eos_token_id", "sep_token_id"):
        tid = getattr(tokenizer, attr, None)
        if tid is not None:
            return int(tid)
    raise LongappsError("the tokenizer has neither an EOS nor a SEP token to pool at")


def tokenize(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids of each text, cut to max_tokens - 1, plus the EOS id."""
    eos = eos_id(tokenizer)
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"] if texts else []
    return [x[:max_tokens - 1] + [eos] for x in ids]


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows -> (ids (b, L), lengths (b,)). Right padding never changes a causal model's real
    tokens, so no mask is needed."""
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return ids.to(device), torch.tensor([len(r) for r in rows], device=device)


def embed_ids(model: torch.nn.Module, ids: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Model forward + pooling (keeps the graph when grad is enabled: used by training too)."""
    return pool_hidden(model(ids), lengths, pooling)


def read_retriever_meta(folder: str | os.PathLike) -> dict[str, Any]:
    p = Path(folder) / RETRIEVER_FILE
    if not p.exists():
        return {}
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise LongappsError(f"{p} is not valid JSON") from err
    return meta if isinstance(meta, dict) else {}


def _folder_key(folder: Path) -> str:
    """Changes whenever the weights do: config, tokenizer meta and every weight file's size and mtime."""
    h = hashlib.sha1(folder.resolve().as_posix().encode())
    for p in sorted(folder.iterdir()):
        if p.suffix in (".json", ".safetensors", ".bin"):
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


class MambaEmbedder:
    """A Mamba retriever behind the Encoder protocol (name, dim, max_tokens, encode, count_tokens)."""

    def __init__(self, model: str | os.PathLike, *, pooling: Optional[str] = None, max_tokens: Optional[int] = None,
                 device: Optional[str] = None, tokens_per_batch: Optional[int] = None) -> None:
        from transformers import AutoTokenizer

        from longapps.models.mamba import MambaEncoder, check_mamba_folder

        folder = Path(os.path.expanduser(str(model)))
        if not folder.is_dir():
            raise LongappsError(f"Mamba retriever folder not found: {model}")
        check_mamba_folder(folder)
        meta = read_retriever_meta(folder)
        self.pooling = pooling or meta.get("pooling", "eos")
        if self.pooling not in POOLINGS:
            raise LongappsError(f"unknown pooling '{self.pooling}' (choose from {', '.join(POOLINGS)})")
        self.max_tokens = int(max_tokens or meta.get("max_tokens", DEFAULT_MAX_TOKENS))
        self.device = pick_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as err:  # noqa: BLE001
            raise LongappsError(f"no usable tokenizer in {folder}: {str(err).splitlines()[0][:160]}") from err
        self.model = MambaEncoder.from_pretrained(folder).eval().to(self.device)
        self.model.to(torch.bfloat16 if self.device != "cpu" else torch.float32)
        self.dim = int(self.model.config.hidden_size)
        self.tokens_per_batch = tokens_per_batch or (65536 if self.device != "cpu" else 8192)
        self.name = f"mamba-{folder.name}-{_folder_key(folder)}-{self.pooling}-{self.max_tokens}"
        self._recipe = (str(folder), self.pooling, self.max_tokens, tokens_per_batch)
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)

    def ray_factory(self) -> Callable[[], "MambaEmbedder"]:
        """How a Ray actor builds its own copy (from the folder, on the actor's device) instead of being sent
        the weights: see ``longapps.distributed.ray_encode.encoder_factory``."""
        folder, pooling, max_tokens, tokens_per_batch = self._recipe
        return functools.partial(MambaEmbedder, folder, pooling=pooling, max_tokens=max_tokens,
                                 tokens_per_batch=tokens_per_batch)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(x) for x in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        rows = tokenize(self.tokenizer, texts, self.max_tokens)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        s = 0
        while s < len(order):  # longest first; a batch holds about tokens_per_batch tokens (padded)
            n = max(1, self.tokens_per_batch // len(rows[order[s]]))
            idx = order[s:s + n]
            ids, lengths = pad_batch([rows[i] for i in idx], self.pad_id, self.device)
            out[idx] = embed_ids(self.model, ids, lengths, self.pooling).cpu().numpy()
            if progress:
                progress(len(idx))
            s += n
        return out


__all__ = ["MambaEmbedder", "pool_hidden", "tokenize", "pad_batch", "embed_ids", "eos_id", "POOLINGS",
           "RETRIEVER_FILE", "read_retriever_meta", "DEFAULT_MAX_TOKENS"]
