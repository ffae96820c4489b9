#!/usr/bin/env bash
# Session 15, run 91 (issue 11): after the shared fast-inference check (automatic graphs / native eager layers):
# the Longformer graph, native, hidden-rows and NER GPU tests, and benchmarks/longformer.py at 4,096 tokens
# batch 1 and 4 (default mode only). Carry: .snap (with .tok: device_s15_common.sh).
R=/tmp/r5
source benchmarks/device_s15_common.sh
gpu_tests 150 final_tests -rA -k "longformer or hidden or ner_ or token_class"
pack
lf_bench 100 longformer --batch 1 4
pack
grep -E "PASSED|FAILED|ERROR|rc=" "$R/final_tests.log" | cut -c1-160 | tail -20
grep -E "native|rc=|\| 4096|graph" "$R"/longformer.log | cut -c1-300
