#!/usr/bin/env bash
# Session 14, run 85 (issue 11): the native eager layers after the fused-projection fix (one storage, not just
# adjacent addresses). The native GPU test, benchmarks/longformer.py at 4,096 tokens batch 1 and 4, two more
# batch-1 samples in fresh processes, and every test in tests/test_kernels_gpu.py. Carry: .snap.
R=/tmp/r3
source benchmarks/device_s9_common.sh
timeout 200 python3 -m pytest -q -rfE -p no:cacheprovider -x tests/test_kernels_gpu.py -k native > "$R/native_test.log" 2>&1
echo "native test rc=$? t=$((SECONDS - T0))" >> "$R/native_test.log"
timeout 240 python3 benchmarks/longformer.py --n 4096 --batch 1 4 --no-variants --json "$R/longformer.json" > "$R/longformer.log" 2>&1
echo "longformer rc=$? t=$((SECONDS - T0))" >> "$R/longformer.log"
for i in 1 2; do
  timeout 100 python3 benchmarks/longformer.py --n 4096 --batch 1 --no-variants --json "$R/longformer_b1_$i.json" > "$R/longformer_b1_$i.log" 2>&1
  echo "longformer b1 sample $i rc=$? t=$((SECONDS - T0))" >> "$R/longformer_b1_$i.log"
done
timeout 200 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_gpu.py > "$R/gpu_tests.log" 2>&1
echo "gpu tests rc=$? t=$((SECONDS - T0))" >> "$R/gpu_tests.log"
pack
tail -4 "$R/native_test.log"; grep -E "native|rc=|\| 4096" "$R"/longformer*.log | cut -c1-400; tail -4 "$R/gpu_tests.log"
