#!/usr/bin/env bash
# Session 9, device call 4 = run 60 (<= 300 s): Mamba with the fold's loads in flight and register caps (maxnreg)
# swept on the whole model, lengths, batch 16; the run-59 kernel (.snap_old) in the same call; the Mamba GPU tests
# with the chosen config. Carry: .snap .snap_old. -> $OUT/results.tar.gz (both variants were removed afterwards)
R=/tmp/r4
source benchmarks/device_s9_common.sh
mamba_speed 130 --skip scan breakdown peers
old_mamba 50 prev_mamba
mamba_gpu_tests 90
pack
grep -E "best|model 1x4096 scan|ours mamba|ns/token|rc=" "$R/mamba_speed.log" | tail -20
grep -E "ours mamba|rc=" "$R/prev_mamba.log"; tail -3 "$R/mamba_gpu_tests.log"
