"""Host cost of the public call path (issue 11): microseconds of CPU time per call, with the GPU kept busy
enough that no call waits on it (calls issued back to back, one sync at the end), for ``attention()``, the
kernel entry point it wraps, and the eager Longformer forward; plus a cProfile of the slowest so the next
change has a target.

    python benchmarks/api_host.py --json out.json
    python benchmarks/api_host.py --cpu-stub      # no GPU: the Python path alone (see cpu_stub)
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
if "--cpu-stub" in sys.argv:  # the interpreter must be chosen before triton is imported
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def host_us(fn, calls: int = 200) -> float:
    """Median over 5 rounds of (host seconds for ``calls`` calls issued back to back) / calls, in us."""
    fn()
    _sync()
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - t0) / calls * 1e6)
        _sync()
    rounds.sort()
    return rounds[2]


def back_to_back_ms(fn, calls: int = 200) -> float:
    """GPU milliseconds per call of ``calls`` calls queued back to back with no cache flush or host sync
    between them (CUDA events around the whole loop): a call's end-to-end cost in a loop, host included
    whenever the host is the slower side."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(calls):
        fn()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / calls


def end_to_end(res: dict, ns=(4096, 16384)) -> None:
    """attention() called in a loop vs the kernel's CUDA-graph replay in a loop (same inputs), B1 H16 D64
    bf16: the ratio is what the host adds end to end when nothing else hides it (no L2 flush between)."""
    from longapps.attention import Linear, SinksWindow, SlidingWindow, WindowGlobal, attention
    from longapps.attention.bench import _ours, graph_of
    out = res.setdefault("back_to_back_ms", {})
    for n in ns:
        q, k, v = [torch.randn(1, 16, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
        for name, p in (("window_global", WindowGlobal(256, [0])), ("sliding", SlidingWindow(256)),
                        ("sinks", SinksWindow(4, 512)), ("linear", Linear())):
            qq, kk = (q * 0.1, k * 0.1) if name == "linear" else (q, k)
            try:
                api = back_to_back_ms(lambda: attention(qq, kk, v, p))
                rep = graph_of(_ours(p, qq, kk, v))
                ker = back_to_back_ms(rep) if rep is not None else float("nan")
            except Exception as e:  # noqa: BLE001
                print(f"  back-to-back {name} n={n} failed: {e!r}"[:300], flush=True)
                continue
            out[f"{name}/{n}"] = {"attention": api, "kernel_graph": ker, "ratio": api / ker}
            print(f"  back-to-back n={n:6d} {name:14s} attention() {api:.4f} ms/call, kernel graph {ker:.4f}: "
                  f"{api / ker:.2f}x", flush=True)
        del q, k, v


def profile_text(fn, calls: int = 100, top: int = 18) -> str:
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(calls):
        fn()
    pr.disable()
    _sync()
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


def cpu_stub(calls: int = 2000) -> dict:
    """The Python part of ``attention()`` without a GPU: Triton path under ``TRITON_INTERPRET=1`` on CPU
    tensors (B1 H16 N4096 D64 fp16) with every kernel launch replaced by a no-op (``KernelLauncher.__call__``),
    so what is timed is validation, planning/caching, allocations and argument set-up. CUDA-only work (stream
    fork/join, Triton's C launcher) is not in it. Reports load average and CPU time next to wall time."""
    from longapps.attention import Linear, SinksWindow, SlidingWindow, WindowGlobal, attention
    from longapps.kernels import _common
    launches = [0]

    def no_launch(self, *a, **kw):  # the stub: count, do not run
        launches[0] += 1

    _common.KernelLauncher.__call__ = no_launch
    N = 4096
    q, k, v = [torch.randn(1, 16, N, 64, dtype=torch.float16) for _ in range(3)]
    pats = {"window_global": WindowGlobal(256, [0]), "sliding": SlidingWindow(256), "sinks": SinksWindow(4, 512),
            "linear": Linear()}
    res: dict = {"mode": "cpu-stub", "load_before": os.getloadavg(), "us_per_call": {}, "cpu_us_per_call": {},
                 "launches_per_call": {}}
    from longapps.attention.prepared import global_table
    from longapps.kernels.window_global import window_global_forward
    g = global_table(pats["window_global"], q.device)
    fns = {name: (lambda p=p: attention(q, k, v, p, backend="triton"))  # CPU tensors: "auto" would pick "banded"
           for name, p in pats.items()}
    fns["kernel entry window_global"] = lambda: window_global_forward(q, k, v, 256, g, False, gidx_prepared=True)
    for name, fn in fns.items():
        n0 = launches[0]
        fn()
        res["launches_per_call"][name] = launches[0] - n0
        for _ in range(50):
            fn()
        walls, cpus = [], []
        for _ in range(5):
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(calls):
                fn()
            walls.append((time.perf_counter() - t0) / calls * 1e6)
            cpus.append((time.process_time() - c0) / calls * 1e6)
        res["us_per_call"][name] = sorted(walls)[2]
        res["cpu_us_per_call"][name] = sorted(cpus)[2]
        print(f"  cpu-stub {name:28s} {res['us_per_call'][name]:7.1f} us/call wall, "
              f"{res['cpu_us_per_call'][name]:7.1f} us CPU, {res['launches_per_call'][name]} launch(es)", flush=True)
    t0 = time.perf_counter()
    for _ in range(calls):
        torch.empty(1, 16, N, 64, dtype=torch.float16)
    res["us_per_call"]["torch.empty (reference point)"] = (time.perf_counter() - t0) / calls * 1e6
    print(f"  cpu-stub torch.empty (reference)       {res['us_per_call']['torch.empty (reference point)']:7.1f} us")
    res["profile_window_global"] = profile_text(lambda: attention(q, k, v, pats["window_global"], backend="triton"),
                                                calls=500, top=14)
    print(res["profile_window_global"][:2500])
    res["load_after"] = os.getloadavg()
    print(f"  load average before {res['load_before']}, after {res['load_after']}")
    return res


def main() -> None:
    from longapps.attention import Linear, SinksWindow, SlidingWindow, WindowGlobal, attention
    from longapps.attention.prepared import global_table
    from longapps.kernels.window_global import window_global_forward
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-longformer", action="store_true", help="skip the eager Longformer forward's host cost")
    ap.add_argument("--cpu-stub", action="store_true", help="no GPU: time the Python path with launches stubbed")
    a = ap.parse_args()
    if a.cpu_stub:
        res = cpu_stub()
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
        return
    res: dict = {"device": torch.cuda.get_device_name(), "us_per_call": {}}
    N = 4096  # short: the GPU part is small, so the host part shows
    q, k, v = [torch.randn(1, 16, N, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    pats = {"window_global": WindowGlobal(256, [0]), "sliding": SlidingWindow(256), "sinks": SinksWindow(4, 512),
            "linear": Linear()}
    fns = {f"attention/{name}": (lambda p=p: attention(q, k, v, p)) for name, p in pats.items()}
    g = global_table(pats["window_global"], q.device)
    fns["kernel/window_global"] = lambda: window_global_forward(q, k, v, 256, g, False, gidx_prepared=True)
    fns["torch.empty (reference point)"] = lambda: torch.empty(1, 16, N, 64, device="cuda")
    from longapps.attention.dispatch import clear_plans
    from longapps.kernels import _common
    res["load_before"], c0 = os.getloadavg(), time.process_time()
    for name, fn in fns.items():
        res["us_per_call"][name] = host_us(fn)
        print(f"  host {name:34s} {res['us_per_call'][name]:8.1f} us/call", flush=True)
    res["raw_launch_stats"] = dict(_common._RAW_STATS)
    print(f"  direct C launches (RAW_LAUNCH={_common.RAW_LAUNCH}): {res['raw_launch_stats']}", flush=True)
    from longapps.kernels import window_global as wg
    if _common.RAW_LAUNCH:  # A/B in the same run: the planned calls through CompiledKernel.run instead
        _common.RAW_LAUNCH = False
        clear_plans()
        wg._PLANS.clear()  # (the plans hold their bound launches)
        for name, p in pats.items():
            key = f"attention/{name} (no direct C launch)"
            res["us_per_call"][key] = host_us(lambda p=p: attention(q, k, v, p))
            print(f"  host {key:34s} {res['us_per_call'][key]:8.1f} us/call", flush=True)
        _common.RAW_LAUNCH = True
        clear_plans()
        wg._PLANS.clear()
    res["load_after"], res["cpu_s"] = os.getloadavg(), time.process_time() - c0
    print(f"  load average {res['load_before']} -> {res['load_after']}, CPU {res['cpu_s']:.1f} s", flush=True)
    end_to_end(res)
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
