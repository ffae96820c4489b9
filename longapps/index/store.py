"""On-disk index store: per-file parse state in SQLite + immutable snapshots switched atomically.

Layout of an index folder:
    state.sqlite          files(rel, size, mtime_ns, sha1, units JSON)   -- committed per batch
    snapshots/<id>/       manifest.json, units.json, *.faiss, *.npy, bm25/ -- written whole, then published
    CURRENT               the id of the published snapshot (replaced atomically with os.replace)
    lock                  an advisory lock: one writer at a time
A process killed at any point leaves either the old snapshot or the new one published, never half of one.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from longapps.index.cache_db import open_cache_db
from longapps.resources import LongappsError


class IndexStore:
    """The state + snapshots of one index folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            (self.folder / "snapshots").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LongappsError(f"cannot create index folder {self.folder}: {err.strerror}") from err
        self._db: sqlite3.Connection | None = None

    # -- file state -------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        """The file-state database (a cache of what the corpus and the snapshots determine: rebuilt if unreadable)."""
        if self._db is None:
            self._db = open_cache_db(self.folder / "state.sqlite", [
                "PRAGMA journal_mode=WAL",
                "CREATE TABLE IF NOT EXISTS files (rel TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha1 TEXT, "
                "units TEXT)",
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)"])
        return self._db

    def file_states(self) -> dict[str, tuple[int, int, str]]:
        """rel -> (size, mtime_ns, sha1) for every file whose units are stored."""
        return {r: (s, m, h) for r, s, m, h in self.db.execute("SELECT rel, size, mtime_ns, sha1 FROM files")}

    def units_of(self, rel: str) -> list[dict[str, Any]]:
        row = self.db.execute("SELECT units FROM files WHERE rel = ?", (rel,)).fetchone()
        return json.loads(row[0]) if row else []

    def all_units(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        for rel, units in self.db.execute("SELECT rel, units FROM files ORDER BY rel"):
            yield rel, json.loads(units)

    def put_files(self, rows: list[tuple[str, int, int, str, list[dict[str, Any]]]]) -> None:
        """Store (rel, size, mtime_ns, sha1, units) rows in one transaction."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                                [(r, s, m, h, json.dumps(u)) for r, s, m, h, u in rows])

    def touch_files(self, rows: list[tuple[str, int, int]]) -> None:
        """Update size/mtime of files whose content hash did not change."""
        with self.db:
            self.db.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE rel = ?",
                                [(s, m, r) for r, s, m in rows])

    def delete_files(self, rels: list[str]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM files WHERE rel = ?", [(r,) for r in rels])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def clear(self) -> None:
        """Forget all file state (a full re-index; the embedding cache still saves the model work)."""
        with self.db:
            self.db.execute("DELETE FROM files")
            self.db.execute("DELETE FROM meta")

    # -- snapshots ---------------------------------------------------------------------------------
    def current(self) -> Path | None:
        """The published snapshot folder, or None."""
        try:
            sid = (self.folder / "CURRENT").read_text().strip()
        except OSError:
            return None
        path = self.folder / "snapshots" / sid
        return path if (path / "manifest.json").exists() else None

    def manifest(self) -> dict[str, Any] | None:
        cur = self.current()
        if cur is None:
            return None
        try:
            return json.loads((cur / "manifest.json").read_text())
        except (OSError, ValueError):
            return None

    def publish(self, write: Callable[[Path], dict[str, Any]]) -> Path:
        """Write a new snapshot with `write(folder) -> manifest`, then make it current atomically."""
        sid = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
        tmp = self.folder / "snapshots" / f".tmp-{sid}"
        tmp.mkdir(parents=True)
        manifest = write(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        final = self.folder / "snapshots" / sid
        os.replace(tmp, final)
        pointer = self.folder / f"CURRENT.tmp{os.getpid()}"
        pointer.write_text(sid)
        with open(pointer, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer, self.folder / "CURRENT")
        self._remove_old(keep=sid)
        return final

    def _remove_old(self, keep: str) -> None:
        for p in (self.folder / "snapshots").iterdir():
            if p.name != keep:
                shutil.rmtree(p, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, timeout: float = 600.0) -> Iterator[None]:
        """Hold the folder's writer lock (waits for another indexing process to finish)."""
        fh = open(self.folder / "lock", "a+")
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LongappsError(f"index {self.folder} is locked by another process") from None
                    time.sleep(0.2)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
