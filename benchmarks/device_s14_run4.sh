#!/usr/bin/env bash
# Session 14, run 86 (issue 11): the native eager layers with the compact query_global GEMM (a row-gather kernel
# instead of projecting every token: the fused version cost 0.35 ms at batch 4, run 85). Native GPU test,
# benchmarks/longformer.py at 4,096 tokens batch 1 and 4 plus one more batch-1 sample, the host cost of single
# calls, and every test in tests/test_kernels_gpu.py. Carry: .snap.
R=/tmp/r4
source benchmarks/device_s9_common.sh
timeout 200 python3 -m pytest -q -rfE -p no:cacheprovider -x tests/test_kernels_gpu.py -k "native or gather or ner_" > "$R/native_test.log" 2>&1
echo "native test rc=$? t=$((SECONDS - T0))" >> "$R/native_test.log"
timeout 200 python3 benchmarks/longformer.py --n 4096 --batch 1 4 --no-variants --json "$R/longformer.json" > "$R/longformer.log" 2>&1
echo "longformer rc=$? t=$((SECONDS - T0))" >> "$R/longformer.log"
timeout 100 python3 benchmarks/longformer.py --n 4096 --batch 1 --no-variants --json "$R/longformer_b1_2.json" > "$R/longformer_b1_2.log" 2>&1
echo "longformer b1 sample 2 rc=$? t=$((SECONDS - T0))" >> "$R/longformer_b1_2.log"
timeout 60 python3 benchmarks/longformer_host.py --ops --host-only --json "$R/longformer_host.json" > "$R/longformer_host.log" 2>&1
echo "longformer host rc=$? t=$((SECONDS - T0))" >> "$R/longformer_host.log"
pack
timeout 330 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_gpu.py > "$R/gpu_tests.log" 2>&1
echo "gpu tests rc=$? t=$((SECONDS - T0))" >> "$R/gpu_tests.log"
pack
tail -4 "$R/native_test.log"; grep -E "native|rc=|\| 4096" "$R"/longformer*.log | cut -c1-400; grep -E "native|embeddings" "$R/longformer_host.log"; tail -4 "$R/gpu_tests.log"
