#!/usr/bin/env bash
# Session 9, device call 2 = run 58 (<= 590 s), snapshots .snap (tree) and .snap_old (session start): (1) Mamba
# speed with the walk whose (states x channels) tiles meet memory only in 1-D rows, swept on the whole model, +
# Mamba GPU tests; (2) Longformer GPU tests; (3) host time per op; (4) Longformer-base eager / graph at batch 1
# and 4, now and at the session's start; (5) the session-start Mamba. Carry: .snap .snap_old.
source benchmarks/device_s9_common.sh
mamba_speed 200 --skip scan breakdown
mamba_gpu_tests 100
timeout 75 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_gpu.py -k "longformer or token_classification" \
  > "$R/lf_gpu_tests.log" 2>&1
timeout 45 python3 benchmarks/host_ops.py --json "$R/host_ops.json" > "$R/host_ops.log" 2>&1
timeout 80 python3 benchmarks/longformer.py --batch 1 4 --no-variants --json "$R/longformer.json" > "$R/longformer.log" 2>&1
(cd ../.snap_old && PYTHONPATH="$PWD" timeout 80 python3 benchmarks/longformer.py --batch 1 4 --no-variants \
   --json "$R/longformer_old.json" > "$R/longformer_old.log" 2>&1)
old_mamba 60 old_mamba
grep -E "best|model 1x4096 scan|ours mamba|ns/token|rc=" "$R/mamba_speed.log" | tail -30
grep -E "ours mamba|rc=" "$R/old_mamba.log"; tail -3 "$R/mamba_gpu_tests.log"; tail -3 "$R/lf_gpu_tests.log"
grep -E "window|layernorm|empty_like|raw stream|hooks" "$R/host_ops.log"
for f in longformer longformer_old; do echo "== $f"; grep -E "ours eager|CUDA graph|HF Long" "$R/$f.log"; done
