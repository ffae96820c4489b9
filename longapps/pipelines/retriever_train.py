"""Train a Mamba retriever (``longapps retrieve-train``): prepare a training set, then fit with the shared loop.

Two stages, so the teacher work (CPU-friendly, cached) and the student training (GPU) can run apart:

1. ``prepare_training_set(corpus, folder, pairs=...)`` writes a folder: the documents, the training examples
   (query, positive document, one BM25-mined hard negative), a held-out dev split, the tokenizer and, for
   distillation, the teacher's query x document score matrix (MiniLM over every chunk of a document, the best
   chunk's cosine) and its word embeddings (a warm start for a fresh student of the same width).
   Without ``pairs`` the queries are pseudo-queries from the documents themselves: the title (first line),
   the first sentence of the body and held-out spans (sentences from the middle).
2. ``train_from_set(folder, out, config)``: in-batch contrastive InfoNCE over [positives | hard negatives]
   (duplicates of the positive masked), plus, with a teacher, KL(teacher || student) over the same in-batch
   documents; ``longapps.training.fit`` runs it (AdamW, warm-up, bf16 on CUDA, checkpointing, early stopping
   on the dev split's nDCG@10), and the best model is saved as an HF Mamba folder + tokenizer + retriever.json.
"""
from __future__ import annotations

import json
import math
import random
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from longapps.adapters.mamba_encode import RETRIEVER_FILE, embed_ids, pad_batch, tokenize
from longapps.resources import LongappsError

PRESETS = {"tiny": dict(hidden_size=64, num_hidden_layers=2, state_size=16),
           "small": dict(hidden_size=384, num_hidden_layers=6, state_size=16)}
SET_VERSION = 1


@dataclass
class RetrieverTrainConfig:
    init: str = "small"                 # preset (tiny | small) or a Mamba checkpoint folder / HF id
    teacher: Optional[str] = None       # None = packaged all-MiniLM-L6-v2
    pooling: str = "eos"
    max_tokens: int = 2048              # document tokens per training example
    query_tokens: int = 64
    inference_max_tokens: int = 8192    # written to retriever.json
    epochs: int = 3
    batch_size: int = 16
    lr: Optional[float] = None          # default 1e-3 for a fresh student, 5e-5 for a pretrained one
    max_steps: Optional[int] = None
    time_budget_s: Optional[float] = None
    patience: int = 2
    temperature: float = 0.05
    teacher_temperature: float = 0.05
    distill_weight: float = 1.0
    queries_per_doc: int = 3
    dev_fraction: float = 0.1
    device: str = "auto"
    seed: int = 0
    progress: bool = False
    save_dtype: str = "float32"         # float32 | bfloat16 | float16 (smaller files)
    grad_checkpointing: Optional[bool] = None  # None: on with CUDA (the shared loop's default)
    log_every: Optional[int] = None     # print "step N loss L" to stderr every N steps


# -- pseudo-queries ---------------------------------------------------------------------------------------

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(" ".join(text.split())) if len(s.strip()) > 20]


def pseudo_queries(text: str, rng: random.Random, n: int = 3) -> list[str]:
    """Queries a document answers, drawn from itself: its title (a short first line), the first sentence of
    the body, then held-out spans (sentences from the middle), each cut to 32 words."""
    out: list[str] = []
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and 8 <= len(lines[0]) <= 120:
        out.append(lines[0])
    body = "\n".join(lines[1:]) if out else text
    sents = sentences(body)
    if sents:
        out.append(sents[0])
    middle = sents[1:]
    rng.shuffle(middle)
    out.extend(middle[:max(0, n - len(out))])
    return [" ".join(q.split()[:32]) for q in out[:n]]


# -- preparing ----------------------------------------------------------------------------------------------

def _bm25_negatives(docs: Sequence[str], queries: Sequence[str], positives: Sequence[int], rng: random.Random) -> list[int]:
    """For each query, the best BM25 document that is not its positive (random when BM25 finds none)."""
    from longapps.index.lexical import BM25Index, tokenize as lex_tokenize

    bm25 = BM25Index().fit(lex_tokenize(d[:200_000]) for d in docs)
    out = []
    for q, pos in zip(queries, positives):
        s = bm25.scores(lex_tokenize(q))
        s[pos] = -np.inf
        best = int(np.argmax(s))
        out.append(best if np.isfinite(s[best]) and s[best] > 0 else rng.choice([i for i in range(len(docs)) if i != pos]))
    return out


def _read_pairs(path: Path, ids: dict[str, int]) -> list[tuple[str, int]]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise LongappsError(f"{path}:{n}: not JSON") from err
        q, d = obj.get("query"), str(obj.get("doc", obj.get("doc_id", "")))
        if not isinstance(q, str) or not q.strip():
            raise LongappsError(f"{path}:{n}: no 'query'")
        if d not in ids:
            raise LongappsError(f"{path}:{n}: document '{d}' is not in the corpus")
        out.append((q.strip(), ids[d]))
    if not out:
        raise LongappsError(f"no pairs in {path}")
    return out


def teacher_scores(encoder: Any, queries: Sequence[str], docs: Sequence[str], max_chunks: int = 64,
                   progress: bool = False) -> np.ndarray:
    """(n_queries, n_docs) teacher scores: the cosine of each query with the best chunk of each document
    (the teacher reads every document whole, chunk by chunk)."""
    from longapps.adapters.passages import chunk_passages
    from longapps.progress import Progress

    chunks = chunk_passages(list(docs), max_tokens=max(32, encoder.max_tokens - 16), max_chunks=max_chunks,
                            count_tokens=encoder.count_tokens)
    with Progress("teacher: encoding chunks", total=len(chunks.texts), enabled=progress) as bar:
        cvec = encoder.encode(chunks.texts, progress=bar.advance)
    qvec = encoder.encode(list(queries))
    out = np.full((len(queries), len(docs)), -1.0, dtype=np.float32)
    has = chunks.first >= 0
    starts = chunks.first[has]
    for s in range(0, len(queries), 256):
        sims = qvec[s:s + 256] @ cvec.T
        if len(starts):
            out[s:s + 256][:, has] = np.maximum.reduceat(sims, starts, axis=1)
    return out


def prepare_training_set(corpus: str | Path, folder: str | Path, *, pairs: Optional[str | Path] = None,
                         config: Optional[RetrieverTrainConfig] = None) -> Path:
    """Write the training set folder (see the module docstring); returns it."""
    from longapps.adapters.encode import load_encoder
    from longapps.pipelines.ranking import load_passages

    cfg = config or RetrieverTrainConfig()
    rng = random.Random(cfg.seed)
    docs, _ = load_passages(corpus)
    if len(docs) < 2:
        raise LongappsError("retrieve-train needs at least 2 documents")
    texts = [d.text for d in docs]
    if pairs is not None:
        labelled = _read_pairs(Path(pairs), {d.id: i for i, d in enumerate(docs)})
        queries, pos = [q for q, _ in labelled], [p for _, p in labelled]
    else:
        queries, pos = [], []
        for i, t in enumerate(texts):
            for q in pseudo_queries(t, rng, cfg.queries_per_doc):
                queries.append(q)
                pos.append(i)
        if not queries:
            raise LongappsError("no pseudo-queries could be drawn from the corpus (documents without sentences?)")
    neg = _bm25_negatives(texts, queries, pos, rng)
    order = list(range(len(queries)))
    rng.shuffle(order)
    n_dev = max(1, int(len(order) * cfg.dev_fraction)) if len(order) >= 10 else 0
    dev = set(order[:n_dev])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "docs.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "text": d.text}) + "\n")
    with open(folder / "examples.jsonl", "w") as f:
        for i, (q, p, n) in enumerate(zip(queries, pos, neg)):
            f.write(json.dumps({"query": q, "pos": p, "neg": n, "split": "dev" if i in dev else "train"}) + "\n")
    encoder = load_encoder(cfg.teacher, device=None if cfg.device == "auto" else cfg.device)
    inner = getattr(encoder, "inner", encoder)
    inner.tokenizer.save_pretrained(str(folder / "tokenizer"))
    meta = {"version": SET_VERSION, "mode": "pairs" if pairs is not None else "distill", "teacher": encoder.name,
            "documents": len(docs), "examples": len(queries), "dev": n_dev}
    if pairs is None:
        np.save(folder / "teacher.npy", teacher_scores(encoder, queries, texts, progress=cfg.progress).astype(np.float16),
                allow_pickle=False)
    emb = _teacher_word_embeddings(inner)
    if emb is not None:
        np.save(folder / "teacher_embeddings.npy", emb.astype(np.float16), allow_pickle=False)
    (folder / "set.json").write_text(json.dumps(meta))
    return folder


def _teacher_word_embeddings(encoder: Any) -> Optional[np.ndarray]:
    try:
        auto = encoder.transformer
        return auto.get_input_embeddings().weight.detach().float().cpu().numpy()
    except Exception:  # noqa: BLE001 - not a transformer sentence-transformers model
        return None


# -- training -----------------------------------------------------------------------------------------------

@dataclass
class TrainingSet:
    folder: Path
    docs: list[dict]
    examples: list[dict]
    teacher: Optional[np.ndarray]
    meta: dict

    @classmethod
    def load(cls, folder: str | Path) -> "TrainingSet":
        folder = Path(folder)
        try:
            meta = json.loads((folder / "set.json").read_text())
            docs = [json.loads(x) for x in _read_text(folder / "docs.jsonl").splitlines() if x]
            examples = [json.loads(x) for x in (folder / "examples.jsonl").read_text().splitlines() if x]
        except (OSError, ValueError) as err:
            raise LongappsError(f"{folder} is not a retriever training set ({type(err).__name__})") from err
        t = folder / "teacher.npy"
        return cls(folder, docs, examples, np.load(t, allow_pickle=False).astype(np.float32) if t.exists() else None,
                   meta)

    def split(self, name: str) -> list[tuple[int, dict]]:
        """The (index, example) pairs of one split ("train" or "dev")."""
        return [(i, e) for i, e in enumerate(self.examples) if e["split"] == name]


def _read_text(path: Path) -> str:
    """A text file, or its gzip copy ``path.gz`` (device bundles are compressed)."""
    if not path.exists() and Path(str(path) + ".gz").exists():
        import gzip

        with gzip.open(str(path) + ".gz", "rt", encoding="utf-8") as f:
            return f.read()
    return path.read_text()


def teacher_word_embeddings(set_folder: Path) -> Optional[np.ndarray]:
    """The teacher's word embeddings saved in a training set (fp32): ``teacher_embeddings.npy`` (full), or the
    compact ``teacher_embeddings.npz`` of a device bundle (the rows of the token ids that occur, int8 with a
    per-row scale; the other rows are zero: those tokens never occur in that corpus)."""
    full = set_folder / "teacher_embeddings.npy"
    if full.exists():
        return np.load(full, allow_pickle=False).astype(np.float32)
    part = set_folder / "teacher_embeddings.npz"
    if not part.exists():
        return None
    z = np.load(part, allow_pickle=False)
    emb = np.zeros(tuple(int(x) for x in z["shape"]), dtype=np.float32)
    emb[z["ids"]] = z["q"].astype(np.float32) * z["scale"]
    return emb


def build_student(cfg: RetrieverTrainConfig, tokenizer: Any, set_folder: Path) -> torch.nn.Module:
    """A preset (fresh; the teacher's word embeddings copied in when the widths match) or a checkpoint."""
    from longapps.models.mamba import MambaEncoder, mamba_config

    if cfg.init in PRESETS:
        torch.manual_seed(cfg.seed)
        conf = mamba_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id or 0,
                            eos_token_id=tokenizer.sep_token_id if tokenizer.eos_token_id is None else tokenizer.eos_token_id,
                            bos_token_id=tokenizer.cls_token_id or 0, **PRESETS[cfg.init])
        model = MambaEncoder.from_config(conf)
        emb = teacher_word_embeddings(set_folder)
        if emb is not None:
            if emb.shape == tuple(model.embeddings.weight.shape):
                with torch.no_grad():
                    model.embeddings.weight.copy_(torch.from_numpy(emb.astype(np.float32)))
        return model
    return MambaEncoder.from_pretrained(cfg.init)


class Collate:
    """Examples -> token tensors: queries, then [positives | hard negatives], the teacher's scores over those
    documents, and a mask of columns that are the query's own document (other than its target)."""

    def __init__(self, ts: TrainingSet, tokenizer: Any, cfg: RetrieverTrainConfig) -> None:
        self.ts, self.cfg = ts, cfg
        self.pad = int(tokenizer.pad_token_id or 0)
        self.doc_tokens = tokenize(tokenizer, [d["text"] for d in ts.docs], cfg.max_tokens)
        self.q_tokens = tokenize(tokenizer, [e["query"] for e in ts.examples], cfg.query_tokens)

    def __call__(self, items: list[tuple[int, dict]]) -> dict:
        qi = [i for i, _ in items]
        docs = [e["pos"] for _, e in items] + [e["neg"] for _, e in items]
        q_ids, q_len = pad_batch([self.q_tokens[i] for i in qi], self.pad)
        d_ids, d_len = pad_batch([self.doc_tokens[d] for d in docs], self.pad)
        docs_t = torch.tensor(docs)
        target = torch.arange(len(items))
        same = docs_t[None, :] == docs_t[:len(items), None]
        same[target, target] = False
        batch = {"q_ids": q_ids, "q_len": q_len, "d_ids": d_ids, "d_len": d_len, "same": same}
        if self.ts.teacher is not None:
            batch["teacher"] = torch.from_numpy(self.ts.teacher[np.asarray(qi)][:, np.asarray(docs)].copy())
        return batch


def retrieval_loss(model: torch.nn.Module, batch: dict, cfg: RetrieverTrainConfig) -> torch.Tensor:
    """InfoNCE over the in-batch documents (+ KL to the teacher's distribution when given)."""
    q = embed_ids(model, batch["q_ids"], batch["q_len"], cfg.pooling)
    d = embed_ids(model, batch["d_ids"], batch["d_len"], cfg.pooling)
    logits = (q @ d.T) / cfg.temperature
    logits = logits.masked_fill(batch["same"], -1e4)
    loss = F.cross_entropy(logits, torch.arange(len(q), device=q.device))
    if "teacher" in batch:
        t = batch["teacher"].float().masked_fill(batch["same"], -1e4) / cfg.teacher_temperature
        loss = loss + cfg.distill_weight * F.kl_div(F.log_softmax(logits, -1), F.log_softmax(t, -1),
                                                    log_target=True, reduction="batchmean")
    return loss


@torch.no_grad()
def encode_rows(model: torch.nn.Module, rows: Sequence[Sequence[int]], pad: int, pooling: str,
                tokens_per_batch: int = 65536) -> torch.Tensor:
    """Vectors for token rows (longest first, ~tokens_per_batch tokens a batch), in input order."""
    dev = next(model.parameters()).device
    out = torch.zeros(len(rows), model.config.hidden_size)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    s = 0
    while s < len(order):
        n = max(1, tokens_per_batch // len(rows[order[s]]))
        idx = order[s:s + n]
        ids, lengths = pad_batch([rows[i] for i in idx], pad, dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out[idx] = embed_ids(model, ids, lengths, pooling).float().cpu()
        s += n
    return out


def ndcg_at_10(scores: np.ndarray, relevant: Sequence[int]) -> float:
    """Mean nDCG@10 with one relevant document per query."""
    total = 0.0
    for s, rel in zip(scores, relevant):
        rank = int((s > s[rel]).sum())
        total += 1.0 / math.log2(rank + 2) if rank < 10 else 0.0
    return total / max(1, len(relevant))


# CPU training memory: the PyTorch scan keeps ~8 (d_inner x d_state) fp32 tensors per token of the layer being
# differentiated (measured: 4 short documents, batch 8, small preset: 5.7 GB peak with per-layer checkpointing;
# the defaults, 32 x 2,048 document tokens per step without it, were killed at 23 GB on a 24 GB box)
CPU_BYTES_PER_TOKEN_STATE = 4 * 8
CPU_MEMORY_FRACTION = 0.5


def _available_memory() -> int:
    """Bytes of memory available now (MemAvailable), or 8 GiB when it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 << 30


def fit_cpu_budget(cfg: RetrieverTrainConfig, d_inner: int, d_state: int, available: Optional[int] = None
                   ) -> tuple[RetrieverTrainConfig, Optional[str]]:
    """On CPU: per-layer gradient checkpointing, and document tokens per step (2 x batch x max_tokens) cut to fit
    half of the available memory -- max_tokens halved down to 256 first, then the batch down to 2. Returns the
    config to train with and a note when something was changed (None otherwise); raises when even the smallest
    setting does not fit."""
    per_token = d_inner * d_state * CPU_BYTES_PER_TOKEN_STATE
    budget = CPU_MEMORY_FRACTION * (available if available is not None else _available_memory())
    mt, bs = cfg.max_tokens, cfg.batch_size
    while 2 * bs * mt * per_token > budget and mt > 256:
        mt = max(256, mt // 2)
    while 2 * bs * mt * per_token > budget and bs > 2:
        bs = max(2, bs // 2)
    if 2 * bs * mt * per_token > budget:
        raise LongappsError(f"not enough memory to train this student on the CPU ({budget / 2**30:.1f} GiB usable, "
                            f"{2 * bs * mt * per_token / 2**30:.1f} GiB needed at batch {bs} x {mt} tokens): "
                            "use --device cuda or a smaller --init")
    new = RetrieverTrainConfig(**{**asdict(cfg), "max_tokens": mt, "batch_size": bs,
                                  "grad_checkpointing": True if cfg.grad_checkpointing is None else cfg.grad_checkpointing})
    note = None
    if (mt, bs) != (cfg.max_tokens, cfg.batch_size):
        note = (f"CPU training: batch {cfg.batch_size} x {cfg.max_tokens} document tokens would need "
                f"~{2 * cfg.batch_size * cfg.max_tokens * per_token / 2**30:.0f} GiB; using batch {bs} x {mt} tokens "
                f"(--batch-size / --max-tokens; a GPU trains the full setting)")
    return new, note


def train_from_set(set_folder: str | Path, out: str | Path, config: Optional[RetrieverTrainConfig] = None) -> dict:
    """Fit a student on a prepared set and save the best model to `out`; returns a report (JSON-able)."""
    from transformers import AutoTokenizer

    from longapps.training import TrainConfig, fit, resolve_device, save_atomic

    cfg = config or RetrieverTrainConfig()
    ts = TrainingSet.load(set_folder)
    tokenizer = AutoTokenizer.from_pretrained(str(Path(set_folder) / "tokenizer"))
    model = build_student(cfg, tokenizer, Path(set_folder))
    if resolve_device(cfg.device).type == "cpu" and model.layers:
        cfg, note = fit_cpu_budget(cfg, model.layers[0].mixer.d_inner, model.layers[0].mixer.n)
        if note:
            print(f"note: {note}", file=sys.stderr, flush=True)
    collate = Collate(ts, tokenizer, cfg)
    train, dev = ts.split("train"), ts.split("dev")
    if not train:
        raise LongappsError("the training set has no training examples")
    fresh = cfg.init in PRESETS
    tc = TrainConfig(epochs=cfg.epochs, lr=cfg.lr or (1e-3 if fresh else 5e-5), batch_size=cfg.batch_size,
                     warmup=0.05, seed=cfg.seed, patience=cfg.patience, device=cfg.device, max_steps=cfg.max_steps,
                     time_budget_s=cfg.time_budget_s, progress=cfg.progress, weight_decay=0.01,
                     grad_checkpointing=cfg.grad_checkpointing, log_every=cfg.log_every)

    def evaluate(m: torch.nn.Module) -> float:
        dvec = encode_rows(m, collate.doc_tokens, collate.pad, cfg.pooling)
        qvec = encode_rows(m, [collate.q_tokens[i] for i, _ in dev], collate.pad, cfg.pooling)
        return ndcg_at_10((qvec @ dvec.T).numpy(), [e["pos"] for _, e in dev])

    result = fit(model, train, collate, tc, loss_fn=lambda m, b: retrieval_loss(m, b, cfg),
                 evaluate=evaluate if dev else None, metric_name="ndcg@10")
    report = {"mode": ts.meta.get("mode"), "init": cfg.init, "steps": result.steps, "epochs": result.epochs,
              "best_dev_ndcg10": result.best_metric, "stopped": result.stopped, "seconds": round(result.seconds, 1),
              "history": result.history, "train_examples": len(train), "dev_examples": len(dev),
              "documents": len(ts.docs)}

    def write(tmp: Path) -> None:
        model.to("cpu", getattr(torch, cfg.save_dtype)).save_pretrained(tmp)
        tokenizer.save_pretrained(str(tmp))
        (tmp / RETRIEVER_FILE).write_text(json.dumps({
            "pooling": cfg.pooling, "max_tokens": cfg.inference_max_tokens, "train_max_tokens": cfg.max_tokens,
            "teacher": ts.meta.get("teacher"), "mode": ts.meta.get("mode"), "config": asdict(cfg) | {"progress": False},
            "best_dev_ndcg10": result.best_metric}, indent=1))

    save_atomic(out, write)
    return report


def train_retriever(corpus: str | Path, out: str | Path, *, pairs: Optional[str | Path] = None,
                    config: Optional[RetrieverTrainConfig] = None, set_folder: Optional[str | Path] = None) -> dict:
    """Prepare the training set (in a temp folder unless `set_folder`) and train; returns the report."""
    import tempfile

    cfg = config or RetrieverTrainConfig()
    if set_folder is not None:
        return train_from_set(prepare_training_set(corpus, set_folder, pairs=pairs, config=cfg), out, cfg)
    with tempfile.TemporaryDirectory(prefix="longapps-retrieve-train-") as tmp:
        return train_from_set(prepare_training_set(corpus, tmp, pairs=pairs, config=cfg), out, cfg)


__all__ = ["RetrieverTrainConfig", "prepare_training_set", "train_from_set", "train_retriever", "pseudo_queries",
           "retrieval_loss", "teacher_scores", "TrainingSet", "ndcg_at_10", "encode_rows"]
