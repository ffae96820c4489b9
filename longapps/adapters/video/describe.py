"""Run describers over a video: file describers once, audio describers on each clip's audio, frame
describers on each clip's sampled frames. Two streaming passes (audio, then video); each holds one clip."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from longapps.adapters.video.clips import Clip, audio_by_clip, clip_index
from longapps.adapters.video.decode import AUDIO_RATE, VideoInfo, iter_audio, iter_frames
from longapps.adapters.video.describers.base import Describer, Segment
from longapps.progress import Progress

ClipTexts = dict[int, dict[str, list[Segment]]]   # clip index -> describer name -> segments


@dataclass
class DescribeReport:
    """What describing cost (seconds per describer, and decoding) and what the user should know."""

    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    spent: float = 0.0     # describer seconds so far (a pass's wall time minus this = decoding)

    def timed(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` and book its time under `name`."""
        t0 = time.perf_counter()
        out = fn(*args)
        dt = time.perf_counter() - t0
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        self.spent += dt
        return out

    def book_pass(self, name: str, started: float, spent_before: float) -> None:
        """Book a decoding pass: its wall time less the describers' share."""
        self.seconds[name] = time.perf_counter() - started - (self.spent - spent_before)

    def check_end(self, path: Path, kind: str, reached: float, duration: float) -> None:
        """A note when a stream stopped well before the stated duration (a truncated file)."""
        if reached < duration - max(3.0, 0.05 * duration) and \
                not any(kind in n and "stopped" in n for n in self.notes):
            self.notes.append(f"{path.name}: {kind} ends at {reached:.0f}s of {duration:.0f}s "
                              "(truncated file?); the rest is not indexed")


def describe_video(path: str | Path, info: VideoInfo, clips: Sequence[Clip], describers: Sequence[Describer], *,
                   fps: float = 1.0, progress: bool = False) -> tuple[ClipTexts, DescribeReport]:
    """Texts per clip and describer, with timings and notes."""
    texts: ClipTexts = {c.index: {} for c in clips}
    report = DescribeReport()
    path = Path(path)

    def put(ci: int, name: str, segs: list[Segment]) -> None:
        if segs:
            texts[ci].setdefault(name, []).extend(segs)

    for d in describers:
        if d.needs == "file":
            for ci, segs in report.timed(d.name, d.describe_file, path, info, clips).items():  # type: ignore
                put(ci, d.name, segs)
    audio = [d for d in describers if d.needs == "audio"]
    frames = [d for d in describers if d.needs == "frames"]
    for group, present, kind in ((audio, info.has_audio, "audio"), (frames, info.has_video, "video")):
        if group and not present:
            report.notes.append(f"{path.name}: no {kind} stream; {', '.join(d.name for d in group)} skipped")
    if audio and info.has_audio:
        _audio_pass(path, info, clips, audio, report, put, progress)
    if frames and info.has_video:
        _frame_pass(path, info, clips, frames, report, put, fps, progress)
    for d in describers:
        report.notes.extend(d.notes)
    return texts, report


def _audio_pass(path: Path, info: VideoInfo, clips: Sequence[Clip], audio: Sequence[Any], report: DescribeReport,
                put: Callable[[int, str, list[Segment]], None], progress: bool) -> None:
    started, before = time.perf_counter(), report.spent
    heard = [0.0]

    def blocks() -> Iterator[tuple[float, np.ndarray]]:
        for t, x in iter_audio(path, AUDIO_RATE, notes=report.notes):
            heard[0] = t + len(x) / AUDIO_RATE
            yield t, x

    with Progress("transcribing", total=len(clips), enabled=progress) as bar:
        for clip, samples in audio_by_clip(blocks(), clips, AUDIO_RATE):
            for d in audio:
                put(clip.index, d.name, report.timed(d.name, d.describe_audio, clip, samples, AUDIO_RATE))
            bar.advance()
    report.book_pass("decode_audio", started, before)
    report.check_end(path, "audio", heard[0], info.duration)
    for d in audio:
        finish = getattr(d, "finish", None)
        if finish:
            finish()


def _frame_pass(path: Path, info: VideoInfo, clips: Sequence[Clip], frames: Sequence[Any], report: DescribeReport,
                put: Callable[[int, str, list[Segment]], None], fps: float, progress: bool) -> None:
    started, before = time.perf_counter(), report.spent
    cur, last = 0, 0.0
    with Progress("reading frames", total=len(clips), enabled=progress) as bar:
        def close(i: int) -> None:
            for d in frames:
                put(i, d.name, report.timed(d.name, d.end_clip, clips[i]))
            bar.advance()

        for frame in iter_frames(path, fps, notes=report.notes):
            last = frame.time
            ci = clip_index(frame.time, clips)
            while cur < ci:
                close(cur)
                cur += 1
            for d in frames:
                report.timed(d.name, d.add_frame, clips[ci], frame)
        while cur < len(clips):
            close(cur)
            cur += 1
    report.book_pass("decode_video", started, before)
    report.check_end(path, "video", last + 1.0 / fps, info.duration)
