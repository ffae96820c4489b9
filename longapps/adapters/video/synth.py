"""Make real test/demo videos in-process: slides (rendered text) + speech (espeak-ng), encoded with PyAV.

Used by the example (`examples/video/make_video.py`), the tests and the dev-set builder. Speech needs
the `espeak-ng` program (apt; `scripts/setup.sh --test` installs it when missing).
"""
from __future__ import annotations

import io
import shutil
import subprocess
import textwrap
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

FONT = "DejaVuSans.ttf"


@dataclass
class Part:
    """A stretch of the video: a slide shown while `speech` is spoken (or `seconds` of silence)."""

    slide: Sequence[str] = ()
    speech: str = ""
    seconds: float = 0.0   # at least this long (silence pads the speech)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, *, rate: int = 16000, words_per_minute: int = 175, voice: str = "en-us") -> np.ndarray:
    """espeak-ng reads `text` aloud: mono float32 samples at `rate`."""
    if not have_espeak():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    res = subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout"],
                         input=text.encode("utf-8"), capture_output=True, check=True)
    with wave.open(io.BytesIO(res.stdout)) as w:
        src = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return resample(data.astype(np.float32) / 32768.0, src, rate)


def render_slide(lines: Sequence[str], size: tuple[int, int] = (640, 360), font_px: int = 26,
                 background: str = "white", color: str = "black") -> np.ndarray:
    """Text lines drawn on a plain background (wrapped to the width): (H, W, 3) uint8."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype(FONT, font_px)
    except OSError:
        font = ImageFont.load_default(size=font_px)
    chars = max(8, int(size[0] / (font_px * 0.55)))
    y = font_px
    for line in lines:
        for piece in textwrap.wrap(line, chars) or [""]:
            if y + font_px > size[1]:
                break
            draw.text((font_px // 2, y), piece, fill=color, font=font)
            y += int(font_px * 1.4)
    return np.asarray(img)


class VideoWriter:
    """Append (picture, audio) stretches to an mp4/mkv one after another, streaming:

        with VideoWriter("out.mp4") as w:
            start, end = w.add(render_slide(["Hello"]), speak("Hello there", rate=16000))
    """

    def __init__(self, path: str | Path, *, fps: int = 2, size: tuple[int, int] = (640, 360), audio: bool = True,
                 rate: int = 16000, codec: str = "libx264") -> None:
        import av

        self.fps, self.size, self.rate = fps, size, rate
        self._out = av.open(str(path), "w")
        self._vs = self._out.add_stream(codec, rate=fps)
        self._vs.width, self._vs.height, self._vs.pix_fmt = size[0], size[1], "yuv420p"
        if codec == "libx264":
            self._vs.options = {"preset": "ultrafast", "tune": "stillimage"}
        self._as = self._out.add_stream("aac", rate=rate, layout="mono") if audio else None
        self.t = 0.0
        self._frames = 0
        self._samples = 0

    def add(self, image: np.ndarray | None, samples: np.ndarray | None = None, seconds: float = 0.0
            ) -> tuple[float, float]:
        """Show `image` (black if None) while `samples` (mono float32 at the writer's rate) play, for at least
        `seconds`; returns the stretch's (start, end) in seconds."""
        import av

        samples = np.zeros(0, np.float32) if samples is None else samples
        dur = max(seconds, len(samples) / self.rate)
        start = self.t
        if image is None:
            image = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        while self._frames < round((start + dur) * self.fps):
            vf.pts = self._frames
            for pkt in self._vs.encode(vf):
                self._out.mux(pkt)
            self._frames += 1
        if self._as is not None:
            pad = int(round((start + dur) * self.rate)) - self._samples - len(samples)
            samples = np.concatenate([samples, np.zeros(max(0, pad), np.float32)])
            for s in range(0, len(samples), 1024):
                block = samples[s:s + 1024]
                af = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
                af.sample_rate, af.pts = self.rate, self._samples
                for pkt in self._as.encode(af):
                    self._out.mux(pkt)
                self._samples += len(block)
        self.t = start + dur
        return start, self.t

    def close(self) -> None:
        for stream in (self._vs, self._as):
            if stream is not None:
                for pkt in stream.encode():
                    self._out.mux(pkt)
        self._out.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(path: str | Path, parts: Sequence[Part], *, fps: int = 2, size: tuple[int, int] = (640, 360),
                audio: bool = True, rate: int = 16000, codec: str = "libx264") -> list[tuple[float, float]]:
    """Write the parts one after another into an mp4/mkv; returns each part's (start, end) seconds."""
    spans: list[tuple[float, float]] = []
    with VideoWriter(path, fps=fps, size=size, audio=audio, rate=rate, codec=codec) as w:
        for part in parts:
            samples = speak(part.speech, rate=rate) if part.speech and audio else None
            pause = 0.3 if samples is not None else 0.0
            image = render_slide(part.slide, size) if part.slide else None
            spans.append(w.add(image, samples, seconds=max(part.seconds, (len(samples) / rate + pause)
                                                            if samples is not None else 0.0)))
    return spans


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Linear-interpolation resampling (enough for synthetic speech)."""
    if src == dst:
        return x
    n = int(round(len(x) * dst / src))
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)
