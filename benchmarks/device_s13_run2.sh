#!/usr/bin/env bash
# Session 13, run 81: the Mamba GPU tests (conv walk and tile at the model's shape, model vs HF) and two more
# 1 x 4,096 samples in fresh processes with the shipped defaults. Carry: .snap.
R=/tmp/r2
source benchmarks/device_s9_common.sh
mamba_gpu_tests 200
pack
for i in 1 2; do
  timeout 100 python3 benchmarks/mamba_gpu.py speed --lengths 4096 --skip model_sweep scan peers breakdown \
    --json "$R/mamba_4k_$i.json" > "$R/mamba_4k_$i.log" 2>&1
  echo "4k sample $i rc=$?" >> "$R/mamba_4k_$i.log"
done
pack
tail -3 "$R/mamba_gpu_tests.log"
grep -hE "L=4096: graph|rc=" "$R"/mamba_4k_*.log
