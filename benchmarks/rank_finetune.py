"""rank-train on real data, small: fine-tune the offline SmolLM2-135M for full-list ranking of the hybrid's top-20
on tune-split queries (complete listwise labels: the relevant doc first, then hybrid order; importance-aware
loss), then compare zero-shot vs fine-tuned llm-full on test queries, same prompts, same run.

    python benchmarks/rank_finetune.py [--train 40 --eval 20 --epochs 2]   # -> benchmarks/results/rank_finetune.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from rank import load, summarize  # noqa: E402

from longapps.adapters.encode import load_encoder  # noqa: E402
from longapps.models.causal_lm import load_causal_lm, set_cpu_threads  # noqa: E402
from longapps.pipelines.rank_train import TrainConfig, TrainExample, train  # noqa: E402
from longapps.pipelines.ranking import Passage, Ranker, RankerConfig  # noqa: E402
from longapps.resources import cache_dir  # noqa: E402


def lists(ranker: Ranker, queries: list[dict], by_id: dict, top: int, per: int) -> list[tuple[dict, list[Passage]]]:
    """Each query's hybrid top-`top`, as the exact passage texts the LLM will be shown (view + budget)."""
    out = []
    for q in queries:
        items = [Passage(c, by_id[c]["text"]) for c in q["candidates"]]
        fs = ranker.first_stage(q["query"], [p.text for p in items], method="hybrid")
        order = sorted(range(len(items)), key=lambda i: -fs.score[i])[:top]
        texts = ranker._passage_texts(ranker.llm_views(items, fs, order), per)
        out.append((q, [Passage(items[i].id, t) for i, t in zip(order, texts)]))
    return out


def evaluate(lranker: Ranker, data: list[tuple[dict, list[Passage]]]) -> dict:
    ranks_llm, ranks_first, parsed = [], [], 0
    for q, ps in data:
        got = lranker.rank(q["query"], ps)
        ranks_llm.append(next((x.rank for x in got if x.id == q["relevant"]), 1000))
        ranks_first.append(next((i + 1 for i, p in enumerate(ps) if p.id == q["relevant"]), 1000))
        parsed += lranker.stats.parsed_ids
    return {"llm-full": summarize(ranks_llm), "hybrid": summarize(ranks_first),
            "ids_parsed_per_query": round(parsed / max(1, len(data)), 1), "ranks": ranks_llm}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "rank")
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--eval", type=int, default=20)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--passage-tokens", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "rank_finetune.json")
    args = ap.parse_args()

    docs, queries = load(args.data)
    by_id = {d["id"]: d for d in docs}
    tune = [q for q in queries if q["split"] == "tune"]
    test = [q for q in queries if q["split"] == "test"]
    # keep only training lists whose relevant doc made the hybrid's top-N (the label is then meaningful)
    lm = load_causal_lm()
    threads = set_cpu_threads()
    ranker = Ranker(RankerConfig(), encoder=load_encoder(), lm=lm)
    train_lists = [x for x in lists(ranker, tune[: args.train * 2], by_id, args.top, args.passage_tokens)
                   if any(p.id == x[0]["relevant"] for p in x[1])][: args.train]
    eval_lists = lists(ranker, test[4: 4 + args.eval], by_id, args.top, args.passage_tokens)
    lranker = Ranker(RankerConfig(method="llm-full", rerank_top=args.top, passage_tokens=args.passage_tokens),
                     encoder=ranker.encoder, lm=lm)
    t0 = time.perf_counter()
    zero = evaluate(lranker, eval_lists)
    t_zero = time.perf_counter() - t0
    print(f"zero-shot: {zero}", file=sys.stderr)
    examples = [TrainExample(q["query"], ps, qrels={q["relevant"]: 1.0}) for q, ps in train_lists]
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, alpha=args.alpha, schedule="log", max_passages=args.top,
                      passage_tokens=args.passage_tokens)
    out_dir = cache_dir("llm", "rank-finetune-demo")
    res = train(examples, out_dir, cfg, lm=lm, progress=sys.stderr.isatty())
    k = max(1, len(examples) // 2)
    print(f"trained {res.steps} steps in {res.seconds:.0f}s: loss {sum(res.losses[:k]) / k:.3f} (first epoch "
          f"half) -> {sum(res.losses[-k:]) / k:.3f} (last half epoch)", file=sys.stderr)
    t1 = time.perf_counter()
    tuned = evaluate(lranker, eval_lists)
    print(f"fine-tuned: {tuned}", file=sys.stderr)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": threads,
              "model": lm.name, "train_lists": len(examples), "eval_queries": len(eval_lists), "top": args.top,
              "passage_tokens": args.passage_tokens, "epochs": args.epochs, "lr": args.lr, "alpha": args.alpha,
              "steps": res.steps, "train_s": round(res.seconds, 1),
              "loss_first_half_epoch": round(sum(res.losses[:k]) / k, 4),
              "loss_last_half_epoch": round(sum(res.losses[-k:]) / k, 4),
              "zero_shot": zero, "fine_tuned": tuned, "eval_s": [round(t_zero, 1), round(time.perf_counter() - t1, 1)],
              "checkpoint": str(out_dir)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("zero_shot", "fine_tuned")}))
    print(f"| model | nDCG@10 | MRR | ids parsed/query |\n|---|---|---|---|\n"
          f"| hybrid (top-{args.top} order) | {zero['hybrid']['ndcg@10']:.4f} | {zero['hybrid']['mrr']:.4f} | - |\n"
          f"| llm-full zero-shot | {zero['llm-full']['ndcg@10']:.4f} | {zero['llm-full']['mrr']:.4f} "
          f"| {zero['ids_parsed_per_query']} |\n"
          f"| llm-full fine-tuned | {tuned['llm-full']['ndcg@10']:.4f} | {tuned['llm-full']['mrr']:.4f} "
          f"| {tuned['ids_parsed_per_query']} |")


if __name__ == "__main__":
    main()
