#!/usr/bin/env bash
# Session 7, the last device call (<= 600 s): the GPU parts of issues 16, 12, 13 and 11 packed together.
#   t=0      Mamba speed table alone on the GPU (device_s7_mamba.sh part 1), then, while its tests + training run:
#            NER F1 (device_s7_ner.sh f1; nervaluate from .gpu_assets/wheels), the chat GPU tests on random
#            SmolLM2 weights (LONGAPPS_LLM), the issue-11 GPU tests;
#   after    the issue-11 timing parts (attention table, host, Longformer) with what is left of the budget.
# Everything is packed into $OUT/results.tar.gz (the device returns only a few files).
# Carry: benchmarks/data/mamba_dev benchmarks/data/ner_s7 (.gpu_assets travels untracked).
source benchmarks/device_s7_common.sh
stamp "mamba"
(OUT=$OUT/mamba bash benchmarks/device_s7_mamba.sh > "$OUT/mamba/stdout.log" 2>&1) &
MPID=$!
while ! grep -q "2. GPU tests" "$OUT/mamba/stdout.log" 2>/dev/null; do
  kill -0 $MPID 2>/dev/null || break; sleep 2
done
stamp "mamba speed done; side jobs start"
(OUT=$OUT/ner T_SPEED=0 bash benchmarks/device_s7_ner.sh f1 > "$OUT/ner/stdout.log" 2>&1) &
NPID=$!
(
  chat_gpu_tests 120
  OUT=$OUT/i11 BUDGET_S=100 bash benchmarks/device_s7_issue11.sh tests > "$OUT/i11/tests_stdout.log" 2>&1
) &
CPID=$!
wait $MPID $NPID $CPID
stamp "parallel part done"
LEFT=$((545 - (SECONDS - T0)))
if ((LEFT > 40)); then
  OUT=$OUT/i11 BUDGET_S=$LEFT bash benchmarks/device_s7_issue11.sh attn host lf > "$OUT/i11/timing_stdout.log" 2>&1
fi
stamp "all done"
rm -f "$OUT"/mamba/model_*.tar.part-* 
tar -C "$OUT" -czf "$OUT/results.tar.gz" mamba ner chat i11 pip.log
tail -25 "$OUT/mamba/stdout.log"; tail -15 "$OUT/ner/stdout.log"; tail -3 "$OUT/chat/chat_gpu_tests.log"
grep -E "passed|failed" "$OUT/i11/gpu_tests.log" 2>/dev/null | tail -3; tail -30 "$OUT/i11/timing_stdout.log" 2>/dev/null
rm -rf "$OUT"/mamba "$OUT"/ner "$OUT"/chat "$OUT"/i11
