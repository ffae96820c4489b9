#!/usr/bin/env bash
# Session 12, run 79 (the last of the device budget): the scan sweep 16 vs 16.5 programs per SM on the whole model, then
# the Mamba rows (4k-64k, batch 16, HF slow path) with the sweep's choice. Carry: .snap.
R=/tmp/r1
source benchmarks/device_s9_common.sh
mamba_speed 200 --skip scan peers breakdown
pack
grep -E "best|model 1x4096|ours mamba|ns/token|HF|rc=" "$R/mamba_speed.log" | tail -24
