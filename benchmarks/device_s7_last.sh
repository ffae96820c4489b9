#!/usr/bin/env bash
# Session 7, the last short device call (<= 300 s): what run 51 could not finish.
#   [MAMBA_SPEED=1] the Mamba speed table alone first (device_s7_mamba.sh part 1 via mamba_gpu.py speed);
#   then side by side: NER F1 (nervaluate installed with the device's own python), the chat GPU tests on random
#   SmolLM2 weights (longer limit), the issue-11 GPU tests (longer limit).
# Everything packed into $OUT/results.tar.gz. Carry: benchmarks/data/ner_s7.
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"/{mamba,ner,chat,i11}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
stamp() { echo "[$((SECONDS - T0)) s] $*"; }
python3 -m pip install -q --no-deps .gpu_assets/wheels/*.whl > "$OUT/pip.log" 2>&1
python3 -c "import nervaluate; print('nervaluate', nervaluate.__file__)" >> "$OUT/pip.log" 2>&1
if [ "${MAMBA_SPEED:-0}" = 1 ]; then
  stamp "mamba speed"
  timeout ${T_MAMBA:-120} python3 benchmarks/mamba_gpu.py speed --json "$OUT/mamba/mamba_speed.json" > "$OUT/mamba/speed.log" 2>&1
  echo "speed rc=$?" >> "$OUT/mamba/speed.log"
fi
stamp "side by side"
(OUT=$OUT/ner bash benchmarks/device_s7_ner.sh f1 > "$OUT/ner/stdout.log" 2>&1) &
P1=$!
(
  python3 benchmarks/make_random_llm.py .gpu_assets/smollm2 /tmp/smollm2_random > "$OUT/chat/random_llm.log" 2>&1
  LONGAPPS_LLM=/tmp/smollm2_random timeout ${T_CHAT:-200} python3 -m pytest -q -p no:cacheprovider --durations=5 \
    tests/test_chat_gpu.py > "$OUT/chat/chat_gpu_tests.log" 2>&1; echo "chat gpu tests rc=$?" >> "$OUT/chat/chat_gpu_tests.log"
) &
P2=$!
(OUT=$OUT/i11 BUDGET_S=${T_I11:-190} T_TESTS=${T_I11:-180} bash benchmarks/device_s7_issue11.sh tests > "$OUT/i11/tests_stdout.log" 2>&1) &
P3=$!
wait $P1 $P2 $P3
stamp "done"
tar -C "$OUT" -czf "$OUT/results.tar.gz" mamba ner chat i11 pip.log
tail -8 "$OUT/mamba/speed.log" 2>/dev/null; grep -v "^+" "$OUT/ner/stdout.log" | tail -25; tail -8 "$OUT/chat/chat_gpu_tests.log"
grep -E "passed|failed|rc=" "$OUT/i11/gpu_tests.log" | tail -4
rm -rf "$OUT"/mamba "$OUT"/ner "$OUT"/chat "$OUT"/i11
