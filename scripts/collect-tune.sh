#!/usr/bin/env bash
# Publish an `lsfa tune` study (issue #17): its report (report.md, tune.json), history plot and Optuna study
# (study.db, so a later session can resume the search or rerun the final training from it), and each trial's and
# the retrained best run's files through scripts/publish-run.sh (metrics, config, tags-only predictions).
#   scripts/collect-tune.sh STUDY_DIR OUT_DIR      e.g. runs/tune/bc5cdr-smollm2 docs/results/tune
set -eu
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
source_dir=$1
out=$2
mkdir -p "$out"
for file in report.md history.png study.db tune.json; do
  [ -f "$source_dir/$file" ] && cp "$source_dir/$file" "$out/"
done
for run in "$source_dir"/trials/* "$source_dir"/best; do
  [ -f "$run/config.yaml" ] || continue
  relative=${run#"$source_dir"/}
  PYTHON=$py scripts/publish-run.sh "$run" "$out/$relative"
  echo "collected $relative"
done
