"""Eager Longformer layers without per-op host overhead: cuBLASLt GEMMs and Triton kernels called directly.

The PyTorch-level eager encoder spends ~0.6 ms of host time per layer on a slow host (about 25 ATen calls
and 4 Triton launches, each 5-30 us), so at batch 1 x 4,096 tokens it ran at 2.3x its CUDA graph. Here a
forward is, per layer, 5 ``cublasLtMatmul`` calls (input projection; query_global of every token; attention
output; intermediate with its GELU epilogue; output) and 4 kernel launches (band attention, global rows,
two fused add+LayerNorms), each one ctypes call on descriptors and parameter blocks prepared once per input
signature; the activations live in one scratch allocation per forward. The same kernels and epilogues as the
PyTorch-level path, so the output matches it to bf16/fp16 rounding (GEMM algorithms may differ).

Used by ``FastLongformerModel`` for CUDA inference (eval, no grad) on the Triton backend when there is no
padding and the layers use the kernel global mode with a GELU activation; anything else, and any signature
whose first (probe) forward does not match the PyTorch-level path, runs the PyTorch-level path.
``LONGAPPS_NATIVE_EAGER=0`` turns it off.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Optional

import torch

from ..kernels.cublaslt import LtLinear, LtShape, workspace
from ..kernels.direct_launch import DirectLaunch

if TYPE_CHECKING:  # pragma: no cover
    from .longformer import FastLongformerModel

_ALIGN = 256


class _Arena:
    """Byte offsets of the forward's buffers in one scratch allocation."""

    def __init__(self) -> None:
        self.size = 0

    def take(self, nbytes: int) -> int:
        off = self.size
        self.size += -(-nbytes // _ALIGN) * _ALIGN
        return off


class NativeLayers:
    """All layers of a ``FastLongformerModel`` for one signature (batch, length, global tokens, dtype,
    device): ``__call__(hidden, gidx)`` -> last hidden state. Built from one forward of the PyTorch-level path
    on the same shapes (which compiles the kernels and plans their launches)."""

    def __init__(self, model: "FastLongformerModel", hidden: torch.Tensor, gidx: Optional[torch.Tensor]) -> None:
        from ..kernels.layernorm import add_layernorm, bound_add_layernorm
        from ..kernels.window_global import _zeroed, window_global_forward

        B, N, C = hidden.shape
        dev = hidden.device
        self.index = dev.index if dev.index is not None else torch.cuda.current_device()
        self.shape, self.dtype, self.device = (B, N, C), hidden.dtype, dev
        l0 = model.layers[0]
        H, D = l0.num_heads, l0.head_dim
        _check_layers(model, hidden.dtype)
        G = gidx.shape[1] if gidx is not None else 0
        self.G = G
        es = hidden.element_size()
        M = B * N
        rows = 5 * C if G else 3 * C
        ffn = l0.inter.out_features
        a = _Arena()
        self.off = {"proj": a.take(M * max(rows, ffn) * es),  # the intermediate activation reuses it
                    "qg": a.take(M * C * es) if G else None, "o": a.take(M * C * es), "t": a.take(M * C * es),
                    "h": a.take(M * C * es), "x0": a.take(M * C * es), "x1": a.take(M * C * es),
                    "lse": a.take(B * H * N * 4)}
        self.rows = rows
        arena = torch.empty(a.size, dtype=torch.uint8, device=dev)  # for the PyTorch-level warm-up forward

        def view(name: str, cols: int) -> torch.Tensor:
            return arena[self.off[name]:].view(self.dtype)[:M * cols].view(B, N, cols)

        proj = view("proj", rows)
        p5 = proj.view(B, N, rows // C, H, D)
        q, k, v = (p5[:, :, i].transpose(1, 2) for i in range(3))
        o4 = view("o", C).view(B, N, H, D).transpose(1, 2)
        lse = arena[self.off["lse"]:].view(torch.float32)[:B * H * N].view(B, H, N)
        kpm0 = _zeroed(dev, torch.int8, 1)
        plans: list = []
        x = hidden
        windows = sorted({layer.window for layer in model.layers})
        with torch.no_grad():
            proj.copy_(torch.nn.functional.linear(x, l0.w_in[:rows], l0.b_in[:rows]))
            glob = None
            if G:
                qgf = view("qg", C)
                qgf.copy_(torch.nn.functional.linear(x, l0.w_qg, l0.b_qg))
                glob = (qgf.view(B, N, H, D).transpose(1, 2), p5[:, :, 3].transpose(1, 2), p5[:, :, 4].transpose(1, 2))
            for w in windows:  # one band launch per window size (the global-row launch does not depend on it)
                window_global_forward(q, k, v, w, gidx, False, None, None, global_qkv=glob, out=o4,
                                      gidx_prepared=G > 0, grows="launch", plan_sink=plans)
            t, h = view("t", C), view("h", C)
            add_layernorm(t, x, l0.ln1.weight, l0.ln1.bias, l0.ln1.eps)  # compiles / binds the LayerNorm launch
        bands = {}
        for w, plan in zip(windows, plans):
            if plan.band_b is None or plan.band_b.kern is None or (G and (plan.grow_b is None or plan.grow_b.kern is None)):
                raise RuntimeError("the attention launches were not bound (unaligned or not compiled)")
            if plan.side:
                raise RuntimeError("the attention plan uses a side stream")
            # initial addresses only: every scratch slot is pointed at the forward's own scratch by ``_point``
            bands[w] = DirectLaunch.from_bound(plan.band_b, (q, k, v, o4, lse, gidx if G else _no_globals_like(dev),
                                                             kpm0, q, k, v))
            if bands[w] is None:
                raise RuntimeError("the band launch layout is not handled")
        self.bands = list(bands.values())
        plan = plans[0]
        self.grow = None
        self.cnt: dict = {}
        if G:
            g = plan.grow
            self.off["po"] = a.take(g.rows * D * 4)
            self.off["pml"] = a.take(g.rows * 2 * 4)
            self.cnt_n = g.cnt
            self.grow = DirectLaunch.from_bound(plan.grow_b, (*glob, gidx, kpm0, lse, lse, lse, o4, lse, glob[1], glob[2]))
            if self.grow is None:
                raise RuntimeError("the global-row launch layout is not handled")
        self.arena_bytes = a.size
        self.ln = DirectLaunch.from_bound(bound_add_layernorm(t, x, l0.ln1.weight, l0.ln1.eps),
                                          (t, x, l0.ln1.weight, l0.ln1.bias, h))
        if self.ln is None:
            raise RuntimeError("the LayerNorm launch layout is not handled")
        self.kpm0 = kpm0
        # GEMMs: one descriptor per (layer, projection), layouts and algorithm per shape
        s_in = LtShape(self.index, self.dtype, M, C, rows, False)
        s_cc = LtShape(self.index, self.dtype, M, C, C, False)
        s_ff = LtShape(self.index, self.dtype, M, C, ffn, True)
        s_out = LtShape(self.index, self.dtype, M, ffn, C, False)
        self.layers = []
        for layer in model.layers:
            self.layers.append((bands[layer.window],
                LtLinear(s_in, layer.w_in, layer.b_in),  # rows [:rows] are the first rows of W and b
                LtLinear(s_cc, layer.w_qg, layer.b_qg) if G else None,
                LtLinear(s_cc, layer.attn_out.weight, layer.attn_out.bias),
                LtLinear(s_ff, layer.inter.weight, layer.inter.bias),
                LtLinear(s_out, layer.out.weight, layer.out.bias),
                layer.ln1.weight.data_ptr(), layer.ln1.bias.data_ptr(),
                layer.ln2.weight.data_ptr(), layer.ln2.bias.data_ptr()))
        self.eps = (l0.ln1.eps, l0.ln2.eps)
        self.base = self.gptr = None
        self.head_bytes = (C * es, 2 * C * es, 3 * C * es, 4 * C * es)

    def _point(self, base: int) -> None:
        """Point the attention launches at this forward's scratch (they keep the addresses between calls)."""
        off, (c1, c2, c3, c4) = self.off, self.head_bytes
        proj, o, lse = base + off["proj"], base + off["o"], base + off["lse"]
        for band in self.bands:
            for slot, addr in ((0, proj), (1, proj + c1), (2, proj + c2), (3, o), (4, lse), (7, proj),
                               (8, proj + c1), (9, proj + c2)):
                band.set(slot, addr)
        if self.grow is not None:
            for slot, addr in ((0, base + off["qg"]), (1, proj + c3), (2, proj + c4), (5, base + off["po"]),
                               (6, base + off["pml"]), (8, o), (9, lse), (10, proj + c3), (11, proj + c4)):
                self.grow.set(slot, addr)
        self.base = base

    def __call__(self, hidden: torch.Tensor, gidx: Optional[torch.Tensor]) -> torch.Tensor:
        from ..kernels.window_global import _raw_stream, _zeroed
        stream = _raw_stream(self.index)
        scratch = torch.empty(self.arena_bytes, dtype=torch.uint8, device=self.device)
        out = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        base = scratch.data_ptr()
        if self.base != base:
            self._point(base)
        grow, ln = self.grow, self.ln
        if grow is not None:
            gptr = gidx.data_ptr()
            if gptr != self.gptr:
                for band in self.bands:
                    band.set(5, gptr)
                grow.set(3, gptr)
                self.gptr = gptr
            cnt = self.cnt.get(stream)
            if cnt is None:  # ticket counters (zero; the kernel puts them back to zero), per stream
                cnt = self.cnt[stream] = _zeroed(self.device, torch.int32, self.cnt_n).data_ptr()
            grow.set(7, cnt)
        ws = workspace(self.index, stream).data_ptr()
        off = self.off
        proj, o, t, h = base + off["proj"], base + off["o"], base + off["t"], base + off["h"]
        qg = base + off["qg"] if off["qg"] is not None else 0
        bufs = (base + off["x0"], base + off["x1"])
        x = hidden.data_ptr()
        last = len(self.layers) - 1
        y_last = out.data_ptr()
        for i, (band, w_in, w_qg, w_ao, w_ff, w_out, g1, b1, g2, b2) in enumerate(self.layers):
            y = y_last if i == last else bufs[i & 1]
            w_in(x, proj, stream, ws)
            if grow is not None:
                w_qg(x, qg, stream, ws)
            band(stream)
            if grow is not None:
                grow(stream)
            w_ao(o, t, stream, ws)
            ln.set(0, t), ln.set(1, x), ln.set(2, g1), ln.set(3, b1), ln.set(4, h)
            ln(stream)
            w_ff(h, proj, stream, ws)
            w_out(proj, t, stream, ws)
            ln.set(0, t), ln.set(1, h), ln.set(2, g2), ln.set(3, b2), ln.set(4, y)
            ln(stream)
            x = y
        return out


def _check_layers(model: "FastLongformerModel", dtype: torch.dtype) -> None:
    """Raise unless every layer fits the native path: GELU epilogue, one LayerNorm eps, weights of the
    activations' dtype, contiguous and 16-byte aligned."""
    eps = model.layers[0].ln1.eps
    for layer in model.layers:
        if not layer.gelu_epilogue or layer.ln1.eps != eps or layer.ln2.eps != eps:
            raise RuntimeError("layers without a GELU epilogue or with different LayerNorm eps")
        for p in (layer.w_in, layer.b_in, layer.w_qg, layer.b_qg, layer.attn_out.weight, layer.attn_out.bias,
                  layer.inter.weight, layer.inter.bias, layer.out.weight, layer.out.bias, layer.ln1.weight,
                  layer.ln1.bias, layer.ln2.weight, layer.ln2.bias):
            if p.dtype != dtype or not p.is_contiguous() or p.data_ptr() % 16:
                raise RuntimeError("weights of another dtype, or not contiguous / 16-byte aligned")


def _probe_error(got: torch.Tensor, ref: torch.Tensor, gidx: Optional[torch.Tensor]) -> float:
    """The larger of: relative L2 error over all rows, over the global rows alone (a wrong global-row launch
    touches a handful of rows, invisible in the total), and the largest element error relative to the largest
    magnitude / 2.5; NaN when the output is not finite."""
    g, r = got.float(), ref.float()
    if not torch.isfinite(g).all():
        return float("nan")
    errs = [(g - r).norm() / r.norm().clamp_min(1e-6), (g - r).abs().max() / r.abs().max().clamp_min(1e-6) / 2.5]
    if gidx is not None:
        rows = gidx.long().clamp_min(0)
        rows = rows.expand(g.shape[0], -1)[:, :, None].expand(-1, -1, g.shape[2])
        gg, rg = g.gather(1, rows), r.gather(1, rows)
        errs.append((gg - rg).norm() / rg.norm().clamp_min(1e-6))
    return float(torch.stack(errs).max().item())


def _no_globals_like(device: torch.device) -> torch.Tensor:
    from ..kernels.window_global import _no_globals
    return _no_globals(device)


class NativeEager:
    """Per-model cache of ``NativeLayers`` by signature, with the eligibility checks and the probe: the first
    forward of a signature runs both paths and keeps the native one only if they agree."""

    def __init__(self, max_entries: int = 8) -> None:
        self.entries: "OrderedDict[tuple, Optional[NativeLayers]]" = OrderedDict()
        self.max_entries = max_entries
        self.weights: Optional[tuple] = None
        self.calls = 0
        self.refused: dict = {}

    def eligible(self, model: "FastLongformerModel", hidden: torch.Tensor, kpm: Optional[torch.Tensor]) -> bool:
        """CUDA inference without padding on the Triton backend, kernel global mode, GELU layers."""
        if os.environ.get("LONGAPPS_NATIVE_EAGER", "1") == "0" or kpm is not None or not hidden.is_cuda:
            return False
        if hidden.dtype not in (torch.float16, torch.bfloat16) or not hidden.is_contiguous():
            return False
        if model.training or torch.is_grad_enabled() or torch.is_autocast_enabled():
            return False
        if torch.cuda.is_current_stream_capturing() or torch.compiler.is_compiling():
            return False
        if model._backend(hidden) != "triton" or hidden.data_ptr() % 16 or hidden.get_device() != torch.cuda.current_device():
            return False
        return all(layer.global_mode in ("auto", "kernel") for layer in model.layers)

    def __call__(self, model: "FastLongformerModel", hidden: torch.Tensor, gidx: Optional[torch.Tensor],
                 kpm: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The encoder output through the native layers, or None (the caller runs the PyTorch-level path)."""
        if not self.eligible(model, hidden, kpm):
            return None
        from .longformer_graphs import _weights_fingerprint
        fp = _weights_fingerprint(model)
        if fp != self.weights:
            self.entries.clear()
            self.weights = fp
        key = (tuple(hidden.shape), None if gidx is None else tuple(gidx.shape), hidden.dtype, hidden.device)
        if key in self.entries:
            runner = self.entries[key]
            self.entries.move_to_end(key)
            if runner is None:
                return None
            self.calls += 1
            return runner(hidden, gidx)
        runner, ref = self._build(model, hidden, gidx)
        self.entries[key] = runner
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return ref  # this call: the PyTorch-level path's output (the probe's reference)

    def _build(self, model: "FastLongformerModel", hidden: torch.Tensor,
               gidx: Optional[torch.Tensor]) -> tuple:
        """(runner or None, the PyTorch-level output of this call or None)."""
        ref = None
        try:
            runner = NativeLayers(model, hidden, gidx)
            ref = model.encode(hidden, gidx, None, native=False)
            got = runner(hidden, gidx)
            err = _probe_error(got, ref, gidx)
        except Exception as e:  # noqa: BLE001 (an unhandled layout or library: keep the PyTorch-level path)
            self.refused[tuple(hidden.shape)] = f"{type(e).__name__}: {str(e)[:200]}"
            return None, ref
        if not err < 2e-2:
            self.refused[tuple(hidden.shape)] = f"probe mismatch (relative error {err:.3g})"
            return None, ref
        return runner, ref


__all__ = ["NativeEager", "NativeLayers"]
