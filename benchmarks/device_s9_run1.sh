#!/usr/bin/env bash
# Session 9, device call 1 (<= 590 s), from a clean snapshot of the working tree (.snap) and of the previous
# commit (.snap_old): (1) Mamba speed with the re-laid-out scan walk (one thread per channel, CH 1/2 channels per
# thread) swept on the whole model, then lengths 4k-64k, batch 16 and the Longformer / BERT-SDPA peers; (2) the
# Mamba GPU tests with the sweep's best config; (3) host time per ATen / Triton op (issue 11); (4) the previous
# scan on the whole model, same machine; (5) kernel time inside the replay. Carry: .snap .snap_old.
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"/r
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > "$OUT/r/gpu.txt" 2>&1
timeout ${T_MAMBA:-250} python3 benchmarks/mamba_gpu.py speed --skip scan breakdown --json "$OUT/r/mamba_speed.json" > "$OUT/r/mamba_speed.log" 2>&1
echo "mamba speed rc=$? t=$((SECONDS - T0))" >> "$OUT/r/mamba_speed.log"
BEST=$(python3 -c "import json; d=json.load(open('$OUT/r/mamba_speed.json'))['scan_defaults_used']; print(','.join(f'{k}={v}' for k,v in d.items()))" 2>/dev/null)
echo "best scan: $BEST" >> "$OUT/r/mamba_speed.log"
export LONGAPPS_SCAN="${BEST:-impl=seq}"
timeout ${T_TESTS:-120} python3 -m pytest -q -rfE -p no:cacheprovider --durations=5 tests/test_kernels_mamba_gpu.py \
  > "$OUT/r/mamba_gpu_tests.log" 2>&1
echo "mamba gpu tests rc=$? t=$((SECONDS - T0))" >> "$OUT/r/mamba_gpu_tests.log"
timeout ${T_HOST:-45} python3 benchmarks/host_ops.py --json "$OUT/r/host_ops.json" > "$OUT/r/host_ops.log" 2>&1
echo "host ops rc=$? t=$((SECONDS - T0))" >> "$OUT/r/host_ops.log"
(unset LONGAPPS_SCAN; cd ../.snap_old && PYTHONPATH="$PWD" timeout ${T_OLD:-70} python3 benchmarks/mamba_gpu.py speed --lengths 4096 \
  --skip scan breakdown model_sweep peers --json "$OUT/r/old_mamba.json" > "$OUT/r/old_mamba.log" 2>&1
 echo "old mamba rc=$? t=$((SECONDS - T0))" >> "$OUT/r/old_mamba.log")
timeout ${T_PROF:-60} python3 benchmarks/graph_profile.py --json "$OUT/r/graph_profile.json" > "$OUT/r/graph_profile.log" 2>&1
echo "profile rc=$? t=$((SECONDS - T0))" >> "$OUT/r/graph_profile.log"
cat "$OUT/r/gpu.txt"
grep -E "best|model 1x4096|ours mamba|ns/token|rc=" "$OUT/r/mamba_speed.log" | tail -40
grep -E "ours mamba|rc=" "$OUT/r/old_mamba.log"
tail -4 "$OUT/r/mamba_gpu_tests.log"
cat "$OUT/r/host_ops.log" | tail -32
grep -E "^## |selective|scan" "$OUT/r/graph_profile.log" | head -8
