"""Longformer encoder that loads HF Longformer weights and runs its attention on ``longapps.attention``.

Same function as ``transformers.LongformerModel`` (last hidden state; HF's global-attention
semantics: global rows use the ``*_global`` projections, window keys ``|i-j| <= attention_window/2``,
padded queries get a zero attention output) but:

- one fused QKV GEMM (and one for the global projections, only when global tokens exist);
- attention through the window+global Triton kernel on CUDA (one launch for the local rows plus
  a split-K pass for the global rows, no padding to a window multiple, no chunk copies), the
  PyTorch reference elsewhere (or ``backend='triton'`` under ``TRITON_INTERPRET=1``).

``FastLongformerModel.from_pretrained("allenai/longformer-base-4096")`` or ``.from_hf(hf_model)``;
``FastLongformerForTokenClassification`` mirrors ``LongformerForTokenClassification``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attention import WindowGlobal, attention
from ..kernels._common import HAS_TRITON, fork_to, interpreting, join_from, side_stream
from ..kernels.hidden_global_rows import begin_hidden_global_rows, reference_hidden_global_rows
from ..kernels.layernorm import add_layernorm
from ..resources import ModelNotFoundError, load_offline_first


@dataclass
class FastLongformerOutput:
    last_hidden_state: torch.Tensor
    pooler_output: Optional[torch.Tensor] = None


def _side_stream(x: torch.Tensor) -> Optional["torch.cuda.Stream"]:
    """A second CUDA stream per device (None off CUDA) for small work that can overlap a GEMM."""
    return side_stream(x.device) if x.is_cuda else None


def _current_stream(x: torch.Tensor) -> "torch.cuda.Stream":
    """The current CUDA stream of ``x``'s device (a cached Stream object: no Python Stream per call)."""
    from ..kernels.window_global import _stream_obj
    i = x.device.index
    return _stream_obj(torch._C._cuda_getCurrentRawStream(i), i)


def _load_hf(hf_cls: type, name_or_path: str, kwargs: dict) -> nn.Module:
    """``hf_cls.from_pretrained`` from a local folder, or a hub id offline-first; one-line ModelNotFoundError."""
    if os.path.isdir(os.path.expanduser(str(name_or_path))):
        try:
            return hf_cls.from_pretrained(os.path.expanduser(str(name_or_path)), **kwargs)
        except Exception as err:  # noqa: BLE001
            raise ModelNotFoundError(f"cannot load Longformer weights from '{name_or_path}': "
                                     f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__}") from err
    return load_offline_first(str(name_or_path),
                              lambda local: hf_cls.from_pretrained(name_or_path, local_files_only=local, **kwargs))


def _gelu(name: str):
    from transformers.activations import ACT2FN
    return ACT2FN[name]


class _FastLayer(nn.Module):
    """One Longformer layer with fused projections."""

    def __init__(self, hf_layer: nn.Module, window: int, act: str, eps: float) -> None:
        super().__init__()
        sa = hf_layer.attention.self
        self.num_heads = sa.num_heads
        self.head_dim = sa.head_dim
        self.window = window
        # one input projection: rows [q, k, v | key_global, value_global]; the first 3C rows alone
        # when there are no global tokens, all 5C in one GEMM when there are
        lins = (sa.query, sa.key, sa.value, sa.key_global, sa.value_global)
        self.w_in = nn.Parameter(torch.cat([m.weight for m in lins]).detach().clone())
        self.b_in = nn.Parameter(torch.cat([m.bias for m in lins]).detach().clone())
        # the global query projection only runs on the (few) global rows
        self.w_qg = nn.Parameter(sa.query_global.weight.detach().clone())
        self.b_qg = nn.Parameter(sa.query_global.bias.detach().clone())
        ao = hf_layer.attention.output
        self.attn_out = nn.Linear(ao.dense.in_features, ao.dense.out_features)
        self.attn_out.load_state_dict(ao.dense.state_dict())
        self.ln1 = nn.LayerNorm(ao.LayerNorm.normalized_shape, eps=eps)
        self.ln1.load_state_dict(ao.LayerNorm.state_dict())
        self.inter = nn.Linear(hf_layer.intermediate.dense.in_features, hf_layer.intermediate.dense.out_features)
        self.inter.load_state_dict(hf_layer.intermediate.dense.state_dict())
        self.out = nn.Linear(hf_layer.output.dense.in_features, hf_layer.output.dense.out_features)
        self.out.load_state_dict(hf_layer.output.dense.state_dict())
        self.ln2 = nn.LayerNorm(hf_layer.output.LayerNorm.normalized_shape, eps=eps)
        self.ln2.load_state_dict(hf_layer.output.LayerNorm.state_dict())
        # training: HF's hidden dropout after the attention output and the FFN output projections
        # (attention-probability dropout is not applied: the kernels have none)
        self.dropout = nn.Dropout(hf_layer.output.dropout.p)
        self.act = _gelu(act)
        # inference on CUDA: GELU as the epilogue of the intermediate GEMM (cuBLASLt; tanh form,
        # |difference to erf GELU| <= 5e-4, below fp16 resolution of the activations)
        self.gelu_epilogue = act in ("gelu", "gelu_new", "gelu_pytorch_tanh")
        # global query rows at inference: "kernel" (the attention kernel's split-K programs over the
        # key/value_global projections of every token) or "hidden" (hidden-space algebra, no key/value_global
        # projection of all tokens: on the Triton path four small launches, kernels/hidden_global_rows.py;
        # elsewhere a few PyTorch GEMMs). "auto" = "hidden" (the saved projection is 2/5 of the input GEMM;
        # numbers in NOTES.md)
        self.global_mode = "auto"

    def forward(self, x: torch.Tensor, gidx: Optional[torch.Tensor], kpm: Optional[torch.Tensor],
                backend: str, aux: Optional[tuple] = None) -> torch.Tensor:
        """``aux``: ``layer_aux(x, gidx, kpm)``, shared by the layers of one forward (else built here)."""
        B, N, C = x.shape
        gsel, gscat, pad_rows, capturing = aux if aux is not None else layer_aux(x, gidx, kpm)
        H, D = self.num_heads, self.head_dim
        has_g = gidx is not None and gidx.shape[-1] > 0
        train = self.training and torch.is_grad_enabled()
        mode = self.resolved_global_mode()
        with_kvg = has_g and (train or mode == "kernel")
        rows = 5 * C if with_kvg else 3 * C
        hidden = has_g and not train and mode == "hidden"
        # inference in a CUDA graph, kernel mode: the global rows' query projection runs on a side stream,
        # overlapping the input GEMM. Eagerly the host is the bottleneck: no side stream (its fork / join
        # events cost host time)
        side = _side_stream(x) if (has_g and not train and not hidden and backend == "triton" and capturing) else None
        grows = None if capturing else "launch"  # attention's global rows: after the band, same stream
        main = _current_stream(x) if side is not None else None
        qg = og = pending = None
        if hidden and backend == "triton":  # u, chunk scores and their merge read only x: in a graph, beside the
            # input GEMM and the band kernel on a side stream (off the critical path); eagerly on this stream
            pending = begin_hidden_global_rows(x, gidx, kpm, *self._global_weights(), H, (N * C, C, D, 1),
                                               side=_side_stream(x) if capturing else None)
        elif side is not None:
            fork_to(side, main)
            with torch.cuda.stream(side):
                qg = self._global_query(x, gsel)
        elif hidden and backend != "triton":
            og = reference_hidden_global_rows(x, gidx, kpm, *self._global_weights(), H)
        elif has_g and not hidden:
            qg = self._global_query(x, gsel)
        proj = F.linear(x, self.w_in[:rows], self.b_in[:rows]).view(B, N, rows // C, H, D)
        q, k, v = (proj[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, N, D) strided views
        kg = vg = None
        if with_kvg:
            kg, vg = (proj[:, :, i].transpose(1, 2) for i in (3, 4))
        if train or (not hidden and backend != "triton"):
            # autograd path (global projections for every token, kernels' backward), or no Triton
            if backend == "triton":
                from ..kernels.window_global import window_global_attention
                o = window_global_attention(q, k, v, self.window, gidx, False, kpm, None,
                                            (qg, kg, vg) if has_g else None, gidx_prepared=True).transpose(1, 2)
            else:
                o = _reference_longformer_attention(q, k, v, qg, kg, vg, self.window, gidx if has_g else None,
                                                    kpm, backend).transpose(1, 2)
            a = o.reshape(B, N, C)
        elif not hidden:
            # inference, one attention call: window kernel + global-row programs (compact qg)
            o = torch.empty(B, N, H, D, dtype=x.dtype, device=x.device)
            if side is not None:
                join_from(main, side)
                qg.record_stream(main)
            from ..kernels.window_global import window_global_forward
            window_global_forward(q, k, v, self.window, gidx if has_g else None, False, kpm, None,
                                  global_qkv=(qg, kg, vg) if has_g else None, out=o.transpose(1, 2),
                                  gidx_prepared=has_g, grows=grows)
            a = o.reshape(B, N, C)
        elif backend == "triton":  # inference: window attention, then the global rows (hidden space) over theirs;
            # in a graph the rows' last launch goes on the side stream beside a band kernel that leaves them alone
            from ..kernels.window_global import window_global_forward
            o = torch.empty(B, N, H, D, dtype=x.dtype, device=x.device)
            beside = pending.side is not None
            if beside:
                pending.finish(o, beside=True)
            window_global_forward(q, k, v, self.window, gidx, False, kpm, None, out=o.transpose(1, 2),
                                  gidx_prepared=True, global_rows="skip" if beside else False)
            if beside:
                pending.join()
            else:
                pending.finish(o)
            a = o.reshape(B, N, C)
        else:  # inference without Triton: window attention for the local rows; global rows written over
            ob = torch.empty(B, N + 1, H, D, dtype=x.dtype, device=x.device)  # row N: scratch for -1 slots
            o = ob[:, :N]
            pat = WindowGlobal(self.window, gidx)
            o.copy_(attention(q, k, v, pat, key_padding_mask=kpm, backend=backend).transpose(1, 2))
            ob.view(B, N + 1, C).scatter_(1, gscat, og.to(ob.dtype))
            a = o.reshape(B, N, C)
        if kpm is not None:  # HF: padded queries get a zero attention output
            a = a.masked_fill(pad_rows, 0.0)
        if train:
            h = self.ln1(self.dropout(self.attn_out(a)) + x)
            return self.ln2(self.dropout(self.out(self.act(self.inter(h)))) + h)
        h = add_layernorm(self.attn_out(a), x, self.ln1.weight, self.ln1.bias, self.ln1.eps)
        return add_layernorm(self.out(self._intermediate(h)), h, self.ln2.weight, self.ln2.bias, self.ln2.eps)

    def hf_state_dict(self, prefix: str) -> dict:
        """This layer's weights under HF ``LongformerLayer`` names (``prefix`` = "...layer.{i}.")."""
        C = self.w_qg.shape[0]
        sd = {}
        for i, name in enumerate(("query", "key", "value", "key_global", "value_global")):
            sd[f"{prefix}attention.self.{name}.weight"] = self.w_in[i * C:(i + 1) * C]
            sd[f"{prefix}attention.self.{name}.bias"] = self.b_in[i * C:(i + 1) * C]
        sd[f"{prefix}attention.self.query_global.weight"] = self.w_qg
        sd[f"{prefix}attention.self.query_global.bias"] = self.b_qg
        for mod, name in ((self.attn_out, "attention.output.dense"), (self.ln1, "attention.output.LayerNorm"),
                          (self.inter, "intermediate.dense"), (self.out, "output.dense"),
                          (self.ln2, "output.LayerNorm")):
            sd[f"{prefix}{name}.weight"] = mod.weight
            sd[f"{prefix}{name}.bias"] = mod.bias
        return {k: v.detach() for k, v in sd.items()}

    def _global_query(self, x: torch.Tensor, gsel: torch.Tensor) -> torch.Tensor:
        """query_global of the global rows only: (B, H, G, D), in ``gidx`` order (``gsel``: ``layer_aux``)."""
        B, G = gsel.shape[:2]
        xg = torch.gather(x, 1, gsel)
        return F.linear(xg, self.w_qg, self.b_qg).view(B, G, self.num_heads, self.head_dim).transpose(1, 2)

    def _global_weights(self) -> Tuple[torch.Tensor, ...]:
        """(w_q, b_q, w_k, w_v, b_v) of the global projections (the key bias drops out of the global rows'
        softmax)."""
        C = self.w_qg.shape[0]
        return self.w_qg, self.b_qg, self.w_in[3 * C:4 * C], self.w_in[4 * C:], self.b_in[4 * C:]

    def resolved_global_mode(self) -> str:
        """The global-row mode inference uses: ``global_mode``, with "auto" = "hidden"."""
        return "hidden" if self.global_mode == "auto" else self.global_mode

    def _intermediate(self, h: torch.Tensor) -> torch.Tensor:
        """act(h W^T + b); on CUDA in fp16/bf16 one cuBLASLt GEMM with a GELU epilogue."""
        if self.gelu_epilogue and h.is_cuda and h.dtype in (torch.float16, torch.bfloat16) \
                and self.inter.weight.dtype == h.dtype:  # (fp32 weights under autocast: F.linear casts them)
            h2 = h.reshape(-1, h.shape[-1])
            y = torch._addmm_activation(self.inter.bias, h2, self.inter.weight.t(), use_gelu=True)
            return y.view(*h.shape[:-1], y.shape[-1])
        return self.act(self.inter(h))


def _ids_only(input_ids, token_type_ids, position_ids, inputs_embeds) -> bool:
    """The call gives token ids and nothing else that shapes the embeddings."""
    return input_ids is not None and token_type_ids is None and position_ids is None and inputs_embeds is None


def layer_aux(x: torch.Tensor, gidx: Optional[torch.Tensor], kpm: Optional[torch.Tensor]) -> tuple:
    """Per-forward helpers of the layers, built once: the global rows' gather index (B, G, C) (-1 slots read
    row 0, unused), their scatter index into an (N + 1)-row buffer (-1 slots to row N), the padded query
    rows (B, N, 1) bool, and whether a CUDA graph is being captured."""
    B, N, C = x.shape
    gsel = gscat = None
    if gidx is not None and gidx.shape[-1] > 0:
        gi = gidx.long().expand(B, -1)
        gsel = gi.clamp_min(0)[:, :, None].expand(B, gi.shape[1], C)
        gscat = torch.where(gi < 0, N, gi)[:, :, None].expand(B, gi.shape[1], C)
    capturing = bool(x.is_cuda and torch.cuda.is_current_stream_capturing())
    return gsel, gscat, (~kpm[:, :, None] if kpm is not None else None), capturing


def _reference_longformer_attention(q, k, v, qg, kg, vg, window, gidx, kpm, backend):
    """Non-Triton path: local rows through ``attention`` (reference/flex/sdpa), global rows dense."""
    pat = WindowGlobal(window, gidx if gidx is not None else [])
    o = attention(q, k, v, pat, key_padding_mask=kpm, backend=backend if backend != "auto" else "auto")
    if gidx is None:
        return o
    from ..attention.reference import put_rows
    from ..kernels.window_global import _global_rows_dense
    og, gs = _global_rows_dense(qg, kg, vg, gidx, kpm, False, 1.0 / math.sqrt(q.shape[-1]))
    return put_rows(o, gs, gidx.long().expand(q.shape[0], -1) >= 0, og)


class FastLongformerModel(nn.Module):
    """Longformer encoder (HF-compatible weights) on the efficient attention backend."""

    def __init__(self, hf_model: nn.Module, backend: str = "auto", global_mode: str = "auto") -> None:
        super().__init__()
        if global_mode not in ("auto", "kernel", "hidden"):
            raise ValueError(f"global_mode must be 'auto', 'kernel' or 'hidden', got {global_mode!r}")
        cfg = hf_model.config
        self.config = cfg
        self.backend = backend
        self.embeddings = hf_model.embeddings
        aw = cfg.attention_window
        aw = aw if isinstance(aw, (list, tuple)) else [aw] * cfg.num_hidden_layers
        self.layers = nn.ModuleList(
            _FastLayer(layer, aw[i] // 2, cfg.hidden_act, cfg.layer_norm_eps) for i, layer in enumerate(hf_model.encoder.layer))
        self.pooler = getattr(hf_model, "pooler", None)
        for layer in self.layers:
            layer.global_mode = global_mode
        self.gradient_checkpointing = False
        from .longformer_graphs import LongformerGraphs
        self.graphs: Optional[LongformerGraphs] = LongformerGraphs()  # automatic CUDA graphs (compile_graphs)
        from .longformer_native import NativeEager
        self.native: Optional[NativeEager] = NativeEager()  # eager CUDA inference without per-op host cost

    def gradient_checkpointing_enable(self) -> None:
        """Training: recompute each layer's activations in the backward pass (memory for time)."""
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.gradient_checkpointing = False

    def hf_state_dict(self, prefix: str = "") -> dict:
        """The encoder's weights under HF ``LongformerModel`` names (``prefix`` e.g. "longformer.")."""
        sd = {f"{prefix}embeddings.{k}": v.detach() for k, v in self.embeddings.state_dict().items()}
        for i, layer in enumerate(self.layers):
            sd.update(layer.hf_state_dict(f"{prefix}encoder.layer.{i}."))
        if self.pooler is not None:
            sd.update({f"{prefix}pooler.{k}": v.detach() for k, v in self.pooler.state_dict().items()})
        return sd

    @classmethod
    def from_hf(cls, hf_model: nn.Module, backend: str = "auto", global_mode: str = "auto") -> "FastLongformerModel":
        """Wrap an instantiated ``transformers.LongformerModel`` (weights copied/shared)."""
        m = cls(hf_model, backend, global_mode)
        p = next(hf_model.parameters())
        return m.to(device=p.device, dtype=p.dtype)

    @classmethod
    def from_pretrained(cls, name_or_path: str, backend: str = "auto", **kwargs) -> "FastLongformerModel":
        """Load HF weights (hub id or local folder), e.g. ``yikuan8/Clinical-Longformer``."""
        from transformers import LongformerModel
        return cls.from_hf(_load_hf(LongformerModel, name_or_path, kwargs), backend)

    def _backend(self, x: torch.Tensor) -> str:
        if self.backend != "auto":
            return self.backend
        if HAS_TRITON and (x.is_cuda or interpreting()) and self.layers[0].head_dim in (16, 32, 64, 128) \
                and x.dtype != torch.float64:
            return "triton"
        return "auto"

    @staticmethod
    def prepare(attention_mask: Optional[torch.Tensor], global_attention_mask: Optional[torch.Tensor],
                device: torch.device, round_globals: bool = False) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """(global index table (B, G) int32 -1 padded or None, key padding mask bool or None).

        Computed where the masks are (no device work for CPU masks); masks on the GPU cost one host read
        (whether there is padding, and G) per call. ``round_globals``: G rounded up to a power of two (-1
        slots), so that calls with a few more or fewer global tokens share a CUDA graph."""
        am = attention_mask.bool() if attention_mask is not None else None
        g = global_attention_mask.bool() if global_attention_mask is not None else None
        if g is not None and am is not None:
            g = g & am.to(g.device)
        stats = []
        if am is not None:
            stats.append((~am).any().to(torch.int64))
        if g is not None and g.numel():
            stats.append(g.sum(1).max().to(torch.int64))
        vals = torch.stack([s.to(stats[0].device) for s in stats]).tolist() if stats else []  # the one host read
        has_pad = bool(vals.pop(0)) if am is not None else False
        G = int(vals.pop(0)) if (g is not None and g.numel()) else 0
        kpm = am.to(device, non_blocking=True) if has_pad else None
        gidx = None
        if G > 0:
            N = g.shape[1]
            if round_globals:
                G = min(N, 1 << (G - 1).bit_length())
            pos = torch.arange(N, device=g.device).expand_as(g)
            key = torch.where(g, pos, N + pos)  # globals first, in order
            order = key.argsort(dim=1)[:, :G]
            sel = torch.gather(g, 1, order)
            gidx = torch.where(sel, order, -1).to(torch.int32).contiguous().to(device, non_blocking=True)
        return gidx, kpm

    def cuda_graph(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                   global_attention_mask: Optional[torch.Tensor] = None) -> "LongformerCudaGraph":
        """Capture the encoder for this input shape; call the result like the model (returns hidden states)."""
        return LongformerCudaGraph(self, input_ids, attention_mask, global_attention_mask)

    def embed(self, input_ids: Optional[torch.Tensor], token_type_ids: Optional[torch.Tensor] = None,
              position_ids: Optional[torch.Tensor] = None, inputs_embeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The embeddings (HF ``LongformerEmbeddings``); CUDA inference from token ids alone on the Triton backend
        runs them as one fused launch (``kernels/embed_layernorm.py``: same positions, sums in fp32). Not under
        the CPU interpreter: a program per few tokens is slow there (the kernel's own tests cover it)."""
        e = self.embeddings
        if _ids_only(input_ids, token_type_ids, position_ids, inputs_embeds) and input_ids.is_cuda \
                and not (self.training or torch.is_grad_enabled()) and input_ids.dim() == 2 \
                and self._backend(e.word_embeddings.weight) == "triton":
            from ..kernels.embed_layernorm import embed_layernorm
            return embed_layernorm(input_ids, e.word_embeddings.weight, e.position_embeddings.weight,
                                   e.token_type_embeddings.weight, e.LayerNorm.weight, e.LayerNorm.bias,
                                   e.LayerNorm.eps, e.padding_idx)
        return e(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                 inputs_embeds=inputs_embeds)

    def encode(self, hidden: torch.Tensor, gidx: Optional[torch.Tensor], kpm: Optional[torch.Tensor],
               native: bool = True) -> torch.Tensor:
        """Run the layers on embeddings (no host syncs: CUDA-graph capturable on the Triton path). Eager CUDA
        inference goes through ``self.native`` (``longformer_native``) where it applies (``native=False``: never)."""
        if native and self.native is not None:
            out = self.native(self, hidden, gidx, kpm)
            if out is not None:
                return out
        be = self._backend(hidden)
        ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        aux = layer_aux(hidden, gidx, kpm)
        for layer in self.layers:
            if ckpt:
                from torch.utils.checkpoint import checkpoint
                hidden = checkpoint(layer, hidden, gidx, kpm, be, aux, use_reentrant=False)
            else:
                hidden = layer(hidden, gidx, kpm, be, aux)
        return hidden

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                global_attention_mask: Optional[torch.Tensor] = None, token_type_ids: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.Tensor] = None, inputs_embeds: Optional[torch.Tensor] = None) -> FastLongformerOutput:
        """Same arguments as ``LongformerModel.forward``; returns last_hidden_state (+ pooler_output)."""
        h = None
        if self.graphs is not None and self._graphable(input_ids, token_type_ids, position_ids, inputs_embeds):
            h = self.graphs(self, input_ids, attention_mask, global_attention_mask)
        if h is None:
            dev = (input_ids if input_ids is not None else inputs_embeds).device
            # the embeddings first: prepare()'s one host read then waits for them (and the previous call's
            # tail) instead of leaving the GPU idle while the host launches them after it
            emb = self.embed(input_ids, token_type_ids, position_ids, inputs_embeds)
            gidx, kpm = self.prepare(attention_mask, global_attention_mask, dev)
            h = self.encode(emb, gidx, kpm)
        pooled = self.pooler(h) if self.pooler is not None else None
        return FastLongformerOutput(h, pooled)

    def compile_graphs(self, buckets: Optional[Sequence[int]] = None, max_graphs: int = 4,
                       min_calls: int = 2) -> "FastLongformerModel":
        """Set up the automatic CUDA-graph path (on by default with exact shapes): inference calls on CUDA
        whose signature (batch, length or its bucket, global tokens per row rounded to a power of two,
        padding) was seen ``min_calls`` times replay a captured graph; at most ``max_graphs`` are kept
        (least recently used dropped). ``buckets``: lengths to pad to (e.g. ``(512, 1024, 2048, 4096)``)."""
        from .longformer_graphs import LongformerGraphs
        self.graphs = LongformerGraphs(buckets, max_graphs, min_calls)
        return self

    def disable_graphs(self) -> "FastLongformerModel":
        """Always run eagerly (drops captured graphs)."""
        self.graphs = None
        return self

    def _graphable(self, input_ids, token_type_ids, position_ids, inputs_embeds) -> bool:
        """Whether this call can take the graph path: CUDA inference (eval, no grad, no autocast) on the
        Triton backend, from token ids alone, not inside a capture or a torch.compile trace."""
        return _ids_only(input_ids, token_type_ids, position_ids, inputs_embeds) and input_ids.is_cuda \
            and self.fast_inference(self.embeddings.word_embeddings.weight)

    def fast_inference(self, x: torch.Tensor) -> bool:
        """CUDA inference (eval, no grad, no autocast) on the Triton backend for tensors like ``x``, outside a
        CUDA-graph capture and a torch.compile trace: what the automatic graphs and the native eager layers need."""
        if not x.is_cuda or self.training or torch.is_grad_enabled() or torch.is_autocast_enabled():
            return False
        if torch.cuda.is_current_stream_capturing() or torch.compiler.is_compiling():
            return False
        return self._backend(x) == "triton"


class LongformerCudaGraph:
    """CUDA-graph replay of ``FastLongformerModel`` (embeddings + all layers) for one input shape.

    Removes the per-kernel launch cost (the eager model is host-bound at batch 1). Inputs of
    later calls must have the same shape, the same number of global tokens per row and the same
    presence of padding; the returned tensor is the graph's static output (overwritten by the
    next call; clone it to keep it). The model's automatic path (``compile_graphs``) does this per
    shape by itself and returns copies.
    """

    def __init__(self, model: "FastLongformerModel", input_ids: torch.Tensor,
                 attention_mask: Optional[torch.Tensor] = None,
                 global_attention_mask: Optional[torch.Tensor] = None, warmup: int = 3) -> None:
        if not input_ids.is_cuda:
            raise ValueError("input_ids must be a CUDA tensor for CUDA-graph capture")
        from .longformer_graphs import CapturedEncoder
        self.model = model
        gidx, kpm = model.prepare(attention_mask, global_attention_mask, input_ids.device)
        with torch.no_grad():
            self.captured = CapturedEncoder(model, input_ids, gidx, kpm, warmup)
        self.graph, self.out = self.captured.graph, self.captured.out

    def replay(self) -> torch.Tensor:
        """Replay with the inputs currently in the static buffers."""
        self.graph.replay()
        return self.out

    def __call__(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                 global_attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        c = self.captured
        if input_ids.shape != c.ids.shape:
            raise ValueError(f"input_ids shape {tuple(input_ids.shape)} differs from the captured {tuple(c.ids.shape)}")
        gidx, kpm = self.model.prepare(attention_mask, global_attention_mask, input_ids.device)
        if (gidx is None) != (c.gidx is None) or (gidx is not None and gidx.shape != c.gidx.shape):
            raise ValueError("global_attention_mask layout (tokens per row) differs from the captured one")
        if (kpm is None) != (c.kpm is None):
            raise ValueError("attention_mask padding presence differs from the captured one")
        return c.run(input_ids, gidx, kpm)


@dataclass
class FastTokenClassifierOutput:
    """``loss`` (None without labels) and ``logits`` (B, N, num_labels); unpacks as ``loss, logits``."""
    loss: Optional[torch.Tensor]
    logits: torch.Tensor

    def __iter__(self):
        return iter((self.loss, self.logits))


class FastLongformerForTokenClassification(nn.Module):
    """Equivalent of ``LongformerForTokenClassification``: encoder + dropout + linear classifier.

    Loads HF token-classification checkpoints, or base ``LongformerModel`` checkpoints with a fresh head
    (``from_pretrained(path, num_labels=..., id2label=..., label2id=...)``); ``save_pretrained(dir)`` writes a
    plain HF folder (config.json + model.safetensors) that HF's ``LongformerForTokenClassification`` loads.
    Trainable: autograd through the Triton kernels on CUDA, through the banded PyTorch path on CPU
    (``gradient_checkpointing_enable()`` recomputes layer activations in the backward pass).
    """

    def __init__(self, hf_model: nn.Module, backend: str = "auto") -> None:
        super().__init__()
        self.config = hf_model.config
        self.num_labels = hf_model.num_labels
        self.longformer = FastLongformerModel(hf_model.longformer, backend)
        self.longformer.pooler = None
        self.dropout = nn.Dropout(self.config.hidden_dropout_prob)
        self.classifier = hf_model.classifier

    @classmethod
    def from_hf(cls, hf_model: nn.Module, backend: str = "auto") -> "FastLongformerForTokenClassification":
        """Wrap an instantiated ``transformers.LongformerForTokenClassification``."""
        m = cls(hf_model, backend)
        p = next(hf_model.parameters())
        return m.to(device=p.device, dtype=p.dtype)

    @classmethod
    def from_config(cls, config, backend: str = "auto") -> "FastLongformerForTokenClassification":
        """Randomly initialised model of this ``LongformerConfig`` (HF's initialisation)."""
        from transformers import LongformerForTokenClassification
        return cls.from_hf(LongformerForTokenClassification(config), backend)

    @classmethod
    def from_pretrained(cls, name_or_path: str, backend: str = "auto", **kwargs) -> "FastLongformerForTokenClassification":
        """HF id or local folder; ``kwargs`` go to HF's ``from_pretrained`` (``num_labels``, ``id2label``,
        ``label2id``: a base checkpoint gets a freshly initialised classifier)."""
        from transformers import LongformerForTokenClassification
        return cls.from_hf(_load_hf(LongformerForTokenClassification, name_or_path, kwargs), backend)

    def gradient_checkpointing_enable(self) -> None:
        self.longformer.gradient_checkpointing_enable()

    def gradient_checkpointing_disable(self) -> None:
        self.longformer.gradient_checkpointing_disable()

    def hf_state_dict(self) -> dict:
        """Weights under HF ``LongformerForTokenClassification`` names."""
        sd = self.longformer.hf_state_dict("longformer.")
        sd.update({f"classifier.{k}": v.detach() for k, v in self.classifier.state_dict().items()})
        return sd

    def save_pretrained(self, save_directory: str) -> None:
        """Write config.json + model.safetensors (HF layout, fp32 kept as is); each file written to a temporary
        name and renamed, so an interrupted save leaves no half-written file."""
        from safetensors.torch import save_file
        os.makedirs(save_directory, exist_ok=True)
        cfg = self.config
        cfg.architectures = ["LongformerForTokenClassification"]
        cfg.num_labels = self.num_labels
        tmp = os.path.join(save_directory, ".tmp-save")
        os.makedirs(tmp, exist_ok=True)
        cfg.save_pretrained(tmp)
        tensors = {k: v.contiguous().cpu().clone() for k, v in self.hf_state_dict().items()}
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        for name in ("config.json", "model.safetensors"):
            os.replace(os.path.join(tmp, name), os.path.join(save_directory, name))
        os.rmdir(tmp)

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                global_attention_mask: Optional[torch.Tensor] = None, token_type_ids: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.Tensor] = None, inputs_embeds: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None) -> FastTokenClassifierOutput:
        """Logits (B, N, num_labels) and, with ``labels`` (-100 = ignored), the mean cross-entropy loss."""
        h = self.longformer(input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
                            inputs_embeds).last_hidden_state
        logits = self.classifier(self.dropout(h))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1).to(logits.device))
        return FastTokenClassifierOutput(loss, logits)


__all__ = ["FastLongformerModel", "FastLongformerForTokenClassification", "FastLongformerOutput", "FastTokenClassifierOutput",
           "LongformerCudaGraph"]
