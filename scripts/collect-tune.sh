#!/usr/bin/env bash
# Publish an `lsfa tune` study (issue #17): its report, history plot and Optuna study (study.db, so a later
# session can resume the search or rerun the final training from it), each trial's metrics.json and
# config.yaml, and the best configuration's retrained run with tags-only predictions (no corpus text).
#   scripts/collect-tune.sh STUDY_DIR OUT_DIR      e.g. runs/tune/bc5cdr-smollm2 docs/results/tune
set -eu
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
source_dir=$1
out=$2
mkdir -p "$out"
for file in report.md history.png study.db; do
  [ -f "$source_dir/$file" ] && cp "$source_dir/$file" "$out/"
done
for run in "$source_dir"/trials/* "$source_dir"/best; do
  [ -f "$run/config.yaml" ] || continue
  relative=${run#"$source_dir"/}
  mkdir -p "$out/$relative"
  for file in metrics.json config.yaml; do
    [ -f "$run/$file" ] && cp "$run/$file" "$out/$relative/"
  done
  for split in dev test; do
    [ -f "$run/predictions/$split.conll" ] && "$py" scripts/tags_only.py "$run/predictions/$split.conll" "$out/$relative/$split.tags"
  done
  echo "collected $relative"
done
