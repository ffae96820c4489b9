"""SMITH: a hierarchical siamese encoder for long documents (Yang et al., 2020), in PyTorch.

    document -> sentence blocks (adapters.chunk.sentence_blocks)
             -> block encoder (a sentence-transformers / HF encoder, default the packaged all-MiniLM-L6-v2)
             -> document encoder: `layers` transformer layers over the block vectors + block position embeddings
                (full attention up to `dense_blocks` blocks, a sliding window on longapps.attention beyond)
             -> masked mean over blocks -> dense -> L2 norm          (matching score = cosine)

Initialisation: the document layers' output projections, the position embeddings and the dense layer start as
zero / identity, so an untrained SMITH is exactly "mean of the block vectors" (a sensible baseline that
training improves on, instead of random vectors). Training objectives live here as plain functions:
`masked_block_loss` (SMITH's masked sentence-block prediction), `siamese_loss` (scaled cosine + sigmoid
cross-entropy) and `contrastive_loss` (in-batch InfoNCE).

A saved model is a folder: `smith.json` (config), `doc_encoder.safetensors`, and `block_encoder/` when the
block encoder was fine-tuned (otherwise smith.json names it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from longapps.resources import ModelNotFoundError

FORMAT = "longapps-smith"
CONFIG_FILE = "smith.json"
WEIGHTS_FILE = "doc_encoder.safetensors"
BLOCK_DIR = "block_encoder"


@dataclass
class SmithConfig:
    """Everything that decides the architecture and the blocking (saved as smith.json)."""

    block_encoder: str = "default"    # HF / sentence-transformers id or folder; "default" = packaged MiniLM
    block_tokens: int = 32            # tokens per sentence block
    max_blocks: int = 64              # blocks per document (64 x 32 = 2,048 tokens); later blocks are dropped
    dense_blocks: int = 64            # up to this many blocks: full attention; beyond: sliding window
    window: int = 32                  # sliding-window half width (in blocks) for longer documents
    layers: int = 3
    heads: int = 6
    ffn: int = 1536
    dim: int = 384                    # block vector size (set from the block encoder)
    out_dim: int = 384                # document vector size (== dim: the dense layer starts as identity)
    max_positions: int = 1024         # block position embeddings (the largest max_blocks)
    dropout: float = 0.1
    block_key: str = ""               # embedding-cache key of the block encoder (set when it is fine-tuned)
    objective: str = ""               # what it was trained with: "" (untrained) | "blocks" | "pairs" | "contrastive"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SmithConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class DocumentLayer(nn.Module):
    """A pre-LayerNorm transformer layer whose attention runs on `longapps.attention` (any pattern)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff1, self.ff2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.drop = nn.Dropout(dropout)
        for lin in (self.out, self.ff2):  # residual branches start at zero: the layer starts as identity
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pattern: Any) -> torch.Tensor:
        from longapps.attention import attention
        from longapps.attention.patterns import Full

        B, N, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        backend = "sdpa" if isinstance(pattern, Full) and not q.is_cuda else "auto"
        a = attention(q, k, v, pattern, key_padding_mask=mask, backend=backend)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(B, N, D)))
        return x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.norm2(x))))))


class DocumentEncoder(nn.Module):
    """Block vectors (B, N, dim) + padding mask (B, N) -> document vectors (B, out_dim), unit length."""

    def __init__(self, cfg: SmithConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos = nn.Embedding(cfg.max_positions, cfg.dim)
        nn.init.zeros_(self.pos.weight)
        self.layers = nn.ModuleList(DocumentLayer(cfg.dim, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.layers))
        self.dense = nn.Linear(cfg.dim, cfg.out_dim)
        with torch.no_grad():
            self.dense.weight.copy_(torch.eye(cfg.out_dim, cfg.dim))
            self.dense.bias.zero_()
        # training-only parts: the [MASK] block, the masked-block prediction head, the pair classifier
        self.mask_block = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.predict = nn.Linear(cfg.dim, cfg.dim)
        self.logit_scale = nn.Parameter(torch.tensor(10.0))
        self.logit_bias = nn.Parameter(torch.tensor(-5.0))

    def pattern(self, n_blocks: int) -> Any:
        """Full attention for documents of up to `dense_blocks` blocks, a sliding window beyond."""
        from longapps.attention.patterns import Full, SlidingWindow

        return Full() if n_blocks <= self.cfg.dense_blocks else SlidingWindow(window=self.cfg.window)

    def hidden(self, vecs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Contextual block states (B, N, dim)."""
        B, N, _ = vecs.shape
        if N > self.cfg.max_positions:
            raise ValueError(f"{N} blocks exceed max_positions={self.cfg.max_positions}")
        x = F.normalize(vecs, dim=-1) + self.pos(torch.arange(N, device=vecs.device))[None]
        pattern = self.pattern(N)
        for layer in self.layers:
            x = layer(x, mask, pattern)
        return x

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked mean over blocks -> dense -> L2 norm (documents without blocks give zero vectors)."""
        m = mask.to(h.dtype)[..., None]
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        out = F.normalize(self.dense(mean), dim=-1)
        return out * (mask.any(1, keepdim=True)).to(out.dtype)

    def forward(self, vecs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(self.hidden(vecs, mask), mask)


# -- batching ------------------------------------------------------------------------------------

def embed_blocks_trainable(st: nn.Module, texts: Sequence[str], device: torch.device | str) -> torch.Tensor:
    """Block vectors (n, dim) from a SentenceTransformer module WITH gradients (end-to-end training)."""
    prep = getattr(st, "preprocess", None) or st.tokenize
    feats = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in prep(list(texts)).items()}
    return st(feats)["sentence_embedding"]



def pad_blocks(docs: Sequence[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-document block matrices (n_i, dim) into (B, N, dim) + a bool mask (True = real block)."""
    n = max([len(d) for d in docs] + [1])
    vecs = torch.zeros(len(docs), n, dim)
    mask = torch.zeros(len(docs), n, dtype=torch.bool)
    for i, d in enumerate(docs):
        vecs[i, :len(d)] = torch.as_tensor(d, dtype=torch.float32)
        mask[i, :len(d)] = True
    return vecs, mask


# -- training objectives ------------------------------------------------------------------------

def choose_masked(mask: torch.Tensor, per_doc: int = 2, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick `per_doc` distinct real blocks of each document to mask (fewer when a document has fewer than
    per_doc + 1 blocks: one block is always left visible; one-block documents mask nothing).
    Returns (doc index, block index) tensors of the masked blocks."""
    rows, cols = [], []
    lengths = mask.sum(1).tolist()
    for b, n in enumerate(lengths):
        k = min(per_doc, int(n) - 1)
        if k <= 0:
            continue
        pick = torch.randperm(int(n), generator=generator)[:k]
        rows += [b] * k
        cols += pick.tolist()
    return torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)


def masked_block_loss(model: DocumentEncoder, vecs: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                      cols: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """SMITH's masked sentence-block prediction: the chosen blocks are replaced by the [MASK] block, and each
    masked position must pick its own original block among all masked blocks of the batch
    (softmax over cosine / temperature)."""
    if len(rows) < 2:
        return vecs.sum() * 0.0 + model.mask_block.sum() * 0.0  # nothing to contrast against
    x = vecs.clone()
    x[rows, cols] = model.mask_block.to(x.dtype)
    h = model.hidden(x, mask)
    pred = F.normalize(model.predict(h[rows, cols]), dim=-1)
    target = F.normalize(vecs[rows, cols], dim=-1)
    logits = pred @ target.T / temperature
    return F.cross_entropy(logits, torch.arange(len(rows), device=logits.device))


def pair_logits(model: DocumentEncoder, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Scaled cosine + bias of document vector pairs (rows of a and b)."""
    return model.logit_scale * (a * b).sum(-1) + model.logit_bias


def siamese_loss(model: DocumentEncoder, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SMITH's fine-tuning loss: sigmoid cross-entropy on the scaled cosine of each pair."""
    return F.binary_cross_entropy_with_logits(pair_logits(model, a, b), labels.to(a.dtype))


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """In-batch InfoNCE for positive pairs (a_i, b_i): each a_i must pick b_i among the batch's b (and back)."""
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


# -- save / load -------------------------------------------------------------------------------

def save_smith(folder: Path, cfg: SmithConfig, doc: DocumentEncoder, block_module: nn.Module | None = None) -> None:
    """Write a model folder's files into `folder` (the caller makes it atomic: training.save_atomic)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = SmithConfig.from_json(cfg.to_json())
    if block_module is not None:
        block_module.save(str(folder / BLOCK_DIR))
        weights = sorted((folder / BLOCK_DIR).rglob("*.safetensors"))
        h = hashlib.sha1()
        for w in weights:
            h.update(w.read_bytes())
        cfg.block_encoder, cfg.block_key = BLOCK_DIR, h.hexdigest()[:16]
    save_file({k: v.detach().cpu().contiguous() for k, v in doc.state_dict().items()}, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(cfg.to_json(), indent=1))


def read_config(folder: str | Path) -> SmithConfig:
    """smith.json of a model folder, with one clear line when the folder is not a (whole) SMITH model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelNotFoundError(f"model folder not found: {folder}")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"not a SMITH model folder: {folder} has no {CONFIG_FILE} "
                                 "(train one with `longapps match-train`)")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        cfg = SmithConfig.from_json(data)
        if cfg.dim % cfg.heads or cfg.max_blocks > cfg.max_positions or cfg.block_tokens < 4:
            raise ValueError("inconsistent sizes")
    except (ValueError, TypeError, AttributeError) as err:
        raise ModelNotFoundError(f"corrupt model folder {folder}: {CONFIG_FILE}: {err}") from err
    return cfg


def load_doc_encoder(folder: str | Path, cfg: SmithConfig) -> DocumentEncoder:
    """The document encoder's weights from a model folder (one clear line if missing or damaged)."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    model = DocumentEncoder(cfg)
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except FileNotFoundError as err:
        raise ModelNotFoundError(f"corrupt model folder {folder}: {WEIGHTS_FILE} is missing") from err
    except Exception as err:  # noqa: BLE001 - truncated file, wrong shapes, missing keys
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ModelNotFoundError(f"corrupt model folder {folder}: {WEIGHTS_FILE}: {detail}") from err
    return model.eval()


def block_encoder_path(folder: str | Path, cfg: SmithConfig) -> str:
    """Where the block encoder of a saved model is: its own sub-folder when fine-tuned, else the named model."""
    if cfg.block_encoder == BLOCK_DIR:
        path = Path(folder) / BLOCK_DIR
        if not path.is_dir():
            raise ModelNotFoundError(f"corrupt model folder {folder}: {BLOCK_DIR}/ is missing")
        return str(path)
    return cfg.block_encoder


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["SmithConfig", "DocumentEncoder", "DocumentLayer", "pad_blocks", "embed_blocks_trainable", "choose_masked", "masked_block_loss",
           "pair_logits", "siamese_loss", "contrastive_loss", "save_smith", "read_config", "load_doc_encoder",
           "block_encoder_path"]
