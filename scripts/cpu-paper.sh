#!/usr/bin/env bash
# One worker over the full-scale comparison (issue #12, configs/experiments/cpu-paper.yaml), in the issue's
# priority order. Run it from a worktree pinned at a commit, with one torch thread per worker so that a
# second core stays free (or start two workers: they share cells through the grid's cell locks):
#   OMP_NUM_THREADS=1 nohup scripts/cpu-paper.sh > runs/experiments/cpu-paper-worker-1.log 2>&1 &
# Re-running resumes: finished cells (metrics.json) are skipped. PRIORITY picks the groups to run (default 1),
# e.g. PRIORITY="2 3". TIME_LIMIT (seconds, for the whole worker, e.g. TIME_LIMIT=6900) makes training stop at a
# saved checkpoint when it runs out (lsfa experiment run --time-limit, exit 75), and the worker then stops.
set -u
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LSFA_DATA_DIR="${LSFA_DATA_DIR:-$(cd ../shared/data && pwd)}"
# Each entry: GRID:PATTERN, GRID a file of configs/experiments/. The cells of priority 5 train with two threads
# each (`threads: 2` in their grid, sized to two hours a cell): run one worker for them; those of priority 4
# train with one thread each since session 11 (two workers, or the two cells side by side). Priority 7
# leaves out Table 4's r32-all, which is priority 2's gemma3-270m BC5CDR LS-FA cell (see cpu-paper-table4.yaml).
declare -A cells=(
  [1]='cpu-paper:*/smollm2-135m/lora/full/* cpu-paper:*/smollm2-135m/lora/causal/*'
  [2]='cpu-paper:*/gemma3-270m/lora/full/* cpu-paper:*/gemma3-270m/lora/causal/*'
  [3]='cpu-paper:*/minilm-l6/* cpu-paper:*/mpnet-base/* cpu-paper:*/spacy/*'
  [4]='cpu-paper-ift:bc5cdr/* cpu-paper-ift:conll2003/*'
  [5]='cpu-paper-qwen:*/lora/full/* cpu-paper-qwen:*/lora/causal/*'
  [6]='cpu-paper-context:*'
  [7]='cpu-paper-table4:*/r8-qkvo/* cpu-paper-table4:*/r16-qkvo/* cpu-paper-table4:*/r64-all/* cpu-paper-table4:*/r128-all/*'
  [8]='cpu-paper:*/gemma3-270m/full/*'
  [9]='cpu-paper-seeds:*/full/* cpu-paper-seeds:*/causal/*'
)
deadline=$(( $(date +%s) + ${TIME_LIMIT:-0} ))
for priority in ${PRIORITY:-1}; do
  for entry in ${cells[$priority]}; do
    grid=configs/experiments/${entry%%:*}.yaml pattern=${entry#*:}
    limit=()
    if [ -n "${TIME_LIMIT:-}" ]; then
      left=$(( deadline - $(date +%s) ))
      [ "$left" -gt 0 ] || { echo "== time limit spent"; exit 75; }
      limit=(--time-limit "${left}s")
    fi
    echo "== $(date -u +%FT%TZ) priority $priority: $grid $pattern ${limit[*]}"
    lsfa experiment run "$grid" --only "$pattern" "${limit[@]}"
    status=$?
    [ "$status" -eq 75 ] && { echo "== $(date -u +%FT%TZ) time limit reached: run again to resume"; exit 75; }
  done
done
echo "== $(date -u +%FT%TZ) done"
