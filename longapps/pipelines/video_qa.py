"""Question answering over long videos (Goldfish): clips -> text descriptions -> retrieval -> answer.

    qa = VideoQA("lecture.mp4")
    ans = qa.ask("What did the speaker say about BRCA1?")
    print(ans.answer, [c.label for c in ans.clips])

Stages:
1. **chunk** — the timeline is cut into clips of `clip_seconds` (a video under 180 s is one clip); each
   clip is described in text by the describers (subtitles, speech, on-screen text, optional captions),
   decoded with PyAV in two streaming passes.
2. **encode** — each clip's text is cut into encoder-sized chunks and encoded through the shared cached
   encoder (packaged all-MiniLM-L6-v2 by default); the memory (texts, time ranges, vectors, BM25) is
   stored by the video's content hash, so asking again never decodes or transcribes again.
3. **aggregate** — clips are scored by the fused dense (best/first chunk) and BM25 score; the top-k
   clips' texts alone go to the LLM, which answers (or picks a choice by log-likelihood). Every answer
   names the clips it was given.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from longapps.adapters.aggregate import hybrid_scores
from longapps.adapters.encode import Encoder, UsesEncoder, with_cache
from longapps.adapters.passages import chunk_passages, chunk_scores, fuse_first_best
from longapps.adapters.video.clips import DEFAULT_CLIP_SECONDS, Clip, make_clips
from longapps.adapters.video.decode import VideoError, content_hash, probe
from longapps.adapters.video.describers import DEFAULT, build_describer
from longapps.adapters.video.memory import ClipMemory, VideoMemory
from longapps.index.lexical import BM25Index, tokenize
from longapps.index.store import IndexStore
from longapps.pipelines.qa_reader import Context, Reader
from longapps.resources import LongappsError, cache_dir


@dataclass
class VideoQAConfig:
    """Everything that shapes the memory (first block) and the answers (second block)."""

    clip_seconds: float = DEFAULT_CLIP_SECONDS
    fps: float = 1.0
    describers: tuple[str, ...] = DEFAULT
    speech: str = "auto"                 # auto: transcribe only when no subtitles were found; on; off
    whisper: str | None = None           # None = packaged tiny.en; any faster-whisper size / id / folder
    language: str | None = None
    caption_model: str | None = None     # an image-text-to-text HF id / folder: adds the 'caption' describer
    caption_frames: int = 1
    subtitles: str | None = None         # a subtitle file to use instead of looking next to the video
    model: str | None = None             # encoder (None = packaged all-MiniLM-L6-v2)

    k: int = 3
    lexical_weight: float = 0.3          # BM25 share in the fused clip score (dev set: benchmarks/video_qa.py)
    best_weight: float = 0.5             # dense = (1-b) * first chunk + b * best chunk
    llm: str | None = None               # None = packaged SmolLM2-135M-Instruct
    context_tokens: int = 480            # what the LLM reads of the k clips: their sentences nearest the question
    max_new_tokens: int = 48
    device: str | None = None

    def memory_key(self) -> str:
        """A digest of the settings that change the memory (not k, weights or the LLM)."""
        names = list(self.describers) + (["caption"] if self.caption_model and "caption" not in self.describers
                                         else [])
        d = {"clip": self.clip_seconds, "fps": self.fps, "describers": sorted(set(names)), "speech": self.speech,
             "whisper": self.whisper, "language": self.language, "caption": self.caption_model,
             "caption_frames": self.caption_frames, "subtitles": self.subtitles, "model": self.model or "default"}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class UsedClip:
    """A clip given to the LLM: its time range, retrieval score and text."""

    index: int
    start: float
    end: float
    score: float
    text: str

    @property
    def label(self) -> str:
        return Clip(self.index, self.start, self.end).label

    def to_dict(self) -> dict[str, Any]:
        return {"clip": self.index, "start": round(self.start, 2), "end": round(self.end, 2), "label": self.label,
                "score": round(float(self.score), 4), "text": self.text}


@dataclass
class Answer:
    """An answer and where it came from."""

    question: str
    answer: str
    clips: list[UsedClip]
    choices: list[str] | None = None
    choice: int | None = None
    choice_scores: list[float] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"question": self.question, "answer": self.answer, "clips": [c.to_dict() for c in self.clips],
             "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}
        if self.choices is not None:
            d.update(choices=self.choices, choice=self.choice,
                     choice_scores=[round(s, 4) for s in self.choice_scores or []])
        return d


@dataclass
class IndexResult:
    """What indexing did: the memory, whether it came from the cache, where it lives, notes, timings."""

    memory: VideoMemory
    cached: bool
    folder: Path
    notes: list[str]
    seconds: dict[str, float]


def memory_folder(digest: str, config: VideoQAConfig, extra: str = "") -> Path:
    """Where the memory of a video with content `digest` lives for these settings (`extra`: digests of
    other inputs, e.g. the sidecar subtitle files)."""
    key = config.memory_key()
    if extra:
        key = hashlib.sha1(f"{key}|{extra}".encode()).hexdigest()[:12]
    return cache_dir("video") / f"{digest[:20]}-{key}"


def sidecar_digest(video: Path, config: VideoQAConfig) -> str:
    """Content digests of the subtitle files the subtitles describer would read ('' when none): a new or
    edited .srt next to the video makes a new memory."""
    if "subtitles" not in config.describers:
        return ""
    from longapps.adapters.video.describers.subtitles import sidecar_files

    files = [Path(config.subtitles)] if config.subtitles else sidecar_files(video)[:1]
    return ",".join(content_hash(f) for f in files if f.is_file())


def _describers(config: VideoQAConfig) -> list[Any]:
    names = list(dict.fromkeys(config.describers))
    if config.caption_model and "caption" not in names:
        names.append("caption")
    out = []
    for n in names:
        if n == "speech":
            if config.speech == "off":
                continue
            out.append(build_describer(n, model=config.whisper, device=config.device, language=config.language))
        elif n == "caption":
            if not config.caption_model:
                raise LongappsError("the caption describer needs a model: pass --caption-model HF_ID_OR_FOLDER")
            out.append(build_describer(n, model=config.caption_model, frames_per_clip=config.caption_frames,
                                       device=config.device))
        elif n == "subtitles":
            out.append(build_describer(n, sidecar=config.subtitles))
        else:
            out.append(build_describer(n))
    return out


class VideoIndexer(UsesEncoder):
    """Build (or load from the cache) the memory of a video."""

    def __init__(self, config: VideoQAConfig | None = None, *, encoder: Encoder | None = None,
                 progress: bool = False, ray: Any = None) -> None:
        """`ray`: encode the clip texts on a Ray cluster (an address, True, or a
        `longapps.distributed.RayConfig`; None = in this process); vectors land in the same embedding cache."""
        self.config = config or VideoQAConfig()
        self.ray = ray
        self._encoder = with_cache(encoder, ray=ray) if encoder is not None and ray is not None else encoder
        self.progress = progress

    def index(self, video: str | Path, *, force: bool = False) -> IndexResult:
        """The memory of `video`: from the cache when this content was indexed with these settings."""
        path = Path(video)
        if not path.exists():
            raise VideoError(f"video not found: {path}")
        if path.is_dir():
            raise VideoError(f"{path} is a folder, not a video file")
        t0 = time.perf_counter()
        digest = content_hash(path)
        t_hash = time.perf_counter() - t0
        folder = memory_folder(digest, self.config, sidecar_digest(path, self.config))
        if not force and folder.exists():
            cached = _load(folder)
            if cached is not None:
                return IndexResult(cached, True, folder, list(cached.meta.get("notes", [])), {"hash": t_hash})
        info = probe(path)                                   # bad input fails here: nothing created yet
        store = IndexStore(folder)
        try:
            with store.lock():
                if not force:
                    cached = _load(folder)
                    if cached is not None:
                        return IndexResult(cached, True, folder, list(cached.meta.get("notes", [])),
                                           {"hash": t_hash})
                memory, notes, seconds = self._build(path, info, digest)
                seconds["hash"] = t_hash
                store.publish(memory.save)
        except BaseException:
            store.close()
            if store.current() is None:   # failed before anything was published: leave no folder behind
                shutil.rmtree(folder, ignore_errors=True)
            raise
        store.close()
        return IndexResult(memory, False, folder, notes, seconds)

    def _build(self, path: Path, info: Any, digest: str) -> tuple[VideoMemory, list[str], dict[str, float]]:
        from longapps.adapters.video.describe import describe_video
        from longapps.progress import Progress

        cfg = self.config
        clips = make_clips(info.duration, cfg.clip_seconds)
        describers = _describers(cfg)
        texts: dict[int, dict[str, list]] = {c.index: {} for c in clips}
        notes: list[str] = []
        seconds: dict[str, float] = {}
        # subtitles first: with speech='auto' they make transcription unnecessary
        first = [d for d in describers if d.needs == "file"]
        rest = [d for d in describers if d.needs != "file"]
        for group in (first, rest):
            if not group:
                continue
            if group is rest and cfg.speech == "auto" and any(texts[c].get("subtitles") for c in texts):
                if any(d.name == "speech" for d in group):
                    notes.append("subtitles found: speech not transcribed (--speech on to transcribe anyway)")
                group = [d for d in group if d.name != "speech"]
            got, report = describe_video(path, info, clips, group, fps=cfg.fps, progress=self.progress)
            for ci, by_name in got.items():
                texts[ci].update(by_name)
            notes.extend(report.notes)
            for k, v in report.seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
        clip_mem = [ClipMemory(c, texts[c.index]) for c in clips]
        if all(c.empty for c in clip_mem):
            notes.append(f"{path.name}: no text found in any clip (no subtitles, speech or on-screen text); "
                         "questions cannot be answered from this video")
        t0 = time.perf_counter()
        enc = self.encoder
        clip_texts = [c.text() for c in clip_mem]
        chunks = chunk_passages(clip_texts, max_tokens=max(16, enc.max_tokens - 16), max_chunks=32,
                                count_tokens=enc.count_tokens)
        with Progress("encoding clips", total=len(chunks.texts), enabled=self.progress) as bar:
            vectors = enc.encode(chunks.texts, progress=bar.advance)
        bm25 = BM25Index().fit([tokenize(t) for t in clip_texts])
        seconds["encode"] = time.perf_counter() - t0
        meta = {"config": asdict(self.config), "encoder": enc.name, "notes": notes, "seconds": seconds,
                "content_hash": digest}
        video = {**info.to_dict(), "name": path.name}
        return VideoMemory(video, clip_mem, chunks, vectors, bm25, meta), notes, seconds


def _load(folder: Path) -> VideoMemory | None:
    store = IndexStore(folder)
    try:
        cur = store.current()
        return VideoMemory.load(cur) if cur is not None else None
    except (OSError, ValueError, KeyError):
        return None   # an older format or a damaged snapshot: index again
    finally:
        store.close()


class VideoQA(UsesEncoder):
    """Questions about one video. The memory is built (or loaded from the cache) on first use."""

    def __init__(self, video: str | Path, config: VideoQAConfig | None = None, *, encoder: Encoder | None = None,
                 reader: Reader | None = None, progress: bool = False) -> None:
        self.video = Path(video)
        self.config = config or VideoQAConfig()
        self._encoder = encoder
        self.progress = progress
        self._reader = reader
        self._index: IndexResult | None = None

    @property
    def indexed(self) -> IndexResult:
        if self._index is None:
            indexer = VideoIndexer(self.config, encoder=self._encoder, progress=self.progress)
            self._index = indexer.index(self.video)
            self._encoder = self._encoder or indexer._encoder   # loaded for indexing: reuse for questions
        return self._index

    @property
    def memory(self) -> VideoMemory:
        return self.indexed.memory

    @property
    def reader(self) -> Reader:
        if self._reader is None:
            self._reader = Reader(self.config.llm, max_new_tokens=self.config.max_new_tokens,
                                  device=self.config.device, context_tokens=self.config.context_tokens,
                                  cut="relevant")
        return self._reader

    def warm(self, llm: bool = True) -> None:
        """Load the memory, the encoder and (with `llm`) the reader now, so the first question is as fast
        as the rest (an interactive session)."""
        _ = self.memory
        _ = self.encoder
        if llm:
            _ = self.reader.lm

    def clip_scores(self, question: str) -> np.ndarray:
        """The fused retrieval score of every clip (-inf for clips without text)."""
        mem = self.memory
        if not len(mem.clips):
            return np.zeros(0)
        q = self.encoder.encode([question])[0]
        feats = chunk_scores(q, mem.vectors, mem.chunks)
        dense = fuse_first_best(feats, self.config.best_weight)
        lexical = mem.bm25.scores(tokenize(question))
        scores = hybrid_scores(dense, lexical, self.config.lexical_weight)
        empty = np.array([c.empty for c in mem.clips])
        return np.where(empty, -np.inf, scores)

    def retrieve(self, question: str, k: int | None = None) -> list[UsedClip]:
        """The top-k clips for the question (highest fused score first)."""
        k = self.config.k if k is None else k
        scores = self.clip_scores(question)
        order = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])][:max(0, k)]
        mem = self.memory
        return [UsedClip(i, mem.clips[i].clip.start, mem.clips[i].clip.end, float(scores[i]), mem.clips[i].text())
                for i in order]

    def ask(self, question: str, choices: Sequence[str] | None = None, k: int | None = None) -> Answer:
        """Answer from the top-k clips only; with `choices`, pick one by log-likelihood."""
        if not question or not question.strip():
            raise LongappsError("the question is empty")
        t0 = time.perf_counter()
        _ = self.memory
        t1 = time.perf_counter()
        used = self.retrieve(question, k)
        t2 = time.perf_counter()
        seconds = {"index": t1 - t0, "retrieve": t2 - t1}
        if not used:
            msg = "The video has no text (speech, subtitles or on-screen text) to answer from."
            return Answer(question, msg, [], list(choices) if choices else None, None, None, seconds)
        # the LLM reads the clips in time order, each introduced by its time range
        ctx = [Context(f"Clip {u.label}", u.text) for u in sorted(used, key=lambda u: u.start)]
        if choices:
            best, scores = self.reader.choose(question, ctx, list(choices))
            ans = Answer(question, str(choices[best]), used, list(choices), best, scores, seconds)
        else:
            ans = Answer(question, self.reader.answer(question, ctx), used, seconds=seconds)
        ans.seconds["llm"] = time.perf_counter() - t2
        ans.seconds["total"] = time.perf_counter() - t0
        return ans
