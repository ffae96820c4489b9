#!/usr/bin/env bash
# Session 15, run 89 (issue 11): in a captured graph the hidden-space global rows' first three launches go on a
# side stream beside the input GEMM and the band kernel (eagerly: same stream); no fill kernel for the absent key
# mask's placeholder (one graph node per layer less). Hidden / Longformer / native GPU tests, then
# benchmarks/longformer.py at 4,096 tokens batch 1 and 4 with both global modes, and the batch-4 graph profile.
# Carry: .snap (with .tok: device_s15_common.sh).
R=/tmp/r3
source benchmarks/device_s15_common.sh
gpu_tests 150 lf_tests -x -k "hidden or native or longformer or token_class or ner_ or attention_api or window_global"
lf_bench 150 longformer --batch 1 4 --global-variants
pack
lf_profile 60 hidden
pack
tail -3 "$R/lf_tests.log"; grep -E "native|hidden|split-K|rc=|\| 4096|graph" "$R"/longformer.log | cut -c1-300
grep -E "^## |_h[qszo]_|_wg_|nvjet|add_ln|Memset|Fill|rc=" "$R/graph_profile.log" | cut -c1-140
