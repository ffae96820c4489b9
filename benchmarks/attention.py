"""Attention benchmark on the GPU: our Triton kernels vs SDPA (dense, masked) and compiled
FlexAttention, measured in the same run. Prints a markdown table; --json writes the rows.

    python benchmarks/attention.py --n 4096 16384 65536 --dtype bf16 --json out.json
    python benchmarks/attention.py --sweep   # block-size sweep of the two softmax kernels
    python benchmarks/attention.py --lightning-variants   # fused vs two-launch lightning, ns/token
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from longapps.attention.bench import (device_name, format_table, graph_of, measure, pairs, rows_to_json,  # noqa: E402
                                      run_attention_bench)
from longapps.attention.patterns import SinksWindow, SlidingWindow, WindowGlobal  # noqa: E402


def _t(fn):
    """(graph-replay ms, eager ms)."""
    ms_e, _ = measure(fn)
    rep = graph_of(fn)
    return (measure(rep)[0] if rep is not None else ms_e), ms_e


def sweep(dtype: torch.dtype, heads: int, dim: int, window: int, log=print) -> list:
    """Time kernel variants (tiles, warps, stages, loop split, grid order; lightning chunking).
    The numbers pick the defaults in FWD_DEFAULTS / LIGHTNING_DEFAULTS."""
    from longapps.kernels.lightning import lightning_forward
    from longapps.kernels.window_global import prepare_global_idx, window_global_forward
    out = []
    cases = [("wg", 16384, WindowGlobal(window, [0])), ("sw", 16384, SlidingWindow(window)),
             ("sinks", 65536, SinksWindow(4, 512))]
    tiles = [(64, 64, 4, 3), (128, 64, 4, 3), (64, 64, 4, 4), (128, 128, 8, 3), (64, 32, 4, 3), (128, 64, 8, 4)]
    for name, n, pat in cases:
        q, k, v = [torch.randn(1, heads, n, dim, device="cuda", dtype=dtype) for _ in range(3)]
        useful = 4.0 * dim * heads * pairs(pat, n)
        for bm, bn, nw, ns in tiles:
            for split in (False, True):
                for tm in (False, True):
                    kw = dict(block_m=bm, block_n=bn, num_warps=nw, num_stages=ns, split=split, tile_major=tm)
                    if isinstance(pat, WindowGlobal):
                        g = prepare_global_idx(pat.global_idx, q.device)
                        fn = lambda: window_global_forward(q, k, v, pat.window, g, False, gidx_prepared=True, **kw)  # noqa: E731
                    elif isinstance(pat, SlidingWindow):
                        fn = lambda: window_global_forward(q, k, v, pat.window, None, False, **kw)  # noqa: E731
                    else:
                        fn = lambda: window_global_forward(q, k, v, pat.window, None, True, sinks=pat.sinks, **kw)  # noqa: E731
                    try:
                        ms, ms_e = _t(fn)
                        tf = useful / (ms * 1e-3) / 1e12
                        log(f"  sweep {name} n={n} {kw}: {ms:.3f} ms (eager {ms_e:.3f}) {tf:.1f} TFLOP/s")
                        out.append(dict(case=name, n=n, **kw, ms=ms, ms_eager=ms_e, tflops=tf))
                    except Exception as e:
                        log(f"  sweep {name} {kw}: failed {e!r}"[:300])
        del q, k, v
        torch.cuda.empty_cache()
    for n in (4096, 65536):
        q, k, v = [torch.randn(1, heads, n, dim, device="cuda", dtype=dtype) * 0.1 for _ in range(3)]
        for bl in (64, 128):
            for mb in (2, 4, 8, 16, 64):
                for nw in (4, 8):
                    kw = dict(block=bl, max_blocks_per_chunk=mb, num_warps=nw)
                    try:
                        ms, ms_e = _t(lambda: lightning_forward(q, k, v, **kw))
                        log(f"  sweep linear n={n} {kw}: {ms:.4f} ms (eager {ms_e:.4f}) {ms * 1e6 / n:.2f} ns/token")
                        out.append(dict(case="linear", n=n, **kw, ms=ms, ms_eager=ms_e))
                    except Exception as e:
                        log(f"  sweep linear {kw}: failed {e!r}"[:300])
        del q, k, v
    out += lightning_variants((2048, 4096, 8192, 16384, 32768, 65536), dtype, heads, dim, log=log)
    return out


def lightning_variants(ns, dtype: torch.dtype, heads: int, dim: int, device: str = "cuda", log=print,
                       names=None) -> list:
    """Lightning forward: fused single launch (look-back "prefix" / "all", super-chunk counts, warps) vs the
    two-launch path, ns/token per N (graph replay) and the max difference to the two-launch output; ends with
    one line per variant: ns/token over N and the 4k..64k spread (max/min), which picks LIGHTNING_DEFAULTS."""
    from longapps.kernels.lightning import lightning_forward
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device == "cuda" else 8
    per_sm = lambda x: max(1, -(-x * sms // heads))  # noqa: E731  super-chunks for x programs per SM (B=1)
    variants = [("two-launch", {"fused": False}),
                ("two-launch, states summed one by one", {"fused": False, "_slots_in_flight": 1}),
                ("two-launch 1/SM", {"fused": False, "n_super": per_sm(1)}),
                ("two-launch 4/SM", {"fused": False, "n_super": per_sm(4)}),
                ("two-launch block 64", {"fused": False, "block": 64}),
                ("fused prefix", {"fused": True, "lookback": "prefix"}),
                ("fused all", {"fused": True, "lookback": "all"}),
                ("fused prefix 4/SM", {"fused": True, "n_super": per_sm(4)})]
    if names:
        variants = [(nm, kw) for nm, kw in variants if nm in names]
    out, table = [], {}
    for n in ns:
        q, k, v = [torch.randn(1, heads, n, dim, device=device, dtype=dtype) * 0.1 for _ in range(3)]
        base = lightning_forward(q, k, v, fused=False).float()
        for name, kw in variants:
            fn = lambda: lightning_forward(q, k, v, **kw)  # noqa: E731
            try:
                diff = float((fn().float() - base).abs().max())
                ms, ms_e = _t(fn)
            except Exception as e:
                log(f"  lightning n={n} {name}: failed {e!r}"[:300])
                continue
            nst = ms * 1e6 / n
            table.setdefault(name, {})[n] = nst
            log(f"  lightning n={n} {name} {kw}: {ms:.4f} ms (eager {ms_e:.4f}) {nst:.2f} ns/token, "
                f"max diff {diff:.3g}")
            out.append(dict(case="linear_variant", variant=name, n=n, **kw, ms=ms, ms_eager=ms_e, ns_per_token=nst,
                            max_diff=diff))
    for name, row in table.items():
        flat = [t for n, t in row.items() if 4096 <= n <= 65536]
        spread = f", spread 4k..64k {max(flat) / min(flat):.2f}x" if flat else ""
        log(f"  lightning {name}: " + " ".join(f"{n}={t:.2f}" for n, t in sorted(row.items()))
            + f" ns/token{spread}")
    return out


def lightning_token_budget(ns, dtype: torch.dtype, heads: int, dim: int, total: int = 65536, log=print) -> list:
    """Lightning forward at a fixed number of tokens per call (batch = total / N, the constant-tokens-per-batch
    view of training throughput) and at batch 1, with SDPA causal (flash) timed the same way; ns per token
    (graph replay). Ends with the 4k..64k spread of each series and the kernels' registers."""
    import torch.nn.functional as F

    from longapps.kernels import lightning as lmod
    out, series = [], {}
    for n in ns:
        for label, b in (("batch 1", 1), (f"{total} tokens per call", max(1, total // n))):
            q, k, v = [torch.randn(b, heads, n, dim, device="cuda", dtype=dtype) * 0.1 for _ in range(3)]
            ms, ms_e = _t(lambda: lmod.lightning_forward(q, k, v))
            ms_s, _ = _t(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            nst, nst_s = ms * 1e6 / (b * n), ms_s * 1e6 / (b * n)
            series.setdefault(label, {})[n] = nst
            log(f"  lightning {label}: n={n} batch={b}: {ms:.4f} ms ({nst:.2f} ns/token), SDPA causal {ms_s:.4f} ms "
                f"({nst_s:.2f} ns/token), ours {ms_s / ms:.2f}x faster")
            out.append(dict(case="linear_budget", series=label, n=n, batch=b, ms=ms, ms_eager=ms_e, ns_per_token=nst,
                            sdpa_ms=ms_s, sdpa_ns_per_token=nst_s, speedup_vs_sdpa=ms_s / ms))
            del q, k, v
    for label, row in series.items():
        flat = [t for n, t in row.items() if 4096 <= n <= 65536]
        log(f"  lightning {label}: " + " ".join(f"{n}={t:.2f}" for n, t in sorted(row.items()))
            + f" ns/token, spread 4k..64k {max(flat) / min(flat):.2f}x")
    res = {name: kernel_resources(getattr(lmod, name)) for name in ("_state_kernel", "_lightning_kernel")}
    log(f"  lightning kernels compiled versions: {res}")
    out.append({"case": "resources", **res})
    return out


def kernel_resources(jitfn) -> list:
    """Registers, spills and shared memory of each compiled version of a Triton kernel (best effort)."""
    out = []
    try:
        for entry in jitfn.device_caches.values():
            for kern in entry[0].values():
                out.append(dict(n_regs=getattr(kern, "n_regs", None), n_spills=getattr(kern, "n_spills", None),
                                shared=getattr(getattr(kern, "metadata", None), "shared", None),
                                num_warps=getattr(getattr(kern, "metadata", None), "num_warps", None)))
    except Exception as e:  # the cache layout differs between Triton versions
        out.append({"error": repr(e)[:200]})
    return out


WG_VARIANTS = (  # (name, window_global_forward arguments, FWD_DEFAULTS changes)
    ("default (band capped at 96 registers; global rows launched first on a high-priority stream, 1 warp, "
     "32-key TMA tiles)", {}, {}),
    ("session 4 default (global rows on a side stream after the band, no register cap)",
     {"grows": "overlap"}, {"maxnreg": None, "side_priority": 0}),
    ("global rows on a side stream after the band, band capped", {"grows": "overlap"}, {}),
    ("global rows split-K launch after the band, band capped", {"grows": "launch"}, {}),
    ("global rows first, normal-priority side stream", {}, {"side_priority": 0}),
    ("global rows first, band not capped", {}, {"maxnreg": None}),
    ("global rows first, 4 warps, 64-key tiles, 3 stages (runs 40-42)", {},
     {"first_warps": 4, "first_block_n": 64, "first_stages": 3}),
    ("global rows first, 1 stage", {}, {"first_stages": 1}),
    ("global rows first, 64-key tiles", {}, {"first_block_n": 64}),
    ("global rows first, pointer loads (first_pointer)", {}, {"first_tma": False}),
    ("global rows first, 1 program per 2 SMs", {}, {"first_programs_per_sm": 0.5}),
    ("pointer loads for the band", {"tma": False}, {}),
    ("no global rows (parts)", {"global_rows": False}, {}),
    ("no globals at all (parts)", {"no_globals": True}, {}),
    ("no globals at all, band not capped (parts)", {"no_globals": True}, {"maxnreg": None}))


def wg_variants(ns, dtype: torch.dtype, heads: int, dim: int, window: int, log=print, names=None) -> list:
    """Window+global launch variants (where the global rows are computed and with which tiles) and the parts
    (no global rows; no globals); timings (graph replay), max difference to the default output. Ends with the
    kernels' registers / shared memory."""
    from longapps.kernels import window_global as wgmod
    from longapps.kernels.window_global import prepare_global_idx, window_global_forward
    out = []
    variants = [v for v in WG_VARIANTS if not names or v[0] in names]
    for n in ns:
        pat = WindowGlobal(window, [0])
        q, k, v = [torch.randn(1, heads, n, dim, device="cuda", dtype=dtype) for _ in range(3)]
        g = prepare_global_idx(pat.global_idx, q.device)
        useful = 4.0 * dim * heads * pairs(pat, n)
        ref = window_global_forward(q, k, v, window, g, False, gidx_prepared=True)[0]
        for name, kw, fd in variants:
            kw = dict(kw)
            gg = None if kw.pop("no_globals", False) else g
            saved = dict(wgmod.FWD_DEFAULTS)
            wgmod.FWD_DEFAULTS.update(fd)
            fn = lambda: window_global_forward(q, k, v, window, gg, False, gidx_prepared=gg is not None, **kw)[0]  # noqa: E731
            try:
                diff = float((fn().float() - ref.float()).abs().max())
                ms, ms_e = _t(fn)
            except Exception as e:
                log(f"  wg variant n={n} {name}: failed {e!r}"[:400])
                continue
            finally:
                wgmod.FWD_DEFAULTS.clear()
                wgmod.FWD_DEFAULTS.update(saved)
            log(f"  wg variant n={n} {name}: {ms:.4f} ms (eager {ms_e:.4f}) {useful / ms / 1e9:.1f} TFLOP/s, max diff {diff:.3g}")
            out.append(dict(n=n, variant=name, ms=ms, ms_eager=ms_e, tflops=useful / ms / 1e9, max_diff=diff))
        spat = SinksWindow(4, 512)
        s_useful = 4.0 * dim * heads * pairs(spat, n)
        for label, tma, fd in (("TMA", True, {}), ("TMA, not capped", True, {"maxnreg": None}),
                               ("pointers", False, {})):  # the sinks loop: TMA or pointer loads, register cap
            saved = dict(wgmod.FWD_DEFAULTS)
            wgmod.FWD_DEFAULTS.update(fd)
            try:
                ms, ms_e = _t(lambda: window_global_forward(q, k, v, 512, None, True, sinks=4, tma=tma)[0])
            finally:
                wgmod.FWD_DEFAULTS.clear()
                wgmod.FWD_DEFAULTS.update(saved)
            name = f"sinks(4)+window(512) causal, {label}"
            log(f"  wg variant n={n} {name}: {ms:.4f} ms (eager {ms_e:.4f}) {s_useful / ms / 1e9:.1f} TFLOP/s")
            out.append(dict(n=n, variant=name, ms=ms, ms_eager=ms_e, tflops=s_useful / ms / 1e9))
        del q, k, v
    res = {name: kernel_resources(getattr(wgmod, name)) for name in ("_wg_fwd_kernel", "_wg_grow_kernel")}
    log(f"  compiled versions: {res}")
    out.append({"variant": "resources", **res})
    return out


def _write_json(res: dict, path) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(res, f, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--linear-n", type=int, nargs="+", default=[2048, 4096, 8192, 16384, 32768, 65536])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--window", type=int, default=256, help="one-sided window of the Longformer scenario")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--mask-max-n", type=int, default=16384, help="longest N for the SDPA bool-mask peer")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--sweep-only", action="store_true")
    ap.add_argument("--wg-variants", action="store_true", help="only compare the global-row launch variants")
    ap.add_argument("--lightning-variants", action="store_true",
                    help="only compare the lightning launch variants (fused / two-launch) over --linear-n")
    ap.add_argument("--lightning-budget", action="store_true",
                    help="only lightning vs SDPA causal at batch 1 and at a fixed 65536 tokens per call, over --linear-n")
    ap.add_argument("--variant", nargs="*", default=None, help="with --lightning-variants / --wg-variants: only these (by name)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dev = device_name()
    print(f"device: {dev}; torch {torch.__version__}")
    res = {"device": dev, "torch": torch.__version__}
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    only_mode = {"wg_variants": lambda: wg_variants(a.n, dt, a.heads, a.dim, a.window, names=a.variant),
                 "lightning_budget": lambda: lightning_token_budget(a.linear_n, dt, a.heads, a.dim),
                 "lightning_variants": lambda: lightning_variants(a.linear_n, dt, a.heads, a.dim, names=a.variant)}
    for mode, run in only_mode.items():
        if getattr(a, mode):  # one experiment only
            res[mode] = run()
            _write_json(res, a.json)
            return
    if a.sweep:
        res["sweep"] = sweep(dt, a.heads, a.dim, a.window)
        if a.sweep_only:
            _write_json(res, a.json)
            return
    rows = run_attention_bench(a.n, a.dtype, a.heads, a.dim, with_flex=not a.no_flex, window=a.window,
                               linear_ns=a.linear_n, only=a.only, mask_max_n=a.mask_max_n)
    res["rows"] = rows_to_json(rows)
    res["config"] = vars(a)
    _write_json(res, a.json)
    print(f"\n## attention, {dev}, {a.dtype}, B=1 H={a.heads} D={a.dim}\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
