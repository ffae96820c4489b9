"""Endless dialogue with bounded memory (SirLLM): ``StreamingChat``.

The three stages, per turn:
1. **chunk** -- the turn is rendered with the model's chat template (only the new piece: the template is
   applied to a fixed dummy history, so a turn costs the same at turn 10 and turn 10,000) and cut into
   chunks that always fit the cache;
2. **encode** -- each chunk runs through the causal LM into the bounded KV cache
   (``longapps.models.bounded_cache``); the model's own log-probabilities give every token its entropy
   score (surprisal), which is what SirLLM keeps;
3. **aggregate** -- the memory policy decides, before each chunk, which cached tokens survive (sinks +
   entropy-selected key tokens + recent); the reply is decoded greedily over what is left, or the best of
   the offered choices is picked by log-likelihood.

    chat = StreamingChat()                          # packaged SmolLM2-135M-Instruct, sirllm, 1024 slots
    print(chat.say("My locker code is 4417.").text)
    i = chat.choose("Which code?", ["4417", "1234"]).choice
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from longapps.models.bounded_cache import (DEFAULT_CACHE_SIZE, DEFAULT_DECAY, DEFAULT_RECENT, DEFAULT_SINKS,
                                           BoundedCache, CacheStats, MemoryConfig, bounded_cache_for)
from longapps.resources import LongappsError

DEFAULT_MAX_NEW_TOKENS = 128
PLAIN_USER, PLAIN_ASSISTANT = "User: ", "Assistant:"


@dataclass
class ChatConfig:
    """Everything a StreamingChat needs besides the model."""

    memory: str = "sirllm"
    cache_size: int = DEFAULT_CACHE_SIZE
    sinks: int = DEFAULT_SINKS
    recent: int | None = DEFAULT_RECENT  # None: a quarter of the cache
    decay: float = DEFAULT_DECAY
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    system: str | None = None
    chunk_size: int = 256
    device: str | None = None  # None: CUDA when present, else CPU

    def memory_config(self) -> MemoryConfig:
        return MemoryConfig(self.memory, self.cache_size, self.sinks, self.recent, self.decay).validate()


@dataclass
class Reply:
    """One assistant turn: the text, how many tokens it took, the cache fill after it and the time."""

    text: str
    tokens: int
    cache_tokens: int
    ms: float
    choice: int | None = None
    interrupted: bool = False
    scores: list[float] | None = None  # choose(): log-likelihood of each choice

    def to_dict(self, turn: int) -> dict:
        d = {"turn": turn}
        if self.choice is not None:
            d["choice"] = self.choice
        d.update(reply=self.text, cache_tokens=self.cache_tokens, ms=round(self.ms, 1))
        if self.interrupted:
            d["interrupted"] = True
        return d


@dataclass
class ChatStats:
    """What /stats shows: turns, cache fill and policy counters, speed of the last turn."""

    turns: int
    cache: CacheStats
    prompt_tokens: int = 0
    reply_tokens: int = 0
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cache"] = self.cache.to_dict()
        return d


class ChatFormat:
    """Token pieces of a turn from the model's chat template, at constant cost per turn.

    ``turn_text(user, first)`` is what to feed for a new user message (the template rendered over a fixed
    one-exchange dummy history, minus that history); ``reply_end`` closes an assistant reply. Models
    without a chat template get a plain "User: ... / Assistant:" format (``plain`` is True)."""

    _U, _A = "<<longapps-user>>", "<<longapps-assistant>>"

    def __init__(self, tokenizer: Any, system: str | None = None) -> None:
        self.tok, self.system = tokenizer, system
        self.plain = not getattr(tokenizer, "chat_template", None)
        if self.plain:
            self.reply_end = "\n"
            return
        head = [{"role": "system", "content": system}] if system else []
        self._head = head
        p = self._render(head + [{"role": "user", "content": self._U}], True)
        self._prev = self._render(head + [{"role": "user", "content": self._U},
                                          {"role": "assistant", "content": self._A}], False)
        cut = self._prev.find(self._A)
        if not self._prev.startswith(p) or cut < 0:
            raise LongappsError("the model's chat template does not render turns incrementally; cannot stream it")
        self.reply_end = self._prev[cut + len(self._A):]

    def _render(self, msgs: list[dict], gen: bool) -> str:
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    def turn_text(self, user: str, first: bool) -> str:
        """The text to feed for a new user message (after the previous reply was closed)."""
        if self.plain:
            return f"{PLAIN_USER}{user}\n{PLAIN_ASSISTANT}"
        if first:
            return self._render(self._head + [{"role": "user", "content": user}], True)
        full = self._render(self._head + [{"role": "user", "content": self._U},
                                          {"role": "assistant", "content": self._A},
                                          {"role": "user", "content": user}], True)
        if not full.startswith(self._prev):
            raise LongappsError("the model's chat template does not render turns incrementally; cannot stream it")
        return full[len(self._prev):]

    def stop_ids(self, model: Any) -> set[int]:
        """Token ids that end a reply: EOS ids and the special token that closes an assistant turn."""
        ids: set[int] = set()
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        for e in ([eos] if isinstance(eos, int) else list(eos or [])) + [self.tok.eos_token_id]:
            if isinstance(e, int):
                ids.add(e)
        end = self.tok(self.reply_end, add_special_tokens=False)["input_ids"] if self.reply_end.strip() else []
        if end and end[0] in set(self.tok.all_special_ids):
            ids.add(end[0])
        return ids


class _TextStream:
    """Incremental detokenization: yields only complete new text (like transformers' TextStreamer)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok, self.ids, self.start, self.printed = tokenizer, [], 0, 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tok.decode(self.ids[self.start:], skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        piece = text[self.printed:]
        if text.endswith(("\n", " ")):
            self.start, self.printed = len(self.ids), 0
        else:
            self.printed = len(text)
        return piece


class StreamingChat:
    """A chat over any HF causal LM with a bounded KV cache and a memory policy (sirllm|streaming|full).

    ``say(text)`` -> Reply (greedy, up to ``max_new_tokens``); ``stream(text)`` yields the reply's text pieces
    as they are decoded; ``choose(text, choices)`` -> Reply with the choice of highest log-likelihood (the
    chosen text becomes the assistant's reply); ``stats()``; ``reset()``."""

    def __init__(self, llm: Any = None, memory: str | None = None, config: ChatConfig | None = None,
                 **options: Any) -> None:
        from longapps.models.causal_lm import CausalLM, cache_kwarg, load_causal_lm

        cfg = config or ChatConfig()
        if memory is not None:
            cfg.memory = memory
        for k, v in options.items():
            if not hasattr(cfg, k):
                raise TypeError(f"StreamingChat got an unknown option {k!r}")
            setattr(cfg, k, v)
        mem = cfg.memory_config()  # validate before loading a model
        if cfg.max_new_tokens < 1 or cfg.chunk_size < 1:
            raise LongappsError("--max-new-tokens and the chunk size must be >= 1")
        if isinstance(llm, CausalLM):
            self.lm = llm
        else:
            device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.lm = load_causal_lm(llm, dtype="bfloat16" if device.startswith("cuda") else "float32",
                                     device=device)
        self.config = cfg
        self.model, self.tok = self.lm.model, self.lm.tokenizer
        self._cache_kw = cache_kwarg(self.model)
        self.format = ChatFormat(self.tok, cfg.system)
        self.notes: list[str] = []
        if self.format.plain:
            self.notes.append(f"{self.lm.name} has no chat template: using a plain "
                              f"'{PLAIN_USER.strip()} ... / {PLAIN_ASSISTANT}' format")
        self.cache: BoundedCache = bounded_cache_for(self.model, mem, self.lm.context_length)
        if mem.memory != "full" and mem.cache_size > self.lm.context_length:
            self.notes.append(f"--cache-size {mem.cache_size} is larger than the model's context "
                              f"({self.lm.context_length}); positions beyond it are untrained")
        if self.device.type == "cuda":
            from longapps.models.cache_attention import use_backend_attention
            use_backend_attention(self.model)
        self.stop = self.format.stop_ids(self.model)
        self.turns = 0
        self._last_logp: torch.Tensor | None = None  # log-probs after the last fed token
        self._closing = False  # a reply is open: feed format.reply_end before the next user turn
        self._reply_parts: list[str] | None = None  # text pieces of the reply being decoded
        self._speed = (0, 0, 0.0, 0.0)  # prompt tokens, reply tokens, prefill s, decode s

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- encode: run tokens into the cache -------------------------------------------------------------
    def _forward(self, ids: list[int], want_all: bool) -> torch.Tensor:
        """Run ``ids`` (which must fit) into the cache, record them with their entropy scores; returns the
        log-probs at every position (want_all) or at the last one. A failure (Ctrl-C) rolls back."""
        cache, n0 = self.cache, self.cache.length
        score = self.cache.config.memory == "sirllm"
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        try:
            with torch.inference_mode():
                out = self.model(input_ids=x, **{self._cache_kw: cache}, use_cache=True,
                                 logits_to_keep=0 if (score or want_all) else 1)
            logp = torch.log_softmax(out.logits[0].float(), dim=-1)
        except BaseException:
            cache.rollback(n0)
            raise
        scores = None
        if score:
            tgt = torch.tensor(ids, device=logp.device)
            prev = torch.cat([self._last_logp[None], logp[:-1]]) if self._last_logp is not None else None
            if prev is not None:
                scores = -prev.gather(1, tgt[:, None])[:, 0]
            else:  # the very first token has no context: no surprisal
                scores = torch.cat([torch.zeros(1, device=logp.device),
                                    -logp[:-1].gather(1, tgt[1:, None])[:, 0]])
        cache.record(ids, scores)
        self._last_logp = logp[-1]
        return logp

    def _feed(self, ids: list[int], reserve: int = 0) -> None:
        """Feed ``ids`` in chunks that fit, evicting by policy first; ``reserve`` more slots are made free
        up front when it costs no extra eviction pass (room for the reply). Nothing per chunk is kept (a
        100k-token turn would otherwise hold 400 chunks' log-probs: ~20 GB for a 49k vocabulary)."""
        cache = self.cache
        chunk = max(1, min(self.config.chunk_size, cache.max_room()))
        need = min(len(ids) + reserve, cache.max_room())
        if cache.length + need > cache.capacity:
            cache.make_room(need)
        for i in range(0, len(ids), chunk):
            part = ids[i:i + chunk]
            cache.make_room(len(part))
            self._forward(part, want_all=False)

    def _turn_ids(self, user: str) -> list[int]:
        text = self.format.turn_text(user, first=self.cache.seen == 0)
        if self._closing:
            text = self.format.reply_end + text
        special = self.format.plain and self.cache.seen == 0
        return self.tok(text, add_special_tokens=special)["input_ids"]

    @staticmethod
    def _check(text: Any) -> str:
        if not isinstance(text, str):
            raise LongappsError(f"a turn must be text, got {type(text).__name__}")
        if not text.strip():
            raise LongappsError("empty turn: type a message (or /help)")
        return text

    # -- aggregate: decode a reply / pick a choice ------------------------------------------------------
    def stream(self, text: str) -> Iterator[str]:
        """Feed a user turn, then yield the reply's text as it is decoded (greedy)."""
        self._check(text)
        t0 = time.perf_counter()
        self._reply_parts = None
        ids = self._turn_ids(text)
        self.cache.decay()
        n_before, ev_before = self.cache.length, self.cache.evictions
        try:
            self._feed(ids, reserve=self.config.max_new_tokens)
        except KeyboardInterrupt:
            if self.cache.evictions == ev_before:  # nothing lost yet: forget the half-fed turn
                self.cache.rollback(n_before)
            else:  # part of the turn is in the cache for good: close it like a reply
                self._closing = True
            raise
        self._closing = True
        self.turns += 1
        t1 = time.perf_counter()
        streamer, made = _TextStream(self.tok), 0
        reply: list[str] = []
        self._reply_parts = reply
        stop_text = "\n" + PLAIN_USER.strip()
        try:
            while made < self.config.max_new_tokens:
                tok = int(torch.argmax(self._last_logp))
                if tok in self.stop:
                    break
                self._feed([tok], reserve=self.config.max_new_tokens - made)
                made += 1
                piece = streamer.push(tok)
                if piece:
                    reply.append(piece)
                    if self.format.plain and stop_text in "".join(reply):
                        break
                    yield piece
        finally:
            t2 = time.perf_counter()
            self._speed = (len(ids), made, t1 - t0, t2 - t1)

    def say(self, text: str, on_token: Callable[[str], None] | None = None) -> Reply:
        """One user turn and the model's greedy reply (``on_token`` gets each text piece as decoded)."""
        t0 = time.perf_counter()
        interrupted = False
        gen = self.stream(text)
        try:
            for piece in gen:
                if on_token:
                    on_token(piece)
        except KeyboardInterrupt:
            gen.close()
            if self._reply_parts is None:  # interrupted before the reply began: no turn happened
                raise
            interrupted = True
        text_out = "".join(self._reply_parts or [])
        if self.format.plain:
            text_out = text_out.split("\n" + PLAIN_USER.strip())[0]
        return Reply(text_out.strip(), self._speed[1], self.cache.length, (time.perf_counter() - t0) * 1000,
                     interrupted=interrupted)

    def choose(self, text: str, choices: Sequence[str]) -> Reply:
        """Pick the choice the model finds most likely after ``text`` (sum of token log-probs, SirLLM's
        multiple-choice protocol); the chosen text is then fed as the assistant's reply."""
        self._check(text)
        if not choices or not all(isinstance(c, str) and c.strip() for c in choices):
            raise LongappsError("choices must be a non-empty list of non-empty strings")
        t0 = time.perf_counter()
        cids = [self.tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        longest = max(len(c) for c in cids)
        if longest + 1 > self.cache.max_room():
            raise LongappsError(f"a choice of {longest} tokens does not fit the cache ({self.cache.max_room()} free "
                                "slots at most); raise --cache-size")
        ids = self._turn_ids(text)
        self.cache.decay()
        self._feed(ids, reserve=longest)
        self._closing = True
        self.turns += 1
        self.cache.make_room(longest)
        base, last = self.cache.length, self._last_logp
        lls = []
        for c in (cids if len(cids) > 1 else []):  # one choice: nothing to compare, just feed it
            logp = self._forward(c, want_all=True)
            prev = torch.cat([last[None], logp[:-1]])
            lls.append(float(prev.gather(1, torch.tensor(c, device=prev.device)[:, None]).sum()))
            self.cache.rollback(base)
            self._last_logp = last
        best = max(range(len(lls)), key=lls.__getitem__) if lls else 0
        self._forward(cids[best], want_all=False)
        self._speed = (len(ids), len(cids[best]), (time.perf_counter() - t0), 0.0)
        return Reply(choices[best], len(cids[best]), self.cache.length, (time.perf_counter() - t0) * 1000,
                     choice=best, scores=lls)

    # -- state ------------------------------------------------------------------------------------------
    def stats(self) -> ChatStats:
        p, r, tp, td = self._speed
        return ChatStats(self.turns, self.cache.stats(), p, r, p / tp if tp > 0 else 0.0, r / td if td > 0 else 0.0)

    def checkpoint(self) -> dict:
        """A copy of the conversation state (cache included) to branch from; see ``restore``."""
        import copy

        return copy.deepcopy({"cache": self.cache, "last": self._last_logp, "closing": self._closing,
                              "turns": self.turns})

    def restore(self, state: dict) -> None:
        """Go back to a ``checkpoint()`` (the checkpoint stays reusable)."""
        import copy

        st = copy.deepcopy(state)
        self.cache, self._last_logp, self._closing, self.turns = st["cache"], st["last"], st["closing"], st["turns"]

    def reset(self) -> None:
        """Forget the conversation (the cache keeps its buffers)."""
        self.cache.clear()
        self.turns, self._last_logp, self._closing = 0, None, False
        self._speed = (0, 0, 0.0, 0.0)


__all__ = ["StreamingChat", "ChatConfig", "ChatFormat", "Reply", "ChatStats", "DEFAULT_MAX_NEW_TOKENS"]
