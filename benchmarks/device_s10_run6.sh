#!/usr/bin/env bash
# (historical: ran with options removed afterwards; kept as the record of runs 63-67)
# Session 10, device call 6 = run 67 (<= 400 s): run 66 showed the walk without its fold ran 0.28 ms faster, and that
# build had another tile layout (1 state x 16 channels per thread). Sweep: the state loads vectorized (4 states x 4
# channels per thread, the default so far) or scalar (runtime stride: the other layout), fold inline or launch; then
# every must-show row of issue 16 (lengths, batch 16, HF, scan GB/s, Longformer/BERT peers); the Mamba GPU tests
# with the chosen config; the session-start tree (.snap_old) in the same call. Carry: .snap .snap_old.
R=/tmp/r6
source benchmarks/device_s9_common.sh
mamba_speed 240 --skip breakdown
mamba_gpu_tests 80
old_mamba 50 prev_mamba
pack
grep -E "best|model 1x4096 scan|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -32
grep -E "ours mamba|rc=" "$R/prev_mamba.log"; tail -2 "$R/mamba_gpu_tests.log"
