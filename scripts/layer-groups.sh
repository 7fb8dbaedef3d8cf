#!/usr/bin/env bash
# The best pattern of the Dukić & Šnajder layer-group screening (configs/experiments/layer-groups.yaml, run by
# scripts/cpu-budget.sh), by dev strict F1: the test split is never read.
#   scripts/layer-groups.sh best

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
case ${1:?usage: scripts/layer-groups.sh best} in
  best) best ;;
esac
