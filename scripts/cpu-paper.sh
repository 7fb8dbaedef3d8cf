#!/usr/bin/env bash
# One worker over the full-scale comparison (issue #12, configs/experiments/cpu-paper.yaml), in the issue's
# priority order. Run it from a worktree pinned at a commit, with one torch thread per worker so that a
# second core stays free (or start two workers: they share cells through the grid's cell locks):
#   OMP_NUM_THREADS=1 nohup scripts/cpu-paper.sh > runs/experiments/cpu-paper-worker-1.log 2>&1 &
# Re-running resumes: finished cells (metrics.json) are skipped. PRIORITY picks the groups to run (default 1).
set -u
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LSFA_DATA_DIR="${LSFA_DATA_DIR:-$(cd ../shared/data && pwd)}"
grid=configs/experiments/cpu-paper.yaml
declare -A cells=(
  [1]='*/smollm2-135m/lora/full/* */smollm2-135m/lora/causal/*'
  [2]='*/gemma3-270m/lora/full/* */gemma3-270m/lora/causal/*'
  [3]='*/minilm-l6/* */mpnet-base/* */spacy/*'
  [4]='*/ift/*'
  [8]='*/gemma3-270m/full/*'
)
for priority in ${PRIORITY:-1}; do
  for pattern in ${cells[$priority]}; do
    echo "== $(date -u +%FT%TZ) priority $priority: $pattern"
    lsfa experiment run "$grid" --only "$pattern"
  done
done
echo "== $(date -u +%FT%TZ) done"
