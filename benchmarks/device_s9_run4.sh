#!/usr/bin/env bash
# Session 9, device call 4 (<= 300 s): Mamba with the fold's loads in flight and register caps (maxnreg) swept on
# the whole model, lengths, batch 16; the run-59 kernel (.snap_old) in the same call; the Mamba GPU tests with the
# chosen config. Carry: .snap .snap_old. -> $OUT/results.tar.gz
set -u
OUT=${OUT:-/tmp/longapps_out}
R=/tmp/r4; rm -rf $R; mkdir -p $R "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > $R/gpu.txt 2>&1
timeout ${T_MAMBA:-130} python3 benchmarks/mamba_gpu.py speed --skip scan breakdown peers --json $R/mamba_speed.json > $R/mamba_speed.log 2>&1
echo "mamba speed rc=$? t=$((SECONDS - T0))" >> $R/mamba_speed.log
BEST=$(python3 -c "import json; d=json.load(open('$R/mamba_speed.json'))['scan_defaults_used']; print(','.join(f'{k}={v}' for k,v in d.items()))" 2>/dev/null)
echo "best scan: $BEST" >> $R/mamba_speed.log
(cd ../.snap_old && PYTHONPATH="$PWD" timeout ${T_OLD:-50} python3 benchmarks/mamba_gpu.py speed --lengths 4096 \
  --skip scan breakdown model_sweep peers --json $R/prev_mamba.json > $R/prev_mamba.log 2>&1
 echo "prev mamba rc=$? t=$((SECONDS - T0))" >> $R/prev_mamba.log)
LONGAPPS_SCAN="${BEST:-impl=seq}" timeout ${T_TESTS:-90} python3 -m pytest -q -rfE -p no:cacheprovider --durations=3 \
  tests/test_kernels_mamba_gpu.py > $R/mamba_gpu_tests.log 2>&1
echo "mamba gpu tests rc=$? t=$((SECONDS - T0))" >> $R/mamba_gpu_tests.log
tar -C /tmp -czf "$OUT/results.tar.gz" r4
cat $R/gpu.txt
grep -E "best|model 1x4096 scan|ours mamba|ns/token|rc=" $R/mamba_speed.log | tail -20
grep -E "ours mamba|rc=" $R/prev_mamba.log
tail -3 $R/mamba_gpu_tests.log
