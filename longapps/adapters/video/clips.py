"""Chunk stage for video: cut a timeline into clips and route timed items (frames, audio, cues) to them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")

DEFAULT_CLIP_SECONDS = 80.0
SINGLE_CLIP_BELOW = 180.0   # Goldfish: a video shorter than this is one clip


@dataclass(frozen=True)
class Clip:
    """A time range [start, end) of the video, in seconds; `index` is its position."""

    index: int
    start: float
    end: float

    @property
    def label(self) -> str:
        return f"{fmt_time(self.start)}-{fmt_time(self.end)}"

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end


def fmt_time(seconds: float) -> str:
    """12.3 -> '0:12', 3725 -> '1:02:05'."""
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def make_clips(duration: float, clip_seconds: float = DEFAULT_CLIP_SECONDS,
               single_below: float = SINGLE_CLIP_BELOW) -> list[Clip]:
    """Clips of `clip_seconds` covering [0, duration); a video shorter than `single_below` seconds is one
    clip, and a last piece shorter than a quarter clip joins the clip before it."""
    if clip_seconds <= 0:
        raise ValueError("clip_seconds: must be > 0")
    if duration <= 0:
        return []
    if duration < single_below or duration <= clip_seconds:
        return [Clip(0, 0.0, float(duration))]
    n = max(1, math.ceil(duration / clip_seconds))
    bounds = [i * clip_seconds for i in range(n)] + [float(duration)]
    if n > 1 and bounds[-1] - bounds[-2] < clip_seconds / 4:
        del bounds[-2]
    return [Clip(i, float(a), float(b)) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]


def clip_index(t: float, clips: Sequence[Clip]) -> int:
    """Index of the clip holding time `t` (times past the end go to the last clip, before 0 to the first)."""
    if not clips:
        raise ValueError("clips: empty")
    lo, hi = 0, len(clips) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if clips[mid].start <= t:
            lo = mid
        else:
            hi = mid - 1
    return lo


def group_by_clip(items: Iterable[tuple[float, T]], clips: Sequence[Clip]) -> Iterator[tuple[Clip, list[T]]]:
    """Group a time-ordered stream of (time, item) into (clip, items), one clip at a time (streaming:
    only the current clip's items are held). Every clip is yielded, also those with no items."""
    if not clips:
        return
    cur = 0
    bucket: list[T] = []
    for t, item in items:
        i = clip_index(t, clips)
        while cur < i:
            yield clips[cur], bucket
            bucket = []
            cur += 1
        bucket.append(item)
    yield clips[cur], bucket
    for c in clips[cur + 1:]:
        yield c, []


def audio_by_clip(blocks: Iterable[tuple[float, "np.ndarray"]], clips: Sequence[Clip], rate: int
                  ) -> Iterator[tuple[Clip, "np.ndarray"]]:
    """Cut a stream of (start seconds, samples) audio blocks at clip boundaries and yield each clip's
    samples once the clip is complete (only one clip of audio is held). Clips without audio get an
    empty array."""
    import numpy as np

    if not clips:
        return
    cur = 0
    parts: list[np.ndarray] = []
    for t, block in blocks:
        pos = 0
        while pos < len(block):
            t_here = t + pos / rate
            i = clip_index(t_here, clips)
            while cur < i:
                yield clips[cur], _join(parts)
                parts = []
                cur += 1
            if cur == len(clips) - 1:
                take = len(block) - pos
            else:
                take = max(1, min(len(block) - pos, int(round((clips[cur].end - t_here) * rate))))
            parts.append(block[pos:pos + take])
            pos += take
    yield clips[cur], _join(parts)
    for c in clips[cur + 1:]:
        yield c, _join([])


def _join(parts: list) -> "np.ndarray":
    import numpy as np

    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
