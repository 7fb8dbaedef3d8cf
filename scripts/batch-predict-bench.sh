#!/usr/bin/env bash
# Throughput of lsfa predict on one input: 1 process, --workers 2 and Ray with 2 actors (issue #38 item 4), each
# with 1 thread per process, run one after another on an otherwise idle machine; checks all three outputs equal.
#   scripts/batch-predict-bench.sh TAGGER_DIR CORPUS SENTENCES OUT.json
# The input is SENTENCES test sentences of CORPUS (under LSFA_DATA_DIR; the split repeated from its start when
# SENTENCES is larger), one JSONL {"words": [...]} each, written to a temporary folder (corpus text is never committed; OUT.json holds only counts and timings).
set -eu
cd "$(dirname "$0")/.."
tagger=$1 corpus=$2 sentences=$3 out=$4
bin=${LSFA_BIN:-.venv/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/python" - "$LSFA_DATA_DIR/$corpus/test.txt" "$sentences" > "$work/in.jsonl" <<'PY'
import json, sys
from lsfa.data.conll import read_conll
import itertools
sentences = [s for s in read_conll(sys.argv[1]).sentences if s.tokens]
for s in itertools.islice(itertools.cycle(sentences), int(sys.argv[2])):
    print(json.dumps({"words": s.tokens}, ensure_ascii=False))
PY
run() {  # name, extra args, output path
  /usr/bin/time -f "%e %M" -o "$work/$1.time" "$bin/lsfa" predict --model-dir "$tagger" -i "$work/in.jsonl" \
    --threads 1 "${@:3}" -o "$2" 2> "$work/$1.log" || { cat "$work/$1.log"; exit 1; }
}
run one "$work/one.jsonl"
run workers2 "$work/workers2.jsonl" --workers 2
run ray2 "$work/ray" --ray local --ray-actors 2
cat $(ls "$work"/ray/*.jsonl | sort) > "$work/ray2.jsonl"
"$bin/python" - "$work" "$sentences" "$out" "$tagger" <<'PY'
import json, subprocess, sys
from pathlib import Path
work, n, out, tagger = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
reference = (work / "one.jsonl").read_bytes()
rows = {}
for name in ("one", "workers2", "ray2"):
    seconds, peak_kb = (work / f"{name}.time").read_text().split()[-2:]
    rows[name] = {"seconds": float(seconds), "docs_per_s": round(n / float(seconds), 2),
                  "peak_rss_mb_largest_process": round(int(peak_kb) / 1024),
                  "identical_to_one_process": (work / f"{name}.jsonl").read_bytes() == reference}
machine = subprocess.run([sys.executable, "-m", "lsfa.cli", "env"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
result = {"tagger": tagger, "documents": n, "threads_per_process": 1, "machine": machine, "commit": commit,
          "note": "wall seconds include start-up (model load per process, Ray cluster start); peak RSS is GNU time's maximum resident set of the largest waited-for process: for Ray only the driver and its direct children, not the actors started by the raylet", "runs": rows}
Path(out).write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(rows, indent=2))
PY
