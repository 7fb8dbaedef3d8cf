#!/usr/bin/env bash
# Runs configs/experiments/cpu-budget.yaml as two chains side by side (one thread each), most important
# cells first, so that a cut-short session still has the main comparison. Re-running resumes.
#   scripts/cpu-budget.sh conll2003     # chain A
#   scripts/cpu-budget.sh bc5cdr        # chain B
set -u
corpus=${1:?usage: scripts/cpu-budget.sh conll2003|bc5cdr}
grid=configs/experiments/cpu-budget.yaml
run() { lsfa experiment run "$grid" --only "$corpus/$1"; }
run 'smollm2-135m/lora/*/*'
run 'minilm-l6/*/*/*'
run 'mpnet-base/*/*/*'
run 'spacy/*/*/*'
run 'ift/*/*/*'
run 'gemma3-270m/lora/*/*'
run 'smollm2-135m/full/*/*'
run 'gemma3-270m/full/*/*'
