# Sourced by the session-7 combined device scripts (device_s7_final.sh, device_s7_last.sh): the output folders,
# a time stamp, the carried wheels installed with the device python's own pip, and the chat GPU tests on random
# SmolLM2 weights (the GGUF cannot be carried).
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"/{mamba,ner,chat,i11}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
stamp() { echo "[$((SECONDS - T0)) s] $*"; }
python3 -m pip install -q --no-deps .gpu_assets/wheels/*.whl > "$OUT/pip.log" 2>&1
python3 -c "import nervaluate; print('nervaluate', nervaluate.__file__)" >> "$OUT/pip.log" 2>&1

chat_gpu_tests() {  # chat_gpu_tests LIMIT_S
  python3 benchmarks/make_random_llm.py .gpu_assets/smollm2 /tmp/smollm2_random > "$OUT/chat/random_llm.log" 2>&1
  LONGAPPS_LLM=/tmp/smollm2_random timeout "$1" python3 -m pytest -q -p no:cacheprovider --durations=5 \
    tests/test_chat_gpu.py > "$OUT/chat/chat_gpu_tests.log" 2>&1
  echo "chat gpu tests rc=$?" >> "$OUT/chat/chat_gpu_tests.log"
}
