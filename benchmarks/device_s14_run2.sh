#!/usr/bin/env bash
# Session 14, run 84 (issue 11): native eager layers with query_global fused into the input GEMM, per-layer
# prepared calls in one flat list, the embeddings launched before prepare()'s host read. The native GPU test,
# benchmarks/longformer.py at 4,096 tokens batch 1 and 4 (native / PyTorch-level eager, graphs, HF in one run),
# the host cost of single native calls, and the Longformer GPU tests. Carry: .snap.
R=/tmp/r2
source benchmarks/device_s9_common.sh
timeout 240 python3 -m pytest -q -rfE -p no:cacheprovider -x tests/test_kernels_gpu.py -k native > "$R/native_test.log" 2>&1
echo "native test rc=$? t=$((SECONDS - T0))" >> "$R/native_test.log"
timeout 300 python3 benchmarks/longformer.py --n 4096 --batch 1 4 --no-variants --json "$R/longformer.json" > "$R/longformer.log" 2>&1
echo "longformer rc=$? t=$((SECONDS - T0))" >> "$R/longformer.log"
timeout 100 python3 benchmarks/longformer_host.py --ops --host-only --json "$R/longformer_host.json" > "$R/longformer_host.log" 2>&1
echo "longformer host rc=$? t=$((SECONDS - T0))" >> "$R/longformer_host.log"
timeout 200 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_gpu.py -k "longformer or layernorm or token_class" > "$R/lf_tests.log" 2>&1
echo "lf tests rc=$? t=$((SECONDS - T0))" >> "$R/lf_tests.log"
pack
tail -15 "$R/native_test.log"; grep -E "native|eager|graph|HF|rc=|\|" "$R/longformer.log" | head -40; cat "$R/longformer_host.log" | tail -22; tail -5 "$R/lf_tests.log"
