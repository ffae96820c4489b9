#!/usr/bin/env bash
# Session 9, device call 1 = run 57 (<= 590 s), clean snapshots of the tree (.snap) and the session start
# (.snap_old): (1) Mamba speed with the re-laid-out scan walk (one thread per channel, CH 1/2 channels per thread)
# swept on the whole model, lengths 4k-64k, batch 16, Longformer / BERT-SDPA peers; (2) the Mamba GPU tests with
# the sweep's best config; (3) host time per ATen / Triton op (issue 11); (4) the session-start scan on the whole
# model; (5) kernel time inside the replay. Carry: .snap .snap_old.
source benchmarks/device_s9_common.sh
mamba_speed 250 --skip scan breakdown
mamba_gpu_tests 120
timeout 45 python3 benchmarks/host_ops.py --json "$R/host_ops.json" > "$R/host_ops.log" 2>&1
old_mamba 70 old_mamba
timeout 60 python3 benchmarks/graph_profile.py --json "$R/graph_profile.json" > "$R/graph_profile.log" 2>&1
cat "$R/gpu.txt"
grep -E "best|model 1x4096|ours mamba|ns/token|rc=" "$R/mamba_speed.log" | tail -40
grep -E "ours mamba|rc=" "$R/old_mamba.log"; tail -4 "$R/mamba_gpu_tests.log"; tail -32 "$R/host_ops.log"
grep -E "^## |selective|scan" "$R/graph_profile.log" | head -8
