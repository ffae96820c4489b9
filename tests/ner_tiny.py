"""Tiny random encoders (real tokenizer, random weights) for fast NER tests."""
from __future__ import annotations

from pathlib import Path


def tiny_base(folder: Path, kind: str = "bert", max_positions: int = 64) -> str:
    """Save a tiny random BERT / RoBERTa-style / Longformer model with the packaged MiniLM (WordPiece)
    tokenizer into ``folder``; returns the path."""
    from transformers import (AutoTokenizer, BertConfig, BertModel, LongformerConfig, LongformerModel,
                              RobertaConfig, RobertaModel)

    from longapps.resources import default_encoder_path

    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    common = dict(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if kind == "bert":
        model = BertModel(BertConfig(max_position_embeddings=max_positions, **common))
    elif kind == "roberta":
        model = RobertaModel(RobertaConfig(max_position_embeddings=max_positions + 2, pad_token_id=tok.pad_token_id,
                                           **common))
    elif kind == "longformer":
        model = LongformerModel(LongformerConfig(max_position_embeddings=max_positions + 2, attention_window=16,
                                                 pad_token_id=tok.pad_token_id, **common))
    else:
        raise ValueError(kind)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
