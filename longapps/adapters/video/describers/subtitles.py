"""Subtitles describer: sidecar .srt/.vtt files next to the video and text subtitle streams inside it.

Both are read with PyAV (ffmpeg's srt/webvtt demuxers and subtitle decoders), so any text subtitle format
ffmpeg knows works. A file that cannot be read gives a note and is skipped; the video is still indexed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from longapps.adapters.video.clips import Clip, clip_index
from longapps.adapters.video.decode import VideoInfo
from longapps.adapters.video.describers.base import Segment

SIDECAR_SUFFIXES = (".srt", ".vtt")
_ASS_TAG = re.compile(r"\{[^}]*\}")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")


def clean_cue(text: str) -> str:
    """Subtitle markup -> plain text: ASS override tags, HTML-like tags (<i>, <v Bob>), \\N line breaks."""
    text = text.replace("\\N", " ").replace("\\n", " ").replace("\\h", " ")
    text = _HTML_TAG.sub("", _ASS_TAG.sub("", text))
    return " ".join(text.split())


def sidecar_files(video: Path) -> list[Path]:
    """`movie.srt`, `movie.en.vtt`, ... next to `movie.mp4` (sorted; exact stem first)."""
    found = []
    for p in sorted(video.parent.glob(f"{glob_escape(video.stem)}.*")):
        if p.suffix.lower() in SIDECAR_SUFFIXES and p.is_file():
            found.append(p)
    return sorted(found, key=lambda p: (p.stem != video.stem, p.name))


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


def read_cues(path: Path, stream_index: int | None = None) -> Iterator[tuple[float, float, str]]:
    """(start, end, text) of every cue in a subtitle file or one subtitle stream of a container."""
    import av

    with av.open(str(path)) as c:
        streams = [s for s in c.streams.subtitles if stream_index is None or s.index == stream_index]
        if not streams:
            raise ValueError("no subtitle stream")
        s = streams[0]
        base = float(c.start_time) / 1_000_000 if c.start_time and c.start_time > 0 else 0.0
        for pkt in c.demux(s):
            if pkt.pts is None:
                continue
            start = float(pkt.pts * pkt.time_base) - base
            end = start + float((pkt.duration or 0) * pkt.time_base)
            for sub in s.decode(pkt):
                for raw in _texts(sub):
                    text = clean_cue(raw)
                    if text:
                        yield start, max(end, start), text


def _texts(sub: Any) -> list[str]:
    rects = getattr(sub, "rects", None)
    items = list(rects) if rects is not None else [sub]
    out = []
    for r in items:
        d = getattr(r, "dialogue", None)
        t = d if d is not None else (getattr(r, "text", None) or getattr(r, "ass", None))
        if isinstance(t, bytes):
            t = t.decode("utf-8", "replace")
        if t:
            out.append(str(t))
    return out


class SubtitlesDescriber:
    """Text per clip from subtitles: sidecar files (first found) and the container's subtitle streams."""

    name = "subtitles"
    needs = "file"

    def __init__(self, sidecar: str | Path | None = None) -> None:
        self.sidecar = Path(sidecar) if sidecar else None
        self.notes: list[str] = []
        self.sources: list[str] = []

    def key(self) -> str:
        return f"subtitles:v1:{self.sidecar or 'auto'}"

    def describe_file(self, path: Path, info: VideoInfo, clips: Sequence[Clip]) -> dict[int, list[Segment]]:
        path = Path(path)
        sources: list[tuple[Path, int | None, str]] = []
        files = [self.sidecar] if self.sidecar else sidecar_files(path)
        for f in files[:1]:
            sources.append((f, None, f.name))
        for idx in info.subtitle_streams:
            sources.append((path, idx, f"{path.name} stream #{idx}"))
        out: dict[int, list[Segment]] = {}
        seen: set[tuple[int, str]] = set()
        for src, idx, label in sources:
            try:
                cues = list(read_cues(src, idx))
            except Exception as err:  # noqa: BLE001 - any unreadable file is a note, not a failure
                self.notes.append(f"cannot read subtitles {label}: {_one_line(err)}; skipped")
                continue
            if not cues:
                self.notes.append(f"subtitles {label}: no text cues; skipped")
                continue
            self.sources.append(label)
            for start, end, text in cues:
                if start >= info.duration + 1.0:
                    continue
                ci = clip_index((start + end) / 2, clips)
                if (ci, text) in seen:  # the same line in a sidecar and an embedded stream
                    continue
                seen.add((ci, text))
                out.setdefault(ci, []).append(Segment(start, end, text))
        for segs in out.values():
            segs.sort(key=lambda s: s.start)
        return out


def _one_line(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return msg[:160]
