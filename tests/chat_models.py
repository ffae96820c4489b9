"""Tiny random causal LMs of several families + a char tokenizer with a ChatML template, for the chat tests."""
from __future__ import annotations

import torch

from longapps.models.causal_lm import CausalLM

CHATML = ("{% for m in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are a test bot.<|im_end|>\n' }}{% endif %}"
          "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def char_tokenizer(chat_template: str | None = CHATML):
    """One token per character + ChatML special tokens; ids < 110."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<pad>": 1, "<eos>": 2}
    for c in [chr(i) for i in range(32, 127)] + ["\n"]:
        vocab[c] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                  additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    if chat_template:
        tok.chat_template = chat_template
    return tok


def tiny_model(family: str = "llama", layers: int = 2, context: int = 4096, seed: int = 0, vocab: int = 110,
               hidden: int = 32):
    """A tiny random model of ``family`` (llama | qwen2 | mistral | gemma), float32, eval mode
    (head_dim = hidden / 4)."""
    import transformers as tf

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                  bos_token_id=None, eos_token_id=2, pad_token_id=1, tie_word_embeddings=False)
    if family == "llama":
        cfg = tf.LlamaConfig(**common)
        cls = tf.LlamaForCausalLM
    elif family == "qwen2":
        cfg = tf.Qwen2Config(**common, use_sliding_window=False)
        cls = tf.Qwen2ForCausalLM
    elif family == "mistral":
        cfg = tf.MistralConfig(**common, sliding_window=None)
        cls = tf.MistralForCausalLM
    elif family == "gemma":
        cfg = tf.GemmaConfig(**common, head_dim=hidden // 4)
        cls = tf.GemmaForCausalLM
    else:
        raise ValueError(family)
    return cls(cfg).eval()


def tiny_lm(family: str = "llama", layers: int = 2, context: int = 4096, seed: int = 0, template: bool = True,
            mute_stops: bool = False, hidden: int = 32) -> CausalLM:
    """A tiny chat LM; ``mute_stops`` zeroes the output rows of EOS / <|im_end|> so replies never end early."""
    tok = char_tokenizer(CHATML if template else None)
    model = tiny_model(family, layers, context, seed, vocab=len(tok), hidden=hidden)
    if mute_stops:
        with torch.no_grad():
            for t in ("<eos>", "<|im_end|>"):
                model.lm_head.weight[tok.convert_tokens_to_ids(t)] = 0.0
    return CausalLM(model, tok, f"tiny-{family}", context)


def fresh_logprobs(model, ids) -> torch.Tensor:
    """Reference: log-probs after ``ids`` computed from scratch (positions 0..n-1, no cache games)."""
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor([list(ids)]))
    return torch.log_softmax(out.logits[0, -1].float(), -1)
