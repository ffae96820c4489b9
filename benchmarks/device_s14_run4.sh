#!/usr/bin/env bash
# Session 14, run 86 (issue 11): the native eager layers with the compact query_global GEMM (a row-gather kernel
# instead of projecting every token: the fused version cost 0.35 ms at batch 4, run 85). Native, gather and NER
# (tagger on bf16 weights) GPU tests, benchmarks/longformer.py at 4,096 tokens batch 1 and 4, then the Longformer
# GPU tests (short: most of the session's device budget went to refused starts). Carry: .snap.
R=/tmp/r4
source benchmarks/device_s14_common.sh
gpu_tests 70 native_test -x -k "native or gather or ner_"
lf_bench 60 longformer --batch 1 4
pack
gpu_tests 40 lf_tests -k "longformer or layernorm or token_class"
pack
tail -4 "$R/native_test.log"; grep -E "native|rc=|\| 4096" "$R"/longformer*.log | cut -c1-400; tail -4 "$R/lf_tests.log"
