"""NER benchmark: 512-token vs 4,096-token windows with the same model and training budget, on NCBI-disease
test (abstracts) and on the long test set (test abstracts concatenated into > 4,096-token documents,
``benchmarks/ner_long_data.py``); and CPU ``longapps ner predict`` time / peak RSS on a 16k-token note.

    .venv/bin/python benchmarks/ner_long_data.py                       # builds benchmarks/data/ner_long/
    .venv/bin/python benchmarks/ner.py train --steps 20                # trains w512 and w4096 (same budget)
    .venv/bin/python benchmarks/ner.py eval                            # table + benchmarks/results/ner.json
    .venv/bin/python benchmarks/ner.py speed                           # 16k-token note through the CLI
    python benchmarks/ner.py gpu --data benchmarks/data/ner_s7 --base DIR   # device: w512 vs w4096, F1 (device_s7_ner.sh)

Training budget (both models): the default offline encoder (all-MiniLM-L6-v2 made long), the NCBI train
abstracts as long documents (the same text for both), mention-level labels (one type, "Disease", as the
published NCBI numbers), ``--steps`` optimizer steps of 4,096 tokens each (w512: 8 windows x 510 tokens,
w4096: 1 window x 4,094 tokens), AdamW lr ``--lr``, 10 % warm-up, linear decay, seed 0, CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks" / "data"
MODELS = DATA / "ner_models"
RESULTS = ROOT / "benchmarks" / "results"
NCBI = Path("/work/shared/data/ncbi-disease/standoff")
LABEL = "Disease"
CONFIGS = {"w512": {"max_length": 512, "batch_size": 2}, "w4096": {"max_length": 4096, "batch_size": 1}}


def _machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 1), "python": platform.python_version()}


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from longapps.adapters.ner_formats import read_jsonl
    from longapps.pipelines.ner import NER
    from longapps.training import TrainConfig

    torch.set_num_threads(args.threads)
    train = read_jsonl(DATA / "ner_long" / "train.jsonl")
    names = args.configs or list(CONFIGS)
    for name in names:
        c = CONFIGS[name]
        cfg = TrainConfig(epochs=args.epochs, max_steps=args.steps, lr=args.lr, batch_size=c["batch_size"],
                          warmup=0.1, seed=0, device=args.device, patience=None, time_budget_s=args.time_budget,
                          log_every=1)
        t0 = time.perf_counter()
        ner, rep = NER.train(train, out=MODELS / name, max_length=c["max_length"], config=cfg, one_label=LABEL,
                             batch_size=c["batch_size"])
        info = {"config": name, **c, "steps": rep.result.steps, "windows": rep.windows, "lr": args.lr,
                "train_seconds": round(time.perf_counter() - t0, 1), "stopped": rep.result.stopped,
                "loss_history": rep.result.history, "dropped_overlaps": rep.dropped_overlaps,
                "machine": _machine(), "threads": args.threads}
        (MODELS / f"{name}.train.json").write_text(json.dumps(info, indent=1))
        print(json.dumps(info), flush=True)


def _eval_one(model: str, max_length: int, gold: list, threads: int) -> dict:
    import torch

    from longapps.pipelines.ner import NER

    torch.set_num_threads(threads)
    ner = NER.load(model, max_length=max_length, batch_size=8)
    t0 = time.perf_counter()
    res = ner.evaluate(gold, one_label=LABEL)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def cmd_eval(args: argparse.Namespace) -> None:
    from longapps.adapters.ner_formats import read_brat, read_jsonl

    sets = {"ncbi-test": read_brat(NCBI / "test"), "long-test": read_jsonl(DATA / "ner_long" / "test.jsonl")}
    rows = []
    for name in args.configs or list(CONFIGS):
        folder = MODELS / name
        train_info = json.loads((MODELS / f"{name}.train.json").read_text())
        for set_name, gold in sets.items():
            if args.sets and set_name not in args.sets:
                continue
            for ml in args.eval_max_length or [CONFIGS[name]["max_length"]]:
                r = _eval_one(str(folder), ml, gold, args.threads)
                rows.append({"model": name, "trained_max_length": CONFIGS[name]["max_length"], "eval_max_length": ml,
                             "set": set_name, "f1": r["micro"]["f1"], "precision": r["micro"]["precision"],
                             "recall": r["micro"]["recall"], "gold": r["micro"]["gold"],
                             "predicted": r["micro"]["predicted"], "seconds": r["seconds"],
                             "train_steps": train_info["steps"], "train_seconds": train_info["train_seconds"]})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'model':7} {'eval len':>8} {'set':10} {'P':>6} {'R':>6} {'F1':>6} {'gold':>5} {'pred':>5} {'s':>6}")
    for r in rows:
        print(f"{r['model']:7} {r['eval_max_length']:>8} {r['set']:10} {r['precision']:6.3f} {r['recall']:6.3f} "
              f"{r['f1']:6.3f} {r['gold']:>5} {r['predicted']:>5} {r['seconds']:>6}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"rows": rows, "machine": _machine(), "note": "strict mention-level span F1 (nervaluate), one type"}
    (RESULTS / args.out).write_text(json.dumps(out, indent=1))


def make_note(tokens: int, tokenizer) -> str:
    """A real-text note of about ``tokens`` sub-tokens: NCBI test abstracts, repeated if needed."""
    from longapps.adapters.ner_formats import read_brat

    docs = read_brat(NCBI / "test")
    parts, n, i = [], 0, 0
    while n < tokens:
        t = docs[i % len(docs)].text
        parts.append(t)
        n += len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1
        i += 1
    return "\n\n".join(parts)


def cmd_speed(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    model = str(MODELS / args.model)
    tok = AutoTokenizer.from_pretrained(model)
    note = make_note(args.tokens, tok)
    ntok = len(tok(note, add_special_tokens=False)["input_ids"])
    path = DATA / "ner_note_16k.txt"
    path.write_text(note, encoding="utf-8")
    exe = str(ROOT / ".venv" / "bin" / "longapps")
    runs = []
    for ml in args.max_length:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            before = ru0.ru_maxrss
            p = subprocess.run([exe, "ner", "predict", str(path), "--model", model, "--max-length", str(ml),
                                "--json", "--timing"], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            rss = ru1.ru_maxrss
            cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
            if p.returncode != 0:
                raise SystemExit(p.stderr)
            timing = json.loads([ln for ln in p.stderr.splitlines() if ln.startswith("{")][-1])
            runs.append({"max_length": ml, "tokens": ntok, "wall_s": round(wall, 2),
                         "predict_s": timing["predict_s"], "load_s": timing["load_s"], "cpu_s": round(cpu, 1),
                         "peak_rss_mb_upper_bound": round(max(rss, before) / 1024),
                         "spans": len(json.loads(p.stdout.splitlines()[0])["spans"])})
            print(json.dumps(runs[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ner_speed.json").write_text(json.dumps({"runs": runs, "machine": _machine()}, indent=1))


def cmd_gpu(args: argparse.Namespace) -> None:
    """Device run: the default encoder (``--base``, e.g. restored by ner_device_data.py) trained on NCBI
    train+devel as long documents with 512- and 4,096-token windows, the same budget (epochs, tokens per
    optimizer step, lr), evaluated on NCBI test and the long test set; JSON to ``--json``."""
    import torch

    from longapps.adapters.ner_formats import read_jsonl
    from longapps.pipelines.ner import NER
    from longapps.training import TrainConfig

    data = Path(args.data)
    train = read_jsonl(data / "long_train.jsonl") + read_jsonl(data / "long_devel.jsonl")
    sets = {"ncbi-test": read_jsonl(data / "ncbi_test.jsonl"), "long-test": read_jsonl(data / "long_test.jsonl")}
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__,
           "base": args.base, "epochs": args.epochs, "lr": args.lr, "tokens_per_step": args.tokens_per_step,
           "train_documents": len(train), "configs": {}, "rows": []}
    t_all = time.perf_counter()
    for name in args.configs or list(CONFIGS):
        ml = CONFIGS[name]["max_length"]
        bs = max(1, args.tokens_per_step // ml)
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=bs, warmup=0.1, seed=0, device=dev,
                          patience=None, time_budget_s=args.time_budget, grad_checkpointing=False,
                          log_every=args.log_every)
        t0 = time.perf_counter()
        ner, rep = NER.train(train, out=None, model=args.base, max_length=ml, config=cfg, one_label=LABEL,
                             batch_size=bs)
        if dev == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        info = {"max_length": ml, "batch_size": bs, "windows": rep.windows, "steps": rep.result.steps,
                "epochs_run": rep.result.epochs, "stopped": rep.result.stopped, "train_seconds": round(secs, 1),
                "final_loss": (rep.result.history[-1] if rep.result.history else None)}
        res["configs"][name] = info
        print(json.dumps({"config": name, **info}), flush=True)
        ner.batch_size = 8
        for eval_ml in sorted({ml, 4096}) if name == "w512" else [ml]:
            if eval_ml != ner.max_length:
                ner.max_length = eval_ml
                ner.clf.ensure_length(eval_ml)
            for set_name, gold in sets.items():
                t1 = time.perf_counter()
                r = ner.evaluate(gold, one_label=LABEL)
                row = {"model": name, "trained_max_length": ml, "eval_max_length": eval_ml, "set": set_name,
                       "f1": r["micro"]["f1"], "precision": r["micro"]["precision"], "recall": r["micro"]["recall"],
                       "gold": r["micro"]["gold"], "predicted": r["micro"]["predicted"],
                       "eval_seconds": round(time.perf_counter() - t1, 1), "train_steps": rep.result.steps,
                       "epochs_run": rep.result.epochs}
                res["rows"].append(row)
                print(json.dumps(row), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        del ner
        if dev == "cuda":
            torch.cuda.empty_cache()
    res["total_seconds"] = round(time.perf_counter() - t_all, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    print(f"\n## NER (NCBI-disease, one type, strict F1), {res['device']}: {args.epochs} epochs max, lr {args.lr}, "
          f"{args.tokens_per_step} tokens per step\n")
    print("| model (trained windows) | steps | epochs | train s | windows at inference | set | P | R | F1 |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in res["rows"]:
        c = res["configs"][r["model"]]
        print(f"| {r['model']} | {c['steps']} | {c['epochs_run']} | {c['train_seconds']} | {r['eval_max_length']} | "
              f"{r['set']} | {r['precision']:.3f} | {r['recall']:.3f} | **{r['f1']:.3f}** |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=None, help="optimizer steps (default: all epochs)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda (GPU: bf16 autocast + checkpointing)")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--time-budget", type=float, default=None, help="stop training after this many seconds")
    t.add_argument("--configs", nargs="*", choices=list(CONFIGS))
    e = sub.add_parser("eval")
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--configs", nargs="*", choices=list(CONFIGS))
    e.add_argument("--eval-max-length", type=int, nargs="*", help="inference window lengths (default: the trained one)")
    e.add_argument("--sets", nargs="*", choices=["ncbi-test", "long-test"], help="evaluation sets (default: both)")
    e.add_argument("--out", default="ner.json", help="file name under benchmarks/results/")
    s = sub.add_parser("speed")
    s.add_argument("--model", default="w4096")
    s.add_argument("--tokens", type=int, default=16384)
    s.add_argument("--max-length", type=int, nargs="+", default=[4096, 512])
    s.add_argument("--repeat", type=int, default=1)
    g = sub.add_parser("gpu", help="train w512 and w4096 with the same budget and evaluate (the device run)")
    g.add_argument("--data", default=str(DATA / "ner_s7"), help="bundle built by ner_device_data.py build")
    g.add_argument("--base", default=None, help="encoder folder (default: the packaged MiniLM)")
    g.add_argument("--epochs", type=int, default=8)
    g.add_argument("--lr", type=float, default=3e-4)
    g.add_argument("--tokens-per-step", type=int, default=4096, help="w512: 8 windows per step, w4096: 1")
    g.add_argument("--time-budget", type=float, default=None, help="training seconds per config")
    g.add_argument("--log-every", type=int, default=None)
    g.add_argument("--configs", nargs="*", choices=list(CONFIGS))
    g.add_argument("--json", default=None)
    args = ap.parse_args()
    {"train": cmd_train, "eval": cmd_eval, "speed": cmd_speed, "gpu": cmd_gpu}[args.cmd](args)


if __name__ == "__main__":
    main()
