#!/usr/bin/env bash
# Session 16, run 93 (issue 11): does the precision change the batch-4 time? The issue measured bf16; every
# Longformer row so far is fp16. Same process per dtype: HF, ours eager / graph; GEMM peaks per dtype; the
# batch-4 graph profile in bf16; clocks and power all along. Carry: .snap (with .tok).
R=/tmp/r1
source benchmarks/device_s16_common.sh
gemm_peaks 150 bf16 fp16
pack
for dt in bf16 fp16 bf16; do
  mark "longformer $dt"
  lf_bench 150 "longformer_$dt" --batch 4 --dtype "$dt"
  cp "$R/longformer_$dt.log" "$R/longformer_${dt}_$SECONDS.log"
  pack
done
mark "profile bf16"
timeout 120 python3 benchmarks/graph_profile.py --only longformer --dtype bf16 --json "$R/graph_profile.json" \
  > "$R/graph_profile.log" 2>&1
echo "profile rc=$? t=$((SECONDS - T0))" >> "$R/graph_profile.log"
kill $DMON
pack
grep -h -E "square|16384|rc=" "$R"/gemm_*.log | cut -c1-200
grep -h -E "\| 4096|graph:" "$R"/longformer_*_*.log | cut -c1-200
head -14 "$R/graph_profile.log" | cut -c1-120
