#!/usr/bin/env bash
# Session 10, device call 4 = run 65 (<= 480 s): walk segments on an 8-token grid (the segment count follows
# programs_per_sm, so a launch can fill every resident slot; swept 16-21 per SM), fused time steps on/off, conv;
# then every must-show row of issue 16: lengths 4k-64k, batch 16, HF slow path, scan GB/s vs copy, Longformer and
# BERT-SDPA peers; the session-start tree (.snap_old) in the same call; Mamba GPU tests first. Carry: .snap .snap_old.
R=/tmp/r4
source benchmarks/device_s9_common.sh
LONGAPPS_SCAN=impl=seq mamba_gpu_tests 100
mamba_speed 300 --skip breakdown
old_mamba 60 prev_mamba
pack
tail -3 "$R/mamba_gpu_tests.log"
grep -E "best|model 1x4096|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -40
grep -E "ours mamba|rc=" "$R/prev_mamba.log"
