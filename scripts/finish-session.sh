#!/usr/bin/env bash
# The end of this session's schedule (see docs/results/cpu-budget.md and performance.md): the last
# smollm2-135m full fine-tuning cells, then `lsfa bench` on a quiet machine (2 threads), then gemma3-270m full
# fine-tuning. Arguments: PIDs of runs that must end first.
set -u
cd "$(dirname "$0")/.."
for pid in "$@"; do while kill -0 "$pid" 2>/dev/null; do sleep 5; done; done
grid=configs/experiments/cpu-budget.yaml
lsfa experiment run $grid --only 'conll2003/smollm2-135m/full/full/*' > runs/experiments/finish-1.log 2>&1 &
lsfa experiment run $grid --only 'bc5cdr/smollm2-135m/full/full/*' > runs/experiments/finish-2.log 2>&1 &
wait
cells=runs/experiments/cpu-budget/conll2003
OMP_NUM_THREADS=2 lsfa bench --model-dir runs/conll2003-lsfa-lora/model --corpus conll2003 --split test \
  --threads 2 --compare --encoder-dir $cells/mpnet-base/full/full/seed42/model \
  --spacy-model $cells/spacy/tok2vec/none/seed42 --json docs/results/performance.json \
  --markdown runs/bench-performance.md > runs/bench.log 2>&1
lsfa experiment run $grid --only 'conll2003/gemma3-270m/full/*' > runs/experiments/finish-3.log 2>&1 &
lsfa experiment run $grid --only 'bc5cdr/gemma3-270m/full/*' > runs/experiments/finish-4.log 2>&1 &
wait
