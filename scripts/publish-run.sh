#!/usr/bin/env bash
# Publish one finished run folder: its metrics.json, cell.json and config.yaml (those present) and tags-only
# predictions of dev and test (dev.tags, test.tags: one tag per line, no words; the corpus text is not
# republished; an IFT run's answers are laid onto the words by scripts/ift_tags.py, which also writes
# <split>.tags.json saying how exact that is). No weights. Shared by collect-grid.sh and collect-tune.sh.
#   scripts/publish-run.sh RUN_DIR OUT_DIR        (PYTHON: the interpreter with lsfa installed)
set -eu
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
run=$1
out=$2
mkdir -p "$out"
for file in metrics.json cell.json config.yaml; do
  [ -f "$run/$file" ] && cp "$run/$file" "$out/"
done
for split in dev test; do
  if [ -f "$run/predictions/$split.conll" ]; then
    "$py" scripts/tags_only.py "$run/predictions/$split.conll" "$out/$split.tags"
  elif [ -f "$run/predictions/$split.jsonl" ]; then  # the generative (IFT) baseline: answers laid onto the words
    "$py" scripts/ift_tags.py "$run/predictions/$split.jsonl" "$out/$split.tags" > /dev/null
  fi
done
exit 0
