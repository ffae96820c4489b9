#!/usr/bin/env bash
# Session 9, device call 3 = run 59 (<= 590 s), snapshots .snap (tree) and .snap_old (session start): (1) Mamba
# speed with the original walk layout + MUFU softplus + offsets advanced per token (launch shapes on the whole
# model, lengths, batch 16, peers), the session-start Mamba in the same call; (2) eager Longformer host time per
# forward, old / new interleaved 3 times; (3) Mamba GPU tests; (4) Longformer b1/b4 eager and graph.
# Carry: .snap .snap_old. -> $OUT/results.tar.gz
R=/tmp/r3
source benchmarks/device_s9_common.sh
mamba_speed 170 --skip scan breakdown
old_mamba 60 old_mamba
for i in 1 2 3; do
  (cd ../.snap_old && PYTHONPATH="$PWD" timeout 40 python3 benchmarks/longformer_host.py > "$R/lf_host_old_$i.log" 2>&1)
  timeout 40 python3 benchmarks/longformer_host.py --host-only > "$R/lf_host_new_$i.log" 2>&1
done
mamba_gpu_tests 100
timeout 70 python3 benchmarks/longformer.py --batch 1 4 --no-variants --json "$R/longformer.json" > "$R/longformer.log" 2>&1
pack
grep -E "best|model 1x4096 scan|ours mamba|ns/token|rc=" "$R/mamba_speed.log" | tail -20
grep -E "ours mamba|rc=" "$R/old_mamba.log"
for i in 1 2 3; do echo "old $(head -1 "$R/lf_host_old_$i.log") | new $(head -1 "$R/lf_host_new_$i.log")"; done
tail -3 "$R/mamba_gpu_tests.log"; grep -E "ours eager|CUDA graph|HF Long" "$R/longformer.log"
