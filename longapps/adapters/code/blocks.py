"""Cut a unit into blocks that each fit a token budget, along the AST (the SEA block split).

A unit is a list of source rows (contiguous for functions; with method bodies left out for class summaries;
top-level leftovers for module code). Each boundary between two rows has a *depth*: the nesting depth of the
deepest AST node spanning it. Cutting at the shallowest boundaries of a range separates sibling statements
(a header line and the statements of a body; the branches of an if ...); a range that does not fit is cut
there, the pieces are packed greedily in order, and a piece that alone does not fit is split the same way
(its own shallowest boundaries are one level down: the statements of its body, its header being the first
piece). A single row that does not fit is cut inside the line.

Token counts are per row (one batched call per file) and summed; `newline` is the cost of a line break for
tokenizers that count it (0 for WordPiece / whitespace splitters).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

CountTokens = Callable[[Sequence[str]], list[int]]


def boundary_depths(root, n_rows: int, lines: list[str]) -> tuple[list[int], set[int]]:
    """depth[r]: nesting depth of the deepest node spanning the boundary between rows r and r+1;
    and the rows that hold only a comment."""
    depth = [0] * max(n_rows, 1)
    comments: set[int] = set()
    stack = [(root, 0)]
    while stack:
        node, d = stack.pop()
        s, s_col = node.start_point
        e_row, e_col = node.end_point
        e = e_row - 1 if (e_col == 0 and e_row > s) else e_row
        if "comment" in node.type and s < n_rows and not lines[s][:s_col].strip():
            last = min(e, n_rows - 1)
            tail = lines[last][e_col:] if e_row == last else ""
            if not tail.strip():
                comments.update(range(s, last + 1))
        if e <= s:
            continue  # single-row node: neither it nor its descendants span a boundary
        e = min(e, n_rows - 1)
        if e > s:
            depth[s:e] = [d] * (e - s)
        for c in node.children:
            stack.append((c, d + 1))
    return depth, comments


class Packer:
    """Blocks of one unit: `rows` are the unit's source rows in order (0-based)."""

    def __init__(self, rows: list[int], costs: list[int], depth: list[int], soft: list[bool], newline: int = 0):
        self.rows = rows
        self.n = len(rows)
        self.newline = newline
        self.prefix = [0]
        for r in rows:
            self.prefix.append(self.prefix[-1] + costs[r])
        bd = []
        for p in range(self.n - 1):
            r0, r1 = rows[p], rows[p + 1]
            bd.append(depth[r0] if r1 == r0 + 1 else min(depth[r0:r1]) if r1 > r0 else 0)
        self.bd = bd
        self.soft = [soft[r] for r in rows]   # blank or comment-only rows

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
        return merged

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
