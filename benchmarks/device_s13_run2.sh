#!/usr/bin/env bash
# Session 13, run 81: more conv walk shapes (8-32 tokens, 64-256 channels, 1-2 warps) against the tile kernel on
# the whole model (5 interleaved rounds), then every issue-16 row with the sweep's choice;
# with the shipped defaults: the per-kernel profile of the 1 x 4,096 replay, the Mamba GPU tests and three more
# 1 x 4,096 samples in fresh processes. Carry: .snap.
R=/tmp/r2
source benchmarks/device_s9_common.sh
mamba_speed 240 --skip breakdown
pack
mamba_profile 80
pack
mamba_gpu_tests 170
pack
mamba_4k_samples 3 60
pack
grep -E "best|model 1x4096|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -40
head -16 "$R/graph_profile.log" | tail -12
tail -3 "$R/mamba_gpu_tests.log"
grep -hE "L=4096: graph|rc=" "$R"/mamba_4k_*.log
