"""Run describers over a video: file describers once, audio describers on each clip's audio, frame
describers on each clip's sampled frames. Two streaming passes (audio, then video); each holds one clip."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

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

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt


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
            t0 = time.perf_counter()
            for ci, segs in d.describe_file(path, info, clips).items():  # type: ignore[attr-defined]
                put(ci, d.name, segs)
            report.add(d.name, time.perf_counter() - t0)

    audio = [d for d in describers if d.needs == "audio"]
    if audio and not info.has_audio:
        report.notes.append(f"{path.name}: no audio stream; {', '.join(d.name for d in audio)} skipped")
    elif audio:
        t_pass = time.perf_counter()
        spent = 0.0
        heard = [0.0]

        def blocks():
            for t, x in iter_audio(path, AUDIO_RATE, notes=report.notes):
                heard[0] = t + len(x) / AUDIO_RATE
                yield t, x

        with Progress("transcribing", total=len(clips), enabled=progress) as bar:
            for clip, samples in audio_by_clip(blocks(), clips, AUDIO_RATE):
                for d in audio:
                    t0 = time.perf_counter()
                    put(clip.index, d.name, d.describe_audio(clip, samples, AUDIO_RATE))  # type: ignore[attr-defined]
                    dt = time.perf_counter() - t0
                    report.add(d.name, dt)
                    spent += dt
                bar.advance()
        report.add("decode_audio", time.perf_counter() - t_pass - spent)
        _check_end(report, path, "audio", heard[0], info.duration)
        for d in audio:
            finish = getattr(d, "finish", None)
            if finish:
                finish()

    frames = [d for d in describers if d.needs == "frames"]
    if frames and not info.has_video:
        report.notes.append(f"{path.name}: no video stream; {', '.join(d.name for d in frames)} skipped")
    elif frames:
        t_pass = time.perf_counter()
        spent = 0.0
        cur = 0
        with Progress("reading frames", total=len(clips), enabled=progress) as bar:
            def close(i: int) -> float:
                s = 0.0
                for d in frames:
                    t0 = time.perf_counter()
                    put(i, d.name, d.end_clip(clips[i]))  # type: ignore[attr-defined]
                    dt = time.perf_counter() - t0
                    report.add(d.name, dt)
                    s += dt
                bar.advance()
                return s

            last = 0.0
            for frame in iter_frames(path, fps, notes=report.notes):
                last = frame.time
                ci = clip_index(frame.time, clips)
                while cur < ci:
                    spent += close(cur)
                    cur += 1
                for d in frames:
                    t0 = time.perf_counter()
                    d.add_frame(clips[ci], frame)  # type: ignore[attr-defined]
                    dt = time.perf_counter() - t0
                    report.add(d.name, dt)
                    spent += dt
            while cur < len(clips):
                spent += close(cur)
                cur += 1
        report.add("decode_video", time.perf_counter() - t_pass - spent)
        _check_end(report, path, "video", last + 1.0 / fps, info.duration)
    for d in describers:
        report.notes.extend(d.notes)
    return texts, report


def _check_end(report: DescribeReport, path: Path, kind: str, reached: float, duration: float) -> None:
    """A note when a stream stopped well before the stated duration (a truncated file)."""
    if reached < duration - max(3.0, 0.05 * duration) and not any(kind in n and "stopped" in n for n in report.notes):
        report.notes.append(f"{path.name}: {kind} ends at {reached:.0f}s of {duration:.0f}s "
                            "(truncated file?); the rest is not indexed")
