"""Make the demo video for `longapps video-index` / `video-qa`: almost four minutes of slides with speech.

Each part shows a slide (a Python standard-library module's name and summary) while espeak-ng reads the
start of that module's documentation aloud. Needs espeak-ng (apt-get install espeak-ng). Writes
examples/video/demo.mp4 (~1 MB; not kept in git).

    .venv/bin/python examples/video/make_video.py
    .venv/bin/longapps video-index examples/video/demo.mp4 --show
    .venv/bin/longapps video-qa examples/video/demo.mp4 "Which module creates universally unique identifiers?"
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

from longapps.adapters.video.synth import Part, have_espeak, write_video

MODULES = ["heapq", "shelve", "statistics", "hashlib", "uuid", "difflib"]


def first_words(text: str, n: int = 90) -> str:
    text = re.sub(r"\s+", " ", re.sub(r">>>.*", "", text)).strip()
    words = text.split()
    cut = " ".join(words[:n])
    return cut if len(words) <= n else cut.rsplit(".", 1)[0] + "."


def main() -> None:
    if not have_espeak():
        sys.exit("espeak-ng is needed to speak the demo (apt-get install espeak-ng)")
    parts = []
    for name in MODULES:
        doc = inspect.getdoc(importlib.import_module(name)) or name
        summary = doc.splitlines()[0]
        parts.append(Part(slide=[f"Python module: {name}", summary], speech=f"The {name} module. " + first_words(doc)))
    out = Path(__file__).with_name("demo.mp4")
    spans = write_video(out, parts, fps=2)
    for name, (a, b) in zip(MODULES, spans):
        print(f"{a:6.1f}-{b:6.1f}s  {name}")
    print(f"wrote {out} ({spans[-1][1]:.0f} s)")


if __name__ == "__main__":
    main()
