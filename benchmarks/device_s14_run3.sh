#!/usr/bin/env bash
# Session 14, run 85 (issue 11): the native eager layers after the fused-projection fix (one storage, not just
# adjacent addresses). The native GPU test, benchmarks/longformer.py at 4,096 tokens batch 1 and 4, two more
# batch-1 samples in fresh processes, and every test in tests/test_kernels_gpu.py. Carry: .snap.
R=/tmp/r3
source benchmarks/device_s14_common.sh
gpu_tests 200 native_test -x -k native
lf_bench 240 longformer --batch 1 4
lf_bench 100 longformer_b1_1 --batch 1
lf_bench 100 longformer_b1_2 --batch 1
gpu_tests 200 gpu_tests
pack
tail -4 "$R/native_test.log"; grep -E "native|rc=|\| 4096" "$R"/longformer*.log | cut -c1-400; tail -4 "$R/gpu_tests.log"
