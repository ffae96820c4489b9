"""NER data formats, read and written with exact character offsets: JSONL, BRAT standoff, CoNLL BIO.

- JSONL: one ``{"id", "text", "spans": [{"start", "end", "label"}]}`` per line (``spans`` optional).
- BRAT standoff: a folder of ``NAME.txt`` + ``NAME.ann``; only ``T`` lines are read (notes, relations,
  events, attributes are ignored). Discontinuous entities (``T1 Disease 0 5;10 15``) keep their fragments.
- CoNLL BIO: ``token<TAB>tag`` (or space separated, tag in the last column) lines, a blank line between
  sentences, ``-DOCSTART-`` between documents. The text is rebuilt as tokens joined by single spaces,
  sentences by newlines; written files tokenise the text on word/punctuation boundaries.

Text files are read byte-exact (``newline=""``): a CRLF counts as two characters, as in BRAT's offsets.
Offsets are Python ``str`` indices (code points), ``end`` exclusive.

Overlap policy (one, everywhere a tagger needs flat spans): **keep the longest span**; ties go to the
earlier start, then the first listed; every span overlapping a kept one is dropped and counted
(``resolve_overlaps``). A discontinuous entity is tagged as its fragments (each a span with the label).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from ..resources import LongappsError

MAX_TEXT_BYTES = 16 * 1024 * 1024  # a single document larger than this is refused (bounded memory)


@dataclass(frozen=True)
class Span:
    """A labelled character span ``text[start:end]``; ``fragments`` holds the (start, end) pieces of a
    discontinuous entity (``start``/``end`` then cover first to last fragment)."""

    start: int
    end: int
    label: str
    text: str = ""
    score: float | None = None
    fragments: tuple[tuple[int, int], ...] | None = None

    def pieces(self) -> tuple[tuple[int, int], ...]:
        """The (start, end) fragments, or the span itself when contiguous."""
        return self.fragments or ((self.start, self.end),)

    def to_dict(self) -> dict:
        d: dict = {"start": self.start, "end": self.end, "label": self.label}
        if self.text:
            d["text"] = self.text
        if self.score is not None:
            d["score"] = round(float(self.score), 4)
        if self.fragments:
            d["fragments"] = [list(f) for f in self.fragments]
        return d


@dataclass
class Document:
    """One text with its (gold or predicted) spans."""

    id: str
    text: str
    spans: list[Span] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- reading


def read_text(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A text file decoded as UTF-8 (BOM dropped), newlines untouched; one-line LongappsError when the file is
    missing, not UTF-8, or larger than ``max_bytes``."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as err:
        raise LongappsError(f"{p}: cannot read ({err.strerror or err})") from err
    if size > max_bytes:
        raise LongappsError(f"{p}: {size / 2**20:.0f} MB is over the {max_bytes / 2**20:.0f} MB limit per document; "
                            "split it into smaller files")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LongappsError(f"{p}: not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
                            "convert it, e.g. `iconv -f latin1 -t utf-8`") from None
    return text[1:] if text.startswith("\ufeff") else text


def _check_span(s: Span, text: str, where: str) -> None:
    for a, b in s.pieces():
        if not (0 <= a < b <= len(text)):
            raise LongappsError(f"{where}: span {a}-{b} is out of range for a text of {len(text)} characters")


def _span_from_dict(d: dict, text: str, where: str) -> Span:
    try:
        frags = tuple((int(a), int(b)) for a, b in d["fragments"]) if d.get("fragments") else None
        s = Span(int(d["start"]), int(d["end"]), str(d["label"]), fragments=frags)
    except (KeyError, TypeError, ValueError) as err:
        raise LongappsError(f"{where}: a span needs integer 'start', 'end' and a 'label' ({err})") from None
    _check_span(s, text, where)
    if d.get("text") is not None and d["text"] != text[s.start:s.end] and not frags:
        raise LongappsError(f"{where}: span {s.start}-{s.end} text {d['text']!r} does not match the document "
                            f"({text[s.start:s.end]!r})")
    return Span(s.start, s.end, s.label, text[s.start:s.end], fragments=frags)


def read_jsonl(path: str | os.PathLike) -> list[Document]:
    """``{"id", "text", "spans"?}`` per line; blank lines skipped; errors name file and line."""
    p = Path(path)
    docs: list[Document] = []
    for lineno, line in enumerate(read_text(p).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise LongappsError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise LongappsError(f"{where}: each line must be an object with a 'text' string")
        text = obj["text"]
        spans = [_span_from_dict(d, text, where) for d in obj.get("spans") or []]
        docs.append(Document(str(obj.get("id", f"{p.stem}-{lineno}")), text, spans))
    return docs


_T_LINE = re.compile(r"^(T\d+)\t(\S+) ([\d ;]+)\t(.*)$")


def read_ann(ann_path: str | os.PathLike, text: str) -> list[Span]:
    """The ``T`` lines of one BRAT ``.ann`` against its text; offsets checked (out of range, or the quoted
    text not matching the document) with file and line in the error."""
    p = Path(ann_path)
    spans: list[Span] = []
    for lineno, line in enumerate(read_text(p).splitlines(), 1):
        if not line.startswith("T"):
            continue  # notes (#), relations (R), events (E), attributes (A), normalisations (N)
        where = f"{p}:{lineno}"
        m = _T_LINE.match(line)
        if not m:
            raise LongappsError(f"{where}: malformed text-bound annotation line {line[:80]!r}")
        _, label, offs, quoted = m.groups()
        try:
            frags = tuple((int(a), int(b)) for a, b in (f.split() for f in offs.split(";")))
        except ValueError:
            raise LongappsError(f"{where}: malformed offsets {offs!r}") from None
        s = Span(frags[0][0], frags[-1][1], label, fragments=frags if len(frags) > 1 else None)
        _check_span(s, text, where)
        got = " ".join(text[a:b] for a, b in frags)
        if got != quoted and got.replace("\n", " ").replace("\r", " ") != quoted:
            raise LongappsError(f"{where}: offsets {offs} give {got[:60]!r}, the annotation says {quoted[:60]!r}")
        spans.append(Span(s.start, s.end, label, text[s.start:s.end], fragments=s.fragments))
    return spans


def read_brat(folder: str | os.PathLike) -> list[Document]:
    """Every ``NAME.txt`` of a folder with its ``NAME.ann`` (a missing .ann = no spans), sorted by name."""
    root = Path(folder)
    txts = sorted(root.glob("*.txt"))
    if not txts:
        raise LongappsError(f"{root}: no .txt files")
    docs = []
    for t in txts:
        text = read_text(t)
        ann = t.with_suffix(".ann")
        docs.append(Document(t.stem, text, read_ann(ann, text) if ann.exists() else []))
    return docs


def read_conll(path: str | os.PathLike) -> list[Document]:
    """CoNLL BIO (IOB2; IOB1 ``I-`` starts are accepted) -> documents with rebuilt text and exact spans."""
    p = Path(path)
    docs: list[Document] = []
    parts: list[str] = []
    spans: list[Span] = []
    pos = 0
    cur: list = []  # [start, end, label] of the open span
    sent_open = False

    def close_span() -> None:
        if cur:
            spans.append(Span(cur[0], cur[1], cur[2]))
            cur.clear()

    def flush_doc() -> None:
        nonlocal parts, spans, pos, sent_open
        close_span()
        if parts:
            text = "".join(parts)
            docs.append(Document(f"{p.stem}-{len(docs) + 1}", text, [Span(s.start, s.end, s.label, text[s.start:s.end])
                                                                    for s in spans]))
        parts, spans, pos, sent_open = [], [], 0, False

    for lineno, raw in enumerate(read_text(p).splitlines(), 1):
        line = raw.strip()
        if line.startswith("-DOCSTART-"):
            flush_doc()
            continue
        if not line:
            close_span()
            if sent_open:
                parts.append("\n")
                pos += 1
                sent_open = False
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) < 2:
            raise LongappsError(f"{p}:{lineno}: expected 'token<TAB>tag', got {raw[:80]!r}")
        token, tag = cols[0], cols[-1]
        if tag != "O" and not re.match(r"^[BI]-\S+$", tag):
            raise LongappsError(f"{p}:{lineno}: tag {tag!r} is not O, B-TYPE or I-TYPE")
        if sent_open:
            parts.append(" ")
            pos += 1
        start = pos
        parts.append(token)
        pos += len(token)
        sent_open = True
        if tag == "O":
            close_span()
        elif tag.startswith("I-") and cur and cur[2] == tag[2:]:
            cur[1] = pos
        else:
            close_span()
            cur.extend([start, pos, tag[2:]])
    flush_doc()
    for d in docs:  # drop the trailing newline of the last sentence
        if d.text.endswith("\n"):
            d.text = d.text[:-1]
    return docs


def detect_format(path: str | os.PathLike) -> str:
    """'brat' (a folder with .ann files), 'txt' (a .txt file or a folder of them), 'jsonl' or 'conll'."""
    p = Path(path)
    if not p.exists():
        raise LongappsError(f"{p}: no such file or folder")
    if p.is_dir():
        return "brat" if any(p.glob("*.ann")) else "txt"
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".conll", ".bio", ".tsv", ".iob", ".iob2"):
        return "conll"
    return "txt"


def read_documents(path: str | os.PathLike, fmt: str | None = None) -> list[Document]:
    """Read a corpus in any supported format (auto-detected unless ``fmt``); refuses an empty corpus."""
    p = Path(path)
    fmt = fmt or detect_format(p)
    if fmt == "jsonl":
        docs = read_jsonl(p)
    elif fmt == "brat":
        docs = read_brat(p)
    elif fmt == "conll":
        docs = read_conll(p)
    elif fmt == "txt":
        files = sorted(p.glob("*.txt")) if p.is_dir() else [p]
        if p.is_dir() and not files:
            raise LongappsError(f"{p}: no .txt files")
        docs = [Document(f.stem, read_text(f)) for f in files]
    else:
        raise LongappsError(f"unknown format {fmt!r} (jsonl, brat, conll, txt)")
    if not docs or all(not d.text.strip() for d in docs):
        raise LongappsError(f"{p}: empty (no documents with text)")
    return docs


def iter_texts(path: str | os.PathLike) -> Iterator[Document]:
    """Documents to tag, one at a time (bounded memory over big folders): a .txt file, a folder of .txt files
    (BRAT folders too: their .ann are ignored), or a JSONL of ``{"id", "text"}``."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "jsonl":
        docs = read_jsonl(p)
        if not docs:
            raise LongappsError(f"{p}: empty (no documents)")
        yield from docs
        return
    if fmt == "conll":
        yield from read_conll(p)
        return
    files = sorted(p.glob("*.txt")) if p.is_dir() else [p]
    if not files:
        raise LongappsError(f"{p}: no .txt files")
    for f in files:
        text = read_text(f)
        if not text.strip() and len(files) == 1:
            raise LongappsError(f"{f}: empty file")
        yield Document(f.stem, text)


# --------------------------------------------------------------------------------------------- policies


def resolve_overlaps(spans: Iterable[Span]) -> tuple[list[Span], int]:
    """Flat spans for tagging: discontinuous spans split into their fragments, then the longest span kept
    wherever spans overlap (ties: earlier start, then first listed). Returns (kept sorted by start, dropped)."""
    flat: list[Span] = []
    for s in spans:
        for a, b in s.pieces():
            flat.append(Span(a, b, s.label, s.text if not s.fragments else "", s.score))
    order = sorted(range(len(flat)), key=lambda i: (-(flat[i].end - flat[i].start), flat[i].start, i))
    kept: list[Span] = []
    taken: list[tuple[int, int]] = []
    for i in order:
        s = flat[i]
        if any(s.start < b and a < s.end for a, b in taken):
            continue
        kept.append(s)
        taken.append((s.start, s.end))
    kept.sort(key=lambda s: s.start)
    # identical duplicates are not "dropped" information
    unique = {(s.start, s.end, s.label) for s in flat}
    return kept, len(unique) - len(kept)


# ---------------------------------------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike, data: str) -> None:
    """Write text to ``path`` via a temp file in the same folder and a rename (never half-written)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonl_line(doc: Document, with_text: bool = True) -> str:
    """One JSON line for a document (``text`` left out when ``with_text`` is False)."""
    obj: dict = {"id": doc.id}
    if with_text:
        obj["text"] = doc.text
    obj["spans"] = [s.to_dict() for s in doc.spans]
    return json.dumps(obj, ensure_ascii=False)


def write_jsonl(docs: Iterable[Document], path: str | os.PathLike) -> None:
    """JSONL with text and spans (atomic)."""
    atomic_write(path, "".join(jsonl_line(d) + "\n" for d in docs))


def ann_text(doc: Document) -> str:
    """The ``.ann`` content of a document (T lines; discontinuous fragments joined by ';')."""
    lines = []
    for i, s in enumerate(doc.spans, 1):
        frags = s.pieces()
        offs = ";".join(f"{a} {b}" for a, b in frags)
        quoted = " ".join(doc.text[a:b] for a, b in frags).replace("\r", " ").replace("\n", " ")
        lines.append(f"T{i}\t{s.label} {offs}\t{quoted}\n")
    return "".join(lines)


def write_brat(docs: Iterable[Document], folder: str | os.PathLike) -> None:
    """``ID.txt`` + ``ID.ann`` per document in ``folder`` (each file atomic)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for d in docs:
        name = re.sub(r"[^\w.-]", "_", d.id) or "doc"
        atomic_write(root / f"{name}.txt", d.text)
        atomic_write(root / f"{name}.ann", ann_text(d))


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def conll_text(doc: Document) -> str:
    """CoNLL BIO lines of one document: word/punctuation tokens, one sentence per text line; a token gets the
    label of the (overlap-resolved) span it overlaps, B- on the span's first token."""
    spans, _ = resolve_overlaps(doc.spans)
    out = []
    for line in re.finditer(r"[^\n]+", doc.text):
        toks = [(m.start() + line.start(), m.end() + line.start(), m.group()) for m in _WORD.finditer(line.group())]
        if not toks:
            continue
        prev = None
        for a, b, tok in toks:
            hit = next((s for s in spans if s.start < b and a < s.end), None)
            if hit is None:
                tag = "O"
            else:
                tag = ("I-" if prev is hit else "B-") + hit.label
            prev = hit
            out.append(f"{tok}\t{tag}\n")
        out.append("\n")
    return "".join(out)


def write_conll(docs: Iterable[Document], path: str | os.PathLike) -> None:
    """CoNLL BIO with a ``-DOCSTART-`` line before each document (atomic)."""
    atomic_write(path, "".join(f"-DOCSTART-\tO\n\n{conll_text(d)}" for d in docs))


__all__ = ["Span", "Document", "read_text", "read_jsonl", "read_ann", "read_brat", "read_conll", "read_documents",
           "iter_texts", "detect_format", "resolve_overlaps", "atomic_write", "jsonl_line", "write_jsonl",
           "ann_text", "write_brat", "conll_text", "write_conll", "MAX_TEXT_BYTES"]
