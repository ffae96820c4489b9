"""GPU time per kernel inside CUDA-graph replays (CUPTI records graph kernels): mamba-130m 1 x 4,096 and
Longformer-base 4 x 4,096, the two shapes whose targets are still open (issues 16 and 11). Prints a table per
model and writes JSON.

    python benchmarks/graph_profile.py [--json out.json] [--reps 5]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402


def replay_ms(replay, reps: int = 50) -> float:
    """Median wall time of one replay (CUDA events, no profiler)."""
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def profile_replay(replay, reps: int, label: str) -> dict:
    """Per-kernel CUDA time of ``reps`` replays (averaged per replay), top 25 printed, and the replay's wall
    time without the profiler (the difference to the kernel time: gaps between kernels, less overlap)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        replay()
    torch.cuda.synchronize()
    wall = replay_ms(replay)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            replay()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t and e.key and not e.key.startswith(("cudaGraphLaunch", "ProfilerStep")):
            rows.append({"kernel": e.key[:110], "us_per_replay": t / reps, "calls_per_replay": e.count / reps})
    rows.sort(key=lambda r: -r["us_per_replay"])
    total = sum(r["us_per_replay"] for r in rows)
    print(f"\n## {label}: {total / 1e3:.3f} ms of kernel time per replay, replay {wall:.3f} ms "
          f"({len(rows)} kernel names, {sum(r['calls_per_replay'] for r in rows):.0f} launches)", flush=True)
    print("| kernel | us / replay | calls | share |\n|---|---:|---:|---:|")
    for r in rows[:25]:
        print(f"| {r['kernel']} | {r['us_per_replay']:.1f} | {r['calls_per_replay']:.0f} | {r['us_per_replay'] / total:.1%} |")
    return {"label": label, "total_us": total, "replay_ms": wall, "rows": rows[:60]}


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", choices=["mamba", "longformer"], help="profile one model")
    ap.add_argument("--global-mode", nargs="+", default=["auto"], choices=["auto", "kernel", "hidden"],
                    help="Longformer global-row modes to profile (one table each)")
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="Longformer precision")
    a = ap.parse_args()
    out = {"device": torch.cuda.get_device_name()}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    torch.set_grad_enabled(False)
    if a.only != "longformer":
        from mamba_gpu import mamba_130m
        model, cfg = mamba_130m()
        ids = torch.randint(0, cfg.vocab_size, (1, 4096), device="cuda")
        g = model.cuda_graph(ids)
        out["mamba_1x4096"] = profile_replay(g.replay, a.reps, "mamba-130m bf16, 1 x 4,096, graph replay")
        del g, model
        torch.cuda.empty_cache()
    if a.only != "mamba":
        from transformers import LongformerConfig, LongformerModel

        from longapps.models.longformer import FastLongformerModel
        lcfg = LongformerConfig(max_position_embeddings=4098)
        fast = FastLongformerModel.from_hf(LongformerModel(lcfg).to(DTYPES[a.dtype]).cuda().eval()).eval().disable_graphs()
        ids = torch.randint(3, lcfg.vocab_size, (4, 4096), device="cuda")
        am = torch.ones(4, 4096, dtype=torch.long, device="cuda")
        gm = torch.zeros(4, 4096, dtype=torch.long, device="cuda")
        gm[:, 0] = 1
        for mode in a.global_mode:
            for layer in fast.layers:
                layer.global_mode = mode
            runner = fast.cuda_graph(ids, am, gm)
            runner(ids, am, gm)
            key = "longformer_4x4096" + ("" if mode == "auto" else f"_{mode}")
            out[key] = profile_replay(runner.graph.replay, a.reps,
                                      f"Longformer-base {a.dtype}, 4 x 4,096, global mode {mode}, graph replay")
            del runner
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
