"""Fused CPU inference forward of ``MambaEncoder`` (fp32 weights, no autograd), on the compiled C kernels of
``longapps.kernels.selective_scan_cpu``.

Per layer: add + RMSNorm (one C pass, the residual updated in place) -> in_proj (GEMM into a reused buffer)
-> causal conv + SiLU (C, reads x as a strided view of in_proj's output) -> x_proj (GEMM) -> the scan with
dt_proj, softplus, D skip and the SiLU(z) gate folded in (C, reads dt_low/B/C in place from x_proj's output and
z from in_proj's output: no dt tensor, no copies, no transposes) -> out_proj (GEMM into a reused buffer).
Every activation is token-major (b, L, channels) so each GEMM is one contiguous (b*L, k) x (k, m) product;
the buffers are allocated once per forward and shared by all layers (the first touch of a fresh multi-MB
buffer costs page faults, about a tenth of the time before).

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (or float16) the four GEMMs run in that dtype (fp32
accumulation; weights and activations rounded to it) while the norm, conv and scan stay fp32: the same ops
autocast runs in low precision in HF's ``MambaModel``. Without autocast all math is fp32.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..kernels import selective_scan_cpu as cpu


def usable(model: Any, input_ids: torch.Tensor) -> bool:
    """True when ``fused_forward`` applies: CPU, fp32 parameters, no gradient wanted, the kernels built,
    backend auto/torch, no gradient checkpointing in training."""
    if input_ids.device.type != "cpu" or model.backend not in ("auto", "torch"):
        return False
    if torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()):
        return False
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters()):
        return False
    if model.layers and model.layers[0].mixer.n > 64:
        return False
    return cpu.available()


_DNN: Optional[bool] = None    # whether oneDNN's fp32 linear (torch.ops.mkldnn._linear_pointwise) works here


def _dnn_ok() -> bool:
    """oneDNN's fp32 GEMM is 2.2-2.5x faster than the MKL sgemm behind torch.mm on the AMD dev box (MKL takes a
    slower code path off Intel) at the same fp32 accuracy; checked once against F.linear, else torch.mm."""
    global _DNN
    if _DNN is None:
        try:
            x, w, b = torch.randn(37, 24), torch.randn(40, 24), torch.randn(40)
            got = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
            _DNN = bool(torch.backends.mkldnn.is_available() and got.dtype == torch.float32
                        and torch.allclose(got, F.linear(x, w, b), rtol=1e-4, atol=1e-4))
        except Exception:  # noqa: BLE001  (no mkldnn build, op missing or changed)
            _DNN = False
    return _DNN


def _linear(x2: torch.Tensor, lin: torch.nn.Linear, low: Optional[torch.dtype]) -> torch.Tensor:
    """x2 @ W.T (+ b) for x2 (rows, k), fp32 out: oneDNN fp32 when usable; in ``low`` precision under autocast."""
    if low is not None:
        with torch.autocast("cpu", enabled=False):
            return F.linear(x2.to(low), lin.weight.to(low), None if lin.bias is None else lin.bias.to(low)).float()
    if _dnn_ok():
        return torch.ops.mkldnn._linear_pointwise(x2, lin.weight, lin.bias, "none", [], "")
    return F.linear(x2, lin.weight, lin.bias)


@torch.no_grad()
def fused_forward(model: Any, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The last hidden state (b, L, hidden) fp32, the same function as ``MambaEncoder.forward``."""
    low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    low = low if low in (torch.bfloat16, torch.float16) else None
    cfg = model.config
    threads = torch.get_num_threads()
    bsz, L = input_ids.shape
    H = cfg.hidden_size
    r = model.embeddings(input_ids)                  # a fresh tensor: the residual stream, updated in place
    r = r.float().contiguous() if r.dtype != torch.float32 or not r.is_contiguous() else r
    rows = bsz * L
    mask = None if attention_mask is None else attention_mask.to(torch.float32)[..., None]
    if not model.layers:
        return cpu.add_rmsnorm_cpu(r, None, model.norm_f.weight, model.norm_f.eps, threads=threads)
    m0 = model.layers[0].mixer
    d, n, R = m0.d_inner, m0.n, m0.rank
    h = torch.empty(bsz, L, H)
    xc = torch.empty(bsz, L, d)
    y = torch.empty(bsz, L, d)
    o = None
    for layer in model.layers:
        m = layer.mixer
        cpu.add_rmsnorm_cpu(r, o, layer.norm.weight, layer.norm.eps, out=h, threads=threads)
        if mask is not None:
            h.mul_(mask)
        xz = _linear(h.view(rows, H), m.in_proj, low).view(bsz, L, 2 * d)
        cpu.causal_conv1d_cpu(xz[..., :d], m.conv1d.weight.squeeze(1), m.conv1d.bias, True, threads=threads, out=xc)
        if mask is not None:
            xc.mul_(mask)
        xdbl = _linear(xc.view(rows, d), m.x_proj, low).view(bsz, L, R + 2 * n)
        cpu.mamba_scan_cpu(xc, xdbl, m.dt_proj.weight, m.dt_proj.bias, m.A(), m.D, xz[..., d:], out=y,
                           threads=threads)
        o = _linear(y.view(rows, d), m.out_proj, low).view(bsz, L, H)
    return cpu.add_rmsnorm_cpu(r, o, model.norm_f.weight, model.norm_f.eps, threads=threads)


__all__ = ["fused_forward", "usable"]
