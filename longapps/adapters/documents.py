"""Documents and document pairs on disk: what `longapps match` reads.

- `read_document(path, max_bytes)`: a text file, bounded (a 100 MB file reads its first `max_bytes`), with one
  clear error for binary, empty, unreadable or missing files.
- `load_pairs(path)`: JSON lines `{"a": PATH, "b": PATH, "label": 0|1}`; `"a_text"` / `"b_text"` give a document
  inline instead of a path. Paths are relative to the pairs file's folder (then to the working directory).
  Every problem names its line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from longapps.index.files import read_source
from longapps.resources import LongappsError

# what a document corpus folder is made of (other files are skipped and reported)
DOC_EXTENSIONS = frozenset(".txt .text .md .markdown .rst .adoc .asciidoc .org .tex .textile .wiki .csv .tsv .log "
                           ".html .htm .xml .json .jsonl .yaml .yml".split())


def read_document(path: str | Path, max_bytes: int) -> tuple[str, str]:
    """(text, note) of a document file; note is '' or 'truncated' / 'non-utf8'. Raises LongappsError (one line)
    for a missing, unreadable, binary or empty file."""
    p = Path(path)
    if not p.exists():
        raise LongappsError(f"document not found: {path}")
    if p.is_dir():
        raise LongappsError(f"{path} is a folder (use --corpus for a folder of documents)")
    text, note = read_source(p, max_bytes=max_bytes)
    if text is None:
        raise LongappsError(f"{path}: {note} file, not a text document")
    if not text.strip():
        raise LongappsError(f"{path}: empty document")
    return text, note


@dataclass
class DocPair:
    """Two documents (text, and the path they came from or '<inline>') and an optional 0/1 label."""

    a: str
    b: str
    a_name: str
    b_name: str
    label: int | None
    line: int


def _label(value: object, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return int(value.strip().lower() in ("1", "true"))
    raise LongappsError(f"{where}: label must be 0 or 1 (or true/false), got {value!r}")


def _side(row: dict, key: str, base: Path, where: str, max_bytes: int) -> tuple[str, str]:
    inline = row.get(f"{key}_text")
    if inline is not None:
        if not isinstance(inline, str) or not inline.strip():
            raise LongappsError(f"{where}: \"{key}_text\" must be a non-empty string")
        return inline, "<inline>"
    ref = row.get(key)
    if not isinstance(ref, str) or not ref.strip():
        raise LongappsError(f"{where}: needs \"{key}\" (a file path) or \"{key}_text\" (the document itself)")
    for cand in (base / ref, Path(ref)):
        if cand.is_file():
            try:
                text, _ = read_document(cand, max_bytes)
            except LongappsError as err:
                raise LongappsError(f"{where}: {err}") from None
            return text, ref
    raise LongappsError(f"{where}: file not found: {ref}")


def load_pairs(path: str | Path, *, need_labels: bool = False, max_bytes: int = 4_000_000) -> list[DocPair]:
    """Read a pairs file (JSON lines); blank lines and lines starting with '#' are skipped."""
    p = Path(path)
    if not p.is_file():
        raise LongappsError(f"pairs file not found: {path}")
    pairs: list[DocPair] = []
    with open(p, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{p.name} line {n}"
            try:
                row = json.loads(line)
            except ValueError as err:
                raise LongappsError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise LongappsError(f"{where}: expected a JSON object like {{\"a\": ..., \"b\": ..., \"label\": 1}}")
            a, a_name = _side(row, "a", p.parent, where, max_bytes)
            b, b_name = _side(row, "b", p.parent, where, max_bytes)
            if "label" in row and row["label"] is not None:
                label: int | None = _label(row["label"], where)
            elif need_labels:
                raise LongappsError(f"{where}: missing \"label\" (0 or 1) needed for training")
            else:
                label = None
            pairs.append(DocPair(a, b, a_name, b_name, label, n))
    if not pairs:
        raise LongappsError(f"pairs file {path} has no pairs")
    return pairs
