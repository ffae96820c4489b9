#!/usr/bin/env bash
# Session 14, run 84 (issue 11): native eager layers with query_global fused into the input GEMM, per-layer
# prepared calls in one flat list, the embeddings launched before prepare()'s host read. The native GPU test,
# benchmarks/longformer.py at 4,096 tokens batch 1 and 4 (native / PyTorch-level eager, graphs, HF in one run),
# the host cost of single native calls, and the Longformer GPU tests. Carry: .snap.
R=/tmp/r2
source benchmarks/device_s14_common.sh
gpu_tests 240 native_test -x -k native
lf_bench 300 longformer --batch 1 4
lf_host 100
gpu_tests 200 lf_tests -k "longformer or layernorm or token_class"
pack
tail -15 "$R/native_test.log"; grep -E "native|eager|graph|HF|rc=|\|" "$R/longformer.log" | head -40; tail -22 "$R/longformer_host.log"; tail -5 "$R/lf_tests.log"
