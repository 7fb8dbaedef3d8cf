#!/usr/bin/env bash
# Publish the finished cells of an experiment grid and write its report from the published files alone:
#   scripts/collect-grid.sh GRID_RUN_DIR OUT_DIR [lsfa experiment report options, e.g. --split dev]
# Per cell, scripts/publish-run.sh: metrics.json, cell.json, config.yaml and tags-only predictions of dev and
# test (no words: the corpus text is not republished). No weights.
set -eu
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}  # the project venv, with lsfa installed
source_dir=$1
out=$2
shift 2
target=$out/cells
mkdir -p "$target"
# Several grids may write into one folder (cpu-paper-ift, cpu-paper-qwen into cpu-paper's): the grid.yaml there
# is whichever ran last, so a published grid.yaml is replaced only by one of the same name.
if [ -f "$source_dir/grid.yaml" ]; then
  published=$(grep -m1 '^name:' "$target/grid.yaml" 2>/dev/null || true)
  if [ ! -f "$target/grid.yaml" ] || [ "$published" = "$(grep -m1 '^name:' "$source_dir/grid.yaml")" ]; then
    cp "$source_dir/grid.yaml" "$target/"
  else
    echo "kept $target/grid.yaml ($published); $source_dir/grid.yaml is another grid's"
  fi
fi
[ -f "$source_dir/failures.json" ] && cp "$source_dir/failures.json" "$target/"
find "$source_dir" -name metrics.json -not -path '*/checkpoints/*' -not -path '*/model/*' | sort | while read -r metrics; do
  cell=$(dirname "$metrics")
  relative=${cell#"$source_dir"/}
  PYTHON=$py scripts/publish-run.sh "$cell" "$target/$relative"
  echo "collected $relative"
done
"$(dirname "$py")/lsfa" experiment report "$target" --out "$out" "$@"
