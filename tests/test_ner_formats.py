"""NER data formats: exact offsets (CRLF, non-ASCII, tabs), round trips, discontinuous spans, overlap policy,
one-line errors that name the file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from longapps.adapters.ner_formats import (Document, Span, ann_text, atomic_write, iter_texts, read_brat, read_conll,
                                           read_documents, read_jsonl, read_text, resolve_overlaps, write_brat,
                                           write_conll, write_jsonl)
from longapps.resources import LongappsError

TEXT = "Pt. w/ Crohn\u2019s disease\r\n\tHx: \u00e9pilepsie; acute renal failure.\r\nNo fever."


def _doc() -> Document:
    spans = []
    for label, phrase in [("Disease", "Crohn\u2019s disease"), ("Disease", "\u00e9pilepsie"),
                          ("Disease", "acute renal failure"), ("Sign", "fever")]:
        a = TEXT.index(phrase)
        spans.append(Span(a, a + len(phrase), label, phrase))
    return Document("note-1", TEXT, spans)


def _key(d: Document) -> list:
    return [(s.start, s.end, s.label, d.text[s.start:s.end]) for s in d.spans]


def test_jsonl_round_trip_exact_offsets(tmp_path: Path) -> None:
    d = _doc()
    write_jsonl([d], tmp_path / "a.jsonl")
    back = read_jsonl(tmp_path / "a.jsonl")
    assert back[0].text == TEXT and _key(back[0]) == _key(d)


def test_brat_round_trip_keeps_crlf_and_fragments(tmp_path: Path) -> None:
    d = _doc()
    a, b = TEXT.index("acute"), TEXT.index("failure")
    d.spans.append(Span(a, b + 7, "Disc", fragments=((a, a + 5), (b, b + 7))))
    write_brat([d], tmp_path / "brat")
    raw = (tmp_path / "brat" / "note-1.txt").read_bytes()
    assert raw.count(b"\r\n") == 2  # newlines untouched
    back = read_brat(tmp_path / "brat")[0]
    assert back.text == TEXT
    assert _key(back) == _key(d)
    assert back.spans[-1].fragments == ((a, a + 5), (b, b + 7))
    assert "\tDisc %d %d;%d %d\tacute failure\n" % (a, a + 5, b, b + 7) in ann_text(back)


def test_brat_ignores_notes_and_relations(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("renal failure here", encoding="utf-8")
    (tmp_path / "x.ann").write_text("T1\tDisease 0 13\trenal failure\n#1\tAnnotatorNotes T1\tnote\n"
                                    "R1\tRel Arg1:T1 Arg2:T1\nN1\tReference T1 MeSH:D1\n", encoding="utf-8")
    (d,) = read_brat(tmp_path)
    assert [(s.start, s.end, s.label) for s in d.spans] == [(0, 13, "Disease")]


def test_brat_bad_offsets_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("short text", encoding="utf-8")
    (tmp_path / "x.ann").write_text("T1\tD 0 5\tshort\nT2\tD 6 50\ttext\n", encoding="utf-8")
    with pytest.raises(LongappsError, match=r"x\.ann:2: span 6-50 is out of range"):
        read_brat(tmp_path)
    (tmp_path / "x.ann").write_text("T1\tD 0 5\tshort\nT2\tD 0 5\tother\n", encoding="utf-8")
    with pytest.raises(LongappsError, match=r"x\.ann:2: offsets 0 5 give 'short', the annotation says 'other'"):
        read_brat(tmp_path)


def test_conll_read_write(tmp_path: Path) -> None:
    p = tmp_path / "a.conll"
    p.write_text("-DOCSTART-\tO\n\nAcute\tB-Disease\nrenal\tI-Disease\nfailure\tI-Disease\n.\tO\n\n"
                 "No\tO\nfever\tB-Sign\n\n-DOCSTART-\tO\n\nOK\tO\n", encoding="utf-8")
    docs = read_conll(p)
    assert [d.text for d in docs] == ["Acute renal failure .\nNo fever", "OK"]
    assert _key(docs[0]) == [(0, 19, "Disease", "Acute renal failure"), (25, 30, "Sign", "fever")]
    write_conll(docs, tmp_path / "b.conll")
    again = read_conll(tmp_path / "b.conll")
    assert [(d.text, _key(d)) for d in again] == [(d.text, _key(d)) for d in docs]


def test_conll_write_from_raw_text(tmp_path: Path) -> None:
    write_conll([_doc()], tmp_path / "c.conll")
    lines = (tmp_path / "c.conll").read_text(encoding="utf-8").splitlines()
    assert "acute\tB-Disease" in lines and "renal\tI-Disease" in lines and "failure\tI-Disease" in lines
    assert "fever\tB-Sign" in lines and "No\tO" in lines


def test_overlap_policy_keeps_longest_and_counts() -> None:
    spans = [Span(0, 5, "A"), Span(0, 12, "B"), Span(3, 8, "C"), Span(20, 25, "A"), Span(20, 25, "A"),
             Span(30, 40, "D", fragments=((30, 33), (36, 40)))]
    kept, dropped = resolve_overlaps(spans)
    assert [(s.start, s.end, s.label) for s in kept] == [(0, 12, "B"), (20, 25, "A"), (30, 33, "D"), (36, 40, "D")]
    assert dropped == 2  # A 0-5 and C 3-8; the exact duplicate is not information lost


def test_bad_text_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(LongappsError, match=r"latin1\.txt: not UTF-8 \(byte 0xe9 at offset 3\)"):
        read_text(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(LongappsError, match="empty"):
        list(iter_texts(empty))
    with pytest.raises(LongappsError, match="empty"):
        read_documents(empty)
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:  # sparse 50 MB file: refused from its size, never read into memory
        f.truncate(50 * 2**20)
    with pytest.raises(LongappsError, match="50 MB is over the 16 MB limit"):
        list(iter_texts(big))
    j = tmp_path / "a.jsonl"
    j.write_text('{"id": "a", "text": "abc"}\n{"id": "b", "text": "abc", "spans": [{"start": 2, "end": 9, '
                 '"label": "X"}]}\n', encoding="utf-8")
    with pytest.raises(LongappsError, match=r"a\.jsonl:2: span 2-9 is out of range"):
        read_jsonl(j)
    j.write_text('{"id": "a", "text": "abc"\n', encoding="utf-8")
    with pytest.raises(LongappsError, match=r"a\.jsonl:1: not valid JSON"):
        read_jsonl(j)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        atomic_write(target, 123)  # type: ignore[arg-type]
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
