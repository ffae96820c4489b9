#!/usr/bin/env bash
# Train a small disease tagger offline (packaged all-MiniLM-L6-v2 made long), then tag a note and score it.
# Data: 24 NCBI-disease training abstracts and 4 test abstracts (BRAT standoff, public domain).
# A few minutes on 2 CPU cores; the model is tiny-budget (see README.md in this folder).
set -euo pipefail
cd "$(dirname "$0")"
LONGAPPS=${LONGAPPS:-../../.venv/bin/longapps}
OUT=${OUT:-/tmp/longapps-ner-example}

"$LONGAPPS" ner train data/train --out "$OUT" --one-label Disease --max-length 512 \
    --epochs 3 --lr 2e-4 --batch-size 4
"$LONGAPPS" ner predict note.txt --model "$OUT"                  # a table of spans
"$LONGAPPS" ner predict note.txt --model "$OUT" --json | head -c 400; echo
"$LONGAPPS" ner eval data/test --model "$OUT"                     # strict P / R / F1
