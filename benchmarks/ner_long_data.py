"""Build long NER documents (> 4,096 tokens) from real annotated text: NCBI-disease abstracts concatenated in
PMID order, separated by a blank line, gold offsets shifted exactly. Output: benchmarks/data/ner_long/SPLIT.jsonl.

    .venv/bin/python benchmarks/ner_long_data.py [--min-tokens 5000] [--splits train test]

Every document holds consecutive abstracts of one split until it reaches ``--min-tokens`` sub-tokens of the
default encoder's tokenizer (the split's remainder is appended to the last document unless it is over 4,096
tokens itself). Offsets are checked against the text after writing (read back with read_jsonl).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longapps.adapters.ner_formats import Document, Span, read_brat, read_jsonl, write_jsonl  # noqa: E402
from longapps.resources import default_encoder_path  # noqa: E402

NCBI = Path("/work/shared/data/ncbi-disease/standoff")
OUT = ROOT / "benchmarks" / "data" / "ner_long"


def concat(docs: list[Document], min_tokens: int, tokenizer, name: str, sep: str = "\n\n") -> list[Document]:
    """Consecutive documents joined with ``sep`` into documents of at least ``min_tokens`` tokens."""
    out: list[Document] = []
    parts: list[Document] = []
    ntok = 0

    groups: list[list[Document]] = []

    def build(group: list[Document]) -> Document:
        text, spans, pos = "", [], 0
        for k, d in enumerate(group):
            if k:
                text += sep
                pos += len(sep)
            text += d.text
            spans += [Span(s.start + pos, s.end + pos, s.label, s.text,
                           fragments=tuple((a + pos, b + pos) for a, b in s.fragments) if s.fragments else None)
                      for s in d.spans]
            pos += len(d.text)
        return Document(f"{name}-long-{len(out) + 1:02d}", text, spans)

    for d in docs:
        parts.append(d)
        ntok += len(tokenizer(d.text, add_special_tokens=False)["input_ids"]) + 1
        if ntok >= min_tokens:
            groups.append(parts)
            parts, ntok = [], 0
    if parts:  # the rest of the split: its own document when long enough, else appended to the last one
        if ntok > 4096 or not groups:
            groups.append(parts)
        else:
            groups[-1] = groups[-1] + parts
    for g in groups:
        out.append(build(g))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-tokens", type=int, default=5000)
    ap.add_argument("--splits", nargs="+", default=["train", "devel", "test"])
    args = ap.parse_args()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {}
    for split in args.splits:
        docs = concat(read_brat(NCBI / split), args.min_tokens, tok, split)
        path = OUT / f"{split}.jsonl"
        write_jsonl(docs, path)
        back = read_jsonl(path)  # re-validates every offset against the text
        lens = [len(tok(d.text, add_special_tokens=False)["input_ids"]) for d in back]
        summary[split] = {"documents": len(back), "spans": sum(len(d.spans) for d in back),
                          "tokens_min": min(lens), "tokens_max": max(lens), "tokens_total": sum(lens)}
        print(f"{split}: {json.dumps(summary[split])} -> {path}")
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
