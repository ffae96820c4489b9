#!/usr/bin/env bash
# (historical: ran with options removed afterwards; kept as the record of runs 63-67)
# Session 10, device call 2 = run 63 (<= 420 s): why run 62's fold launch was slower. Per-kernel GPU time inside the
# mamba-130m 1 x 4,096 graph (fold launch, inline fold, session-start tree), then the whole-model sweep with both
# fold modes + the fold launch's shapes, lengths, batch 16; the Mamba GPU tests. Carry: .snap .snap_old.
R=/tmp/r2
source benchmarks/device_s9_common.sh
for v in launch inline; do
  LONGAPPS_SCAN="impl=seq,fold=$v" timeout 60 python3 benchmarks/graph_profile.py --only mamba --json "$R/prof_$v.json" \
    > "$R/prof_$v.log" 2>&1
done
(cd ../.snap_old && PYTHONPATH="$PWD" timeout 90 python3 benchmarks/graph_profile.py --json "$R/prof_old.json" > "$R/prof_old.log" 2>&1)
mamba_speed 200 --skip scan breakdown peers
mamba_gpu_tests 100
pack
for v in launch inline old; do head -14 "$R/prof_$v.log"; done
grep -E "best|model 1x4096|ours mamba|ns/token|rc=" "$R/mamba_speed.log" | tail -30
tail -3 "$R/mamba_gpu_tests.log"
