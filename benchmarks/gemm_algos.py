"""The Longformer-base encoder's GEMMs on this GPU: cuBLASLt's first-choice algorithm vs the fastest of its top
candidates (timed here), torch's own call, and a large square GEMM as the practical bf16/fp16 peak. Prints a
table and writes JSON. Issue 11 asks for the encoder near the GEMM floor; this says where that floor is.

    python benchmarks/gemm_algos.py [--batch 1 4] [--n 4096] [--dtype fp16] [--candidates 16] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402


def _time(fn, reps: int = 30, inner: int = 5) -> float:
    """Median ms of ``fn`` (``inner`` back-to-back calls per timing, CUDA events)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(inner):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / inner)
    return statistics.median(times)


def gemm_row(rows: int, k: int, n: int, gelu: bool, dtype: torch.dtype, count: int) -> dict:
    """One shape: torch, cuBLASLt heuristic #1, best of the top ``count`` (ms and TFLOP/s)."""
    from longapps.kernels.cublaslt import LtLinear, LtShape, workspace
    dev = torch.cuda.current_device()
    x = torch.randn(rows, k, device="cuda", dtype=dtype)
    w = torch.randn(n, k, device="cuda", dtype=dtype) * k ** -0.5
    b = torch.randn(n, device="cuda", dtype=dtype)
    y = torch.empty(rows, n, device="cuda", dtype=dtype)
    stream = torch.cuda.current_stream().cuda_stream
    ws = workspace(dev, stream).data_ptr()
    if gelu:
        torch_fn = lambda: torch._addmm_activation(b, x, w.t(), use_gelu=True)  # noqa: E731
    else:
        torch_fn = lambda: torch.nn.functional.linear(x, w, b)  # noqa: E731
    ref = torch_fn()
    shape = LtShape(dev, dtype, rows, k, n, gelu)
    desc = shape.make_desc(b.data_ptr())
    cands = shape.candidates(desc, count)
    flop = 2.0 * rows * k * n
    times = []
    for i, c in enumerate(cands):
        shape.algo = c
        lin = LtLinear(shape, w, b)
        lin.bind(x.data_ptr(), y.data_ptr(), stream, ws)
        try:
            lin()
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001 (an algorithm this shape cannot run)
            continue
        err = float((y.float() - ref.float()).abs().max())
        times.append((_time(lin), i, err))
    t_torch = _time(torch_fn)
    first = next((t for t in times if t[1] == 0), None)
    best = min(times)
    row = {"rows": rows, "k": k, "n": n, "gelu": gelu, "candidates": len(cands), "torch_ms": t_torch,
           "lt_first_ms": first[0] if first else None, "lt_best_ms": best[0], "lt_best_index": best[1],
           "lt_best_max_abs_diff_vs_torch": best[2]}
    for key in ("torch_ms", "lt_first_ms", "lt_best_ms"):
        if row[key]:
            row[key.replace("_ms", "_tflops")] = flop / row[key] / 1e9
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"])
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--json")
    a = ap.parse_args()
    dtype = torch.float16 if a.dtype == "fp16" else torch.bfloat16
    C, F = 768, 3072
    out = {"device": torch.cuda.get_device_name(), "dtype": a.dtype, "rows": []}
    shapes = []
    for bsz in a.batch:
        M = bsz * a.n
        shapes += [(M, C, 3 * C, False, "input q/k/v"), (M, C, 5 * C, False, "input q/k/v/k_g/v_g"),
                   (M, C, C, False, "attention output"), (M, C, F, True, "intermediate + GELU"),
                   (M, F, C, False, "output")]
    shapes.append((8192, 8192, 8192, False, "square 8192 (peak)"))
    print(f"## cuBLASLt GEMMs on {out['device']}, {a.dtype}\n")
    print("| GEMM | rows x k x n | torch ms | Lt #1 ms | Lt best ms (index) | TFLOP/s torch / #1 / best |")
    print("|---|---|---:|---:|---:|---|")
    for rows, k, n, gelu, label in shapes:
        r = gemm_row(rows, k, n, gelu, dtype, a.candidates)
        r["label"] = label
        out["rows"].append(r)
        print(f"| {label} | {rows} x {k} x {n} | {r['torch_ms']:.4f} | {r['lt_first_ms'] or float('nan'):.4f} | "
              f"{r['lt_best_ms']:.4f} ({r['lt_best_index']}/{r['candidates']}) | {r['torch_tflops']:.0f} / "
              f"{r.get('lt_first_tflops', float('nan')):.0f} / {r['lt_best_tflops']:.0f} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
