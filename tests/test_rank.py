"""Ranking (issue 4): permutation parsing, budgets, passage loading, first stage, CLI and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from longapps.cli import main
from longapps.pipelines.rank_prompt import (parse_permutation, permutation_text, plan_budget, truncate_tokens,
                                            user_message)
from longapps.pipelines.ranking import (Passage, Ranker, RankerConfig, load_passages, read_passage_file,
                                        read_query)
from longapps.resources import LongappsError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rank"


# -- permutation parsing ---------------------------------------------------------------------------

def test_parse_clean_output():
    p = parse_permutation("[3] > [1] > [2]", 3)
    assert p.order == [2, 0, 1] and p.parsed == 3 and p.missing == 0 and p.complete


@pytest.mark.parametrize("text", ["", "I cannot rank these passages.", "\x00\x01 garbage ][ >>", "[] > [] > []",
                                  "[a] > [b]"])
def test_parse_garbage_falls_back_to_first_stage_order(text):
    p = parse_permutation(text, 4)
    assert p.order == [0, 1, 2, 3] and p.parsed == 0 and p.missing == 4


def test_parse_partial_appends_missing_in_fallback_order():
    p = parse_permutation("[4] > [2] > [", 5, fallback=[4, 3, 2, 1, 0])
    assert p.order == [3, 1, 4, 2, 0] and p.parsed == 2 and p.missing == 3


def test_parse_duplicates_keep_first():
    p = parse_permutation("[2] > [2] > [1] > [2] > [1]", 3)
    assert p.order == [1, 0, 2] and p.duplicates == 3 and p.parsed == 2


def test_parse_out_of_range_and_negative_dropped():
    p = parse_permutation("[0] > [7] > [-1] > [3] > [99999999999999999999] > [1]", 3)
    assert p.order == [2, 0, 1] and p.out_of_range == 4 and p.parsed == 2


def test_parse_unbracketed_numbers_and_prose():
    p = parse_permutation("The best is 2, then 3; passage 1 is worst.", 3)
    assert p.order == [1, 2, 0]
    # bracketed ids win over stray numbers when both are present
    assert parse_permutation("ranking of 10 passages: [2] > [1]", 3).order == [1, 0, 2]


def test_parse_is_always_a_permutation():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        junk = "".join(rng.choice(list("[]> 0123456789ab\n-"), size=int(rng.integers(0, 120))))
        p = parse_permutation(junk, n)
        assert sorted(p.order) == list(range(n))


def test_permutation_text_roundtrip():
    assert permutation_text([3, 1, 2]) == "[3] > [1] > [2]"
    assert parse_permutation(permutation_text([5, 4, 3, 2, 1]), 5).order == [4, 3, 2, 1, 0]


# -- budgets ---------------------------------------------------------------------------------------

def _count(texts):
    return [len(t.split()) + t.count("[") for t in texts]


def test_budget_for_100_passages_in_8k():
    b = plan_budget(100, 8192, 200, _count)
    assert b.n == 100 and 30 <= b.passage_tokens <= 80
    assert 200 + b.output_tokens + 100 * (b.passage_tokens + 2) <= 8192


def test_budget_caps_and_shrinks_when_context_too_small():
    assert plan_budget(5, 8192, 200, _count).passage_tokens == 128   # capped
    b = plan_budget(500, 2048, 300, _count, min_passage_tokens=16)
    assert 0 < b.n < 500 and b.passage_tokens >= 16


def test_truncate_tokens_never_reads_everything():
    class Tok:
        is_fast = False
        seen = 0

        def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
            Tok.seen = max(Tok.seen, len(text))
            return {"input_ids": list(range(len(text.split())))}

        def decode(self, ids, skip_special_tokens=True):
            return " ".join("w" for _ in ids)

    huge = "word " * 1_000_000
    out = truncate_tokens(huge, 10, Tok())
    assert out.split() == ["w"] * 10 and Tok.seen <= 10 * 12
    assert truncate_tokens("short text", 10, Tok()) == "short text"


def test_prompt_lists_every_passage_with_ids():
    msg = user_message("find x", ["alpha", "beta"])
    assert "[1] alpha\n[2] beta" in msg and "find x" in msg and "2 passages" in msg


# -- inputs ----------------------------------------------------------------------------------------

def test_load_passages_folder_with_bad_files(tmp_path):
    d = tmp_path / "p"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("plain text about parsing")
    (d / "sub" / "b.md").write_text("nested file")
    (d / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (d / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    (d / "empty.txt").write_text("   \n")
    (d / ".hidden").write_text("secret")
    passages, warnings = load_passages(d)
    ids = [p.id for p in passages]
    assert ids == ["a.txt", "latin1.txt", "sub/b.md"]
    assert "\ufffd" in passages[1].text and passages[1].note == "non-utf8"
    text = "\n".join(warnings)
    assert "blob.bin: binary" in text and "empty.txt: empty" in text and "latin1.txt" in text


def test_load_passages_errors(tmp_path):
    with pytest.raises(LongappsError, match="not found"):
        load_passages(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LongappsError, match="no passage files"):
        load_passages(tmp_path / "empty")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.dat").write_bytes(b"\x00" * 10)
    with pytest.raises(LongappsError, match="no readable text passages"):
        load_passages(tmp_path / "bin")
    (tmp_path / "one.txt").write_text("x")
    with pytest.raises(LongappsError, match="JSONL"):
        load_passages(tmp_path / "one.txt")


def test_load_passages_jsonl(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join([json.dumps({"id": "d1", "text": "first"}), "not json",
                            json.dumps({"docid": 7, "contents": "second", "title": "T"}),
                            json.dumps({"id": "d1", "text": "dup id"}), json.dumps({"id": "x"}), "[1, 2]", ""]))
    passages, warnings = load_passages(f)
    assert [p.id for p in passages] == ["d1", "7", "d1#2"]
    assert passages[1].text == "T\nsecond" and len(warnings) == 3
    (tmp_path / "bad.jsonl").write_text("nope\n")
    with pytest.raises(LongappsError, match="no passages"):
        load_passages(tmp_path / "bad.jsonl")


def test_read_query():
    assert read_query("  hello \n world ") == "hello world"
    for bad in ("", "   \n\t"):
        with pytest.raises(LongappsError, match="empty query"):
            read_query(bad)


def test_huge_passage_is_capped(tmp_path, monkeypatch, hashing_encoder):
    big = tmp_path / "big.txt"
    line = ("filler words about nothing in particular. " * 50 + "\n").encode()
    with open(big, "wb") as f:
        for _ in range(100_000_000 // len(line) + 1):
            f.write(line)
    assert big.stat().st_size >= 100_000_000
    text, note = read_passage_file(big, 4_000_000)
    assert len(text) <= 4_000_000 and "truncated" in note
    # end to end: the CLI ranks a folder holding it, with a warning and no traceback
    import longapps.pipelines.ranking as ranking

    monkeypatch.setattr("longapps.adapters.encode.load_encoder", lambda model=None, **kw: hashing_encoder)
    (tmp_path / "small.txt").write_text("a short passage about parsing options")
    r = run(["rank", "--query", "parsing options", str(tmp_path), "--stats"])
    assert r.exit_code == 0, r.output
    assert "big.txt: truncated to 4 MB" in r.stderr and r.stdout.split()[1] == "small.txt"
    assert len(hashing_encoder.encoded) <= 16 + 1 + 1  # 16 chunks of big.txt, small.txt, the query


# -- first stage -----------------------------------------------------------------------------------

def _docs():
    filler = "This section talks about unrelated matters such as weather, food and travel. " * 20
    return [
        Passage("head", "Sorting lists in place with a key function. The sort method orders items."),
        Passage("deep", filler + "Here we finally explain how to parse command line options and arguments."),
        Passage("other", "Reading and writing CSV files with the csv module and dialects."),
        Passage("noise", filler),
    ]


def test_first_stage_methods(hashing_encoder):
    docs = _docs()
    q = "parse command line options and arguments"
    for method in ("bm25", "dense", "hybrid"):
        r = Ranker(RankerConfig(method=method), encoder=hashing_encoder).rank(q, docs)
        assert r[0].id == "deep", (method, [x.id for x in r])
        assert [x.rank for x in r] == [1, 2, 3, 4] and r[0].score >= r[-1].score
    r = Ranker(encoder=hashing_encoder).rank("sort a list with a key", docs, k=2)
    assert len(r) == 2 and r[0].id == "head" and r[0].to_dict()["preview"].startswith("Sorting")


def test_best_chunk_finds_late_answer(hashing_encoder):
    docs = _docs()
    q = "parse command line options and arguments"
    trunc = Ranker(RankerConfig(method="dense", best_weight=0.0, chunk_tokens=40), encoder=hashing_encoder)
    best = Ranker(RankerConfig(method="dense", best_weight=1.0, chunk_tokens=40), encoder=hashing_encoder)
    t = {x.id: x.dense for x in trunc.rank(q, docs)}
    b = {x.id: x.dense for x in best.rank(q, docs)}
    assert b["deep"] > t["deep"] and b["deep"] > b["noise"]
    assert best.stats.chunks > len(docs)


def test_many_passages_and_a_huge_one(hashing_encoder):
    docs = [Passage(f"p{i}", f"passage number {i} about topic {i % 37} and more words") for i in range(3000)]
    docs.append(Passage("huge", "needle in a haystack. " + "hay " * 2_000_000))
    r = Ranker(RankerConfig(max_chunks=8), encoder=hashing_encoder).rank("needle haystack", docs, k=3)
    assert r[0].id == "huge"
    assert len(hashing_encoder.encoded) <= 3000 + 8 + 10


def test_ranker_bad_input(hashing_encoder):
    r = Ranker(encoder=hashing_encoder)
    with pytest.raises(LongappsError, match="empty query"):
        r.rank("  ", _docs())
    with pytest.raises(LongappsError, match="no passages"):
        r.rank("q", [])
    with pytest.raises(LongappsError, match="unknown method"):
        Ranker(RankerConfig(method="magic"))
    out = r.rank("anything", ["", "text here"])  # an empty passage is ranked, not a crash
    assert len(out) == 2


# -- CLI -------------------------------------------------------------------------------------------

@pytest.fixture
def hashing_cli(monkeypatch, hashing_encoder):
    import longapps.pipelines.ranking as ranking

    monkeypatch.setattr("longapps.adapters.encode.load_encoder", lambda model=None, **kw: hashing_encoder)
    return hashing_encoder


def run(args, **kw):
    return CliRunner().invoke(main, args, **kw)


@pytest.fixture
def pdir(tmp_path):
    d = tmp_path / "passages"
    d.mkdir()
    for p in _docs():
        (d / f"{p.id}.txt").write_text(p.text)
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "q.txt").write_text("parse command line options and arguments\n")
    return d


def test_cli_text_json_and_stats(hashing_cli, pdir, tmp_path):
    r = run(["rank", str(tmp_path / "q.txt"), str(pdir), "-k", "2", "--stats"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[1] == "deep.txt"
    assert "warning: skipped image.png: binary" in r.stderr and "stats: method hybrid" in r.stderr
    r = run(["rank", "--query", "csv files and dialects", str(pdir), "--json", "--method", "bm25"])
    rows = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert r.exit_code == 0 and len(rows) == 4 and rows[0]["id"] == "other.txt"
    assert {"rank", "id", "score", "preview", "first_stage_rank"} <= set(rows[0])


def test_cli_jsonl_passages(hashing_cli, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"id": p.id, "text": p.text}) for p in _docs()))
    r = run(["rank", "-q", "sort a list with a key", str(f), "-k", "1", "--preview", "0"])
    assert r.exit_code == 0 and r.stdout.split()[1] == "head"


@pytest.mark.parametrize("args,message", [
    (["--query", " ", "{dir}"], "empty query"),
    (["{empty_q}", "{dir}"], "empty query"),
    (["{q}", "{tmp}/missing"], "passages not found"),
    (["{q}", "{tmp}/emptydir"], "no passage files"),
    (["{q}", "{tmp}/bindir"], "no readable text passages"),
    (["{tmp}/nofile.txt", "{dir}"], "query file not found"),
    (["{dir}"], "usage"),
    (["--query", "x", "{q}", "{dir}"], "exactly one PASSAGES"),
])
def test_cli_bad_input(hashing_cli, pdir, tmp_path, args, message):
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "bindir").mkdir()
    (tmp_path / "bindir" / "a.bin").write_bytes(b"\x00\xff" * 50)
    (tmp_path / "empty_q.txt").write_text("\n \n")
    subs = {"dir": str(pdir), "tmp": str(tmp_path), "q": str(tmp_path / "q.txt"),
            "empty_q": str(tmp_path / "empty_q.txt")}
    r = run(["rank"] + [a.format(**subs) for a in args])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and message in r.stderr and "Traceback" not in r.output


def _example_run(minilm, monkeypatch, extra):
    import longapps.pipelines.ranking as ranking

    monkeypatch.setattr("longapps.adapters.encode.load_encoder", lambda model=None, **kw: minilm)
    r = run(["rank", str(EXAMPLE / "query.txt"), str(EXAMPLE / "passages"), "-k", "3", *extra])
    assert r.exit_code == 0, r.output
    top = [line.split()[1] for line in r.stdout.strip().splitlines()]
    assert set(top) <= {"argparse.txt", "getopt.txt", "optparse.txt"} and len(top) == 3


def test_cli_example_shipped_in_repo(minilm, monkeypatch):
    """`longapps rank query.txt passages/` on examples/rank with the real encoder, offline (first 3 kB of
    each file, to keep the suite fast; the slow test below reads them whole)."""
    _example_run(minilm, monkeypatch, ["--max-bytes", "3000"])


@pytest.mark.slow
def test_cli_example_shipped_in_repo_full(minilm, monkeypatch):
    _example_run(minilm, monkeypatch, [])
