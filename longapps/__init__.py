"""longapps: make inputs too long for an ordinary transformer usable for real tasks.

Public API (imported lazily, so `import longapps` stays fast):
    CodeSearch, CodeSearchConfig, CodeHit   -- SEA code search (longapps.pipelines.code_search)
    Ranker, Ranked                          -- passage ranking (longapps.pipelines.ranking)
    VideoQA, VideoQAConfig                  -- question answering over long videos (longapps.pipelines.video_qa)
    Matcher, MatchConfig                    -- long-document matching, SMITH (longapps.pipelines.doc_match)
    Retriever, RetrieverConfig              -- long-document dense retrieval, Mamba (longapps.pipelines.retriever)
    NER, Span                               -- long-document NER: NER.load(DIR).predict(text) (longapps.pipelines.ner)
    longapps.attention.attention            -- the efficient-attention entry point (a subpackage: import it)
    load_pipeline(name, **cfg)              -- a pipeline by name
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CodeSearch": "longapps.pipelines.code_search",
    "CodeSearchConfig": "longapps.pipelines.code_search",
    "CodeHit": "longapps.pipelines.code_search",
    "Ranker": "longapps.pipelines.ranking",
    "Ranked": "longapps.pipelines.ranking",
    "VideoQA": "longapps.pipelines.video_qa",
    "VideoQAConfig": "longapps.pipelines.video_qa",
    "Matcher": "longapps.pipelines.doc_match",
    "MatchConfig": "longapps.pipelines.doc_match",
    "Retriever": "longapps.pipelines.retriever",
    "RetrieverConfig": "longapps.pipelines.retriever",
    "NER": "longapps.pipelines.ner",
    "Span": "longapps.pipelines.ner",
    "StreamingChat": "longapps.pipelines.dialogue",
    "ChatConfig": "longapps.pipelines.dialogue",
}

PIPELINES = {"search-code": "longapps.pipelines.code_search:CodeSearch",
             "rank": "longapps.pipelines.ranking:Ranker",
             "match": "longapps.pipelines.doc_match:Matcher",
             "retrieve": "longapps.pipelines.retriever:Retriever",
             "chat": "longapps.pipelines.dialogue:StreamingChat"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'longapps' has no attribute {name!r}")


def load_pipeline(name: str, *args: Any, **kwargs: Any) -> Any:
    """Build a pipeline by its CLI name, e.g. `load_pipeline("search-code", "path/to/repo")`."""
    import importlib

    if name not in PIPELINES:
        raise ValueError(f"name: unknown pipeline '{name}' (known: {', '.join(sorted(PIPELINES))})")
    module, cls = PIPELINES[name].split(":")
    return getattr(importlib.import_module(module), cls)(*args, **kwargs)
