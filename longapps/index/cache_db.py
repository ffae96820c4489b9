"""SQLite files that only cache derived data (index file state, embedding vectors): opened with their schema, and
dropped and rebuilt when unreadable (a damaged disk, a stray write), with a note on stderr, instead of failing."""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Sequence


def open_cache_db(path: Path, setup: Sequence[str], timeout: float = 60.0,
                  check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection to ``path`` after running ``setup`` (pragmas, CREATE TABLE IF NOT EXISTS ...); an unreadable file
    (and its -wal / -shm) is deleted first and created anew."""
    try:
        return _connect(path, setup, timeout, check_same_thread)
    except sqlite3.DatabaseError as err:
        print(f"note: cache {path} is unreadable ({err}); rebuilding it", file=sys.stderr, flush=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return _connect(path, setup, timeout, check_same_thread)


def _connect(path: Path, setup: Sequence[str], timeout: float, check_same_thread: bool) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), timeout=timeout, check_same_thread=check_same_thread)
    try:
        for statement in setup:
            db.execute(statement)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db
