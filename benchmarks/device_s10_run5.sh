#!/usr/bin/env bash
# (historical: ran with options removed afterwards; kept as the record of runs 63-67)
# Session 10, device call 5 = run 66 (<= 300 s): how much the walk's inline fold costs at 1 x 4,096. Diagnostic A/B
# on the whole model: fold inline / none (start from zero: wrong values, timing only) / a separate fold launch with
# its loads in flight; then the sweep (fold inline vs launch) and lengths with the best. Carry: .snap.
R=/tmp/r5
source benchmarks/device_s9_common.sh
timeout 90 python3 - > "$R/fold_diag.log" 2>&1 <<'PY'
import sys, torch
sys.path.insert(0, "benchmarks")
import mamba_gpu as MG
from longapps.kernels import selective_scan as S
model, cfg = MG.mamba_130m()
ids = torch.randint(0, cfg.vocab_size, (1, 4096), device="cuda")
base = dict(S.SCAN_DEFAULTS)
MG._model_ab(model, ids, S.SCAN_DEFAULTS, [dict(fold=f) for f in ("inline", "none", "launch")], 4, "fold-diag")
PY
echo "diag rc=$?" >> "$R/fold_diag.log"
mamba_speed 200 --skip scan peers breakdown
pack
grep -E "fold-diag|rc=" "$R/fold_diag.log"
grep -E "best|model 1x4096 scan|ours mamba|ns/token|rc=" "$R/mamba_speed.log" | tail -20
