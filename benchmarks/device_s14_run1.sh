#!/usr/bin/env bash
# Session 14, run 83 (issue 11): the native eager Longformer layers (models/longformer_native.py: cuBLASLt and
# direct kernel launches through ctypes) -- the Longformer GPU tests (the new native test first, in its own
# process), then benchmarks/longformer.py at 4,096 tokens, batch 1 and 4: native eager, PyTorch-level eager,
# CUDA graph, automatic graphs and HF in the same run. Carry: .snap.
R=/tmp/r1
source benchmarks/device_s9_common.sh
python3 -c "import torch, triton, transformers; print(torch.__version__, triton.__version__, transformers.__version__)" > "$R/versions.txt" 2>&1
timeout 240 python3 -m pytest -q -rfE -p no:cacheprovider -x tests/test_kernels_gpu.py -k native > "$R/native_test.log" 2>&1
echo "native test rc=$? t=$((SECONDS - T0))" >> "$R/native_test.log"
timeout 300 python3 benchmarks/longformer.py --n 4096 --batch 1 4 --no-variants --json "$R/longformer.json" > "$R/longformer.log" 2>&1
echo "longformer rc=$? t=$((SECONDS - T0))" >> "$R/longformer.log"
timeout 200 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_gpu.py -k "longformer or layernorm or token_class" > "$R/lf_tests.log" 2>&1
echo "lf tests rc=$? t=$((SECONDS - T0))" >> "$R/lf_tests.log"
pack
tail -25 "$R/native_test.log"; grep -E "native|eager|graph|HF|rc=|\|" "$R/longformer.log" | head -40; tail -5 "$R/lf_tests.log"
