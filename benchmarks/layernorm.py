"""Fused residual add + LayerNorm (``kernels/layernorm.py``) at the Longformer-base shapes: rows per program
and warps, against PyTorch's ``F.layer_norm(x + r)`` (the peer) in the same run. Bandwidth counts the bytes
the fused op must move (read x and r, write y); several input sets rotate so that L2 does not hold them.
Prints a table and writes JSON.

    python benchmarks/layernorm.py [--rows 16384 4096] [--dtype bf16] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SETTINGS = [(1, 4), (2, 4), (4, 4), (4, 8), (8, 8), (16, 8)]  # (rows per program, warps)


def _time(fns: list) -> float:
    """Median ms of one call, rotating over ``fns`` (one per input set)."""
    from triton.testing import do_bench
    it = iter(range(1 << 62))
    return do_bench(lambda: fns[next(it) % len(fns)](), warmup=25, rep=200, return_mode="median")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[16384, 4096])
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--dtype", default="bf16", choices=["fp16", "bf16"])
    ap.add_argument("--sets", type=int, default=6, help="input sets rotated per timing")
    ap.add_argument("--json")
    a = ap.parse_args()
    from longapps.kernels import layernorm
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    C = a.width
    w, b = torch.randn(C, device="cuda", dtype=dt), torch.randn(C, device="cuda", dtype=dt)
    out = {"device": torch.cuda.get_device_name(), "dtype": a.dtype, "width": C, "rows": []}
    print(f"## add + LayerNorm, {a.dtype}, width {C}, {out['device']}\n")
    print("| rows | kernel (rows/program, warps) | ms | GB/s | vs torch |")
    print("|---:|---|---:|---:|---:|")
    saved = dict(layernorm.LN_DEFAULTS)
    for M in a.rows:
        sets = [(torch.randn(M, C, device="cuda", dtype=dt), torch.randn(M, C, device="cuda", dtype=dt))
                for _ in range(a.sets)]
        nbytes = 3 * M * C * sets[0][0].element_size()
        t_torch = _time([lambda x=x, r=r: F.layer_norm(x + r, (C,), w, b, 1e-5) for x, r in sets])
        rows = [{"rows": M, "kernel": "torch F.layer_norm(x + r)", "ms": t_torch}]
        ref = F.layer_norm(sets[0][0].float() + sets[0][1].float(), (C,), w.float(), b.float(), 1e-5)
        for rpp, warps in SETTINGS:
            layernorm.LN_DEFAULTS.update(rows=rpp, num_warps=warps)
            y = layernorm.add_layernorm(*sets[0], w, b, 1e-5)
            err = float((y.float() - ref).abs().max())
            t = _time([lambda x=x, r=r: layernorm.add_layernorm(x, r, w, b, 1e-5) for x, r in sets])
            rows.append({"rows": M, "kernel": f"fused ({rpp}, {warps})", "rows_per_program": rpp, "warps": warps,
                         "ms": t, "max_abs_err_vs_fp32": err})
        layernorm.LN_DEFAULTS.clear()
        layernorm.LN_DEFAULTS.update(saved)
        for r in rows:
            r["gb_s"] = nbytes / r["ms"] / 1e6
            r["speedup_vs_torch"] = t_torch / r["ms"]
            print(f"| {M} | {r['kernel']} | {r['ms']:.4f} | {r['gb_s']:.0f} | {r['speedup_vs_torch']:.2f}x |", flush=True)
        out["rows"] += rows
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
