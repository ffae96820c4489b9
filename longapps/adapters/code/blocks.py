"""Cut a unit into blocks that each fit a token budget, along the AST (the SEA block split).

A unit is a list of source rows (contiguous for functions; with method bodies left out for class summaries;
top-level leftovers for module code). Each boundary between two rows has a *depth*, the nesting depth of the
deepest AST node spanning it, and is *clean* when that node is block-like (its children are statements), i.e.
cutting there keeps every statement whole.

A range that does not fit is cut at its shallowest boundaries (sibling statements; a header and its body;
the branches of an if), and the pieces are packed greedily in order. A piece that alone does not fit is split
the same way one level down (the statements of its body); a small open block before it (its header, a short
statement) is carried into its first block. A full block is closed at the best boundary of its second half
(clean, then shallowest, then latest) rather than just before the piece that did not fit. Comments and blank
rows go with the statement after them, lone closing brackets with what they close. A single row that does
not fit is cut inside the line.

Token counts are per row (one batched call per file) and summed; `newline` is the cost of a line break for
tokenizers that count it (0 for WordPiece / whitespace splitters).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

CountTokens = Callable[[Sequence[str]], list[int]]


# nodes whose children are statements or declarations: cutting between two of their children keeps every
# statement whole ("clean" boundaries)
_BLOCK_SUFFIXES = ("block", "body", "program", "module", "source_file", "translation_unit", "statement_list",
                   "declaration_list", "enumerator_list", "enum_variant_list", "case", "switch_default",
                   "case_statement", "switch_block_statement_group", "object", "array", "list_literal",
                   "initializer_list", "interface_type", "dictionary", "list",
                   "body_statement", "statements", "compound_statement", "do_group", "chunk",
                   "compilation_unit", "switch_section", "then", "else")
_NOT_BLOCKS = frozenset({"argument_list", "parameter_list", "template_argument_list", "template_parameter_list",
                         "type_parameter_list", "expression_list", "pattern_list", "type_list",
                         "identifier_list", "lambda_parameters"})


def is_block_like(node_type: str) -> bool:
    return node_type.endswith(_BLOCK_SUFFIXES) and node_type not in _NOT_BLOCKS


_CLOSER = re.compile(r"\s*([)\]}]+|(end|fi|done|esac)\b)[)\]};,]*\s*(//.*|/\*.*|#.*|--.*)?$")


@dataclass
class Layout:
    """Per-row facts a Packer needs: boundary depth and cleanliness (row r | r+1), soft (blank/comment) rows."""

    depth: list[int]
    clean: list[bool]
    soft: list[bool]
    closer: list[bool] = field(default_factory=list)  # rows of closing brackets only (`}`, `});`)

    @classmethod
    def flat(cls, lines: list[str]) -> "Layout":
        n = max(len(lines), 1)
        return cls([0] * n, [True] * n, [not ln.strip() for ln in lines])


def layout_of(root, lines: list[str]) -> Layout:
    """depth[r]: nesting depth of the deepest node spanning the boundary between rows r and r+1, clean[r]:
    whether that node is block-like; soft[r]: row r is blank or only a comment."""
    n_rows = len(lines)
    depth = [0] * max(n_rows, 1)
    clean = [True] * max(n_rows, 1)
    soft = [not ln.strip() for ln in lines]
    stack = [(root, 0)]
    while stack:
        node, d = stack.pop()
        s, s_col = node.start_point
        e_row, e_col = node.end_point
        e = e_row - 1 if (e_col == 0 and e_row > s) else e_row
        t = node.type
        if "comment" in t and s < n_rows and not lines[s][:s_col].strip():
            last = min(e, n_rows - 1)
            tail = lines[last][e_col:] if e_row == last else ""
            if not tail.strip():
                for r in range(s, last + 1):
                    soft[r] = True
        if e <= s:
            continue  # single-row node: neither it nor its descendants span a boundary
        e = min(e, n_rows - 1)
        if e > s:
            depth[s:e] = [d] * (e - s)
            clean[s:e] = [is_block_like(t)] * (e - s)
        for c in node.children:
            stack.append((c, d + 1))
    closer = [bool(_CLOSER.match(ln)) for ln in lines]
    return Layout(depth, clean, soft, closer)


class Packer:
    """Blocks of one unit: `rows` are the unit's source rows in order (0-based)."""

    def __init__(self, rows: list[int], costs: list[int], layout: Layout, newline: int = 0):
        self.rows = rows
        self.n = len(rows)
        self.newline = newline
        self.prefix = [0]
        for r in rows:
            self.prefix.append(self.prefix[-1] + costs[r])
        depth, clean = layout.depth, layout.clean
        bd, ok = [], []
        for p in range(self.n - 1):
            r0, r1 = rows[p], rows[p + 1]
            if r1 == r0 + 1:
                bd.append(depth[r0])
                ok.append(clean[r0])
            else:  # rows left out between them (method bodies of a class summary): the shallowest boundary
                k = min(range(r0, r1), key=depth.__getitem__) if r1 > r0 else r0
                bd.append(depth[k])
                ok.append(clean[k])
        self.bd = bd
        self.clean = ok                          # cutting there keeps statements whole
        self.soft = [layout.soft[r] for r in rows]   # blank or comment-only rows
        self.closer = [layout.closer[r] for r in rows] if layout.closer else [False] * self.n

    def cost(self, a: int, b: int) -> int:
        return self.prefix[b] - self.prefix[a] + self.newline * max(0, b - a - 1)

    def split(self, budget: int, a: int = 0, b: int | None = None) -> list[tuple[int, int]]:
        """Position ranges [a, b) covering the unit in order, each within `budget` unless a single row."""
        b = self.n if b is None else b
        if a >= b:
            return []
        blocks = self._pack(a, b, budget)
        return self._merge_small(blocks, budget)

    def _pieces(self, a: int, b: int) -> list[tuple[int, int]]:
        bd = self.bd
        m = min(bd[a:b - 1])
        pieces, start = [], a
        for p in range(a, b - 1):
            if bd[p] == m:
                pieces.append((start, p + 1))
                start = p + 1
        pieces.append((start, b))
        # comments and blank lines go with the statement that follows them
        merged: list[tuple[int, int]] = []
        pending = None
        for x, y in pieces:
            if pending is not None:
                x = pending
                pending = None
            if all(self.soft[x:y]):
                pending = x
                continue
            merged.append((x, y))
        if pending is not None:
            if merged:
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((pending, b))
        # closing brackets go with what they close
        out: list[tuple[int, int]] = []
        for x, y in merged:
            if out and all(self.closer[p] or self.soft[p] for p in range(x, y)):
                out[-1] = (out[-1][0], y)
            else:
                out.append((x, y))
        return out

    def _pack(self, a: int, b: int, budget: int, cur: tuple[int, int] | None = None) -> list[tuple[int, int]]:
        """Blocks for [a, b); `cur` is an open block ending at `a` that the first blocks may extend."""
        if cur is not None and self.cost(cur[0], b) <= budget:
            return [(cur[0], b)]
        if self.cost(a, b) <= budget or b - a == 1:
            return [cur, (a, b)] if cur is not None else [(a, b)]
        pieces = self._pieces(a, b)
        if len(pieces) == 1:  # only soft rows (a long comment): cut between any rows
            pieces = [(p, p + 1) for p in range(a, b)]
        out: list[tuple[int, int]] = []
        for x, y in pieces:
            if self.cost(x, y) <= budget:
                if cur is not None and self.cost(cur[0], y) <= budget:
                    cur = (cur[0], y)
                else:
                    if cur is not None:
                        cur = self._close(cur, out, budget)
                        if cur is not None and self.cost(cur[0], y) <= budget:
                            cur = (cur[0], y)
                            continue
                        if cur is not None:
                            out.append(cur)
                    cur = (x, y)
                continue
            # a piece too big alone: split it one level down. A small open block before it (its header,
            # a comment, a short statement) is carried into its first block; a big one is closed first.
            if cur is not None and self.cost(*cur) > budget // 2:
                out.append(cur)
                cur = None
            sub = self._pack(x, y, budget, cur)
            out.extend(sub[:-1])
            cur = sub[-1]
        if cur is not None:
            out.append(cur)
        return out

    def _close(self, cur: tuple[int, int], out: list, budget: int) -> tuple[int, int] | None:
        """The open block is full: close it at its best boundary and return the rest (the start of the next
        block), or None when it closes whole. Best: keeps statements whole (clean), then shallowest, then
        latest; only boundaries that leave the closed block at least half full are considered."""
        a, b = cur
        if b - a < 2:
            out.append(cur)
            return None
        best, best_key = b, self._cut_key(b)
        floor = budget // 2
        for p in range(b - 1, a, -1):
            if self.cost(a, p) < floor:
                break
            if self.soft[p - 1] or self.closer[p]:
                continue
            key = self._cut_key(p)
            if key < best_key:
                best, best_key = p, key
        out.append((a, best))
        return (best, b) if best < b else None

    def _cut_key(self, p: int) -> tuple[int, int]:
        """How bad a cut before position p is (lower is better); the end of the unit is the best cut."""
        if p >= self.n:
            return (0, -1)
        return (0 if self.clean[p - 1] else 1, self.bd[p - 1])

    def _merge_small(self, blocks: list[tuple[int, int]], budget: int) -> list[tuple[int, int]]:
        """Fold a small block into a neighbour when the union still fits."""
        if len(blocks) < 2:
            return blocks
        out = [blocks[0]]
        for x, y in blocks[1:]:
            px, py = out[-1]
            small = self.cost(x, y) < budget // 4 or self.cost(px, py) < budget // 4
            if small and self.cost(px, y) <= budget:
                out[-1] = (px, y)
            else:
                out.append((x, y))
        return out


def cut_line(line: str, budget: int, count: CountTokens, cost: int | None = None) -> list[str]:
    """Cut one over-long line into consecutive pieces of at most `budget` tokens (at spaces when possible)."""
    if not line:
        return [line]
    cost = cost if cost is not None else count([line])[0]
    pieces = _even_cut(line, max(2, math.ceil(cost / max(1, budget) * 1.15)))
    for _ in range(12):
        sizes = count(pieces)
        if all(s <= budget for s in sizes):
            return pieces
        nxt: list[str] = []
        for p, s in zip(pieces, sizes):
            nxt.extend(_even_cut(p, math.ceil(s / max(1, budget) * 1.15) + 1) if s > budget and len(p) > 1 else [p])
        pieces = nxt
    return pieces


def _even_cut(text: str, parts: int) -> list[str]:
    parts = max(1, min(parts, len(text)))
    size = len(text) / parts
    cuts, last = [], 0
    for k in range(1, parts):
        target = int(k * size)
        window = text[max(last + 1, target - int(size / 4)):target + 1]
        sp = max(window.rfind(" "), window.rfind(","), window.rfind(";"))
        pos = (max(last + 1, target - int(size / 4)) + sp + 1) if sp >= 0 else target
        if pos <= last or pos >= len(text):
            continue
        cuts.append(pos)
        last = pos
    bounds = [0, *cuts, len(text)]
    return [text[i:j] for i, j in zip(bounds, bounds[1:]) if j > i]
