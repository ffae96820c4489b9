#!/usr/bin/env bash
# Session 13, run 82: a confirmation on another lent machine with the shipped defaults (conv walk 8 x 128, no sweep):
# every issue-16 row and three more 1 x 4,096 samples in fresh processes. Carry: .snap.
R=/tmp/r3
source benchmarks/device_s9_common.sh
mamba_speed 150 --skip model_sweep breakdown
pack
mamba_4k_samples 3 60
pack
grep -E "ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -24
grep -hE "L=4096: graph|rc=" "$R"/mamba_4k_*.log
