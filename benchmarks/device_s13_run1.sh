#!/usr/bin/env bash
# Session 13, run 80: the conv forward "walk" (each input row read once) against the tile kernel and four dt_proj
# output tiles, compared on the whole model (interleaved rounds), then every issue-16 row with the sweep's choice
# and the per-kernel profile of the 1 x 4,096 replay (shipped defaults). Carry: .snap.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_speed 330 --skip breakdown
pack
mamba_profile 100
pack
grep -E "best|model 1x4096|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -40
head -16 "$R/graph_profile.log" | tail -12
