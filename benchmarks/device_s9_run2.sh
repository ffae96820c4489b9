#!/usr/bin/env bash
# Session 9, device call 2 (<= 590 s), from clean snapshots of the working tree (.snap) and of the session's
# start (.snap_old): (1) Mamba speed with the scan walk whose (states x channels) tiles meet memory only in 1-D
# rows (Triton 3.6 then keeps a channel's states in one thread), swept on the whole model, + Mamba GPU tests;
# (2) host time per op; (3) Longformer-base eager / graph at batch 1 and 4, now and at the session's start;
# (4) the session-start Mamba. Carry: .snap .snap_old.
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"/r
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > "$OUT/r/gpu.txt" 2>&1
timeout ${T_MAMBA:-200} python3 benchmarks/mamba_gpu.py speed --skip scan breakdown --json "$OUT/r/mamba_speed.json" > "$OUT/r/mamba_speed.log" 2>&1
echo "mamba speed rc=$? t=$((SECONDS - T0))" >> "$OUT/r/mamba_speed.log"
BEST=$(python3 -c "import json; d=json.load(open('$OUT/r/mamba_speed.json'))['scan_defaults_used']; print(','.join(f'{k}={v}' for k,v in d.items()))" 2>/dev/null)
echo "best scan: $BEST" >> "$OUT/r/mamba_speed.log"
LONGAPPS_SCAN="${BEST:-impl=seq}" timeout ${T_TESTS:-100} python3 -m pytest -q -rfE -p no:cacheprovider --durations=5 \
  tests/test_kernels_mamba_gpu.py > "$OUT/r/mamba_gpu_tests.log" 2>&1
echo "mamba gpu tests rc=$? t=$((SECONDS - T0))" >> "$OUT/r/mamba_gpu_tests.log"
timeout ${T_LFT:-75} python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_gpu.py -k "longformer or token_classification" \
  > "$OUT/r/lf_gpu_tests.log" 2>&1
echo "longformer gpu tests rc=$? t=$((SECONDS - T0))" >> "$OUT/r/lf_gpu_tests.log"
timeout ${T_HOST:-45} python3 benchmarks/host_ops.py --json "$OUT/r/host_ops.json" > "$OUT/r/host_ops.log" 2>&1
echo "host ops rc=$? t=$((SECONDS - T0))" >> "$OUT/r/host_ops.log"
timeout ${T_LF:-80} python3 benchmarks/longformer.py --batch 1 4 --no-variants --json "$OUT/r/longformer.json" > "$OUT/r/longformer.log" 2>&1
echo "longformer rc=$? t=$((SECONDS - T0))" >> "$OUT/r/longformer.log"
(cd ../.snap_old && PYTHONPATH="$PWD" timeout ${T_LF_OLD:-80} python3 benchmarks/longformer.py --batch 1 4 --no-variants \
   --json "$OUT/r/longformer_old.json" > "$OUT/r/longformer_old.log" 2>&1
 echo "old longformer rc=$? t=$((SECONDS - T0))" >> "$OUT/r/longformer_old.log")
(cd ../.snap_old && PYTHONPATH="$PWD" timeout ${T_OLD:-60} python3 benchmarks/mamba_gpu.py speed --lengths 4096 \
  --skip scan breakdown model_sweep peers --json "$OUT/r/old_mamba.json" > "$OUT/r/old_mamba.log" 2>&1
 echo "old mamba rc=$? t=$((SECONDS - T0))" >> "$OUT/r/old_mamba.log")
cat "$OUT/r/gpu.txt"
grep -E "best|model 1x4096 scan|ours mamba|ns/token|rc=" "$OUT/r/mamba_speed.log" | tail -30
grep -E "ours mamba|rc=" "$OUT/r/old_mamba.log"
tail -3 "$OUT/r/mamba_gpu_tests.log"; tail -3 "$OUT/r/lf_gpu_tests.log"
grep -E "window|layernorm|empty_like|raw stream|hooks|rc=" "$OUT/r/host_ops.log"
for f in longformer longformer_old; do echo "== $f"; grep -E "ours eager|CUDA graph|HF Long|rc=" "$OUT/r/$f.log"; done
