"""The repository walker: .gitignore, vendored folders, binaries, huge files, links, loops."""
from __future__ import annotations

import os

from longapps.index.files import read_source, walk_repo


def _write(root, rel, data):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data)
    return p


def test_walk_rules(tmp_path):
    _write(tmp_path, "src/a.py", "def a(): pass\n")
    _write(tmp_path, "src/gen/b.py", "def b(): pass\n")
    _write(tmp_path, "src/.gitignore", "gen/\n*.tmp.py\n")
    _write(tmp_path, "src/c.tmp.py", "x = 1\n")
    _write(tmp_path, ".gitignore", "secret.go\n")
    _write(tmp_path, "secret.go", "package x\n")
    _write(tmp_path, "node_modules/lib/index.js", "function f() {}\n")
    _write(tmp_path, "notes.txt", "hello\n")
    _write(tmp_path, "big.py", "x = 1\n" * 1000)
    os.symlink(tmp_path / "src", tmp_path / "loop_dir")          # symlinked folder: not followed
    os.symlink("self.py", tmp_path / "self.py")                   # symlink loop
    os.symlink("/etc/hostname", tmp_path / "outside.py")          # points outside the repo
    os.mkfifo(tmp_path / "pipe.py")                               # would block a reader
    res = walk_repo(tmp_path, max_bytes=1000)
    rels = {f.rel for f in res.files}
    assert rels == {"src/a.py"}
    why = dict(res.skipped)
    assert why["src/gen/"] == "gitignored" and why["src/c.tmp.py"] == "gitignored"
    assert why["secret.go"] == "gitignored" and why["node_modules/"] == "vendored"
    assert why["notes.txt"] == "not source" and why["big.py"] == "too large"
    assert why["loop_dir/"] == "symlinked folder" and why["self.py"] == "unreadable"
    assert why["outside.py"] == "symlink outside repo" and why["pipe.py"] == "not a regular file"


def test_read_source_binary_and_non_utf8(tmp_path):
    b = _write(tmp_path, "x.c", b"\x7fELF\x00\x00binary")
    assert read_source(b) == (None, "binary")
    latin = _write(tmp_path, "y.py", "# caf\xe9\nx = 1\n".encode("latin-1"))
    text, note = read_source(latin)
    assert note == "non-utf8" and "x = 1" in text
    assert read_source(tmp_path / "missing.py") == (None, "unreadable")


def test_read_source_byte_cap_keeps_whole_characters(tmp_path):
    p = _write(tmp_path, "z.py", ("é" * 10).encode("utf-8"))  # 20 bytes
    text, note = read_source(p, max_bytes=5)  # cuts the third character in half
    assert text == "éé" and note == "truncated"
    assert read_source(p, max_bytes=100) == ("é" * 10, "")
