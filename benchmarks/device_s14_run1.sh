#!/usr/bin/env bash
# Session 14, run 83 (issue 11): the native eager Longformer layers (models/longformer_native.py: cuBLASLt and
# direct kernel launches through ctypes) -- the Longformer GPU tests (the new native test first, in its own
# process), then benchmarks/longformer.py at 4,096 tokens, batch 1 and 4: native eager, PyTorch-level eager,
# CUDA graph, automatic graphs and HF in the same run. Carry: .snap.
R=/tmp/r1
source benchmarks/device_s14_common.sh
python3 -c "import torch, triton, transformers; print(torch.__version__, triton.__version__, transformers.__version__)" > "$R/versions.txt" 2>&1
gpu_tests 240 native_test -x -k native
lf_bench 300 longformer --batch 1 4
gpu_tests 200 lf_tests -k "longformer or layernorm or token_class"
pack
tail -25 "$R/native_test.log"; grep -E "native|eager|graph|HF|rc=|\|" "$R/longformer.log" | head -40; tail -5 "$R/lf_tests.log"
