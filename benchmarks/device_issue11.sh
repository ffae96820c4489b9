#!/usr/bin/env bash
# Issue 11/12 device call: GPU tests of the call path, host cost, attention API vs kernel vs peers,
# Longformer eager vs graph vs automatic graphs (batch 1, 4), token-classification inference/fine-tuning
# vs HF. Logs/JSON into $OUT; the tables are printed last.
# Usage: bash benchmarks/device_issue11.sh [tests] [host] [attention] [longformer] [ner]  (default: all)
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
PARTS="${*:-tests host attention longformer ner}"
has() { [[ " $PARTS " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
if has tests; then
  timeout ${T_TESTS:-200} python3 -m pytest -q -p no:cacheprovider --durations=8 tests/test_kernels_gpu.py \
    -k "${TEST_K:-api or token_classification or longformer or rows_in_graph or fused_cuda_graph or backward or padding}" \
    > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests rc=$?" >> "$OUT/gpu_tests.log"
fi
if has host; then
  timeout ${T_HOST:-60} python3 benchmarks/api_host.py --json "$OUT/api_host.json" > "$OUT/api_host.log" 2>&1
  echo "host rc=$?" >> "$OUT/api_host.log"
fi
if has attention; then
  timeout ${T_ATT:-300} python3 benchmarks/attention.py --n ${ATT_N:-4096 16384 65536} --linear-n ${ATT_N:-4096 16384 65536} \
    --mask-max-n 0 --json "$OUT/attention.json" > "$OUT/attention.log" 2>&1
  echo "attention rc=$?" >> "$OUT/attention.log"
fi
if has longformer; then
  timeout ${T_LF:-150} python3 benchmarks/longformer.py --batch 1 4 --global-variants --json "$OUT/longformer.json" > "$OUT/longformer.log" 2>&1
  echo "longformer rc=$?" >> "$OUT/longformer.log"
fi
if has ner; then
  timeout ${T_NER:-240} python3 benchmarks/ner_gpu.py --batch 1 8 --train-batch 8 --json "$OUT/ner_gpu.json" > "$OUT/ner_gpu.log" 2>&1
  echo "ner rc=$?" >> "$OUT/ner_gpu.log"
fi
echo "===== summary ====="
cat "$OUT/gpu.txt"
[ -f "$OUT/gpu_tests.log" ] && grep -E "passed|failed|rc=|FAILED|Error|error" "$OUT/gpu_tests.log" | tail -25
[ -f "$OUT/api_host.log" ] && grep -E "host|rc=" "$OUT/api_host.log"
[ -f "$OUT/attention.log" ] && grep -E "eager / kernel|rc=" "$OUT/attention.log"
[ -f "$OUT/attention.log" ] && sed -n '/^## attention/,$p' "$OUT/attention.log"
[ -f "$OUT/longformer.log" ] && grep -E "ms|rc=" "$OUT/longformer.log" | head -20
[ -f "$OUT/longformer.log" ] && sed -n '/^## Longformer/,$p' "$OUT/longformer.log"
[ -f "$OUT/ner_gpu.log" ] && grep -E "batch|rc=|Error" "$OUT/ner_gpu.log" | head -12
[ -f "$OUT/ner_gpu.log" ] && sed -n '/^## Token/,$p' "$OUT/ner_gpu.log"
