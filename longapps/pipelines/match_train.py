"""Training SMITH (`longapps match-train`) on the shared loop (`longapps.training.fit`).

- self-supervised (no labels): masked sentence-block prediction on the user's corpus -- 2 blocks of each
  document are replaced by the [MASK] block and each must pick its original among the batch's masked blocks;
  dev metric: that prediction's accuracy on held-out documents with fixed masks.
- supervised (pairs {"a", "b", "label"}): siamese loss (scaled cosine + sigmoid cross-entropy, as SMITH) or
  in-batch contrastive (positive pairs, the batch's other documents as negatives); dev metric: ROC AUC of the
  cosine on held-out pairs.

The block encoder is frozen by default: its block vectors come from the content-hash cache, so an epoch costs
only the small document encoder (minutes on a CPU). `train_block_encoder=True` fine-tunes it end to end
(a GPU job: every step runs the block encoder on every block).
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from longapps.adapters.documents import DOC_EXTENSIONS, DocPair
from longapps.index.files import read_source, walk_repo
from longapps.index.incremental import encode_counted
from longapps.pipelines.doc_match import Matcher, MatchConfig
from longapps.resources import LongappsError

OBJECTIVES = ("blocks", "pairs", "contrastive")


@dataclass
class MatchTrainConfig:
    """match-train settings (architecture sizes: SmithConfig; loop knobs: training.TrainConfig)."""

    objective: str = "auto"             # auto (pairs when given, else blocks) | blocks | pairs | contrastive
    init: str | None = None             # start from a saved SMITH folder (e.g. self-supervised, then pairs)
    block_encoder: str | None = None    # fresh model: block encoder id/folder (None = packaged MiniLM)
    block_tokens: int = 32
    max_blocks: int = 64
    layers: int = 3
    train_block_encoder: bool = False
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 32
    masked_per_doc: int = 2
    dev_fraction: float = 0.1
    patience: int | None = 2
    time_budget_s: float | None = None
    max_docs: int | None = None         # self-supervised: at most this many corpus documents
    seed: int = 0
    device: str = "auto"
    progress: bool = False


@dataclass
class MatchTrainResult:
    objective: str
    examples: int
    dev_examples: int
    steps: int
    epochs: int
    best_dev: float | None
    stopped: str
    seconds: float
    history: list[dict] = field(default_factory=list)
    out: str = ""


def corpus_texts(folder: str | Path, max_bytes: int, max_docs: int | None = None) -> list[tuple[str, str]]:
    """(relative path, text) of every readable, non-empty document of a corpus folder."""
    walk = walk_repo(Path(folder), max_bytes=1 << 62, extensions=DOC_EXTENSIONS)
    out = []
    for f in walk.files:
        text, _ = read_source(f.path, max_bytes=max_bytes)
        if text and text.strip():
            out.append((f.rel, text))
        if max_docs and len(out) >= max_docs:
            break
    return out


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC AUC (probability that a random positive outscores a random negative; ties count half)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


class SmithTrainer:
    """Wires a Matcher's model to the shared training loop. Block vectors are computed once (cached)."""

    def __init__(self, config: MatchTrainConfig, matcher: Matcher | None = None) -> None:
        import torch.nn as nn

        self.config = config
        if matcher is None:
            mc = MatchConfig(model=config.init, block_encoder=config.block_encoder,
                             block_tokens=None if config.init else config.block_tokens,
                             max_blocks=None if config.init else config.max_blocks)
            matcher = Matcher(mc, progress=config.progress)
        self.matcher = matcher
        if not config.init:
            matcher.smith.layers = config.layers
            matcher.doc_encoder = None  # built fresh with these sizes
        self.doc = matcher.document_encoder()
        self.module = nn.Module()  # what the loop trains: the document encoder (+ the block encoder if asked)
        self.module.doc = self.doc
        self.block_module = None
        if config.train_block_encoder:
            inner = getattr(matcher.encoder, "inner", matcher.encoder)
            self.block_module = inner.sentence_transformer()  # an nn.Module
            self.module.blocks = self.block_module

    # -- data ----------------------------------------------------------------------------------------
    def block_data(self, texts: Sequence[str]) -> list[Any]:
        """Per document: its block vectors (np.ndarray, frozen block encoder) or its block texts."""
        cut = [self.matcher.blocks(t)[0] for t in texts]
        if self.block_module is not None:
            return cut
        flat = [b for bl in cut for b in bl]
        vecs, _, _ = encode_counted(self.matcher.encoder, flat, label="encoding blocks",
                                    show_progress=self.config.progress)
        out, s = [], 0
        for bl in cut:
            out.append(vecs[s:s + len(bl)])
            s += len(bl)
        return out

    def _vectors(self, docs: Sequence[Any]):
        """Padded block vectors (B, N, dim) + mask for a batch (runs the block encoder when it is trained)."""
        import torch

        from longapps.models.smith import embed_blocks_trainable, pad_blocks

        if self.block_module is None:
            return pad_blocks(list(docs), self.matcher.smith.dim)
        st = self.block_module
        device = next(st.parameters()).device
        emb = embed_blocks_trainable(st, [b for d in docs for b in d], device)
        n = max(len(d) for d in docs)
        vecs = torch.zeros(len(docs), n, emb.shape[-1], device=device, dtype=emb.dtype)
        mask = torch.zeros(len(docs), n, dtype=torch.bool, device=device)
        s = 0
        for i, d in enumerate(docs):
            vecs[i, :len(d)] = emb[s:s + len(d)]
            mask[i, :len(d)] = True
            s += len(d)
        return vecs, mask

    def _embed_batch(self, docs: Sequence[Any]):
        vecs, mask = self._vectors(docs)
        dev = next(self.doc.parameters()).device
        return self.doc(vecs.to(dev), mask.to(dev))

    # -- objectives ------------------------------------------------------------------------------------
    def train_blocks(self, docs: list[Any], out: Path) -> MatchTrainResult:
        """Self-supervised masked sentence-block prediction over `docs` (block data from `block_data`)."""
        import torch

        from longapps.models.smith import choose_masked, masked_block_loss

        docs = [d for d in docs if len(d) >= 2]
        if len(docs) < 4:
            raise LongappsError(f"self-supervised training needs at least 4 documents with 2+ sentence blocks, "
                                f"got {len(docs)}")
        train, dev = self._split(docs)
        per = self.config.masked_per_doc

        def collate(batch: list[Any]) -> dict:
            return {"docs": batch}

        def loss_fn(module: Any, batch: dict) -> torch.Tensor:
            vecs, mask = self._vectors(batch["docs"])
            dev_ = next(self.doc.parameters()).device
            vecs, mask = vecs.to(dev_), mask.to(dev_)
            rows, cols = choose_masked(mask.cpu(), per)
            return masked_block_loss(self.doc, vecs, mask, rows.to(dev_), cols.to(dev_))

        def evaluate(module: Any) -> float:
            g = torch.Generator().manual_seed(1234)  # the same masks every epoch
            hits = total = 0
            for s in range(0, len(dev), self.config.batch_size):
                vecs, mask = self._vectors(dev[s:s + self.config.batch_size])
                dev_ = next(self.doc.parameters()).device
                vecs, mask = vecs.to(dev_), mask.to(dev_)
                rows, cols = choose_masked(mask.cpu(), per, generator=g)
                if len(rows) < 2:
                    continue
                x = vecs.clone()
                x[rows, cols] = self.doc.mask_block.to(x.dtype)
                pred = torch.nn.functional.normalize(self.doc.predict(self.doc.hidden(x, mask)[rows, cols]), dim=-1)
                target = torch.nn.functional.normalize(vecs[rows, cols], dim=-1)
                hits += int((( pred @ target.T).argmax(1).cpu() == torch.arange(len(rows))).sum())
                total += len(rows)
            return hits / max(1, total)

        return self._fit("blocks", train, dev, collate, loss_fn, evaluate, out, "masked-block acc")

    def train_pairs(self, pairs: list[DocPair], out: Path, objective: str = "pairs",
                    dev_pairs: list[DocPair] | None = None) -> MatchTrainResult:
        """Siamese (objective 'pairs') or in-batch contrastive ('contrastive') fine-tuning on labelled pairs;
        the dev metric is computed on `dev_pairs` (default: a held-out share of `pairs`)."""
        import torch

        from longapps.models.smith import contrastive_loss, siamese_loss

        every = list(pairs) + list(dev_pairs or [])
        texts = list(dict.fromkeys([p.a for p in every] + [p.b for p in every]))
        row = {t: i for i, t in enumerate(texts)}
        data = self.block_data(texts)

        def usable(ps: Sequence[DocPair]) -> list[tuple[int, int, int]]:
            return [(row[p.a], row[p.b], int(p.label)) for p in ps if len(data[row[p.a]]) and len(data[row[p.b]])]

        items = usable(pairs)
        if dev_pairs:
            train, dev = items, usable(dev_pairs)
        else:
            train, dev = self._split(items)
        if objective == "contrastive":
            train = [it for it in train if it[2] == 1]
        if len(train) < 4 or not dev:
            raise LongappsError(f"pair training needs at least 4 usable training pairs and a dev pair, got "
                                f"{len(train)} and {len(dev)}")

        def collate(batch: list[tuple[int, int, int]]) -> dict:
            return {"a": [data[i] for i, _, _ in batch], "b": [data[j] for _, j, _ in batch],
                    "y": torch.tensor([y for _, _, y in batch], dtype=torch.float32)}

        def loss_fn(module: Any, batch: dict) -> torch.Tensor:
            ea, eb = self._embed_batch(batch["a"]), self._embed_batch(batch["b"])
            if objective == "contrastive":
                return contrastive_loss(ea, eb)
            return siamese_loss(self.doc, ea, eb, batch["y"].to(ea.device))

        def evaluate(module: Any) -> float:
            scores, labels = [], []
            for s in range(0, len(dev), self.config.batch_size):
                part = dev[s:s + self.config.batch_size]
                ea = self._embed_batch([data[i] for i, _, _ in part])
                eb = self._embed_batch([data[j] for _, j, _ in part])
                scores += (ea * eb).sum(-1).float().cpu().tolist()
                labels += [y for _, _, y in part]
            value = auc(scores, labels)
            return value if value == value else -float(np.mean(scores))  # no negatives: NaN -> a fallback

        return self._fit(objective, train, dev, collate, loss_fn, evaluate, out, "dev AUC")

    # -- the loop --------------------------------------------------------------------------------------
    def _split(self, items: list[Any]) -> tuple[list[Any], list[Any]]:
        rng = random.Random(self.config.seed)
        order = list(range(len(items)))
        rng.shuffle(order)
        n_dev = max(2, int(round(len(items) * self.config.dev_fraction)))
        if len(items) - n_dev < 2:
            raise LongappsError(f"too few examples ({len(items)}) for a train/dev split")
        return [items[i] for i in order[n_dev:]], [items[i] for i in order[:n_dev]]

    def _fit(self, objective: str, train: list[Any], dev: list[Any], collate: Any, loss_fn: Any, evaluate: Any,
             out: Path, metric: str) -> MatchTrainResult:
        from longapps.models.smith import save_smith
        from longapps.training import TrainConfig, fit, save_atomic

        cfg = self.config
        tc = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed,
                         patience=cfg.patience, time_budget_s=cfg.time_budget_s, device=cfg.device,
                         progress=cfg.progress, grad_checkpointing=False, warmup=0.1, eval_before=True)
        self.matcher.smith.objective = objective
        history: list[dict] = []

        def write(tmp: Path) -> None:
            save_smith(tmp, self.matcher.smith, self.doc, self.block_module)
            (tmp / "training.json").write_text(json.dumps({"objective": objective, "config": asdict(cfg),
                                                           "train": len(train), "dev": len(dev),
                                                           "history": history}, indent=1))

        res = fit(self.module, train, collate, tc, loss_fn=lambda m, b: loss_fn(m, b), evaluate=evaluate,
                  on_best=lambda m, v: save_atomic(out, write), metric_name=metric)
        history[:] = res.history
        self.module.cpu()
        save_atomic(out, write)  # the best weights (fit restored them) + the full history
        self.matcher.doc_encoder = self.doc.eval()
        return MatchTrainResult(objective, len(train), len(dev), res.steps, res.epochs, res.best_metric, res.stopped,
                                round(res.seconds, 1), res.history, str(out))


def train_match(corpus: str | Path | None, out: str | Path, config: MatchTrainConfig,
                pairs: list[DocPair] | None = None, dev_pairs: list[DocPair] | None = None) -> MatchTrainResult:
    """`longapps match-train`: self-supervised on `corpus` (no pairs), or fine-tuned on `pairs`."""
    objective = config.objective
    if objective == "auto":
        objective = "pairs" if pairs else "blocks"
    if objective not in OBJECTIVES:
        raise LongappsError(f"unknown objective '{objective}' (choose from {', '.join(OBJECTIVES)})")
    out = Path(out)
    trainer = SmithTrainer(config)
    if objective == "blocks":
        if corpus is None:
            raise LongappsError("self-supervised training needs --corpus DIR (a folder of documents)")
        if not Path(corpus).is_dir():
            raise LongappsError(f"corpus folder not found: {corpus}")
        docs = corpus_texts(corpus, trainer.matcher.max_doc_bytes, config.max_docs)
        return trainer.train_blocks(trainer.block_data([t for _, t in docs]), out)
    if not pairs:
        raise LongappsError(f"objective '{objective}' needs --pairs PAIRS.jsonl")
    return trainer.train_pairs(pairs, out, objective, dev_pairs)
