"""The three shared stages every pipeline wires together: chunk -> encode -> aggregate."""
from longapps.adapters.chunk import Chunk, split_lines, split_tokens
from longapps.adapters.encode import Encoder, EmbeddingCache, load_encoder
from longapps.adapters.aggregate import pool, pool_groups, rrf, fuse_scores

__all__ = [
    "Chunk", "split_lines", "split_tokens",
    "Encoder", "EmbeddingCache", "load_encoder",
    "pool", "pool_groups", "rrf", "fuse_scores",
]
