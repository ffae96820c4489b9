#!/usr/bin/env bash
# Session 11, runs 70-72: the whole-model sweeps (MODEL_SWEEP: the fold by the last program; MODEL_LOWRANK: dt_proj),
# then every must-show row of issue 16 with the sweep's choice and the Mamba GPU tests with it. Carry: .snap.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_speed 240 --skip breakdown
pack
mamba_gpu_tests 150
pack
grep -E "best|model 1x4096 (scan|dt_proj)|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -32
tail -2 "$R/mamba_gpu_tests.log"
