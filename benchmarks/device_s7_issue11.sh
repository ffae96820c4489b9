#!/usr/bin/env bash
# Issue 11 must-show table in one device call (session 7), <= 5 min wall on one H200:
#   attn   : public attention() (eager and graph) vs the kernel alone vs compiled FlexAttention (eager call and
#            CUDA graph) vs SDPA, WindowGlobal / SlidingWindow / SinksWindow / Linear at 4k, 16k, 64k
#            (first: it compiles every kernel, so the host part finds them in Triton's cache)
#   host   : host microseconds per attention() call (direct C launch and not) / kernel entry (api_host.py)
#   lf     : FastLongformerModel (Longformer-base, 4096 tokens) eager (no graph) vs CUDA graph vs forward()
#            with the automatic graphs, batch 1 and 4, HF for reference
#   tests  : GPU tests of the attention API (no sync, fresh inputs between graph replays, misaligned views,
#            torch.compile) and the Longformer automatic graphs
#   prof   : GPU time per kernel of the eager Longformer at batch 4 (where the 8 ms go), if time is left
#   cli    : `longapps bench attention` (the ours_api row next to the kernel), 4k only, if time is left
# Each part has its own timeout inside a global budget (BUDGET_S, default 288 s); logs/JSON go to $OUT,
# a summary is printed last. Usage: bash benchmarks/device_s7_issue11.sh [attn] [host] [lf] [tests] [prof] [cli]
set -u
set -x
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
PARTS="${*:-attn host lf tests prof cli}"
BUDGET_S=${BUDGET_S:-288}
START=$SECONDS
has() { [[ " $PARTS " == *" $1 "* ]]; }
# seconds for a part: its own limit, capped by what is left of the budget (0 = skip)
left() { local want=$1 rest=$((BUDGET_S - (SECONDS - START) - 5)); ((rest < want)) && want=$rest; ((want < 10)) && want=0; echo $want; }
step() {  # step NAME LIMIT LOG CMD... : run guarded, never stops the script
  local name=$1 lim; lim=$(left "$2"); local log=$3; shift 3
  if ((lim == 0)); then echo "$name skipped: budget spent" | tee -a "$log"; return 0; fi
  echo "=== $name (limit ${lim}s, t=$((SECONDS - START))s)"
  timeout -k 5 "$lim" "$@" > "$log" 2>&1
  local rc=$?
  echo "$name rc=$rc (t=$((SECONDS - START))s)" | tee -a "$log"
}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import os, torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(), 'cpus', os.cpu_count(), 'load', os.getloadavg())" >> "$OUT/gpu.txt" 2>&1
git rev-parse --short HEAD >> "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

has attn && step attention "${T_ATT:-130}" "$OUT/attention.log" python3 benchmarks/attention.py \
  --n ${ATT_N:-4096 16384 65536} --linear-n ${ATT_N:-4096 16384 65536} --mask-max-n 0 --json "$OUT/attention.json"
has host && step host "${T_HOST:-35}" "$OUT/api_host.log" python3 benchmarks/api_host.py --no-longformer --json "$OUT/api_host.json"
has lf && step longformer "${T_LF:-60}" "$OUT/longformer.log" python3 benchmarks/longformer.py --batch 1 4 --no-variants \
  --json "$OUT/longformer.json"
has tests && step tests "${T_TESTS:-55}" "$OUT/gpu_tests.log" python3 -m pytest -q -rfE -p no:cacheprovider --durations=6 \
  tests/test_attention_fastpath.py tests/test_kernels_gpu.py \
  -k "${TEST_K:-(fastpath or plan or api or automatic_graphs) and not interpreter}"
has prof && step profile "${T_PROF:-35}" "$OUT/longformer_profile_b4.log" python3 benchmarks/longformer.py --profile \
  --batch 4
has cli && step cli "${T_CLI:-40}" "$OUT/cli_bench.log" python3 -m longapps.cli bench attention --n 4096 --no-flex \
  --json "$OUT/cli_bench.json"

set +x
echo "===== summary (t=$((SECONDS - START))s) ====="
cat "$OUT/gpu.txt"
[ -f "$OUT/api_host.log" ] && grep -E "host |rc=|direct C|load|back-to-back" "$OUT/api_host.log"
[ -f "$OUT/attention.log" ] && grep -E "eager / kernel|rc=|failed" "$OUT/attention.log"
[ -f "$OUT/attention.log" ] && sed -n '/^| scenario/,$p' "$OUT/attention.log"
[ -f "$OUT/longformer.log" ] && sed -n '/^## Longformer/,$p' "$OUT/longformer.log"
[ -f "$OUT/longformer.log" ] && grep -E "rc=|failed|Error" "$OUT/longformer.log"
[ -f "$OUT/gpu_tests.log" ] && grep -E "passed|failed|rc=|FAILED|Error" "$OUT/gpu_tests.log" | tail -15
[ -f "$OUT/longformer_profile_b4.log" ] && head -32 "$OUT/longformer_profile_b4.log"
[ -f "$OUT/cli_bench.log" ] && grep -E "ours|rc=" "$OUT/cli_bench.log" | tail -8
exit 0
