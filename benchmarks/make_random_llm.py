"""Write a causal LM folder with random weights from a config + tokenizer folder (the device cannot carry the
packaged SmolLM2 GGUF; the chat GPU tests need an LLM folder, and their checks do not depend on the weights).

    python3 benchmarks/make_random_llm.py .gpu_assets/smollm2 /tmp/smollm2_random
"""
from __future__ import annotations

import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


def main(src: str, dst: str) -> None:
    """Random weights (seed 0) of the config in `src`, saved with `src`'s tokenizer into `dst`."""
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src)).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    print("wrote", dst)


if __name__ == "__main__":
    main(*sys.argv[1:3])
