"""Defaults of the bounded dialogue memory (`bounded_cache`), importable without torch (the CLI's --help)."""
from __future__ import annotations

POLICIES = ("sirllm", "streaming", "full")
DEFAULT_CACHE_SIZE = 1024
DEFAULT_SINKS = 4
# --recent default: None = a quarter of the cache (tuned on the dev tasks: benchmarks/chat.py, NOTES.md)
DEFAULT_RECENT: int | None = None
RECENT_FRACTION = 4
DEFAULT_DECAY = 0.9
EVICT_FRACTION = 16
