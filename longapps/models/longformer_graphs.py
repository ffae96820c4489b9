"""CUDA graphs for ``FastLongformerModel``, used automatically when input shapes repeat.

The eager encoder launches ~25 kernels per layer; at batch 1 and 4,096 tokens the host takes longer to
launch them than the GPU takes to run them. ``LongformerGraphs`` keeps one captured graph per input
signature (batch, length bucket, global tokens per row rounded up to a power of two, padding, dtype,
device): the first call of a signature runs eagerly, the ``min_calls``-th is captured, later ones replay.
Every replay copies the call's inputs (token ids, global index table, padding mask) into the graph's
static buffers first, so nothing captured reads a previous call's inputs; the output is a copy (the
graph's own buffer is overwritten by the next replay).

With ``buckets`` (sorted lengths), a batch of length N is padded to the smallest bucket >= N (padding
tokens masked out, then cut off the output), so a few graphs cover every length up to the largest bucket.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .longformer import FastLongformerModel


class CapturedEncoder:
    """One CUDA graph of embeddings + all layers for fixed shapes, reading static input buffers."""

    def __init__(self, model: "FastLongformerModel", ids: torch.Tensor, gidx: Optional[torch.Tensor],
                 kpm: Optional[torch.Tensor], warmup: int = 2) -> None:
        self.model = model
        self.ids = ids.clone()
        self.gidx = gidx.clone() if gidx is not None else None
        self.kpm = kpm.clone() if kpm is not None else None
        s = torch.cuda.Stream(device=ids.device)
        s.wait_stream(torch.cuda.current_stream(ids.device))
        with torch.cuda.stream(s):
            for _ in range(warmup):
                self._step()
        torch.cuda.current_stream(ids.device).wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._step()

    def _step(self) -> torch.Tensor:
        return self.model.encode(self.model.embed(self.ids), self.gidx, self.kpm)

    def run(self, ids: torch.Tensor, gidx: Optional[torch.Tensor], kpm: Optional[torch.Tensor]) -> torch.Tensor:
        """Copy the inputs into the static buffers and replay; returns the static output (not a copy)."""
        self.ids.copy_(ids, non_blocking=True)
        if self.gidx is not None:
            self.gidx.copy_(gidx, non_blocking=True)
        if self.kpm is not None:
            self.kpm.copy_(kpm, non_blocking=True)
        self.graph.replay()
        return self.out


class LongformerGraphs:
    """Shape-keyed CUDA-graph runner of a ``FastLongformerModel`` (see the module docstring)."""

    def __init__(self, buckets: Optional[Sequence[int]] = None, max_graphs: int = 4, min_calls: int = 2) -> None:
        if buckets is not None:
            buckets = sorted({int(b) for b in buckets})
            if not buckets or buckets[0] < 1:
                raise ValueError(f"buckets must be positive lengths, got {buckets}")
        if max_graphs < 1 or min_calls < 1:
            raise ValueError("max_graphs and min_calls must be >= 1")
        self.buckets = buckets
        self.max_graphs = max_graphs
        self.min_calls = min_calls
        self.graphs: "OrderedDict[tuple, CapturedEncoder]" = OrderedDict()
        self.seen: dict = {}
        self.weights: Optional[tuple] = None
        self.replays = 0
        self.captures = 0

    def clear(self) -> None:
        """Drop every captured graph (and its memory)."""
        self.graphs.clear()
        self.seen.clear()

    def length_for(self, n: int) -> Optional[int]:
        """The padded length a call of length ``n`` runs at (None: no bucket holds it, run eagerly)."""
        if self.buckets is None:
            return n
        for b in self.buckets:
            if b >= n:
                return b
        return None

    def __call__(self, model: "FastLongformerModel", input_ids: torch.Tensor,
                 attention_mask: Optional[torch.Tensor],
                 global_attention_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The encoder's output for this call through a graph, or None when this call runs eagerly."""
        B, N = input_ids.shape
        L = self.length_for(N)
        if L is None:
            return None
        fp = _weights_fingerprint(model)
        if fp != self.weights:  # weights moved or changed dtype: captured pointers are stale
            self.clear()
            self.weights = fp
        dev = input_ids.device
        if L != N:  # pad to the bucket: padding tokens masked out (HF pads with pad_token_id)
            pad = L - N
            input_ids = torch.nn.functional.pad(input_ids, (0, pad), value=model.config.pad_token_id)
            am = attention_mask if attention_mask is not None else torch.ones(B, N, dtype=torch.long, device=dev)
            attention_mask = torch.nn.functional.pad(am.to(dev), (0, pad), value=0)
            if global_attention_mask is not None:
                global_attention_mask = torch.nn.functional.pad(global_attention_mask.to(dev), (0, pad), value=0)
        gidx, kpm = model.prepare(attention_mask, global_attention_mask, dev, round_globals=True)
        key = (B, L, None if gidx is None else gidx.shape[1], kpm is not None, dev)
        runner = self.graphs.get(key)
        if runner is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] < self.min_calls:
                return None
            with torch.inference_mode(False), torch.no_grad():
                runner = CapturedEncoder(model, input_ids, gidx, kpm)
            self.captures += 1
            self.graphs[key] = runner
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        with torch.inference_mode(False), torch.no_grad():
            out = runner.run(input_ids, gidx, kpm)
        self.replays += 1
        out = out.clone()
        return out[:, :N] if L != N else out


def _weights_fingerprint(model: torch.nn.Module) -> Tuple:
    """Changes when parameters are replaced (``.to()``, ``.half()``); in-place updates keep it (and the
    graphs read the new values)."""
    first, last = model.embeddings.word_embeddings.weight, model.layers[-1].ln2.weight
    return (first.data_ptr(), last.data_ptr(), model.layers[0].w_in.data_ptr(), first.dtype, first.device)


__all__ = ["LongformerGraphs", "CapturedEncoder"]
