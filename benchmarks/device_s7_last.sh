#!/usr/bin/env bash
# Session 7, the last short device call (<= 300 s): what run 51 could not finish.
#   [MAMBA_SPEED=1] the Mamba speed table alone first (device_s7_mamba.sh part 1 via mamba_gpu.py speed);
#   then side by side: NER F1 (nervaluate installed with the device's own python), the chat GPU tests on random
#   SmolLM2 weights (longer limit), the issue-11 GPU tests (longer limit).
# Everything packed into $OUT/results.tar.gz. Carry: benchmarks/data/ner_s7.
source benchmarks/device_s7_common.sh
if [ "${MAMBA_SPEED:-0}" = 1 ]; then
  stamp "mamba speed"
  timeout ${T_MAMBA:-120} python3 benchmarks/mamba_gpu.py speed --json "$OUT/mamba/mamba_speed.json" > "$OUT/mamba/speed.log" 2>&1
  echo "speed rc=$?" >> "$OUT/mamba/speed.log"
fi
stamp "side by side"
(OUT=$OUT/ner bash benchmarks/device_s7_ner.sh f1 > "$OUT/ner/stdout.log" 2>&1) &
P1=$!
chat_gpu_tests ${T_CHAT:-200} &
P2=$!
(OUT=$OUT/i11 BUDGET_S=${T_I11:-190} T_TESTS=${T_I11:-180} bash benchmarks/device_s7_issue11.sh tests > "$OUT/i11/tests_stdout.log" 2>&1) &
P3=$!
wait $P1 $P2 $P3
stamp "done"
tar -C "$OUT" -czf "$OUT/results.tar.gz" mamba ner chat i11 pip.log
tail -8 "$OUT/mamba/speed.log" 2>/dev/null; grep -v "^+" "$OUT/ner/stdout.log" | tail -25; tail -8 "$OUT/chat/chat_gpu_tests.log"
grep -E "passed|failed|rc=" "$OUT/i11/gpu_tests.log" | tail -4
rm -rf "$OUT"/mamba "$OUT"/ner "$OUT"/chat "$OUT"/i11
