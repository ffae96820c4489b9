#!/usr/bin/env bash
# Issue 13 device part: chat GPU tests + decode speed of bigger random-weight Llama shapes (speed only),
# Triton sinks_decode (auto) vs transformers SDPA (off), cache 1024, 30-token replies.
# Needs .gpu_assets/smollm2 (SmolLM2's tokenizer files; recreate from ~/.cache/longapps/llm/*/).
# Usage: bash benchmarks/device_s7_chat.sh   (results under $OUT)
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
timeout ${T_CHAT_TESTS:-90} python3 -m pytest -q -p no:cacheprovider tests/test_chat_gpu.py > "$OUT/chat_gpu_tests.log" 2>&1
echo "chat gpu tests rc=$?" >> "$OUT/chat_gpu_tests.log"
for cfg in ${CHAT_CONFIGS:-llama-1b llama-3b}; do
  timeout ${T_CHAT_SPEED:-75} python3 benchmarks/chat.py speed --llm .gpu_assets/smollm2 --random-config "$cfg" \
    --backends auto off --policies sirllm streaming --replies 3 --tag "speed_$cfg" > "$OUT/chat_speed_$cfg.log" 2>&1
  echo "chat speed $cfg rc=$?" >> "$OUT/chat_speed_$cfg.log"
  cp benchmarks/results/chat_speed_$cfg.json "$OUT/" 2>/dev/null
done
tail -3 "$OUT/chat_gpu_tests.log"; for f in "$OUT"/chat_speed_*.log; do tail -8 "$f"; done
