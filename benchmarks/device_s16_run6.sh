#!/usr/bin/env bash
# Session 16, run 98 (issue 11): after the fused embeddings' bounds (ids outside the vocabulary read no memory):
# the embeddings, Longformer and NER GPU tests. Carry: .snap (with .tok).
R=/tmp/r6
source benchmarks/device_s16_common.sh
gpu_tests 150 lf_tests -rA -k "longformer or native or automatic_graphs or ner_ or token_class or embed or layernorm"
kill $DMON
pack
grep -E "FAILED|ERROR|rc=" "$R/lf_tests.log" | cut -c1-200 | tail -8; grep -c PASSED "$R/lf_tests.log"
