#!/usr/bin/env bash
# One device call: GPU tests + attention benchmark + Longformer benchmark; logs/JSON into $OUT,
# short tables printed last.
# Usage: bash benchmarks/device_run.sh [--sweep] [--skip-tests] [--skip-attention] [--skip-longformer]
#                                      [--variants] [--profile]
#   --variants: also the window+global launch variants and lightning at a fixed token budget (benchmarks/attention.py)
#   --profile:  also the per-kernel GPU time of our Longformer encoder
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
SWEEP=""; TESTS=1; ATT=1; LF=1; VAR=0; PROF=0
for a in "$@"; do
  case $a in --sweep) SWEEP="--sweep";; --skip-tests) TESTS=0;; --skip-attention) ATT=0;;
    --skip-longformer) LF=0;; --variants) VAR=1;; --profile) PROF=1;; esac
done
T_TESTS=${T_TESTS:-240}; T_ATT=${T_ATT:-280}; T_LF=${T_LF:-120}; T_VAR=${T_VAR:-200}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
if [ $TESTS = 1 ]; then
  timeout $T_TESTS python3 -m pytest -rs -q -p no:cacheprovider --durations=12 tests/test_kernels_gpu.py > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests rc=$?" >> "$OUT/gpu_tests.log"
fi
if [ $VAR = 1 ]; then
  timeout $T_VAR python3 benchmarks/attention.py --wg-variants --n 4096 16384 65536 --json "$OUT/wg_variants.json" > "$OUT/wg_variants.log" 2>&1
  echo "wg variants rc=$?" >> "$OUT/wg_variants.log"
  timeout 120 python3 benchmarks/attention.py --lightning-budget --linear-n 2048 4096 8192 16384 32768 65536 --json "$OUT/lightning_budget.json" > "$OUT/lightning_budget.log" 2>&1
  echo "lightning budget rc=$?" >> "$OUT/lightning_budget.log"
fi
if [ $ATT = 1 ]; then
  timeout $T_ATT python3 benchmarks/attention.py $SWEEP --json "$OUT/attention.json" > "$OUT/attention.log" 2>&1
  echo "attention rc=$?" >> "$OUT/attention.log"
fi
if [ $LF = 1 ]; then
  timeout $T_LF python3 benchmarks/longformer.py --json "$OUT/longformer.json" > "$OUT/longformer.log" 2>&1
  echo "longformer rc=$?" >> "$OUT/longformer.log"
  timeout 50 python3 -c "from longapps.cli_bench import attention_command; attention_command.main(['--n', '4096', '--no-flex', '--json', '$OUT/cli.json'], standalone_mode=False)" > "$OUT/cli.log" 2>&1
  echo "cli rc=$?" >> "$OUT/cli.log"
fi
if [ $PROF = 1 ]; then
  timeout 60 python3 benchmarks/longformer.py --profile > "$OUT/longformer_profile.log" 2>&1
  echo "profile rc=$?" >> "$OUT/longformer_profile.log"
fi
echo "===== summary ====="
cat "$OUT/gpu.txt"
[ -f "$OUT/gpu_tests.log" ] && grep -E "passed|failed|error|rc=|rel err|FAILED|Error|s call" "$OUT/gpu_tests.log" | tail -30
[ -f "$OUT/wg_variants.log" ] && grep -E "wg variant|rc=|compiled" "$OUT/wg_variants.log" | cut -c1-600
[ -f "$OUT/lightning_budget.log" ] && grep -E "lightning|rc=|failed" "$OUT/lightning_budget.log"
[ -f "$OUT/attention.log" ] && sed -n '/^## attention/,$p' "$OUT/attention.log"
[ -f "$OUT/longformer.log" ] && grep -E "errors|ms|rc=" "$OUT/longformer.log" | head -14
[ -f "$OUT/longformer.log" ] && sed -n '/^## Longformer/,$p' "$OUT/longformer.log"
[ -f "$OUT/cli.log" ] && tail -3 "$OUT/cli.log"
[ -f "$OUT/longformer_profile.log" ] && sed -n 4,24p "$OUT/longformer_profile.log" | cut -c1-75,150-200
