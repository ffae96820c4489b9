"""Token classification (the NER model) on the GPU: HF ``LongformerForTokenClassification`` vs ours
(``FastLongformerForTokenClassification``), Longformer-base shape (random init: no weights download on the
device), 4,096 tokens, one global token (CLS) per sequence, measured in the same run.

- inference tokens/s at each batch (half-precision weights; ours = the plain ``forward`` a pipeline calls,
  which replays an automatic CUDA graph once the shape repeats; ours eager beside it), and the logits of
  ours vs HF's in the same dtype and vs HF fp32;
- fine-tuning tokens/s: forward + backward + AdamW step, fp32 weights under bf16 autocast (the usual
  mixed-precision recipe), same model, same batch, dropout on (HF also drops attention probabilities,
  ours does not: the kernels have no attention dropout).

    python benchmarks/ner_gpu.py --batch 1 8 --json out.json
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from longapps.attention.bench import measure  # noqa: E402

NUM_LABELS = 9  # BIO over four entity types


def _err(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.float(), b.float()
    return {"max_abs": float((a - b).abs().max()), "rel_l2": float((a - b).norm() / b.norm())}


def _inputs(batch: int, n: int, vocab: int):
    ids = torch.randint(3, vocab, (batch, n), device="cuda")
    ids[:, 0] = 0  # <s>
    am = torch.ones_like(ids)
    gm = torch.zeros_like(ids)
    gm[:, 0] = 1
    labels = torch.randint(0, NUM_LABELS, (batch, n), device="cuda")
    return ids, am, gm, labels


def inference(n: int, batches, dtype: torch.dtype, log=print) -> list:
    from transformers import LongformerConfig, LongformerForTokenClassification

    from longapps.models.longformer import FastLongformerForTokenClassification
    torch.manual_seed(0)
    cfg = LongformerConfig(max_position_embeddings=max(4098, n + 2), num_labels=NUM_LABELS)
    hf = LongformerForTokenClassification(cfg).cuda().eval()
    rows = []
    with torch.no_grad():
        refs32 = {}
        for b in batches:
            torch.manual_seed(b)
            inp = _inputs(b, n, cfg.vocab_size)
            refs32[b] = (inp, hf(input_ids=inp[0], attention_mask=inp[1], global_attention_mask=inp[2]).logits.float())
        hf.to(dtype)
        ours = FastLongformerForTokenClassification.from_hf(hf).eval()
        ours_eager = FastLongformerForTokenClassification.from_hf(hf).eval()
        ours_eager.longformer.disable_graphs()
        for b in batches:
            (ids, am, gm, _), r32 = refs32[b]
            hf_fn = lambda: hf(input_ids=ids, attention_mask=am, global_attention_mask=gm).logits  # noqa: E731
            ours_fn = lambda: ours(input_ids=ids, attention_mask=am, global_attention_mask=gm).logits  # noqa: E731
            eager_fn = lambda: ours_eager(input_ids=ids, attention_mask=am, global_attention_mask=gm).logits  # noqa: E731
            r16 = hf_fn()
            row = {"batch": b, "n": n, "dtype": str(dtype).replace("torch.", "")}
            t_hf = measure(hf_fn, iters=5, budget_s=4.0)
            t_ours = measure(ours_fn, iters=30)
            t_eager = measure(eager_fn, iters=20)
            o = ours_fn()
            row["ms"] = {"hf": t_hf[0], "ours": t_ours[0], "ours_eager": t_eager[0]}
            row["peak_mem_mb"] = {"hf": t_hf[1], "ours": t_ours[1], "ours_eager": t_eager[1]}
            row["tokens_per_s"] = {k: b * n / (v * 1e-3) for k, v in row["ms"].items()}
            row["speedup"] = {"ours": t_hf[0] / t_ours[0], "ours_eager": t_hf[0] / t_eager[0]}
            row["err_ours_vs_hf_same_dtype"] = _err(o, r16)
            row["err_ours_vs_hf32"] = _err(o, r32)
            row["err_hf_vs_hf32"] = _err(r16, r32)
            row["argmax_agreement_vs_hf"] = float((o.argmax(-1) == r16.argmax(-1)).float().mean())
            row["auto_graph"] = {"captures": ours.longformer.graphs.captures, "replays": ours.longformer.graphs.replays}
            log(f"  inference batch {b}: HF {t_hf[0]:.1f} ms, ours {t_ours[0]:.2f} ms (eager {t_eager[0]:.2f}): "
                f"{row['speedup']['ours']:.1f}x; ours vs HF {row['err_ours_vs_hf_same_dtype']}, vs HF32 "
                f"{row['err_ours_vs_hf32']['rel_l2']:.3g} (HF {row['err_hf_vs_hf32']['rel_l2']:.3g}), argmax agree "
                f"{row['argmax_agreement_vs_hf']:.4f}")
            rows.append(row)
    del hf, ours, ours_eager
    torch.cuda.empty_cache()
    return rows


def _train_steps(model, inp, steps: int) -> float:
    """Median seconds of forward + backward + AdamW step (bf16 autocast, fp32 weights)."""
    ids, am, gm, labels = inp
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    times = []
    for i in range(steps + 2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=ids, attention_mask=am, global_attention_mask=gm, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def training(n: int, batches, steps: int, log=print) -> list:
    from transformers import LongformerConfig, LongformerForTokenClassification

    from longapps.models.longformer import FastLongformerForTokenClassification
    torch.manual_seed(0)
    cfg = LongformerConfig(max_position_embeddings=max(4098, n + 2), num_labels=NUM_LABELS)
    base = LongformerForTokenClassification(cfg)
    rows = []
    for b in batches:
        torch.manual_seed(b)
        inp = _inputs(b, n, cfg.vocab_size)
        row = {"batch": b, "n": n, "recipe": "fp32 weights, bf16 autocast, AdamW (fused)", "steps": steps}
        hf = copy.deepcopy(base).cuda().train()
        torch.cuda.reset_peak_memory_stats()
        row["s_hf"] = _train_steps(hf, inp, steps)
        row["peak_gb_hf"] = torch.cuda.max_memory_allocated() / 2**30
        del hf
        torch.cuda.empty_cache()
        ours = FastLongformerForTokenClassification.from_hf(copy.deepcopy(base).cuda()).train()
        torch.cuda.reset_peak_memory_stats()
        row["s_ours"] = _train_steps(ours, inp, steps)
        row["peak_gb_ours"] = torch.cuda.max_memory_allocated() / 2**30
        del ours
        torch.cuda.empty_cache()
        row["tokens_per_s"] = {"hf": b * n / row["s_hf"], "ours": b * n / row["s_ours"]}
        row["speedup"] = row["s_hf"] / row["s_ours"]
        log(f"  fine-tuning batch {b}: HF {row['s_hf'] * 1e3:.0f} ms/step ({row['peak_gb_hf']:.1f} GB), ours "
            f"{row['s_ours'] * 1e3:.0f} ms/step ({row['peak_gb_ours']:.1f} GB): {row['speedup']:.2f}x")
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--train-batch", type=int, nargs="+", default=[8])
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="inference weights")
    ap.add_argument("--steps", type=int, default=4, help="timed fine-tuning steps (after 2 warm-up steps)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dev = torch.cuda.get_device_name()
    print(f"device: {dev}; torch {torch.__version__}")
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    res = {"device": dev, "torch": torch.__version__, "config": vars(a),
           "model": "longformer-base shape (12 x 768, window 512), random init, 9 labels, 1 global token"}
    res["inference"] = inference(a.n, a.batch, dt)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if not a.skip_train:
        res["training"] = training(a.n, a.train_batch, a.steps)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    print(f"\n## Token classification, {dev}, {a.n} tokens\n")
    print("| mode | batch | HF tokens/s | ours tokens/s | speedup | ours eager tokens/s | logits rel err vs HF "
          "(same dtype) | argmax agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in res["inference"]:
        tp = r["tokens_per_s"]
        print(f"| inference {r['dtype']} | {r['batch']} | {tp['hf']:,.0f} | {tp['ours']:,.0f} | "
              f"**{r['speedup']['ours']:.1f}x** | {tp['ours_eager']:,.0f} | "
              f"{r['err_ours_vs_hf_same_dtype']['rel_l2']:.2e} | {r['argmax_agreement_vs_hf']:.4f} |")
    for r in res.get("training", []):
        tp = r["tokens_per_s"]
        print(f"| fine-tuning (bf16 autocast) | {r['batch']} | {tp['hf']:,.0f} | {tp['ours']:,.0f} | "
              f"**{r['speedup']:.2f}x** | - | - | - |")


if __name__ == "__main__":
    main()
