#!/usr/bin/env bash
# Dukić & Šnajder layer-group screening (configs/experiments/layer-groups.yaml) in two chains side by side,
# then the best pattern ON DEV trained like the other systems of configs/experiments/cpu-budget.yaml.
#   scripts/layer-groups.sh screen 0     # patterns groups=4:0xxx   (chain 1)
#   scripts/layer-groups.sh screen 1     # patterns groups=4:1xxx   (chain 2)
#   scripts/layer-groups.sh best         # prints the best pattern by dev strict F1 (test is never read)
#   scripts/layer-groups.sh train CORPUS # trains the pattern listed for smollm2-135m in cpu-budget.yaml (LoRA)
set -eu
grid=runs/experiments/layer-groups
best() {
  python - "$grid" <<'PY'
import json, pathlib, sys
scores = {}
for path in pathlib.Path(sys.argv[1]).glob("conll2003/smollm2-135m/lora/*/seed*/metrics.json"):
    metrics = json.loads(path.read_text())
    scores[metrics["attention"]] = metrics["dev"]["micro"]["f1"]
if len(scores) < 16:
    sys.exit(f"only {len(scores)} of 16 patterns are finished")
print(max(sorted(scores), key=scores.get))
PY
}
case ${1:?usage: scripts/layer-groups.sh screen 0|1 | best | train CORPUS} in
  screen) lsfa experiment run configs/experiments/layer-groups.yaml --only "*/groups4-${2:?0 or 1}*/*" ;;
  best) best ;;
  train) lsfa experiment run configs/experiments/cpu-budget.yaml --only "${2:?corpus}/smollm2-135m/lora/groups4-*/*" ;;
esac
