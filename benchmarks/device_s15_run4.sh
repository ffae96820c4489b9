#!/usr/bin/env bash
# Session 15, run 90 (issue 11): GPU tests at the final code (run 89's selection ran 60 tests without a failure
# before its time limit): Longformer (graphs, native, hidden rows, token classification), NER, attention API.
# Carry: .snap (with .tok: device_s15_common.sh).
R=/tmp/r4
source benchmarks/device_s15_common.sh
gpu_tests 300 final_tests -rA -k "longformer or hidden or ner_ or token_class or attention_api or gather or layernorm"
pack
grep -E "PASSED|FAILED|ERROR|passed|failed|rc=" "$R/final_tests.log" | cut -c1-160 | tail -60
