"""`longapps chat` benchmark (issue 13): memory policies on dev tasks, bounded memory over 10,000 turns, speed.

    python benchmarks/chat_data.py                          # dev data -> benchmarks/data/chat (once, seconds)
    python benchmarks/chat.py tasks   [--cache-size 512]    # sirllm vs streaming vs full on tasks (a) (b) (c),
                                                            #   one run, + the --recent sweep; table + JSON
    python benchmarks/chat.py bounded [--turns 10000]       # RSS + per-turn latency at turns 10, 1000, 10000
    python benchmarks/chat.py speed                         # ms per 30-token reply with a full 1024-slot cache

Tasks, all scored by SirLLM's multiple-choice protocol (the choice of highest log-likelihood):
(a) recall: a personal fact in the first turn, then N real distractor exchanges (chatterbot corpus), then
    the recall question with 4 choices; one pass per fact probes every N (the chat is checkpointed and
    restored around each probe), so accuracy is a curve over N;
(b) rock-paper-scissors: a user who plays a favourite move 60 % of the rounds; each round the model picks
    its move, then learns the user's move and the outcome; win rate per block of rounds (chance 1/3,
    always countering the favourite: 0.6);
(c) response selection: real multi-turn conversations played one after another in ONE long chat; at each
    conversation's end the model picks its last line among 4.
Writes benchmarks/results/chat_<part>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
DATA = ROOT / "data" / "chat"
RESULTS = ROOT / "results"


def machine() -> dict:
    load = os.getloadavg()
    import torch
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "loadavg": [round(x, 2) for x in load],
            "python": platform.python_version(), "torch": torch.__version__}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def read_jsonl(name: str) -> list[dict]:
    path = DATA / name
    if not path.exists():
        from chat_data import build
        build()
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def save(part: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"chat_{part}.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(out)
    return out


def load_lm(llm: str | None, layers: int = 0):
    """The LLM; ``layers`` > 0 keeps only its first decoder layers (real weights, same tokenizer and
    template: a faster stand-in where the CPU time of thousands of turns is the limit)."""
    from longapps.models.causal_lm import load_causal_lm

    lm = load_causal_lm(llm)
    if layers:
        lm.model.model.layers = lm.model.model.layers[:layers]
        lm.model.config.num_hidden_layers = layers
        if getattr(lm.model.config, "layer_types", None):
            lm.model.config.layer_types = lm.model.config.layer_types[:layers]
        lm.name += f" (first {layers} layers)"
    return lm


# ---------------------------------------------------------------------------------------------- bounded
def bounded(args: argparse.Namespace) -> None:
    """10,000 turns of real user lines with short replies: RSS and per-turn latency must stay flat."""
    from longapps.pipelines.dialogue import StreamingChat

    users = [e["user"] for e in read_jsonl("exchanges.jsonl")]
    lm = load_lm(args.llm, args.layers)
    chat = StreamingChat(lm, memory=args.memory, cache_size=args.cache_size, max_new_tokens=args.max_new_tokens)
    marks = sorted({10, 1000, args.turns} | set(range(500, args.turns + 1, 500)))
    per_turn: list[tuple[float, float, int, float]] = []  # wall ms, rss MB, reply tokens, CPU ms
    t_start = time.time()
    for t in range(1, args.turns + 1):
        c0 = time.process_time()
        r = chat.say(users[(t - 1) % len(users)])
        per_turn.append((r.ms, rss_mb(), r.tokens, (time.process_time() - c0) * 1000))
        if t in marks:
            print(f"turn {t:>6}: {r.ms:7.1f} ms (cpu {per_turn[-1][3]:6.1f})  rss {per_turn[-1][1]:7.1f} MB"
                  f"  cache {r.cache_tokens}"
                  f"  load {os.getloadavg()[0]:.2f}", flush=True)
            window = {}
            for m in (10, 1000, args.turns):
                if m <= t:
                    lo = max(0, m - args.window)
                    ms = [x[0] for x in per_turn[lo:m]]
                    cpu = [x[3] for x in per_turn[lo:m]]
                    window[str(m)] = {"ms_median": round(statistics.median(ms), 1),
                                      "cpu_ms_median": round(statistics.median(cpu), 1),
                                      "rss_mb": round(per_turn[m - 1][1], 1), "ms_mean": round(statistics.fmean(ms), 1),
                                      "cache_tokens": r.cache_tokens if m == t else None}
            payload = {"turns_done": t, "turns": args.turns, "cache_size": args.cache_size, "memory": args.memory,
                       "llm": lm.name, "layers": len(lm.model.model.layers),
                       "max_new_tokens": args.max_new_tokens, "window": args.window, "at": window,
                       "stats": chat.stats().to_dict(), "wall_s": round(time.time() - t_start, 1),
                       "machine": machine(),
                       "every_100": [{"turn": i + 1, "ms": round(x[0], 1), "cpu_ms": round(x[3], 1),
                                      "rss_mb": round(x[1], 1)}
                                     for i, x in enumerate(per_turn) if (i + 1) % 100 == 0]}
            save("bounded", payload)
    at = payload["at"]
    base_ms, base_rss = at["10"]["ms_median"], at["10"]["rss_mb"]
    base_cpu = at["10"]["cpu_ms_median"]
    print(f"\n{'turn':>8} {'wall ms':>9} {'CPU ms':>8} {'RSS MB':>8}   (medians of {args.window} turns; ratios to turn 10)")
    for m, v in at.items():
        print(f"{m:>8} {v['ms_median']:>9.1f} {v['cpu_ms_median']:>8.1f} {v['rss_mb']:>8.1f}   wall x{v['ms_median'] / base_ms:.3f}"
              f"  CPU x{v['cpu_ms_median'] / base_cpu:.3f}  RSS x{v['rss_mb'] / base_rss:.3f}")


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    b = sub.add_parser("bounded")
    b.add_argument("--turns", type=int, default=10_000)
    b.add_argument("--cache-size", type=int, default=1024)
    b.add_argument("--memory", default="sirllm")
    b.add_argument("--max-new-tokens", type=int, default=4)
    b.add_argument("--window", type=int, default=10, help="turns in each latency median")
    b.add_argument("--layers", type=int, default=0, help="keep only the LLM's first N layers (0: all)")
    for p in (b,):
        p.add_argument("--llm", default=None)
    args = ap.parse_args()
    {"bounded": bounded}[args.part](args)


if __name__ == "__main__":
    main()
