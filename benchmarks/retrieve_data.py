"""Build the long-document retrieval dev set from real material on this machine (not the manual pages).

Known-item queries written by the documents' authors, each answered by one long document:
- Python packages installed here: query = the package's one-line ``Summary`` (METADATA), document = its long
  description (the README), with the summary sentence removed wherever it occurs verbatim;
- CMake's reference (Help/command, policy, prop_tgt, variable, module .rst): query = the first sentence of the
  page's body, document = the page with that sentence removed (title kept: it is the command's name).
Distractors (documents no query points to): Vim's help files, npm packages' READMEs.

    python benchmarks/retrieve_data.py            # -> benchmarks/data/retrieve/{corpus,queries}.jsonl
    python benchmarks/retrieve_data.py --bundle benchmarks/data/mamba_dev   # + a copy for the GPU device:
        documents cut to 60k characters and the packaged MiniLM in fp16 (the device has neither)

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
        bundle(out, Path(args.bundle))


def bundle(src: Path, dst: Path, max_chars: int = 60_000) -> None:
    """Device copy: the dev set with documents cut to `max_chars`, and the teacher (MiniLM) in fp16."""
    import shutil

    from safetensors.torch import load_file, save_file

    from longapps.resources import resolve_model

    dst.mkdir(parents=True, exist_ok=True)
    with open(src / "corpus.jsonl") as fi, open(dst / "corpus.jsonl", "w") as fo:
        for line in fi:
            d = json.loads(line)
            fo.write(json.dumps({"id": d["id"], "text": d["text"][:max_chars]}) + "\n")
    shutil.copy(src / "queries.jsonl", dst / "queries.jsonl")
    teacher = Path(resolve_model(None))
    tdst = dst / "minilm16"
    shutil.copytree(teacher, tdst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "README.md"))
    save_file({k: v.half() for k, v in load_file(str(teacher / "model.safetensors")).items()},
              str(tdst / "model.safetensors"), metadata={"format": "pt"})
    print(f"device bundle -> {dst}")


if __name__ == "__main__":
    main()
