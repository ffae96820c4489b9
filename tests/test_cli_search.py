"""`longapps search-code` end to end: CliRunner, a real subprocess, bad inputs, kill -9 recovery."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from longapps.cli import main

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo_repo"


@pytest.fixture
def demo(tmp_path):
    dst = tmp_path / "demo"
    shutil.copytree(DEMO, dst)
    return dst


def run(args, **kw):
    return CliRunner().invoke(main, args, catch_exceptions=False, **kw)


def test_search_demo_repo_text_and_json(demo, tmp_path):
    idx = str(tmp_path / "idx")
    r = run(["search-code", str(demo), "parse a duration string like 1h30m", "-k", "3", "--index-dir", idx])
    assert r.exit_code == 0, r.output
    assert "pyutil/durations.py:" in r.output.splitlines()[0] or "durations.py" in r.output
    r = run(["search-code", str(demo), "least recently used cache", "--json", "-k", "2", "--index-dir", idx])
    hits = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert len(hits) == 2 and hits[0]["path"] == "service/lru.go"
    assert {"rank", "path", "start", "end", "score", "preview", "name"} <= set(hits[0])


def test_queries_file_gives_jsonl(demo, tmp_path):
    q = tmp_path / "q.txt"
    q.write_text("retry with exponential backoff\n\nslugify a title for a url\ncrc checksum of bytes\n")
    r = run(["search-code", str(demo), "--queries", str(q), "-k", "1", "--index-dir", str(tmp_path / "i")])
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [row["query"] for row in rows] == ["retry with exponential backoff", "slugify a title for a url",
                                             "crc checksum of bytes"]
    assert rows[0]["hits"][0]["path"] == "pyutil/retry.py"
    assert rows[1]["hits"][0]["path"] == "native/slug.rs"
    assert rows[2]["hits"][0]["path"] == "native/crc32.c"


@pytest.mark.parametrize("args,message", [
    (["search-code", "/no/such/dir", "q"], "repository not found"),
    (["search-code", "{demo}", ""], "empty query"),
    (["search-code", "{demo}", "   "], "empty query"),
    (["search-code", "{demo}", "q", "--model", "no-such-org/no-such-model"], "not available offline"),
    (["search-code", "{demo}", "q", "--model", "/no/such/model/dir"], "model folder not found"),
    (["search-code", "{demo}/pyutil/retry.py", "q"], "not a directory"),
    (["search-code", "{demo}", "--queries", "/no/such/file"], "No such file"),
])
def test_bad_input_one_line_nonzero(demo, tmp_path, args, message):
    args = [a.replace("{demo}", str(demo)) for a in args] + ["--index-dir", str(tmp_path / "i")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output
    err_lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(err_lines) <= 3


def test_hostile_repo_is_indexed_with_skips_reported(tmp_path):
    repo = tmp_path / "hostile"
    repo.mkdir()
    (repo / "good.py").write_text("def add_numbers(a, b):\n    return a + b\n")
    (repo / "latin.py").write_bytes("# r\xe9sum\xe9\ndef parse_resume(text):\n    return text.split()\n".encode("latin-1"))
    (repo / "blob.c").write_bytes(b"\x00\x01\x02" * 1000)
    with open(repo / "huge.js", "wb") as fh:  # a 50 MB file
        fh.truncate(50 * 1024 * 1024)
    os.symlink("loop.py", repo / "loop.py")
    (repo / "locked.py").write_text("x = 1\n")
    r = CliRunner().invoke(main, ["search-code", str(repo), "add two numbers", "-v", "--index-dir",
                                  str(tmp_path / "i"), "-k", "1"])
    assert r.exit_code == 0, r.output
    assert "good.py" in r.output
    assert "huge.js: too large" in r.output and "loop.py: unreadable" in r.output
    assert "blob.c: binary" in r.output and "non-UTF-8" in r.output


def test_empty_repo_fails_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    r = CliRunner().invoke(main, ["search-code", str(tmp_path / "empty"), "q", "--index-dir", str(tmp_path / "i")])
    assert r.exit_code == 2 and "nothing to search" in r.output and "1 not source" in r.output


def _cli(*args, env=None):
    return [sys.executable, "-m", "longapps.cli", *args]


def test_real_subprocess_and_kill9_recovery(tmp_path):
    """A real process: killed with SIGKILL mid-indexing, the next run recovers and answers."""
    repo = tmp_path / "big"
    repo.mkdir()
    for i in range(120):
        body = "\n".join(f"    total_{j} = value * {j} + offset_{i}" for j in range(40))
        (repo / f"mod_{i}.py").write_text(f"def compute_{i}(value, offset_{i}):\n{body}\n    return total_1\n")
    (repo / "target.py").write_text("def send_email(to, subject):\n    smtp.send(to, subject)\n")
    env = dict(os.environ, LONGAPPS_CACHE=str(tmp_path / "cache"))
    idx = str(tmp_path / "idx")
    p = subprocess.Popen(_cli("search-code", str(repo), "send an email", "--index-dir", idx),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait until encoding has begun (the embedding cache file appears), then kill -9
    deadline = time.time() + 90
    emb = tmp_path / "cache" / "embeddings"
    while time.time() < deadline and p.poll() is None:
        if emb.exists() and any(emb.iterdir()):
            time.sleep(1.0)
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = subprocess.run(_cli("search-code", str(repo), "send an email", "--index-dir", idx, "--json", "-k", "1"),
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["path"] == "target.py"
    assert "Traceback" not in r.stderr
    # and a third run re-encodes nothing
    r = subprocess.run(_cli("search-code", str(repo), "send an email", "--index-dir", idx, "-v"),
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "0 parsed" in r.stderr and "encoded" not in r.stderr


def test_reader_gone_is_quiet(demo, tmp_path):
    """`longapps search-code ... | head`: when the reader closes the pipe, exit quietly (141, no error line)."""
    env = dict(os.environ, LONGAPPS_CACHE=os.environ.get("LONGAPPS_CACHE", str(tmp_path / "cache")))
    p = subprocess.Popen(_cli("search-code", str(demo), "parse a duration string", "--index-dir", str(tmp_path / "idx")),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # no reader: the first write gets EPIPE
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141, err
    assert "error" not in err.lower() and "Traceback" not in err
