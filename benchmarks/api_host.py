"""Host cost of the public call path (issue 11): microseconds of CPU time per call, with the GPU kept busy
enough that no call waits on it (calls issued back to back, one sync at the end), for ``attention()``, the
kernel entry point it wraps, and the eager Longformer forward; plus a cProfile of the slowest so the next
change has a target.

    python benchmarks/api_host.py --json out.json
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402


def host_us(fn, calls: int = 200) -> float:
    """Median over 5 rounds of (host seconds for ``calls`` calls issued back to back) / calls, in us."""
    fn()
    torch.cuda.synchronize()
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - t0) / calls * 1e6)
        torch.cuda.synchronize()
    rounds.sort()
    return rounds[2]


def profile_text(fn, calls: int = 100, top: int = 18) -> str:
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(calls):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def longformer_host(res: dict) -> None:
    """Host cost and profile of the eager (graphless) Longformer-base forward, batch 1, 4096 tokens."""
    try:  # eager Longformer-base forward, batch 1, 4096 tokens
        from transformers import LongformerConfig, LongformerModel

        from longapps.models.longformer import FastLongformerModel
        cfg = LongformerConfig(max_position_embeddings=4098)
        fast = FastLongformerModel.from_hf(LongformerModel(cfg).cuda().half()).eval().disable_graphs()
        ids = torch.randint(3, cfg.vocab_size, (1, 4096), device="cuda")
        gm = torch.zeros_like(ids)
        gm[:, 0] = 1
        with torch.no_grad():
            fwd = lambda: fast(input_ids=ids, global_attention_mask=gm)  # noqa: E731
            res["us_per_call"]["longformer_eager_forward"] = host_us(fwd, calls=10)
            print(f"  host longformer eager forward: {res['us_per_call']['longformer_eager_forward']:.0f} us/call")
            res["profile_longformer"] = profile_text(fwd, calls=10, top=25)
            print(res["profile_longformer"][:4500])
    except Exception as e:  # noqa: BLE001
        print(f"  longformer host profile failed: {e!r}"[:300])


def main() -> None:
    from longapps.attention import Linear, SinksWindow, SlidingWindow, WindowGlobal, attention
    from longapps.attention.prepared import global_table
    from longapps.kernels.window_global import window_global_forward
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-longformer", action="store_true", help="skip the eager Longformer forward's host cost")
    a = ap.parse_args()
    res: dict = {"device": torch.cuda.get_device_name(), "us_per_call": {}}
    N = 4096  # short: the GPU part is small, so the host part shows
    q, k, v = [torch.randn(1, 16, N, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    pats = {"window_global": WindowGlobal(256, [0]), "sliding": SlidingWindow(256), "sinks": SinksWindow(4, 512),
            "linear": Linear()}
    fns = {f"attention/{name}": (lambda p=p: attention(q, k, v, p)) for name, p in pats.items()}
    g = global_table(pats["window_global"], q.device)
    fns["kernel/window_global"] = lambda: window_global_forward(q, k, v, 256, g, False, gidx_prepared=True)
    fns["torch.empty (reference point)"] = lambda: torch.empty(1, 16, N, 64, device="cuda")
    for name, fn in fns.items():
        res["us_per_call"][name] = host_us(fn)
        print(f"  host {name:34s} {res['us_per_call'][name]:8.1f} us/call", flush=True)
    worst = max((n for n in fns if n.startswith("attention/")), key=lambda n: res["us_per_call"][n])
    res["profile_" + worst] = profile_text(fns[worst])
    print(res["profile_" + worst][:3500])
    if not a.no_longformer:
        longformer_host(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
