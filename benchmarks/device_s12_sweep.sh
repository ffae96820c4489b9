#!/usr/bin/env bash
# Session 12, runs 74-77 (each at its own commit; the variants are mamba_gpu.py's MODEL_* lists there): the
# whole-model sweeps, every must-show row of issue 16 with the sweep's choices, the Mamba GPU tests with them and the
# per-kernel profile of the mamba-130m 1 x 4,096 graph replay. Carry: .snap.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_speed 300 --skip breakdown
pack
mamba_gpu_tests 170
pack
mamba_profile 120
pack
grep -E "best|model 1x4096|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -40
tail -3 "$R/mamba_gpu_tests.log"
head -40 "$R/graph_profile.log"
