#!/usr/bin/env bash
# Session 13, run 80: the conv forward "walk" (each input row read once) against the tile kernel and four dt_proj
# output tiles, compared on the whole model (interleaved rounds), then every issue-16 row with the sweep's choice;
# with the shipped defaults: the per-kernel profile of the 1 x 4,096 replay, the Mamba GPU tests and two more
# 1 x 4,096 samples in fresh processes; the eager Longformer's host profile (issue 11). Carry: .snap.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_round 240 2
# issue 11 planning: where the eager Longformer's host time goes now, and single calls' host cost
timeout 100 python3 benchmarks/longformer_host.py --ops --json "$R/longformer_host.json" > "$R/longformer_host.log" 2>&1
echo "longformer host rc=$?" >> "$R/longformer_host.log"
pack
mamba_round_summary
grep -E "host|rc=" "$R/longformer_host.log" | head -14
