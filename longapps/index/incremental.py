"""Incremental indexing shared by every corpus pipeline (search-code, match --corpus, ...).

`sync_files` brings an `IndexStore`'s per-file state up to date with a list of files: only files whose size or
mtime changed are read, only files whose content hash changed are re-processed (split into units), removed files
are forgotten. `state_digest` + `fresh_manifest` tell whether the published snapshot was built from exactly the
stored states (a run killed between "states stored" and "snapshot published" is detected and the snapshot is
rebuilt -- from the embedding cache, without model work).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from longapps.adapters.encode import CachedEncoder, Encoder
from longapps.index.files import SourceFile, read_source
from longapps.index.store import IndexStore
from longapps.progress import Progress

# file text -> the units stored for it (JSON-serialisable dicts)
Process = Callable[[str, SourceFile], list[dict[str, Any]]]
Read = Callable[[Path], tuple["str | None", str]]


@dataclass
class SyncResult:
    """What a sync did: files seen / re-processed / reused / removed, read notes ('non-utf8', 'truncated', ...)
    -> count, skipped (rel, reason) of unreadable/binary files, and the digest of the stored states."""

    files: int = 0
    parsed: int = 0
    reused: int = 0
    removed: int = 0
    notes: dict[str, int] = field(default_factory=dict)
    noted_files: list[tuple[str, str]] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    digest: str = ""


def state_digest(states: dict[str, tuple[int, int, str]]) -> str:
    """A hash of the stored (rel, content hash) pairs: what a snapshot was built from."""
    return hashlib.sha1(json.dumps(sorted((r, h) for r, (_, _, h) in states.items())).encode()).hexdigest()


def sync_files(store: IndexStore, files: Sequence[SourceFile], process: Process, *, read: Read = read_source,
               label: str = "splitting", show_progress: bool = False, batch: int = 50) -> SyncResult:
    """Update `store` for `files` (call inside `store.lock()`): re-process new/changed files with
    `process(text, file)`, keep the units of files whose content did not change, drop removed files.
    Files `read` cannot decode (binary, unreadable) are stored with no units and reported as skipped."""
    res = SyncResult(files=len(files))
    states = store.file_states()
    present = {f.rel for f in files}
    removed = [r for r in states if r not in present]
    todo = [f for f in files if states.get(f.rel, (None, None))[:2] != (f.size, f.mtime_ns)]
    res.reused = len(files) - len(todo)
    rows: list[tuple[str, int, int, str, list[dict[str, Any]]]] = []
    touched: list[tuple[str, int, int]] = []
    with Progress(label, total=len(todo), enabled=show_progress and len(todo) > 20) as bar:
        for f in todo:
            text, note = read(f.path)
            if note:
                res.notes[note] = res.notes.get(note, 0) + 1
                if text is not None:
                    res.noted_files.append((f.rel, note))
            sha = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest() if text is not None \
                else f"skip:{note}"
            old = states.get(f.rel)
            if old is not None and old[2] == sha:  # touched, not changed
                touched.append((f.rel, f.size, f.mtime_ns))
                res.reused += 1
            else:
                rows.append((f.rel, f.size, f.mtime_ns, sha, [] if text is None else process(text, f)))
                res.parsed += 1
            if len(rows) >= batch:
                store.put_files(rows)
                rows = []
            bar.advance()
    store.put_files(rows)
    store.touch_files(touched)
    store.delete_files(removed)
    res.removed = len(removed)
    states_now = store.file_states()
    res.skipped_files = [(rel, sha[5:]) for rel, (_, _, sha) in states_now.items() if sha.startswith("skip:")]
    res.digest = state_digest(states_now)
    return res


def fresh_manifest(store: IndexStore, digest: str, **expected: Any) -> dict[str, Any] | None:
    """The published manifest if it was built from the states with `digest` and matches every `expected`
    key (index key, scoring settings, ...); None when a new snapshot must be published."""
    manifest = store.manifest()
    if manifest is None or manifest.get("state_digest") != digest:
        return None
    if any(manifest.get(k) != v for k, v in expected.items()):
        return None
    return manifest


def reset_if_changed(store: IndexStore, key: str, reindex: bool = False) -> None:
    """Forget the stored file state when the index key (splitter version, model, block size) changed."""
    if reindex or store.get_meta("index_key") != key:
        store.clear()
        store.set_meta("index_key", key)


def encode_counted(encoder: Encoder, texts: Sequence[str], *, label: str = "encoding",
                   show_progress: bool = False) -> tuple[np.ndarray, int, int]:
    """Encode an index's texts through the (cached) encoder with a progress bar: (vectors, encoded, cached),
    where `encoded` counts texts the model ran on and `cached` those served by the embedding cache."""
    before = (encoder.hits, encoder.misses) if isinstance(encoder, CachedEncoder) else (0, 0)
    with Progress(label, total=len(texts), enabled=show_progress and len(texts) > 50) as bar:
        vecs = encoder.encode(list(texts), progress=bar.advance)
    if isinstance(encoder, CachedEncoder):
        return vecs, encoder.misses - before[1], encoder.hits - before[0]
    return vecs, len(texts), 0
