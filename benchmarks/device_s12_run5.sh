#!/usr/bin/env bash
# Session 12, run 78: every must-show row of issue 16 with the shipped defaults (no sweep: segments on the one-token
# grid, dt_proj by the low-rank kernel), two more 1 x 4,096 samples in fresh processes, the per-kernel profile of the
# 1 x 4,096 graph replay and the Mamba GPU tests. Carry: .snap.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_speed 300 --skip breakdown model_sweep
pack
mamba_4k_samples 2 100
pack
mamba_profile 120
pack
mamba_gpu_tests 170
pack
grep -E "ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -24
grep -hE "L=4096: graph|rc=" "$R"/mamba_4k_*.log
tail -3 "$R/mamba_gpu_tests.log"
head -14 "$R/graph_profile.log" | tail -10
