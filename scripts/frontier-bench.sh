#!/usr/bin/env bash
# The frontier bench (issue #34 item 4): every system of docs/results/frontier-full-data.md timed by `lsfa bench`
# on the first 1,000 BC5CDR test sentences, at 1 and 2 threads, lsfa's fastest path for each model (bf16-full
# where bf16 pays, else fp32). Each run times one decoder with an encoder and the spaCy peer beside it, in
# interleaved rounds; spaCy is in every run as a drift check. The taggers are two-step stand-ins with the
# cells' architectures (configs/experiments/frontier-speed.yaml): timing needs the architecture, not the
# trained weights, and F1 comes from the committed full-data cells (scripts/frontier_report.py).
# Run it on an otherwise idle machine (about 25 minutes on a 2-core AMD EPYC):
#   scripts/frontier-bench.sh            (re-running skips the bench files that exist)
# Environment: LSFA and PYTHON (the executables), OUT (folder), SENTENCES, THREADS ("1 2"), for a quick trial.
set -eu
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false LSFA_DATA_DIR="${LSFA_DATA_DIR:-$(cd ../shared/data && pwd)}"
LSFA="${LSFA:-lsfa}"
PYTHON="${PYTHON:-python}"
out="${OUT:-docs/results/frontier}"
runs=runs/frontier-speed/bc5cdr
mkdir -p "$out"
"$LSFA" experiment run configs/experiments/frontier-speed.yaml
bench() {  # decoder encoder threads
  local json="$out/$1-t$3.json"
  [ -f "$json" ] && return 0
  OMP_NUM_THREADS=$3 MKL_NUM_THREADS=$3 "$LSFA" bench --model-dir "$runs/$1/lora/full/seed42/model" \
    --corpus bc5cdr --split test --sentences "${SENTENCES:-1000}" --threads "$3" --train-steps 0 --ablation-sentences 0 \
    --compare --encoder-dir "$runs/$2/full/full/seed42/model" --spacy-model "$runs/spacy/tok2vec/none/seed42" \
    --json "$json"
}
for threads in ${THREADS:-1 2}; do
  bench gemma3-270m mpnet-base "$threads"
  bench gemma3-270m-k9 mpnet-base "$threads"
  bench smollm2-135m-k20 minilm-l6 "$threads"
done
"$PYTHON" scripts/frontier_report.py "$out"
