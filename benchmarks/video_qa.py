"""Video QA benchmark on the dev video (benchmarks/video_qa_data.py): indexing speed and memory, retrieval
hit rate, answer accuracy of retrieval + LLM vs the LLM reading the whole transcript cut to its context.

    .venv/bin/python benchmarks/video_qa_data.py            # once: builds benchmarks/data/video_qa/
    .venv/bin/python benchmarks/video_qa.py                 # index (child process, timed) + retrieval + answers
    .venv/bin/python benchmarks/video_qa.py --skip-index    # reuse the cached memory

Prints tables and writes benchmarks/results/video_qa.json. Indexing runs as `longapps video-index --force`
in a child process, so its wall time and peak RSS are those of the real command.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data" / "video_qa"
OUT = ROOT / "benchmarks" / "results" / "video_qa.json"
CLI = str(ROOT / ".venv" / "bin" / "longapps")


def load_questions() -> list[dict]:
    return [json.loads(x) for x in (DATA / "questions.jsonl").read_text().splitlines() if x.strip()]


def run_index(video: Path) -> dict:
    """`longapps video-index --force --json` in a child: wall time, per-describer seconds, peak RSS."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = ru0.ru_utime + ru0.ru_stime
    t0 = time.perf_counter()
    res = subprocess.run([CLI, "video-index", str(video), "--force", "--json", "--no-progress"],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"indexing failed: {res.stderr.strip()}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_mb = ru.ru_maxrss / 1024
    cpu_s = ru.ru_utime + ru.ru_stime - cpu_before
    dur = out["duration"]
    sec = out["seconds"]
    # CPU seconds / 2 cores = what the wall time would be on an idle 2-core box (the box is shared)
    return {"wall_s": wall, "cpu_s": cpu_s, "idle_2core_estimate_s": cpu_s / 2, "video_s": dur,
            "clips": out["clips"], "peak_rss_mb": rss_mb, "seconds": sec, "loadavg_after": os.getloadavg(),
            "rtf": {k: v / dur for k, v in sec.items()}, "rtf_total": wall / dur, "notes": out["notes"]}


def retrieval_table(qa, questions: list[dict], settings: list[tuple[str, float, float]]) -> list[dict]:
    """hit@1 / hit@3 of the gold clip(s) for each (name, lexical weight, best-chunk weight)."""
    rows = []
    qvecs = qa.encoder.encode([q["question"] for q in questions])
    from longapps.adapters.aggregate import hybrid_scores
    from longapps.adapters.passages import chunk_scores, fuse_first_best
    from longapps.index.lexical import tokenize

    mem = qa.memory
    lex = [mem.bm25.scores(tokenize(q["question"])) for q in questions]
    for name, lw, bw in settings:
        h1 = h3 = 0
        per_type: dict[str, list[int]] = {}
        for q, v, lx in zip(questions, qvecs, lex):
            dense = fuse_first_best(chunk_scores(v, mem.vectors, mem.chunks), bw)
            s = hybrid_scores(dense, lx, lw)
            top = list(np.argsort(-s, kind="stable")[:3])
            gold = set(q["gold_clips"])
            h1 += top[0] in gold
            hit = bool(gold & set(int(t) for t in top))
            h3 += hit
            per_type.setdefault(q["type"], []).append(hit)
        rows.append({"setting": name, "lexical_weight": lw, "best_weight": bw, "hit@1": h1 / len(questions),
                     "hit@3": h3 / len(questions),
                     **{f"hit@3_{t}": float(np.mean(v)) for t, v in sorted(per_type.items())}})
    return rows


def answer_accuracy(qa, questions: list[dict], extras: bool = True, save=None) -> dict:
    """Multiple-choice accuracy: retrieval (top-3) + LLM; whole transcript cut to the LLM's context (the
    baseline); the gold clip alone (oracle); no context (the LLM's prior)."""
    from longapps.pipelines.qa_reader import Context, Reader

    reader = qa.reader
    out: dict[str, dict] = {}
    # retrieval + LLM (the pipeline, timed per question: the models are loaded)
    t_q, correct, per_type = [], [], {}
    cpu_q = []
    for n, q in enumerate(questions, 1):
        t0, c0 = time.perf_counter(), time.process_time()
        ans = qa.ask(q["question"], q["choices"])
        t_q.append(time.perf_counter() - t0)
        cpu_q.append(time.process_time() - c0)
        print(f"\r  {n}/{len(questions)} {t_q[-1]:.1f}s", end="", flush=True)
        ok = ans.choice == q["answer_index"]
        correct.append(ok)
        per_type.setdefault(q["type"], []).append(ok)
    out["retrieval+llm"] = {"acc": float(np.mean(correct)), "latency_s_mean": float(np.mean(t_q)),
                            "cpu_s_mean": float(np.mean(cpu_q)), "torch_threads": _threads(),
                            "latency_s_p90": float(np.percentile(t_q, 90)), "latency_s_max": float(np.max(t_q)),
                            **{f"acc_{t}": float(np.mean(v)) for t, v in sorted(per_type.items())}}
    print(f"\nretrieval+llm: acc {out['retrieval+llm']['acc']:.3f}, {np.mean(t_q):.2f}s/question", flush=True)
    mem = qa.memory
    print("baseline (the long transcript is prefilled once) ...", flush=True)
    # baseline: the whole transcript, cut to the context window (one long shared prefix: KV-cached)
    transcript = mem.transcript()
    base = Reader(reader.lm, max_new_tokens=reader.max_new_tokens)
    t0 = time.perf_counter()
    correct, per_type = [], {}
    fitted = base.fit(questions[0]["question"], [Context("Video transcript", transcript)], reserve=64)
    shown = fitted[0].text if fitted else ""
    for q in questions:
        best, _ = base.choose(q["question"], [Context("Video transcript", transcript)], q["choices"])
        correct.append(best == q["answer_index"])
        per_type.setdefault(q["type"], []).append(best == q["answer_index"])
    lm = reader.lm
    n_all, n_shown = lm.count_tokens([transcript, shown])
    out["whole transcript+llm (baseline)"] = {
        "acc": float(np.mean(correct)), "seconds": time.perf_counter() - t0,
        "transcript_tokens": n_all, "tokens_shown": n_shown, "context_length": lm.context_length,
        "share_of_video_seen": n_shown / max(n_all, 1),
        **{f"acc_{t}": float(np.mean(v)) for t, v in sorted(per_type.items())}}
    print(f"baseline: acc {out['whole transcript+llm (baseline)']['acc']:.3f}", flush=True)
    if save:
        save(out)
    if extras:
        # oracle: the gold clip(s) only
        correct, per_type = [], {}
        for q in questions:
            ctx = [Context(f"Clip {mem.clips[i].clip.label}", mem.clips[i].text()) for i in q["gold_clips"]]
            best, _ = reader.choose(q["question"], ctx, q["choices"])
            correct.append(best == q["answer_index"])
            per_type.setdefault(q["type"], []).append(best == q["answer_index"])
        out["gold clip+llm"] = {"acc": float(np.mean(correct)),
                                **{f"acc_{t}": float(np.mean(v)) for t, v in sorted(per_type.items())}}
        print(f"gold clip+llm: acc {out['gold clip+llm']['acc']:.3f}", flush=True)
        # no context
        correct = [reader.choose(q["question"], [], q["choices"])[0] == q["answer_index"] for q in questions]
        out["llm, no context"] = {"acc": float(np.mean(correct))}
        print(f"no context: acc {out['llm, no context']['acc']:.3f}", flush=True)
    return out


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def cold_question(video: Path, q: dict) -> float:
    """Wall time of one `longapps video-qa` process on the indexed video (model loads included)."""
    t0 = time.perf_counter()
    res = subprocess.run([CLI, "video-qa", str(video), q["question"], "--choices", *q["choices"], "--json"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"video-qa failed: {res.stderr.strip()}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-index", action="store_true", help="Use the cached memory (no timed indexing).")
    ap.add_argument("--skip-answers", action="store_true")
    ap.add_argument("--skip-extras", action="store_true", help="No gold-clip / no-context LLM runs.")
    args = ap.parse_args()
    video = DATA / "dev.mp4"
    if not video.exists():
        sys.exit("no dev video: run benchmarks/video_qa_data.py first")
    questions = load_questions()
    result: dict = json.loads(OUT.read_text()) if OUT.exists() and args.skip_index else {}
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_start": os.getloadavg()}
    result["questions"] = {"n": len(questions), "by_type": {t: sum(q["type"] == t for q in questions)
                                                            for t in ("speech", "screen")}}
    if not args.skip_index:
        print("indexing (child process) ...", flush=True)
        result["index"] = run_index(video)
        ix = result["index"]
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(result, indent=1))          # kept even if a later phase is stopped
        print(f"indexed {ix['video_s'] / 60:.1f} min in {ix['wall_s'] / 60:.2f} min (x{ix['rtf_total']:.3f}; "
              f"{ix['cpu_s'] / 60:.1f} CPU-min), "
              f"peak RSS {ix['peak_rss_mb']:.0f} MB; " +
              ", ".join(f"{k} {v:.1f}s (x{ix['rtf'][k]:.4f})" for k, v in ix["seconds"].items()), flush=True)
    from longapps.pipelines.video_qa import VideoQA, VideoQAConfig

    qa = VideoQA(video, VideoQAConfig())
    assert qa.indexed.cached, "expected the memory cached by the indexing step"
    settings = [("dense (first chunk)", 0.0, 0.0), ("dense (best chunk)", 0.0, 1.0), ("dense (first+best)", 0.0, 0.5),
                ("bm25", 1.0, 0.5)] + [(f"hybrid w={w}", w, 0.5) for w in (0.1, 0.2, 0.3, 0.4, 0.5, 0.7)]
    result["retrieval"] = retrieval_table(qa, questions, settings)
    print(f"\n{'retrieval setting':<22} {'hit@1':>6} {'hit@3':>6} {'speech':>7} {'screen':>7}")
    for r in result["retrieval"]:
        print(f"{r['setting']:<22} {r['hit@1']:6.3f} {r['hit@3']:6.3f} {r.get('hit@3_speech', 0):7.3f} "
              f"{r.get('hit@3_screen', 0):7.3f}")
    if not args.skip_answers:
        print("\nanswering ...", flush=True)
        def save(partial: dict) -> None:
            result["answers"] = partial
            OUT.write_text(json.dumps(result, indent=1))

        result["answers"] = answer_accuracy(qa, questions, extras=not args.skip_extras, save=save)
        result["cold_question_s"] = cold_question(video, questions[0])
        print(f"\n{'system':<34} {'acc':>6} {'speech':>7} {'screen':>7}")
        for name, r in result["answers"].items():
            print(f"{name:<34} {r['acc']:6.3f} {r.get('acc_speech', float('nan')):7.3f} "
                  f"{r.get('acc_screen', float('nan')):7.3f}")
        a = result["answers"]["retrieval+llm"]
        print(f"question latency (models loaded): mean {a['latency_s_mean']:.2f}s, p90 {a['latency_s_p90']:.2f}s, "
              f"max {a['latency_s_max']:.2f}s; one cold `longapps video-qa` process: {result['cold_question_s']:.1f}s")
    result["machine"]["loadavg_end"] = os.getloadavg()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
