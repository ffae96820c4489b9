#!/usr/bin/env bash
# Session 16, run 97 (issue 11): after the LayerNorm rows became one jit helper shared by add+LayerNorm and the
# fused embeddings: their GPU tests with the Longformer / NER ones, and the Longformer at batch 1 and 4 in bf16.
# Carry: .snap (with .tok).
R=/tmp/r5
source benchmarks/device_s16_common.sh
gpu_tests 150 lf_tests -rA -k "longformer or hidden or native or automatic_graphs or ner_ or token_class or embed or layernorm or rows_in_graph"
pack
lf_bench 120 longformer_bf16 --batch 1 4 --dtype bf16
kill $DMON
pack
grep -E "FAILED|ERROR|rc=" "$R/lf_tests.log" | cut -c1-200 | tail -8; grep -c PASSED "$R/lf_tests.log"
grep -E "\| 4096|rc=" "$R/longformer_bf16.log" | cut -c1-220
