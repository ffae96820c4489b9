"""SMITH on a GPU: encoding and end-to-end training throughput at 2,048 and 8,192 tokens per document.

Encoding = sentence blocks -> block encoder (fp16) -> document encoder (full attention at 64 blocks, the
sliding window of `longapps.attention` -- Triton on CUDA -- at 256 blocks). Training = the block encoder AND
the document encoder trained with the siamese loss (bf16 autocast, AdamW), the same step `match-train
--train-block-encoder` runs. Documents are real text (Python standard-library docstrings, concatenated).

Needs only torch, transformers, sentence-transformers (+ triton on CUDA); uses the packaged all-MiniLM-L6-v2
when installed, else a MiniLM-L6-shaped BERT with random weights (same FLOPs; throughput only).

    python benchmarks/match_gpu.py --json out.json                 # on the GPU machine
    python benchmarks/match_gpu.py --device cpu --docs 2 --steps 1 # smoke test
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longapps.adapters.chunk import sentence_blocks  # noqa: E402
from longapps.models.smith import (DocumentEncoder, SmithConfig, embed_blocks_trainable, pad_blocks,  # noqa: E402
                                   siamese_loss)


def block_encoder(device: str, random_weights: bool = False):
    """(SentenceTransformer, description): the packaged MiniLM, else a random MiniLM-shaped BERT."""
    from sentence_transformers import SentenceTransformer, models

    from longapps.resources import default_encoder_path

    path = default_encoder_path()
    if Path(path).exists() and not random_weights:
        return SentenceTransformer(path, device=device), "all-MiniLM-L6-v2 (packaged weights)"
    from tokenizers import Tokenizer, models as tm, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tmp = Path(tempfile.mkdtemp(prefix="minilm-shape-"))
    words = sorted({w.lower() for t in stdlib_texts(400) for w in t.split() if w.isalpha()})[:30000]
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)}
    tok = Tokenizer(tm.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(tmp)
    fast.save_pretrained(tmp)
    word = models.Transformer(str(tmp), max_seq_length=34)
    st = SentenceTransformer(modules=[word, models.Pooling(384, "mean"), models.Normalize()], device=device)
    return st, "MiniLM-L6 shape, random weights (packaged weights not installed)"


def stdlib_texts(n: int) -> list[str]:
    """Docstrings of standard-library modules, one text per module."""
    out = []
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = [ast.get_docstring(x) for x in ast.walk(tree)
                if isinstance(x, (ast.Module, ast.ClassDef, ast.FunctionDef))]
        text = "\n\n".join(d for d in docs if d)
        if len(text) > 2000:
            out.append(text)
        if len(out) >= n:
            break
    return out


def make_docs(st, n_docs: int, max_blocks: int) -> list[list[str]]:
    """n_docs documents of exactly max_blocks sentence blocks of <= 32 tokens each (real text)."""
    tok = st.tokenizer
    count = lambda texts: [len(x) for x in tok(list(texts), add_special_tokens=False)["input_ids"]]  # noqa: E731
    pool = "\n\n".join(stdlib_texts(300))
    blocks, _ = sentence_blocks(pool, block_tokens=32, max_blocks=n_docs * max_blocks * 2, count_tokens=count)
    texts = [b.text for b in blocks]
    return [texts[i * max_blocks:(i + 1) * max_blocks] for i in range(n_docs)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def encode_throughput(st, doc_model, docs: list[list[str]], device: str, batch_blocks: int) -> dict:
    tokens = sum(len(x) + 2 for d in docs for x in st.tokenizer([b for b in d])["input_ids"])
    flat = [b for d in docs for b in d]

    def run() -> None:
        with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=torch.float16,
                                             enabled=device.startswith("cuda")):
            vecs = st.encode(flat, batch_size=batch_blocks, convert_to_tensor=True, show_progress_bar=False)
            per = [vecs[i * len(docs[0]):(i + 1) * len(docs[0])].float() for i in range(len(docs))]
            v, m = pad_blocks([p.cpu() for p in per], vecs.shape[-1])
            doc_model(v.to(device), m.to(device))
    run()  # warm-up (kernels compiled, caches filled)
    sync(device)
    t = time.perf_counter()
    run()
    sync(device)
    dt = time.perf_counter() - t
    return {"docs": len(docs), "tokens": tokens, "seconds": round(dt, 3), "tokens_per_s": round(tokens / dt),
            "docs_per_s": round(len(docs) / dt, 2)}


def train_throughput(st, doc_model, docs: list[list[str]], device: str, steps: int) -> dict:
    """End-to-end siamese steps: pairs (doc i, doc i+1), block encoder + document encoder trained."""
    params = list(st.parameters()) + list(doc_model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5)
    st.train()
    doc_model.train()
    half = len(docs) // 2
    y = torch.tensor([1.0, 0.0] * (half // 2 + 1))[:half].to(device)
    amp = device.startswith("cuda")

    def embed(group: list[list[str]]) -> torch.Tensor:
        emb = embed_blocks_trainable(st, [b for d in group for b in d], device).float()
        n = len(group[0])
        vecs = emb.view(len(group), n, -1)
        mask = torch.ones(len(group), n, dtype=torch.bool, device=device)
        return doc_model(vecs, mask)

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            loss = siamese_loss(doc_model, embed(docs[:half]), embed(docs[half:2 * half]), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    dt = time.perf_counter() - t
    tokens = steps * sum(len(x) + 2 for d in docs[:2 * half] for x in st.tokenizer(d)["input_ids"])
    mem = torch.cuda.max_memory_allocated() / 2**30 if amp else 0.0
    return {"docs_per_step": 2 * half, "steps": steps, "seconds": round(dt, 3),
            "tokens_per_s": round(tokens / dt), "docs_per_s": round(steps * 2 * half / dt, 2),
            "peak_gib": round(mem, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--docs", type=int, default=64, help="documents for encoding at 2,048 tokens (1/4 at 8,192)")
    ap.add_argument("--train-docs", type=int, default=16, help="documents per training step at 2,048 tokens")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-blocks", type=int, default=1024)
    ap.add_argument("--random-weights", action="store_true", help="MiniLM-shaped BERT with random weights")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    st, desc = block_encoder(args.device, args.random_weights)
    st.max_seq_length = 34
    out = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
           "block_encoder": desc, "torch": torch.__version__, "encode": {}, "train": {}}
    for tokens, blocks in [(2048, 64), (8192, 256)]:
        cfg = SmithConfig(max_blocks=blocks, dropout=0.0)
        doc_model = DocumentEncoder(cfg).to(args.device).eval()
        n_enc = max(2, args.docs * 2048 // tokens)
        docs = make_docs(st, n_enc, blocks)
        st.eval()
        out["encode"][tokens] = encode_throughput(st, doc_model, docs, args.device, args.batch_blocks) | {
            "attention": type(doc_model.pattern(blocks)).__name__}
        n_train = max(2, args.train_docs * 2048 // tokens)
        out["train"][tokens] = train_throughput(st, doc_model, docs[:n_train] if len(docs) >= n_train
                                                else make_docs(st, n_train, blocks), args.device, args.steps)
        print(f"{tokens} tokens/doc: encode {out['encode'][tokens]}, train {out['train'][tokens]}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
