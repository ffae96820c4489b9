"""What a describer is: something that turns one clip (its frames, its audio, or the file) into timed text."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from longapps.adapters.video.clips import Clip
from longapps.adapters.video.decode import Frame, VideoInfo


@dataclass
class Segment:
    """A piece of text and the time range (seconds) it belongs to."""

    start: float
    end: float
    text: str

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        return cls(float(d["start"]), float(d["end"]), str(d["text"]))


@runtime_checkable
class Describer(Protocol):
    """Common part: a `name` (the label its text gets), what it `needs` ('file', 'audio' or 'frames'),
    `key()` (everything that changes its output, for the memory cache) and `notes` for the user."""

    name: str
    needs: str
    notes: list[str]

    def key(self) -> str: ...


class FileDescriber(Describer, Protocol):
    def describe_file(self, path: Path, info: VideoInfo, clips: Sequence[Clip]) -> dict[int, list[Segment]]:
        """Segments per clip index, for the whole file at once."""
        ...


class AudioDescriber(Describer, Protocol):
    def describe_audio(self, clip: Clip, samples: np.ndarray, rate: int) -> list[Segment]:
        """Segments of one clip from its mono float32 samples."""
        ...


class FrameDescriber(Describer, Protocol):
    def add_frame(self, clip: Clip, frame: Frame) -> None:
        """Look at one sampled frame of `clip` (frames come in time order, clip by clip)."""
        ...

    def end_clip(self, clip: Clip) -> list[Segment]:
        """All frames of `clip` were seen: its segments."""
        ...


def dedupe_lines(texts: Sequence[str]) -> list[str]:
    """Drop empty and repeated texts (case/space-insensitive), keep the first order."""
    seen: set[str] = set()
    out: list[str] = []
    for t in texts:
        k = " ".join(t.lower().split())
        if k and k not in seen:
            seen.add(k)
            out.append(t.strip())
    return out
