#!/usr/bin/env bash
# Session 9, device call 5 = run 61 (<= 135 s): GPU tests of the final tree: add_layernorm paths, Longformer (eager path
# without side streams, graphs, token classification), then the Mamba GPU tests. Carry: .snap.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
timeout 55 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_gpu.py -k "add_layernorm or longformer or token_classification" 2>&1 | tail -4
echo "lf tests t=$((SECONDS - T0))"
timeout 70 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_mamba_gpu.py 2>&1 | tail -4
echo "mamba tests t=$((SECONDS - T0))"
