#!/usr/bin/env bash
# Session 10, device call 1 = run 62 (<= 420 s): Mamba with the O(S) segment fold (a small launch between the two
# walks instead of every segment folding all earlier ones): launch shapes swept on the whole model, lengths 4k-64k,
# batch 16; the session-start kernel (.snap_old) in the same call; the Mamba GPU tests. Carry: .snap .snap_old.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_speed 200 --skip scan breakdown peers
old_mamba 60 prev_mamba
mamba_gpu_tests 100
pack
grep -E "best|model 1x4096 scan|ours mamba|ns/token|rc=" "$R/mamba_speed.log" | tail -24
grep -E "ours mamba|rc=" "$R/prev_mamba.log"; tail -3 "$R/mamba_gpu_tests.log"
