"""Dev data for `longapps chat` (issue 13), built from the real English dialogues of the `chatterbot-corpus`
package (PyPI; `pip install --no-deps chatterbot-corpus`) and the city names of the system's tz database.

    python benchmarks/chat_data.py            # -> benchmarks/data/chat/{exchanges,facts,selection}.jsonl

- exchanges.jsonl : one real two-line exchange per line {"user", "assistant", "topic"} (distractor turns and
  the bounded-memory run's user turns);
- facts.jsonl     : task (a): a personal fact said early + its recall question with 4 choices (the true
  value first in "choices", "answer": 0); values are drawn at random, distractor values from the same pool;
- selection.jsonl : task (c): multi-turn conversations (>= 3 utterances) whose last assistant line is to be
  picked among 4 (the true one + 3 lines from other conversations); "answer" is its index.
Task (b), rock-paper-scissors, needs no data (the user's moves are drawn with a favourite move at run time).
Everything is seeded; the split into dev / held-out is by topic file (held-out: topics in HELD_OUT).
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "data" / "chat"
HELD_OUT = {"science", "history", "sports"}  # topic files kept out of the dev data

NAMES = ["Ada", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Keiko", "Lars",
         "Maya", "Nikolai", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yusuf"]
PETS = ["Biscuit", "Pepper", "Mochi", "Rufus", "Nala", "Ziggy", "Luna", "Oscar", "Pixel", "Tofu", "Waffles", "Juniper"]
COLOURS = ["teal", "crimson", "ochre", "lavender", "olive", "maroon", "turquoise", "amber", "indigo", "coral"]


def _corpus_dir() -> Path:
    try:
        import chatterbot_corpus
    except ImportError:
        sys.exit("needs the chatterbot-corpus package: .venv/bin/pip install --no-deps chatterbot-corpus")
    return Path(chatterbot_corpus.__file__).parent / "data" / "english"


def conversations() -> list[tuple[str, list[str]]]:
    """(topic, utterances) for every conversation of the English corpus (yaml)."""
    import yaml

    out = []
    for f in sorted(_corpus_dir().glob("*.yml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        for conv in data.get("conversations") or []:
            lines = [str(x).strip() for x in conv if str(x).strip()]
            if len(lines) >= 2:
                out.append((f.stem, lines))
    return out


def cities() -> list[str]:
    zi = Path("/usr/share/zoneinfo")
    names = {p.name.replace("_", " ") for region in ("Europe", "Asia", "America", "Africa", "Australia")
             if (zi / region).is_dir() for p in (zi / region).iterdir() if p.is_file()}
    names = sorted(n for n in names if n.isascii() and n[0].isupper() and "GMT" not in n and len(n) > 3)
    return names or ["Lisbon", "Nairobi", "Osaka", "Lima", "Oslo", "Perth", "Dakar", "Quito", "Hanoi", "Tunis"]


def fact_items(rng: random.Random, n: int) -> list[dict]:
    """Task (a): facts with a recall question and 4 choices of the same kind."""
    pools = {
        "code": (lambda: f"{rng.randint(1000, 9999)}", "My locker code is {v}. Please remember it.",
                 "What is my locker code?"),
        "city": (lambda: rng.choice(cities()), "By the way, I was born in {v}.", "In which city was I born?"),
        "pet": (lambda: rng.choice(PETS), "My cat is called {v}.", "What is my cat called?"),
        "sister": (lambda: rng.choice(NAMES), "My sister's name is {v}.", "What is my sister's name?"),
        "colour": (lambda: rng.choice(COLOURS), "My favourite colour is {v}.", "What is my favourite colour?"),
        "flight": (lambda: f"{rng.choice('ABCDEFGHKLMNPRSTUVWXYZ')}{rng.choice('ABCDEFGHKLMNPRSTUVWXYZ')}"
                           f"{rng.randint(100, 999)}", "My flight number is {v}.", "What is my flight number?"),
    }
    kinds = sorted(pools)
    items = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        draw, say, ask = pools[kind]
        vals: list[str] = []
        while len(vals) < 4:
            v = draw()
            if v not in vals:
                vals.append(v)
        items.append({"id": f"fact{i}", "kind": kind, "fact": say.format(v=vals[0]), "question": ask,
                      "choices": vals, "answer": 0})
    return items


def build(out: Path = OUT, seed: int = 0) -> Path:
    rng = random.Random(seed)
    convs = conversations()
    dev = [(t, c) for t, c in convs if t not in HELD_OUT]
    out.mkdir(parents=True, exist_ok=True)
    ex = [{"user": c[i], "assistant": c[i + 1], "topic": t} for t, c in dev for i in range(0, len(c) - 1, 2)]
    rng.shuffle(ex)
    _write(out / "exchanges.jsonl", ex)
    _write(out / "facts.jsonl", fact_items(rng, 48))
    sel, pool = [], [(t, c) for t, c in dev if len(c) >= 3]
    all_lines = [x for _, c in dev for x in c]
    for i, (t, c) in enumerate(pool):
        # end on an assistant line: odd number of utterances (user, assistant, user, ..., assistant) -> even count
        cut = len(c) if len(c) % 2 == 0 else len(c) - 1
        if cut < 2:
            continue
        conv, truth = c[:cut - 1], c[cut - 1]
        wrong: list[str] = []
        while len(wrong) < 3:
            w = rng.choice(all_lines)
            if w != truth and w not in wrong and w not in c:
                wrong.append(w)
        choices = wrong + [truth]
        rng.shuffle(choices)
        sel.append({"id": f"sel{i}", "topic": t, "turns": conv, "choices": choices, "answer": choices.index(truth)})
    rng.shuffle(sel)
    _write(out / "selection.jsonl", sel)
    print(f"wrote {len(ex)} exchanges, 48 facts, {len(sel)} selection items to {out}")
    return out


def _write(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    build()
