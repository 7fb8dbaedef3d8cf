#!/usr/bin/env bash
# The benchmark of docs/results/performance.md: `lsfa bench` on the smollm2-135m LS-FA LoRA tagger of
# docs/results/conll2003-lsfa-lora.md, the whole CoNLL-2003 test split, 2 threads, with the trained mpnet-base
# encoder and the spaCy peer of the cpu-budget grid. Run it when nothing else runs; it takes about 7 minutes.
#   scripts/bench-performance.sh
set -eu
cd "$(dirname "$0")/.."
cells=runs/experiments/cpu-budget/conll2003
OMP_NUM_THREADS=2 lsfa bench --model-dir runs/conll2003-lsfa-lora/model --corpus conll2003 --split test \
  --threads 2 --compare --encoder-dir $cells/mpnet-base/full/full/seed42/model \
  --spacy-model $cells/spacy/tok2vec/none/seed42 --json docs/results/performance.json \
  --markdown runs/bench-performance.md > runs/bench.log 2>&1
