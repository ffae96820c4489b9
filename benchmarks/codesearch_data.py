"""Build CodeSearchNet-style dev sets from documented code on this machine.

query  = the first sentence of a function's documentation (Python docstring, Javadoc, JSDoc, ///),
corpus = the source files with every doc comment removed (lines blanked, so line numbers stay put),
target = that function (path + the line of its name).

    python benchmarks/codesearch_data.py python OUT_DIR
"""
from __future__ import annotations

import ast
import json
import random
import re
import sys
import sysconfig
import zipfile
from pathlib import Path

MIN_WORDS = 3


def first_sentence(doc: str) -> str:
    para = re.split(r"\n\s*\n", doc.strip())[0]
    para = " ".join(para.split())
    m = re.search(r"(?<=[.!?])\s", para)
    return (para[:m.start()] if m else para).strip()


def _blank(lines: list[str], a: int, b: int) -> None:
    for i in range(a, b + 1):
        lines[i] = ""


# -- Python ----------------------------------------------------------------------------------------

def python_file(rel: str, src: str) -> tuple[str, list[dict]]:
    tree = ast.parse(src)
    lines = src.splitlines()
    queries = []
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            continue
        doc = body[0].value.value
        d0, d1 = body[0].lineno - 1, body[0].end_lineno - 1
        only_doc = len(body) == 1
        indent = re.match(r"\s*", lines[d0]).group(0)
        _blank(lines, d0, d1)
        if only_doc:
            lines[d0] = indent + "pass"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not only_doc:
            parent = parents.get(node)
            top = isinstance(parent, ast.Module) or (isinstance(parent, ast.ClassDef)
                                                      and isinstance(parents.get(parent), ast.Module))
            name = node.name
            q = first_sentence(doc)
            if top and len(q.split()) >= MIN_WORDS and not name.startswith("test") and not (
                    name.startswith("__") and name.endswith("__")):
                queries.append({"query": q, "path": rel, "line": node.lineno, "name": name,
                                "end": node.end_lineno})
    text = "\n".join(lines) + "\n"
    for q in queries:
        q["n_lines"] = sum(1 for ln in lines[q["line"] - 1:q["end"]] if ln.strip())
    return text, queries


def python_sources(limit_every: int = 6) -> list[tuple[str, str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "ensurepip", "turtledemo", "pydoc_data",
            "tkinter", "__pycache__", "distutils"}
    files = sorted(p for p in stdlib.rglob("*.py") if not (set(p.relative_to(stdlib).parts) & skip))
    return [(str(p.relative_to(stdlib)), p.read_text(encoding="utf-8", errors="replace"))
            for i, p in enumerate(files) if i % limit_every == 0]


# -- C-family doc comments (Java, JS) via tree-sitter -------------------------------------------------

def _javadoc_text(comment: str) -> str:
    body = comment.strip()[3:-2]
    body = "\n".join(re.sub(r"^\s*\*", "", ln) for ln in body.splitlines())
    body = re.split(r"\n\s*@\w+", "\n" + body)[0] if body.lstrip().startswith("@") else re.split(r"\n\s*@\w+", body)[0]
    body = re.sub(r"\{@(?:code|link|linkplain|literal)\s+([^}]*)\}", lambda m: m.group(1).split("#")[-1].strip(), body)
    body = re.sub(r"<[^>]+>", "", body)
    return body.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


FUNC_NODES = {
    "java": {"method_declaration", "constructor_declaration"},
    "javascript": {"function_declaration", "method_definition", "generator_function_declaration"},
}


def cfamily_file(rel: str, src: str, language: str) -> tuple[str, list[dict]]:
    from tree_sitter import Language, Parser

    if language == "java":
        import tree_sitter_java as g
    else:
        import tree_sitter_javascript as g
    parser = Parser(Language(g.language()))
    data = src.encode("utf-8")
    tree = parser.parse(data)
    lines = src.splitlines()
    queries = []
    comments = []

    def visit(node, depth_in_func: int) -> None:
        if node.type in ("block_comment", "comment") and data[node.start_byte:node.end_byte].startswith(b"/**"):
            comments.append(node)
        is_func = node.type in FUNC_NODES[language]
        if is_func and depth_in_func == 0:
            prev = node.prev_named_sibling
            # skip annotations/modifiers: the comment precedes the declaration node itself in Java
            if prev is not None and prev.type in ("block_comment", "comment"):
                ctext = data[prev.start_byte:prev.end_byte].decode("utf-8", "replace")
                name_node = node.child_by_field_name("name")
                body = node.child_by_field_name("body")
                if ctext.startswith("/**") and name_node is not None and body is not None \
                        and prev.end_point[0] >= node.start_point[0] - 1:
                    q = first_sentence(_javadoc_text(ctext))
                    name = data[name_node.start_byte:name_node.end_byte].decode()
                    if len(q.split()) >= MIN_WORDS and not name.startswith("test") and not q.lower().startswith(
                            ("inherit", "{@inherit")):
                        queries.append({"query": q, "path": rel, "line": name_node.start_point[0] + 1,
                                        "name": name, "start": node.start_point[0] + 1,
                                        "end": node.end_point[0] + 1})
        for child in node.children:
            visit(child, depth_in_func + (1 if is_func else 0))

    visit(tree.root_node, 0)
    for c in comments:
        a, b = c.start_point[0], c.end_point[0]
        if all(not lines[i][:c.start_point[1]].strip() for i in [a]) and not lines[b][c.end_point[1]:].strip():
            _blank(lines, a, b)
    for q in queries:
        q["n_lines"] = sum(1 for ln in lines[q["start"] - 1:q["end"]] if ln.strip())
    return "\n".join(lines) + "\n", queries


LINE_DOC = {  # language -> (function node types, comment node types, doc-comment prefix)
    "go": ({"function_declaration", "method_declaration"}, {"comment"}, "//"),
    "rust": ({"function_item"}, {"line_comment"}, "///"),
}


def line_doc_file(rel: str, src: str, language: str) -> tuple[str, list[dict]]:
    """Go (`// Name does ...`) and Rust (`/// Does ...`) doc comments: runs of line comments right above a
    function (Rust attributes may sit between). The run is blanked; its first sentence is the query."""
    from tree_sitter import Language, Parser

    if language == "go":
        import tree_sitter_go as g
    else:
        import tree_sitter_rust as g
    funcs, comment_types, prefix = LINE_DOC[language]
    data = src.encode("utf-8")
    tree = Parser(Language(g.language())).parse(data)
    lines = src.splitlines()
    queries = []

    def text(n) -> str:
        return data[n.start_byte:n.end_byte].decode("utf-8", "replace")

    def last_row(n) -> int:  # a Rust line comment ends at column 0 of the next line
        return n.end_point[0] - (1 if n.end_point[1] == 0 and n.end_point[0] > n.start_point[0] else 0)

    def visit(node, in_func: bool) -> None:
        is_func = node.type in funcs
        if is_func and not in_func and node.child_by_field_name("body") is not None:
            run, prev, row = [], node.prev_named_sibling, node.start_point[0]
            while prev is not None and prev.type == "attribute_item" and last_row(prev) == row - 1:
                row, prev = prev.start_point[0], prev.prev_named_sibling
            while prev is not None and prev.type in comment_types and last_row(prev) == row - 1 \
                    and text(prev).startswith(prefix) and not text(prev).startswith(prefix + "/"):
                run.insert(0, prev)
                row, prev = prev.start_point[0], prev.prev_named_sibling
            if run:
                doc = "\n".join(text(c)[len(prefix):].strip() for c in run)
                doc = doc.split("```")[0]
                doc = re.sub(r"\[`?([^\]`]+)`?\]\([^)]*\)", r"\1", doc).replace("`", "")
                q = first_sentence(doc)
                name_node = node.child_by_field_name("name")
                name = text(name_node) if name_node is not None else ""
                if len(q.split()) >= MIN_WORDS and not name.startswith("test") and not q.lower().startswith(
                        ("deprecated", "todo")):
                    queries.append({"query": q, "path": rel, "line": node.start_point[0] + 1, "name": name,
                                    "start": node.start_point[0] + 1, "end": node.end_point[0] + 1})
                _blank(lines, run[0].start_point[0], last_row(run[-1]))
        for child in node.children:
            visit(child, in_func or is_func)

    visit(tree.root_node, False)
    for q in queries:
        q["n_lines"] = sum(1 for ln in lines[q["start"] - 1:q["end"]] if ln.strip())
    return "\n".join(lines) + "\n", queries


def deb_sources(language: str) -> list[tuple[str, str]]:
    """Go and Rust library sources from Debian's -dev packages (golang-*-dev, librust-*-dev), unpacked under
    $LONGAPPS_DEV_SRC (default /tmp/srcs) with `apt-get download` + `dpkg -x`: see benchmarks/RESULTS.md."""
    import os

    root = Path(os.environ.get("LONGAPPS_DEV_SRC", "/tmp/srcs"))
    base = root / ("usr/share/gocode/src" if language == "go" else "usr/share/cargo/registry")
    ext = ".go" if language == "go" else ".rs"
    files = sorted(p for p in base.rglob(f"*{ext}") if p.is_file() and not p.is_symlink()
                   and not any(x in ("tests", "testdata", "benches", "examples", "vendor") for x in p.parts)
                   and not p.name.endswith("_test.go") and p.stat().st_size < 100_000)
    every = 3 if language == "go" else 2
    return [(str(p.relative_to(base)), p.read_text(encoding="utf-8", errors="replace"))
            for i, p in enumerate(files) if i % every == 0]


def java_sources(limit_every: int = 8) -> list[tuple[str, str]]:
    import glob
    zpath = [p for p in sorted(glob.glob("/usr/lib/jvm/*/lib/src.zip")) if Path(p).exists()][0]
    out = []
    with zipfile.ZipFile(zpath) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".java") and n.startswith(
            ("java.base/java/util/", "java.base/java/io/", "java.base/java/net/", "java.base/java/time/",
             "java.base/java/text/", "java.base/java/nio/file/", "java.base/java/math/", "java.base/java/lang/")))
        for i, n in enumerate(names):
            if i % limit_every == 0:
                out.append((n, z.read(n).decode("utf-8", "replace")))
    return out


def js_sources() -> list[tuple[str, str]]:
    root = Path("/usr/lib/node_modules/npm")
    files = sorted(p for p in root.rglob("*.js") if "test" not in p.parts and p.stat().st_size < 60_000
                   and not p.name.endswith(".min.js"))
    # "node_modules/" would be skipped as vendored by the walker: store the packages under "pkgs/"
    return [(str(p.relative_to(root)).replace("node_modules/", "pkgs/"), p.read_text(encoding="utf-8", errors="replace"))
            for i, p in enumerate(files) if i % 4 == 0]


def build(language: str, out: Path, max_queries: int = 300, seed: int = 0) -> dict:
    """Write OUT/repo/<files> (doc comments removed) and OUT/queries.jsonl; return counts."""
    if language == "python":
        sources, fn = python_sources(), python_file
    elif language == "java":
        sources, fn = java_sources(), lambda r, s: cfamily_file(r, s, "java")
    elif language in LINE_DOC:
        sources, fn = deb_sources(language), lambda r, s, lang=language: line_doc_file(r, s, lang)
    elif language == "javascript":
        sources, fn = js_sources(), lambda r, s: cfamily_file(r, s, "javascript")
    else:
        raise SystemExit(f"unknown language {language}")
    repo = out / "repo"
    all_queries = []
    for rel, src in sources:
        try:
            text, queries = fn(rel, src)
        except (SyntaxError, ValueError, UnicodeError):
            continue
        dest = repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
        all_queries.extend(queries)
    rng = random.Random(seed)
    rng.shuffle(all_queries)
    # dedupe identical queries (overloads), keep the first
    seen, picked = set(), []
    for q in all_queries:
        if q["query"].lower() not in seen:
            seen.add(q["query"].lower())
            picked.append(q)
    # every long function (>= 25 lines) is kept, the rest sampled, so "long" MRR rests on enough queries
    long_q = [q for q in picked if q["n_lines"] >= 25]
    short_q = [q for q in picked if q["n_lines"] < 25]
    picked = long_q[:max_queries // 2] + short_q[:max_queries - min(len(long_q), max_queries // 2)]
    with open(out / "queries.jsonl", "w") as fh:
        for q in picked:
            fh.write(json.dumps(q) + "\n")
    return {"language": language, "files": len(sources), "queries": len(picked),
            "long": sum(q["n_lines"] >= 25 for q in picked)}


if __name__ == "__main__":
    lang, out = sys.argv[1], Path(sys.argv[2])
    print(build(lang, out))
