"""A bounded KV cache for endless dialogue: attention sinks + entropy-selected key tokens + recent tokens.

Three memory policies over one cache of ``cache_size`` token slots (every layer keeps the same tokens):

- ``sirllm``    (SirLLM): the first ``sinks`` tokens, the ``recent`` most recent tokens, and the rest of the
  budget filled with the tokens of highest *decayed token entropy* (surprisal -log p(token | context), as
  the model saw it; every score is multiplied by ``decay`` at each new turn), all kept in their original order;
- ``streaming`` (StreamingLLM): sinks + the most recent tokens;
- ``full``: no eviction; the model's context is the limit (``ContextFullError`` beyond it).

Positions stay valid after eviction: the cache is compacted, token ``i`` of the cache sits at position ``i``,
and its key is re-rotated (RoPE) to that slot. Re-rotation starts from a float32 copy of the key *before*
RoPE (kept per slot), so repeated evictions never accumulate rounding error, also in bf16/fp16.
Works with any HF model whose attention uses rotate-half RoPE with a single ``inv_freq`` (Llama, SmolLM2,
Qwen2, Mistral, Gemma, Phi-3, ...); partial rotary (``rotary_dim < head_dim``) is handled.

The cache is a ``transformers`` 5 ``Cache`` (``update`` / ``get_seq_length`` / ``get_mask_sizes`` per layer),
so the model's own forward uses it unchanged; eviction happens *between* forward calls, driven by
``longapps.pipelines.dialogue`` (``make_room`` before each chunk of input).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from longapps.resources import LongappsError

from longapps.models.memory_defaults import (DEFAULT_CACHE_SIZE, DEFAULT_DECAY, DEFAULT_RECENT,  # noqa: F401
                                            DEFAULT_SINKS, EVICT_FRACTION, POLICIES, RECENT_FRACTION)


class ContextFullError(LongappsError):
    """The ``full`` policy ran out of the model's context."""


@dataclass(frozen=True)
class MemoryConfig:
    """What to keep: policy, cache size (token slots), sinks, recent window, per-turn score decay."""

    memory: str = "sirllm"
    cache_size: int = DEFAULT_CACHE_SIZE
    sinks: int = DEFAULT_SINKS
    recent: int | None = DEFAULT_RECENT  # None: cache_size // RECENT_FRACTION
    decay: float = DEFAULT_DECAY

    @property
    def recent_tokens(self) -> int:
        """The recent window in tokens (the default is a quarter of the cache)."""
        return self.cache_size // RECENT_FRACTION if self.recent is None else self.recent

    def validate(self) -> "MemoryConfig":
        """Raise LongappsError (one line) on settings that cannot work."""
        if self.memory not in POLICIES:
            raise LongappsError(f"unknown memory policy '{self.memory}' (choose from {', '.join(POLICIES)})")
        if self.sinks < 0 or self.recent_tokens < 0:
            raise LongappsError("--sinks and --recent must be >= 0")
        if not 0.0 <= self.decay <= 1.0:
            raise LongappsError(f"--decay must be in [0, 1], got {self.decay}")
        if self.memory != "full":
            if self.cache_size <= self.sinks:
                raise LongappsError(f"--cache-size ({self.cache_size}) must be larger than --sinks ({self.sinks}): "
                                    "no room would be left for the conversation")
            if self.cache_size < self.sinks + 16:
                raise LongappsError(f"--cache-size ({self.cache_size}) leaves fewer than 16 slots beside "
                                    f"{self.sinks} sinks; use at least {self.sinks + 16}")
        return self


class Rope:
    """The rotary embedding of a model, as needed to re-rotate cached keys: the frequencies (float64) and
    the number of leading head dimensions they rotate (rotate-half layout)."""

    def __init__(self, inv_freq: torch.Tensor, rot_dim: int) -> None:
        self.inv_freq, self.rot_dim = inv_freq.to(torch.float64).cpu(), rot_dim
        self._last: tuple[Any, Any] = (None, None)  # every layer asks for the same angles in one forward

    def cos_sin(self, positions: torch.Tensor, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (len(positions), rot_dim) in float32 (angles computed in float64)."""
        key = (positions.numel(), int(positions[0]) if positions.numel() else 0, str(device))
        if self._last[0] == key and positions.numel() and torch.equal(self._last[1][0], positions):
            return self._last[1][1]
        ang = positions.to(torch.float64)[:, None].cpu() * self.inv_freq[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        out = ang.cos().float().to(device), ang.sin().float().to(device)
        self._last = (key, (positions.clone(), out))
        return out

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate the first rot_dim dims of x (..., N, D) by the angles (N, rot_dim); float32 result."""
        x = x.float()
        r, rest = x[..., :self.rot_dim], x[..., self.rot_dim:]
        half = self.rot_dim // 2
        rh = torch.cat([-r[..., half:], r[..., :half]], dim=-1)
        out = r * cos + rh * sin
        return torch.cat([out, rest], dim=-1) if rest.shape[-1] else out


def find_rope(model: Any) -> Rope | None:
    """The model's rotary embedding (its ``inv_freq`` buffer), or None when it has no RoPE.

    Raises LongappsError when the model has several different rotary embeddings (e.g. Gemma 3's local and
    global bases), which a single re-rotation cannot serve."""
    found: list[torch.Tensor] = []
    for name, buf in model.named_buffers():
        if name.endswith("inv_freq") and not name.endswith("original_inv_freq"):
            if not any(buf.shape == f.shape and torch.equal(buf.cpu(), f) for f in found):
                found.append(buf.detach().cpu())
    if not found:
        return None
    if len(found) > 1:
        raise LongappsError("this model has several rotary embeddings (per-layer RoPE bases); the bounded cache "
                            "supports one; use --memory full")
    return Rope(found[0], 2 * found[0].numel())


class BoundedLayer(CacheLayerMixin):
    """One layer's keys/values in a buffer that grows to ``capacity`` slots and never beyond.

    ``update`` appends and returns views of the filled slots; ``keep`` compacts the layer to the given
    slots (re-rotating keys to their new positions); ``truncate`` drops the tail (rollback)."""

    is_sliding = False
    is_compileable = False
    is_croppable = True

    def __init__(self, capacity: int, rope: Rope | None) -> None:
        super().__init__()
        self.capacity = capacity
        self.rope = rope
        self.length = 0
        self._k = self._v = self._raw = None  # buffers (B, H, alloc, D); _raw = float32 keys before RoPE

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        self._alloc(key_states, value_states, min(self.capacity, 64))
        self.is_initialized = True

    def _alloc(self, k: torch.Tensor, v: torch.Tensor, n: int) -> None:
        b, h, _, d = k.shape
        new_k = k.new_empty(b, h, n, d)
        new_v = v.new_empty(b, h, n, v.shape[-1])
        new_raw = k.new_empty(b, h, n, d, dtype=torch.float32) if self.rope is not None else None
        if self._k is not None and self.length:
            new_k[:, :, :self.length] = self._k[:, :, :self.length]
            new_v[:, :, :self.length] = self._v[:, :, :self.length]
            if new_raw is not None:
                new_raw[:, :, :self.length] = self._raw[:, :, :self.length]
        self._k, self._v, self._raw = new_k, new_v, new_raw

    def _views(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys = self._k[:, :, :self.length]
        self.values = self._v[:, :, :self.length]
        return self.keys, self.values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        start, end = self.length, self.length + n
        if end > self.capacity:
            raise RuntimeError(f"bounded cache overflow ({end} > {self.capacity} slots): make_room() was not called")
        if end > self._k.shape[2]:
            self._alloc(key_states, value_states, min(self.capacity, max(end, 2 * self._k.shape[2])))
        self._k[:, :, start:end] = key_states
        self._v[:, :, start:end] = value_states
        if self.rope is not None:  # remember the key before RoPE: rotate back by its slot position
            cos, sin = self.rope.cos_sin(-torch.arange(start, end), key_states.device)
            self._raw[:, :, start:end] = self.rope.rotate(key_states, cos, sin)
        self.length = end
        return self._views()

    def keep(self, idx: torch.Tensor, first_moved: int, cos: torch.Tensor | None, sin: torch.Tensor | None) -> None:
        """Compact to the slots ``idx`` (sorted); slots before ``first_moved`` stay where they are; the moved
        keys are rotated from their pre-RoPE copy to their new positions (cos/sin of those positions)."""
        if not self.is_initialized:
            return
        moved = idx[first_moved:].to(self._k.device)
        lo, hi = first_moved, idx.numel()
        if lo == hi:  # only the tail was dropped
            self.truncate(hi)
            return
        self._v[:, :, lo:hi] = self._v.index_select(2, moved)
        if self.rope is not None:
            raw = self._raw.index_select(2, moved)
            self._raw[:, :, lo:hi] = raw
            self._k[:, :, lo:hi] = self.rope.rotate(raw, cos, sin).to(self._k.dtype)
        else:
            self._k[:, :, lo:hi] = self._k.index_select(2, moved)
        self.length = hi
        self._views()

    def truncate(self, length: int) -> None:
        """Drop every slot from ``length`` on (a rollback after an interrupted or trial forward)."""
        self.length = min(self.length, length)
        if self.is_initialized:
            self._views()

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.capacity

    def crop(self, tokens_to_remove: int) -> None:
        self.truncate(self.length - tokens_to_remove if tokens_to_remove >= 0 else -tokens_to_remove)

    def reset(self) -> None:
        self.truncate(0)


@dataclass
class CacheStats:
    """Numbers for /stats: fill, what was kept and why."""

    policy: str
    capacity: int
    tokens: int
    sinks: int
    key_tokens: int
    recent: int
    seen: int
    evicted: int
    evictions: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class BoundedCache(Cache):
    """A transformers ``Cache`` of at most ``capacity`` tokens per layer with a memory policy.

    Per kept token it tracks its id, its absolute index in the conversation and its (decayed) entropy
    score. The driver calls ``make_room(n)`` before a forward of n tokens and ``record(ids, scores)``
    after it; ``rollback(length)`` undoes a forward (trial scoring, Ctrl-C)."""

    def __init__(self, num_layers: int, config: MemoryConfig, rope: Rope | None, context_length: int) -> None:
        config.validate()
        if config.memory != "full" and rope is None:
            raise LongappsError(f"--memory {config.memory} needs a model with rotary position embeddings (RoPE) "
                                "to keep positions valid after eviction; use --memory full")
        capacity = context_length if config.memory == "full" else config.cache_size
        super().__init__(layers=[BoundedLayer(capacity, rope if config.memory != "full" else None)
                                 for _ in range(num_layers)])
        self.config, self.rope, self.capacity = config, rope, capacity
        self.ids = torch.zeros(0, dtype=torch.long)
        self.abs_pos = torch.zeros(0, dtype=torch.long)
        self.scores = torch.zeros(0, dtype=torch.float32)
        self.seen = self.evicted = self.evictions = 0
        self.last_key_tokens = 0

    # -- bookkeeping -------------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Tokens in the cache (every layer agrees between forward calls)."""
        return int(self.ids.numel())

    def record(self, ids: torch.Tensor | list[int], scores: torch.Tensor | None = None) -> None:
        """Register the tokens of the forward that just ran (their entropy scores for sirllm)."""
        ids = torch.as_tensor(ids, dtype=torch.long).flatten().cpu()
        n = ids.numel()
        sc = torch.zeros(n) if scores is None else scores.detach().float().flatten().cpu()
        self.ids = torch.cat([self.ids, ids])
        self.abs_pos = torch.cat([self.abs_pos, torch.arange(self.seen, self.seen + n)])
        self.scores = torch.cat([self.scores, sc])
        self.seen += n

    def rollback(self, length: int) -> None:
        """Forget every token from slot ``length`` on, in all layers and the bookkeeping."""
        drop = max(0, self.length - length)
        for layer in self.layers:
            layer.truncate(length)
        self.ids, self.abs_pos, self.scores = self.ids[:length], self.abs_pos[:length], self.scores[:length]
        self.seen -= drop

    def decay(self) -> None:
        """A new turn: every kept score is multiplied by ``decay`` (old surprises fade)."""
        self.scores.mul_(self.config.decay)

    def clear(self) -> None:
        """Empty the cache (a new conversation); buffers are kept for reuse."""
        self.rollback(0)
        self.seen = self.evicted = self.evictions = self.last_key_tokens = 0

    # -- eviction ----------------------------------------------------------------------------------
    def max_room(self) -> int:
        """The most tokens one forward may add after eviction (everything but the sinks)."""
        return self.capacity if self.config.memory == "full" else self.capacity - self.config.sinks

    def make_room(self, n: int) -> None:
        """Evict (by policy) so that ``n`` more tokens fit; ``full`` raises ContextFullError instead."""
        if self.length + n <= self.capacity:
            return
        if self.config.memory == "full":
            raise ContextFullError(f"the conversation filled the model's context ({self.capacity} tokens) with "
                                   "--memory full; /reset, or use --memory sirllm or streaming")
        if n > self.max_room():
            raise ValueError(f"cannot make room for {n} tokens in a cache of {self.capacity} with "
                             f"{self.config.sinks} sinks (feed at most {self.max_room()} at once)")
        # evict at least 1/16 of the cache at a time: re-rotating the kept keys costs about as much as a
        # decode step, so doing it every few turns instead of every turn keeps turns cheap
        self.keep(self.select(self.capacity - min(self.max_room(), max(n, self.capacity // EVICT_FRACTION))))

    def select(self, budget: int) -> torch.Tensor:
        """Sorted slots to keep so that ``budget`` slots remain: sinks + key tokens + recent."""
        L, cfg = self.length, self.config
        s = min(cfg.sinks, budget, L)
        if cfg.memory == "streaming":
            r = budget - s
        else:
            r = min(cfg.recent_tokens, budget - s)
        k = budget - s - r
        middle = torch.arange(s, L - r)
        if k > 0 and middle.numel():
            top = torch.topk(self.scores[s:L - r], min(k, middle.numel())).indices + s
            keys = torch.sort(top).values
        else:
            keys = torch.zeros(0, dtype=torch.long)
        self.last_key_tokens = int(keys.numel())
        return torch.cat([torch.arange(s), keys, torch.arange(L - r, L)])

    def keep(self, idx: torch.Tensor) -> None:
        """Compact every layer to the slots ``idx`` (sorted, unique); keys re-rotated to their new slots."""
        n = idx.numel()
        same = (idx == torch.arange(n))
        first_moved = n if bool(same.all()) else int((~same).nonzero()[0])
        cos = sin = None
        if self.rope is not None and first_moved < n:
            dev = next((la._k.device for la in self.layers if la.is_initialized), torch.device("cpu"))
            cos, sin = self.rope.cos_sin(torch.arange(first_moved, n), dev)
        with torch.inference_mode():  # the buffers are inference tensors when the model ran under it
            for layer in self.layers:
                layer.keep(idx, first_moved, cos, sin)
        self.evicted += self.length - n
        self.evictions += 1
        self.ids, self.abs_pos, self.scores = self.ids[idx], self.abs_pos[idx], self.scores[idx]

    def stats(self) -> CacheStats:
        cfg = self.config
        s = min(cfg.sinks, self.length) if cfg.memory != "full" else 0
        return CacheStats(cfg.memory, self.capacity, self.length, s,
                          self.last_key_tokens if cfg.memory == "sirllm" else 0,
                          self.length - s - (self.last_key_tokens if cfg.memory == "sirllm" else 0),
                          self.seen, self.evicted, self.evictions)


def bounded_cache_for(model: Any, config: MemoryConfig, context_length: int) -> BoundedCache:
    """A BoundedCache sized for ``model`` (one layer per decoder layer)."""
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = int(getattr(text_cfg, "num_hidden_layers"))
    rope = find_rope(model) if config.memory != "full" else None
    return BoundedCache(layers, config, rope, context_length)


__all__ = ["MemoryConfig", "BoundedCache", "BoundedLayer", "Rope", "find_rope", "bounded_cache_for",
           "ContextFullError", "CacheStats", "POLICIES", "DEFAULT_CACHE_SIZE", "DEFAULT_SINKS", "DEFAULT_RECENT",
           "DEFAULT_DECAY"]
