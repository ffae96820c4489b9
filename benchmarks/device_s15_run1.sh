#!/usr/bin/env bash
# Session 15, run 87 (issue 11): the Longformer global rows in hidden space as three Triton launches
# (kernels/hidden_global_rows.py; "auto" global mode = hidden, a 3C-row input GEMM). Kernel GPU test first, then
# benchmarks/longformer.py at 4,096 tokens, batch 1 and 4, with both global modes timed in the same process
# (graph and native eager), the batch-4 graph profile per mode, the encoder's GEMMs (cuBLASLt candidates, square
# peak), then the Longformer / native / NER GPU tests. Carry: .snap (with .tok: the MiniLM tokenizer files, which
# the lent machine lacks, for the NER test's tiny tagger).
R=/tmp/r1
source benchmarks/device_s15_common.sh
gpu_tests 60 hidden_test -x -k "hidden_global_rows"
lf_bench 150 longformer --batch 1 4 --global-variants
pack
lf_profile 100 hidden kernel
timeout 60 python3 benchmarks/gemm_algos.py --json "$R/gemm_algos.json" > "$R/gemm_algos.log" 2>&1
echo "gemm rc=$? t=$((SECONDS - T0))" >> "$R/gemm_algos.log"
pack
gpu_tests 150 lf_tests -k "native or longformer or layernorm or token_class or ner_ or gather"
pack
tail -3 "$R/hidden_test.log"; grep -E "native|hidden|split-K|rc=|\| 4096|graph" "$R"/longformer.log | cut -c1-300
grep -E "^## |_hs_|_hq_|_hm_|_wg_|nvjet|add_ln|rc=" "$R/graph_profile.log" | cut -c1-140; cat "$R/gemm_algos.log"; tail -4 "$R/lf_tests.log"
