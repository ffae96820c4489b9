"""Walk a repository like ripgrep does: respect .gitignore, skip vendored/binary/huge files, never loop."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

# source files worth indexing; files in languages without a grammar are split by line windows
SOURCE_EXTENSIONS = frozenset("""
.py .pyi .java .js .mjs .cjs .jsx .ts .tsx .go .rs .c .h .cc .cpp .cxx .hpp .hh .hxx .cs .kt .kts .scala
.swift .sc .rb .php .lua .pl .pm .r .m .mm .sh .bash .zsh .sql .dart .ex .exs .erl .hs .ml .mli .fs .fsx .clj
.groovy .vue .svelte .jl .nim .zig .v .sv .vhd .f90 .f .pas .cob .tcl .ps1 .el .lisp .scm .rkt .proto
""".split())
VENDORED_DIRS = frozenset("""
.git .hg .svn node_modules vendor third_party thirdparty __pycache__ .venv venv env .env .tox .nox
.mypy_cache .pytest_cache .ruff_cache site-packages dist build target .gradle .idea .vscode bower_components
.longapps .cache
""".split())
DEFAULT_MAX_BYTES = 1_000_000


@dataclass
class SourceFile:
    """One file to index: repo-relative path (posix), absolute path, size and mtime."""

    rel: str
    path: Path
    size: int
    mtime_ns: int


@dataclass
class WalkResult:
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (rel path, reason)

    def skip_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.skipped:
            counts[reason] = counts.get(reason, 0) + 1
        return counts


def _gitignore(dirpath: Path, root: Path) -> pathspec.PathSpec | None:
    f = dirpath / ".gitignore"
    try:
        lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def walk_repo(root: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
              extensions: frozenset[str] = SOURCE_EXTENSIONS) -> WalkResult:
    """List the source files under `root`, with every file left out and why.

    Rules: nested .gitignore files apply to their subtree; vendored/tool folders are skipped; symlinked
    folders are not followed (no loops); symlinked files are read only when they point inside `root`.
    """
    root = Path(root).resolve()
    result = WalkResult()
    specs: dict[Path, pathspec.PathSpec | None] = {}

    def ignored(rel_parts: tuple[str, ...], is_dir: bool, dirpath: Path) -> bool:
        # check each ancestor's .gitignore, with the path relative to that ancestor
        d = root
        for i in range(len(rel_parts)):
            spec = specs.get(d)
            if spec is not None:
                sub = "/".join(rel_parts[i:]) + ("/" if is_dir else "")
                if spec.match_file(sub):
                    return True
            d = d / rel_parts[i]
        return False

    def onerror(err: OSError) -> None:
        rel = os.path.relpath(err.filename, root) if err.filename else "?"
        result.skipped.append((rel, "unreadable"))

    for dirpath_s, dirnames, filenames in os.walk(root, topdown=True, onerror=onerror, followlinks=False):
        dirpath = Path(dirpath_s)
        specs[dirpath] = _gitignore(dirpath, root)
        rel_dir = dirpath.relative_to(root).parts
        keep = []
        for d in sorted(dirnames):
            rel = "/".join(rel_dir + (d,))
            full = dirpath / d
            if d in VENDORED_DIRS or d.endswith(".egg-info"):
                if d not in (".git", ".hg", ".svn", ".longapps"):
                    result.skipped.append((rel + "/", "vendored"))
                continue
            if full.is_symlink():
                result.skipped.append((rel + "/", "symlinked folder"))
                continue
            if ignored(rel_dir + (d,), True, dirpath):
                result.skipped.append((rel + "/", "gitignored"))
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel_parts = rel_dir + (name,)
            rel = "/".join(rel_parts)
            full = dirpath / name
            if name == ".gitignore":
                continue
            if ignored(rel_parts, False, dirpath):
                result.skipped.append((rel, "gitignored"))
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext not in extensions:
                result.skipped.append((rel, "not source"))
                continue
            try:
                if full.is_symlink():
                    target = full.resolve(strict=True)
                    if root not in target.parents:
                        result.skipped.append((rel, "symlink outside repo"))
                        continue
                st = full.stat()
            except (OSError, RuntimeError):  # broken link, symlink loop, permission
                result.skipped.append((rel, "unreadable"))
                continue
            if not stat.S_ISREG(st.st_mode):  # FIFOs, sockets, devices: reading could block forever
                result.skipped.append((rel, "not a regular file"))
                continue
            if st.st_size > max_bytes:
                result.skipped.append((rel, "too large"))
                continue
            if not os.access(full, os.R_OK):
                result.skipped.append((rel, "unreadable"))
                continue
            result.files.append(SourceFile(rel, full, st.st_size, st.st_mtime_ns))
    return result


def decode_bytes(data: bytes, truncated: bool = False) -> tuple[str, str]:
    """UTF-8 text and a note ('non-utf8' when bytes had to be replaced). `truncated`: the bytes were cut
    from a longer file, so an incomplete character at the very end is dropped, not replaced."""
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as err:
        # a cut in the middle of a multi-byte character is not an encoding problem
        if truncated and err.start >= len(data) - 3:
            try:
                return data[:err.start].decode("utf-8"), ""
            except UnicodeDecodeError:
                pass
        return data.decode("utf-8", errors="replace"), "non-utf8"


def read_source(path: Path, max_bytes: int | None = None) -> tuple[str | None, str]:
    """Read a file as text: (text, note). text is None for binary/unreadable files (note says why);
    non-UTF-8 bytes are decoded with replacement characters (note 'non-utf8'); with `max_bytes`, at most that
    many bytes are read (note 'truncated')."""
    try:
        with open(path, "rb") as fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except OSError:
        return None, "unreadable"
    truncated = max_bytes is not None and len(data) > max_bytes
    if truncated:
        data = data[:max_bytes]
    if b"\x00" in data[:8192]:
        return None, "binary"
    text, note = decode_bytes(data, truncated)
    return text, ",".join(x for x in (note, "truncated" if truncated else "") if x)
