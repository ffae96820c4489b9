"""Listwise LLM ranking prompts (RankGPT style): budgets, prompt text, permutation parsing, early stopping.

Both the full-list mode (all N candidates in one prompt) and the sliding-window baseline use these, and so
does `rank-train` (the fine-tuned model must see exactly the prompts it will be asked at ranking time).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

SYSTEM = ("You are RankGPT, an intelligent assistant that can rank passages based on their relevance "
          "to the query.")

PREFIX = ("I will provide you with {n} passages, each indicated by a numerical identifier []. "
          "Rank the passages based on their relevance to the search query: {query}\n\n")
SUFFIX = ("\n\nSearch Query: {query}\n"
          "Rank the {n} passages above based on their relevance to the search query. All the passages should "
          "be included and listed using identifiers, in descending order of relevance. The output format "
          "should be [] > [], e.g., [2] > [1]. Only respond with the ranking results, do not say any word "
          "or explain.")
# the answer is started for the model, so even a small one begins in the right format
ANSWER_PREFIX = "["

MAX_QUERY_TOKENS = 256


@dataclass
class PromptBudget:
    """How a prompt of `n` passages fits a context of `context` tokens."""

    n: int                  # passages that fit (may be less than asked)
    passage_tokens: int     # token budget per passage text
    output_tokens: int      # max_new_tokens for the permutation
    overhead_tokens: int    # instructions + query + chat template
    context: int


def permutation_text(order: Sequence[int]) -> str:
    """[3, 1, 2] (1-based ids) -> '[3] > [1] > [2]'."""
    return " > ".join(f"[{i}]" for i in order)


def output_tokens_for(n: int, count_tokens: Callable[[Sequence[str]], list[int]]) -> int:
    """Tokens a complete answer for n passages takes, plus slack (a model may spell ' >' as ' ', '>')."""
    return int(count_tokens([permutation_text(range(1, n + 1))])[0] * 1.2) + 8


def plan_budget(n: int, context: int, overhead_tokens: int, count_tokens: Callable[[Sequence[str]], list[int]], *,
                max_passage_tokens: int = 128, min_passage_tokens: int = 16, reserve: int = 16) -> PromptBudget:
    """Per-passage budget = (context - instructions - answer room - id headers) / n, clamped to
    [min, max]. When even `min_passage_tokens` per passage does not fit, fewer passages are taken."""
    header = count_tokens(["\n[100] "])[0] if n >= 100 else count_tokens(["\n[10] "])[0]

    def per_passage(k: int) -> int:
        room = context - overhead_tokens - output_tokens_for(k, count_tokens) - reserve - k * header
        return room // max(k, 1)

    k = max(1, n)
    while k > 1 and per_passage(k) < min_passage_tokens:
        k = max(1, int(k * 0.9))
    per = per_passage(k)
    return PromptBudget(n=min(k, n) if n else 0, passage_tokens=max(1, min(max_passage_tokens, per)),
                        output_tokens=output_tokens_for(max(k, 1), count_tokens), overhead_tokens=overhead_tokens,
                        context=context)


def user_message(query: str, passages: Sequence[str]) -> str:
    n = len(passages)
    body = "\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
    return PREFIX.format(n=n, query=query) + body + SUFFIX.format(n=n, query=query)


def clean_passage(text: str) -> str:
    """One line per passage: the ids must stay at line starts."""
    return re.sub(r"\s+", " ", text).strip()


def truncate_tokens(text: str, budget: int, tokenizer: Any) -> str:
    """The first `budget` tokens of `text` (never tokenizes more than ~12 chars per token of it)."""
    if budget <= 0:
        return ""
    head = text[: budget * 12]
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(head, add_special_tokens=False, return_offsets_mapping=fast)
    ids = enc["input_ids"]
    if len(ids) <= budget:
        return head
    if fast:
        return head[: enc["offset_mapping"][budget - 1][1]]
    return tokenizer.decode(ids[:budget], skip_special_tokens=True)


# -- parsing ---------------------------------------------------------------------------------------

_BRACKETED = re.compile(r"\[\s*(-?\d+)\s*\]")
_ANY_INT = re.compile(r"-?\d+")


@dataclass
class ParsedPermutation:
    """A full permutation of 0..n-1 plus how much repair it needed."""

    order: list[int]                      # 0-based indices, every one exactly once
    parsed: int = 0                       # ids taken from the model output
    duplicates: int = 0
    out_of_range: int = 0
    missing: int = 0                      # appended in fallback (first-stage) order
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.missing == 0


def parse_permutation(text: str, n: int, fallback: Sequence[int] | None = None) -> ParsedPermutation:
    """Model output -> permutation of range(n).

    Integers are read in order (bracketed ones when the text has any, else any integer), 1-based;
    duplicates keep their first occurrence, out-of-range ids are dropped, and ids never mentioned are
    appended in `fallback` order (default: the input order, i.e. the first stage's).
    """
    text = text or ""
    nums = [int(m) for m in _BRACKETED.findall(text)]
    if not nums:
        nums = [int(m) for m in _ANY_INT.findall(text)]
    seen: set[int] = set()
    order: list[int] = []
    dup = oor = 0
    for x in nums:
        i = x - 1
        if not 0 <= i < n:
            oor += 1
            continue
        if i in seen:
            dup += 1
            continue
        seen.add(i)
        order.append(i)
    parsed = len(order)
    fb = list(fallback) if fallback is not None else list(range(n))
    for i in fb:
        if 0 <= i < n and i not in seen:
            seen.add(i)
            order.append(i)
    for i in range(n):  # a fallback that was not itself complete
        if i not in seen:
            order.append(i)
    return ParsedPermutation(order=order, parsed=parsed, duplicates=dup, out_of_range=oor, missing=n - parsed)


def new_ids_in(text: str, n: int) -> set[int]:
    return {int(m) for m in _BRACKETED.findall(text) if 1 <= int(m) <= n}


def make_stopping(tokenizer: Any, prompt_len: int, n: int, answer_prefix: str = ANSWER_PREFIX,
                  stall_tokens: int = 24) -> Any:
    """Stop generating once all n ids were named, or when `stall_tokens` tokens added no new id
    (a small model looping on '[1] > [1] > ...' or drifting into prose)."""
    from transformers import StoppingCriteria

    class _Stop(StoppingCriteria):
        def __init__(self) -> None:
            self.best = 0
            self.last_gain = 0
            self.steps = 0

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            self.steps += 1
            new = input_ids[0, prompt_len:].tolist()
            text = answer_prefix + tokenizer.decode(new, skip_special_tokens=True)
            found = len(new_ids_in(text, n))
            if found > self.best:
                self.best, self.last_gain = found, self.steps
            done = found >= n or (self.steps - self.last_gain) >= stall_tokens
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return _Stop()


# -- constrained decoding --------------------------------------------------------------------------

_FORMAT_CHARS = frozenset("[]> 0123456789")
_SEP = " > ["


def _format_tokens(tokenizer: Any) -> dict[int, str]:
    """Token id -> text for every token made only of '[', ']', '>', spaces and digits (cached per tokenizer)."""
    cached = getattr(tokenizer, "_longapps_format_tokens", None)
    if cached is not None:
        return cached
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    out = {i: t for i, t in enumerate(texts) if t and i not in special and set(t) <= _FORMAT_CHARS}
    try:
        tokenizer._longapps_format_tokens = out
    except AttributeError:  # pragma: no cover - a tokenizer that refuses attributes
        pass
    return out


class PermutationGrammar:
    """A transformers LogitsProcessor that only lets the model write `[a] > [b] > ...` with distinct ids in
    1..n: the model still chooses the order, but never a malformed, duplicated or out-of-range id. It may
    stop (EOS) after any closed id; ids it never names keep first-stage order."""

    def __init__(self, tokenizer: Any, prompt_len: int, n: int, answer_prefix: str = ANSWER_PREFIX) -> None:
        self.tok = tokenizer
        self.prompt_len = prompt_len
        self.n = n
        self.prefix = answer_prefix
        self.cands = _format_tokens(tokenizer)
        self.eos = [e for e in ([tokenizer.eos_token_id] if isinstance(tokenizer.eos_token_id, int)
                                else list(tokenizer.eos_token_id or [])) if e is not None]
        self._ids = [str(i) for i in range(1, n + 1)]

    def _state(self, text: str) -> tuple[set[str], str, str]:
        """(used ids, state, digits so far) after `text`; states: open, digits, sep0..sep3 (inside ' > [')."""
        used: set[str] = set()
        state, digits = "open", ""
        for ch in text:
            state, digits, used = self._step(state, digits, used, ch, strict=False) or (state, digits, used)
        return used, state, digits

    def _step(self, state: str, digits: str, used: set[str], ch: str, strict: bool = True,
              unused_prefixes: set[str] | None = None) -> tuple[str, str, set[str]] | None:
        if state == "open":
            return ("digits", "", used) if ch == "[" else None
        if state == "digits":
            if ch.isdigit():
                nd = digits + ch
                if unused_prefixes is not None and nd not in unused_prefixes:
                    return None
                return "digits", nd, used
            if ch == "]" and digits:
                if strict and (digits in used or not 1 <= int(digits) <= self.n):
                    return None
                return "sep0", "", used | {digits}
            return None
        k = int(state[3])
        if ch == _SEP[k]:
            return ("digits" if k == 3 else f"sep{k + 1}"), "", used
        return None

    def allowed(self, text: str) -> list[int]:
        used, state, digits = self._state(text)
        unused = [s for s in self._ids if s not in used]
        if not unused:
            return list(self.eos)
        prefixes = {s[:j] for s in unused for j in range(1, len(s) + 1)}
        ok: list[int] = []
        for tid, t in self.cands.items():
            st, dg, us = state, digits, used
            good = True
            for ch in t:
                nxt = self._step(st, dg, us, ch, strict=True, unused_prefixes=prefixes)
                if nxt is None:
                    good = False
                    break
                st, dg, us = nxt
            if good:
                ok.append(tid)
        if state == "sep0":
            ok.extend(self.eos)
        return ok or list(self.eos)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        new = input_ids[0, self.prompt_len:].tolist()
        text = self.prefix + self.tok.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        allowed = self.allowed(text)
        mask = torch.full_like(scores, float("-inf"))
        idx = torch.tensor(allowed, dtype=torch.long, device=scores.device)
        mask[:, idx] = 0.0
        return scores + mask
