"""Mamba encoder on the CPU: ours (the fused C-kernel forward, no per-token loop) vs HF MambaModel's slow path (the
per-token loop it runs without mamba-ssm), same random weights, same process, same thread count, fp32.

    python benchmarks/mamba_cpu.py --tokens 4096 --json out.json
    python benchmarks/mamba_cpu.py --autocast bf16     # both models under torch.autocast("cpu", bfloat16)

With ``--autocast bf16`` both run under CPU autocast (their GEMMs in bf16, fp32 accumulation); the speed-up is
against HF under the same autocast, and the table adds HF fp32's time and ours' max |difference| from HF fp32
(the tolerance that mode costs).

Configs: tiny (hidden 64, 4 layers), small (hidden 128, 4 layers), medium (hidden 256, 4 layers); d_state 16,
expand 2. Outputs are compared (max abs difference) so the speed-up is for the same function.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

CONFIGS = {"tiny": dict(hidden_size=64, num_hidden_layers=4), "small": dict(hidden_size=128, num_hidden_layers=4),
           "medium": dict(hidden_size=256, num_hidden_layers=4)}


def timed(fn, reps: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process) over `reps` calls."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--chunk", type=int, default=None, help="tokens per closed-form scan chunk")
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="run both models under torch.autocast('cpu', bfloat16) (GEMMs in bf16)")
    ap.add_argument("--json")
    args = ap.parse_args()
    import contextlib
    mode = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.autocast == "bf16" else contextlib.nullcontext
    if args.threads:
        torch.set_num_threads(args.threads)
    from longapps.kernels import selective_scan as S
    if args.chunk:
        S.CPU_CHUNK = args.chunk
    print(f"threads {torch.get_num_threads()}, autocast {args.autocast}", flush=True)
    print("| config | tokens | ours wall (s) | HF slow wall (s) | speed-up wall | ours CPU (s) | HF CPU (s) | "
          "speed-up CPU time | max abs diff | load |" + (" HF fp32 wall (s) | speed-up vs HF fp32 | "
                                                           "max abs diff vs HF fp32 |" if args.autocast != "none" else ""),
          flush=True)
    import logging

    from transformers import MambaModel

    from longapps.models.mamba import MambaEncoder, mamba_config
    logging.getLogger("transformers").setLevel(logging.ERROR)
    rows = []
    for name in args.configs:
        torch.manual_seed(0)
        cfg = mamba_config(vocab_size=1000, state_size=16, **CONFIGS[name])
        hf = MambaModel(cfg).eval()
        ours = MambaEncoder.from_hf(hf).eval()
        ids = torch.randint(0, 1000, (1, args.tokens))
        with torch.no_grad():
            ref32 = hf(ids).last_hidden_state
            with mode():
                ref = hf(ids).last_hidden_state
                got = ours(ids)
            diff = float((got.float() - ref.float()).abs().max())
            diff32 = float((got.float() - ref32).abs().max())
            load0 = os.getloadavg()

            def run_ours():
                with mode():
                    ours(ids)

            def run_hf():
                with mode():
                    hf(ids)
            t_ours, c_ours = timed(run_ours, args.reps)
            t_hf, c_hf = timed(run_hf, args.reps)
            t_hf32 = timed(lambda: hf(ids), args.reps)[0] if args.autocast != "none" else t_hf
        rows.append({"config": name, **CONFIGS[name], "tokens": args.tokens, "autocast": args.autocast,
                     "ours_s": t_ours, "hf_slow_s": t_hf, "speedup": t_hf / t_ours, "ours_cpu_s": c_ours,
                     "hf_slow_cpu_s": c_hf, "speedup_cpu_time": c_hf / c_ours, "max_abs_diff": diff,
                     "hf_fp32_s": t_hf32, "speedup_vs_hf_fp32": t_hf32 / t_ours, "max_abs_diff_vs_hf_fp32": diff32,
                     "ref_max_abs": float(ref32.abs().max()), "loadavg": [load0, os.getloadavg()],
                     "scan_chunk": S.CPU_CHUNK})
        extra = f" {t_hf32:.3f} | {t_hf32 / t_ours:.1f}x | {diff32:.1e} |" if args.autocast != "none" else ""
        print(f"| {name} (hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers) | {args.tokens} | {t_ours:.3f} | "
              f"{t_hf:.3f} | {t_hf / t_ours:.1f}x | {c_ours:.3f} | {c_hf:.3f} | {c_hf / c_ours:.1f}x | {diff:.1e} | "
              f"{load0[0]:.1f} |" + extra, flush=True)
    out = {"threads": torch.get_num_threads(), "autocast": args.autocast, "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(), "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
