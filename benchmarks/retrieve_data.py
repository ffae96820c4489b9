"""Build the long-document retrieval dev set from real material on this machine (not the manual pages).

Known-item queries written by the documents' authors, each answered by one long document:
- Python packages installed here: query = the package's one-line ``Summary`` (METADATA), document = its long
  description (the README), with the summary sentence removed wherever it occurs verbatim;
- CMake's reference (Help/command, policy, prop_tgt, variable, module .rst): query = the first sentence of the
  page's body, document = the page with that sentence removed (title kept: it is the command's name).
Distractors (documents no query points to): Vim's help files, npm packages' READMEs.

    python benchmarks/retrieve_data.py            # -> benchmarks/data/retrieve/{corpus,queries}.jsonl
    python benchmarks/retrieve_data.py --bundle benchmarks/data/mamba_dev   # + a copy for the GPU device:
        documents cut to 60k characters, the distillation set and the teacher's eval vectors computed here
        (MiniLM on the CPU), so the device needs neither the teacher nor bm25s (see ``bundle``)

Documents shorter than 1,500 characters are left out (the set is about long documents).
"""
from __future__ import annotations

import argparse
import email
import glob
import json
import re
from pathlib import Path

MIN_CHARS = 1500
METADATA_GLOBS = ["/root/.pyenv/versions/*/lib/python3*/site-packages/*.dist-info/METADATA",
                  "/usr/lib/python3/dist-packages/*.dist-info/METADATA",
                  "/usr/local/lib/python3*/dist-packages/*.dist-info/METADATA",
                  str(Path(__file__).resolve().parents[1] / ".venv/lib/python3*/site-packages/*.dist-info/METADATA")]
CMAKE_DIRS = ["command", "policy", "prop_tgt", "variable", "module", "prop_dir", "prop_sf", "envvar"]


def _remove(text: str, sentence: str) -> str:
    return text.replace(sentence, " ") if sentence else text


def python_packages() -> list[tuple[str, str, str]]:
    """(doc id, query, text) per installed package with a long description."""
    out, seen = [], set()
    for f in sorted(set(p for g in METADATA_GLOBS for p in glob.glob(g))):
        msg = email.message_from_string(Path(f).read_text(errors="replace"))
        name = (msg.get("Name") or "").strip().lower()
        summary = " ".join((msg.get("Summary") or "").split())
        body = msg.get_payload() if isinstance(msg.get_payload(), str) else ""
        body = body or msg.get("Description") or ""
        if not name or name in seen or len(summary) < 15 or summary.upper() == "UNKNOWN":
            continue
        text = _remove(body, summary).strip()
        if len(text) < MIN_CHARS:
            continue
        seen.add(name)
        out.append((f"pypi/{name}", summary, text))
    return out


def _first_sentence(body: str) -> str:
    """First sentence of the first prose paragraph (skipping directives, titles, code and lists)."""
    for para in re.split(r"\n\s*\n", body):
        p = para.strip()
        if not p or p.startswith((".. ", "::", "*", "-", "#", "=", "``", "|")) or re.fullmatch(r"[-=~^*#]+", p):
            continue
        if "\n" in p and re.fullmatch(r"[-=~^*#]+", p.splitlines()[-1].strip()):
            continue  # a title with its underline
        sent = re.split(r"(?<=[.!?])\s", " ".join(p.split()), maxsplit=1)[0]
        if 25 <= len(sent) <= 300:
            return sent
        return ""
    return ""


def cmake_pages() -> list[tuple[str, str, str]]:
    roots = sorted(glob.glob("/usr/share/cmake-*/Help"))
    if not roots:
        return []
    root = Path(roots[-1])
    out = []
    for sub in CMAKE_DIRS:
        for f in sorted((root / sub).glob("*.rst")):
            text = f.read_text(errors="replace")
            if len(text) < MIN_CHARS:
                continue
            lines = text.splitlines()
            body = "\n".join(lines[2:]) if len(lines) > 2 and re.fullmatch(r"[-=~^*#]+", lines[1].strip()) else text
            q = _first_sentence(body)
            if not q:
                continue
            flat = " ".join(text.split())
            out.append((f"cmake/{sub}/{f.stem}", q, flat.replace(q, " ", 1)))
    return out


def distractors() -> list[tuple[str, str]]:
    out = []
    for f in sorted(glob.glob("/usr/share/vim/vim*/doc/*.txt")):
        t = Path(f).read_text(errors="replace")
        if len(t) >= MIN_CHARS:
            out.append((f"vim/{Path(f).stem}", t))
    for f in sorted(glob.glob("/usr/lib/node_modules/**/README.md", recursive=True)):
        t = Path(f).read_text(errors="replace")
        if len(t) >= MIN_CHARS and "/node_modules/" not in f[len("/usr/lib/node_modules/"):]:
            out.append((f"npm/{Path(f).parent.name}", t))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "data" / "retrieve"))
    ap.add_argument("--bundle", help="also write a device bundle here (see the module docstring)")
    ap.add_argument("--queries-per-doc", type=int, default=8, help="pseudo-queries per document (bundle)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    known = python_packages() + cmake_pages()
    docs = [(i, t) for i, _, t in known] + distractors()
    ids = set()
    with open(out / "corpus.jsonl", "w") as f:
        for i, t in docs:
            if i in ids:
                continue
            ids.add(i)
            f.write(json.dumps({"id": i, "text": t}) + "\n")
    with open(out / "queries.jsonl", "w") as f:
        for n, (i, q, _) in enumerate(known):
            f.write(json.dumps({"id": f"q{n}", "query": q, "doc": i}) + "\n")
    print(f"{len(ids)} documents ({len(known)} with a query), {len(known)} queries -> {out}")
    if args.bundle:
        bundle(out, Path(args.bundle), queries_per_doc=args.queries_per_doc)


def bundle(src: Path, dst: Path, max_chars: int = 60_000, queries_per_doc: int = 8) -> None:
    """Device copy, small enough to carry (< 20 MiB) because every teacher (MiniLM) computation is done here:

    - ``corpus.jsonl.gz`` (documents cut to `max_chars`) and ``queries.jsonl``;
    - ``set/``: the distillation training set (``prepare_training_set``: pseudo-queries, BM25 hard negatives,
      the teacher's best-chunk score matrix, its tokenizer) with ``docs.jsonl.gz`` and the teacher's word
      embeddings only for the token ids that occur in the corpus/queries, int8 with a per-row scale
      (``teacher_embeddings.npz``: the student's warm start);
    - ``eval.npz``: the teacher's vectors (first 256 / 512 tokens, queries), its best-chunk scores for the dev
      queries, BM25 scores and each document's length in teacher tokens (``retrieve_eval.py --data`` reads them).
    """
    import gzip
    import os
    import time

    import numpy as np

    from longapps.adapters.encode import load_encoder
    from longapps.index.lexical import BM25Index, tokenize
    from longapps.pipelines.retriever_train import RetrieverTrainConfig, prepare_training_set, teacher_scores

    t0 = time.perf_counter()
    dst.mkdir(parents=True, exist_ok=True)
    docs = [json.loads(x) for x in open(src / "corpus.jsonl")]
    docs = [{"id": d["id"], "text": d["text"][:max_chars]} for d in docs]
    queries = [json.loads(x) for x in open(src / "queries.jsonl")]
    plain = dst / "corpus.jsonl"
    with open(plain, "w") as fo:
        fo.writelines(json.dumps(d) + "\n" for d in docs)
    (dst / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    set_dir = dst / "set"
    prepare_training_set(plain, set_dir, config=RetrieverTrainConfig(queries_per_doc=queries_per_doc, device="cpu",
                                                                       progress=True))
    print(f"training set prepared in {time.perf_counter() - t0:.0f} s", flush=True)
    set_docs = [json.loads(x) for x in open(set_dir / "docs.jsonl")]
    if [d["id"] for d in set_docs] != [d["id"] for d in docs]:
        raise SystemExit("the training set's documents are not the corpus in order")
    _gzip(set_dir / "docs.jsonl")
    _gzip(plain)
    # the student's warm start: the teacher's word embeddings of the token ids that occur, int8 per row
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(set_dir / "tokenizer"))
    used = {tok.pad_token_id, tok.sep_token_id, tok.cls_token_id, tok.unk_token_id} - {None}
    ex = [json.loads(x) for x in open(set_dir / "examples.jsonl")]
    for ids in tok([d["text"] for d in docs] + [q["query"] for q in queries] + [e["query"] for e in ex],
                   add_special_tokens=False)["input_ids"]:
        used.update(ids)
    emb = np.load(set_dir / "teacher_embeddings.npy").astype(np.float32)
    rows = np.array(sorted(used), dtype=np.int32)
    scale = np.abs(emb[rows]).max(1, keepdims=True) / 127.0 + 1e-12
    np.savez(set_dir / "teacher_embeddings.npz", ids=rows, q=np.round(emb[rows] / scale).astype(np.int8),
             scale=scale.astype(np.float32), shape=np.array(emb.shape))
    os.remove(set_dir / "teacher_embeddings.npy")
    # teacher eval vectors + BM25 for the dev queries
    vec: dict[str, np.ndarray] = {}
    for mt in (256, 512):
        enc = load_encoder(None, device="cpu", cache=False, max_tokens=mt)
        vec[f"teacher{mt}_docs"] = enc.encode([d["text"][:mt * 12] for d in docs])
    vec["teacher_queries"] = enc.encode([q["query"] for q in queries])
    vec["teacher_bestchunk_scores"] = teacher_scores(load_encoder(None, device="cpu"), [q["query"] for q in queries],
                                                     [d["text"] for d in docs], progress=True)
    bm25 = BM25Index().fit(tokenize(d["text"]) for d in docs)
    vec["bm25_scores"] = np.stack([bm25.scores(tokenize(q["query"])) for q in queries]).astype(np.float32)
    vec["doc_len"] = np.array([len(x) for x in tok([d["text"] for d in docs], add_special_tokens=False)["input_ids"]])
    np.savez(dst / "eval.npz", **vec)
    size = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file())
    print(f"device bundle -> {dst}: {size / 2**20:.1f} MiB in {time.perf_counter() - t0:.0f} s", flush=True)


def _gzip(path: Path) -> None:
    import gzip
    import os

    with open(path, "rb") as fi, gzip.open(str(path) + ".gz", "wb", compresslevel=9) as fo:
        fo.write(fi.read())
    os.remove(path)


if __name__ == "__main__":
    main()
