"""Vision-language captioner: any Hugging Face image-text-to-text model describes a few frames per clip.

Off by default (no such model ships offline); pass an HF id (e.g. `HuggingFaceTB/SmolVLM-256M-Instruct`)
or a local folder. Frames are picked while streaming: the one closest to the middle of each of
`frames_per_clip` equal parts of the clip.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from longapps.adapters.video.clips import Clip
from longapps.adapters.video.decode import Frame
from longapps.adapters.video.describers.base import Segment
from longapps.resources import ModelNotFoundError, load_offline_first

DEFAULT_PROMPT = "Describe what is shown in this video frame in one sentence."


def load_captioner(model: str, device: str | None = None) -> tuple[Any, Any]:
    """(processor, model) of an image-text-to-text model by HF id or local folder, offline first."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from longapps.adapters.encode import pick_device

    dev = pick_device(device)

    def load(local: bool) -> tuple[Any, Any]:
        proc = AutoProcessor.from_pretrained(model, local_files_only=local)
        m = AutoModelForImageTextToText.from_pretrained(model, local_files_only=local)
        return proc, m.to(dev).eval()

    if Path(model).exists():
        try:
            return load(True)
        except Exception as err:  # noqa: BLE001
            raise ModelNotFoundError(f"cannot load captioner from '{model}': {str(err).splitlines()[0][:160]}") \
                from err
    return load_offline_first(model, load)


class CaptionDescriber:
    """Caption `frames_per_clip` frames of each clip with an image-text-to-text model."""

    name = "caption"
    needs = "frames"

    def __init__(self, model: str, *, frames_per_clip: int = 1, prompt: str = DEFAULT_PROMPT,
                 max_new_tokens: int = 40, device: str | None = None) -> None:
        self.model_name = model
        self.frames_per_clip = max(1, frames_per_clip)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.notes: list[str] = []
        self._loaded: tuple[Any, Any] | None = None
        self._picked: dict[int, tuple[float, Frame]] = {}

    def key(self) -> str:
        return f"caption:v1:{self.model_name}:{self.frames_per_clip}:{self.prompt}:{self.max_new_tokens}"

    @property
    def loaded(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = load_captioner(self.model_name, self.device)
        return self._loaded

    def add_frame(self, clip: Clip, frame: Frame) -> None:
        part = (clip.end - clip.start) / self.frames_per_clip
        j = min(self.frames_per_clip - 1, max(0, int((frame.time - clip.start) // part))) if part > 0 else 0
        dist = abs(frame.time - (clip.start + (j + 0.5) * part))
        if j not in self._picked or dist < self._picked[j][0]:
            self._picked[j] = (dist, frame)

    def end_clip(self, clip: Clip) -> list[Segment]:
        picked = [f for _, (_, f) in sorted(self._picked.items())]
        self._picked = {}
        segs = []
        for f in picked:
            text = self.caption(f.image)
            if text:
                segs.append(Segment(f.time, f.time, text))
        return segs

    def caption(self, image: np.ndarray) -> str:
        """One caption for one RGB image."""
        import torch
        from PIL import Image

        proc, model = self.loaded
        img = Image.fromarray(image)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        if getattr(proc, "chat_template", None):
            text = proc.apply_chat_template(messages, add_generation_prompt=True)
        else:
            token = getattr(proc, "image_token", None) or "<image>"
            text = f"{token}\n{self.prompt}"
        inputs = proc(images=[img], text=text, return_tensors="pt").to(model.device)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return " ".join(proc.batch_decode(new, skip_special_tokens=True)[0].split())
