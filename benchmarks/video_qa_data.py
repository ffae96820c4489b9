"""Build the video-QA dev set: a >= 60-minute lecture-like video from real text, and questions whose
answers sit in known clips.

Material: NCBI-disease abstracts (/work/shared/data/ncbi-disease, the devel + test splits), read aloud by
espeak-ng sentence by sentence (so every sentence's time is known) while a slide shows the abstract's
title and its PubMed ID. Questions (multiple choice, 4 options, gold answer + the clip(s) holding it):
  - speech: a spoken sentence with one annotated disease mention blanked out ("Which disease completes ...");
    distractors are disease mentions from other abstracts; gold clip = the 80-s clip holding the sentence
    (sentences that cross a clip boundary are not used);
  - screen: "Which PubMed ID was shown on the slide while the talk covered <title>?" -- answerable only from
    on-screen text; gold clips = every clip the slide is shown in.
Writes benchmarks/data/video_qa/{dev.mp4, questions.jsonl, segments.json}. Deterministic (seeded).

    .venv/bin/python benchmarks/video_qa_data.py [--minutes 61] [--out benchmarks/data/video_qa]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import numpy as np

from longapps.adapters.chunk import split_sentences
from longapps.adapters.video.clips import clip_index, make_clips
from longapps.adapters.video.synth import VideoWriter, render_slide, speak

SRC = Path("/work/shared/data/ncbi-disease/standoff")
RATE = 16000
FPS = 5
SIZE = (640, 360)


def load_docs() -> list[dict]:
    docs = []
    for split in ("devel", "test"):
        for txt in sorted((SRC / split).glob("*.txt")):
            text = txt.read_text()
            title, _, body = text.partition("\n")
            mentions = []
            for line in txt.with_suffix(".ann").read_text().splitlines():
                parts = line.split("\t")
                if line.startswith("T") and len(parts) == 3:
                    _, span, surface = parts
                    kind, a, b = span.split()[0], int(span.split()[1]), int(span.split()[-1])
                    mentions.append({"kind": kind, "start": a - len(title) - 1, "end": b - len(title) - 1,
                                     "text": surface})
            docs.append({"pmid": txt.stem, "title": title.strip(), "body": body.strip(), "mentions": mentions})
    return docs


def clean(text: str) -> str:
    return re.sub(r"\s+([.,;:])", r"\1", " ".join(text.split()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=61.0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/data/video_qa"))
    ap.add_argument("--clip-seconds", type=float, default=80.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    docs = [d for d in load_docs() if 80 <= len(d["body"].split()) <= 260 and d["mentions"]]
    rng.shuffle(docs)
    args.out.mkdir(parents=True, exist_ok=True)
    video = args.out / "dev.mp4"
    tmp = video.with_suffix(".tmp.mp4")
    t_start = time.time()
    segments = []
    with VideoWriter(tmp, fps=FPS, size=SIZE, rate=RATE) as w:
        for d in docs:
            if w.t >= args.minutes * 60:
                break
            slide = render_slide([d["title"], "", f"PubMed ID {d['pmid']}"], SIZE, font_px=26)
            sents = []
            audio = [np.zeros(int(0.8 * RATE), np.float32)]           # a pause between talks
            pos = w.t + 0.8
            for a, b in split_sentences(d["body"]):
                text = d["body"][a:b].strip()
                if not text:
                    continue
                samples = speak(text, rate=RATE)
                sents.append({"start": pos, "end": pos + len(samples) / RATE, "text": text, "a": a, "b": b})
                audio.append(samples)
                pos += len(samples) / RATE
            start, end = w.add(slide, np.concatenate(audio))
            segments.append({"pmid": d["pmid"], "title": d["title"], "start": start, "end": end, "sentences": sents,
                             "mentions": d["mentions"]})
            print(f"\r{len(segments)} talks, {end / 60:.1f} min", end="", flush=True)
    t = segments[-1]["end"]
    tmp.replace(video)
    print(f"\nvideo: {video} ({t / 60:.1f} min, {video.stat().st_size / 1e6:.1f} MB) in {time.time() - t_start:.0f}s")
    (args.out / "segments.json").write_text(json.dumps(segments, indent=1))
    questions = make_questions(segments, t, args.clip_seconds, rng)
    with open(args.out / "questions.jsonl", "w") as fh:
        for q in questions:
            fh.write(json.dumps(q) + "\n")
    kinds = {k: sum(q["type"] == k for q in questions) for k in ("speech", "screen")}
    print(f"questions: {len(questions)} {kinds} -> {args.out / 'questions.jsonl'}")


def make_questions(segments: list[dict], duration: float, clip_seconds: float, rng: random.Random) -> list[dict]:
    clips = make_clips(duration, clip_seconds)
    all_mentions = sorted({m["text"].lower() for s in segments for m in s["mentions"]})
    questions = []
    for seg in segments:
        # speech: one sentence fully inside one clip, with a disease mention not in the title
        options = []
        for sent in seg["sentences"]:
            ca, cb = clip_index(sent["start"], clips), clip_index(sent["end"] - 0.01, clips)
            if ca != cb or len(sent["text"].split()) < 8:
                continue
            for m in seg["mentions"]:
                if sent["a"] <= m["start"] and m["end"] <= sent["b"] and m["text"].lower() not in seg["title"].lower():
                    options.append((sent, m, ca))
        if options:
            sent, m, ci = rng.choice(options)
            rel_a, rel_b = m["start"] - sent["a"], m["end"] - sent["a"]
            cloze = clean(sent["text"][:rel_a] + "___" + sent["text"][rel_b:])
            gold = m["text"]
            own = {x["text"].lower() for x in seg["mentions"]}
            pool = [x for x in all_mentions if x not in own and x != gold.lower()]
            distract = rng.sample(pool, min(3, len(pool)))
            choices = [gold] + distract
            rng.shuffle(choices)
            questions.append({"id": f"speech-{seg['pmid']}", "type": "speech",
                              "question": f"Which disease completes this statement from the talk: \"{cloze}\"",
                              "choices": choices, "answer": gold, "answer_index": choices.index(gold),
                              "gold_clips": [ci], "time": [round(sent["start"], 2), round(sent["end"], 2)]})
    # screen: the PubMed ID on the slide (a third of the talks)
    pmids = [s["pmid"] for s in segments]
    for seg in rng.sample(segments, max(1, len(segments) // 3)):
        gold_clips = sorted({clip_index(t, clips) for t in np.arange(seg["start"] + 1, seg["end"] - 1, 1.0)})
        others = rng.sample([p for p in pmids if p != seg["pmid"]], min(3, len(pmids) - 1))
        choices = [seg["pmid"]] + others
        rng.shuffle(choices)
        questions.append({"id": f"screen-{seg['pmid']}", "type": "screen",
                          "question": f"Which PubMed ID was shown on the slide while the talk covered "
                                      f"\"{seg['title'].rstrip('.')}\"?",
                          "choices": choices, "answer": seg["pmid"], "answer_index": choices.index(seg["pmid"]),
                          "gold_clips": gold_clips, "time": [round(seg["start"], 2), round(seg["end"], 2)]})
    return questions


if __name__ == "__main__":
    main()
