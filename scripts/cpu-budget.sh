#!/usr/bin/env bash
# One worker over everything of the one-session CPU comparison (docs/results/cpu-budget.md), most important
# cells first. Start two side by side on a 2-core CPU (each cell uses one thread); they share the cells
# through the grid's cell locks, and re-running resumes.
#   nohup scripts/cpu-budget.sh > runs/experiments/worker-1.log 2>&1 &
#   nohup scripts/cpu-budget.sh > runs/experiments/worker-2.log 2>&1 &
# Order: decoders with LoRA, encoders, spaCy, IFT, gemma3 with LoRA; then the 16 layer-group patterns
# (screened on CoNLL-2003 dev); then the best pattern (by dev F1) trained like the rest on both corpora;
# then full fine-tuning of the decoders.
set -u
budget=configs/experiments/cpu-budget.yaml
run() { lsfa experiment run "$budget" --only "$1"; }
for cells in '*/smollm2-135m/lora/causal/*' '*/smollm2-135m/lora/full/*' '*/minilm-l6/*' '*/mpnet-base/*' \
    '*/spacy/*' '*/ift/*' '*/gemma3-270m/lora/*'; do
  run "$cells"
done
lsfa experiment run configs/experiments/layer-groups.yaml
# The best pattern is chosen once all 16 are finished (the other worker may still be on its last one).
for _ in $(seq 120); do best=$(scripts/layer-groups.sh best 2>/dev/null) && break; sleep 30; done
if [ -n "${best:-}" ]; then
  # The smollm2-135m entry of cpu-budget.yaml gets the pattern in its attention list (once; see its comment).
  grep -q "groups=4:" "$budget" || sed -i "s/^  - {name: smollm2-135m, attention: \[causal, full\]}$/  - {name: smollm2-135m, attention: [causal, full, \"$best\"]}/" "$budget"
  run '*/smollm2-135m/lora/groups4-*'
fi
for cells in '*/smollm2-135m/full/causal/*' '*/smollm2-135m/full/full/*' '*/gemma3-270m/full/*'; do
  run "$cells"
done
