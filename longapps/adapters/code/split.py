"""split_code: source file -> CodeUnits (functions, methods, class summaries, module code) with SEA blocks."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from longapps.adapters.chunk import Chunk, approx_tokens
from longapps.adapters.code.blocks import Layout, Packer, cut_line, layout_of
from longapps.adapters.code.languages import SPECS, get_parser, language_for
from longapps.adapters.code.units import RawUnit, end_row, find_units

log = logging.getLogger(__name__)
CountTokens = Callable[[Sequence[str]], list[int]]

WINDOW_LINES = 60      # fallback windows, and the most non-blank lines in one module unit
ERROR_SHARE = 0.5      # parse errors over more of the file than this, and units for less than half of
                       # its lines -> line windows
_TRIVIAL = re.compile(r"\s*[{}()\[\];,]*\s*(//.*)?$")  # lone braces and the like
_PREPROC = re.compile(r"\s*#\s*(include|import|pragma|ifndef|ifdef|endif|else|elif|if\b|define\s+\w+\s*$)")


@dataclass
class CodeUnit:
    """A searchable unit of a source file and its blocks (each fits the encoder's token budget)."""

    path: str
    language: str
    kind: str          # 'function' | 'method' | 'class' | 'module' | 'window'
    name: str          # qualified ('Outer.method', 'ns::Cls::method'), '<module>', '<lines 1-60>'
    signature: str
    start: int         # 1-based, inclusive
    end: int           # 1-based, inclusive
    text: str
    blocks: list[Chunk]
    parents: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    kind: str
    name: str
    parents: list[str]
    signature: str
    rows: list[int]
    start: int
    end: int
    packer: Packer | None = None
    spans: list[tuple[int, int]] = field(default_factory=list)
    inline: str | None = None  # the unit's own text when it shares its lines with much other code

def split_code(text: str, path: str, *, max_tokens: int = 200, count_tokens: CountTokens | None = None,
               language: str | None = None) -> list[CodeUnit]:
    """Split a source file into units along its syntax tree, and each unit into blocks of <= max_tokens.

    Falls back to line windows (kind 'window', language 'text' when the language is unknown) when there is
    no grammar or the parse is mostly errors. Never raises on odd input; empty text gives [].
    """
    if not text or not text.strip():
        return []
    count = count_tokens or approx_tokens
    max_tokens = max(1, int(max_tokens))
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    lang = language or language_for(path)
    parsed = None
    if lang is not None and lang in SPECS:
        parsed = _parse(text, lang)
        if (lang == "c" and language is None and parsed is not None and parsed[2] > 0
                and path.lower().endswith(".h")):
            # a .h file is as often C++ as C: keep whichever grammar reads it with fewer errors
            alt = _parse(text, "cpp")
            if alt is not None and alt[2] < parsed[2]:
                lang, parsed = "cpp", alt
    try:
        if parsed is not None:
            units = _split_tree(parsed, lines, path, lang, max_tokens, count)
            if units is not None:
                return units
    except RecursionError:  # pragma: no cover - pathological nesting
        log.warning("%s: too deeply nested for the AST split; using line windows", path)
    except Exception:  # pragma: no cover - never fail a whole indexing run on one file
        log.exception("%s: AST split failed; using line windows", path)
    return _split_windows(lines, path, lang if lang in SPECS else "text", max_tokens, count)


def _parse(text: str, lang: str):
    """(tree, source bytes, share of the bytes inside ERROR nodes), or None without a grammar."""
    parser = get_parser(lang)
    if parser is None:
        return None
    try:
        src = text.encode("utf-8", "replace")
        tree = parser.parse(src)
    except Exception:  # pragma: no cover
        return None
    root = tree.root_node
    share = _error_bytes(root) / max(1, len(src)) if root.has_error else 0.0
    return tree, src, share


def _error_bytes(root) -> int:
    total, stack = 0, [root]
    while stack:
        n = stack.pop()
        if n.is_error:
            total += n.end_byte - n.start_byte
        elif n.has_error:
            stack.extend(n.children)
    return total


# -- costs -----------------------------------------------------------------------------------------------
def _row_costs(lines: list[str], count: CountTokens) -> tuple[list[int], int, bool]:
    """Tokens per row (one batched call for all distinct non-blank rows), the cost of a line break, and
    whether row sums were exact on a probe (a run of the file's own lines counted joined)."""
    distinct = list(dict.fromkeys(ln for ln in lines if ln.strip()))
    sample = [ln for ln in lines if ln.strip()][:40]
    sizes = [int(s) for s in count([*distinct, "x\nx", "x", "\n".join(sample)])]
    newline = max(0, sizes[-3] - 2 * sizes[-2])
    table = dict(zip(distinct, sizes))
    costs = [table.get(ln, 0) for ln in lines]
    exact = sizes[-1] == sum(table[ln] for ln in sample) + newline * max(0, len(sample) - 1)
    return costs, newline, exact


def _finish(plans: list[_Plan], lines, costs, newline, exact, layout, path, language, budget, count) -> list[CodeUnit]:
    inline = [p for p in plans if p.inline is not None]
    plans_rows = [p for p in plans if p.inline is None]
    for p in plans_rows:
        p.packer = Packer(p.rows, costs, layout, newline)
        p.spans = p.packer.split(budget)
    if not exact:  # per-row sums may under-estimate: recount the full blocks
        _verify(plans_rows, lines, budget, count)
    inline_sizes = dict(zip(map(id, inline), count([p.inline for p in inline]))) if inline else {}
    units = []
    for p in plans:
        if p.inline is not None:
            blocks = _inline_chunks(p, path, budget, count, inline_sizes[id(p)])
            text = p.inline
        else:
            blocks = _chunks(p, lines, costs, path, budget, count)
            text = "\n".join(lines[r] for r in p.rows)
        if not blocks:
            continue
        units.append(CodeUnit(path, language, p.kind, p.name, p.signature, p.start + 1, p.end + 1, text, blocks,
                              list(p.parents)))
    units.sort(key=lambda u: (u.start, -u.end))
    return units


def _block_text(p: _Plan, a: int, b: int, lines) -> str:
    return "\n".join(lines[r] for r in p.rows[a:b])


def _verify(plans: list[_Plan], lines, budget: int, count: CountTokens) -> None:
    """Recount near-full blocks as whole texts; re-split any that the per-row sums under-estimated."""
    for _ in range(3):
        todo = [(p, i) for p in plans for i, (a, b) in enumerate(p.spans)
                if b - a > 1 and p.packer.cost(a, b) >= 0.75 * budget]
        if not todo:
            return
        sizes = count([_block_text(p, *p.spans[i], lines) for p, i in todo])
        over = [(p, i, s) for (p, i), s in zip(todo, sizes) if s > budget]
        if not over:
            return
        for p, i, s in sorted(over, key=lambda x: -x[1]):
            a, b = p.spans[i]
            tighter = max(1, int(budget * budget / s * 0.95), int(p.packer.cost(a, b) * budget / s * 0.95))
            p.spans[i:i + 1] = p.packer.split(min(tighter, budget - 1) if budget > 1 else 1, a, b)


def _inline_chunks(p: _Plan, path, budget, count, size) -> list[Chunk]:
    """Blocks of a unit cut out of long shared lines (minified code): its own text, cut by characters."""
    text = p.inline
    pieces = [text] if size <= budget else cut_line(text, budget, count, size)
    out, offset = [], 0
    for k, piece in enumerate(pieces):
        row = p.start + text.count("\n", 0, offset)
        offset += len(piece)
        if piece.strip():
            meta = {"index": len(out)} if len(pieces) == 1 else {"index": len(out), "part": k}
            out.append(Chunk(piece, path, row + 1, p.start + text.count("\n", 0, offset) + 1, meta))
    return out


def _chunks(p: _Plan, lines, costs, path, budget, count) -> list[Chunk]:
    out: list[Chunk] = []
    rows = p.rows
    for a, b in p.spans:
        while a < b and not lines[rows[a]].strip():
            a += 1
        while b > a and not lines[rows[b - 1]].strip():
            b -= 1
        if a >= b:
            continue
        if b - a == 1 and costs[rows[a]] > budget:
            pieces = cut_line(lines[rows[a]], budget, count, costs[rows[a]])
            for k, piece in enumerate(pieces):
                if piece.strip():
                    out.append(Chunk(piece, path, rows[a] + 1, rows[a] + 1, {"index": len(out), "part": k}))
            continue
        out.append(Chunk(_block_text(p, a, b, lines), path, rows[a] + 1, rows[b - 1] + 1, {"index": len(out)}))
    return out


# -- AST split -------------------------------------------------------------------------------------------
def _split_tree(parsed, lines, path, lang, budget, count) -> list[CodeUnit] | None:
    """The AST split, or None when the parse is mostly errors and yields units for little of the file."""
    tree, src, error_share = parsed
    root = tree.root_node
    n = len(lines)
    raw = find_units(root, src, lines, lang)
    if error_share > ERROR_SHARE:
        rows = set()
        for u in raw:
            rows.update(range(u.start, min(u.end, n - 1) + 1))
        code = sum(1 for ln in lines if ln.strip())
        if sum(1 for r in rows if lines[r].strip()) < 0.5 * code:
            return None
    layout = layout_of(root, lines)
    plans: list[_Plan] = []

    def add(u: RawUnit):
        if u.kind == "class":
            drop = set()
            for c in u.children:
                drop.update(range(c.start, c.decl))
                drop.update(range(c.keep_upto + 1, c.end + 1))
            rows = [r for r in range(u.start, min(u.end, n - 1) + 1) if r not in drop]
        else:
            rows = list(range(u.start, min(u.end, n - 1) + 1))
        if u.kind == "class":
            rows = _squeeze_blank(rows, lines)
        a, b = u.span
        if sum(len(lines[r]) for r in range(u.decl, min(u.end, n - 1) + 1)) > 2 * (b - a) + 200:
            # the unit shares its lines with much other code (minified, one-liners): take its own bytes
            keep, pos = [], a
            for c in sorted(u.children, key=lambda c: c.span) if u.kind == "class" else []:
                if c.span[0] >= pos:
                    keep.append(src[pos:c.span[0]])
                    pos = c.span[1]
            keep.append(src[pos:b])
            plans.append(_Plan(u.kind, u.name, u.parents, u.signature, [], u.decl, u.end,
                               inline=b"".join(keep).decode("utf-8", "replace")))
        elif rows:
            plans.append(_Plan(u.kind, u.name, u.parents, u.signature, rows, u.start, u.end))
        for c in u.children:
            add(c)

    covered = [False] * n
    for u in raw:
        add(u)
        for r in range(u.start, min(u.end, n - 1) + 1):
            covered[r] = True
    costs, newline, exact = _row_costs(lines, count)
    plans.extend(_module_plans(root, lines, covered, layout, lang, costs, newline, budget))
    return _finish(plans, lines, costs, newline, exact, layout, path, lang, budget, count)


def _module_plans(root, lines, covered, layout, lang, costs, newline, budget) -> list[_Plan]:
    """Top-level code outside every unit, cut (at block boundaries) into module units of at most
    WINDOW_LINES non-blank lines; those holding only imports, comments and blank lines are dropped."""
    rows = [r for r in range(len(lines)) if not covered[r]]
    if not any(lines[r].strip() for r in rows):
        return []
    imports = set()
    spec = SPECS[lang]
    for c in root.named_children:
        if c.type in spec.imports and not (c.type == "mod_item" and c.child_by_field_name("body") is not None):
            imports.update(range(c.start_point.row, end_row(c) + 1))
    stack = list(root.named_children)
    while stack:  # a namespace's opening and closing lines say nothing on their own
        c = stack.pop()
        if c.type in spec.namespaces or c.type == "linkage_specification":
            imports.update((c.start_point.row, end_row(c)))
            stack.extend(c.named_children)
        elif c.type in ("declaration_list", "statement_block", "expression_statement", "export_statement",
                        "preproc_ifdef", "preproc_if", "preproc_else"):
            stack.extend(c.named_children)
    imports.update(r for r in rows if _TRIVIAL.match(lines[r]))
    if lang in ("c", "cpp"):
        imports.update(r for r in rows if _PREPROC.match(lines[r]))
    spans = Packer(rows, costs, layout, newline).split(budget)
    groups: list[list[tuple[int, int]]] = []
    size = 0
    for a, b in spans:
        k = sum(1 for r in rows[a:b] if lines[r].strip())
        if groups and size + k <= WINDOW_LINES:
            groups[-1].append((a, b))
            size += k
        else:
            groups.append([(a, b)])
            size = k
    out = []
    for g in groups:
        sub = rows[g[0][0]:g[-1][1]]
        if not any(lines[r].strip() and not layout.soft[r] and r not in imports for r in sub):
            continue
        nonblank = [r for r in sub if lines[r].strip()]
        sub = _squeeze_blank([r for r in sub if nonblank[0] <= r <= nonblank[-1]], lines)
        out.append(_Plan("module", "<module>", [], "", sub, nonblank[0], nonblank[-1]))
    return out


def _squeeze_blank(rows: list[int], lines) -> list[int]:
    """Rows with each run of blank rows cut to one (what is left between units that were taken out)."""
    out: list[int] = []
    for r in rows:
        if not lines[r].strip() and out and not lines[out[-1]].strip():
            continue
        out.append(r)
    return out


# -- fallback --------------------------------------------------------------------------------------------
def _split_windows(lines, path, language, budget, count) -> list[CodeUnit]:
    n = len(lines)
    layout = Layout.flat(lines)
    plans = []
    for s in range(0, n, WINDOW_LINES):
        rows = list(range(s, min(n, s + WINDOW_LINES)))
        nonblank = [r for r in rows if lines[r].strip()]
        if not nonblank:
            continue
        plans.append(_Plan("window", f"<lines {nonblank[0] + 1}-{nonblank[-1] + 1}>", [], "", rows,
                           nonblank[0], nonblank[-1]))
    if not plans:
        return []
    costs, newline, exact = _row_costs(lines, count)
    return _finish(plans, lines, costs, newline, exact, layout, path, language, budget, count)
