"""Inference-only loader for made-long BERT taggers saved by ``longapps ner train`` (CPU predict path).

``NER.load`` on CPU reads such a folder without ``transformers``: the tokenizer straight from
``tokenizer.json`` with the ``tokenizers`` library (the same Rust tokenizer ``AutoTokenizer`` wraps: same
ids, character offsets and word ids) and the weights from ``model.safetensors`` into ``FastBertTagger``,
a plain-torch ``BertForTokenClassification`` (eval mode: no dropout) whose self-attention is the same
``long_encoder._window_global_attention`` call the HF model runs. Same module names as the HF model, so
the state dict loads strictly and ``save_pretrained`` writes a folder the HF path reads back.

Why: importing transformers' modelling stack (torch._dynamo, accelerate, scipy) and building the model
through ``AutoModel`` costs ~3 s of the ~11 s a 16k-token note takes on a 2-core box; this path needs
torch, ``tokenizers`` and ``safetensors`` only. ``supported(folder)`` says whether a folder qualifies
(BERT, absolute positions, made long, fast tokenizer file, safetensors weights); others go through HF.

``use_bf16()`` runs the encoder's linear layers (q/k/v fused into one GEMM) and GELU in bfloat16 with
weights cast once; embeddings, LayerNorms, the residual stream, attention and the classifier stay float32.
On a CPU with AVX512-BF16 the GEMMs are ~3x faster; token labels agreed with fp32 on 99.96 % of a 16k-token
note for a trained NCBI model (RESULTS.md), so ``NER.load(precision="auto")`` turns it on where
``cpu_has_bf16()``.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_ACTS = {"gelu": F.gelu, "relu": F.relu}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def supported(folder: str | Path) -> bool:
    """Whether ``folder`` can be loaded by this module (else: the transformers path)."""
    p = Path(folder)
    cfg = _read_json(p / "config.json")
    return (cfg.get("model_type") == "bert" and cfg.get("longapps_attention_window") is not None
            and cfg.get("position_embedding_type", "absolute") == "absolute"
            and cfg.get("hidden_act", "gelu") in _ACTS and not cfg.get("is_decoder")
            and (p / "tokenizer.json").is_file() and (p / "model.safetensors").is_file())


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); without it bf16 GEMMs are emulated
    and slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


class Config:
    """The config.json values as attributes (what ``long_encoder`` and the tagger read); ``to_dict`` for saving."""

    def __init__(self, values: dict) -> None:
        self.__dict__.update(values)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def num_labels(self) -> int:
        return len(self.__dict__.get("id2label") or {}) or 2


class _Encoding:
    """What ``adapters.token_windows.encode_segment`` reads from a transformers ``BatchEncoding``."""

    def __init__(self, enc: Any) -> None:
        self._enc = enc
        self._data = {"input_ids": enc.ids, "offset_mapping": enc.offsets, "attention_mask": enc.attention_mask}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def word_ids(self) -> list:
        return self._enc.word_ids


class FastTokenizer:
    """``tokenizers.Tokenizer`` from ``tokenizer.json`` with the bits of the transformers fast-tokenizer API
    the NER pipeline uses (``__call__`` without special tokens, offsets, ``word_ids``, special token ids)."""

    is_fast = True

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self._tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self._tok.no_truncation()  # transformers does not truncate unless asked
        self._tok.no_padding()
        cfg = _read_json(self.folder / "tokenizer_config.json")
        special = _read_json(self.folder / "special_tokens_map.json")

        def token_id(name: str, default: str) -> Optional[int]:
            tok = cfg.get(name) or special.get(name) or default
            if isinstance(tok, dict):
                tok = tok.get("content")
            return self._tok.token_to_id(tok) if isinstance(tok, str) else None

        self.cls_token_id = token_id("cls_token", "[CLS]")
        self.sep_token_id = token_id("sep_token", "[SEP]")
        self.pad_token_id = token_id("pad_token", "[PAD]")

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False,
                 **_: Any) -> _Encoding:
        return _Encoding(self._tok.encode(text, add_special_tokens=add_special_tokens))

    def save_pretrained(self, folder: str | Path) -> None:
        for name in TOKENIZER_FILES:
            if (self.folder / name).is_file():
                shutil.copyfile(self.folder / name, Path(folder) / name)


class _Embedding(nn.Embedding):
    def reset_parameters(self) -> None:  # built on "meta", then assigned from the file: no random init
        pass                                # (init on meta tensors would import torch._dynamo)


class _LayerNorm(nn.LayerNorm):
    def reset_parameters(self) -> None:
        pass


class _Embeddings(nn.Module):
    def __init__(self, c: Config, device: Any = None) -> None:
        super().__init__()
        dev = {"device": device}
        self.word_embeddings = _Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id, **dev)
        self.position_embeddings = _Embedding(c.max_position_embeddings, c.hidden_size, **dev)
        self.token_type_embeddings = _Embedding(c.type_vocab_size, c.hidden_size, **dev)
        self.LayerNorm = _LayerNorm(c.hidden_size, eps=c.layer_norm_eps, **dev)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]  # token type 0 everywhere
        x = x + self.position_embeddings.weight[:n]
        return self.LayerNorm(x)


class _Linear(nn.Linear):
    def reset_parameters(self) -> None:
        pass


class _Layer(nn.Module):
    """One BertLayer (the HF module names: attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
    intermediate.dense, output.{dense,LayerNorm})."""

    def __init__(self, c: Config, device: Any = None) -> None:
        super().__init__()
        h, i, dev = c.hidden_size, c.intermediate_size, {"device": device}
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, _Linear(h, h, **dev))
        self.attention.output = nn.Module()
        self.attention.output.dense = _Linear(h, h, **dev)
        self.attention.output.LayerNorm = _LayerNorm(h, eps=c.layer_norm_eps, **dev)
        self.intermediate = nn.Module()
        self.intermediate.dense = _Linear(h, i, **dev)
        self.output = nn.Module()
        self.output.dense = _Linear(i, h, **dev)
        self.output.LayerNorm = _LayerNorm(h, eps=c.layer_norm_eps, **dev)
        self.config = c
        self.heads = c.num_attention_heads
        self.act = _ACTS[c.hidden_act]
        self.low: Optional[dict] = None  # bf16 weight copies (use_bf16), not part of the state dict

    def set_low(self, dtype: Optional[torch.dtype]) -> None:
        a = self.attention.self
        if dtype is None:
            self.low = None
            return
        cast = lambda t: t.detach().to(dtype).contiguous()  # noqa: E731
        self.low = {"qkv_w": cast(torch.cat([a.query.weight, a.key.weight, a.value.weight])),
                    "qkv_b": cast(torch.cat([a.query.bias, a.key.bias, a.value.bias])),
                    "o_w": cast(self.attention.output.dense.weight), "o_b": cast(self.attention.output.dense.bias),
                    "up_w": cast(self.intermediate.dense.weight), "up_b": cast(self.intermediate.dense.bias),
                    "down_w": cast(self.output.dense.weight), "down_b": cast(self.output.dense.bias)}

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        from .long_encoder import _window_global_attention

        B, N, h = x.shape
        a = self.attention.self
        d = h // self.heads
        w = self.low
        if w is None:
            q, k, v = (lin(x).view(B, N, self.heads, d).transpose(1, 2) for lin in (a.query, a.key, a.value))
        else:  # one bf16 GEMM for q, k, v; attention itself runs in float32
            qkv = F.linear(x.to(w["qkv_w"].dtype), w["qkv_w"], w["qkv_b"]).view(B, N, 3, self.heads, d)
            q, k, v = (qkv[:, :, i].transpose(1, 2).float() for i in range(3))
        o, _ = _window_global_attention(self, q, k, v, mask, scaling=1.0 / math.sqrt(d))
        o = o.reshape(B, N, h)
        if w is None:
            x = self.attention.output.LayerNorm(self.attention.output.dense(o) + x)
            y = self.output.dense(self.act(self.intermediate.dense(x)))
        else:  # LayerNorms and the residual stream stay float32
            x = self.attention.output.LayerNorm(F.linear(o.to(w["o_w"].dtype), w["o_w"], w["o_b"]).float() + x)
            y = self.act(F.linear(x.to(w["up_w"].dtype), w["up_w"], w["up_b"]))
            y = F.linear(y, w["down_w"], w["down_b"]).float()
        return self.output.LayerNorm(y + x)


class _Bert(nn.Module):
    def __init__(self, c: Config, device: Any = None) -> None:
        super().__init__()
        self.embeddings = _Embeddings(c, device)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_Layer(c, device) for _ in range(c.num_hidden_layers))


class _Output:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class FastBertTagger(nn.Module):
    """``BertForTokenClassification`` (eval) in plain torch with window + global attention; state-dict
    names as HF's, so ``from_folder`` loads a saved model strictly."""

    def __init__(self, config: Config, device: Any = None) -> None:
        super().__init__()
        self.config = config
        self.bert = _Bert(config, device)
        self.classifier = _Linear(config.hidden_size, config.num_labels, device=device)

    @property
    def base_model(self) -> nn.Module:  # long_encoder.extend_positions finds the embeddings here
        return self.bert

    @classmethod
    def from_folder(cls, folder: str | Path) -> "FastBertTagger":
        from safetensors.torch import load_file

        p = Path(folder)
        config = Config(_read_json(p / "config.json"))
        if config.__dict__.get("id2label"):
            config.id2label = {int(k): v for k, v in config.id2label.items()}
        model = cls(config, device="meta")  # no init: every tensor is assigned from the file
        sd = load_file(str(p / "model.safetensors"))
        sd.pop("bert.embeddings.position_ids", None)
        sd.pop("bert.embeddings.token_type_ids", None)
        model.load_state_dict(sd, strict=True, assign=True)
        return model.eval()

    def use_bf16(self, enabled: bool = True) -> None:
        """Run the encoder's linear layers (and GELU) in bfloat16, weights cast once here; embeddings,
        LayerNorms, the residual stream, attention and the classifier stay float32."""
        for layer in self.bert.encoder.layer:
            layer.set_low(torch.bfloat16 if enabled else None)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> _Output:
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()
        x = self.bert.embeddings(input_ids)
        for layer in self.bert.encoder.layer:
            x = layer(x, mask)
        return _Output(self.classifier(x))

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        """config.json + model.safetensors, as transformers writes them (readable by either path)."""
        from safetensors.torch import save_file

        p = Path(folder)
        p.mkdir(parents=True, exist_ok=True)
        cfg = self.config.to_dict()
        cfg["id2label"] = {str(k): v for k, v in (cfg.get("id2label") or {}).items()}
        (p / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True), encoding="utf-8")
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(p / "model.safetensors"),
                  metadata={"format": "pt"})


__all__ = ["FastBertTagger", "FastTokenizer", "Config", "supported", "cpu_has_bf16"]
