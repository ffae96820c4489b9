"""Window stitching: every token labelled from the window where it is most central; spans are neither cut nor
duplicated at window edges (a tagger that is wrong near every window edge gives, through small overlapping
windows, exactly what it gives on one window over the whole document)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from longapps.adapters.token_windows import (decode_spans, encode_segment, segment_bounds, stitch, window_starts,
                                             word_labels, word_tags)
from longapps.pipelines.ner import NER, window_overlap

ENTITY_WORDS = ["fever", "cancer", "renal", "failure", "asthma", "colitis", "anemia"]
FILLER = ["the", "patient", "was", "seen", "today", "and", "with", "no", "history", "of", "a", "in"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from longapps.resources import default_encoder_path
    return AutoTokenizer.from_pretrained(default_encoder_path())


class EdgeBlindTagger(nn.Module):
    """Tags entity-word tokens I-D, others O -- except within 2 tokens of a window's edges, where it outputs
    B-D on the left edge and O on the right edge (what a real model near a cut would get wrong)."""

    def __init__(self, tokenizer, entity_ids: set[int]) -> None:
        super().__init__()
        self.tokenizer, self.labels, self.max_length = tokenizer, ["O", "B-D", "I-D"], 10_000
        self.entity_ids = entity_ids
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        B, N = input_ids.shape
        lab = torch.zeros(B, N, dtype=torch.long)
        for b in range(B):
            n = int(attention_mask[b].sum()) - 2  # content tokens between [CLS] and [SEP]
            for i in range(1, n + 1):
                pos = i - 1
                if pos < 2:
                    lab[b, i] = 1
                elif pos >= n - 2:
                    lab[b, i] = 0
                else:
                    lab[b, i] = 2 if int(input_ids[b, i]) in self.entity_ids else 0
        return torch.nn.functional.one_hot(lab, 3).float() * 5.0


def _doc(seed: int, n_words: int = 300) -> str:
    rng = random.Random(seed)
    words = []
    while len(words) < n_words:
        if rng.random() < 0.2:
            words += rng.sample(ENTITY_WORDS, rng.randint(1, 3))
        else:
            words.append(rng.choice(FILLER))
    return " ".join(words) + " ."


def test_window_starts_cover_and_end_at_the_end() -> None:
    for n, size, stride in [(5, 10, 7), (10, 10, 7), (11, 10, 7), (100, 30, 23), (101, 30, 30)]:
        starts = window_starts(n, size, stride)
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s:s + size] = True
        assert covered.all() and starts[0] == 0 and min(n, starts[-1] + size) == n


def test_stitch_takes_the_most_central_window() -> None:
    starts = [0, 6]
    a = np.full((10, 1), 1.0)
    b = np.full((10, 1), 2.0)
    out = stitch(16, starts, [a, b])[:, 0]
    # overlap = tokens 6..9; centrality in a: 3,2,1,0 ; in b: 0,1,2,3 -> 6,7 from a, 8,9 from b
    assert out.tolist() == [1] * 8 + [2] * 8


@pytest.mark.parametrize("max_length", [24, 32, 57])
def test_small_windows_give_the_whole_document_answer(tokenizer, max_length: int) -> None:
    entity_ids = {i for w in ENTITY_WORDS for i in tokenizer(w, add_special_tokens=False)["input_ids"]}
    tagger = EdgeBlindTagger(tokenizer, entity_ids)
    whole = NER(tagger, max_length=10_000, batch_size=8)
    for seed in range(3):
        text = _doc(seed)
        ref = [(s.start, s.end, s.label) for s in whole.predict(text)]
        assert len(ref) > 20
        got = [(s.start, s.end, s.label) for s in NER(tagger, max_length=max_length, batch_size=3).predict(text)]
        n_tok = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert n_tok > 4 * max_length and window_overlap(max_length - 2) >= 5  # > twice the blind zone
        assert got == ref
        assert len(set(got)) == len(got)  # no duplicates


def test_labels_round_trip_through_decode(tokenizer) -> None:
    text = "Acute renal failure and BRCA1-associated breast cancer, no fever."
    gold = [(6, 19, "D"), (24, 29, "G"), (41, 54, "D"), (59, 64, "S")]
    labels = ["O", "B-D", "I-D", "B-G", "I-G", "B-S", "I-S"]
    enc = encode_segment(tokenizer, text, 0, len(text))
    lab = word_labels(enc, gold, {k: i for i, k in enumerate(labels)})
    per_token = np.where(lab >= 0, lab, 0)
    spans = decode_spans(word_tags(enc, per_token), dict(enumerate(labels)))
    assert [(a, b, t) for a, b, t, _ in spans] == gold


def test_segments_cut_at_boundaries_and_cover_the_text() -> None:
    text = ("line one of a note.\n" * 50 + "\n") * 20
    bounds = segment_bounds(text, 1000)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(bounds, bounds[1:]))
    assert all(b - a <= 1000 for a, b in bounds)
    assert all(text[b - 1] == "\n" for _, b in bounds[:-1])


def test_control_without_enough_overlap_the_edges_show(tokenizer, monkeypatch) -> None:
    """The check above can fail: with 1-token overlaps the blind edges leak into the spans."""
    import longapps.pipelines.ner as ner_mod

    entity_ids = {i for w in ENTITY_WORDS for i in tokenizer(w, add_special_tokens=False)["input_ids"]}
    tagger = EdgeBlindTagger(tokenizer, entity_ids)
    text = _doc(0)
    ref = NER(tagger, max_length=10_000).predict(text)
    monkeypatch.setattr(ner_mod, "window_overlap", lambda size: 1)
    assert NER(tagger, max_length=32).predict(text) != ref


def test_even_windows_fewest_equal_windows_with_the_overlap() -> None:
    from longapps.adapters.token_windows import even_windows

    rng = np.random.default_rng(0)
    cases = [(16645, 4094, 512), (5, 10, 2), (10, 10, 2), (11, 10, 2), (4094 * 3, 4094, 512)]
    cases += [(int(rng.integers(1, 3000)), int(rng.integers(8, 300)), 0) for _ in range(100)]
    for n, size, ov in cases + [(n, size, int(rng.integers(0, size))) for n, size, _ in cases[5:]]:
        starts, length = even_windows(n, size, ov)
        assert length <= size and starts[0] == 0 and starts[-1] + length == max(n, length)
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s:s + length] = True
        assert covered.all()
        shared = [length - (b - a) for a, b in zip(starts, starts[1:])]
        assert all(x >= ov for x in shared), (n, size, ov)
        # the fewest: one window fewer of `size` tokens cannot cover n with that overlap
        k = len(starts)
        assert k == 1 or (k - 1) * size - (k - 2) * ov < n, (n, size, ov)
    assert even_windows(16645, 4094, 512) == ([0, 3226, 6453, 9679, 12906], 3739)
