"""The NER device bundle (the device has no /work/shared and no packaged MiniLM): NCBI-disease train/devel/test
as JSONL, the long sets (> 4,096 tokens, ``ner_long_data.concat``) and a compact copy of the default encoder
(the packaged all-MiniLM-L6-v2) that fits the 20 MiB carry:

- word-embedding rows only for the token ids that occur in the bundle's texts (+ the special tokens); every
  text the device reads is in the bundle, so the dropped rows are never looked up (restored as zeros);
- 2-D weights (linear layers, embeddings) in int8 with one fp16 scale per 64 weights (group-wise absmax);
  biases / LayerNorm / position embeddings in fp16 (position rows: 512 x 384).

``build`` (CPU, here) writes benchmarks/data/ner_s7/ and checks the restored encoder against the original on
NCBI test text (hidden-state relative error, printed and stored in bundle.json). ``restore`` (device) writes an
ordinary HF folder (config, model.safetensors fp32, tokenizer) that ``--model`` accepts.

    .venv/bin/python benchmarks/ner_device_data.py build [--out benchmarks/data/ner_s7]
    python benchmarks/ner_device_data.py restore benchmarks/data/ner_s7 /tmp/minilm
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

NCBI = Path("/work/shared/data/ncbi-disease/standoff")
GROUP = 64
TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _quant(w):
    """int8 values + fp16 scales, one scale per GROUP consecutive weights of a row."""
    import torch

    rows, cols = w.shape
    g = w.float().reshape(rows, cols // GROUP, GROUP)
    scale = (g.abs().amax(-1, keepdim=True) / 127.0).clamp_min(1e-12)
    q = torch.round(g / scale).clamp(-127, 127).to(torch.int8)
    return q.reshape(rows, cols), scale.squeeze(-1).half()


def _dequant(q, scale):
    import torch

    rows, cols = q.shape
    return (q.reshape(rows, cols // GROUP, GROUP).float() * scale.float()[..., None]).reshape(rows, cols).to(torch.float32)


def compact_state(model_dir: Path, keep_ids) -> dict:
    """The compact encoder: {name: tensor | (int8, scales)} + the kept word-embedding rows."""
    import torch
    from safetensors.torch import load_file

    sd = load_file(str(model_dir / "model.safetensors"))
    out = {"__keep_ids__": torch.as_tensor(sorted(keep_ids), dtype=torch.int32)}
    for name, t in sd.items():
        if name.endswith("word_embeddings.weight"):
            out["__vocab__"] = torch.tensor(t.shape[0])
            t = t[out["__keep_ids__"].long()]
        if t.dim() == 2 and t.shape[1] % GROUP == 0 and "position_embeddings" not in name and t.shape[0] > 2:
            q, s = _quant(t)
            out[name + "::q"], out[name + "::s"] = q, s
        elif t.is_floating_point():
            out[name] = t.half()
        else:
            out[name] = t
    return out


def restore_state(c: dict) -> dict:
    """The fp32 state dict (original names and shapes) from ``compact_state``'s output."""
    import torch

    sd = {}
    for name, t in c.items():
        if name.startswith("__") or name.endswith("::s"):
            continue
        if name.endswith("::q"):
            base = name[:-3]
            w = _dequant(t, c[base + "::s"])
        else:
            base, w = name, (t.float() if t.is_floating_point() else t)
        if base.endswith("word_embeddings.weight"):
            full = torch.zeros(int(c["__vocab__"]), w.shape[1])
            full[c["__keep_ids__"].long()] = w
            w = full
        sd[base] = w.contiguous()
    return sd


def restore(bundle: Path, dest: Path) -> Path:
    """Write an HF folder of the encoder kept in ``bundle`` to ``dest`` (overwrites it)."""
    import torch
    from safetensors.torch import save_file

    c = torch.load(bundle / "minilm" / "compact.pt", map_location="cpu")
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(bundle / "minilm" / name, dest / name)
    save_file(restore_state(c), str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def _hidden_error(orig: Path, restored: Path, texts: list[str]) -> dict:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(orig))
    a = AutoModel.from_pretrained(str(orig)).eval()
    b = AutoModel.from_pretrained(str(restored)).eval()
    errs, cos = [], []
    with torch.inference_mode():
        for t in texts:
            x = tok(t, return_tensors="pt", truncation=True, max_length=512)
            ha, hb = a(**x).last_hidden_state, b(**x).last_hidden_state
            errs.append(float((ha - hb).norm() / ha.norm()))
            cos.append(float(torch.nn.functional.cosine_similarity(ha[0], hb[0], dim=-1).min()))
    return {"texts": len(texts), "hidden_rel_l2_max": max(errs), "hidden_rel_l2_mean": sum(errs) / len(errs),
            "token_cosine_min": min(cos)}


def build(out: Path, min_tokens: int = 5000) -> dict:
    """NCBI JSONL + long sets + compact MiniLM under ``out``; returns the summary (also bundle.json)."""
    from transformers import AutoTokenizer

    from longapps.adapters.ner_formats import read_brat, read_jsonl, write_jsonl
    from longapps.resources import default_encoder_path
    from ner_long_data import concat

    model_dir = Path(default_encoder_path())
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"source": str(NCBI), "sets": {}}
    keep = set(tok.all_special_ids)
    for split in ("train", "devel", "test"):
        docs = read_brat(NCBI / split)
        write_jsonl(docs, out / f"ncbi_{split}.jsonl")
        long = concat(docs, min_tokens, tok, split)
        write_jsonl(long, out / f"long_{split}.jsonl")
        for name in (f"ncbi_{split}", f"long_{split}"):
            back = read_jsonl(out / f"{name}.jsonl")  # re-validates every offset
            lens = [len(tok(d.text, add_special_tokens=False)["input_ids"]) for d in back]
            summary["sets"][name] = {"documents": len(back), "spans": sum(len(d.spans) for d in back),
                                     "tokens_min": min(lens), "tokens_max": max(lens), "tokens_total": sum(lens)}
        for d in docs:
            keep.update(tok(d.text, add_special_tokens=True)["input_ids"])
    import torch

    mdir = out / "minilm"
    mdir.mkdir(exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(model_dir / name, mdir / name)
    torch.save(compact_state(model_dir, keep), mdir / "compact.pt")
    restored = restore(out, Path("/tmp") / "ner_s7_minilm_check")
    test = read_jsonl(out / "ncbi_test.jsonl")
    summary["encoder"] = {"kept_vocab_rows": len(keep), "group": GROUP,
                          "check_vs_original": _hidden_error(model_dir, restored, [d.text for d in test[:40]])}
    summary["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    (out / "bundle.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", default=str(ROOT / "benchmarks" / "data" / "ner_s7"))
    b.add_argument("--min-tokens", type=int, default=5000)
    r = sub.add_parser("restore")
    r.add_argument("bundle")
    r.add_argument("dest")
    a = ap.parse_args()
    if a.cmd == "build":
        print(json.dumps(build(Path(a.out), a.min_tokens), indent=1))
    else:
        print(restore(Path(a.bundle), Path(a.dest)))


if __name__ == "__main__":
    main()
