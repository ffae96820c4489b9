"""Longformer-base encoder, fp16 or bf16 (``--dtype``): HF transformers' LongformerModel vs ours (eager and
CUDA graph), plus a dense BERT-base with SDPA at the same length, measured in the same run. Random-init base
config (the device has no internet); outputs compared with HF at the same precision and HF fp32.

    python benchmarks/longformer.py --n 4096 --batch 1 --json out.json
    python benchmarks/longformer.py --cpu --n 4096 --json out.json   # CPU, fp32 (no GPU needed)
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from longapps.attention.bench import measure  # noqa: E402


def _err(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.float(), b.float()
    return {"max_abs": float((a - b).abs().max()), "rel_l2": float((a - b).norm() / b.norm()),
            "finite": bool(torch.isfinite(a).all())}


def _without_native(model, fn):
    """``fn()`` with the model's native eager layers switched off."""
    native, model.native = model.native, None
    try:
        return fn()
    finally:
        model.native = native


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def run(n: int, batch: int, n_global: int, log=print, variants=True, dtype: str = "fp16") -> dict:
    """``variants``: True (all), False (none) or "global" (the two global-row modes only). ``dtype``: the
    precision of HF's and our half-precision runs (the "HF16" keys hold HF at that precision)."""
    from transformers import BertConfig, BertModel, LongformerConfig, LongformerModel

    from longapps.models.longformer import FastLongformerModel

    torch.manual_seed(0)
    cfg = LongformerConfig(max_position_embeddings=max(4098, n + 2))  # defaults = longformer-base-4096 shape
    hf32 = LongformerModel(cfg).cuda().eval()
    ids = torch.randint(3, cfg.vocab_size, (batch, n), device="cuda")
    am = torch.ones(batch, n, dtype=torch.long, device="cuda")
    gm = torch.zeros(batch, n, dtype=torch.long, device="cuda")
    gm[:, :n_global] = 1
    out: dict = {"n": n, "batch": batch, "n_global": n_global, "dtype": dtype, "config": "longformer-base (12x768, window 512), random init"}
    with torch.no_grad():
        ref32 = hf32(input_ids=ids, attention_mask=am, global_attention_mask=gm).last_hidden_state
        hf = hf32.to(DTYPES[dtype])
        fast = FastLongformerModel.from_hf(hf).eval().disable_graphs()  # eager rows: no automatic graphs
        hf_fn = lambda: hf(input_ids=ids, attention_mask=am, global_attention_mask=gm).last_hidden_state  # noqa: E731
        ref16 = hf_fn()
        ours_fn = lambda: fast(input_ids=ids, attention_mask=am, global_attention_mask=gm).last_hidden_state  # noqa: E731
        o16 = ours_fn()
        out["err_ours_vs_hf16"] = _err(o16, ref16)
        out["err_ours_vs_hf32"] = _err(o16, ref32)
        out["err_hf16_vs_hf32"] = _err(ref16, ref32)
        log(f"  errors: ours vs HF {dtype} {out['err_ours_vs_hf16']}, ours vs HF fp32 {out['err_ours_vs_hf32']}, "
            f"HF {dtype} vs HF fp32 {out['err_hf16_vs_hf32']}")
        t = {}
        t["hf_longformer"] = measure(hf_fn, iters=10, budget_s=3.0)
        log(f"  HF LongformerModel: {t['hf_longformer'][0]:.2f} ms")
        import statistics
        import time as _time

        def host_and_wall(fn) -> tuple:
            """Host side of one eager forward (the time to enqueue it, GPU idle at the start) and its wall time."""
            hosts, walls = [], []
            for _ in range(15):
                torch.cuda.synchronize()
                t0 = _time.perf_counter()
                fn()
                t1 = _time.perf_counter()
                torch.cuda.synchronize()
                hosts.append((t1 - t0) * 1e3)
                walls.append((_time.perf_counter() - t0) * 1e3)
            return statistics.median(hosts), statistics.median(walls)

        # eager: the native layers (models/longformer_native.py) and the PyTorch-level path, interleaved
        native = fast.native
        for rnd in range(2):
            t[f"ours_eager_r{rnd}"] = measure(ours_fn, iters=30)
            fast.native = None
            t[f"ours_eager_pytorch_r{rnd}"] = measure(ours_fn, iters=30)
            fast.native = native
        for key in ("ours_eager", "ours_eager_pytorch"):
            t[key] = min((t.pop(f"{key}_r0"), t.pop(f"{key}_r1")), key=lambda r: r[0])
        out["native_calls"], out["native_refused"] = native.calls, dict((str(k), v) for k, v in native.refused.items())
        out["err_native_vs_pytorch_eager"] = _err(ours_fn(), _without_native(fast, ours_fn))
        log(f"  ours eager (native layers): {t['ours_eager'][0]:.3f} ms (native calls {native.calls}, refused "
            f"{out['native_refused']}); PyTorch-level eager {t['ours_eager_pytorch'][0]:.3f} ms; native vs "
            f"PyTorch-level {out['err_native_vs_pytorch_eager']}")
        out["eager_host_ms"], out["eager_wall_ms"] = host_and_wall(ours_fn)
        fast.native = None
        out["eager_pytorch_host_ms"], out["eager_pytorch_wall_ms"] = host_and_wall(ours_fn)
        fast.native = native
        log(f"  ours eager, one call: host (enqueue) {out['eager_host_ms']:.3f} ms, wall {out['eager_wall_ms']:.3f} ms; "
            f"PyTorch-level host {out['eager_pytorch_host_ms']:.3f} ms, wall {out['eager_pytorch_wall_ms']:.3f} ms")
        # CUDA graph of the whole encoder (embeddings + 12 layers), the model's own runner
        runner = fast.cuda_graph(ids, am, gm)
        static_out = runner(ids, am, gm)
        torch.cuda.synchronize()
        graph = runner.graph
        out["err_graph_vs_hf16"] = _err(static_out, ref16)
        t["ours_cuda_graph"] = measure(graph.replay, iters=50)
        log(f"  ours CUDA graph: {t['ours_cuda_graph'][0]:.3f} ms")
        # the model's automatic path: plain forward calls, the shape repeats -> captured, then replayed
        # (each call copies its inputs in and its output out)
        fast.compile_graphs()
        auto_out = ours_fn()
        t["ours_auto_graph"] = measure(ours_fn, iters=50)
        out["err_auto_vs_eager"] = _err(ours_fn(), o16)
        out["auto_graph_captures"], out["auto_graph_replays"] = fast.graphs.captures, fast.graphs.replays
        log(f"  ours forward() with automatic graphs: {t['ours_auto_graph'][0]:.3f} ms "
            f"(captures {fast.graphs.captures}, replays {fast.graphs.replays}), vs eager {out['err_auto_vs_eager']}")
        fast.disable_graphs()
        del auto_out

        def variant(key: str, label: str, apply, restore, eager: bool = False) -> None:
            """Graph time (and eager time) and error with one setting changed by ``apply`` (then ``restore``)."""
            try:
                apply()
                if eager:
                    t[f"ours_eager_{key}"] = measure(ours_fn, iters=20)
                r = fast.cuda_graph(ids, am, gm)
                out[f"err_{key}_vs_hf16"] = _err(r(ids, am, gm), ref16)
                t[f"ours_cuda_graph_{key}"] = measure(r.graph.replay, iters=50)
                eager_s = f"eager {t[f'ours_eager_{key}'][0]:.3f} ms, " if eager else ""
                log(f"  ours ({label}): {eager_s}graph {t[f'ours_cuda_graph_{key}'][0]:.3f} ms, "
                    f"err vs HF16 {out[f'err_{key}_vs_hf16']}")
            except Exception as e:
                log(f"  variant {label} failed: {e!r}"[:300])
            finally:
                restore()

        def layer_setting(attr: str, value, default):
            """(apply, restore) of one attribute on every layer."""
            return (lambda: [setattr(layer, attr, value) for layer in fast.layers],
                    lambda: [setattr(layer, attr, default) for layer in fast.layers])

        from longapps.kernels import window_global as wgmod
        saved = dict(wgmod.FWD_DEFAULTS)

        def kernel_setting(settings: dict):
            """(apply, restore) of window-kernel launch defaults."""
            return (lambda: wgmod.FWD_DEFAULTS.update(settings),
                    lambda: (wgmod.FWD_DEFAULTS.clear(), wgmod.FWD_DEFAULTS.update(saved)))

        if variants == "ln":  # only the add+LayerNorm launch settings (rows per program, warps)
            from longapps.kernels import layernorm as lnmod
            ln_saved = dict(lnmod.LN_DEFAULTS)
            for rows, warps in ((2, 4), (4, 4), (4, 8), (8, 8)):
                variant(f"ln_{rows}x{warps}", f"add+LayerNorm {rows} rows/program, {warps} warps",
                        lambda r=rows, w=warps: lnmod.LN_DEFAULTS.update(rows=r, num_warps=w),
                        lambda: lnmod.LN_DEFAULTS.update(ln_saved))  # graph only (native calls are cached)
            variants = False
        if variants:
            if variants == "global":  # only the two ways to the global rows
                variant("hidden_global", "global rows in hidden space",
                        *layer_setting("global_mode", "hidden", "auto"), eager=True)
                variant("kernel_global", "global rows from the kernel's split-K pass",
                        *layer_setting("global_mode", "kernel", "auto"), eager=True)
                variants = False
        if variants:
            variant("gelu_kernel", "separate GELU kernel", *layer_setting("gelu_epilogue", False, True), eager=True)
            variant("hidden_global", "global rows in hidden space", *layer_setting("global_mode", "hidden", "auto"),
                    eager=True)
            variant("kernel_global", "global rows from the kernel's split-K pass",
                    *layer_setting("global_mode", "kernel", "auto"), eager=True)
            variant("launch", "global rows: split-K launch after the band, same stream",
                    *kernel_setting({"grows": "launch"}))
            variant("tma", "window kernel tiles through TMA descriptors", *kernel_setting({"tma": True}))
            variant("no_cap", "window kernel without the register cap", *kernel_setting({"maxnreg": None}))
        # dense BERT-base with SDPA at the same length (all pairs)
        try:
            bcfg = BertConfig(max_position_embeddings=n, attn_implementation="sdpa")
            bert = BertModel(bcfg, add_pooling_layer=False).cuda().to(DTYPES[dtype]).eval()
            bert_fn = lambda: bert(input_ids=ids % bcfg.vocab_size).last_hidden_state  # noqa: E731
            t["bert_sdpa_dense"] = measure(bert_fn, iters=20)
            log(f"  BERT-base SDPA dense: {t['bert_sdpa_dense'][0]:.3f} ms")
            bert = bert_fn = None  # free it before the report
        except Exception as e:
            log(f"  BERT peer failed: {e!r}"[:300])
    out["ms"] = {k: v[0] for k, v in t.items()}
    out["peak_mem_mb"] = {k: v[1] for k, v in t.items()}
    best = min(out["ms"]["ours_eager"], out["ms"]["ours_cuda_graph"])
    out["speedup_vs_hf"] = {"eager": out["ms"]["hf_longformer"] / out["ms"]["ours_eager"],
                            "cuda_graph": out["ms"]["hf_longformer"] / out["ms"]["ours_cuda_graph"], "best": out["ms"]["hf_longformer"] / best}
    return out


def run_cpu(n: int, batch: int, n_global: int, reps: int = 2, log=print) -> dict:
    """CPU, fp32: HF LongformerModel vs ours (banded window attention + hidden-space global rows, the CPU
    default) vs ours with the dense-mask reference attention; best of ``reps`` wall times, same run."""
    import time

    from transformers import LongformerConfig, LongformerModel

    from longapps.models.longformer import FastLongformerModel
    torch.manual_seed(0)
    cfg = LongformerConfig(max_position_embeddings=max(4098, n + 2))
    hf = LongformerModel(cfg).eval()
    ids = torch.randint(3, cfg.vocab_size, (batch, n))
    gm = torch.zeros_like(ids)
    gm[:, :n_global] = 1
    models = {"hf_longformer": hf, "ours": FastLongformerModel.from_hf(hf).eval()}
    if n <= 8192:  # the dense-mask reference is O(N^2): minutes beyond that
        models["ours_dense_reference"] = FastLongformerModel.from_hf(hf, backend="reference", global_mode="kernel").eval()
    out: dict = {"n": n, "batch": batch, "n_global": n_global, "threads": torch.get_num_threads(), "s": {}, "err_vs_hf": {}}
    with torch.no_grad():
        ref = hf(input_ids=ids, global_attention_mask=gm).last_hidden_state
        for name, m in models.items():
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                o = m(input_ids=ids, global_attention_mask=gm).last_hidden_state
                best = min(best, time.perf_counter() - t0)
            out["s"][name] = best
            out["err_vs_hf"][name] = _err(o, ref)
            log(f"  {name}: {best:.2f} s, max abs err vs HF {out['err_vs_hf'][name]['max_abs']:.2e}")
    out["speedup_vs_hf"] = {k: out["s"]["hf_longformer"] / v for k, v in out["s"].items()}
    return out


def profile(n: int, batch: int, n_global: int, global_mode: str = "kernel") -> None:
    """GPU time per kernel (eager forward of ours), to see where the encoder's time goes."""
    from torch.profiler import ProfilerActivity, profile as tprofile
    from transformers import LongformerConfig, LongformerModel

    from longapps.models.longformer import FastLongformerModel
    cfg = LongformerConfig(max_position_embeddings=max(4098, n + 2))
    fast = FastLongformerModel.from_hf(LongformerModel(cfg).cuda().half(), global_mode=global_mode).eval()
    fast.disable_graphs()  # per-kernel times of the eager forward
    ids = torch.randint(3, cfg.vocab_size, (batch, n), device="cuda")
    gm = torch.zeros_like(ids)
    gm[:, :n_global] = 1
    with torch.no_grad():
        for _ in range(3):
            fast(input_ids=ids, global_attention_mask=gm)
        torch.cuda.synchronize()
        with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fast(input_ids=ids, global_attention_mask=gm)
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[4096])
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--no-variants", action="store_true", help="skip the launch-setting variants")
    ap.add_argument("--global-variants", action="store_true", help="only the two global-row modes as variants")
    ap.add_argument("--ln-variants", action="store_true", help="only add+LayerNorm launch settings as variants")
    ap.add_argument("--n-global", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", action="store_true", help="print the GPU time per kernel of our eager forward")
    ap.add_argument("--global-mode", default="kernel", choices=["kernel", "hidden"], help="for --profile")
    ap.add_argument("--cpu", action="store_true", help="CPU fp32 comparison (HF vs ours vs ours dense) instead")
    ap.add_argument("--dtype", default="fp16", choices=sorted(DTYPES), help="GPU precision (HF and ours)")
    a = ap.parse_args()
    if a.cpu:
        import platform
        _report(f"cpu: {platform.processor() or platform.machine()}", [run_cpu(n, b, a.n_global) for n in a.n for b in a.batch],
                a.json, f"fp32, CPU ({torch.get_num_threads()} threads)",
                ["N", "batch", "HF s", "ours s", "ours (dense reference attention) s", "speedup vs HF",
                 "max abs err vs HF"],
                lambda r: [r["n"], r["batch"], f"{r['s']['hf_longformer']:.2f}", f"{r['s']['ours']:.2f}",
                           f"{r['s'].get('ours_dense_reference', float('nan')):.2f}",
                           f"{r['speedup_vs_hf']['ours']:.2f}x", f"{r['err_vs_hf']['ours']['max_abs']:.1e}"])
        return
    dev = torch.cuda.get_device_name()
    if a.profile:
        profile(a.n[0], a.batch[0], a.n_global, a.global_mode)
        return
    print(f"device: {dev}; torch {torch.__version__}")
    variants = "ln" if a.ln_variants else "global" if a.global_variants else not a.no_variants
    _report(dev, [run(n, b, a.n_global, variants=variants, dtype=a.dtype) for n in a.n for b in a.batch], a.json,
            f"{a.dtype}, {dev}",
            ["N", "batch", "HF ms", "ours eager ms", "PyTorch-level eager ms", "ours graph ms",
             "ours forward() auto graph ms", "eager / graph", "BERT SDPA dense ms", "speedup (graph)",
             "speedup (eager)", "max abs err vs HF16", "rel err vs HF16", "rel err vs HF32 (HF16 vs HF32)"],
            lambda r: [r["n"], r["batch"], f"{r['ms']['hf_longformer']:.2f}", f"{r['ms']['ours_eager']:.3f}",
                       f"{r['ms']['ours_eager_pytorch']:.3f}",
                       f"{r['ms']['ours_cuda_graph']:.3f}", f"{r['ms']['ours_auto_graph']:.3f}",
                       f"{r['ms']['ours_eager'] / r['ms']['ours_cuda_graph']:.2f}x",
                       f"{r['ms'].get('bert_sdpa_dense', float('nan')):.3f}",
                       f"{r['speedup_vs_hf']['cuda_graph']:.1f}x", f"{r['speedup_vs_hf']['eager']:.1f}x",
                       f"{r['err_ours_vs_hf16']['max_abs']:.3g}", f"{r['err_ours_vs_hf16']['rel_l2']:.3g}",
                       f"{r['err_ours_vs_hf32']['rel_l2']:.3g} ({r['err_hf16_vs_hf32']['rel_l2']:.3g})"])


def _report(device: str, results: list, json_path, title: str, header: list, row) -> None:
    """Write the results as JSON (if asked) and print them as a markdown table."""
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "results": results}, f, indent=1)
    print(f"\n## Longformer-base encoder, {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    for r in results:
        print("| " + " | ".join(str(x) for x in row(r)) + " |")


if __name__ == "__main__":
    main()
