#!/usr/bin/env bash
# Session 10, device call 3 = run 64 (<= 300 s): the fused dt_proj + softplus kernel (the scan's passes read ready
# time steps). Mamba GPU tests first, then the whole-model sweep (scan shapes, fused dt on/off, conv shapes),
# lengths 4k-64k, batch 16; the session-start tree (.snap_old) in the same call. Carry: .snap .snap_old.
R=/tmp/r3
source benchmarks/device_s9_common.sh
LONGAPPS_SCAN=impl=seq mamba_gpu_tests 100
mamba_speed 200 --skip scan breakdown peers
old_mamba 60 prev_mamba
pack
tail -3 "$R/mamba_gpu_tests.log"
grep -E "best|model 1x4096|ours mamba|ns/token|rc=" "$R/mamba_speed.log" | tail -30
grep -E "ours mamba|rc=" "$R/prev_mamba.log"
