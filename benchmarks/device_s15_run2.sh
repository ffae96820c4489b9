#!/usr/bin/env bash
# Session 15, run 88 (issue 11): the hidden-space global rows as four launches with no serial per-row loops
# (run 87's three launches took 0.82 ms of the batch-4 graph). Kernel GPU test, benchmarks/longformer.py at
# 4,096 tokens batch 1 and 4 with both global modes in the same process, the batch-4 graph profile per mode,
# then the whole GPU test file. Carry: .snap (with .tok: device_s15_common.sh).
R=/tmp/r2
source benchmarks/device_s15_common.sh
gpu_tests 60 hidden_test -x -k "hidden_global_rows"
lf_bench 150 longformer --batch 1 4 --global-variants
pack
lf_profile 100 hidden kernel
pack
gpu_tests 330 all_gpu_tests --durations=10
pack
tail -3 "$R/hidden_test.log"; grep -E "native|hidden|split-K|rc=|\| 4096|graph" "$R"/longformer.log | cut -c1-300
grep -E "^## |_h[qszo]_|_wg_|nvjet|add_ln|rc=" "$R/graph_profile.log" | cut -c1-140; tail -25 "$R/all_gpu_tests.log" | cut -c1-200
