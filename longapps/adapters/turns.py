"""The replay format of `longapps chat --replay`: JSON lines, one turn each.

    {"user": "text"}                                  # the model replies (greedy)
    {"user": "text", "choices": ["a", "b", ...]}      # the model picks the most likely choice

Blank lines are skipped. The whole file is checked before anything runs; every error names its line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from longapps.resources import LongappsError

MAX_TURN_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Turn:
    """One scripted user turn (``choices`` None: the model generates its reply)."""

    user: str
    choices: tuple[str, ...] | None = None
    line: int = 0


def parse_turn(text: str, where: str) -> Turn | None:
    """One JSONL line -> Turn (None for a blank line); LongappsError naming ``where`` otherwise."""
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise LongappsError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, dict):
        raise LongappsError(f"{where}: expected a JSON object like {{\"user\": \"...\"}}, got {type(obj).__name__}")
    unknown = set(obj) - {"user", "choices"}
    if unknown:
        raise LongappsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: user, choices)")
    user = obj.get("user")
    if not isinstance(user, str):
        raise LongappsError(f"{where}: \"user\" must be a string")
    if not user.strip():
        raise LongappsError(f"{where}: empty turn (\"user\" is blank)")
    choices = obj.get("choices")
    if choices is not None:
        if (not isinstance(choices, list) or not choices
                or not all(isinstance(c, str) and c.strip() for c in choices)):
            raise LongappsError(f"{where}: \"choices\" must be a non-empty list of non-empty strings")
        choices = tuple(choices)
    return Turn(user, choices)


def read_turns(path: str | Path) -> list[Turn]:
    """All turns of a replay file (checked in full first)."""
    p = Path(path)
    if str(path) != "-" and not p.is_file():
        raise LongappsError(f"replay file not found: {path}")
    if str(path) == "-":
        import sys
        text = sys.stdin.read()
    else:
        if p.stat().st_size > MAX_TURN_FILE_BYTES:
            raise LongappsError(f"{path}: larger than {MAX_TURN_FILE_BYTES >> 20} MB")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise LongappsError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    turns = []
    for i, line in enumerate(text.splitlines(), 1):
        t = parse_turn(line, f"{path}:{i}")
        if t is not None:
            turns.append(Turn(t.user, t.choices, i))
    if not turns:
        raise LongappsError(f"{path}: no turns (expected JSON lines like {{\"user\": \"...\"}})")
    return turns


__all__ = ["Turn", "parse_turn", "read_turns"]
