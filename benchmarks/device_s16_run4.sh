#!/usr/bin/env bash
# Session 16, run 96 (issue 11): the final code's GPU tests (run 95's test step ran out of time): Longformer,
# hidden rows, native, automatic graphs, NER, embeddings, add+LayerNorm; then the window kernel's forward /
# global-row / graph tests. Carry: .snap (with .tok).
R=/tmp/r4
source benchmarks/device_s16_common.sh
gpu_tests 200 lf_tests -rA -k "longformer or hidden or native or automatic_graphs or ner_ or token_class or embed or layernorm"
pack
gpu_tests 200 wg_tests -rA -k "window_global_forward or rows_modes or rows_in_graph or padding_and_2d"
kill $DMON
pack
for f in lf_tests wg_tests; do grep -E "FAILED|ERROR|rc=|passed|failed" "$R/$f.log" | cut -c1-200 | tail -8; done
