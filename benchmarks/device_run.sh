#!/usr/bin/env bash
# One device call: GPU tests + attention benchmark + Longformer benchmark; logs/JSON into $OUT,
# short tables printed last.   Usage: bash benchmarks/device_run.sh [--sweep] [--skip-tests] [--skip-attention]
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
SWEEP=""; TESTS=1; ATT=1
for a in "$@"; do
  case $a in --sweep) SWEEP="--sweep";; --skip-tests) TESTS=0;; --skip-attention) ATT=0;; esac
done
T_TESTS=${T_TESTS:-150}; T_ATT=${T_ATT:-280}; T_LF=${T_LF:-100}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
if [ $TESTS = 1 ]; then
  timeout $T_TESTS python3 -m pytest -rs -s -p no:cacheprovider tests/test_kernels_gpu.py > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests rc=$?" >> "$OUT/gpu_tests.log"
fi
if [ $ATT = 1 ]; then
  timeout $T_ATT python3 benchmarks/attention.py $SWEEP --json "$OUT/attention.json" > "$OUT/attention.log" 2>&1
  echo "attention rc=$?" >> "$OUT/attention.log"
fi
timeout $T_LF python3 benchmarks/longformer.py --json "$OUT/longformer.json" > "$OUT/longformer.log" 2>&1
echo "longformer rc=$?" >> "$OUT/longformer.log"
timeout 50 python3 -c "from longapps.cli_bench import attention_command; attention_command.main(['--n', '4096', '--no-flex', '--json', '$OUT/cli.json'], standalone_mode=False)" > "$OUT/cli.log" 2>&1
echo "cli rc=$?" >> "$OUT/cli.log"
echo "===== summary ====="
cat "$OUT/gpu.txt"
[ -f "$OUT/gpu_tests.log" ] && grep -E "passed|failed|error|rc=|rel err|FAILED|Error" "$OUT/gpu_tests.log" | tail -25
[ -f "$OUT/attention.log" ] && sed -n '/^## attention/,$p' "$OUT/attention.log"
grep -E "errors|ms" "$OUT/longformer.log" | head -8
sed -n '/^## Longformer/,$p' "$OUT/longformer.log"
tail -4 "$OUT/cli.log"
