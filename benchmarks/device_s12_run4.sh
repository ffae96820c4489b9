#!/usr/bin/env bash
# Session 12, run 77: the whole-model sweeps (MODEL_SWEEP: one-token segment grid, end-state pass with 16 channels per
# program, y pass with 16; in_proj split removed), every must-show row of issue 16, the Mamba GPU tests and the per-kernel
# profile of the mamba-130m 1 x 4,096 graph replay. Carry: .snap.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_speed 300 --skip breakdown
pack
mamba_gpu_tests 170
pack
LONGAPPS_SCAN="${BEST:-impl=seq}" LONGAPPS_PDL="${PDLV:-0}" timeout 120 python3 benchmarks/graph_profile.py --only mamba \
  --json "$R/graph_profile.json" > "$R/graph_profile.log" 2>&1
echo "graph profile rc=$?" >> "$R/graph_profile.log"
pack
grep -E "best|model 1x4096 (scan|dt_proj|conv)|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -40
tail -3 "$R/mamba_gpu_tests.log"
head -40 "$R/graph_profile.log"
