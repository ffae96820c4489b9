#!/usr/bin/env bash
# Session 8, device call 2 (<= 400 s), from a clean snapshot of HEAD: (1) Mamba speed with the lookahead walk
# (PF) in the scan sweep (alone on the GPU), (2) the Mamba GPU tests, (3) where the eager Longformer's host time
# goes (torch.profiler CPU self time per op + cProfile), batch 1. Carry: .snap. -> $OUT/results.tar.gz
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"/{mamba,tests,lf}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > "$OUT/gpu.txt" 2>&1
timeout ${T_MAMBA:-200} python3 benchmarks/mamba_gpu.py speed ${MAMBA_ARGS:-} --json "$OUT/mamba/mamba_speed.json" > "$OUT/mamba/speed.log" 2>&1
echo "mamba speed rc=$? t=$((SECONDS - T0))" >> "$OUT/mamba/speed.log"
[ "${HOST:-1}" = 1 ] && timeout ${T_HOST:-60} python3 benchmarks/longformer_host.py --json "$OUT/lf/host_b1.json" > "$OUT/lf/host_b1.log" 2>&1
echo "host rc=$? t=$((SECONDS - T0))" >> "$OUT/lf/host_b1.log"
timeout ${T_TESTS:-150} python3 -m pytest -q -rfE -p no:cacheprovider --durations=5 tests/test_kernels_mamba_gpu.py \
  > "$OUT/tests/mamba_gpu_tests.log" 2>&1
echo "mamba gpu tests rc=$? t=$((SECONDS - T0))" >> "$OUT/tests/mamba_gpu_tests.log"
tar -C "$OUT" -czf "$OUT/results.tar.gz" mamba lf tests gpu.txt
cat "$OUT/gpu.txt"
grep -E "best|model 1x4096|ours mamba|ns/token|HF Mamba|rc=" "$OUT/mamba/speed.log" | tail -24
head -3 "$OUT/lf/host_b1.log"; tail -2 "$OUT/lf/host_b1.log"
tail -4 "$OUT/tests/mamba_gpu_tests.log"
rm -rf "$OUT"/mamba "$OUT"/lf "$OUT"/tests
