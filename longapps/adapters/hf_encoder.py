"""A sentence-transformers folder run with plain transformers: same vectors, a third of the start-up time.

`import sentence_transformers` alone costs ~5 s on a 2-core box (it pulls in datasets, the trainer, every
backend), more than the encoder's forward pass for a question. Most sentence encoders, the packaged
all-MiniLM-L6-v2 included, are just Transformer -> mean (or CLS) Pooling -> Normalize; `simple_layout` says
whether a folder is one of those, and `TransformersEncoder` runs it with `AutoModel` + `AutoTokenizer`.
Anything else (Dense layers, prompts, other pooling) stays on sentence-transformers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
_BERT_CONFIG_KEYS = {"max_seq_length", "do_lower_case"}


@dataclass(frozen=True)
class SimpleLayout:
    """What a Transformer -> Pooling -> (Normalize) sentence-transformers folder needs to be run."""

    pooling: str               # "mean" or "cls"
    max_seq_length: Optional[int]
    lower_case: bool


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def simple_layout(folder: str | Path) -> Optional[SimpleLayout]:
    """The layout of a local sentence-transformers folder that plain transformers can run, else None."""
    root = Path(folder)
    try:
        modules = _read_json(root / "modules.json")
        types = [m["type"] for m in modules]
        if types not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
            return None
        if modules[0].get("path", "") not in ("", "."):
            return None
        pool = _read_json(root / modules[1]["path"] / "config.json")
        modes = {k for k, v in pool.items() if k.startswith("pooling_mode") and v}
        if modes == {"pooling_mode_mean_tokens"}:
            pooling = "mean"
        elif modes == {"pooling_mode_cls_token"}:
            pooling = "cls"
        else:
            return None
        if pool.get("include_prompt") is False:
            return None
        bert_cfg = root / "sentence_bert_config.json"
        cfg = _read_json(bert_cfg) if bert_cfg.exists() else {}
        if set(cfg) - _BERT_CONFIG_KEYS:
            return None
        st_cfg = root / "config_sentence_transformers.json"
        if st_cfg.exists():
            extra = _read_json(st_cfg)
            if extra.get("prompts") or extra.get("default_prompt_name"):
                return None
        return SimpleLayout(pooling, cfg.get("max_seq_length"), bool(cfg.get("do_lower_case", False)))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


class TransformersModule:
    """The encoder as callables: tokenizer + AutoModel + pooling, float32, on one device."""

    def __init__(self, folder: str, layout: SimpleLayout, device: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.layout = layout
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, dtype=torch.float32).to(device).eval()
        limit = getattr(self.model.config, "max_position_embeddings", None) or 512
        self.max_seq_length = int(min(layout.max_seq_length or self.tokenizer.model_max_length, limit))

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Pooled, unit-length float32 vectors of `texts` (one padded batch)."""
        import torch

        texts = [str(t).strip() for t in texts]
        if self.layout.lower_case:
            texts = [t.lower() for t in texts]
        batch = self.tokenizer(texts, padding=True, truncation="longest_first", max_length=self.max_seq_length,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            if self.layout.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().numpy()
