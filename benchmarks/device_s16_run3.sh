#!/usr/bin/env bash
# Session 16, run 95 (issue 11): the hidden rows' last launch beside the band kernel in graphs (band kernel with
# global_rows="skip"), two rows per add+LayerNorm program: the Longformer / window / hidden-rows / NER GPU tests;
# the Longformer at batch 1 and 4 in bf16 (twice, fresh processes) and fp16; the bf16 batch-4 graph profile.
# Carry: .snap (with .tok).
R=/tmp/r3
source benchmarks/device_s16_common.sh
gpu_tests 240 gpu_tests -rA -k "embed or layernorm or longformer or hidden or native or automatic_graphs or ner_ or token_class or window_global"
pack
lf_bench 150 longformer_bf16 --batch 1 4 --dtype bf16
pack
lf_bench 150 longformer_fp16 --batch 1 4 --dtype fp16
pack
lf_bench 100 longformer_bf16_b4 --batch 4 --dtype bf16
pack
timeout 120 python3 benchmarks/graph_profile.py --only longformer --dtype bf16 --json "$R/graph_profile.json" \
  > "$R/graph_profile.log" 2>&1
echo "profile rc=$? t=$((SECONDS - T0))" >> "$R/graph_profile.log"
kill $DMON
pack
grep -E "PASSED|FAILED|ERROR|rc=" "$R/gpu_tests.log" | grep -v PASSED | cut -c1-200 | tail -20
grep -c PASSED "$R/gpu_tests.log"
grep -h -E "\| 4096|rc=" "$R"/longformer_*.log | cut -c1-220
head -20 "$R/graph_profile.log" | grep -E "^## |^\|" | cut -c1-140
