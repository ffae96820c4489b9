"""Probe: the window (band) attention loop with TMA tensor descriptors vs the pointer-load kernel.

Band only (non-causal, window W, no global tokens, no padding), contiguous (B, H, N, D) inputs.
Each variant is checked against the reference on a small shape, then timed (CUDA graph replay,
`longapps.attention.bench.graph_of` / `measure`) beside the production kernel
(`longapps.kernels.window_global`) in the same run. (Run 28 timed a graph of 10 calls instead.)

    python benchmarks/wg_band_probe.py [--n 16384] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import traceback

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

sys.path.insert(0, ".")
from longapps.attention.bench import graph_of, measure  # noqa: E402
from longapps.kernels._common import LOG2E  # noqa: E402
from longapps.kernels.window_global import (_online_softmax_step, reference_window_global,  # noqa: E402
                                            window_global_forward)


@triton.jit
def _loop(acc, l_i, m_i, q, desc_k, desc_v, row0, offs_m, lo, hi, N, W, qk_scale,
          MASKED: tl.constexpr, BLOCK_N: tl.constexpr, WS: tl.constexpr):
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=WS):
        k = desc_k.load([row0 + start_n, 0])
        v = desc_v.load([row0 + start_n, 0])
        qk = tl.dot(q, k.T)
        if MASKED:
            offs_n = start_n + tl.arange(0, BLOCK_N)
            diff = offs_m[:, None] - offs_n[None, :]
            ok = (diff <= W) & (diff >= -W) & (offs_n[None, :] < N)
            qk = tl.where(ok, qk, float("-inf"))
        acc, l_i, m_i = _online_softmax_step(acc, l_i, m_i, qk, v, qk_scale, v.dtype)
    return acc, l_i, m_i


@triton.jit
def _band_tma_kernel(desc_q, desc_k, desc_v, O, N, W, qk_scale,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                     SPLIT: tl.constexpr, WS: tl.constexpr):
    bh = tl.program_id(0)
    t = tl.program_id(1)
    m0 = t * BLOCK_M
    row0 = bh * N
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = desc_q.load([row0 + m0, 0])
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    lo = (tl.maximum(m0 - W, 0) // BLOCK_N) * BLOCK_N
    hi = tl.minimum(N, m0 + BLOCK_M + W)
    if SPLIT:
        ilo = ((tl.maximum(m0 + BLOCK_M - 1 - W, 0) + BLOCK_N - 1) // BLOCK_N) * BLOCK_N
        ilo = tl.minimum(tl.maximum(ilo, lo), hi)
        ihi = tl.minimum(((m0 + W + 1) // BLOCK_N) * BLOCK_N, (N // BLOCK_N) * BLOCK_N)
        ihi = tl.maximum(ihi, ilo)
        acc, l_i, m_i = _loop(acc, l_i, m_i, q, desc_k, desc_v, row0, offs_m, lo, ilo, N, W, qk_scale,
                              True, BLOCK_N, False)
        acc, l_i, m_i = _loop(acc, l_i, m_i, q, desc_k, desc_v, row0, offs_m, ilo, ihi, N, W, qk_scale,
                              False, BLOCK_N, WS)
        acc, l_i, m_i = _loop(acc, l_i, m_i, q, desc_k, desc_v, row0, offs_m, ihi, hi, N, W, qk_scale,
                              True, BLOCK_N, False)
    else:
        acc, l_i, m_i = _loop(acc, l_i, m_i, q, desc_k, desc_v, row0, offs_m, lo, hi, N, W, qk_scale,
                              True, BLOCK_N, WS)
    out = acc / l_i[:, None]
    tl.store(O + (row0 + offs_m)[:, None].to(tl.int64) * BLOCK_D + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=offs_m[:, None] < N)


def band_tma(q, k, v, window, bm=64, bn=64, warps=4, stages=3, split=True, ws=False):
    B, H, N, D = q.shape
    scale = 1.0 / math.sqrt(D)
    o = torch.empty_like(q)
    q2, k2, v2 = (t.reshape(B * H * N, D) for t in (q, k, v))
    dq = TensorDescriptor.from_tensor(q2, [bm, D])
    dk = TensorDescriptor.from_tensor(k2, [bn, D])
    dv = TensorDescriptor.from_tensor(v2, [bn, D])
    _band_tma_kernel[(B * H, triton.cdiv(N, bm))](dq, dk, dv, o, N, window, scale * LOG2E,
                                                  BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=D, SPLIT=split, WS=ws,
                                                  num_warps=warps, num_stages=stages)
    return o


VARIANTS = [  # name, kwargs
    ("tma 64x64 w4 s3", dict(bm=64, bn=64, warps=4, stages=3)),
    ("tma 64x64 w4 s4", dict(bm=64, bn=64, warps=4, stages=4)),
    ("tma 64x64 w4 s2", dict(bm=64, bn=64, warps=4, stages=2)),
    ("tma 128x64 w8 s3", dict(bm=128, bn=64, warps=8, stages=3)),
    ("tma 128x128 w8 s3", dict(bm=128, bn=128, warps=8, stages=3)),
    ("tma 128x64 w4 s3", dict(bm=128, bn=64, warps=4, stages=3)),
    ("tma 64x128 w4 s3", dict(bm=64, bn=128, warps=4, stages=3)),
    ("tma 64x64 w4 s3 one loop", dict(bm=64, bn=64, warps=4, stages=3, split=False)),
    ("tma 64x64 w4 s3 ws", dict(bm=64, bn=64, warps=4, stages=3, ws=True)),
    ("tma 128x128 w8 s3 ws", dict(bm=128, bn=128, warps=8, stages=3, ws=True)),
    ("tma 64x64 w4 s3 one loop ws", dict(bm=64, bn=64, warps=4, stages=3, split=False, ws=True)),
]


def graph_ms(fn) -> float:
    """Median ms of a CUDA-graph replay of ``fn`` (eager if capture fails)."""
    rep = graph_of(fn)
    return measure(rep if rep is not None else fn)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[16384])
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    # correctness on a small odd shape
    qs, ks, vs = (torch.randn(1, 2, 1000, 64, device=dev, dtype=torch.bfloat16) for _ in range(3))
    ref = reference_window_global(qs, ks, vs, 100, compute_dtype=torch.float32)
    rows = []
    ok = {}
    for name, kw in VARIANTS:
        try:
            o = band_tma(qs, ks, vs, 100, **kw)
            err = (o.float() - ref.float()).abs().max().item()
            ok[name] = err < 0.05
            print(f"check {name}: max abs err {err:.4f}", flush=True)
        except Exception as e:  # compile failures are results too
            ok[name] = False
            print(f"check {name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
            traceback.print_exc(limit=1)
    for n in a.n:
        B, H, D, W = 1, 16, 64, a.window
        q, k, v = (torch.randn(B, H, n, D, device=dev, dtype=torch.bfloat16) for _ in range(3))
        pairs = sum(min(n - 1, i + W) - max(0, i - W) + 1 for i in range(n))
        flops = 4 * D * H * B * pairs
        base = graph_ms(lambda: window_global_forward(q, k, v, W))
        rows.append({"n": n, "variant": "production kernel (default)", "ms": base, "tflops": flops / base / 1e9})
        for name, kw in VARIANTS:
            if not ok[name]:
                continue
            try:
                ms = graph_ms(lambda: band_tma(q, k, v, W, **kw))
            except Exception as e:
                print(f"time {name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
                continue
            rows.append({"n": n, "variant": name, "ms": ms, "tflops": flops / ms / 1e9, "vs_prod": base / ms})
    print(f"## band probe ({torch.cuda.get_device_name()}, bf16, B1 H16 D64, window {a.window}) triton {triton.__version__}")
    print(f"{'N':>6} {'variant':34} {'ms':>8} {'TFLOP/s':>8} {'x prod':>6}")
    for r in rows:
        print(f"{r['n']:>6} {r['variant']:34} {r['ms']:8.4f} {r['tflops']:8.1f} {r.get('vs_prod', 1.0):6.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "triton": triton.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
