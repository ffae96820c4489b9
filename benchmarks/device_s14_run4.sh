#!/usr/bin/env bash
# Session 14, run 86 (issue 11): the native eager layers with the compact query_global GEMM (a row-gather kernel
# instead of projecting every token: the fused version cost 0.35 ms at batch 4, run 85). Native, gather and NER
# (tagger on bf16 weights) GPU tests, benchmarks/longformer.py at 4,096 tokens batch 1 and 4 plus one more batch-1
# sample, the host cost of single calls, and the Longformer GPU tests (the device budget left no room for the
# whole file). Carry: .snap.
R=/tmp/r4
source benchmarks/device_s14_common.sh
gpu_tests 100 native_test -x -k "native or gather or ner_"
lf_bench 90 longformer --batch 1 4
lf_bench 50 longformer_b1_2 --batch 1
lf_host 30
pack
gpu_tests 60 lf_tests -k "longformer or layernorm or token_class"
pack
tail -4 "$R/native_test.log"; grep -E "native|rc=|\| 4096" "$R"/longformer*.log | cut -c1-400; grep -E "native|embeddings" "$R/longformer_host.log"; tail -4 "$R/lf_tests.log"
