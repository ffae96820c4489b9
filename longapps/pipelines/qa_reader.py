"""Answer a question from given context passages with a causal LM: free-form (greedy) or multiple-choice
(log-likelihood of each choice). Contexts are cut to fit the model's window. A prefix KV cache is kept
between calls, so the choices of one question, or many questions over the same long context (the
whole-transcript baseline), pay for the shared prompt once."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

SYSTEM = ("You answer questions about a video. Use only the clip descriptions given (speech transcript, "
          "text shown on screen, visual descriptions). Answer in one short sentence.")


@dataclass
class Context:
    """One passage the answer may come from, and how it is introduced (e.g. 'Clip 2 (1:20-2:40)')."""

    label: str
    text: str


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _crop(cache: Any, length: int) -> None:
    """Cut a KV cache back to its first `length` positions (a negative count = tokens to remove works on
    old and new transformers alike)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def _stop_at_newline(tokenizer: Any, prompt_len: int) -> Any:
    """Stop generating once the answer has a line of text and starts a new line (answers are one line;
    small models otherwise go on repeating themselves)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            import torch

            text = tokenizer.decode(input_ids[0, prompt_len:].tolist(), skip_special_tokens=True)
            done = "\n" in text.strip()
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])


class Reader:
    """`Reader(llm).answer(question, contexts)` / `.choose(question, contexts, choices)`."""

    def __init__(self, llm: Any = None, *, max_new_tokens: int = 48, system: str = SYSTEM,
                 device: str | None = None, context_tokens: int | None = None, cut: str = "head") -> None:
        self._llm_spec = llm
        self._lm: Any = llm if llm is not None and not isinstance(llm, str) else None
        self.max_new_tokens = max_new_tokens
        self.system = system
        self.device = device
        self.context_tokens = context_tokens   # cap on the contexts' tokens (None: the model's window)
        if cut not in ("head", "relevant"):
            raise ValueError("cut: 'head' or 'relevant'")
        self.cut = cut
        self._cache: Any = None
        self._cached: list[int] = []

    @property
    def lm(self) -> Any:
        if self._lm is None:
            from longapps.models.causal_lm import load_causal_lm

            self._lm = load_causal_lm(self._llm_spec, device=self.device)
        return self._lm

    # -- prompts -----------------------------------------------------------------------------------
    def user_text(self, question: str, contexts: Sequence[Context]) -> str:
        body = "\n\n".join(f"{c.label}:\n{c.text}" for c in contexts)
        return f"{body}\n\nQuestion: {question.strip()}"

    def fit(self, question: str, contexts: Sequence[Context], reserve: int = 0) -> list[Context]:
        """Cut contexts so the prompt fits: at most `context_tokens` (else the model's window less the
        prompt and `reserve` answer tokens), the budget split evenly (a short context's unused share goes to
        the others). `cut='relevant'` keeps each context's sentences that share the most words with the
        question (in their original order); `cut='head'` keeps each context's beginning."""
        lm = self.lm
        overhead = len(lm.chat_ids(self.system, self.user_text(question, [Context(c.label, "") for c in contexts])))
        budget = lm.context_length - overhead - reserve - 8
        if budget <= 0:
            raise ValueError("question: too long for the model's context window")
        if self.context_tokens:
            budget = min(budget, self.context_tokens)
        counts = lm.count_tokens([c.text for c in contexts])
        if sum(counts) <= budget:
            return list(contexts)
        left = budget
        order = sorted(range(len(contexts)), key=lambda i: counts[i])   # short ones first: they fit whole
        share: dict[int, int] = {}
        for pos, i in enumerate(order):
            share[i] = min(counts[i], left // (len(order) - pos))
            left -= share[i]
        out: list[Context] = []
        for i, c in enumerate(contexts):
            if share[i] >= counts[i]:
                out.append(c)
            elif share[i] > 0:
                text = self._relevant(c.text, question, share[i]) if self.cut == "relevant" else \
                    self._head(c.text, share[i])
                out.append(Context(c.label, text))
        return out

    def _head(self, text: str, n_tokens: int) -> str:
        tok = self.lm.tokenizer
        return tok.decode(tok(text, add_special_tokens=False)["input_ids"][:n_tokens])

    def _relevant(self, text: str, question: str, n_tokens: int) -> str:
        """The sentences of `text` sharing the most (stemmed, non-stop) words with the question, up to
        `n_tokens`, in text order; gaps are marked with '...'."""
        from longapps.adapters.chunk import split_sentences
        from longapps.index.lexical import tokenize

        spans = split_sentences(text)
        sents = [text[a:b].strip() for a, b in spans if text[a:b].strip()]
        if not sents:
            return ""
        q = set(tokenize(question))
        scores = [len(q & set(tokenize(s))) for s in sents]
        sizes = self.lm.count_tokens(sents)
        keep: set[int] = set()
        used = 0
        for i in sorted(range(len(sents)), key=lambda i: (-scores[i], i)):
            if used + sizes[i] <= n_tokens:
                keep.add(i)
                used += sizes[i]
        if not keep:   # one long sentence: its head
            return self._head(sents[max(range(len(sents)), key=lambda i: scores[i])], n_tokens)
        parts, prev = [], -1
        for i in sorted(keep):
            if prev >= 0 and i != prev + 1:
                parts.append("...")
            parts.append(sents[i])
            prev = i
        return " ".join(parts)

    def prompt_ids(self, question: str, contexts: Sequence[Context], reserve: int) -> list[int]:
        fitted = self.fit(question, contexts, reserve)
        return self.lm.chat_ids(self.system, self.user_text(question, fitted))

    # -- model calls with the prefix cache ---------------------------------------------------------
    def _reuse(self, ids: Sequence[int]) -> int:
        """Crop the cache to the longest prefix it shares with `ids` (leaving >= 1 token to feed)."""
        n = min(_lcp(self._cached, ids), len(ids) - 1)
        if self._cache is not None and n > 0:
            _crop(self._cache, n)
            self._cached = list(ids[:n])
        else:
            self._cache, self._cached, n = None, [], 0
        return n

    def _keep(self, ids: Sequence[int]) -> None:
        _crop(self._cache, len(ids))
        self._cached = list(ids)

    def continuation_logprob(self, prompt: Sequence[int], cont: Sequence[int]) -> float:
        """Sum of log p(cont | prompt) under the model (the prompt's KV cache is kept for the next call)."""
        import torch

        from longapps.models.causal_lm import cache_kwarg

        n = self._reuse(prompt)
        feed = list(prompt[n:]) + list(cont)
        ids = torch.tensor([feed], dtype=torch.long, device=self.lm.model.device)
        with torch.inference_mode():
            out = self.lm.model(input_ids=ids, **{cache_kwarg(self.lm.model): self._cache}, use_cache=True)
        self._cache = out.past_key_values
        logp = torch.log_softmax(out.logits[0].float(), dim=-1)
        first = len(prompt) - n - 1
        total = sum(float(logp[first + j, t]) for j, t in enumerate(cont))
        self._cached = list(prompt) + list(cont)
        self._keep(prompt)
        return total

    def generate(self, prompt: Sequence[int]) -> str:
        """Greedy answer to a prompt (re-using the cached prefix)."""
        import torch

        lm = self.lm
        n = self._reuse(prompt)
        ids = torch.tensor([list(prompt)], dtype=torch.long, device=lm.model.device)
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id
        kwargs: dict[str, Any] = {}
        if n > 0:
            kwargs["past_key_values"] = self._cache
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                    do_sample=False, num_beams=1, pad_token_id=pad, return_dict_in_generate=True,
                                    use_cache=True, stopping_criteria=_stop_at_newline(lm.tokenizer, len(prompt)),
                                    **kwargs)
        self._cache = out.past_key_values
        self._cached = out.sequences[0].tolist()
        self._keep(prompt)
        text = lm.tokenizer.decode(out.sequences[0, len(prompt):].tolist(), skip_special_tokens=True)
        return " ".join(text.strip().split("\n")[0].split())

    # -- the two question kinds --------------------------------------------------------------------
    def answer(self, question: str, contexts: Sequence[Context]) -> str:
        """A free-form answer from the contexts only."""
        return self.generate(self.prompt_ids(question, contexts, reserve=self.max_new_tokens))

    def choose(self, question: str, contexts: Sequence[Context], choices: Sequence[str]) -> tuple[int, list[float]]:
        """Index of the most likely choice and every choice's score: mean log-probability per token of the
        choice as the answer (length-normalised, so long choices are not penalised)."""
        if not choices:
            raise ValueError("choices: at least one expected")
        tok = self.lm.tokenizer
        conts = [tok(" " + c.strip(), add_special_tokens=False)["input_ids"] or [tok.eos_token_id] for c in choices]
        prompt = self.prompt_ids(question, contexts, reserve=max(len(c) for c in conts) + 2)
        prompt = prompt + tok("Answer:", add_special_tokens=False)["input_ids"]
        scores = [self.continuation_logprob(prompt, c) / len(c) for c in conts]
        best = max(range(len(scores)), key=lambda i: scores[i] if not math.isnan(scores[i]) else -math.inf)
        return best, scores
