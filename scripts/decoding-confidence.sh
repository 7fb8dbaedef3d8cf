#!/usr/bin/env bash
# Decoding and confidence on the full-scale taggers (issue #14): for each finished LS cell of the cpu-paper grid,
# `lsfa evaluate --calibration` on its corpus (dev for the temperature and the threshold, test for the scores),
# then the table in docs/results/decoding-confidence.md.
#   scripts/decoding-confidence.sh [GRID_RUN_DIR]     (default ../lsfa-runs/runs/experiments/cpu-paper)
set -eu
cd "$(dirname "$0")/.."
grid=${1:-../lsfa-runs/runs/experiments/cpu-paper}
out=docs/results/decoding-confidence
for model in "$grid"/*/*/*/*/seed*/model; do
  [ -f "$model/lsfa.json" ] || continue
  cell=${model#"$grid"/}; cell=${cell%/model}
  corpus=${cell%%/*}
  [ -f "$out/${cell//\//_}/calibration.json" ] && continue
  echo "== $(date -u +%FT%TZ) $cell"
  .venv/bin/lsfa evaluate --model-dir "$model" --corpus "$corpus" --decoding viterbi --calibration "$out/${cell//\//_}" \
    --target-precision 0.95
done
.venv/bin/python scripts/decoding_table.py "$out" > docs/results/decoding-confidence-table.md
