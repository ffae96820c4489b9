#!/usr/bin/env bash
# Issue 13 device part (results under $OUT):
#  1. (background, CPU cores 14-15 only, no GPU) the 10,000-turn bounded run on a quiet 2-core slice: SmolLM2-135M
#     shape, first 2 layers, RANDOM weights (the real ones cannot be carried; boundedness is the cache's
#     property), cache 1024, 2-token replies -> RSS and per-turn latency at turns 10 / 1,000 / 10,000;
#  2. chat GPU tests; 3. decode speed of bigger random-weight Llama shapes (speed only), Triton sinks_decode
#     (auto) vs transformers SDPA (off), cache 1024, 30-token replies.
# Needs .gpu_assets/smollm2 (SmolLM2's tokenizer files; recreate from ~/.cache/longapps/llm/*/) and
# benchmarks/data/chat (carry; built by benchmarks/chat_data.py).
# Usage: bash benchmarks/device_s7_chat.sh   (call `wait_bounded` part with: bash benchmarks/device_s7_chat.sh wait)
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
if [ "${1:-}" != "wait" ]; then
  (CUDA_VISIBLE_DEVICES= LONGAPPS_THREADS=2 OMP_NUM_THREADS=2 timeout ${T_BOUNDED:-560} taskset -c ${BOUNDED_CPUS:-14,15} \
    python3 benchmarks/chat.py bounded --llm .gpu_assets/smollm2 --random-config smollm2-135m --layers 2 \
    --turns ${BOUNDED_TURNS:-10000} --max-new-tokens 2 --window 25 > "$OUT/chat_bounded_device.log" 2>&1;
   echo "bounded rc=$?" >> "$OUT/chat_bounded_device.log"; cp benchmarks/results/chat_bounded.json "$OUT/chat_bounded_device.json") &
  echo $! > "$OUT/bounded.pid"
  timeout ${T_CHAT_TESTS:-90} taskset -c 0-13 python3 -m pytest -q -p no:cacheprovider tests/test_chat_gpu.py > "$OUT/chat_gpu_tests.log" 2>&1
  echo "chat gpu tests rc=$?" >> "$OUT/chat_gpu_tests.log"
  for cfg in ${CHAT_CONFIGS:-llama-1b llama-3b}; do
    timeout ${T_CHAT_SPEED:-75} taskset -c 0-13 python3 benchmarks/chat.py speed --llm .gpu_assets/smollm2 --random-config "$cfg" \
      --backends auto off --policies sirllm streaming --replies 3 --tag "speed_$cfg" > "$OUT/chat_speed_$cfg.log" 2>&1
    echo "chat speed $cfg rc=$?" >> "$OUT/chat_speed_$cfg.log"
    cp benchmarks/results/chat_speed_$cfg.json "$OUT/" 2>/dev/null
  done
  tail -3 "$OUT/chat_gpu_tests.log"; for f in "$OUT"/chat_speed_*.log; do tail -8 "$f"; done
else
  while kill -0 "$(cat "$OUT/bounded.pid")" 2>/dev/null; do sleep 5; done
  tail -8 "$OUT/chat_bounded_device.log"
fi
