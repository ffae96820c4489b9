"""Mamba-1 encoder with HF ``MambaModel`` weight names, running on ``longapps.kernels`` (Triton on CUDA).

Same function as ``transformers.MambaModel`` (last hidden state) but the short convolution and the
selective scan are our kernels (Triton on CUDA: fused SiLU, fused softplus/D/z gating, the sequence chunked
so the cost is linear in length), the chunked PyTorch scan on CPU (HF's fallback loops over tokens).

    model = MambaEncoder.from_pretrained("state-spaces/mamba-130m-hf")   # or a local folder
    hidden = model(input_ids)                                             # (batch, length, hidden)
    graph = model.cuda_graph(input_ids)                                   # CUDA-graph replay, one shape

Parameter names are HF's (``embeddings.weight``, ``layers.{i}.norm.weight``, ``layers.{i}.mixer.{in_proj,
conv1d, x_proj, dt_proj, out_proj, A_log, D}``, ``norm_f.weight``), so ``state_dict`` round-trips with HF;
``backbone.`` prefixes (``MambaForCausalLM`` checkpoints) and the original ``embedding.`` name are accepted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..kernels.causal_conv1d import causal_conv1d
from ..kernels.lowrank_linear import lowrank_linear_auto
from ..kernels.rmsnorm import add_rmsnorm, embed_rmsnorm
from ..kernels.selective_scan import selective_scan
from ..resources import LongappsError, ModelNotFoundError, load_offline_first

MODEL_TYPE = "mamba"


class RMSNorm(nn.Module):
    """HF's MambaRMSNorm (fp32 statistics)."""

    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class MambaMixer(nn.Module):
    """in_proj -> causal conv + SiLU -> x_proj (dt, B, C) -> selective scan (D skip, z gate) -> out_proj."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        d, h = config.intermediate_size, config.hidden_size
        self.d_inner, self.n = d, config.state_size
        self.rank = int(config.time_step_rank)
        self.in_proj = nn.Linear(h, 2 * d, bias=config.use_bias)
        self.conv1d = nn.Conv1d(d, d, config.conv_kernel, groups=d, padding=config.conv_kernel - 1,
                                bias=config.use_conv_bias)
        self.x_proj = nn.Linear(d, self.rank + 2 * self.n, bias=False)
        self.dt_proj = nn.Linear(self.rank, d, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.n + 1, dtype=torch.float32)).repeat(d, 1))
        self.D = nn.Parameter(torch.ones(d))
        self.out_proj = nn.Linear(d, h, bias=config.use_bias)
        if config.hidden_act != "silu":
            raise LongappsError(f"unsupported Mamba activation '{config.hidden_act}' (silu only)")

    def forward(self, h: torch.Tensor, mask: Optional[torch.Tensor] = None, backend: str = "auto") -> torch.Tensor:
        if mask is not None:
            h = h * mask[..., None].to(h.dtype)
        xz = self.in_proj(h)
        x, z = xz[..., :self.d_inner], xz[..., self.d_inner:]
        x = causal_conv1d(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu",
                          backend="torch" if backend == "reference" else backend)
        if mask is not None:
            x = x * mask[..., None].to(x.dtype)
        xdbl = self.x_proj(x)
        # dt_proj without its bias (the scan adds it); "auto": the low-rank Triton kernel for inference on CUDA
        xr = xdbl[..., :self.rank]
        dt = lowrank_linear_auto(xr, self.dt_proj.weight) if backend == "auto" else F.linear(xr, self.dt_proj.weight)
        B, C = xdbl[..., self.rank:self.rank + self.n], xdbl[..., self.rank + self.n:]
        # D and the dt bias go in as they are (the kernels read them in fp32)
        y = selective_scan(x, dt, self.A(), B, C, self.D, z, self.dt_proj.bias, True, backend=backend)
        return self.out_proj(y.to(h.dtype))

    def A(self) -> torch.Tensor:
        """-exp(A_log) in fp32; cached while A_log is unchanged and no gradient is wanted (so an inference
        forward, and a captured CUDA graph, spends no kernel on it)."""
        if torch.is_grad_enabled() and self.A_log.requires_grad:
            return -torch.exp(self.A_log.float())
        key = (self.A_log._version, self.A_log.data_ptr(), self.A_log.dtype)
        if getattr(self, "_a_key", None) != key:
            self._a_cache = -torch.exp(self.A_log.detach().float())
            self._a_key = key
        return self._a_cache


class MambaBlock(nn.Module):
    """HF's block, with the residual add of the previous block fused into this block's RMSNorm:
    (stream, previous mixer output) -> (stream + output, this mixer's output)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mixer = MambaMixer(config)

    def forward(self, r: torch.Tensor, y: Optional[torch.Tensor], mask: Optional[torch.Tensor],
                backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        h, r = add_rmsnorm(r, y, self.norm.weight, self.norm.eps, self.norm.weight.dtype)
        return r, self.mixer(h, mask, backend)


class MambaEncoder(nn.Module):
    """Mamba backbone (HF ``MambaModel``) on our kernels; ``forward`` returns the last hidden state."""

    def __init__(self, config: Any, backend: str = "auto") -> None:
        super().__init__()
        self.config = config
        self.backend = backend
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([MambaBlock(config) for _ in range(config.num_hidden_layers)])
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.gradient_checkpointing = False

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, backend: str = "auto", seed: Optional[int] = None) -> "MambaEncoder":
        """Random weights with HF's initialisation (built through ``transformers.MambaModel``)."""
        from transformers import MambaModel

        if seed is not None:
            torch.manual_seed(seed)
        return cls.from_hf(MambaModel(config), backend=backend)

    @classmethod
    def from_hf(cls, hf_model: nn.Module, backend: str = "auto") -> "MambaEncoder":
        """Copy the weights of an HF ``MambaModel`` / ``MambaForCausalLM``."""
        hf_model = getattr(hf_model, "backbone", hf_model)
        model = cls(hf_model.config, backend=backend)
        ref = next(hf_model.parameters())
        model.to(device=ref.device, dtype=ref.dtype)
        model.load_hf_state_dict(hf_model.state_dict())
        return model

    def load_hf_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load HF names (``backbone.`` prefix and the original ``embedding.`` accepted); strict."""
        fixed = {}
        for k, v in state.items():
            if k.startswith("lm_head."):
                continue
            k = k[len("backbone."):] if k.startswith("backbone.") else k
            k = k.replace("embedding.", "embeddings.") if k.startswith("embedding.") else k
            fixed[k] = v
        try:
            missing, unexpected = self.load_state_dict(fixed, strict=False)
        except RuntimeError as err:  # shape mismatches
            detail = next((ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln), str(err)[:200])
            raise LongappsError(f"checkpoint does not match the Mamba config: {detail[:200]}") from err
        if missing or unexpected:
            raise LongappsError(f"checkpoint does not match the Mamba config: missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]}")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, backend: str = "auto",
                        dtype: Optional[torch.dtype] = None) -> "MambaEncoder":
        """From a local folder or an HF id (local cache first); a checkpoint that is not Mamba is one clear error."""
        from transformers import MambaModel

        path = os.path.expanduser(str(name_or_path))
        if os.path.isdir(path):
            check_mamba_folder(path)
            try:
                hf = MambaModel.from_pretrained(path, dtype=dtype) if dtype else MambaModel.from_pretrained(path)
            except Exception as err:  # noqa: BLE001
                first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
                raise ModelNotFoundError(f"cannot load Mamba weights from '{name_or_path}': {first}") from err
        else:
            if path.startswith(("/", "./", "../")):
                raise ModelNotFoundError(f"model folder not found: {name_or_path}")
            hf = load_offline_first(path, lambda local: MambaModel.from_pretrained(path, local_files_only=local))
            if getattr(hf.config, "model_type", "") != MODEL_TYPE:
                raise LongappsError(f"'{name_or_path}' is not a Mamba checkpoint (model_type "
                                    f"'{hf.config.model_type}')")
        return cls.from_hf(hf, backend=backend)

    def to_hf(self) -> nn.Module:
        """An HF ``MambaModel`` with these weights (for ``save_pretrained`` or comparison)."""
        from transformers import MambaModel

        hf = MambaModel(self.config).to(next(self.parameters()).dtype)
        hf.load_state_dict(self.state_dict())
        return hf

    def save_pretrained(self, folder: str | os.PathLike, max_shard_size: str = "15MB") -> None:
        """HF layout (config.json + sharded safetensors), loadable by ``MambaModel.from_pretrained`` too."""
        self.to_hf().save_pretrained(str(folder), max_shard_size=max_shard_size)

    # -- running --------------------------------------------------------------------------------------
    def gradient_checkpointing_enable(self) -> None:
        self.gradient_checkpointing = True

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(batch, length) ids -> (batch, length, hidden). The model is causal: right padding never changes
        the real tokens' states, so the mask is only needed to match HF on padded inputs."""
        if input_ids.device.type == "cpu":  # CPU inference: one fused path on the C kernels (models/mamba_cpu.py)
            from . import mamba_cpu

            if mamba_cpu.usable(self, input_ids):
                return mamba_cpu.fused_forward(self, input_ids, attention_mask)
        layers = list(self.layers)
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        if layers and not checkpointing:  # layer 0's norm gathers the stream from the table itself (one kernel)
            first = layers.pop(0)
            h, r = embed_rmsnorm(input_ids, self.embeddings.weight, first.norm.weight, first.norm.eps,
                                 first.norm.weight.dtype,
                                 torch.float32 if self.config.residual_in_fp32 else self.embeddings.weight.dtype)
            y = first.mixer(h, attention_mask, self.backend)
        else:
            r = self.embeddings(input_ids)
            if self.config.residual_in_fp32:
                r = r.float()
            y = None
        for layer in layers:
            if checkpointing:
                r, y = torch.utils.checkpoint.checkpoint(layer, r, y, attention_mask, self.backend, use_reentrant=False)
            else:
                r, y = layer(r, y, attention_mask, self.backend)
        if y is None:
            return self.norm_f(r)
        h, _ = add_rmsnorm(r, y, self.norm_f.weight, self.norm_f.eps, torch.promote_types(r.dtype, y.dtype),
                           keep_sum=False)
        return h

    def cuda_graph(self, input_ids: torch.Tensor, warmup: int = 3) -> "MambaCudaGraph":
        """Capture the forward for this input shape (inference); see ``MambaCudaGraph``."""
        return MambaCudaGraph(self, input_ids, warmup=warmup)


class MambaCudaGraph:
    """CUDA-graph replay of ``MambaEncoder`` for one input shape: removes the per-kernel launch cost (the
    eager model is host-bound at batch 1). The returned tensor is the graph's static output (overwritten by
    the next call; clone it to keep it)."""

    def __init__(self, model: MambaEncoder, input_ids: torch.Tensor, warmup: int = 3) -> None:
        if not input_ids.is_cuda:
            raise ValueError("input_ids must be a CUDA tensor for CUDA-graph capture")
        self.model = model
        self.ids = input_ids.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(s):
            for _ in range(warmup):
                model(self.ids)
        torch.cuda.current_stream().wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        # captured on the warm-up stream: buffers kept per stream (the scan's fold tickets) are ready for capture
        with torch.no_grad(), torch.cuda.graph(self.graph, stream=s):
            self.out = model(self.ids)

    def replay(self) -> torch.Tensor:
        self.graph.replay()
        return self.out

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.shape != self.ids.shape:
            raise ValueError(f"input_ids shape {tuple(input_ids.shape)} differs from the captured {tuple(self.ids.shape)}")
        self.ids.copy_(input_ids)
        return self.replay()


def check_mamba_folder(path: str | os.PathLike) -> None:
    """One clear error when a folder is not a Mamba checkpoint (missing/odd config.json, other model type)."""
    cfg = Path(path) / "config.json"
    if not cfg.exists():
        raise ModelNotFoundError(f"'{path}' has no config.json: not a model folder")
    try:
        model_type = json.loads(cfg.read_text()).get("model_type")
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"'{path}/config.json' is not valid JSON") from err
    if model_type != MODEL_TYPE:
        raise LongappsError(f"'{path}' is not a Mamba checkpoint (model_type '{model_type}')")


def mamba_config(**overrides: Any) -> Any:
    """An HF ``MambaConfig``; `mamba_config(preset="130m")` is state-spaces/mamba-130m-hf's shape."""
    from transformers import MambaConfig

    preset = overrides.pop("preset", None)
    base: dict[str, Any] = {}
    if preset == "130m":
        base = dict(hidden_size=768, num_hidden_layers=24, state_size=16, expand=2, conv_kernel=4,
                    vocab_size=50280, residual_in_fp32=True)
    elif preset is not None:
        raise ValueError(f"preset: unknown '{preset}' (130m)")
    base.update(overrides)
    return MambaConfig(**base)


__all__ = ["MambaEncoder", "MambaCudaGraph", "check_mamba_folder", "mamba_config"]
