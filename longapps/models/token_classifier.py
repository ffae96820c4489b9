"""Token-classification models for long inputs, loaded and saved as plain Hugging Face folders.

``TokenClassifier.create(base, labels, max_length)`` builds a tagger from any HF id or local folder:
- Longformer checkpoints (``model_type == "longformer"``, e.g. ``yikuan8/Clinical-Longformer``) run on
  ``FastLongformerForTokenClassification`` (our window+global kernels; [CLS] global);
- BERT/RoBERTa-family encoders are **made long** (``long_encoder.make_long``: positions copied out to
  ``max_length``, attention switched to window + global on our backend).

``save(dir)`` writes config.json (with ``id2label``/``label2id``), model.safetensors, the tokenizer files
and ``longapps_ner.json`` (label list, max length, window, base model) into a temp folder, then renames
it into place (atomic). ``TokenClassifier.load(dir)`` re-arms the long attention and checks the folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn

from ..resources import LongappsError, ModelNotFoundError, load_offline_first, resolve_model
from . import long_encoder

META_FILE = "longapps_ner.json"


def _load(spec: str, fn: Any) -> Any:
    """``fn(spec, local_files_only=...)`` for a folder (one-line error when broken) or an HF id (offline first)."""
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        try:
            return fn(path, local_files_only=True)
        except Exception as err:  # noqa: BLE001
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise ModelNotFoundError(f"cannot load a model from '{spec}': {first}") from err
    return load_offline_first(spec, lambda local: fn(spec, local_files_only=local))


class TokenClassifier(nn.Module):
    """One interface over long-BERT and FastLongformer taggers: ``forward(ids, mask) -> logits (B, N, L)``."""

    def __init__(self, model: nn.Module, tokenizer: Any, labels: Sequence[str], max_length: int,
                 hf_model: Optional[nn.Module] = None, base: str = "") -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = int(max_length)
        self.base = base
        self._hf = hf_model  # the HF Longformer whose weights FastLongformer copied (used by save)
        self.is_longformer = hf_model is not None

    # ---------------------------------------------------------------------------------------- building
    @property
    def config(self) -> Any:
        return self.model.config

    @classmethod
    def create(cls, base: str | None, labels: Sequence[str], max_length: int = 4096,
               attention_window: int = 512) -> "TokenClassifier":
        """A fresh tagger (new classifier head) on top of ``base`` (HF id / folder; None = packaged MiniLM)."""
        from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

        spec = resolve_model(base)
        id2label = dict(enumerate(labels))
        label2id = {k: i for i, k in id2label.items()}
        config = _load(spec, lambda p, **kw: AutoConfig.from_pretrained(p, **kw))
        tok = _load(spec, lambda p, **kw: AutoTokenizer.from_pretrained(p, **kw))
        if not getattr(tok, "is_fast", False):
            raise LongappsError(f"'{spec}' has no fast tokenizer (character offsets need one)")
        kw = dict(num_labels=len(labels), id2label=id2label, label2id=label2id)
        if config.model_type == "longformer":
            from transformers import LongformerForTokenClassification
            hf = _load(spec, lambda p, **k: LongformerForTokenClassification.from_pretrained(p, **kw, **k))
            return cls._wrap_longformer(hf, tok, labels, max_length, spec)
        model = _load(spec, lambda p, **k: AutoModelForTokenClassification.from_pretrained(p, **kw, **k))
        long_encoder.make_long(model, max_length, attention_window)
        return cls(model, tok, labels, max_length, base=spec)

    @classmethod
    def _wrap_longformer(cls, hf: nn.Module, tok: Any, labels: Sequence[str], max_length: int,
                         base: str) -> "TokenClassifier":
        from .longformer import FastLongformerForTokenClassification

        n_pos = long_encoder.max_tokens(hf.config)
        if max_length > n_pos:
            raise LongappsError(f"--max-length {max_length} is over this Longformer's {n_pos} positions")
        return cls(FastLongformerForTokenClassification.from_hf(hf), tok, labels, max_length, hf_model=hf, base=base)

    @classmethod
    def load(cls, folder: str | os.PathLike, fast: bool = False) -> "TokenClassifier":
        """A tagger saved by ``save`` (or any HF token-classification folder with a fast tokenizer).

        ``fast=True`` (inference): a made-long BERT folder loads without transformers (``fast_bert``: the
        tokenizers library + safetensors into a plain-torch BERT, same outputs); other folders as usual."""
        p = Path(folder).expanduser()
        if not p.is_dir():
            raise ModelNotFoundError(f"model folder '{folder}' does not exist (train one with `longapps ner train`)")
        if not (p / "config.json").exists():
            raise ModelNotFoundError(f"'{folder}' is not a model folder (no config.json)")
        spec = str(p)
        meta = {}
        if (p / META_FILE).exists():
            try:
                meta = json.loads((p / META_FILE).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ModelNotFoundError(f"'{folder}': {META_FILE} is corrupt ({err})") from None
        if fast:
            from . import fast_bert

            if fast_bert.supported(p):
                try:
                    model = fast_bert.FastBertTagger.from_folder(p)
                    tok = fast_bert.FastTokenizer(p)
                except Exception as err:  # noqa: BLE001
                    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
                    raise ModelNotFoundError(f"cannot load a model from '{folder}': {first}") from err
                config = model.config
                labels = meta.get("labels") or [config.id2label[i] for i in range(config.num_labels)]
                max_length = int(meta.get("max_length") or long_encoder.max_tokens(config))
                return cls(model, tok, labels, max_length, base=meta.get("base", spec))
        from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

        config = _load(spec, lambda q, **kw: AutoConfig.from_pretrained(q, **kw))
        labels = meta.get("labels") or [config.id2label[i] for i in range(config.num_labels)]
        tok = _load(spec, lambda q, **kw: AutoTokenizer.from_pretrained(q, **kw))
        max_length = int(meta.get("max_length") or long_encoder.max_tokens(config))
        if config.model_type == "longformer":
            from transformers import LongformerForTokenClassification
            hf = _load(spec, lambda q, **kw: LongformerForTokenClassification.from_pretrained(q, **kw))
            return cls._wrap_longformer(hf.eval(), tok, labels, max_length, meta.get("base", spec))
        model = _load(spec, lambda q, **kw: AutoModelForTokenClassification.from_pretrained(q, **kw))
        if long_encoder.is_long(config):
            long_encoder.apply_window_attention(model, int(config.longapps_attention_window))
        return cls(model.eval(), tok, labels, max_length, base=meta.get("base", spec))

    # ---------------------------------------------------------------------------------------- running
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, N, num_labels); the first token ([CLS]) attends globally."""
        if self.is_longformer:
            g = torch.zeros_like(attention_mask)
            g[:, 0] = 1
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=g)
            return out.logits if hasattr(out, "logits") else out[1]
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def ensure_length(self, max_length: int) -> None:
        """Make room for windows of ``max_length`` tokens: a made-long encoder gets its positions copied out
        further (as ``make_long`` did); a Longformer cannot go past its position table."""
        if max_length <= long_encoder.max_tokens(self.config):
            return
        if self.is_longformer:
            raise LongappsError(f"--max-length {max_length} is over this Longformer's "
                                f"{long_encoder.max_tokens(self.config)} positions")
        if not hasattr(self.model, "set_attn_implementation"):  # fast_bert: window attention built in
            long_encoder.extend_positions(self.model, max_length)
            return
        long_encoder.make_long(self.model, max_length,
                               int(getattr(self.config, "longapps_attention_window", None) or 512))

    def gradient_checkpointing_enable(self) -> None:
        """Recompute activations in backward (training on GPU)."""
        target = self.model.longformer if self.is_longformer else self.model
        if hasattr(target, "gradient_checkpointing_enable"):
            target.gradient_checkpointing_enable()

    # ---------------------------------------------------------------------------------------- saving
    def _hf_for_saving(self) -> nn.Module:
        if not self.is_longformer:
            return self.model
        enc = self.model.longformer
        if not hasattr(enc, "hf_state_dict"):
            raise LongappsError("this FastLongformer version cannot export HF weights (no hf_state_dict)")
        sd = enc.hf_state_dict("longformer.")
        sd.update({f"classifier.{k}": v.detach() for k, v in self.model.classifier.state_dict().items()})
        self._hf.load_state_dict(sd, strict=False)
        return self._hf

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write an HF-style folder atomically (``training.save_atomic``: temp folder, then rename)."""
        from ..training import save_atomic

        def write(tmp: Path) -> None:
            self._hf_for_saving().save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            meta = {"labels": self.labels, "max_length": self.max_length, "base": self.base,
                    "architecture": "longformer" if self.is_longformer else "long-encoder",
                    "attention_window": getattr(self.config, "longapps_attention_window", None)}
            meta.update(extra or {})
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")

        return save_atomic(folder, write)


__all__ = ["TokenClassifier", "META_FILE"]
