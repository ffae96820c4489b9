"""Decode stage for video: probe a file and stream its frames / audio with PyAV (ffmpeg in the wheel).

Nothing here holds a whole video in memory: frames are yielded one at a time at the sampling rate asked
for, audio in blocks. Every failure a user can cause (not a video, a truncated file, an unknown codec, a
0-second file) becomes a `VideoError` with one line that names the file.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from longapps.resources import LongappsError

AUDIO_RATE = 16000          # what speech models expect
MAX_FRAME_SIDE = 1280       # frames larger than this are scaled down while decoding (OCR/captions need less)


class VideoError(LongappsError):
    """A video that cannot be read (one line for the user)."""


@dataclass
class VideoInfo:
    """What a probe finds: duration in seconds, which streams exist, their codecs and sizes."""

    path: str
    duration: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    video_codec: str = ""
    audio_codec: str = ""
    subtitle_streams: list[int] = field(default_factory=list)   # stream indexes of text subtitle streams

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _short(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return msg.replace("\n", " ")[:200]


def _open(path: str | Path) -> Any:
    import av

    p = Path(path)
    if not p.exists():
        raise VideoError(f"video not found: {p}")
    if p.is_dir():
        raise VideoError(f"{p} is a folder, not a video file")
    try:
        return av.open(str(p), metadata_errors="ignore")
    except av.error.InvalidDataError as err:
        raise VideoError(f"{p.name}: not a video file or the file is corrupt ({_short(err)})") from err
    except av.error.EOFError as err:
        raise VideoError(f"{p.name}: the file ends before any audio or video data (empty, 0 seconds or "
                         "truncated)") from err
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoError(f"{p.name}: cannot open ({_short(err)})") from err


def _stream_seconds(stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def probe(path: str | Path) -> VideoInfo:
    """Open `path`, check it holds a decodable video or audio stream, and report its streams and duration.

    The duration is that of the video/audio streams (subtitle cues past the end do not lengthen it); when
    the container does not say, the last packet of the video/audio stream decides (one demux pass, no
    decoding).
    """
    p = Path(path)
    with _open(p) as c:
        vs = [s for s in c.streams.video if not _is_cover_art(s)]
        aus = list(c.streams.audio)
        subs = [s.index for s in c.streams.subtitles if _is_text_subtitle(s)]
        if not vs and not aus:
            raise VideoError(f"{p.name}: no video or audio stream (not a video file, or an empty 0-second one)")
        v = vs[0] if vs else None
        a = aus[0] if aus else None
        for s, kind in ((v, "video"), (a, "audio")):
            if s is not None and s.codec_context is None:
                raise VideoError(f"{p.name}: unknown {kind} codec (ffmpeg cannot decode it)")
        info = VideoInfo(
            path=str(p), duration=0.0, has_video=v is not None, has_audio=a is not None,
            width=int(v.codec_context.width or 0) if v is not None else 0,
            height=int(v.codec_context.height or 0) if v is not None else 0,
            fps=float(v.average_rate or v.guessed_rate or 0) if v is not None else 0.0,
            video_codec=v.codec_context.name if v is not None else "",
            audio_codec=a.codec_context.name if a is not None else "",
            subtitle_streams=subs)
        durs = [_stream_seconds(s) for s in (v, a) if s is not None]
        dur = max(durs) if durs else 0.0
        if dur <= 0 and c.duration:
            dur = float(c.duration) / 1_000_000
            if subs:  # the container's duration may come from the subtitles: measure the streams
                dur = 0.0
        if dur <= 0:
            dur = _measure_duration(c, [s for s in (v, a) if s is not None], p)
        info.duration = dur
    if info.duration <= 0:
        raise VideoError(f"{p.name}: the video is 0 seconds long (nothing to index)")
    return info


def _is_cover_art(stream: Any) -> bool:
    return bool(getattr(stream, "disposition", 0) and "attached_pic" in str(stream.disposition).lower())


def _is_text_subtitle(stream: Any) -> bool:
    name = stream.codec_context.name if stream.codec_context is not None else ""
    return name not in ("", "dvd_subtitle", "hdmv_pgs_subtitle", "dvb_subtitle", "xsub")


def _measure_duration(container: Any, streams: list[Any], p: Path) -> float:
    import av

    end = 0.0
    try:
        for pkt in container.demux(*streams):
            if pkt.pts is None or pkt.time_base is None:
                continue
            end = max(end, float((pkt.pts + (pkt.duration or 0)) * pkt.time_base))
    except av.error.FFmpegError as err:
        raise VideoError(f"{p.name}: the file is truncated or corrupt ({_short(err)})") from err
    return end


@dataclass
class Frame:
    """One sampled frame: its time in seconds and its pixels (H, W, 3) uint8 RGB."""

    time: float
    image: np.ndarray


def iter_frames(path: str | Path, fps: float = 1.0, *, max_side: int = MAX_FRAME_SIDE,
                notes: list[str] | None = None) -> Iterator[Frame]:
    """Yield frames sampled every 1/fps seconds (the first frame at or after each tick), streaming.

    A file that breaks off in the middle ends the stream early with a note (what was decoded is kept).
    """
    import av

    p = Path(path)
    step = 1.0 / fps
    with _open(p) as c:
        streams = [s for s in c.streams.video if not _is_cover_art(s)]
        if not streams:
            return
        stream = streams[0]
        stream.thread_type = "AUTO"
        next_t = 0.0
        base = _start_seconds(c)
        try:
            for frame in c.decode(stream):
                if frame.time is None:
                    continue
                t = max(0.0, frame.time - base)
                if t + 1e-6 < next_t:
                    continue
                w, h = frame.width, frame.height
                scale = min(1.0, max_side / max(w, h, 1))
                if scale < 1.0:
                    img = frame.to_ndarray(format="rgb24", width=max(2, int(w * scale) // 2 * 2),
                                           height=max(2, int(h * scale) // 2 * 2))
                else:
                    img = frame.to_ndarray(format="rgb24")
                yield Frame(t, img)
                while next_t <= t + 1e-6:
                    next_t += step
        except av.error.FFmpegError as err:
            if notes is not None:
                notes.append(f"{p.name}: video decoding stopped at {next_t:.0f}s ({_short(err)})")


def _start_seconds(container: Any) -> float:
    """The container's start time (timestamps of a stream may begin after 0; the timeline starts here)."""
    st = container.start_time
    return float(st) / 1_000_000 if st not in (None, 0) and st > 0 else 0.0


def iter_audio(path: str | Path, rate: int = AUDIO_RATE, *, notes: list[str] | None = None
               ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (start seconds, mono float32 samples at `rate`) blocks of the first audio stream, streaming."""
    import av

    p = Path(path)
    with _open(p) as c:
        if not c.streams.audio:
            return
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        t_start: float | None = None
        n_out = 0
        base = _start_seconds(c)
        try:
            for frame in c.decode(stream):
                if t_start is None:
                    t_start = max(0.0, float(frame.time or 0.0) - base)
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    yield t_start + n_out / rate, arr
                    n_out += len(arr)
            for out in resampler.resample(None):
                arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                yield (t_start or 0.0) + n_out / rate, arr
                n_out += len(arr)
        except av.error.FFmpegError as err:
            if notes is not None:
                notes.append(f"{p.name}: audio decoding stopped at {n_out / rate:.0f}s ({_short(err)})")


def content_hash(path: str | Path, block: int = 1 << 20) -> str:
    """sha1 of the file's bytes (the memory cache key: renaming or touching a video does not re-index it)."""
    h = hashlib.sha1()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(block):
                h.update(chunk)
    except OSError as err:
        raise VideoError(f"cannot read {path}: {err.strerror}") from err
    return h.hexdigest()
