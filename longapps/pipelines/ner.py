"""Long-document named-entity recognition: ``NER.train(...)``, ``NER.load(DIR).predict(text) -> list[Span]``.

The three stages:
1. **chunk** — the text is tokenised once (character segments for huge texts) and covered by overlapping
   windows of ``max_length`` tokens ([CLS] ... [SEP]), ``adapters.token_windows``;
2. **encode** — each window goes through a long encoder (a BERT made long, or FastLongformer) on the
   window + global attention backend, windows batched;
3. **aggregate** — every sub-token takes the label of the window where it is most central, the first
   sub-token of each word labels the word, BIO tags are decoded into character spans once per document.

Labels are BIO over word first sub-tokens; gold spans are flattened with the one overlap policy of
``adapters.ner_formats.resolve_overlaps`` (keep the longest; the dropped count is reported).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..adapters.ner_formats import Document, Span, resolve_overlaps
from ..adapters.token_windows import (Encoded, decode_spans, even_windows, iter_segments, stitch, window_starts,
                                      word_labels, word_tags)
from ..models.token_classifier import TokenClassifier
from ..resources import LongappsError
from ..training import TrainConfig, TrainResult, fit, resolve_device

IGNORE = -100
PRECISIONS = ("auto", "fp32", "bf16")


def window_overlap(size: int) -> int:
    """Tokens shared by neighbouring windows: a quarter of the window, at most 512."""
    return max(1, min(size // 4, 512))


def bio_labels(types: Iterable[str]) -> list[str]:
    """["O", "B-T1", "I-T1", ...] for the sorted entity types."""
    out = ["O"]
    for t in sorted(set(types)):
        out += [f"B-{t}", f"I-{t}"]
    return out


def relabel(docs: Sequence[Document], one_label: Optional[str]) -> list[Document]:
    """Documents with every span's label replaced by ``one_label`` (mention-level tagging); as-is if None."""
    if not one_label:
        return list(docs)
    return [Document(d.id, d.text, [Span(s.start, s.end, one_label, s.text, s.score, s.fragments) for s in d.spans])
            for d in docs]


@dataclass
class Window:
    """One model input: token ids (without special tokens) of a segment slice, and training labels."""

    ids: np.ndarray
    labels: Optional[np.ndarray] = None


@dataclass
class NERTrainReport:
    """What ``NER.train`` did."""

    documents: int
    windows: int
    labels: list[str]
    dropped_overlaps: int
    result: TrainResult
    dev_overlaps_dropped: int = 0
    notes: list[str] = field(default_factory=list)


class NER:
    """A tagger for documents of any length (see the module docstring)."""

    def __init__(self, classifier: TokenClassifier, max_length: Optional[int] = None, batch_size: int = 4,
                 device: str = "auto") -> None:
        self.clf = classifier
        self.max_length = int(max_length or classifier.max_length)
        if hasattr(classifier, "ensure_length"):
            classifier.ensure_length(self.max_length)
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.clf.to(self.device).eval()
        tok = classifier.tokenizer
        self.cls_id, self.sep_id = tok.cls_token_id, tok.sep_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        if self.cls_id is None or self.sep_id is None:
            raise LongappsError("the tokenizer has no [CLS]/[SEP] (or <s>/</s>) tokens")
        if self.max_length < 8:
            raise LongappsError(f"--max-length must be at least 8, got {self.max_length}")

    @property
    def labels(self) -> list[str]:
        return self.clf.labels

    # --------------------------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, folder: str | os.PathLike, max_length: Optional[int] = None, batch_size: int = 4,
             device: str = "auto", precision: str = "auto") -> "NER":
        """A tagger saved by ``NER.train`` / ``longapps ner train``; ``max_length`` overrides the window.

        On CPU a made-long BERT loads without transformers (``TokenClassifier.load(fast=True)``) and
        ``precision`` picks its linear layers' dtype: ``auto`` = bf16 when the CPU multiplies bf16 natively
        (AVX512-BF16 / AMX), else fp32; ``fp32``; ``bf16``. GPU: a Longformer tagger gets bf16 weights
        (``auto`` / ``bf16``), so its forward takes the automatic CUDA graphs and the native eager layers
        (autocast keeps both off); other taggers and ``fp32`` run under bf16 autocast."""
        if precision not in PRECISIONS:
            raise LongappsError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        fast = resolve_device(device).type == "cpu"
        clf = TokenClassifier.load(folder, fast=fast)
        if fast and hasattr(clf.model, "use_bf16"):
            from ..models.fast_bert import cpu_has_bf16

            if precision == "bf16" or (precision == "auto" and cpu_has_bf16()):
                clf.model.use_bf16()
        if not fast and clf.is_longformer and precision in ("auto", "bf16"):
            clf.to(torch.bfloat16)
        return cls(clf, max_length, batch_size, device)

    # --------------------------------------------------------------------------------------------- chunk
    def _content(self) -> int:
        return self.max_length - 2

    def _windows(self, enc: Encoded, labels: Optional[np.ndarray] = None,
                 overlap: Optional[int] = None) -> tuple[list[int], list[Window]]:
        size = self._content()
        if overlap is None:  # inference: the fewest equal windows with >= window_overlap shared tokens
            starts, size = even_windows(len(enc.ids), size, window_overlap(size))
        else:
            starts = window_starts(len(enc.ids), size, size - overlap)
        wins = [Window(enc.ids[s:s + size], None if labels is None else labels[s:s + size]) for s in starts]
        return starts, wins

    def _pack(self, wins: Sequence[Window]) -> dict:
        """[CLS] ids [SEP], right-padded; labels IGNORE on special/padding positions."""
        n = max(len(w.ids) for w in wins) + 2
        ids = torch.full((len(wins), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(wins), n), dtype=torch.long)
        labels = torch.full((len(wins), n), IGNORE, dtype=torch.long)
        for i, w in enumerate(wins):
            k = len(w.ids)
            ids[i, 0], ids[i, k + 1] = self.cls_id, self.sep_id
            ids[i, 1:k + 1] = torch.from_numpy(w.ids)
            mask[i, :k + 2] = 1
            if w.labels is not None:
                labels[i, 1:k + 1] = torch.from_numpy(w.labels)
        batch = {"input_ids": ids, "attention_mask": mask}
        if any(w.labels is not None for w in wins):
            batch["labels"] = labels
        return batch

    # --------------------------------------------------------------------------------------------- encode
    @torch.no_grad()
    def _probs(self, wins: Sequence[Window]) -> list[np.ndarray]:
        """Softmax label probabilities per window token (special tokens stripped), batched by length."""
        out: list[Optional[np.ndarray]] = [None] * len(wins)
        order = sorted(range(len(wins)), key=lambda i: -len(wins[i].ids))
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            batch = self._pack([wins[i] for i in idx])
            # GPU: bf16 autocast unless the weights are bf16 already (a loaded Longformer tagger, see load)
            dtype = torch.bfloat16 if self.device.type == "cuda" and self._fp32_weights() else None
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                logits = self.clf(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))
            probs = torch.softmax(logits.float(), -1).cpu().numpy()
            for j, i in enumerate(idx):
                out[i] = probs[j, 1:len(wins[i].ids) + 1]
        return out  # type: ignore[return-value]

    def _fp32_weights(self) -> bool:
        return next(self.clf.parameters()).dtype == torch.float32

    # --------------------------------------------------------------------------------------------- aggregate
    def _segment_spans(self, enc: Encoded, text: str) -> list[Span]:
        if len(enc.ids) == 0:
            return []
        starts, wins = self._windows(enc)
        probs = stitch(len(enc.ids), starts, self._probs(wins))
        lab = probs.argmax(-1)
        words = word_tags(enc, lab)
        first = [i for i, w in enumerate(enc.words.tolist()) if w >= 0 and (i == 0 or enc.words[i - 1] != w)]
        scores = probs[first, lab[first]] if first else []
        id2label = dict(enumerate(self.labels))
        return [Span(a, b, t, text[a:b], sc) for a, b, t, sc in decode_spans(words, id2label, scores)]

    def predict(self, text: str) -> list[Span]:
        """Entity spans (character offsets into ``text``, exclusive end) with a confidence score."""
        spans: list[Span] = []
        for enc in iter_segments(self.clf.tokenizer, text):
            spans += self._segment_spans(enc, text)
        return spans

    def predict_documents(self, docs: Iterable[Document]) -> Iterator[Document]:
        """``predict`` over documents, lazily (one document in memory at a time)."""
        for d in docs:
            yield Document(d.id, d.text, self.predict(d.text))

    # --------------------------------------------------------------------------------------------- eval
    def evaluate(self, gold: Sequence[Document], one_label: Optional[str] = None) -> dict:
        """Strict span-level scores of this model's predictions against ``gold`` (see ``span_metrics``)."""
        gold = relabel(gold, one_label)
        pred = list(self.predict_documents(gold))
        res = span_metrics(gold, pred)
        types = {s.label for d in gold for s in d.spans}
        known = {lab[2:] for lab in self.labels if lab != "O"}
        res["unseen_labels"] = sorted(types - known)
        return res

    # --------------------------------------------------------------------------------------------- training
    def _examples(self, docs: Sequence[Document]) -> tuple[list[Window], int]:
        label2id = {k: i for i, k in enumerate(self.labels)}
        wins: list[Window] = []
        dropped = 0
        for d in docs:
            flat, n = resolve_overlaps(d.spans)
            dropped += n
            spans = [(s.start, s.end, s.label) for s in flat if f"B-{s.label}" in label2id]
            for enc in iter_segments(self.clf.tokenizer, d.text):
                if len(enc.ids) == 0:
                    continue
                # training windows do not overlap (every token once per epoch)
                _, w = self._windows(enc, word_labels(enc, spans, label2id, IGNORE), overlap=0)
                wins += w
        return wins, dropped

    @classmethod
    def train(cls, train_docs: Sequence[Document], out: Optional[str | os.PathLike] = None,
              dev_docs: Optional[Sequence[Document]] = None, model: Optional[str] = None,
              max_length: int = 4096, attention_window: int = 512, config: Optional[TrainConfig] = None,
              one_label: Optional[str] = None, batch_size: int = 4) -> tuple["NER", NERTrainReport]:
        """Fine-tune ``model`` (HF id / folder; default: the packaged all-MiniLM-L6-v2 made long) on
        ``train_docs``; with ``dev_docs`` keep the epoch with the best strict micro F1 (early stopping);
        with ``out`` save the best checkpoint there (atomically, an HF-style folder ``NER.load`` reads)."""
        config = config or TrainConfig()
        train_docs = relabel(train_docs, one_label)
        dev_docs = relabel(dev_docs, one_label) if dev_docs else None
        types = {s.label for d in train_docs for s in d.spans}
        if not types:
            raise LongappsError("the training data has no entity spans")
        labels = bio_labels(types)
        clf = TokenClassifier.create(model, labels, max_length, attention_window)
        ner = cls(clf, max_length, batch_size, config.device)
        examples, dropped = ner._examples(train_docs)
        notes = []
        if dev_docs:
            unseen = sorted({s.label for d in dev_docs for s in d.spans} - types)
            if unseen:
                notes.append(f"dev labels never seen in training (their spans count as missed): {', '.join(unseen)}")
        extra = {"one_label": one_label, "train_documents": len(train_docs)}

        def evaluate(_model: Any) -> float:
            return ner.evaluate(dev_docs)["micro"]["f1"]

        def save(_model: Any, metric: float) -> None:
            if out is not None:
                clf.save(out, dict(extra, dev_f1=None if math.isnan(metric) else metric))

        def loss_fn(m: Any, batch: dict) -> torch.Tensor:
            logits = m(batch["input_ids"], batch["attention_mask"])
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), batch["labels"].view(-1),
                                   ignore_index=IGNORE)

        result = fit(clf, examples, ner._pack, config, loss_fn=loss_fn,
                     evaluate=evaluate if dev_docs else None, on_best=save, metric_name="dev F1")
        ner.clf.eval()
        report = NERTrainReport(len(train_docs), len(examples), labels, dropped, result, notes=notes)
        return ner, report


def span_metrics(gold: Sequence[Document], pred: Sequence[Document]) -> dict:
    """Strict span scores (exact start, end and type) with nervaluate: micro, macro and per type.

    Gold spans are flattened with the overlap policy first (a tagger cannot output nested spans); the number
    dropped is reported as ``gold_overlaps_dropped``."""
    from nervaluate import Evaluator

    by_id = {d.id: d for d in pred}
    true, predicted, dropped = [], [], 0
    for g in gold:
        flat, n = resolve_overlaps(g.spans)
        dropped += n
        true.append([{"label": s.label, "start": s.start, "end": s.end - 1} for s in flat])
        p = by_id.get(g.id)
        predicted.append([{"label": s.label, "start": s.start, "end": s.end - 1} for s in (p.spans if p else [])])
    types = sorted({s["label"] for doc in true + predicted for s in doc})
    res: dict = {"micro": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "gold": 0, "predicted": 0, "correct": 0},
                 "macro": {"precision": 0.0, "recall": 0.0, "f1": 0.0}, "per_type": {},
                 "documents": len(gold), "gold_overlaps_dropped": dropped}
    if not types:
        return res
    out = Evaluator(true, predicted, tags=types, loader="default").evaluate()
    s = out["overall"]["strict"]
    res["micro"] = {"precision": s.precision, "recall": s.recall, "f1": s.f1, "gold": s.possible,
                    "predicted": s.actual, "correct": s.correct}
    for t in types:
        e = out["entities"][t]["strict"]
        res["per_type"][t] = {"precision": e.precision, "recall": e.recall, "f1": e.f1, "gold": e.possible,
                              "predicted": e.actual, "correct": e.correct}
    gold_types = [t for t in types if res["per_type"][t]["gold"] > 0] or types
    for k in ("precision", "recall", "f1"):
        res["macro"][k] = float(np.mean([res["per_type"][t][k] for t in gold_types]))
    return res


__all__ = ["NER", "NERTrainReport", "Span", "Document", "span_metrics", "bio_labels", "relabel", "window_overlap"]
