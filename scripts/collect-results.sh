#!/usr/bin/env bash
# Copy what is safe to publish of the session's grids into docs/results: per-cell metrics.json, cell.json and
# resolved config, the grid file and failures (no predictions, no weights: CoNLL-2003 text is research-only),
# then write the reports.
set -eu
cd "$(dirname "$0")/.."
for grid in cpu-budget layer-groups; do
  (cd "runs/experiments/$grid" && find . \( -name checkpoints -o -name model -o -name spacy -o -name predictions \) \
      -prune -o \( -name metrics.json -o -name cell.json -o -name config.yaml -o -name grid.yaml \
      -o -name failures.json \) -print) |
    while read -r file; do
      mkdir -p "docs/results/$grid/cells/$(dirname "$file")"
      cp "runs/experiments/$grid/$file" "docs/results/$grid/cells/$file"
    done
done
lsfa experiment report runs/experiments/cpu-budget --out docs/results/cpu-budget
lsfa experiment report runs/experiments/layer-groups --split dev --out docs/results/layer-groups
