"""Where the host time of one eager (graphless) FastLongformerModel forward goes, on CUDA: torch.profiler CPU
self time per op (ATen calls, Triton launches) and the Python functions with the most own time (cProfile).

    python benchmarks/longformer_host.py [--batch 1] [--n 4096] [--json out.json]

--ops adds the host time of single calls at the layer's shapes (median of 200 enqueues, no sync between):
cuBLASLt addmm (F.linear with bias) against cuBLAS mm (no bias), the GELU-epilogue GEMM, add_layernorm,
torch.empty, a gather, to show which calls a leaner eager layer should avoid.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--host-only", action="store_true", help="only the host time per forward (no profilers)")
    ap.add_argument("--ops", action="store_true", help="also the host time of single calls (see above)")
    ap.add_argument("--json")
    a = ap.parse_args()
    from transformers import LongformerConfig, LongformerModel

    from longapps.models.longformer import FastLongformerModel

    torch.manual_seed(0)
    cfg = LongformerConfig(max_position_embeddings=max(4098, a.n + 2))
    fast = FastLongformerModel.from_hf(LongformerModel(cfg).half().cuda().eval()).eval().disable_graphs()
    ids = torch.randint(3, cfg.vocab_size, (a.batch, a.n), device="cuda")
    am = torch.ones(a.batch, a.n, dtype=torch.long, device="cuda")
    gm = torch.zeros(a.batch, a.n, dtype=torch.long, device="cuda")
    gm[:, 0] = 1
    fn = lambda: fast(input_ids=ids, attention_mask=am, global_attention_mask=gm)  # noqa: E731
    out: dict = {"batch": a.batch, "n": a.n}
    with torch.no_grad():
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        hosts = []
        for _ in range(10):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            hosts.append((time.perf_counter() - t0) * 1e3)
        torch.cuda.synchronize()
        out["host_ms_median"] = sorted(hosts)[len(hosts) // 2]
        print(f"host (enqueue) per eager forward: {out['host_ms_median']:.3f} ms", flush=True)
        if a.ops:
            out["ops_host_us"] = ops_host(fast, a.batch, a.n)
        if a.host_only:
            return
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        print(table, flush=True)
        out["profiler_table"] = table
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(30)
        print(s.getvalue(), flush=True)
        out["cprofile"] = s.getvalue()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


def ops_host(fast, batch: int, n: int) -> dict:
    """Median host microseconds per call of the eager layer's building blocks (layer 0's weights)."""
    import torch.nn.functional as F

    from longapps.kernels.layernorm import add_layernorm

    layer = fast.layers[0]
    x = torch.randn(batch, n, 768, device="cuda", dtype=torch.float16)
    h4 = torch.randn(batch * n, 3072, device="cuda", dtype=torch.float16)
    w, b = layer.attn_out.weight, layer.attn_out.bias
    idx = torch.zeros(batch, 1, 768, dtype=torch.long, device="cuda")
    calls = {
        "F.linear 768->768 with bias (cuBLASLt addmm)": lambda: F.linear(x, w, b),
        "F.linear 768->768 no bias (cuBLAS mm)": lambda: F.linear(x, w),
        "torch.mm 2-D no bias": lambda: torch.mm(x.view(-1, 768), w.t()),
        "F.linear 768->2304 with bias (qkv)": lambda: F.linear(x, layer.w_in[:2304], layer.b_in[:2304]),
        "_addmm_activation gelu 768->3072": lambda: layer._intermediate(x),
        "F.linear 3072->768 with bias": lambda: F.linear(h4, layer.out.weight, layer.out.bias),
        "add_layernorm": lambda: add_layernorm(x, x, layer.ln1.weight, layer.ln1.bias, layer.ln1.eps),
        "torch.empty (B, N, 12, 64)": lambda: torch.empty(batch, n, 12, 64, dtype=x.dtype, device="cuda"),
        "torch.gather 1 row": lambda: torch.gather(x, 1, idx),
        "view+transpose": lambda: x.view(batch, n, 12, 64).transpose(1, 2),
    }
    # (the single native calls run on the addresses of the last forward's freed scratch: timing only)
    runner = next((r for r in (fast.native.entries.values() if fast.native else ()) if r is not None), None)
    if runner is not None:  # the native layers' single calls (models/longformer_native.py), layer 0's
        band, w_in, _, _, w_ao, ln1 = runner.layers[0][:6]
        calls.update({"native: cublasLtMatmul 768->768 (LtLinear)": w_ao, "native: cublasLtMatmul 768->3840": w_in,
                      "native: cuLaunchKernel add+LayerNorm": ln1, "native: cuLaunchKernel band attention": band})
        gidx = torch.zeros(batch, 1, dtype=torch.int32, device="cuda")
        calls["native: all 12 layers (one forward, no embeddings)"] = lambda: runner(x.view(batch, n, 768), gidx)
        calls["fast.embeddings"] = lambda: fast.embeddings(input_ids=torch.zeros(batch, n, dtype=torch.long, device="cuda"))
    res = {}
    for name, fn in calls.items():
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(200):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e6)
        torch.cuda.synchronize()
        res[name] = sorted(ts)[len(ts) // 2]
        print(f"  host {name}: {res[name]:.1f} us", flush=True)
    return res


if __name__ == "__main__":
    main()
