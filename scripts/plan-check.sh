#!/usr/bin/env bash
# `lsfa plan` against a measured peak (issue #35): a short real `lsfa train` of smollm2-135m LS-FA LoRA in fp32 on
# one thread, on CoNLL-2003 document windows (every row a full 128 sub-tokens, the plan's worst case), beside the plan
# of the same flags with --target cpu, and the resident memory of a process that only imports lsfa and builds the
# same model (the runtime the plan does not count). Writes OUT.json (default docs/results/plan-check.json).
#   scripts/plan-check.sh [OUT.json]          # about 2-4 minutes of one core
set -eu
cd "$(dirname "$0")/.."
out=${1:-docs/results/plan-check.json}
bin=${LSFA_BIN:-.venv/bin}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--model smollm2-135m --mode lora --precision fp32 --threads 1 --kernels default --context document-windows
  --max-length 128 --batch-size 8)
train=(--corpus conll2003 --train-limit 400 --max-steps 8 --dev-limit 40 --test-split null --early-stopping-patience null)
printf '%s\n' "${flags[@]}" > "$work/flags.txt"; printf '%s\n' "${train[@]}" > "$work/train-flags.txt"
"$bin/lsfa" train "${flags[@]}" "${train[@]}" --output-dir "$work/run" > "$work/train.log" 2>&1 || { tail "$work/train.log"; exit 1; }
"$bin/lsfa" plan "${flags[@]}" --target cpu --json > "$work/plan.json"
"$bin/python" - "$work/floor.json" <<'PY'
import json, resource, sys
import torch
from lsfa.models.catalogue import resolve_model
from lsfa.models.classifier import apply_lora, build_token_classifier, load_tokenizer
torch.set_num_threads(1)
path = resolve_model("smollm2-135m")
load_tokenizer(path)
apply_lora(build_token_classifier(path, [str(k) for k in range(9)], "full"), 32, 64, 0.05, "all-linear")
json.dump({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(sys.argv[1], "w"))
PY
"$bin/python" - "$work" "$out" <<'PY'
import json, subprocess, sys
from datetime import datetime, timezone
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
metrics = json.loads((work / "run/metrics.json").read_text())
plan = json.loads((work / "plan.json").read_text())
floor = json.loads((work / "floor.json").read_text())["peak_rss_mib"]
measured = metrics["peak_memory_mb"]
planned = plan["gib"]["total"] * 1024
env = subprocess.run([".venv/bin/lsfa", "env"], capture_output=True, text=True).stdout.splitlines()[0]
record = {
    "what": "lsfa plan (--target cpu) against the measured peak resident memory of the same lsfa train run",
    "command": "scripts/plan-check.sh",
    "machine": env,
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    "flags": (work / "flags.txt").read_text().split(),
    "train_only_flags": (work / "train-flags.txt").read_text().split(),
    "steps": metrics["global_step"],
    "train_batching": metrics.get("train_batching"),
    "measured_peak_rss_mib": round(measured, 1),
    "runtime_floor_rss_mib": round(floor, 1),
    "measured_minus_floor_mib": round(measured - floor, 1),
    "plan_mib": {key: round(value * 1024, 1) for key, value in plan["gib"].items()},
    "plan_total_mib": round(planned, 1),
    "plan_minus_weights_mib": round(planned - plan["gib"]["weights"] * 1024, 1),
    "plan": plan,
}
out.write_text(json.dumps(record, indent=2) + "\n")
print(json.dumps({k: record[k] for k in ("measured_peak_rss_mib", "runtime_floor_rss_mib", "plan_mib")}, indent=2))
PY
