"""Mamba encoder speed on the GPU (mamba-130m shape, random init, bf16) with its peers in the same run, and
the selective-scan kernel's bandwidth against the HBM copy rate.

    python benchmarks/mamba_gpu.py speed --json out.json            # the table below
    python benchmarks/mamba_gpu.py train --data DIR --out DIR --vectors V.npz   # distil a Mamba retriever

speed rows: ours (CUDA graph) at batch 1 for 4k..64k tokens (ms, ns/token), batch 16 x 4096 (tokens/s),
HF MambaModel without mamba-ssm (its slow path) at 4096 tokens, our Longformer (CUDA graph, one global token)
and dense BERT-base with SDPA at the same lengths; scan kernel GB/s (minimum bytes: read u, delta, z, B, C,
write y) vs a device-to-device copy. Launch shapes (scan, time-step kernel, conv) are chosen first on the whole
model at 1 x 4096 (graph replays, interleaved rounds) and used by every later section.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from longapps.attention.bench import measure  # noqa: E402

LENGTHS = [4096, 8192, 16384, 32768, 65536]


def log(*a) -> None:
    print(*a, flush=True)


def mamba_130m(device="cuda", dtype=torch.bfloat16):
    from longapps.models.mamba import MambaEncoder, mamba_config

    torch.manual_seed(0)
    cfg = mamba_config(preset="130m")
    model = MambaEncoder(cfg)
    with torch.no_grad():  # HF's dt init: softplus^-1 of dt ~ logU(1e-3, 1e-1)
        for layer in model.layers:
            dt = torch.exp(torch.rand(cfg.intermediate_size) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            layer.mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    return model.to(device=device, dtype=dtype).eval(), cfg


def scan_inputs(b, L, d=1536, n=16, dtype=torch.bfloat16):
    g = lambda *s: torch.randn(*s, device="cuda", dtype=dtype)  # noqa: E731
    xz = g(b, L, 2 * d)
    bc = g(b, L, 48 + 2 * n)
    A = -torch.exp(torch.log(torch.arange(1, n + 1, device="cuda", dtype=torch.float32)).repeat(d, 1))
    return dict(u=xz[..., :d], delta=g(b, L, d) * 0.5 - 4, A=A, B=bc[..., 48:48 + n], C=bc[..., 48 + n:],
                D=torch.ones(d, device="cuda"), z=xz[..., d:], delta_bias=torch.zeros(d, device="cuda"))


def copy_gbs() -> float:
    x = torch.empty(2**30, dtype=torch.uint8, device="cuda")  # 1 GiB
    y = torch.empty_like(x)
    ms, _ = measure(lambda: y.copy_(x), iters=20)
    return 2 * x.numel() / ms / 1e6


def scan_section(out: dict) -> None:
    from longapps.kernels import selective_scan as S

    out["hbm_copy_gbs"] = copy_gbs()
    log(f"HBM copy (read+write): {out['hbm_copy_gbs']:.0f} GB/s")
    out["scan_defaults_used"] = dict(S.SCAN_DEFAULTS)  # the whole-model sweep's choice (run before this section)
    rows = []
    for b, L in [(1, 4096), (1, 65536), (16, 4096)]:
        inp = scan_inputs(b, L)
        ms, _ = measure(lambda: S.selective_scan_forward(**inp), iters=20)
        gb = S.scan_bytes(inp["u"], 16) / 1e9
        rows.append({"batch": b, "L": L, "ms": ms, "GB": gb, "GBs": gb / ms * 1e3,
                     "frac_of_copy": gb / ms * 1e3 / out["hbm_copy_gbs"]})
        log(f"  scan b={b} L={L}: {ms:.3f} ms, {gb / ms * 1e3:.0f} GB/s ({rows[-1]['frac_of_copy']:.0%} of copy)")
    out["scan_bandwidth"] = rows


def breakdown_section(out: dict, L: int = 4096, device: str = "cuda") -> None:
    """Where one mamba-130m layer's time goes at 1 x L (bf16): each op of the layer timed alone on the
    layer's real intermediate tensors (the sum is close to the graph replay's per-layer time)."""
    import torch.nn.functional as F

    from longapps.kernels.causal_conv1d import causal_conv1d
    from longapps.kernels.rmsnorm import add_rmsnorm
    from longapps.kernels.selective_scan import selective_scan

    model, cfg = mamba_130m(device=device)
    layer = model.layers[0]
    mx = layer.mixer
    r = torch.randn(1, L, cfg.hidden_size, device=device)
    y = torch.randn(1, L, cfg.hidden_size, device=device, dtype=torch.bfloat16)
    rows = {}
    with torch.no_grad():
        h, _ = add_rmsnorm(r, y, layer.norm.weight, layer.norm.eps, layer.norm.weight.dtype)
        xz = mx.in_proj(h)
        x, z = xz[..., :mx.d_inner], xz[..., mx.d_inner:]
        xc = causal_conv1d(x, mx.conv1d.weight.squeeze(1), mx.conv1d.bias, "silu")
        xdbl = mx.x_proj(xc)
        dt = F.linear(xdbl[..., :mx.rank], mx.dt_proj.weight)
        B, C = xdbl[..., mx.rank:mx.rank + mx.n], xdbl[..., mx.rank + mx.n:]
        ys = selective_scan(xc, dt, mx.A(), B, C, mx.D, z, mx.dt_proj.bias, True)
        ops = {"add_rmsnorm": lambda: add_rmsnorm(r, y, layer.norm.weight, layer.norm.eps, layer.norm.weight.dtype),
               "in_proj (768->3072)": lambda: mx.in_proj(h),
               "conv1d+silu": lambda: causal_conv1d(x, mx.conv1d.weight.squeeze(1), mx.conv1d.bias, "silu"),
               "x_proj (1536->80)": lambda: mx.x_proj(xc),
               "dt_proj (48->1536)": lambda: F.linear(xdbl[..., :mx.rank], mx.dt_proj.weight),
               "selective scan": lambda: selective_scan(xc, dt, mx.A(), B, C, mx.D, z, mx.dt_proj.bias, True),
               "out_proj (1536->768)": lambda: mx.out_proj(ys)}
        # conv tile sweep on the layer's real (strided) input; the fastest becomes the default
        from longapps.kernels import causal_conv1d as CV
        ref = causal_conv1d(x, mx.conv1d.weight.squeeze(1), mx.conv1d.bias, "silu")
        conv_rows = []
        for t_, bc, nw in [(64, 64, 4), (32, 128, 4), (16, 256, 4), (32, 64, 2), (64, 128, 4), (128, 64, 4),
                           (16, 128, 2), (8, 256, 2)]:
            try:
                CV.CONV_DEFAULTS.update(T=t_, BC=bc, num_warps=nw)
                fn = lambda: causal_conv1d(x, mx.conv1d.weight.squeeze(1), mx.conv1d.bias, "silu")  # noqa: E731
                err = float((fn().float() - ref.float()).norm() / ref.float().norm())
                ms, _ = measure(fn, iters=30, budget_s=0.3)
                if err < 1e-3:
                    conv_rows.append({"T": t_, "BC": bc, "num_warps": nw, "us": ms * 1e3})
                log(f"  conv 1x{L} T={t_} BC={bc} warps={nw}: {ms * 1e3:.1f} us (rel. diff {err:.1e})")
            except Exception as e:  # noqa: BLE001
                log(f"  conv T={t_} BC={bc}: failed {e!r}"[:300])
        if conv_rows:
            best = min(conv_rows, key=lambda r: r["us"])
            CV.CONV_DEFAULTS.update(T=best["T"], BC=best["BC"], num_warps=best["num_warps"])
            out["conv_sweep_1x4096"] = conv_rows
            out["conv_defaults_used"] = dict(CV.CONV_DEFAULTS)
            log(f"  conv best: {best}")
        for name, fn in ops.items():
            ms, _ = measure(fn, iters=30, budget_s=0.5)
            rows[name] = ms
            log(f"  layer op 1x{L} {name}: {ms * 1e3:.1f} us")
    total = sum(rows.values())
    out["layer_breakdown_1x4096_us"] = {k: v * 1e3 for k, v in rows.items()}
    log(f"  layer ops sum {total * 1e3:.1f} us -> x{cfg.num_hidden_layers} layers = {total * cfg.num_hidden_layers:.2f} ms "
        f"(scan {rows['selective scan'] / total:.0%})")
    del model


# scan launch configs compared on the whole model (graph replay, 1 x 4096): the kernel-alone sweep is too noisy
# to choose between configs within ~20 % (run 53); the fastest model time becomes the default
# (programs per SM within one resident wave: the walk takes ~114 registers per thread on sm_90 with Triton 3.6)
# fold_stages > 1: the segment fold's loads prefetched by cp.async (session 11, run 69: 5.179 vs 5.199 ms, the
# O(S^2) inline fold is bound by the SMs' L2 bandwidth, not latency); fold "last": the O(S) fold by the last
# program of each channel block (atomic tickets, a self-resetting buffer kept per stream): run 70 5.068 ms vs inline
# 5.173 (5.101 with zeroed tickets per call). Run 71 also measured the walk unrolled and its B / C loads pipelined by
# Triton (both slower: see SCAN_DEFAULTS' comment; the options were removed)
# Session 12 (run 74): PDL for the Mamba kernels measured 5.217 vs 5.036 ms without, the fold reading stored segment
# decays 5.070 vs 5.045 ms: both removed. Runs 72-74 measured BD 64, 14 programs per SM and fold_stages 2 slower.
# Run 75-76: x_proj by a narrow Triton kernel (10.5 vs 5.6 us per layer) and in_proj split with z on a side stream
# (5.052 vs 5.006 ms) were slower: removed. Run 77: segments on a one-token grid (seg_unit 1: 44 segments of 94 tokens
# at 4k fill the 2,112 resident slots exactly, instead of 43 of 96): 5.015 vs 5.059 ms, kept as the default; the
# end-state pass with 16 channels per program (64 registers, 32 resident per SM): 5.617; the y pass with 16 channels
# and 28 programs per SM: 7.346 (both removed)
# Run 79: 16.5 programs per SM (46 segments of 90 tokens at 4k, 2,208 programs: 17 on most SMs) measured 6.029 vs
# 4.988 ms for 16 (44 of 94, 16 per SM): the 17th program does not become resident, a second wave follows
MODEL_SWEEP = [dict(BD=32, num_warps=1, programs_per_sm=16, fold_stages=3, fold="last", seg_unit=1)]


# after the scan: dt_proj by the low-rank Triton kernel (output tile, warps; "enabled": False = cuBLAS, even with it
# over runs 72-77), measured with the kept shape only since run 81
MODEL_LOWRANK = [dict(enabled=en, BM=bm, BN=bn, num_warps=nw)
                 for en, bm, bn, nw in [(True, 64, 128, 4)]]
# run 80: 64 x 128 / 4 warps 5.126 ms, 128 x 128 / 8 5.149, 64 x 256 / 8 5.150, 128 x 64 / 4 5.135


# then the conv forward, also chosen on the whole model (session 13: "walk" = one read of each input row, the last
# K-1 rows in registers; the walk_* keys do not apply to "tile", which keeps its T / BC / num_warps)
MODEL_CONV = [dict(impl=impl, walk_T=t, walk_BC=bc, walk_warps=nw)
              for impl, t, bc, nw in [("tile", 8, 128, 1), ("walk", 8, 128, 1), ("walk", 16, 128, 1),
                                      ("walk", 8, 64, 1), ("walk", 16, 64, 1), ("walk", 32, 64, 1),
                                      ("walk", 8, 256, 2), ("walk", 16, 256, 2)]]
# run 80: tile 5.022 ms; walk 8 x 128 / 1 warp 4.973, 16 x 128 4.978, 8 x 256 5.094, 12 x 256 5.098, 16 x 256 5.130,
# 16 x 512 / 2 warps 5.122 (more registers per lane with 8 channels each: fewer resident programs)


def _model_ab(model, ids, table: dict, variants: list, rounds: int, label: str) -> dict:
    """Graph-replay time of mamba-130m on ``ids`` with ``table`` updated by each variant, ``rounds`` interleaved
    rounds; ``table`` ends on the variant with the lowest median, which is returned (with its times)."""
    base = dict(table)
    times: dict = {i: [] for i in range(len(variants))}
    with torch.no_grad():
        for _ in range(rounds):
            for i, c in enumerate(variants):
                table.clear()
                table.update({**base, **c})
                g = model.cuda_graph(ids)
                ms, _ = measure(g.replay, iters=30, budget_s=0.6)
                times[i].append(ms)
                del g
    rows = []
    for i, c in enumerate(variants):
        med = sorted(times[i])[len(times[i]) // 2]
        rows.append({**c, "ms": times[i], "median_ms": med})
        log(f"  model 1x4096 {label} {c}: {' / '.join(f'{t:.3f}' for t in times[i])} ms (median {med:.3f})")
    best = min(rows, key=lambda r: r["median_ms"])
    table.clear()
    table.update({**base, **{k: best[k] for k in variants[0]}})
    log(f"  model sweep best {label}: {best}")
    return {"rows": rows, "best": best}


def model_sweep_section(out: dict, rounds: int = 3) -> None:
    """The scan configs (MODEL_SWEEP), then the conv launch shapes, each compared on mamba-130m
    b=1 L=4096 (graph replay, ``rounds`` interleaved rounds); the fastest become the defaults for the sections
    after this one."""
    from longapps.kernels import causal_conv1d as CV
    from longapps.kernels import lowrank_linear as LR
    from longapps.kernels import selective_scan as S

    model, cfg = mamba_130m()
    ids = torch.randint(0, cfg.vocab_size, (1, 4096), device="cuda")
    S.SCAN_DEFAULTS.update(impl="seq", T=32)
    out["model_scan_sweep_1x4096"] = _model_ab(model, ids, S.SCAN_DEFAULTS, MODEL_SWEEP, rounds + 1, "scan")
    out["model_lowrank_sweep_1x4096"] = _model_ab(model, ids, LR.LOWRANK_DEFAULTS, MODEL_LOWRANK, rounds, "dt_proj")
    out["model_conv_sweep_1x4096"] = _model_ab(model, ids, CV.CONV_DEFAULTS, MODEL_CONV, rounds + 2, "conv")
    out["lowrank_defaults_used"] = dict(LR.LOWRANK_DEFAULTS)
    out["scan_defaults_used"] = dict(S.SCAN_DEFAULTS)
    out["conv_defaults_used"] = dict(CV.CONV_DEFAULTS)
    del model
    torch.cuda.empty_cache()


def mamba_section(out: dict, lengths) -> None:
    model, cfg = mamba_130m()
    rows = []
    for L in lengths:
        ids = torch.randint(0, cfg.vocab_size, (1, L), device="cuda")
        with torch.no_grad():
            g = model.cuda_graph(ids)
            ms, mem = measure(g.replay, iters=30, budget_s=1.0)
            eager, _ = measure(lambda: model(ids), iters=5, budget_s=1.0) if L <= 4096 else (float("nan"), None)
        rows.append({"L": L, "ms": ms, "ns_per_token": ms * 1e6 / L, "eager_ms": eager, "peak_mb": mem})
        log(f"  ours mamba-130m b=1 L={L}: graph {ms:.3f} ms ({ms * 1e6 / L:.0f} ns/token), eager {eager:.2f} ms")
        del g
        torch.cuda.empty_cache()
    out["mamba_b1"] = rows
    ids = torch.randint(0, cfg.vocab_size, (16, 4096), device="cuda")
    with torch.no_grad():
        g = model.cuda_graph(ids)
        ms, _ = measure(g.replay, iters=10)
    out["mamba_b16x4096"] = {"ms": ms, "tokens_per_s": 16 * 4096 / ms * 1e3}
    log(f"  ours mamba-130m 16x4096: {ms:.2f} ms, {16 * 4096 / ms * 1e3 / 1e6:.2f} M tokens/s")
    del g
    # agreement with HF's MambaModel (its own slow path) on the same weights, bf16 and fp32
    from transformers import MambaModel

    hf = MambaModel(cfg).to("cuda").eval()
    hf.load_state_dict(model.float().state_dict())
    err = lambda a, b: float((a.float() - b.float()).norm() / b.float().norm())  # noqa: E731
    with torch.no_grad():
        ids = torch.randint(0, cfg.vocab_size, (1, 1024), device="cuda")
        ref32 = hf(ids).last_hidden_state
        out["rel_err_ours_fp32_vs_hf_fp32_1024"] = err(model(ids), ref32)
        model.to(torch.bfloat16)
        out["rel_err_ours_bf16_vs_hf_fp32_1024"] = err(model(ids), ref32)
        hf.to(torch.bfloat16)
        out["rel_err_hf_bf16_vs_hf_fp32_1024"] = err(hf(ids).last_hidden_state, ref32)
        ids = torch.randint(0, cfg.vocab_size, (1, 4096), device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        hf(ids)
        torch.cuda.synchronize()
        out["hf_slow_bf16_4096_s"] = time.perf_counter() - t0
    log(f"  HF MambaModel slow path (no mamba-ssm), bf16, 4096 tokens: {out['hf_slow_bf16_4096_s']:.2f} s; rel err vs "
        f"HF fp32 at 1024 tokens: ours fp32 {out['rel_err_ours_fp32_vs_hf_fp32_1024']:.2e}, ours bf16 "
        f"{out['rel_err_ours_bf16_vs_hf_fp32_1024']:.4f}, HF bf16 {out['rel_err_hf_bf16_vs_hf_fp32_1024']:.4f}")
    del hf, model
    torch.cuda.empty_cache()


def peers_section(out: dict, lengths) -> None:
    from transformers import BertConfig, BertModel, LongformerConfig, LongformerModel

    from longapps.models.longformer import FastLongformerModel

    torch.manual_seed(0)
    lf_rows, bert_rows = [], []
    cfg = LongformerConfig(max_position_embeddings=max(lengths) + 2)
    fast = FastLongformerModel.from_hf(LongformerModel(cfg).to(torch.bfloat16)).cuda().eval()
    for L in lengths:
        try:
            ids = torch.randint(3, cfg.vocab_size, (1, L), device="cuda")
            am = torch.ones(1, L, dtype=torch.long, device="cuda")
            gm = torch.zeros(1, L, dtype=torch.long, device="cuda")
            gm[:, 0] = 1
            with torch.no_grad():
                r = fast.cuda_graph(ids, am, gm)
                ms, _ = measure(r.graph.replay, iters=20)
            lf_rows.append({"L": L, "ms": ms, "ns_per_token": ms * 1e6 / L})
            log(f"  ours Longformer-base (window 512, 1 global) L={L}: {ms:.3f} ms")
            del r
        except Exception as e:  # noqa: BLE001
            log(f"  Longformer L={L} failed: {e!r}"[:300])
    del fast
    torch.cuda.empty_cache()
    bcfg = BertConfig(max_position_embeddings=max(lengths), attn_implementation="sdpa")
    bert = BertModel(bcfg, add_pooling_layer=False).to("cuda", torch.bfloat16).eval()
    for L in lengths:
        try:
            ids = torch.randint(3, bcfg.vocab_size, (1, L), device="cuda")
            with torch.no_grad():
                ms, _ = measure(lambda: bert(input_ids=ids).last_hidden_state, iters=10, budget_s=1.0)
            bert_rows.append({"L": L, "ms": ms, "ns_per_token": ms * 1e6 / L})
            log(f"  BERT-base SDPA dense L={L}: {ms:.3f} ms")
        except Exception as e:  # noqa: BLE001
            log(f"  BERT L={L} failed: {e!r}"[:300])
    out["longformer_b1"], out["bert_sdpa_b1"] = lf_rows, bert_rows


def speed(args) -> None:
    out: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                 "config": "mamba-130m shape (24 x 768, d_state 16, expand 2), random init, bf16"}
    import triton
    import transformers
    out["triton"], out["transformers"] = triton.__version__, transformers.__version__
    for name, fn in (("model_sweep", lambda: model_sweep_section(out)),
                     ("mamba", lambda: mamba_section(out, args.lengths)),
                     ("scan", lambda: scan_section(out)),
                     ("peers", lambda: peers_section(out, args.lengths)),
                     ("breakdown", lambda: breakdown_section(out))):
        if name in args.skip:
            continue
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - keep the other sections
            out[f"{name}_error"] = repr(e)[:500]
            log(f"{name} section failed: {e!r}"[:500])
        from longapps.kernels._common import BROKEN
        out["triton_fallbacks"] = dict(BROKEN)  # kernels that failed and ran in PyTorch instead (should be empty)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
    table(out)
    log(f"triton fallbacks: {out.get('triton_fallbacks')}")


def table(out: dict) -> None:
    lf = {r["L"]: r["ms"] for r in out.get("longformer_b1", [])}
    bert = {r["L"]: r["ms"] for r in out.get("bert_sdpa_b1", [])}
    log("\n| tokens | Mamba-130m ours (ms) | ns/token | Longformer-base ours (ms) | BERT-base SDPA dense (ms) |")
    log("|---|---|---|---|---|")
    for r in out.get("mamba_b1", []):
        log(f"| {r['L']} | {r['ms']:.3f} | {r['ns_per_token']:.0f} | {lf.get(r['L'], float('nan')):.3f} | "
            f"{bert.get(r['L'], float('nan')):.3f} |")
    if out.get("mamba_b1"):
        per = [r["ns_per_token"] for r in out["mamba_b1"]]
        log(f"ns/token spread (max/min) over {len(per)} lengths: {max(per) / min(per):.3f}")


def train(args) -> None:
    """Distil one Mamba retriever from a device bundle (``retrieve_data.py --bundle``: the training set and the
    teacher's eval vectors were computed on the CPU, so no teacher runs here), then write the student's eval
    vectors (documents at 2048 and 8192 tokens, the dev queries) under ``student_<label>_*`` in --vectors."""
    import numpy as np
    from transformers import AutoTokenizer

    from longapps.adapters.mamba_encode import tokenize
    from longapps.kernels._common import BROKEN
    from longapps.models.mamba import MambaEncoder
    from longapps.pipelines.retriever_train import RetrieverTrainConfig, TrainingSet, encode_rows, train_from_set

    t0 = time.perf_counter()
    set_dir = os.path.join(args.data, "set")
    cfg = RetrieverTrainConfig(init=args.init, pooling=args.pooling, max_tokens=args.max_tokens, epochs=args.epochs,
                               batch_size=args.batch_size, lr=args.lr, time_budget_s=args.time_budget,
                               device=args.device, patience=args.patience, save_dtype=args.save_dtype,
                               grad_checkpointing=args.grad_checkpointing, log_every=args.log_every,
                               temperature=args.temperature, distill_weight=args.distill_weight)
    rep = train_from_set(set_dir, args.out, cfg)
    log(f"[{args.label}] " + json.dumps({k: v for k, v in rep.items() if k != "history"}))
    for h in rep["history"]:
        log(f"  {h}")
    docs = TrainingSet.load(set_dir).docs
    queries = [json.loads(x) for x in open(os.path.join(args.data, "queries.jsonl"))]
    tok = AutoTokenizer.from_pretrained(args.out)
    model = MambaEncoder.from_pretrained(args.out).to(args.device).eval()
    vec = {}
    t1 = time.perf_counter()
    for mt in (2048, 8192):
        vec[f"student_{args.label}_docs{mt}"] = encode_rows(model, tokenize(tok, [d["text"] for d in docs], mt), 0,
                                                            args.pooling).numpy()
    vec[f"student_{args.label}_queries"] = encode_rows(model, tokenize(tok, [q["query"] for q in queries], 64), 0,
                                                       args.pooling).numpy()
    log(f"[{args.label}] eval vectors in {time.perf_counter() - t1:.1f} s")
    np.savez(args.vectors, **vec)
    summary = {"label": args.label, "total_seconds": round(time.perf_counter() - t0, 1),
               "triton_fallbacks": dict(BROKEN), "config": vars(args), "report": rep}
    log("REPORT " + json.dumps(summary))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    s.add_argument("--skip", nargs="*", default=[])
    s.add_argument("--json")
    t = sub.add_parser("train")
    t.add_argument("--data", required=True, help="device bundle (retrieve_data.py --bundle): set/, queries.jsonl")
    t.add_argument("--out", required=True, help="the trained retriever folder")
    t.add_argument("--vectors", required=True, help=".npz for the student's eval vectors")
    t.add_argument("--label", default="mean")
    t.add_argument("--init", default="small")
    t.add_argument("--pooling", default="mean")
    t.add_argument("--device", default="cuda")
    t.add_argument("--save-dtype", default="bfloat16")
    t.add_argument("--max-tokens", type=int, default=2048)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--patience", type=int, default=4)
    t.add_argument("--temperature", type=float, default=0.05)
    t.add_argument("--distill-weight", type=float, default=1.0)
    t.add_argument("--log-every", type=int, default=20)
    t.add_argument("--grad-checkpointing", type=int, default=0, help="1: recompute layers in the backward")
    t.add_argument("--time-budget", type=float, default=150.0, help="seconds of training")
    args = ap.parse_args()
    speed(args) if args.cmd == "speed" else train(args)


if __name__ == "__main__":
    main()
