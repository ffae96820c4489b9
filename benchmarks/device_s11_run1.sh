#!/usr/bin/env bash
# Prepared in session 10 for the next device call (<= 360 s): the walk's fold software-pipelined (fold_stages 3 / 5,
# opt-in, not yet measured) in the whole-model sweep against the default, then every must-show row of issue 16
# (lengths 4k-64k, batch 16, HF slow path, scan GB/s vs copy, Longformer / BERT-SDPA peers) with the sweep's choice,
# and the Mamba GPU tests with it. Carry: .snap (git archive HEAD | tar -x -C .snap). Make the winner the default.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_speed 240 --skip breakdown
pack
mamba_gpu_tests 90
pack
grep -E "best|model 1x4096 scan|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -32
tail -2 "$R/mamba_gpu_tests.log"
