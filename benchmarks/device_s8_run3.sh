#!/usr/bin/env bash
# Session 8, device call 3 (<= 150 s): per-kernel GPU time inside the CUDA-graph replays of mamba-130m 1 x 4,096
# and Longformer-base 4 x 4,096 (benchmarks/graph_profile.py). Carry: .snap. -> $OUT/graph_profile.{json,log}
set -u
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
timeout ${T_PROF:-140} python3 benchmarks/graph_profile.py --json "$OUT/graph_profile.json" > "$OUT/graph_profile.log" 2>&1
echo "rc=$?" >> "$OUT/graph_profile.log"
grep -v "^\[" "$OUT/graph_profile.log" | tail -70
