"""Host (enqueue) time per call of the ATen / Triton operations an eager Longformer layer issues, on this
machine's CPU: what a graphless forward pays per op. GPU work is queued behind a long sleep kernel so that no
call waits for the device; each op is called ``--calls`` times and the host time per call is the median of
``--rounds`` rounds. Prints a table and writes JSON (``--json``).

    python benchmarks/host_ops.py --json host_ops.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def _host_us(fn, calls: int, rounds: int) -> float:
    """Median over rounds of the host time per call (us), the GPU kept busy so no call blocks."""
    per = []
    for _ in range(rounds):
        torch.cuda._sleep(int(2e8))  # ~0.1 s of GPU time queued first: the calls below never wait
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per.append((time.perf_counter() - t0) / calls * 1e6)
        torch.cuda.synchronize()
    return sorted(per)[len(per) // 2]


def ops(N: int = 4096, C: int = 768) -> dict:
    """The candidate calls, bf16, Longformer-base shapes at ``N`` tokens."""
    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(N, C, device=dev, dtype=dt)
    x3 = x.view(1, N, C)
    w = torch.randn(3 * C, C, device=dev, dtype=dt)
    b = torch.randn(3 * C, device=dev, dtype=dt)
    wt = w.t()
    wi = torch.randn(4 * C, C, device=dev, dtype=dt)
    bi = torch.randn(4 * C, device=dev, dtype=dt)
    out = torch.empty(N, 3 * C, device=dev, dtype=dt)
    ln_w = torch.ones(C, device=dev, dtype=dt)
    ln_b = torch.zeros(C, device=dev, dtype=dt)
    from longapps.kernels.layernorm import add_layernorm

    gsel = torch.zeros(1, 1, C, dtype=torch.long, device=dev)
    return {
        "F.linear(x3, w, b) [cuBLASLt + bias epilogue]": lambda: F.linear(x3, w, b),
        "F.linear(x, w, b) 2-D": lambda: F.linear(x, w, b),
        "torch.addmm(b, x, w.t() cached)": lambda: torch.addmm(b, x, wt),
        "F.linear(x, w) no bias": lambda: F.linear(x, w),
        "torch.mm(x, w.t() cached)": lambda: torch.mm(x, wt),
        "torch.mm(x, wt, out=buf)": lambda: torch.mm(x, wt, out=out),
        "torch.matmul(x, wt)": lambda: torch.matmul(x, wt),
        "_addmm_activation gelu (FFN in)": lambda: torch._addmm_activation(bi, x, wi.t(), use_gelu=True),
        "torch.empty(N, C)": lambda: torch.empty(N, C, device=dev, dtype=dt),
        "x.view(1, N, 12, 64)": lambda: x.view(1, N, 12, 64),
        "x3.transpose(1, 2)": lambda: x3.transpose(1, 2),
        "torch.gather(x3, 1, gsel)": lambda: torch.gather(x3, 1, gsel),
        "add_layernorm (Triton, raw launch)": lambda: add_layernorm(x3, x3, ln_w, ln_b, 1e-5),
        "x + x (one elementwise kernel)": lambda: x + x,
        "event record + wait (fork)": _fork_op(),
        "torch.empty_like(x3)": lambda: torch.empty_like(x3),
        "raw stream handle": lambda: torch._C._cuda_getCurrentRawStream(0),
        "_no_launch_hooks()": _no_hooks(),
        **_attention_ops(N),
    }


def _no_hooks():
    from longapps.kernels._common import _no_launch_hooks
    return _no_launch_hooks


def _attention_ops(N: int) -> dict:
    """``window_global_forward`` as the Longformer layer calls it (b1, 12 heads, window 256, 1 global token),
    global rows beside the band on a side stream ("first") or after it on the same stream ("launch")."""
    from longapps.kernels.window_global import window_global_forward
    dev, dt = "cuda", torch.float16
    proj = torch.randn(1, N, 5, 12, 64, device=dev, dtype=dt)
    q, k, v, kg, vg = (proj[:, :, i].transpose(1, 2) for i in range(5))
    qg = torch.randn(1, 12, 1, 64, device=dev, dtype=dt)
    gidx = torch.zeros(1, 1, dtype=torch.int32, device=dev)
    o = torch.empty(1, N, 12, 64, device=dev, dtype=dt)
    rows = {}
    for grows in ("first", "launch"):
        rows[f"window_global_forward b1 (grows={grows})"] = (
            lambda g=grows: window_global_forward(q, k, v, 256, gidx, False, None, None, global_qkv=(qg, kg, vg),
                                                  out=o.transpose(1, 2), gidx_prepared=True, grows=g))
    return rows


def _fork_op():
    side = torch.cuda.Stream()
    main = torch.cuda.current_stream()

    def fn():
        e = torch.cuda.Event()
        e.record(main)
        side.wait_event(e)
    return fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = {}
    for backend in ("default", "cublas"):
        if backend == "cublas":
            try:
                torch.backends.cuda.preferred_blas_library("cublas")
            except Exception as e:  # noqa: BLE001
                print(f"preferred_blas_library('cublas') failed: {e!r}")
                break
        for name, fn in ops().items():
            if backend == "cublas" and not any(k in name for k in ("linear", "mm", "matmul", "activation")):
                continue
            fn()
            torch.cuda.synchronize()
            try:
                us = _host_us(fn, args.calls, args.rounds)
            except Exception as e:  # noqa: BLE001
                print(f"{name}: failed {e!r}"[:200])
                continue
            rows[f"{name} [{backend}]"] = us
            print(f"| {name} | {backend} | {us:.1f} |", flush=True)
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "host_us_per_call": rows,
           "cpu": os.cpu_count()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
