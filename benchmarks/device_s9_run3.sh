#!/usr/bin/env bash
# Session 9, device call 3 (<= 590 s), clean snapshots of the working tree (.snap) and of the session's start
# (.snap_old): (1) Mamba speed with the original walk layout + MUFU softplus + offsets advanced per token,
# launch shapes on the whole model, lengths, batch 16, peers; Mamba GPU tests; the session-start Mamba in the
# same call; (2) eager Longformer host time per forward, old / new interleaved 3 times; (3) Longformer b1/b4
# eager and graph. Carry: .snap .snap_old. -> $OUT/results.tar.gz
set -u
OUT=${OUT:-/tmp/longapps_out}
R=/tmp/r3; rm -rf $R; mkdir -p $R "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > $R/gpu.txt 2>&1
timeout ${T_MAMBA:-170} python3 benchmarks/mamba_gpu.py speed --skip scan breakdown --json $R/mamba_speed.json > $R/mamba_speed.log 2>&1
echo "mamba speed rc=$? t=$((SECONDS - T0))" >> $R/mamba_speed.log
BEST=$(python3 -c "import json; d=json.load(open('$R/mamba_speed.json'))['scan_defaults_used']; print(','.join(f'{k}={v}' for k,v in d.items()))" 2>/dev/null)
echo "best scan: $BEST" >> $R/mamba_speed.log
(cd ../.snap_old && PYTHONPATH="$PWD" timeout ${T_OLD:-60} python3 benchmarks/mamba_gpu.py speed --lengths 4096 \
  --skip scan breakdown model_sweep peers --json $R/old_mamba.json > $R/old_mamba.log 2>&1
 echo "old mamba rc=$? t=$((SECONDS - T0))" >> $R/old_mamba.log)
for i in 1 2 3; do
  (cd ../.snap_old && PYTHONPATH="$PWD" timeout 40 python3 benchmarks/longformer_host.py > $R/lf_host_old_$i.log 2>&1)
  timeout 40 python3 benchmarks/longformer_host.py --host-only > $R/lf_host_new_$i.log 2>&1
done
echo "lf host A/B t=$((SECONDS - T0))" > $R/lf_ab.txt
LONGAPPS_SCAN="${BEST:-impl=seq}" timeout ${T_TESTS:-100} python3 -m pytest -q -rfE -p no:cacheprovider --durations=5 \
  tests/test_kernels_mamba_gpu.py > $R/mamba_gpu_tests.log 2>&1
echo "mamba gpu tests rc=$? t=$((SECONDS - T0))" >> $R/mamba_gpu_tests.log
timeout ${T_LF:-70} python3 benchmarks/longformer.py --batch 1 4 --no-variants --json $R/longformer.json > $R/longformer.log 2>&1
echo "longformer rc=$? t=$((SECONDS - T0))" >> $R/longformer.log
tar -C /tmp -czf "$OUT/results.tar.gz" r3
cat $R/gpu.txt
grep -E "best|model 1x4096 scan|ours mamba|ns/token|rc=" $R/mamba_speed.log | tail -20
grep -E "ours mamba|rc=" $R/old_mamba.log
for i in 1 2 3; do echo "old $(head -1 $R/lf_host_old_$i.log) | new $(head -1 $R/lf_host_new_$i.log)"; done
tail -3 $R/mamba_gpu_tests.log
grep -E "ours eager|CUDA graph|HF Long|rc=" $R/longformer.log
