"""On-screen text describer: OCR (RapidOCR, ONNX models shipped in the `rapidocr-onnxruntime` wheel) of
sampled frames.

OCR is the slow part of a frame (~0.3-0.8 s on a CPU core), so a frame is read only when the picture
changed since the last frame read (share of a 160x90 grey thumbnail's pixels that moved by > 24 levels:
a changed line of slide text is enough, encoder noise is not) and at least
`min_gap` seconds passed, at most `max_per_clip` times per clip; a clip that starts on an unchanged
picture reuses the text already read.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from longapps.adapters.video.clips import Clip
from longapps.adapters.video.decode import Frame
from longapps.adapters.video.describers.base import Segment, dedupe_lines
from longapps.resources import ModelNotFoundError

THUMB = (160, 90)
PIXEL_DELTA = 24.0


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A small grey float thumbnail (what change detection compares)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).convert("L").resize(THUMB, Image.BILINEAR), dtype=np.float32)


def respace(text: str, boxes: Any, factor: float = 0.4) -> str:
    """Put back the spaces a recogniser dropped between words (PP-OCR's Chinese/English model often does
    for small Latin text), from its per-character boxes: a gap between two letters wider than `factor` x
    the median character width is a space. Only for lines with no space at all (a line that has spaces
    was segmented by the recogniser; wide letters such as 'm' would split its words). Unchanged when the
    boxes do not match the text."""
    if not boxes or len(boxes) != len(text) or any(ch.isspace() for ch in text):
        return text
    left = np.array([min(p[0] for p in b) for b in boxes], dtype=np.float32)
    right = np.array([max(p[0] for p in b) for b in boxes], dtype=np.float32)
    letters = [i for i, ch in enumerate(text) if not ch.isspace()]
    w = float(np.median((right - left)[letters])) if letters else 0.0
    if w <= 0:
        return text
    out = [text[0]]
    for i in range(1, len(text)):
        if not text[i - 1].isspace() and not text[i].isspace() and left[i] - right[i - 1] > factor * w:
            out.append(" ")
        out.append(text[i])
    return "".join(out)


class OcrDescriber:
    """Read the text on screen in sampled frames of each clip."""

    name = "ocr"
    needs = "frames"

    def __init__(self, *, change_threshold: float = 0.0005, min_gap: float = 10.0, max_per_clip: int = 8,
                 min_score: float = 0.6, engine: Any = None) -> None:
        self.change_threshold = change_threshold
        self.min_gap = min_gap
        self.max_per_clip = max_per_clip
        self.min_score = min_score
        self.notes: list[str] = []
        self._engine = engine
        self._last_thumb: np.ndarray | None = None
        self._last_text: list[str] = []
        self._last_t = -1e9
        self._clip_texts: list[tuple[float, list[str]]] = []
        self._clip_runs = 0
        self.frames_seen = 0
        self.frames_read = 0

    def key(self) -> str:
        return f"ocr:v3:{self.change_threshold}:{self.min_gap}:{self.max_per_clip}:{self.min_score}"

    @property
    def engine(self) -> Any:
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as err:
                raise ModelNotFoundError("the ocr describer needs rapidocr-onnxruntime "
                                         "(pip install rapidocr-onnxruntime)") from err
            self._engine = RapidOCR()
        return self._engine

    def read(self, image: np.ndarray) -> list[str]:
        """The text lines in one image (confident lines only, spaces restored)."""
        result, _ = self.engine(image, return_word_box=True)
        lines = []
        for r in result or []:
            text, score = str(r[1]), float(r[2])
            if score < self.min_score or not text.strip():
                continue
            lines.append(respace(text, r[3] if len(r) > 3 else None))
        return lines

    def add_frame(self, clip: Clip, frame: Frame) -> None:
        self.frames_seen += 1
        thumb = thumbnail(frame.image)
        changed = self._last_thumb is None or \
            float(np.mean(np.abs(thumb - self._last_thumb) > PIXEL_DELTA)) > self.change_threshold
        if not self._clip_texts and self._clip_runs == 0 and not changed and self._last_text:
            # the clip opens on the picture read last: its text holds here too
            self._clip_texts.append((frame.time, self._last_text))
            self._clip_runs = -1   # counted as seen for this clip, no OCR spent
            return
        if not changed or self._clip_runs >= self.max_per_clip or frame.time - self._last_t < self.min_gap:
            return
        lines = self.read(frame.image)
        self.frames_read += 1
        self._clip_runs = max(self._clip_runs, 0) + 1
        self._last_thumb, self._last_text, self._last_t = thumb, lines, frame.time
        if lines:
            self._clip_texts.append((frame.time, lines))

    def end_clip(self, clip: Clip) -> list[Segment]:
        segs: list[Segment] = []
        seen: set[str] = set()
        for i, (t, lines) in enumerate(self._clip_texts):
            end = self._clip_texts[i + 1][0] if i + 1 < len(self._clip_texts) else clip.end
            new = [x for x in dedupe_lines(lines) if x.lower() not in seen]
            seen.update(x.lower() for x in new)
            if new:
                segs.append(Segment(t, end, " | ".join(new)))
        self._clip_texts = []
        self._clip_runs = 0
        return segs
