#!/usr/bin/env bash
# Session 16, run 94 (issue 11): the fused embeddings and the several-rows add+LayerNorm: their GPU tests and the
# Longformer ones; the add+LayerNorm micro-benchmark; the Longformer at batch 1 and 4 (bf16) with the
# add+LayerNorm settings as variants; the batch-4 graph profile with torch's cuBLASLt workspace as is and
# without one (does that drop cuBLAS's memsets, and what does it cost). Carry: .snap (with .tok).
R=/tmp/r2
source benchmarks/device_s16_common.sh
gpu_tests 240 gpu_tests -rA -k "embed or add_layernorm or longformer or hidden or native or automatic_graphs or ner_ or token_class"
pack
timeout 120 python3 benchmarks/layernorm.py --dtype bf16 --json "$R/layernorm.json" > "$R/layernorm.log" 2>&1
echo "layernorm rc=$? t=$((SECONDS - T0))" >> "$R/layernorm.log"
pack
lf_bench 200 longformer_bf16 --batch 1 4 --dtype bf16 --ln-variants
pack
for ws in default 1; do
  if [ "$ws" = default ]; then unset CUBLASLT_WORKSPACE_SIZE; else export CUBLASLT_WORKSPACE_SIZE=$ws; fi
  timeout 120 python3 benchmarks/graph_profile.py --only longformer --dtype bf16 --reps 3 \
    --json "$R/graph_profile_ws_$ws.json" > "$R/graph_profile_ws_$ws.log" 2>&1
  echo "profile ws=$ws rc=$? t=$((SECONDS - T0))" >> "$R/graph_profile_ws_$ws.log"
done
unset CUBLASLT_WORKSPACE_SIZE
kill $DMON
pack
grep -E "PASSED|FAILED|ERROR|rc=" "$R/gpu_tests.log" | cut -c1-150 | tail -40
grep -E "^\| |rc=" "$R/layernorm.log"
grep -E "graph|\| 4096|rc=" "$R/longformer_bf16.log" | cut -c1-220
for f in "$R"/graph_profile_ws_*.log; do echo "== $f"; grep -E "^## |Memset|embed|_ln_|rc=" "$f" | cut -c1-160; done
