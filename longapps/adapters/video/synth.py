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


def speak(text: str, *, words_per_minute: int = 175, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """espeak-ng reads `text` aloud: (mono float32 samples, sample rate)."""
    if not have_espeak():
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    res = subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout"],
                         input=text.encode("utf-8"), capture_output=True, check=True)
    with wave.open(io.BytesIO(res.stdout)) as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return data.astype(np.float32) / 32768.0, rate


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


def write_video(path: str | Path, parts: Sequence[Part], *, fps: int = 2, size: tuple[int, int] = (640, 360),
                audio: bool = True, rate: int = 16000, codec: str = "libx264") -> list[tuple[float, float]]:
    """Write the parts one after another into an mp4/mkv; returns each part's (start, end) seconds."""
    import av

    spans: list[tuple[float, float]] = []
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        if codec == "libx264":
            vs.options = {"preset": "ultrafast", "tune": "stillimage"}
        a_stream = out.add_stream("aac", rate=rate, layout="mono") if audio else None
        t = 0.0
        n_frame = 0
        n_sample = 0
        for part in parts:
            samples = np.zeros(0, np.float32)
            if part.speech and audio:
                samples, sr = speak(part.speech)
                if sr != rate:
                    samples = _resample(samples, sr, rate)
            dur = max(part.seconds, len(samples) / rate + 0.3)
            if audio:
                pad = int(round((t + dur) * rate)) - n_sample - len(samples)
                samples = np.concatenate([samples, np.zeros(max(0, pad), np.float32)])
            image = render_slide(part.slide, size) if part.slide else np.zeros((size[1], size[0], 3), np.uint8)
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            while n_frame < round((t + dur) * fps):
                vf.pts = n_frame
                for pkt in vs.encode(vf):
                    out.mux(pkt)
                n_frame += 1
            if a_stream is not None:
                for s in range(0, len(samples), 1024):
                    block = samples[s:s + 1024]
                    af = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
                    af.sample_rate, af.pts = rate, n_sample
                    for pkt in a_stream.encode(af):
                        out.mux(pkt)
                    n_sample += len(block)
            spans.append((t, t + dur))
            t += dur
        for stream in (vs, a_stream):
            if stream is not None:
                for pkt in stream.encode():
                    out.mux(pkt)
    return spans


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    n = int(round(len(x) * dst / src))
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)
