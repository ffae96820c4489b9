#!/usr/bin/env bash
# Session 13, run 81: more conv walk shapes (8-32 tokens, 64-256 channels, 1-2 warps) against the tile kernel on
# the whole model (5 interleaved rounds), then every issue-16 row with the sweep's choice;
# with the shipped defaults: the per-kernel profile of the 1 x 4,096 replay, the Mamba GPU tests and three more
# 1 x 4,096 samples in fresh processes. Carry: .snap.
R=/tmp/r2
source benchmarks/device_s9_common.sh
mamba_round 240 3
mamba_round_summary
