#!/usr/bin/env bash
# Session 15, run 92 (issue 11): after the hidden-rows kernels' shared helpers (a review refactor): their GPU test
# and the native / automatic-graph / HF-match Longformer tests. Carry: .snap (with .tok: device_s15_common.sh).
R=/tmp/r6
source benchmarks/device_s15_common.sh
gpu_tests 120 final_tests -rA -k "hidden or native or automatic_graphs or longformer_base"
pack
grep -E "PASSED|FAILED|ERROR|rc=" "$R/final_tests.log" | cut -c1-160 | tail -20
