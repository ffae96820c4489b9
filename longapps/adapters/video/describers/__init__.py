"""Describers: each turns clips of a video into timed text. Registry: name -> class; `build_describers`."""
from __future__ import annotations

from typing import Any

from longapps.adapters.video.describers.base import (AudioDescriber, Describer, FileDescriber, FrameDescriber,
                                                     Segment, dedupe_lines)

NAMES = ("subtitles", "speech", "ocr", "caption")
DEFAULT = ("subtitles", "speech", "ocr")


def build_describer(name: str, **options: Any) -> Describer:
    """A describer by name with its options (unknown options are an error)."""
    if name == "subtitles":
        from longapps.adapters.video.describers.subtitles import SubtitlesDescriber
        return SubtitlesDescriber(**options)
    if name == "speech":
        from longapps.adapters.video.describers.speech import SpeechDescriber
        return SpeechDescriber(**options)
    if name == "ocr":
        from longapps.adapters.video.describers.ocr import OcrDescriber
        return OcrDescriber(**options)
    if name == "caption":
        from longapps.adapters.video.describers.caption import CaptionDescriber
        return CaptionDescriber(**options)
    raise ValueError(f"describer: unknown '{name}' (choose from {', '.join(NAMES)})")


__all__ = ["NAMES", "DEFAULT", "build_describer", "Segment", "Describer", "FileDescriber", "AudioDescriber",
           "FrameDescriber", "dedupe_lines"]
