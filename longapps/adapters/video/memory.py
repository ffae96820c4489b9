"""The video's memory: per clip, its time range and texts by describer; chunk vectors and BM25 over the
clip texts. Saved as JSON + .npy + bm25 files (no pickle) inside an IndexStore snapshot, published
atomically, so a run killed at any point leaves either no memory or a whole one."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longapps.adapters.passages import PassageChunks
from longapps.adapters.video.clips import Clip
from longapps.adapters.video.describers.base import Segment
from longapps.index.lexical import BM25Index

FORMAT = 1
LABELS = {"subtitles": "Subtitles", "speech": "Speech", "ocr": "On screen", "caption": "Visual"}


@dataclass
class ClipMemory:
    """One clip and what the describers said about it."""

    clip: Clip
    texts: dict[str, list[Segment]] = field(default_factory=dict)

    def text(self, *, header: bool = False) -> str:
        """The clip as text: one paragraph per describer ('Speech: ...'), optionally with its time range."""
        parts = [f"[{self.clip.label}]"] if header else []
        for name in sorted(self.texts, key=lambda n: list(LABELS).index(n) if n in LABELS else 99):
            joined = " ".join(s.text for s in self.texts[name] if s.text)
            if joined:
                parts.append(f"{LABELS.get(name, name)}: {joined}")
        return "\n".join(parts)

    @property
    def empty(self) -> bool:
        return not any(s.text for segs in self.texts.values() for s in segs)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.clip.index, "start": self.clip.start, "end": self.clip.end,
                "texts": {k: [s.to_dict() for s in v] for k, v in self.texts.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClipMemory":
        return cls(Clip(int(d["index"]), float(d["start"]), float(d["end"])),
                   {k: [Segment.from_dict(s) for s in v] for k, v in d["texts"].items()})


@dataclass
class VideoMemory:
    """Everything a question needs, without the video: clips + texts, chunk vectors, BM25."""

    video: dict[str, Any]
    clips: list[ClipMemory]
    chunks: PassageChunks
    vectors: np.ndarray
    bm25: BM25Index
    meta: dict[str, Any] = field(default_factory=dict)   # config, timings, notes, encoder name

    def transcript(self) -> str:
        """All clips' texts in time order, each with its time range (what the whole-video baseline reads)."""
        return "\n\n".join(c.text(header=True) for c in self.clips if not c.empty)

    def save(self, folder: Path) -> dict[str, Any]:
        """Write into `folder` (a fresh snapshot folder); returns the manifest."""
        (folder / "memory.json").write_text(json.dumps({
            "format": FORMAT, "video": self.video, "meta": self.meta,
            "clips": [c.to_dict() for c in self.clips],
            "chunks": {"texts": self.chunks.texts, "groups": self.chunks.groups.tolist(),
                       "first": self.chunks.first.tolist(), "counts": self.chunks.counts.tolist()}}))
        np.save(folder / "vectors.npy", np.ascontiguousarray(self.vectors, dtype=np.float32), allow_pickle=False)
        self.bm25.save(folder / "lexical")
        return {"format": FORMAT, "clips": len(self.clips), "chunks": len(self.chunks.texts)}

    @classmethod
    def load(cls, folder: Path) -> "VideoMemory":
        d = json.loads((folder / "memory.json").read_text())
        if d.get("format") != FORMAT:
            raise ValueError("memory format changed")
        ch = d["chunks"]
        chunks = PassageChunks(list(ch["texts"]), np.asarray(ch["groups"], dtype=np.int64),
                               np.asarray(ch["first"], dtype=np.int64), np.asarray(ch["counts"], dtype=np.int64))
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        return cls(d["video"], [ClipMemory.from_dict(c) for c in d["clips"]], chunks, vectors,
                   BM25Index.load(folder / "lexical"), d.get("meta", {}))
