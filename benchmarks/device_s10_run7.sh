#!/usr/bin/env bash
# Session 10, device call 7 = run 68 (<= 240 s): run 66 put the walk's inline fold at 0.28 ms of 5.12 (latency of one
# L2 round trip per earlier segment). BD 16 channels per program halves the segment count for the same number of
# programs (fewer fold steps, and ~68 registers: up to 30 resident warps per SM). Sweep BD 32 / 16 at 16-28 programs
# per SM, lengths, batch 16; the Mamba GPU tests with the chosen config. Carry: .snap.
R=/tmp/r7
source benchmarks/device_s9_common.sh
mamba_speed 130 --skip scan peers breakdown
pack
mamba_gpu_tests 70
pack
grep -E "best|model 1x4096 scan|ours mamba|ns/token|HF|rc=" "$R/mamba_speed.log" | tail -20
tail -2 "$R/mamba_gpu_tests.log"
